"""A code as a holder types it (issue 15, point 4): voucherd's own codes are read in any case and in
groups split by spaces or dashes, a typo of one is told "mistyped", and every other code is
matched exactly as it is stored. The rule (codes/typed.py) alone, then through the native API on
both databases; every other face is in tests/dialects/test_typed_codes.py."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant
from tests.factories.vouchers import issue
from tests.support.rows import count_rows
from voucherd.api.problems import PROBLEM_JSON
from voucherd.codes.generator import DEFAULT_ALPHABET, DEFAULT_SPEC, check_character
from voucherd.codes.typed import CodeQuery, code_query
from voucherd.db.engine import Database
from voucherd.errors import CodeMistyped, NotFound

MISTYPED = "this code is mistyped — check it and try again"


def changed_last(code: str) -> str:
    other = DEFAULT_ALPHABET[(DEFAULT_ALPHABET.index(code[-1]) + 1) % len(DEFAULT_ALPHABET)]
    return code[:-1] + other


def swapped(code: str) -> str:
    """Two different neighbours swapped (the first such pair), as a hurried thumb does."""
    i = next(i for i in range(len(code) - 1) if code[i] != code[i + 1])
    return code[:i] + code[i + 1] + code[i] + code[i + 2 :]


def typos(code: str) -> dict[str, str]:
    return {"changed last": changed_last(code), "swapped": swapped(code)}


def loose_forms(code: str) -> dict[str, str]:
    """How people copy a code from an SMS or a printout (4-4-5 groups)."""
    groups = [code[:4], code[4:8], code[8:]]
    return {
        "lower": code.lower(),
        "spaced": " ".join(groups),
        "dashed": "-".join(groups),
        "lower spaced": " ".join(groups).lower(),
        "padded": f"  {code.lower()} ",
        "en dashes": "\u2013".join(groups).lower(),
    }


class TestCodeQuery:
    CODE = DEFAULT_SPEC.generate(1)[0]

    def test_a_code_as_drawn_is_asked_as_it_is(self) -> None:
        assert code_query(self.CODE) == CodeQuery(exact=self.CODE, drawn=None)

    @pytest.mark.parametrize("form", ["lower", "dashed"])
    def test_forms_that_may_be_stored_are_asked_as_typed_and_as_drawn(self, form: str) -> None:
        typed = loose_forms(self.CODE)[form]
        assert code_query(typed) == CodeQuery(exact=typed, drawn=self.CODE)

    @pytest.mark.parametrize("form", ["spaced", "lower spaced", "en dashes"])
    def test_forms_no_stored_code_has_are_asked_as_drawn_only(self, form: str) -> None:
        assert code_query(loose_forms(self.CODE)[form]) == CodeQuery(exact=None, drawn=self.CODE)

    @pytest.mark.parametrize("kind", ["changed last", "swapped"])
    def test_a_typo_is_mistyped_without_asking(self, kind: str) -> None:
        typo = typos(self.CODE)[kind]
        for typed in (typo, f"{typo[:4]} {typo[4:]}".lower(), f" {typo} "):
            with pytest.raises(CodeMistyped) as refused:
                code_query(typed, field="code")
            assert (refused.value.field, refused.value.detail) == ("code", MISTYPED)
            assert refused.value.status == 404

    def test_a_typo_that_may_be_a_stored_code_is_asked_and_missed_as_mistyped(self) -> None:
        typed = changed_last(self.CODE).lower()
        query = code_query(typed)
        assert query == CodeQuery(exact=typed, drawn=None, mistyped=True)
        assert isinstance(query.miss("code"), CodeMistyped)

    @pytest.mark.parametrize(
        "typed", ["SUMMER-2026", "summer2026", "ab-12", "ABCDEFGHJKLM", "v_01JF0000000000"]
    )
    def test_other_codes_are_asked_exactly(self, typed: str) -> None:
        assert code_query(typed) == CodeQuery(exact=typed, drawn=None)
        assert type(code_query(typed).miss("code")) is NotFound

    @pytest.mark.parametrize("typed", ["summer 2026", "Ä1234", " ", "ab\tcd"])
    def test_text_no_stored_code_can_be_is_not_found_without_asking(self, typed: str) -> None:
        with pytest.raises(NotFound) as refused:
            code_query(typed)
        assert type(refused.value) is NotFound

    def test_every_form_of_every_typo_answers_mistyped(self) -> None:
        for code in DEFAULT_SPEC.generate(200):
            for typo in typos(code).values():
                for typed in (typo, *loose_forms(typo).values()):
                    assert _answer_to_a_miss(typed) is CodeMistyped, typed


def _answer_to_a_miss(typed: str) -> type[NotFound]:
    """What a lookup of ``typed`` answers when no stored code is it."""
    try:
        query = code_query(typed)
    except NotFound as refused:
        return type(refused)
    return type(query.miss("code"))


# --- through the native API, on both databases --------------------------------------------------


def redeem(api: TestClient, tenant: Tenant, code: str) -> httpx.Response:
    return api.post("/api/v1/redemptions", headers=tenant.headers, json={"code": code, "amount": 1})


def validate(api: TestClient, tenant: Tenant, code: str) -> dict[str, Any]:
    answer = api.post(
        "/api/v1/validations", headers=tenant.headers, json={"code": code, "amount": 1}
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def assert_mistyped(answer: httpx.Response, field: str) -> None:
    assert answer.status_code == 404, answer.text
    assert answer.headers["content-type"] == PROBLEM_JSON
    problem = answer.json()
    assert problem["code"] == "code_mistyped"
    assert problem["type"] == "urn:voucherd:problem:code_mistyped"
    assert problem["detail"] == MISTYPED
    assert problem["errors"] == [{"field": field, "reason": MISTYPED}]


class TestNativeTill:
    @pytest.mark.parametrize("kind", ["changed last", "swapped"])
    def test_a_typo_answers_mistyped_on_every_path(
        self, api: TestClient, db: Database, tenant: Tenant, kind: str
    ) -> None:
        code = issue(db, tenant, make_campaign(db, tenant)).voucher.code
        typo = typos(code)[kind]
        before = count_rows(db)

        assert_mistyped(redeem(api, tenant, typo), "code")
        shown = validate(api, tenant, typo)
        assert (shown["valid"], shown["reason"], shown["detail"]) == (
            False,
            "code_mistyped",
            MISTYPED,
        )
        assert_mistyped(api.get(f"/api/v1/vouchers/{typo}", headers=tenant.headers), "voucher")
        for action in ("cancel", "disable", "enable"):
            changed = api.post(f"/api/v1/vouchers/{typo}/{action}", headers=tenant.headers)
            assert_mistyped(changed, "voucher")
        assert count_rows(db) == before

    @pytest.mark.parametrize("form", list(loose_forms("ABCDEFGHJKLMN")))
    def test_loose_forms_of_a_drawn_code_redeem_and_validate(
        self, api: TestClient, db: Database, tenant: Tenant, form: str
    ) -> None:
        voucher = issue(db, tenant, make_campaign(db, tenant)).voucher
        typed = loose_forms(voucher.code)[form]

        shown = validate(api, tenant, typed)
        assert shown["valid"] is True, shown
        assert shown["voucher"]["code"] == voucher.code
        redeemed = redeem(api, tenant, typed)
        assert redeemed.status_code == 201, redeemed.text
        assert (redeemed.json()["code"], redeemed.json()["voucher_id"]) == (
            voucher.code,
            voucher.id,
        )
        got = api.get(f"/api/v1/vouchers/{typed}", headers=tenant.headers)
        assert got.status_code == 200, got.text
        assert got.json()["id"] == voucher.id

    def test_lower_case_with_spaces_of_no_code_is_refused_in_words(
        self, api: TestClient, tenant: Tenant
    ) -> None:
        """It used to be "String should match pattern '^[\\x21-\\x7e]+$'"."""
        answer = redeem(api, tenant, "summer sale 2026")
        assert answer.status_code == 404, answer.text
        assert answer.json()["detail"] == "no such voucher"
        assert "pattern" not in answer.text

    def test_an_explicit_code_with_a_space_is_refused_in_words(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        campaign = make_campaign(db, tenant)
        answer = api.post(
            "/api/v1/vouchers",
            headers=tenant.headers,
            json={"campaign": campaign.id, "code": "summer sale"},
        )
        assert answer.status_code == 422, answer.text
        assert "pattern" not in answer.text
        assert "without spaces" in answer.text


class TestCodeConfigCodesMatchedExactly:
    def test_lower_case_of_an_upper_case_custom_code_is_not_found(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        # A custom code of the default shape: 13 characters of the alphabet, check passing, so
        # only the campaign's code_config tells it from a drawn one.
        body = "ABCDEFGHJKLM"
        custom = body + check_character(body)
        config = {"charset": DEFAULT_ALPHABET, "length": 13}
        campaign = make_campaign(db, tenant, code_config=config)
        issue(db, tenant, campaign, code=custom)

        assert redeem(api, tenant, custom).status_code == 201
        for typed in (custom.lower(), f"{custom[:4]}-{custom[4:]}", f"{custom[:4]} {custom[4:]}"):
            missed = redeem(api, tenant, typed)
            assert (missed.status_code, missed.json()["code"]) == (404, "not_found"), typed

    @pytest.mark.parametrize("pattern", ["ab-####-####", "Gift-##########"])
    def test_lower_case_and_dashed_custom_codes_are_found_as_they_are(
        self, api: TestClient, db: Database, tenant: Tenant, pattern: str
    ) -> None:
        config = {"pattern": pattern, "charset": "23456789abcdefghjkmnpqrstuvwxyz"}
        campaign = make_campaign(db, tenant, code_config=config, vouchers_count=3)
        listed = api.get(
            "/api/v1/vouchers", headers=tenant.headers, params={"campaign": campaign.id}
        ).json()["data"]
        code = listed[0]["code"]

        assert validate(api, tenant, code)["valid"] is True
        assert redeem(api, tenant, code).status_code == 201
        upper = redeem(api, tenant, code.upper())
        assert (upper.status_code, upper.json()["code"]) == (404, "not_found")
