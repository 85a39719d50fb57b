"""Voucherify's Import Vouchers (JSON and CSV), Create Voucher and Delete Voucher: over HTTP,
and through the unchanged official SDK (``voucherify==6.1.1``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from voucherify import models as m
from voucherify.exceptions import ApiException

from tests.factories.campaigns import make_campaign
from tests.factories.redemptions import make_redemption
from tests.factories.tenants import Tenant, make_tenant
from tests.support.imports import run_worker
from tests.support.serving import serving
from tests.support.voucherify_sdk import Sdk
from voucherd.db.engine import Database


def followed(api: TestClient, db: Database, tenant: Tenant, async_id: str) -> dict[str, Any]:
    run_worker(db)
    operation = "op_" + async_id.removeprefix("aa_")
    shown = api.get(f"/api/v1/operations/{operation}", headers=tenant.headers).json()
    assert shown["status"] == "Completed", shown
    return dict(shown["result"])


class TestImportVouchers:
    def test_gift_vouchers_go_into_the_standalone_campaign_as_they_were(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        body = [
            {
                "code": "VF-GIFT-1",
                "type": "GIFT_VOUCHER",
                "gift": {"amount": 10000, "balance": 2500},
            },
            {
                "code": "VF-GIFT-2",
                "gift": {"amount": 5000},
                "active": False,
                "metadata": {"shop": "north"},
                "expiration_date": "2027-01-01T00:00:00Z",
            },
        ]
        answer = api.post("/v1/vouchers/import", headers=tenant.headers, json=body)
        assert answer.status_code == 202, answer.text
        assert answer.json()["async_action_id"].startswith("aa_")
        result = followed(api, db, tenant, answer.json()["async_action_id"])
        assert (result["imported"], result["rejected"], result["campaign"]) == (
            2,
            0,
            "standalone-gift",
        )
        one = api.get("/v1/vouchers/VF-GIFT-1", headers=tenant.headers).json()
        assert (one["gift"]["amount"], one["gift"]["balance"], one["active"]) == (10000, 2500, True)
        two = api.get("/v1/vouchers/VF-GIFT-2", headers=tenant.headers).json()
        assert (two["active"], two["metadata"]) == (False, {"shop": "north"})

    def test_a_discount_voucher_without_a_campaign_is_refused_naming_its_type(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        body = [{"code": "VF-D-1", "type": "DISCOUNT_VOUCHER"}]
        answer = api.post("/v1/vouchers/import", headers=tenant.headers, json=body)
        assert answer.status_code == 400, answer.text
        assert answer.json()["key"] == "invalid_payload"
        assert "[0].type" in answer.json()["details"]

    def test_a_list_mixing_types_is_refused_naming_the_first_of_another_type(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        body = [
            {"code": "VF-M-1", "gift": {"amount": 100}},
            {"code": "VF-M-2", "gift": {"amount": 200}},
            {"code": "VF-M-3", "loyalty_card": {"points": 10}},
        ]
        answer = api.post("/v1/vouchers/import", headers=tenant.headers, json=body)
        assert answer.status_code == 400, answer.text
        assert answer.json()["key"] == "invalid_payload"
        assert "[2].type" in answer.json()["details"]
        assert "LOYALTY" in answer.json()["details"]

    def test_a_csv_mixing_types_is_refused_naming_the_line(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        csv = "Code,Voucher Type,Value\nC-1,GIFT_VOUCHER,100\nC-2,LOYALTY_CARD,5\n"
        answer = api.post(
            "/v1/vouchers/importCSV",
            headers=tenant.headers,
            files={"file": ("vouchers.csv", csv.encode(), "text/csv")},
        )
        assert answer.status_code == 400, answer.text
        assert "line 3: Voucher Type" in answer.json()["details"]

    def test_create_voucher_without_campaign_as_a_discount_is_refused(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        answer = api.post(
            "/v1/vouchers/D-1", headers=tenant.headers, json={"type": "DISCOUNT_VOUCHER"}
        )
        assert answer.status_code == 400, answer.text
        assert "type" in answer.json()["details"]
        assert api.get("/v1/vouchers/D-1", headers=tenant.headers).status_code == 404

    def test_csv_with_voucherifys_headers(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        csv = (
            "Code,Voucher Type,Value,Redeemed Amount,Active,Expiration Date,Colour\n"
            "CSV-1,GIFT_VOUCHER,4000,1000,true,2027-03-01,red\n"
            "CSV-2,GIFT_VOUCHER,4000,,false,not-a-date,blue\n"
        )
        answer = api.post(
            "/v1/vouchers/importCSV",
            headers=tenant.headers,
            files={"file": ("vouchers.csv", csv.encode(), "text/csv")},
        )
        assert answer.status_code == 202, answer.text
        result = followed(api, db, tenant, answer.json()["async_action_id"])
        assert result["imported"] == 1
        assert [(p["line"], p["column"]) for p in result["problems"]] == [(3, "expiration_date")]
        shown = api.get("/v1/vouchers/CSV-1", headers=tenant.headers).json()
        assert (shown["gift"]["balance"], shown["metadata"]) == (3000, {"Colour": "red"})


class TestCreateAndDelete:
    def test_create_in_a_campaign_then_delete_and_create_again(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, type="DISCOUNT")
        created = api.post(
            "/v1/vouchers/MY-CODE-1", headers=tenant.headers, json={"campaign": campaign.name}
        )
        assert created.status_code == 200, created.text
        assert (created.json()["code"], created.json()["type"]) == ("MY-CODE-1", "DISCOUNT_VOUCHER")
        again = api.post(
            "/v1/vouchers/MY-CODE-1", headers=tenant.headers, json={"campaign": campaign.name}
        )
        assert again.status_code == 409, again.text
        assert api.delete("/v1/vouchers/MY-CODE-1", headers=tenant.headers).status_code == 204
        assert api.get("/v1/vouchers/MY-CODE-1", headers=tenant.headers).status_code == 404
        recreated = api.post(
            "/v1/vouchers/MY-CODE-1", headers=tenant.headers, json={"campaign_id": campaign.id}
        )
        assert recreated.status_code == 200, recreated.text

    def test_a_redeemed_voucher_is_not_deleted(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        created = api.post(
            "/v1/vouchers/GIFT-DEL-1", headers=tenant.headers, json={"gift": {"amount": 900}}
        )
        assert created.status_code == 200, created.text
        make_redemption(db, tenant, code="GIFT-DEL-1", amount=100)
        refused = api.delete("/v1/vouchers/GIFT-DEL-1", headers=tenant.headers)
        assert refused.status_code == 409, refused.text
        assert api.get("/v1/vouchers/GIFT-DEL-1", headers=tenant.headers).status_code == 200


@pytest.fixture
def site(fresh_database: Callable[..., Database]) -> Iterator[tuple[Sdk, Database, Tenant]]:
    db = fresh_database(pool_size=4)
    tenant = Tenant(db)
    with serving(db) as host:
        sdk = Sdk(host, tenant)
        with sdk.client:
            yield sdk, db, tenant


def test_the_official_sdk_imports_creates_and_deletes(
    site: tuple[Sdk, Database, Tenant],
) -> None:
    sdk, db, _ = site
    started = sdk.vouchers.import_vouchers(
        [
            m.VouchersImportCreateItemRequestBody(
                code=f"SDK-IMP-{i}",
                type="GIFT_VOUCHER",
                gift=m.Gift(amount=3000, balance=3000 - 100 * i),
                expiration_date=datetime(2027, 6, 1, tzinfo=UTC),
                metadata={"n": i},
            )
            for i in range(5)
        ]
    )
    assert started.async_action_id is not None
    assert started.async_action_id.startswith("aa_")
    run_worker(db)
    imported = sdk.vouchers.get_voucher("SDK-IMP-3")
    assert imported.gift is not None
    assert (imported.gift.amount, imported.gift.balance) == (3000, 2700)

    created = sdk.vouchers.create_voucher(
        "SDK-NEW-1",
        m.VouchersCreateWithSpecificCodeRequestBody(
            type="GIFT_VOUCHER", gift=m.Gift(amount=2500), category="moved"
        ),
    )
    assert (created.code, created.category) == ("SDK-NEW-1", "moved")
    assert created.gift is not None
    assert created.gift.balance == 2500

    sdk.vouchers.delete_voucher("SDK-NEW-1", force=True)
    with pytest.raises(ApiException) as caught:
        sdk.vouchers.get_voucher("SDK-NEW-1")
    assert caught.value.status == 404
