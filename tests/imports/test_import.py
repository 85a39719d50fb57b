"""Importing live vouchers: 10,000 in every state, then every face answering for them as for
minted ones; the ledger; a re-run; refusals named by line and column; all or nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.factories.vouchers import issue
from tests.support.imports import Row, csv_of, gift_rows, run_worker, to_csv
from voucherd.campaigns.models import Campaign
from voucherd.db.engine import Database

COUNT = 10_000


def start(
    api: TestClient, tenant: Tenant, campaign: str, body: bytes, **query: Any
) -> dict[str, Any]:
    response = api.post(
        f"/api/v1/campaigns/{campaign}/imports",
        headers={**tenant.headers, "Content-Type": "text/csv"},
        content=body,
        params=query,
    )
    assert response.status_code == 202, response.text
    return dict(response.json())


def imported(api: TestClient, db: Database, tenant: Tenant, *args: Any, **query: Any) -> Any:
    operation = start(api, tenant, *args, **query)
    run_worker(db)
    shown = api.get(f"/api/v1/operations/{operation['id']}", headers=tenant.headers).json()
    assert shown["status"] == "Completed", shown
    return shown["result"]


def unbalanced(db: Database, campaign: str) -> list[Any]:
    """Vouchers whose cached balance is not the sum of their ledger."""
    with db.unit_of_work(write=False) as session:
        return list(
            session.execute(
                text(
                    "SELECT v.code, v.balance, coalesce(sum(l.delta), 0) FROM voucher v "
                    "LEFT JOIN ledger_entry l ON l.voucher_id = v.id WHERE v.campaign_id = :c "
                    "GROUP BY v.id, v.code, v.balance HAVING coalesce(sum(l.delta), 0) != v.balance"
                ),
                {"c": campaign},
            ).all()
        )


def voucher(api: TestClient, tenant: Tenant, code: str) -> dict[str, Any]:
    response = api.get(f"/api/v1/vouchers/{code}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def validate(api: TestClient, tenant: Tenant, code: str, **body: Any) -> Any:
    return api.post("/api/v1/validations", headers=tenant.headers, json={"code": code, **body})


class TestTenThousand:
    @pytest.fixture
    def moved(
        self, api: TestClient, db: Database
    ) -> tuple[Tenant, Campaign, list[Row], dict[str, Any]]:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, max_value=10_000)
        rows = gift_rows(COUNT)
        result = imported(api, db, tenant, campaign.id, to_csv(rows))
        return tenant, campaign, rows, result

    def test_every_face_answers_for_them_as_for_minted_ones(
        self, api: TestClient, db: Database, moved: tuple[Tenant, Campaign, list[Row], Any]
    ) -> None:
        tenant, campaign, rows, result = moved
        assert (result["imported"], result["already_present"], result["rejected"]) == (
            COUNT,
            0,
            0,
        )
        assert unbalanced(db, campaign.id) == []
        minted = issue(db, tenant, campaign, value=5000).voucher
        spent = next(r for r in rows if r.state == "ACTIVE" and r.balance < r.value)
        whole = next(r for r in rows if r.state == "ACTIVE" and r.balance == r.value)

        shown, native = voucher(api, tenant, spent.code), voucher(api, tenant, minted.code)
        assert shown.keys() == native.keys()
        assert (shown["state"], shown["balance"], shown["value"]) == ("ACTIVE", 3766, 5000)
        assert shown["customer_ref"] == spent.holder

        checked = validate(api, tenant, spent.code, amount=1000)
        assert checked.status_code == 200, checked.text
        assert (
            checked.json().keys() == validate(api, tenant, minted.code, amount=1000).json().keys()
        )
        redeemed = api.post(
            "/api/v1/redemptions", headers=tenant.headers, json={"code": spent.code, "amount": 1000}
        )
        assert redeemed.status_code == 201, redeemed.text
        assert voucher(api, tenant, spent.code)["balance"] == 2766
        too_much = validate(api, tenant, spent.code, amount=2767)
        assert too_much.json()["valid"] is False or too_much.status_code >= 400

        for state in ("DISABLED", "CANCELLED", "REDEEMED"):
            row = next(r for r in rows if r.state == state)
            refused = validate(api, tenant, row.code, amount=1)
            assert refused.status_code != 200 or refused.json()["valid"] is False, refused.text
            assert voucher(api, tenant, row.code)["state"] == state

        token = _token(db, spent.code)
        page = api.get(f"/v/{token}")
        assert page.status_code == 200
        assert spent.code in page.text
        assert "27.66" in page.text

        vf = api.get(f"/v1/vouchers/{whole.code}", headers=tenant.headers)
        assert vf.status_code == 200, vf.text
        vf_minted = api.get(f"/v1/vouchers/{minted.code}", headers=tenant.headers).json()
        assert vf.json().keys() == vf_minted.keys()
        assert vf.json()["gift"]["balance"] == 5000
        assert vf.json()["code"] == whole.code

        cancelled = api.post(
            "/Voucher/CancelVoucher",
            headers={"X-API-KEY": tenant.key.token},
            json={"voucherCode": whole.code},
        )
        assert cancelled.json() == {"successfulRequest": True}
        assert voucher(api, tenant, whole.code)["state"] == "CANCELLED"
        assert unbalanced(db, campaign.id) == []

    def test_a_rerun_imports_nothing_twice(
        self, api: TestClient, db: Database, moved: tuple[Tenant, Campaign, list[Row], Any]
    ) -> None:
        tenant, campaign, rows, _ = moved
        again = imported(api, db, tenant, campaign.id, to_csv(rows))
        assert (again["imported"], again["already_present"], again["rejected"]) == (0, COUNT, 0)
        with db.unit_of_work(write=False) as session:
            stored = session.scalar(
                text("SELECT count(*) FROM voucher WHERE campaign_id = :c"), {"c": campaign.id}
            )
        assert stored == COUNT


def _token(db: Database, code: str) -> str:
    with db.unit_of_work(write=False) as session:
        return str(
            session.scalar(text("SELECT public_token FROM voucher WHERE code = :c"), {"c": code})
        )


class TestRefusals:
    def test_each_bad_row_is_named_by_line_and_column_and_the_good_ones_go_in(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, max_value=10_000)
        taken = issue(db, tenant, make_campaign(db, tenant), value=100).voucher.code
        lines = [
            {"code": "GOOD-1", "value": "5000", "balance": "100"},  # line 2
            {"code": "BAD-DATE", "value": "5000", "expiration_date": "31/12/2027"},  # 3
            {"code": "BAD-VALUE", "value": "20000"},  # 4
            {"code": "GOOD-1", "value": "5000"},  # 5: the code again
            {"code": taken, "value": "5000"},  # 6: in use elsewhere
            {"code": "BAD-STATE", "value": "5000", "state": "LOST"},  # 7
            {"code": "BAD-BALANCE", "value": "5000", "balance": "6000"},  # 8
            {"code": "GOOD-2", "value": "700", "state": "disabled"},  # 9
        ]
        result = imported(api, db, tenant, campaign.id, csv_of(lines))
        named = {(p["line"], p["column"]) for p in result["problems"]}
        assert named == {
            (3, "expiration_date"),
            (4, "value"),
            (5, "code"),
            (6, "code"),
            (7, "state"),
            (8, "balance"),
        }
        assert {p["code"] for p in result["problems"] if p["line"] == 4} == {"value_above_maximum"}
        assert (result["imported"], result["rejected"]) == (2, 6)
        assert voucher(api, tenant, "GOOD-2")["state"] == "DISABLED"
        assert voucher(api, tenant, taken)["campaign_id"] != campaign.id

    def test_a_json_lines_row_with_a_wrong_key_or_broken_json_is_named(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant)
        body = "\n".join(
            [
                json.dumps({"code": "J-1", "value": 100, "metadata": {"a": 1}}),
                json.dumps({"code": "J-2", "colour": "red"}),
                '{"code": "J-3",',
                json.dumps({"code": "J-4", "customer_source_id": "c-9", "customer_name": "Ada"}),
                json.dumps({"code": "J-5", "metadata": {"note": "a\u0000b"}}),
            ]
        ).encode()
        result = imported(api, db, tenant, campaign.id, body, format="jsonl")
        assert [(p["line"], p["column"]) for p in result["problems"]] == [
            (2, "colour"),
            (3, None),
            (5, "metadata"),
        ]
        assert result["imported"] == 2
        assert voucher(api, tenant, "J-1")["metadata"] == {"a": 1}
        assert voucher(api, tenant, "J-4")["customer_ref"] == "c-9"

    def test_an_unknown_csv_column_refuses_the_file_naming_line_1(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant)
        response = api.post(
            f"/api/v1/campaigns/{campaign.id}/imports",
            headers={**tenant.headers, "Content-Type": "text/csv"},
            content=b"code,colour\nA-1,red\n",
        )
        assert response.status_code == 422
        assert "line 1, column 'colour'" in response.json()["detail"]

    def test_all_or_nothing_imports_nothing_when_one_row_is_bad(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, max_value=10_000)
        rows = gift_rows(30)
        body = to_csv(rows) + b"LAST,GIFT,99999,,,,,,,,,,,\n"
        result = imported(api, db, tenant, campaign.id, body, all_or_nothing="true")
        assert result["rolled_back"] is True
        assert (result["imported"], result["rejected"]) == (0, 1)
        assert result["problems"][0]["line"] == 32
        assert (
            api.get(f"/api/v1/vouchers/{rows[0].code}", headers=tenant.headers).status_code == 404
        )
        result = imported(api, db, tenant, campaign.id, to_csv(rows), all_or_nothing="true")
        assert (result["imported"], result["rolled_back"]) == (30, False)
