"""The cashier's till: check a code, redeem part of a gift card, a double submit spends once."""

from __future__ import annotations

import re

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant
from tests.factories.vouchers import issue
from tests.support.console import browser, make_operator, sign_in
from voucherd.codes.generator import is_mistyped
from voucherd.db.engine import Database
from voucherd.vouchers import service as vouchers


def _gift_card(db: Database, tenant: Tenant, **holder: str) -> str:
    campaign = make_campaign(db, tenant, type="GIFT", currency="GBP", default_value=5000)
    record = issue(db, tenant, campaign, **({"holder": holder} if holder else {}))
    return record.voucher.code


class TestTill:
    def test_check_then_redeem_part_and_a_double_submit_spends_once(self, db: Database) -> None:
        tenant = Tenant(db)
        code = _gift_card(db, tenant, name="Ada Lovelace", address="12 Square", postcode="SW1")
        cashier = make_operator(db, tenant, "cashier")
        with browser(db) as client:
            csrf = sign_in(client, cashier.email)
            checked = client.post("/console/till/check", data={"csrf": csrf, "code": code})
            assert checked.status_code == 200
            assert "£50.00" in checked.text
            assert "Valid now" in checked.text
            assert "Ada Lovelace" in checked.text
            assert "SW1" in checked.text
            sale = re.search(r'name="sale" value="([^"]+)"', checked.text)
            assert sale
            form = {"csrf": csrf, "code": code, "amount": "12.50", "sale": sale.group(1)}
            first = client.post("/console/till/redeem", data=form)
            again = client.post("/console/till/redeem", data=form)
        assert "balance now £37.50" in first.text
        assert "already redeemed" in again.text
        assert "balance now £37.50" in again.text
        voucher = vouchers.get_voucher(db, tenant.caller, code).voucher
        assert voucher.balance == 3750
        events = vouchers.list_events(db, tenant.caller, code)
        assert [e.actor for e in events if e.kind == "redeemed"] == [cashier.id]

    def test_a_mistyped_code_is_named_and_kept(self, db: Database) -> None:
        tenant = Tenant(db)
        code = _gift_card(db, tenant)
        typo = code[:-1] + ("A" if code[-1] != "A" else "B")
        assert is_mistyped(typo)
        cashier = make_operator(db, tenant, "cashier")
        with browser(db) as client:
            csrf = sign_in(client, cashier.email)
            answer = client.post("/console/till/check", data={"csrf": csrf, "code": typo})
        assert 'id="e-code"' in answer.text
        assert "typo" in answer.text
        assert f'value="{typo}"' in answer.text

    def test_too_much_is_refused_with_the_reason(self, db: Database) -> None:
        tenant = Tenant(db)
        code = _gift_card(db, tenant)
        cashier = make_operator(db, tenant, "cashier")
        with browser(db) as client:
            csrf = sign_in(client, cashier.email)
            answer = client.post(
                "/console/till/redeem",
                data={"csrf": csrf, "code": code, "amount": "80", "sale": "s1"},
            )
            typo = client.post(
                "/console/till/redeem",
                data={"csrf": csrf, "code": code, "amount": "1.234", "sale": "s2"},
            )
        assert answer.status_code == 200
        assert 'id="e-amount"' in answer.text
        assert 'id="e-amount"' in typo.text
        assert vouchers.get_voucher(db, tenant.caller, code).voucher.balance == 5000

    def test_another_tenants_voucher_is_not_found(self, db: Database) -> None:
        code = _gift_card(db, Tenant(db))
        cashier = make_operator(db, Tenant(db), "cashier")
        with browser(db) as client:
            csrf = sign_in(client, cashier.email)
            answer = client.post("/console/till/check", data={"csrf": csrf, "code": code})
        assert "£50.00" not in answer.text
        assert "no such voucher" in answer.text.lower()
