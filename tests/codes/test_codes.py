"""Unit tests of code generation: the default code, its check character, and code_config."""

from __future__ import annotations

import math
import random
import re
import string
from collections import Counter

import pytest

from voucherd.codes.generator import (
    ALPHANUMERIC,
    DEFAULT_ALPHABET,
    DEFAULT_CODE_LENGTH,
    DEFAULT_SPEC,
    MAX_CODE_LENGTH,
    VOUCHERIFY_DEFAULT_LENGTH,
    CodeConfigError,
    CodeSpec,
    capacity,
    check_character,
    has_default_shape,
    is_mistyped,
    spec_from_config,
    validate_code_config,
)

# A fixed seed for the choice of typos only: the codes themselves come from the CSPRNG.
_RNG = random.Random(20261122)


def _default_codes(count: int) -> list[str]:
    return spec_from_config(None).generate(count)


class TestDefaultCode:
    def test_alphabet_has_32_symbols_and_no_look_alikes(self) -> None:
        assert len(DEFAULT_ALPHABET) == 32
        assert len(set(DEFAULT_ALPHABET)) == 32
        assert not set("01IO") & set(DEFAULT_ALPHABET)
        assert set(DEFAULT_ALPHABET) <= set(string.digits + string.ascii_uppercase)

    def test_no_config_is_the_default_spec(self) -> None:
        assert spec_from_config(None) is DEFAULT_SPEC
        assert spec_from_config({}) is DEFAULT_SPEC

    def test_at_least_60_random_bits(self) -> None:
        bits = DEFAULT_SPEC.random_length * math.log2(len(DEFAULT_SPEC.charset))
        assert bits >= 60
        assert DEFAULT_SPEC.space_size >= 2**60

    def test_codes_are_13_characters_of_the_alphabet(self) -> None:
        codes = _default_codes(500)
        assert len(codes) == 500
        assert len(set(codes)) == 500
        assert DEFAULT_CODE_LENGTH == 13
        pattern = re.compile(f"^[{DEFAULT_ALPHABET}]{{13}}$")
        for code in codes:
            assert pattern.match(code), code
            assert has_default_shape(code)
            assert not is_mistyped(code)

    def test_last_character_is_the_check_character(self) -> None:
        for code in _default_codes(200):
            assert code[-1] == check_character(code[:-1])

    def test_generate_zero_is_empty(self) -> None:
        assert DEFAULT_SPEC.generate(0) == []


class TestCheckCharacter:
    """Damm's scheme over GF(32): exhaustive over a few hundred random codes."""

    def test_every_single_substitution_is_caught(self) -> None:
        codes = _default_codes(300)
        checked = 0
        for code in codes:
            for position, original in enumerate(code):
                for replacement in DEFAULT_ALPHABET:
                    if replacement == original:
                        continue
                    typo = code[:position] + replacement + code[position + 1 :]
                    assert is_mistyped(typo), (code, typo)
                    checked += 1
        assert checked == 300 * 13 * 31

    def test_every_adjacent_transposition_is_caught(self) -> None:
        codes = _default_codes(300)
        checked = 0
        for code in codes:
            for position in range(len(code) - 1):
                a, b = code[position], code[position + 1]
                if a == b:
                    continue
                swapped = code[:position] + b + a + code[position + 2 :]
                assert is_mistyped(swapped), (code, swapped)
                checked += 1
        assert checked > 300 * 11  # identical neighbours are rare (1 in 32)

    def test_substitution_and_transposition_on_handmade_bodies(self) -> None:
        # Bodies a random draw would rarely give: runs of one symbol, the alphabet's ends.
        bodies = ["2" * 12, "Z" * 12, DEFAULT_ALPHABET[:12], DEFAULT_ALPHABET[-12:], "2Z" * 6]
        for body in bodies:
            code = body + check_character(body)
            assert not is_mistyped(code)
            for position in range(13):
                for replacement in DEFAULT_ALPHABET:
                    if replacement != code[position]:
                        typo = code[:position] + replacement + code[position + 1 :]
                        assert is_mistyped(typo), typo


class TestIsMistyped:
    def test_valid_default_code_is_not_mistyped(self) -> None:
        code = _default_codes(1)[0]
        assert is_mistyped(code) is False

    def test_wrong_check_character_is_mistyped(self) -> None:
        code = _default_codes(1)[0]
        wrong = next(ch for ch in DEFAULT_ALPHABET if ch != code[-1])
        assert is_mistyped(code[:-1] + wrong) is True

    @pytest.mark.parametrize(
        "code",
        [
            "SUMMER2026",  # not 13 characters
            "ABCDEFGHJKLM",  # 12 characters of the alphabet
            "ABCDEFGHJKLMNP",  # 14 characters of the alphabet
            "abcdefghjkmnp",  # lower case is outside the alphabet
            "ABCDEFGHJKLM0",  # 0 is outside the alphabet
            "ABCDEFGHJKLMI",  # I is outside the alphabet
            "ABC-EFGHJKLMN",  # punctuation
            "",
        ],
    )
    def test_codes_of_another_shape_are_never_mistyped(self, code: str) -> None:
        assert not has_default_shape(code)
        assert is_mistyped(code) is False

    def test_random_13_character_strings_mostly_fail(self) -> None:
        # With one check character, about 1 in 32 random strings passes.
        strings = ["".join(_RNG.choices(DEFAULT_ALPHABET, k=13)) for _ in range(3200)]
        passing = sum(not is_mistyped(s) for s in strings)
        assert 20 <= passing <= 250


class TestCodeConfig:
    def test_length_and_charset(self) -> None:
        spec = spec_from_config({"length": 6, "charset": "ABC"})
        codes = spec.generate(200)
        assert len(set(codes)) == 200
        for code in codes:
            assert len(code) == 6
            assert set(code) <= set("ABC")

    def test_charset_default_is_alphanumeric_of_length_8(self) -> None:
        spec = spec_from_config({"prefix": "X-"})
        assert spec.charset == ALPHANUMERIC
        assert spec.random_length == VOUCHERIFY_DEFAULT_LENGTH
        for code in spec.generate(100):
            assert len(code) == 2 + 8
            assert set(code[2:]) <= set(ALPHANUMERIC)

    def test_prefix_and_postfix(self) -> None:
        spec = spec_from_config(
            {"length": 5, "charset": "0123456789", "prefix": "SUMMER-", "postfix": "-2026"}
        )
        for code in spec.generate(100):
            assert re.fullmatch(r"SUMMER-[0-9]{5}-2026", code), code

    def test_pattern_hashes_are_random_and_the_rest_is_literal(self) -> None:
        spec = spec_from_config({"pattern": "AB-####-##", "charset": "XYZ"})
        assert spec.random_length == 6
        for code in spec.generate(100):
            assert re.fullmatch(r"AB-[XYZ]{4}-[XYZ]{2}", code), code

    def test_pattern_ignores_length(self) -> None:
        spec = spec_from_config({"pattern": "##-##", "length": 20, "charset": "0123456789"})
        for code in spec.generate(50):
            assert re.fullmatch(r"[0-9]{2}-[0-9]{2}", code), code

    def test_pattern_with_prefix_and_postfix(self) -> None:
        spec = spec_from_config(
            {"pattern": "##-##", "prefix": "P", "postfix": "Q", "charset": "ABCDEF"}
        )
        for code in spec.generate(100):
            assert re.fullmatch(r"P[A-F]{2}-[A-F]{2}Q", code), code

    def test_every_character_comes_from_the_charset(self) -> None:
        charset = "!#$%&*+=?@^~"
        spec = spec_from_config({"length": 12, "charset": charset})
        codes = spec.generate(500)
        assert set("".join(codes)) <= set(charset)

    def test_configured_codes_carry_no_check_character(self) -> None:
        spec = spec_from_config({"length": 12, "charset": DEFAULT_ALPHABET})
        assert not spec.check_character
        codes = spec.generate(300)
        assert all(len(c) == 12 for c in codes)
        assert all(not has_default_shape(c) for c in codes)

    def test_configured_codes_of_the_default_shape_always_pass_the_check(self) -> None:
        # So that the cheap typo check never refuses a real code, such codes are redrawn.
        spec = spec_from_config({"length": 13, "charset": DEFAULT_ALPHABET})
        codes = spec.generate(200)
        assert len(set(codes)) == 200
        for code in codes:
            assert has_default_shape(code)
            assert not is_mistyped(code)

    def test_generate_returns_distinct_codes_even_from_a_small_space(self) -> None:
        spec = spec_from_config({"length": 2, "charset": "0123456789"})
        codes = spec.generate(100)
        assert sorted(codes) == [f"{i:02d}" for i in range(100)]

    def test_spec_fields(self) -> None:
        spec = spec_from_config(
            {"length": 4, "charset": "AB", "prefix": "P", "postfix": "S", "pattern": None}
        )
        assert spec == CodeSpec("AB", 4, "P", "S", None)
        assert spec.space_size == 16


class TestValidateCodeConfig:
    @pytest.mark.parametrize(
        ("config", "field"),
        [
            ({"charset": "A"}, "code_config.charset"),
            ({"charset": ""}, "code_config.charset"),
            ({"charset": "ABCA"}, "code_config.charset"),
            ({"charset": "AB C"}, "code_config.charset"),
            ({"charset": "ABé"}, "code_config.charset"),
            ({"charset": "AB\n"}, "code_config.charset"),
            ({"prefix": "A B"}, "code_config.prefix"),
            ({"prefix": "Ä"}, "code_config.prefix"),
            ({"postfix": "\t"}, "code_config.postfix"),
            ({"pattern": "ABCD"}, "code_config.pattern"),
            ({"pattern": "## ##"}, "code_config.pattern"),
            ({"length": 0}, "code_config.length"),
            ({"length": MAX_CODE_LENGTH + 1}, "code_config.length"),
            ({"length": 90, "prefix": "P" * 11}, "code_config"),
            ({"pattern": "#" * 60, "postfix": "S" * 41}, "code_config"),
        ],
    )
    def test_errors_name_the_field(self, config: dict[str, object], field: str) -> None:
        with pytest.raises(CodeConfigError) as caught:
            validate_code_config(config)
        assert caught.value.field == field
        assert caught.value.reason
        assert str(caught.value) == caught.value.reason

    @pytest.mark.parametrize(
        "config",
        [
            {},
            {"length": 1, "charset": "AB"},
            {"length": MAX_CODE_LENGTH},
            {"length": 90, "prefix": "P" * 10},
            {"pattern": "#", "prefix": "A", "postfix": "B"},
            {"pattern": "SALE-####", "charset": "0123456789", "length": 5},
        ],
    )
    def test_good_configs_pass(self, config: dict[str, object]) -> None:
        validate_code_config(config)
        spec = spec_from_config(config)
        assert all(len(c) <= MAX_CODE_LENGTH for c in spec.generate(2))


class TestCapacity:
    def test_is_the_allowed_fraction_of_the_space(self) -> None:
        spec = spec_from_config({"length": 2, "charset": "0123456789"})
        assert spec.space_size == 100
        assert capacity(spec, 0.01) == 1
        assert capacity(spec, 0.5) == 50
        assert capacity(spec, 0.001) == 0

    def test_pattern_counts_only_the_placeholders(self) -> None:
        spec = spec_from_config({"pattern": "AAA-###", "charset": "0123456789"})
        assert spec.space_size == 1000
        assert capacity(spec, 0.01) == 10

    def test_default_code_space(self) -> None:
        assert capacity(DEFAULT_SPEC, 0.01) == int(32**12 * 0.01)


class TestUniformity:
    """Loose bounds, several standard deviations wide, so the tests cannot flake."""

    def test_default_code_characters_are_uniform(self) -> None:
        codes = _default_codes(20_000)
        counts = Counter("".join(code[:-1] for code in codes))
        expected = 20_000 * 12 / 32  # 7,500; one standard deviation is about 85
        assert set(counts) == set(DEFAULT_ALPHABET)
        for ch in DEFAULT_ALPHABET:
            assert abs(counts[ch] - expected) < expected * 0.08, (ch, counts[ch])

    def test_every_position_uses_the_whole_alphabet(self) -> None:
        codes = _default_codes(5_000)
        for position in range(13):
            seen = Counter(code[position] for code in codes)
            assert set(seen) == set(DEFAULT_ALPHABET), position
            # 5,000 / 32 is about 156 per symbol; a standard deviation is about 12.
            assert max(seen.values()) < 260
            assert min(seen.values()) > 70

    def test_charset_not_dividing_256_is_not_biased(self) -> None:
        # 256 % 60 == 16: mapping bytes modulo 60 would make 16 symbols 25% more likely than
        # the other 44. Rejection sampling must remove that bias.
        charset = (string.ascii_letters + string.digits)[:60]
        spec = spec_from_config({"length": 20, "charset": charset})
        counts = Counter("".join(spec.generate(30_000)))
        expected = 30_000 * 20 / 60  # 10,000; one standard deviation is about 100
        for ch in charset:
            assert abs(counts[ch] - expected) < 600, (ch, counts[ch])
