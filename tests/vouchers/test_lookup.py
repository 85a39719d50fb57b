"""A voucher is named by its id or its code. Every id starts ``v_``, so a reference that does
not is looked up by code alone (one probe of the code's unique index on PostgreSQL); one that
does may be either, and the text as typed wins, as before."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import make_tenant
from tests.factories.vouchers import issue
from voucherd.db.engine import Database
from voucherd.vouchers.lookup import _BY, _BY_CODE, RowLookup, Width, may_be_voucher_id


def test_only_a_reference_shaped_like_an_id_is_looked_up_by_id() -> None:
    assert may_be_voucher_id("v_01kbx3y8g7m4d2v8m5q1w6z9tr")
    assert not may_be_voucher_id("4URXNSPQQTERD")
    assert not may_be_voucher_id("SUMMER-2026")
    by_code = RowLookup("ten_1", "SUMMER-2026", field="code", width=Width.JUDGED)
    assert by_code.statement is _BY_CODE[Width.JUDGED][0]
    by_either = RowLookup("ten_1", "v_01kbx3y8g7m4d2v8m5q1w6z9tr", field="code", width=Width.JUDGED)
    assert by_either.statement is _BY[Width.JUDGED][0]


def test_a_voucher_is_found_by_its_id_its_code_and_a_code_shaped_like_an_id(
    client: TestClient, db: Database
) -> None:
    tenant = make_tenant(db)
    campaign = make_campaign(db, tenant, type="GIFT", default_value=500)
    drawn = issue(db, tenant, campaign).voucher
    odd = issue(db, tenant, campaign, code="v_not-an-id").voucher
    for ref, expected in (
        (drawn.id, drawn.code),
        (drawn.code, drawn.code),
        (drawn.code.lower(), drawn.code),  # as typed by a person: the drawn code all the same
        (odd.code, odd.code),
        (odd.id, odd.code),
    ):
        answer = client.post(
            "/api/v1/validations", json={"code": ref, "amount": 100}, headers=tenant.headers
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["voucher"]["code"] == expected, ref
    missing = client.post(
        "/api/v1/validations", json={"code": "v_nosuchvoucher", "amount": 1}, headers=tenant.headers
    )
    assert missing.json()["reason"] == "not_found"
