"""Core rules added for the Voucherify face, tested on the core and the native API.

Campaigns created with vouchers, per-request redemption quantity and code_config, a bulk mint
run as an operation, customers upserted by source_id (and their Voucherify details), numbered
pages with totals, and the voucher shown with a redemption.
"""

from __future__ import annotations

import threading
from datetime import date

import pytest
from fastapi.testclient import TestClient

from tests.factories.campaigns import make_campaign
from tests.factories.redemptions import make_redemption
from tests.factories.tenants import Tenant
from tests.factories.vouchers import issue
from voucherd.campaigns.service import count_vouchers, number_campaigns
from voucherd.composition import run_due_operations
from voucherd.customers import service as customers
from voucherd.customers.schemas import CustomerCreate
from voucherd.db.engine import Database
from voucherd.errors import Forbidden, InvalidInput
from voucherd.operations.service import get_operation
from voucherd.publications.publish import publish
from voucherd.publications.schemas import PublicationFilters, PublishRequest
from voucherd.publications.service import number_publications
from voucherd.vouchers import tasks
from voucherd.vouchers.schemas import MintVouchers


class TestCampaignWithVouchers:
    def test_vouchers_count_mints_in_the_same_transaction(
        self, api: TestClient, tenant: Tenant, db: Database
    ) -> None:
        body = {"name": "c", "type": "GIFT", "currency": "EUR", "default_value": 500,
                "vouchers_count": 7}  # fmt: skip
        created = api.post("/api/v1/campaigns", headers=tenant.headers, json=body)
        assert created.status_code == 201, created.text
        assert count_vouchers(db, tenant.caller, "c")[1] == 7

    def test_a_mint_that_fails_leaves_no_campaign(self, api: TestClient, tenant: Tenant) -> None:
        body = {"name": "c", "type": "GIFT", "currency": "EUR", "vouchers_count": 2}
        refused = api.post("/api/v1/campaigns", headers=tenant.headers, json=body)
        assert refused.status_code == 422
        assert refused.json()["errors"][0]["field"] == "value"
        assert api.get("/api/v1/campaigns/c", headers=tenant.headers).status_code == 404

    def test_minting_needs_the_issue_scope(self, db: Database, api: TestClient) -> None:
        tenant = Tenant(db, scopes=["manage"])
        body = {"name": "c", "type": "LOYALTY", "default_value": 0, "vouchers_count": 1}
        refused = api.post("/api/v1/campaigns", headers=tenant.headers, json=body)
        assert refused.status_code == 403


class TestVoucherOverrides:
    def test_redemption_quantity_and_code_config_per_request(
        self, api: TestClient, tenant: Tenant, db: Database
    ) -> None:
        campaign = make_campaign(db, tenant, redemption_quantity=1)
        body = {"campaign": campaign.id, "redemption_quantity": 4,
                "code_config": {"prefix": "X-", "length": 12, "charset": "AB"}}  # fmt: skip
        response = api.post("/api/v1/vouchers", headers=tenant.headers, json=body)
        assert response.status_code == 201, response.text
        issued = response.json()
        assert issued["redemption"]["quantity"] == 4
        assert issued["code"].startswith("X-")
        assert set(issued["code"][2:]) <= {"A", "B"}
        minted = api.post(
            f"/api/v1/campaigns/{campaign.id}/vouchers",
            headers=tenant.headers,
            json={"count": 1, "redemption_quantity": 2},
        ).json()
        assert minted["redemption"]["quantity"] == 2

    def test_a_cash_voucher_is_still_paid_out_once(self, tenant: Tenant, db: Database) -> None:
        campaign = make_campaign(db, tenant, type="CASH")
        with pytest.raises(InvalidInput) as refused:
            issue(db, tenant, campaign, redemption_quantity=2)
        assert refused.value.field == "redemption_quantity"


class TestMintOperation:
    def test_runs_in_steps_with_progress_and_the_request_s_overrides(
        self, db: Database, tenant: Tenant, monkeypatch: pytest.MonkeyPatch, api: TestClient
    ) -> None:
        monkeypatch.setattr(tasks, "MINT_STEP", 4)
        campaign = make_campaign(db, tenant)
        body = MintVouchers(count=10, metadata={"batch": 1}, redemption_quantity=3)
        operation = tasks.start_mint(db, tenant.caller, campaign.name, body)
        assert operation.kind == "mint"
        assert operation.total == 10
        assert count_vouchers(db, tenant.caller, campaign.id)[1] == 0

        assert run_due_operations(db, "w", threading.Event()) == 1
        done = get_operation(db, tenant.caller, operation.id)
        assert done.status == "Completed"
        assert (done.done, done.total) == (10, 10)
        assert done.result == {"campaign_id": campaign.id, "campaign": campaign.name, "count": 10}
        shown = api.get(f"/api/v1/operations/{operation.id}", headers=tenant.headers).json()
        assert shown["progress"] == {"done": 10, "total": 10}
        vouchers = api.get(
            f"/api/v1/vouchers?campaign={campaign.id}&limit=100", headers=tenant.headers
        ).json()["data"]
        assert len(vouchers) == 10
        assert {v["redemption"]["quantity"] for v in vouchers} == {3}
        assert all(v["metadata"] == {"batch": 1} for v in vouchers)

    def test_a_limit_reached_midway_fails_and_keeps_the_batches_before(
        self, db: Database, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(tasks, "MINT_STEP", 4)
        campaign = make_campaign(db, tenant, default_value=100, budget=1000)
        operation = tasks.start_mint(db, tenant.caller, campaign.id, MintVouchers(count=12))
        run_due_operations(db, "w", threading.Event())
        failed = get_operation(db, tenant.caller, operation.id)
        assert failed.status == "Failed"
        assert failed.done == 8
        assert failed.last_error
        assert count_vouchers(db, tenant.caller, campaign.id)[1] == 8

    def test_refused_at_once_when_it_could_not_start(self, db: Database, tenant: Tenant) -> None:
        campaign = make_campaign(db, tenant, max_value=5000)
        with pytest.raises(InvalidInput):
            tasks.start_mint(db, tenant.caller, campaign.id, MintVouchers(count=2, value=5001))
        reader = Tenant(db, scopes=["redeem"])
        with pytest.raises(Forbidden):
            tasks.start_mint(db, reader.caller, campaign.id, MintVouchers(count=2))


class TestCustomers:
    def test_save_customer_creates_then_updates_by_source_id(
        self, db: Database, tenant: Tenant
    ) -> None:
        first, created = customers.save_customer(
            db,
            tenant.caller,
            CustomerCreate(source_id="s1", name="Ann", city="Leeds", birthdate=date(1990, 5, 1)),
        )
        assert created is True
        second, created = customers.save_customer(
            db, tenant.caller, CustomerCreate(source_id="s1", email="ann@example.com")
        )
        assert created is False
        assert second.id == first.id
        assert (second.name, second.email, second.city) == ("Ann", "ann@example.com", "Leeds")
        assert second.birthdate == date(1990, 5, 1)
        without_ref, created = customers.save_customer(db, tenant.caller, CustomerCreate(name="B"))
        assert created is True
        assert without_ref.id != first.id

    def test_erasure_wipes_the_new_details_and_hides_the_customer_on_request(
        self, db: Database, tenant: Tenant, api: TestClient
    ) -> None:
        customer, _ = customers.save_customer(
            db,
            tenant.caller,
            CustomerCreate(
                source_id="s2", description="VIP", city="York", region="N Yorks",
                country="UK", birthdate=date(1980, 1, 1),
            ),
        )  # fmt: skip
        customers.erase_customer(db, tenant.caller, customer.id)
        erased = customers.get_customer(db, tenant.caller, customer.id)
        details = (erased.description, erased.city, erased.region, erased.country)
        assert details == (None, None, None, None)
        assert erased.birthdate is None
        with pytest.raises(customers.NotFound):
            customers.get_customer(db, tenant.caller, customer.id, include_erased=False)
        native = api.get(f"/api/v1/customers/{customer.id}", headers=tenant.headers).json()
        assert native["erased"] is True


class TestNumberedPages:
    def test_campaigns_and_publications_by_page_with_totals(
        self, db: Database, tenant: Tenant
    ) -> None:
        made = [make_campaign(db, tenant, name=f"c{n}") for n in range(5)]
        page, total = number_campaigns(db, tenant.caller, page=2, limit=2)
        assert total == 5
        assert [c.name for c in page] == ["c2", "c1"]
        for n in range(3):
            issue(db, tenant, made[0])
            customer = CustomerCreate(source_id=f"cust{n}")
            publish(db, tenant.caller, PublishRequest(campaign=made[0].id, customer=customer))
        shown, count = number_publications(
            db, tenant.caller, PublicationFilters(campaign=made[0].name), page=1, limit=2
        )
        assert count == 3
        assert len(shown) == 2
        assert number_publications(db, tenant.caller, PublicationFilters(), page=9, limit=2) == (
            [],
            3,
        )


def test_a_redemption_shows_its_voucher_as_the_spend_left_it(db: Database, tenant: Tenant) -> None:
    campaign = make_campaign(db, tenant, default_value=1000)
    record = issue(db, tenant, campaign)
    redeemed = make_redemption(db, tenant, code=record.voucher.code, amount=1000)
    assert redeemed.voucher is not None
    assert redeemed.voucher.voucher.balance == 0
    assert redeemed.voucher.voucher.state == "REDEEMED"
    assert redeemed.voucher.voucher.redeemed_quantity == 1
    assert redeemed.voucher.campaign is not None
    assert redeemed.voucher.campaign.id == campaign.id
