"""Voucher codes: drawn from the OS CSPRNG, shaped by a Voucherify-style ``code_config``.

Two kinds of code exist:

* **Default codes** (no ``code_config``): 12 characters from a 32-letter alphabet without
  look-alikes (no 0/O, 1/I) — exactly 60 random bits — then one check character. The check
  character is Damm's scheme over GF(32): ``x∘y = αx ⊕ y`` is a totally anti-symmetric
  quasigroup for any field element α ∉ {0, 1}, so every single-character typo and every swap of
  two neighbours fails the check, and a mistyped code is refused without a database lookup.
* **Configured codes**: ``length``, ``charset``, ``prefix``, ``postfix`` and ``pattern`` (``#``
  is a random character) honoured to the letter, with no check character added.

So that the cheap check never refuses a real code, no stored code may have the default shape
(13 characters of the default alphabet) with a failing check: configured codes of that shape are
redrawn, and an explicit code of that shape is refused at creation.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# 32 symbols: digits 2-9 and A-Z without I and O (look-alikes of 1 and 0). The order is fixed
# forever: the check character depends on it.
DEFAULT_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
DEFAULT_RANDOM_LENGTH = 12
DEFAULT_CODE_LENGTH = DEFAULT_RANDOM_LENGTH + 1

ALPHANUMERIC = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
VOUCHERIFY_DEFAULT_LENGTH = 8
MAX_CODE_LENGTH = 100

_INDEX = {ch: i for i, ch in enumerate(DEFAULT_ALPHABET)}


def _times_alpha(x: int) -> int:
    """Multiply by α = x in GF(2⁵) modulo the primitive polynomial x⁵ + x² + 1."""
    x <<= 1
    return x ^ 0b100101 if x & 0b100000 else x


_ALPHA_TIMES = [_times_alpha(i) for i in range(32)]
_DAMM = [[_ALPHA_TIMES[i] ^ j for j in range(32)] for i in range(32)]


def _fold(text: str) -> int:
    interim = 0
    for ch in text:
        interim = _DAMM[interim][_INDEX[ch]]
    return interim


def check_character(body: str) -> str:
    """The character that makes the Damm fold of ``body + c`` zero."""
    return DEFAULT_ALPHABET[_ALPHA_TIMES[_fold(body)]]


def has_default_shape(code: str) -> bool:
    return len(code) == DEFAULT_CODE_LENGTH and all(ch in _INDEX for ch in code)


def is_mistyped(code: str) -> bool:
    """True when ``code`` cannot be any stored code: default shape with a failing check."""
    return has_default_shape(code) and _fold(code) != 0


class CodeConfigError(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class CodeSpec:
    charset: str
    random_length: int
    prefix: str = ""
    postfix: str = ""
    pattern: str | None = None
    check_character: bool = False

    @property
    def space_size(self) -> int:
        return len(self.charset) ** self.random_length

    def generate(self, count: int) -> list[str]:
        """``count`` distinct codes (distinct among themselves; the database holds global
        uniqueness)."""
        if count > self.space_size:
            raise ValueError(f"{count} distinct codes cannot be drawn from {self.space_size}")
        codes: set[str] = set()
        while len(codes) < count:
            for body in _random_strings(self.charset, self.random_length, count - len(codes)):
                code = self._assemble(body)
                if self.check_character or not is_mistyped(code):
                    codes.add(code)
        return list(codes)

    def _assemble(self, body: str) -> str:
        if self.check_character:
            return body + check_character(body)
        if self.pattern is not None:
            chars = iter(body)
            body = "".join(next(chars) if ch == "#" else ch for ch in self.pattern)
        return f"{self.prefix}{body}{self.postfix}"


DEFAULT_SPEC = CodeSpec(
    charset=DEFAULT_ALPHABET, random_length=DEFAULT_RANDOM_LENGTH, check_character=True
)


def spec_from_config(config: dict[str, Any] | None) -> CodeSpec:
    """Turn a stored/validated ``code_config`` into a spec; ``None`` is the default code."""
    if not config:
        return DEFAULT_SPEC
    charset = config.get("charset") or ALPHANUMERIC
    prefix = config.get("prefix") or ""
    postfix = config.get("postfix") or ""
    pattern = config.get("pattern") or None
    if pattern is not None:
        random_length = pattern.count("#")
        # A pattern carries its fixed characters itself; prefix and postfix still wrap it, as
        # in Voucherify.
        return CodeSpec(charset, random_length, prefix, postfix, pattern)
    length = config.get("length") or VOUCHERIFY_DEFAULT_LENGTH
    return CodeSpec(charset, int(length), prefix, postfix, None)


def validate_code_config(config: dict[str, Any]) -> None:
    """Raise :class:`CodeConfigError` naming the field when a config cannot make codes."""
    charset = config.get("charset")
    if charset is not None:
        if len(charset) < 2:
            raise CodeConfigError("code_config.charset", "needs at least 2 characters")
        if len(set(charset)) != len(charset):
            raise CodeConfigError("code_config.charset", "has repeated characters")
        if not all(33 <= ord(ch) < 127 for ch in charset):
            raise CodeConfigError(
                "code_config.charset", "only printable ASCII characters without spaces"
            )
    for name in ("prefix", "postfix"):
        value = config.get(name)
        if value is not None and not all(32 < ord(ch) < 127 for ch in value):
            raise CodeConfigError(
                f"code_config.{name}", "only printable ASCII characters without spaces"
            )
    pattern = config.get("pattern")
    if pattern is not None:
        if "#" not in pattern:
            raise CodeConfigError("code_config.pattern", "needs at least one '#' placeholder")
        if not all(32 < ord(ch) < 127 for ch in pattern):
            raise CodeConfigError(
                "code_config.pattern", "only printable ASCII characters without spaces"
            )
    length = config.get("length")
    if length is not None and pattern is None and not 1 <= int(length) <= MAX_CODE_LENGTH:
        raise CodeConfigError("code_config.length", f"must be between 1 and {MAX_CODE_LENGTH}")
    spec = spec_from_config(config)
    # Assemble from the spec's own charset: an empty config is the default spec, whose check
    # character is only defined over the default alphabet.
    total = len(spec._assemble(spec.charset[0] * spec.random_length))
    if total > MAX_CODE_LENGTH:
        raise CodeConfigError("code_config", f"codes would be longer than {MAX_CODE_LENGTH}")


def capacity(spec: CodeSpec, max_fill: float) -> int:
    """How many codes one campaign may draw from ``spec`` (see Settings.max_code_space_fill)."""
    return int(spec.space_size * max_fill)


def _random_strings(charset: str, length: int, count: int) -> Iterable[str]:
    """Uniform random strings over ``charset``, generated in bulk.

    Bytes at or above the largest multiple of ``len(charset)`` are dropped before mapping
    (rejection sampling), so every character is exactly equally likely.
    """
    if length == 0:
        yield from ("" for _ in range(count))
        return
    size = len(charset)
    limit = 256 - 256 % size
    table = bytes(ord(charset[b % size]) if b < limit else 0 for b in range(256))
    rejected = bytes(range(limit, 256))
    needed = length * count
    chars = bytearray()
    while len(chars) < needed:
        missing = needed - len(chars)
        chars += os.urandom(missing + missing * (256 - limit) // limit + 16).translate(
            table, rejected
        )
    text = chars[:needed].decode("ascii")
    for i in range(0, needed, length):
        yield text[i : i + length]
