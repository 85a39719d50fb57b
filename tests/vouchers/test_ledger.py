"""A voucher's ledger: every balance change, oldest first, summing to the balance."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.factories.campaigns import make_campaign
from tests.factories.redemptions import make_redemption
from tests.factories.tenants import Tenant, make_tenant
from tests.factories.vouchers import issue
from voucherd.db.engine import Database
from voucherd.errors import NotFound
from voucherd.vouchers import service

VOUCHERS = "/api/v1/vouchers"


class TestListLedger:
    def test_issue_redemption_and_adjustment_sum_to_the_balance(self, db: Database) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, type="GIFT", currency="EUR", default_value=2000)
        voucher = issue(db, tenant, campaign).voucher
        make_redemption(db, tenant, code=voucher.code, amount=500)
        service.adjust_balance(db, tenant.caller, voucher.id, 150, "goodwill")

        entries = service.list_ledger(db, tenant.caller, voucher.code)

        assert [(e.kind, e.delta) for e in entries] == [
            ("ISSUE", 2000),
            ("REDEMPTION", -500),
            ("ADJUSTMENT", 150),
        ]
        assert sum(e.delta for e in entries) == 1650
        assert service.get_voucher(db, tenant.caller, voucher.id).voucher.balance == 1650

    def test_another_tenants_voucher_is_not_found(self, db: Database) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, type="GIFT", currency="EUR", default_value=2000)
        voucher = issue(db, tenant, campaign).voucher
        stranger = make_tenant(db)
        with pytest.raises(NotFound):
            service.list_ledger(db, stranger.caller, voucher.id)

    def test_over_the_native_api(self, api: TestClient, db: Database) -> None:
        tenant: Tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, type="GIFT", currency="EUR", default_value=1000)
        voucher = issue(db, tenant, campaign).voucher
        make_redemption(db, tenant, code=voucher.code, amount=400)

        answer = api.get(f"{VOUCHERS}/{voucher.id}/ledger", headers=tenant.headers)

        assert answer.status_code == 200, answer.text
        rows = answer.json()["data"]
        assert [(r["object"], r["kind"], r["delta"]) for r in rows] == [
            ("ledger_entry", "ISSUE", 1000),
            ("ledger_entry", "REDEMPTION", -400),
        ]
        assert rows[1]["redemption_id"]
        missing = api.get(f"{VOUCHERS}/v_nothing/ledger", headers=tenant.headers)
        assert missing.status_code == 404
