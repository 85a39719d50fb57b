"""A Voucherify redemption with a customer and stacked redeemables is one transaction.

The fault is real: a database trigger, created by the test, refuses the second redemption row,
after the first voucher has been spent and its redemption written in the same transaction.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from tests.factories.tenants import Tenant, make_tenant
from voucherd.customers.models import Customer
from voucherd.db.engine import Database
from voucherd.idempotency.models import IdempotencyRecord
from voucherd.redemptions.models import Redemption
from voucherd.vouchers.models import LedgerEntry, Voucher, VoucherEvent

_SQLITE_FAULT = """
CREATE TRIGGER fail_second_redemption BEFORE INSERT ON redemption
WHEN (SELECT count(*) FROM redemption WHERE tenant_id = NEW.tenant_id) >= 1
BEGIN SELECT RAISE(ABORT, 'injected fault between two redemptions'); END
"""
_POSTGRESQL_FAULT = (
    """
CREATE FUNCTION fail_second_redemption() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT count(*) FROM redemption WHERE tenant_id = NEW.tenant_id) >= 1 THEN
    RAISE EXCEPTION 'injected fault between two redemptions';
  END IF;
  RETURN NEW;
END $$
""",
    """
CREATE TRIGGER fail_second_redemption BEFORE INSERT ON redemption
FOR EACH ROW EXECUTE FUNCTION fail_second_redemption()
""",
)


def _execute(db: Database, *statements: str) -> None:
    with db.unit_of_work() as session:
        for statement in statements:
            session.execute(text(statement))
        session.commit()


@pytest.fixture
def fault(db: Database, backend: str) -> None:
    """The second redemption row of a tenant fails; gone again with the test's transaction."""
    _execute(db, *((_SQLITE_FAULT,) if backend == "sqlite" else _POSTGRESQL_FAULT))


def _remove_fault(db: Database, backend: str) -> None:
    _execute(
        db,
        "DROP TRIGGER fail_second_redemption" + ("" if backend == "sqlite" else " ON redemption"),
    )


def _pair(tenant: Tenant) -> dict[str, str]:
    return {"X-App-Id": tenant.key.key_id, "X-App-Token": tenant.key.secret}


def _gift_cards(client: TestClient, tenant: Tenant, *codes: str) -> None:
    campaign = client.post(
        "/v1/campaigns",
        headers=_pair(tenant),
        json={"name": "Cards", "voucher": {"type": "GIFT_VOUCHER", "gift": {"amount": 10000}}},
    )
    assert campaign.status_code == 200, campaign.text
    for code in codes:
        added = client.post(
            f"/v1/campaigns/{campaign.json()['id']}/vouchers",
            headers=_pair(tenant),
            json={"code": code},
        )
        assert added.status_code == 200, added.text


def _state(db: Database, tenant: Tenant) -> dict[str, Any]:
    """Everything a redemption could have written for the tenant."""
    mine = Voucher.tenant_id == tenant.id
    with db.unit_of_work(write=False) as session:

        def count(model: Any) -> int:
            return int(
                session.scalar(
                    select(func.count()).select_from(model).where(model.tenant_id == tenant.id)
                )
                or 0
            )

        balances = dict(session.execute(select(Voucher.code, Voucher.balance).where(mine)).all())
        quantities = dict(
            session.execute(select(Voucher.code, Voucher.redeemed_quantity).where(mine)).all()
        )
        return {
            "balances": balances,
            "redeemed": quantities,
            "redemptions": count(Redemption),
            "ledger": count(LedgerEntry),
            "events": count(VoucherEvent),
            "customers": count(Customer),
            "idempotency": count(IdempotencyRecord),
        }


class TestStackedRedemption:
    def test_a_fault_between_two_redemptions_leaves_nothing_half_done(
        self, client: TestClient, db: Database, backend: str, fault: None
    ) -> None:
        tenant = make_tenant(db)
        _gift_cards(client, tenant, "CARD-A", "CARD-B")
        customer = client.post("/v1/customers", headers=_pair(tenant), json={"source_id": "ada"})
        assert customer.status_code == 200, customer.text
        body = {
            # By voucherd's id: the core resolves it to its source_id, in the same transaction.
            "customer": {"id": customer.json()["id"]},
            "redeemables": [
                {"object": "voucher", "id": "CARD-A", "gift": {"credits": 2500}},
                {"object": "voucher", "id": "CARD-B", "gift": {"credits": 1000}},
            ],
            "order": {"amount": 3500},
        }
        headers = {**_pair(tenant), "Idempotency-Key": "stacked-1"}
        before = _state(db, tenant)

        failed = client.post("/v1/redemptions", headers=headers, json=body)

        assert failed.status_code == 500, failed.text
        assert failed.json()["key"] == "internal_server_error"
        # Neither card spent, no redemption, ledger entry or event, no customer, and the key
        # not kept: a retry is simply tried again.
        assert _state(db, tenant) == before

        _remove_fault(db, backend)
        redeemed = client.post("/v1/redemptions", headers=headers, json=body)

        assert redeemed.status_code == 200, redeemed.text
        shown = redeemed.json()
        assert [r["amount"] for r in shown["redemptions"]] == [2500, 1000]
        assert {r["customer"]["source_id"] for r in shown["redemptions"]} == {"ada"}
        assert shown["order"]["total_amount"] == 0
        after = _state(db, tenant)
        assert after["balances"] == {"CARD-A": 7500, "CARD-B": 9000}
        assert after["redemptions"] == 2
        assert after["customers"] == before["customers"]
        again = client.post("/v1/redemptions", headers=headers, json=body)
        assert again.headers["idempotent-replayed"] == "true"
        assert again.content == redeemed.content

    def test_a_refused_voucher_undoes_the_ones_before_it(
        self, client: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        _gift_cards(client, tenant, "CARD-A", "CARD-B")
        body = {
            "customer": {"source_id": "bob"},
            "redeemables": [
                {"object": "voucher", "id": "CARD-A", "gift": {"credits": 2500}},
                {"object": "voucher", "id": "CARD-B", "gift": {"credits": 10001}},
            ],
        }
        before = _state(db, tenant)

        refused = client.post("/v1/redemptions", headers=_pair(tenant), json=body)

        assert refused.status_code == 400, refused.text
        assert refused.json()["key"] == "gift_amount_exceeded"
        assert _state(db, tenant) == before

    def test_an_unknown_customer_id_redeems_nothing(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        _gift_cards(client, tenant, "CARD-A")
        body = {
            "customer": {"id": "cust_nobody"},
            "redeemables": [{"object": "voucher", "id": "CARD-A", "gift": {"credits": 100}}],
        }
        before = _state(db, tenant)

        refused = client.post("/v1/redemptions", headers=_pair(tenant), json=body)

        assert refused.status_code == 404, refused.text
        assert refused.json()["resource_type"] == "customer"
        assert _state(db, tenant) == before


class TestStackedValidation:
    def test_totals_are_added_up_by_the_core(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        _gift_cards(client, tenant, "CARD-A", "CARD-B")
        customer = client.post("/v1/customers", headers=_pair(tenant), json={"source_id": "cy"})
        body = {
            "customer": {"id": customer.json()["id"]},
            "redeemables": [
                {"object": "voucher", "id": "CARD-A", "gift": {"credits": 2500}},
                {"object": "voucher", "id": "CARD-B", "gift": {"credits": 1000}},
            ],
            "order": {"amount": 5000},
        }

        validation = client.post("/v1/validations", headers=_pair(tenant), json=body).json()

        assert validation["valid"] is True
        assert validation["order"]["total_discount_amount"] == 3500
        assert validation["order"]["total_amount"] == 1500
        assert validation["tracking_id"] == "cy"
