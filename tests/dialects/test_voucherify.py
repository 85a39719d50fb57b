"""The Voucherify face: seeds 001 and 002 replayed word for word, and the rest of its API.

Placeholders of the seeds (``<api-key>``, ``<token>``, ``{campaignId}``, customer ids that a real
account gave) are filled with this test's own credentials and objects; everything else (paths,
header names, parameter placement, bodies) is sent as the seed spells it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant
from tests.factories.vouchers import issue
from tests.support.clock import FakeClock
from tests.support.databases import pg_admin
from voucherd.app import create_app
from voucherd.auth.service import create_key
from voucherd.composition import run_due_operations
from voucherd.db.engine import Database

SEED_001_BODY = """{
  "code": "<string>",
  "code_config": {
    "length": 123,
    "charset": "<string>",
    "prefix": "<string>",
    "postfix": "<string>",
    "pattern": "<string>",
    "initial_count": 123
  },
  "category": "<string>",
  "metadata": {},
  "redemption": {
    "quantity": 123
  },
  "additional_info": "<string>",
  "start_date": "2022-09-20T00:00:00.000Z",
  "expiration_date": "2022-09-30T00:00:00.000Z"
}"""

SEED_002_SPECIFIC = """{
      "voucher": "ycs2AnLT",
        "customer": "%s",
        "channel": "newsletter_October"
    }"""

# The seed's email reads "[email protected]": the page it was copied from hid the address
# (Cloudflare's e-mail obfuscation). A real address takes its place; the literal is refused.
SEED_002_DYNAMIC = """{
    "campaign": {
      "name": "100k-test",
      "count": 2
    },
        "customer": {
      "email": "%s",
      "name": "Erlich Bachman"
    },
    "metadata": {
      "test": true,
      "provider": "Shop Admin"
    }
  }"""


def pair(tenant: Tenant) -> dict[str, str]:
    return {"X-App-Id": tenant.key.key_id, "X-App-Token": tenant.key.secret}


def seed_headers(tenant: Tenant) -> dict[str, str]:
    """Seed 001's four headers, in its order and spelling."""
    return {
        "Authorization": f"Bearer {tenant.key.token}",
        "Content-Type": "application/json",
        "X-App-Id": tenant.key.key_id,
        "X-App-Token": tenant.key.secret,
    }


def curl_headers(tenant: Tenant) -> dict[str, str]:
    """Seed 002's three headers."""
    return {**pair(tenant), "Content-Type": "application/json"}


def create_campaign(api: TestClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    response = api.post("/v1/campaigns", json=body, headers=pair(tenant))
    assert response.status_code == 200, response.text
    return dict(response.json())


def gift_campaign(api: TestClient, tenant: Tenant, name: str, **extra: Any) -> dict[str, Any]:
    voucher = {"type": "GIFT_VOUCHER", "gift": {"amount": 10000}, **extra.pop("voucher", {})}
    return create_campaign(api, tenant, name=name, voucher=voucher, **extra)


def assert_error(response: Any, status: int, key: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = dict(response.json())
    assert body["code"] == status
    assert body["key"] == key
    assert body["message"]
    assert body["details"]
    assert body["request_id"] == response.headers["X-Request-Id"]  # one id, logs and body
    return body


class TestSeed001AddVouchers:
    def test_the_seed_request_returns_the_full_voucher_object(
        self, api: TestClient, tenant: Tenant, clock: FakeClock, settings: Any
    ) -> None:
        clock.set(datetime(2022, 9, 1, tzinfo=UTC))
        campaign = gift_campaign(
            api,
            tenant,
            "Gift Card Campaign",
            validity_day_of_week=[0, 1, 2, 3, 4, 5, 6],
            validity_hours={
                "daily": [{"start_time": "12:00", "days_of_week": [0], "expiration_time": "14:00"}]
            },
        )
        response = api.post(
            f"/v1/campaigns/{campaign['id']}/vouchers",
            headers=seed_headers(tenant),
            content=SEED_001_BODY,
        )
        assert response.status_code == 200, response.text
        v = response.json()
        assert v["id"].startswith("v_")
        assert v["code"] == "<string>"
        assert v["campaign"] == "Gift Card Campaign"
        assert v["campaign_id"] == campaign["id"]
        assert v["campaign_id"].startswith("camp_")
        assert v["category"] == "<string>"
        assert v["category_id"] is None
        assert v["type"] == "GIFT_VOUCHER"
        assert v["discount"] is None
        assert v["gift"] == {
            "amount": 10000,
            "subtracted_amount": 0,
            "balance": 10000,
            "effect": "APPLY_TO_ORDER",
        }
        assert v["loyalty_card"] is None
        assert v["start_date"] == "2022-09-20T00:00:00Z"
        assert v["expiration_date"] == "2022-09-30T00:00:00Z"
        assert v["validity_timeframe"] is None
        assert v["validity_day_of_week"] == [0, 1, 2, 3, 4, 5, 6]
        assert v["validity_hours"] == {
            "daily": [{"start_time": "12:00", "expiration_time": "14:00", "days_of_week": [0]}]
        }
        assert v["active"] is True
        assert v["additional_info"] == "<string>"
        assert v["metadata"] == {}
        page = f"{settings.public_base_url}/v/"
        for image, suffix in (("qr", "/qr.svg"), ("barcode", "/barcode.svg")):
            assert v["assets"][image]["url"].startswith(page)
            assert v["assets"][image]["url"].endswith(suffix)
            assert v["assets"][image]["id"]
        assert v["is_referral_code"] is False
        assert v["created_at"] == v["updated_at"] == "2022-09-01T00:00:00Z"
        assert v["holder_id"] is None
        assert v["referrer_id"] is None
        assert v["object"] == "voucher"
        assert v["publish"] == {
            "object": "list",
            "count": 0,
            "url": "/v1/vouchers/%3Cstring%3E/publications?page=1&limit=10",
        }
        assert v["redemption"] == {
            "quantity": 123,
            "redeemed_quantity": 0,
            "redeemed_amount": 0,
            "object": "list",
            "url": "/v1/vouchers/%3Cstring%3E/redemptions?page=1&limit=10",
        }
        assert v["categories"] == []
        assert v["validation_rules_assignments"] == {
            "object": "list",
            "data_ref": "data",
            "data": [],
            "total": 0,
        }
        again = api.get("/v1/vouchers/%3Cstring%3E", headers=pair(tenant))
        assert again.json() == v

    def test_the_campaign_is_addressed_by_name_too(self, api: TestClient, tenant: Tenant) -> None:
        gift_campaign(api, tenant, "Gift Card Campaign")
        response = api.post(
            "/v1/campaigns/Gift Card Campaign/vouchers", headers=pair(tenant), json={}
        )
        assert response.status_code == 200
        assert response.json()["campaign"] == "Gift Card Campaign"
        assert len(response.json()["code"]) == 13  # voucherd's default code, with its check

    def test_the_assets_are_the_voucher_page_images(self, api: TestClient, tenant: Tenant) -> None:
        campaign = gift_campaign(api, tenant, "Images")
        voucher = api.post(f"/v1/campaigns/{campaign['id']}/vouchers", headers=pair(tenant))
        for image in ("qr", "barcode"):
            url = voucher.json()["assets"][image]["url"].removeprefix("https://vouchers.example")
            svg = api.get(url)
            assert svg.status_code == 200
            assert svg.headers["content-type"] == "image/svg+xml"

    def test_a_code_already_used_is_a_duplicate(self, api: TestClient, tenant: Tenant) -> None:
        campaign = gift_campaign(api, tenant, "Dupes")
        path = f"/v1/campaigns/{campaign['id']}/vouchers"
        assert api.post(path, headers=pair(tenant), json={"code": "SAME-1"}).status_code == 200
        again = api.post(path, headers=pair(tenant), json={"code": "SAME-1"})
        assert_error(again, 409, "duplicate_found")

    def test_an_unknown_campaign_is_not_found(self, api: TestClient, tenant: Tenant) -> None:
        response = api.post("/v1/campaigns/nope/vouchers", headers=pair(tenant))
        body = assert_error(response, 404, "not_found")
        assert body["resource_type"] == "campaign"


class TestAsyncActions:
    def test_more_than_one_voucher_is_an_async_action_run_by_the_worker(
        self, api: TestClient, tenant: Tenant, db: Database
    ) -> None:
        campaign = gift_campaign(api, tenant, "Bulk", voucher={"redemption": {"quantity": 3}})
        response = api.post(
            f"/v1/campaigns/{campaign['name']}/vouchers?vouchers_count=25",
            headers={**pair(tenant), "Content-Type": "application/json"},
            content=b"",
        )
        assert response.status_code == 202, response.text
        action_id = response.json()["async_action_id"]
        assert action_id.startswith("aa_")
        queued = api.get(f"/v1/async-actions/{action_id}", headers=pair(tenant)).json()
        assert queued["status"] == "ENQUEUED"
        assert queued["operation_status"] == "UNKNOWN"
        assert queued["progress"] == 0
        assert queued["object"] == "async_action"
        assert queued["type"] == "CAMPAIGN.VOUCHERS_GENERATION"

        assert run_due_operations(db, "test-worker", threading.Event()) == 1

        done = api.get(f"/v1/async-actions/{action_id}", headers=pair(tenant)).json()
        assert done["id"] == action_id
        assert done["status"] == "DONE"
        assert done["operation_status"] == "SUCCESS"
        assert done["progress"] == 100
        assert done["result"]["done"] == 25
        assert "25 voucher(s) added to campaign Bulk" in done["result"]["message"]
        shown = api.get(f"/v1/campaigns/{campaign['id']}", headers=pair(tenant)).json()
        assert shown["vouchers_count"] == 25
        # The request's overrides reached every voucher.
        listed = api.get(
            f"/api/v1/vouchers?campaign={campaign['id']}&limit=100", headers=tenant.headers
        ).json()["data"]
        assert len(listed) == 25
        assert {v["redemption"]["quantity"] for v in listed} == {3}

    def test_a_bad_request_is_refused_before_any_action_starts(
        self, api: TestClient, tenant: Tenant
    ) -> None:
        campaign = gift_campaign(api, tenant, "Bulk2")
        response = api.post(
            f"/v1/campaigns/{campaign['id']}/vouchers?vouchers_count=3",
            headers=pair(tenant),
            json={"expiration_date": "2001-01-01T00:00:00Z"},
        )
        assert_error(response, 400, "voucher_expired")
        with_code = api.post(
            f"/v1/campaigns/{campaign['id']}/vouchers?vouchers_count=3",
            headers=pair(tenant),
            json={"code": "ONE"},
        )
        assert_error(with_code, 400, "invalid_payload")

    def test_another_tenant_never_sees_the_action(
        self, api: TestClient, tenant: Tenant, db: Database
    ) -> None:
        campaign = gift_campaign(api, tenant, "Mine")
        action = api.post(
            f"/v1/campaigns/{campaign['id']}/vouchers?vouchers_count=2", headers=pair(tenant)
        ).json()["async_action_id"]
        other = Tenant(db)
        assert_error(api.get(f"/v1/async-actions/{action}", headers=pair(other)), 404, "not_found")


class TestCampaigns:
    def test_create_with_vouchers_count_mints_with_the_campaign(
        self, api: TestClient, tenant: Tenant
    ) -> None:
        created = create_campaign(
            api,
            tenant,
            name="Ten percent",
            type="AUTO_UPDATE",
            campaign_type="DISCOUNT_COUPONS",
            vouchers_count=5,
            voucher={
                "type": "DISCOUNT_VOUCHER",
                "discount": {"type": "PERCENT", "percent_off": 10.5, "amount_limit": 2000},
                "redemption": {"quantity": 2},
                "code_config": {"pattern": "TEN-####", "charset": "0123456789"},
            },
            metadata={"region": "EU"},
        )
        assert created["id"].startswith("camp_")
        assert created["object"] == "campaign"
        assert created["type"] == "AUTO_UPDATE"
        assert created["campaign_type"] == "DISCOUNT_COUPONS"
        assert created["vouchers_count"] == 5
        assert created["voucher"]["type"] == "DISCOUNT_VOUCHER"
        assert created["voucher"]["discount"] == {
            "type": "PERCENT",
            "percent_off": 10.5,
            "amount_limit": 2000,
            "effect": "APPLY_TO_ORDER",
        }
        assert created["voucher"]["redemption"] == {"quantity": 2}
        assert created["voucher"]["code_config"] == {"pattern": "TEN-####", "charset": "0123456789"}
        assert created["metadata"] == {"region": "EU"}
        assert created["creation_status"] == "DONE"
        for ref in (created["id"], "Ten percent"):
            got = api.get(f"/v1/campaigns/{ref}", headers=pair(tenant)).json()
            assert got["id"] == created["id"]
            assert got["vouchers_count"] == 5

    def test_list_is_numbered_by_page_and_limit(self, api: TestClient, tenant: Tenant) -> None:
        for n in range(3):
            gift_campaign(api, tenant, f"c{n}")
        first = api.get("/v1/campaigns?limit=2&page=1", headers=pair(tenant)).json()
        second = api.get("/v1/campaigns?limit=2&page=2", headers=pair(tenant)).json()
        assert first["object"] == "list"
        assert first["data_ref"] == "campaigns"
        assert first["total"] == second["total"] == 3
        assert [c["name"] for c in first["campaigns"] + second["campaigns"]] == ["c2", "c1", "c0"]

    def test_loyalty_and_money(self, api: TestClient, tenant: Tenant, settings: Any) -> None:
        loyalty = create_campaign(
            api, tenant, name="Points", campaign_type="LOYALTY_PROGRAM",
            voucher={"loyalty_card": {"points": 700}},
        )  # fmt: skip
        assert loyalty["voucher"]["loyalty_card"] == {"points": 700}
        card = api.post(f"/v1/campaigns/{loyalty['id']}/vouchers", headers=pair(tenant)).json()
        assert card["type"] == "LOYALTY_CARD"
        assert card["loyalty_card"] == {"points": 700, "balance": 700, "subtracted_points": 0}
        assert card["gift"] is None
        gift = gift_campaign(api, tenant, "Money")
        native = api.get(f"/api/v1/campaigns/{gift['id']}", headers=tenant.headers).json()
        assert native["currency"] == settings.voucherify_currency

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"voucher": {"type": "GIFT_VOUCHER"}}, "name"),
            ({"name": "x"}, "voucher.type"),
            ({"name": "x", "voucher": {"type": "SOMETHING"}}, "voucher.type"),
            ({"name": "x", "campaign_type": "REFERRAL_PROGRAM"}, "campaign_type"),
            ({"name": "x", "voucher": {"type": "GIFT_VOUCHER", "gift": {"amount": 9.5}}}, "amount"),
            ({"name": "x", "voucher": {"type": "DISCOUNT_VOUCHER"}}, "voucher.discount"),
            ({"name": "x", "voucher": {"type": "GIFT_VOUCHER"}, "validation_rules": []}, "rules"),
            ({"name": "x", "voucher": {"type": "GIFT_VOUCHER"}, "type": "STANDALONE"}, "type"),
        ],
    )
    def test_invalid_payloads_name_the_field(
        self, api: TestClient, tenant: Tenant, body: dict[str, Any], field: str
    ) -> None:
        response = api.post("/v1/campaigns", json=body, headers=pair(tenant))
        error = assert_error(response, 400, "invalid_payload")
        assert field in error["details"]

    def test_duplicate_name(self, api: TestClient, tenant: Tenant) -> None:
        gift_campaign(api, tenant, "Once")
        again = api.post(
            "/v1/campaigns",
            json={"name": "Once", "voucher": {"type": "GIFT_VOUCHER"}},
            headers=pair(tenant),
        )
        assert_error(again, 409, "duplicate_found")

    def test_vouchers_count_that_cannot_be_minted_creates_nothing(
        self, api: TestClient, tenant: Tenant
    ) -> None:
        response = api.post(
            "/v1/campaigns",
            headers=pair(tenant),
            json={
                "name": "Tiny",
                "vouchers_count": 50,
                "voucher": {
                    "type": "GIFT_VOUCHER",
                    "gift": {"amount": 500},
                    "code_config": {"length": 1, "charset": "AB"},
                },
            },
        )
        assert_error(response, 400, "limit_exceeded")
        assert_error(api.get("/v1/campaigns/Tiny", headers=pair(tenant)), 404, "not_found")


@pytest.fixture
def discount_voucher(api: TestClient, tenant: Tenant) -> dict[str, Any]:
    campaign = create_campaign(
        api,
        tenant,
        name="Newsletter",
        voucher={
            "type": "DISCOUNT_VOUCHER",
            "discount": {"type": "PERCENT", "percent_off": 10},
            "redemption": {"quantity": 1},
        },
    )
    response = api.post(
        f"/v1/campaigns/{campaign['id']}/vouchers", headers=pair(tenant), json={"code": "ycs2AnLT"}
    )
    assert response.status_code == 200
    return dict(response.json())


class TestSeed002Publications:
    def test_a_specific_code_to_a_customer_with_a_channel(
        self, api: TestClient, tenant: Tenant, discount_voucher: dict[str, Any]
    ) -> None:
        customer = api.post("/v1/customers", headers=pair(tenant), json={"source_id": "12344"})
        customer_id = customer.json()["id"]
        response = api.post(
            "/v1/publications",
            headers=curl_headers(tenant),
            content=SEED_002_SPECIFIC % customer_id,
        )
        assert response.status_code == 200, response.text
        p = response.json()
        assert p["id"].startswith("pub_")
        assert p["object"] == "publication"
        assert p["created_at"] == "2026-06-15T12:00:00Z"
        assert p["customer_id"] == customer_id
        assert p["tracking_id"] == "12344"
        assert p["channel"] == "newsletter_October"
        v = p["voucher"]
        assert v["code"] == "ycs2AnLT"
        assert v["campaign"] == "Newsletter"
        assert v["category"] is None
        assert v["type"] == "DISCOUNT_VOUCHER"
        assert v["discount"]["type"] == "PERCENT"
        assert v["discount"]["percent_off"] == 10.0
        assert v["gift"] is None
        for empty in (
            "start_date",
            "expiration_date",
            "validity_timeframe",
            "validity_day_of_week",
        ):
            assert v[empty] is None
        assert {k: v["publish"][k] for k in ("object", "count", "url")} == {
            "object": "list",
            "count": 1,
            "url": "/v1/vouchers/ycs2AnLT/publications?page=1&limit=10",
        }
        assert {
            k: v["redemption"][k] for k in ("object", "quantity", "redeemed_quantity", "url")
        } == {
            "object": "list",
            "quantity": 1,
            "redeemed_quantity": 0,
            "url": "/v1/vouchers/ycs2AnLT/redemptions?page=1&limit=10",
        }
        assert v["active"] is True
        assert v["additional_info"] is None
        assert v["metadata"] is None
        assert v["is_referral_code"] is False
        assert v["updated_at"] == "2026-06-15T12:00:00Z"
        assert v["holder_id"] == customer_id

        # "Automatic publication": the voucher's publish section shows the entries.
        publish = api.get("/v1/vouchers/ycs2AnLT", headers=pair(tenant)).json()["publish"]
        assert publish["object"] == "list"
        assert publish["count"] == publish["total"] == 1
        assert publish["data_ref"] == "entries"
        assert publish["url"] == "/v1/vouchers/ycs2AnLT/publications?page=1&limit=10"
        (entry,) = publish["entries"]
        assert entry["customer_id"] == customer_id
        assert entry["customer"] == "12344"
        assert entry["channel"] == "newsletter_October"
        assert entry["published_at"] == "2026-06-15T12:00:00Z"
        assert entry["metadata"] is None
        assert entry["object"] == "publication"

        history = api.get("/v1/vouchers/ycs2AnLT/publications", headers=pair(tenant)).json()
        assert history["data_ref"] == "publications"
        assert history["total"] == 1
        assert history["publications"][0]["id"] == p["id"]

    def test_codes_from_a_campaign_to_a_customer_created_inline(
        self, api: TestClient, tenant: Tenant
    ) -> None:
        create_campaign(
            api, tenant, name="100k-test", vouchers_count=3,
            voucher={"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 500}},
        )  # fmt: skip
        response = api.post(
            "/v1/publications",
            headers=curl_headers(tenant),
            content=SEED_002_DYNAMIC % "erlich@bachmanity.example",
        )
        assert response.status_code == 200, response.text
        p = response.json()
        assert p["id"].startswith("pub_")
        assert p["object"] == "publication"
        assert p["created_at"] == "2026-06-15T12:00:00Z"
        assert p["customer_id"].startswith("cust_")
        assert p["channel"] == "API"
        assert p["metadata"] == {"test": True, "provider": "Shop Admin"}
        assert len(p["vouchers"]) == len(set(p["vouchers"])) == 2
        customer = api.get(f"/v1/customers/{p['customer_id']}", headers=pair(tenant)).json()
        assert customer["email"] == "erlich@bachmanity.example"
        assert customer["name"] == "Erlich Bachman"
        # A code is never published twice: one code is left in this STATIC campaign's pool.
        last = api.post(
            "/v1/publications",
            headers=pair(tenant),
            json={"campaign": {"name": "100k-test", "count": 1}, "customer": {"source_id": "z"}},
        )
        assert last.json()["vouchers"][0] not in p["vouchers"]
        empty = api.post(
            "/v1/publications",
            headers=pair(tenant),
            json={"campaign": {"name": "100k-test", "count": 1}, "customer": {"source_id": "z"}},
        )
        assert_error(empty, 400, "no_voucher_suitable_for_publication")

    def test_the_seed_email_as_printed_is_refused(self, api: TestClient, tenant: Tenant) -> None:
        create_campaign(
            api, tenant, name="100k-test", vouchers_count=2,
            voucher={"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 500}},
        )  # fmt: skip
        response = api.post(
            "/v1/publications",
            headers=curl_headers(tenant),
            content=SEED_002_DYNAMIC % "[email protected]",
        )
        error = assert_error(response, 400, "invalid_payload")
        assert "customer.email" in error["details"]

    def test_auto_update_campaigns_grow_their_pool(self, api: TestClient, tenant: Tenant) -> None:
        create_campaign(
            api, tenant, name="grow", type="AUTO_UPDATE", vouchers_count=1,
            voucher={"type": "GIFT_VOUCHER", "gift": {"amount": 100}},
        )  # fmt: skip
        response = api.post(
            "/v1/publications",
            headers=pair(tenant),
            json={"campaign": {"name": "grow", "count": 3}, "customer": {"source_id": "a"}},
        )
        assert response.status_code == 200
        assert len(response.json()["vouchers"]) == 3

    def test_source_id_replays_the_same_publication(self, api: TestClient, tenant: Tenant) -> None:
        create_campaign(
            api, tenant, name="replay", vouchers_count=5,
            voucher={"type": "GIFT_VOUCHER", "gift": {"amount": 100}},
        )  # fmt: skip
        body = {"campaign": "replay", "source_id": "order-7", "customer": {"source_id": "c7"}}
        first = api.post("/v1/publications", headers=pair(tenant), json=body).json()
        again = api.post("/v1/publications", headers=pair(tenant), json=body).json()
        assert again["id"] == first["id"]
        assert again["vouchers"] == first["vouchers"]
        assert again["source_id"] == "order-7"
        other = api.post(
            "/v1/publications", headers=pair(tenant), json={**body, "channel": "Email"}
        )
        assert_error(other, 409, "duplicate_found")
        listed = api.get("/v1/publications?limit=10&page=1", headers=pair(tenant)).json()
        assert listed["object"] == "list"
        assert listed["total"] == 1
        by_customer = api.get("/v1/publications?customer=c7", headers=pair(tenant)).json()
        assert by_customer["publications"][0]["id"] == first["id"]

    def test_join_once_always_answers_the_same_code(self, api: TestClient, tenant: Tenant) -> None:
        # Voucherify: with join_once "a particular person gets only one and always the same
        # code even if the app sends multiple publication requests": a repeat is no error.
        create_campaign(
            api, tenant, name="referral", type="AUTO_UPDATE", vouchers_count=3,
            voucher={"type": "GIFT_VOUCHER", "gift": {"amount": 100}},
        )  # fmt: skip
        body = {"campaign": {"name": "referral"}, "customer": {"source_id": "ref-1"}}
        first = api.post("/v1/publications?join_once=true", headers=pair(tenant), json=body)
        assert first.status_code == 200, first.text
        again = api.post(
            "/v1/publications?join_once=true",
            headers={**pair(tenant), "Idempotency-Key": "join-again"},
            json=body,
        )
        assert again.status_code == 200, again.text
        assert again.json()["id"] == first.json()["id"]
        assert again.json()["vouchers"] == first.json()["vouchers"]
        listed = api.get("/v1/publications?customer=ref-1", headers=pair(tenant)).json()
        assert listed["total"] == 1
        # Another customer still gets a code of its own; without join_once a repeat adds one.
        other = api.post(
            "/v1/publications?join_once=true",
            headers=pair(tenant),
            json={**body, "customer": {"source_id": "ref-2"}},
        )
        assert other.json()["vouchers"] != first.json()["vouchers"]
        more = api.post("/v1/publications", headers=pair(tenant), json=body)
        assert more.status_code == 200, more.text
        assert more.json()["id"] != first.json()["id"]

    def test_publication_needs_a_voucher_or_a_campaign(
        self, api: TestClient, tenant: Tenant
    ) -> None:
        for body in (b"", b"{}"):
            response = api.post(
                "/v1/publications",
                headers={**pair(tenant), "Content-Type": "application/json"},
                content=body,
            )
            assert_error(response, 400, "invalid_payload")


class TestVouchers:
    def test_disable_and_enable(
        self, api: TestClient, tenant: Tenant, discount_voucher: dict[str, Any]
    ) -> None:
        headers = {**pair(tenant), "Content-Type": "application/json"}
        off = api.post("/v1/vouchers/ycs2AnLT/disable", headers=headers, content=b"")
        assert off.status_code == 200
        assert off.json()["active"] is False
        refused = api.post(
            "/v1/redemptions",
            headers=pair(tenant),
            json={"redeemables": [{"object": "voucher", "id": "ycs2AnLT"}], "order": {"amount": 1}},
        )
        assert_error(refused, 400, "voucher_disabled")
        on = api.post("/v1/vouchers/ycs2AnLT/enable", headers=headers, content=b"")
        assert on.json()["active"] is True

    def test_unknown_voucher(self, api: TestClient, tenant: Tenant) -> None:
        body = assert_error(api.get("/v1/vouchers/NOPE", headers=pair(tenant)), 404, "not_found")
        assert body["resource_type"] == "voucher"


@pytest.fixture
def gift_card(api: TestClient, tenant: Tenant) -> str:
    campaign = gift_campaign(api, tenant, "Cards")
    response = api.post(
        f"/v1/campaigns/{campaign['id']}/vouchers", headers=pair(tenant), json={"code": "GIFT-1"}
    )
    return str(response.json()["code"])


def redeem_body(code: str, **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"object": "voucher", "id": code}
    if "credits" in extra:
        item["gift"] = {"credits": extra.pop("credits")}
    return {"redeemables": [item], **extra}


class TestValidationsAndRedemptions:
    def test_validate_redeem_roll_back(
        self, api: TestClient, tenant: Tenant, gift_card: str
    ) -> None:
        body = redeem_body(
            gift_card, credits=2500, order={"amount": 4000, "source_id": "ord-1"},
            customer={"source_id": "ada"},
        )  # fmt: skip
        validation = api.post("/v1/validations", headers=pair(tenant), json=body).json()
        assert validation["valid"] is True
        assert validation["id"].startswith("valid_")
        (item,) = validation["redeemables"]
        assert item["status"] == "APPLICABLE"
        assert item["id"] == gift_card
        assert item["object"] == "voucher"
        assert item["result"]["gift"] == {"credits": 2500, "balance": 10000}
        assert item["campaign_name"] == "Cards"
        assert validation["order"]["amount"] == 4000
        assert validation["order"]["total_discount_amount"] == 2500
        assert validation["order"]["total_amount"] == 1500
        assert validation["inapplicable_redeemables"] == []
        assert validation["tracking_id"] == "ada"
        assert validation["stacking_rules"]["redeemables_application_mode"] == "ALL"

        response = api.post("/v1/redemptions", headers=pair(tenant), json=body)
        assert response.status_code == 200, response.text
        (redemption,) = response.json()["redemptions"]
        assert redemption["id"].startswith("r_")
        assert redemption["object"] == "redemption"
        assert redemption["result"] == "SUCCESS"
        assert redemption["status"] == "SUCCEEDED"
        assert redemption["amount"] == 2500
        assert redemption["gift"] == {"amount": 2500}
        assert redemption["tracking_id"] == "ada"
        assert redemption["customer"]["source_id"] == "ada"
        assert redemption["order"]["source_id"] == "ord-1"
        assert redemption["related_object_type"] == "voucher"
        assert redemption["voucher"]["code"] == gift_card
        assert redemption["voucher"]["gift"]["balance"] == 7500
        assert redemption["voucher"]["redemption"]["redeemed_quantity"] == 1
        assert response.json()["order"]["total_amount"] == 1500

        back = api.post(
            f"/v1/redemptions/{redemption['id']}/rollback?reason=Customer%20changed%20mind",
            headers={**pair(tenant), "Content-Type": "application/json"},
            content=b"",
        )
        assert back.status_code == 200, back.text
        rollback = back.json()
        assert rollback["id"].startswith("rr_")
        assert rollback["object"] == "redemption_rollback"
        assert rollback["redemption"] == redemption["id"]
        assert rollback["amount"] == -2500
        assert rollback["reason"] == "Customer changed mind"
        assert rollback["result"] == "SUCCESS"
        assert rollback["status"] == "SUCCEEDED"
        voucher = api.get(f"/v1/vouchers/{gift_card}", headers=pair(tenant)).json()
        assert voucher["gift"]["balance"] == 10000
        again = api.post(f"/v1/redemptions/{redemption['id']}/rollback", headers=pair(tenant))
        assert_error(again, 400, "already_rolled_back")
        shown = api.get(f"/v1/redemptions/{redemption['id']}", headers=pair(tenant)).json()
        assert shown["status"] == "ROLLED_BACK"

    def test_refusals_in_voucherify_keys(
        self, api: TestClient, tenant: Tenant, gift_card: str, clock: FakeClock
    ) -> None:
        too_much = api.post(
            "/v1/redemptions", headers=pair(tenant), json=redeem_body(gift_card, credits=10001)
        )
        assert_error(too_much, 400, "gift_amount_exceeded")
        validation = api.post(
            "/v1/validations",
            headers=pair(tenant),
            json={
                "redeemables": [
                    {"object": "voucher", "id": gift_card, "gift": {"credits": 10001}},
                    {"object": "voucher", "id": "NOPE"},
                ],
                "order": {"amount": 20000},
            },
        ).json()
        assert validation["valid"] is False
        keys = [i["result"]["error"]["key"] for i in validation["inapplicable_redeemables"]]
        assert keys == ["gift_amount_exceeded", "not_found"]
        assert [i["status"] for i in validation["redeemables"]] == ["INAPPLICABLE"] * 2

        campaign = create_campaign(
            api, tenant, name="once", expiration_date="2026-07-01T00:00:00Z",
            voucher={"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 300},
                     "redemption": {"quantity": 1}},
        )  # fmt: skip
        code = api.post(f"/v1/campaigns/{campaign['id']}/vouchers", headers=pair(tenant)).json()
        once = redeem_body(code["code"], order={"amount": 1000})
        first = api.post("/v1/redemptions", headers=pair(tenant), json=once).json()
        assert first["redemptions"][0]["amount"] == 300
        assert first["order"]["total_amount"] == 700
        assert_error(
            api.post("/v1/redemptions", headers=pair(tenant), json=once), 400, "quantity_exceeded"
        )
        clock.set(datetime(2026, 8, 1, tzinfo=UTC))
        api.post(f"/v1/redemptions/{first['redemptions'][0]['id']}/rollback", headers=pair(tenant))
        assert_error(
            api.post("/v1/redemptions", headers=pair(tenant), json=once), 400, "voucher_expired"
        )

    def test_one_redeemable_per_redemption(
        self, api: TestClient, tenant: Tenant, gift_card: str
    ) -> None:
        two = {"redeemables": [{"object": "voucher", "id": gift_card}] * 2}
        error = assert_error(api.post("/v1/redemptions", headers=pair(tenant), json=two), 400,
                             "invalid_payload")  # fmt: skip
        assert "redeemables" in error["details"]
        tier = {"redeemables": [{"object": "promotion_tier", "id": "promo_1"}]}
        assert_error(api.post("/v1/redemptions", headers=pair(tenant), json=tier), 400,
                     "invalid_payload")  # fmt: skip

    def test_legacy_voucher_redemption(
        self, api: TestClient, tenant: Tenant, gift_card: str
    ) -> None:
        response = api.post(
            f"/v1/vouchers/{gift_card}/redemption",
            headers=pair(tenant),
            json={"order": {"amount": 1200}, "customer": {"source_id": "bob"}},
        )
        assert response.status_code == 200, response.text
        redemption = response.json()
        assert redemption["object"] == "redemption"
        assert redemption["amount"] == 1200
        assert redemption["voucher"]["gift"]["balance"] == 8800


class TestVoucherRedemptions:
    """``GET /v1/vouchers/{code}/redemptions``: the list a voucher's ``redemption.url`` names."""

    def redeemed_twice_one_rolled_back(
        self, api: TestClient, tenant: Tenant, code: str
    ) -> list[str]:
        """Redeems 2500 then 1000 from the card and rolls the first back: ids, newest first."""
        made = []
        for credits, order_id in ((2500, "ord-1"), (1000, "ord-2")):
            body = redeem_body(
                code, credits=credits, order={"amount": 4000, "source_id": order_id},
                customer={"source_id": "ada"},
            )  # fmt: skip
            response = api.post("/v1/redemptions", headers=pair(tenant), json=body)
            assert response.status_code == 200, response.text
            made.append(response.json()["redemptions"][0]["id"])
        back = api.post(f"/v1/redemptions/{made[0]}/rollback", headers=pair(tenant))
        assert back.status_code == 200, back.text
        # Ids are time-ordered: "newest first" is descending id order.
        return sorted(made, reverse=True)

    def test_the_voucher_redemption_url_lists_its_entries(
        self, api: TestClient, tenant: Tenant, gift_card: str
    ) -> None:
        newest_first = self.redeemed_twice_one_rolled_back(api, tenant, gift_card)
        voucher = api.get(f"/v1/vouchers/{gift_card}", headers=pair(tenant)).json()
        url = voucher["redemption"]["url"]
        assert url == f"/v1/vouchers/{gift_card}/redemptions?page=1&limit=10"

        response = api.get(url, headers=pair(tenant))

        assert response.status_code == 200, response.text
        listed = response.json()
        entries = listed.pop("redemption_entries")
        assert listed == {
            "quantity": None,
            "redeemed_quantity": 1,
            "object": "list",
            "url": url,
            "data_ref": "redemption_entries",
            "total": 2,
        }
        assert listed["redeemed_quantity"] == voucher["redemption"]["redeemed_quantity"]
        assert [e["id"] for e in entries] == newest_first
        by_order = {e["order"]["source_id"]: e for e in entries}
        rolled, kept = by_order["ord-1"], by_order["ord-2"]
        assert (rolled["status"], rolled["amount"], rolled["gift"]) == (
            "ROLLED_BACK", 2500, {"amount": 2500},
        )  # fmt: skip
        assert (kept["status"], kept["amount"], kept["gift"]) == (
            "SUCCEEDED", 1000, {"amount": 1000},
        )  # fmt: skip
        for entry in entries:
            assert entry["object"] == "redemption"
            assert entry["result"] == "SUCCESS"
            assert entry["tracking_id"] == "ada"
            assert entry["customer"]["source_id"] == "ada"
            assert entry["related_object_type"] == "voucher"
            assert entry["voucher"]["code"] == gift_card
            # The very object GET /v1/redemptions/{id} answers.
            alone = api.get(f"/v1/redemptions/{entry['id']}", headers=pair(tenant)).json()
            assert entry == alone

    def test_paged_by_page_and_limit_and_by_voucher_id(
        self, api: TestClient, tenant: Tenant, gift_card: str
    ) -> None:
        newest_first = self.redeemed_twice_one_rolled_back(api, tenant, gift_card)
        seen = []
        for page in (1, 2, 3):
            listed = api.get(
                f"/v1/vouchers/{gift_card}/redemptions?page={page}&limit=1", headers=pair(tenant)
            ).json()
            assert listed["total"] == 2
            assert listed["url"] == f"/v1/vouchers/{gift_card}/redemptions?page={page}&limit=1"
            assert len(listed["redemption_entries"]) == (1 if page < 3 else 0)
            seen += [e["id"] for e in listed["redemption_entries"]]
        assert seen == newest_first
        voucher_id = api.get(f"/v1/vouchers/{gift_card}", headers=pair(tenant)).json()["id"]
        by_id = api.get(f"/v1/vouchers/{voucher_id}/redemptions", headers=pair(tenant)).json()
        assert [e["id"] for e in by_id["redemption_entries"]] == newest_first
        for bad in ("page=0", "limit=0", "limit=101", "page=x"):
            response = api.get(f"/v1/vouchers/{gift_card}/redemptions?{bad}", headers=pair(tenant))
            assert_error(response, 400, "invalid_payload")

    def test_a_voucher_never_redeemed_lists_nothing(
        self, api: TestClient, tenant: Tenant, gift_card: str
    ) -> None:
        listed = api.get(f"/v1/vouchers/{gift_card}/redemptions", headers=pair(tenant)).json()
        assert (listed["total"], listed["redeemed_quantity"], listed["redemption_entries"]) == (
            0, 0, [],
        )  # fmt: skip

    def test_the_singular_path_the_sdk_calls_answers_the_same(
        self, api: TestClient, tenant: Tenant, db: Database, gift_card: str
    ) -> None:
        # voucherify==6.1.1's RedemptionsApi.get_voucher_redemptions sends
        # GET /v1/vouchers/{code}/redemption (singular), as Voucherify's reference spells it.
        self.redeemed_twice_one_rolled_back(api, tenant, gift_card)
        plural = api.get(f"/v1/vouchers/{gift_card}/redemptions", headers=pair(tenant))
        singular = api.get(f"/v1/vouchers/{gift_card}/redemption", headers=pair(tenant))
        assert singular.status_code == 200, singular.text
        assert singular.json() == plural.json()
        other = api.get(f"/v1/vouchers/{gift_card}/redemption", headers=pair(Tenant(db)))
        assert assert_error(other, 404, "not_found")["resource_type"] == "voucher"

    def test_unknown_or_another_tenants_voucher_is_not_found(
        self, api: TestClient, tenant: Tenant, db: Database, gift_card: str
    ) -> None:
        self.redeemed_twice_one_rolled_back(api, tenant, gift_card)
        unknown = api.get("/v1/vouchers/NOPE/redemptions", headers=pair(tenant))
        assert assert_error(unknown, 404, "not_found")["resource_type"] == "voucher"
        other = api.get(f"/v1/vouchers/{gift_card}/redemptions", headers=pair(Tenant(db)))
        assert assert_error(other, 404, "not_found")["resource_type"] == "voucher"
        unauthenticated = api.get(f"/v1/vouchers/{gift_card}/redemptions")
        assert_error(unauthenticated, 401, "unauthorized")


class TestCustomers:
    def test_create_upsert_get_update_delete(self, api: TestClient, tenant: Tenant) -> None:
        body = {
            "source_id": "source_123",
            "name": "Bob Smith",
            "description": "A frequent customer",
            "email": "bob.smith@email.com",
            "phone": "+44 7911 123456",
            "address": {
                "city": "New York", "country": "United States", "line_1": "123 Main St.",
                "line_2": "APT 3 BLG 4", "postal_code": "10001", "state": "NY",
            },
            "metadata": {"lang": "en", "test": True},
            "birthdate": "2022-01-01",
        }  # fmt: skip
        created = api.post("/v1/customers", headers=pair(tenant), json=body).json()
        assert created["id"].startswith("cust_")
        assert created["object"] == "customer"
        assert created["source_id"] == "source_123"
        assert created["phone"] == "+447911123456"
        assert created["address"] == body["address"]
        assert created["birthdate"] == "2022-01-01"
        assert created["description"] == "A frequent customer"
        upserted = api.post(
            "/v1/customers", headers=pair(tenant), json={"source_id": "source_123", "name": "Bo"}
        ).json()
        assert upserted["id"] == created["id"]
        assert upserted["name"] == "Bo"
        assert upserted["email"] == "bob.smith@email.com"
        by_source = api.get("/v1/customers/source_123", headers=pair(tenant)).json()
        assert by_source["id"] == created["id"]
        updated = api.put(
            f"/v1/customers/{created['id']}",
            headers=pair(tenant),
            json={"email": "bob@example.org", "address": {"city": "Boston"}},
        ).json()
        assert updated["email"] == "bob@example.org"
        assert updated["address"]["city"] == "Boston"
        assert updated["address"]["line_1"] is None
        assert updated["name"] == "Bo"
        deleted = api.delete(f"/v1/customers/{created['id']}", headers=pair(tenant))
        assert deleted.status_code == 204
        assert deleted.content == b""
        for ref in (created["id"], "source_123"):
            assert_error(api.get(f"/v1/customers/{ref}", headers=pair(tenant)), 404, "not_found")
        gone = api.delete(f"/v1/customers/{created['id']}", headers=pair(tenant))
        assert_error(gone, 404, "not_found")

    def test_bad_customer_fields(self, api: TestClient, tenant: Tenant) -> None:
        for body, field in (
            ({"email": "not-an-email"}, "email"),
            ({"phone": "12"}, "phone"),
            ({"birthdate": "yesterday"}, "birthdate"),
            ({"address": {"zip": "1"}}, "address.zip"),
        ):
            error = assert_error(
                api.post("/v1/customers", headers=pair(tenant), json=body), 400, "invalid_payload"
            )
            assert field in error["details"]


class TestCredentialsAndShapes:
    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"X-App-Id": "vk_nope", "X-App-Token": "wrong"},
            {"Authorization": "Bearer vk_nope.wrong"},
            {"Authorization": "Basic abc"},
        ],
    )
    def test_wrong_or_missing_credentials(self, api: TestClient, headers: dict[str, str]) -> None:
        assert_error(api.get("/v1/campaigns", headers=headers), 401, "unauthorized")

    def test_a_wrong_secret_for_a_real_key(self, api: TestClient, tenant: Tenant) -> None:
        headers = {"X-App-Id": tenant.key.key_id, "X-App-Token": "x" + tenant.key.secret}
        assert_error(api.get("/v1/campaigns", headers=headers), 401, "unauthorized")

    def test_bearer_alone_works(self, api: TestClient, tenant: Tenant) -> None:
        headers = {"Authorization": f"Bearer {tenant.key.token}"}
        assert api.get("/v1/campaigns", headers=headers).status_code == 200

    def test_another_tenant_never_sees_the_voucher(
        self, api: TestClient, tenant: Tenant, db: Database, gift_card: str
    ) -> None:
        other = Tenant(db)
        assert_error(api.get(f"/v1/vouchers/{gift_card}", headers=pair(other)), 404, "not_found")
        redeem = api.post("/v1/redemptions", headers=pair(other), json=redeem_body(gift_card))
        assert_error(redeem, 404, "not_found")
        validation = api.post(
            "/v1/validations", headers=pair(other), json=redeem_body(gift_card)
        ).json()
        assert validation["valid"] is False

    def test_a_key_without_the_scope_is_forbidden(
        self, api: TestClient, tenant: Tenant, db: Database, gift_card: str
    ) -> None:
        key = create_key(db, tenant.name, scopes=["redeem"])
        headers = {"X-App-Id": key.key_id, "X-App-Token": key.secret}
        response = api.post("/v1/campaigns", headers=headers, json={"name": "x", "campaign_type":
                            "GIFT_VOUCHERS"})  # fmt: skip
        assert_error(response, 403, "forbidden")

    def test_malformed_json_and_unknown_paths(self, api: TestClient, tenant: Tenant) -> None:
        headers = {**pair(tenant), "Content-Type": "application/json"}
        broken = api.post("/v1/campaigns", headers=headers, content=b'{"name": ')
        assert_error(broken, 400, "invalid_payload")
        assert_error(api.get("/v1/nothing-here", headers=pair(tenant)), 404, "not_found")
        # A path voucherd serves, with a method it does not take: 405 naming the methods.
        refused = api.put("/v1/vouchers/x", headers=pair(tenant))
        assert_error(refused, 405, "method_not_allowed")
        assert refused.headers["Allow"] == "DELETE, GET, HEAD, POST"

    def test_idempotency_key_replays_the_voucherify_answer(
        self, api: TestClient, tenant: Tenant, gift_card: str
    ) -> None:
        headers = {**pair(tenant), "Idempotency-Key": "once-1"}
        body = redeem_body(gift_card, credits=100)
        first = api.post("/v1/redemptions", headers=headers, json=body)
        again = api.post("/v1/redemptions", headers=headers, json=body)
        assert again.status_code == 200
        assert again.json() == first.json()
        assert again.headers["Idempotent-Replayed"] == "true"
        balance = api.get(f"/v1/vouchers/{gift_card}", headers=pair(tenant)).json()["gift"]
        assert balance["balance"] == 9900


class TestOneVoucherOnEveryFace:
    def test_native_voucher_read_and_redeemed_through_voucherify(
        self, api: TestClient, tenant: Tenant, db: Database
    ) -> None:
        campaign = make_campaign(db, tenant, currency="GBP", default_value=2000)
        record = issue(db, tenant, campaign, customer_ref="+447911123456")
        code = record.voucher.code
        shown = api.get(f"/v1/vouchers/{code}", headers=pair(tenant)).json()
        assert shown["id"] == record.voucher.id
        assert shown["gift"]["balance"] == 2000
        redeemed = api.post(
            f"/v1/vouchers/{record.voucher.id}/redemption", headers=pair(tenant),
            json={"gift": {"credits": 2000}},
        )  # fmt: skip
        assert redeemed.status_code == 200
        native = api.get(f"/api/v1/vouchers/{code}", headers=tenant.headers).json()
        assert native["state"] == "REDEEMED"
        assert native["balance"] == 0
        cancel = api.post(f"/api/v1/vouchers/{code}/cancel", headers=tenant.headers)
        assert cancel.status_code == 409


def test_the_openapi_document_lists_the_voucherify_face(api: TestClient) -> None:
    paths = json.loads(api.get("/openapi.json").text)["paths"]
    assert "/v1/campaigns/{campaignId}/vouchers" in paths
    assert "/v1/async-actions/{asyncActionId}" in paths


def test_a_database_outage_answers_503_in_voucherify_shape_then_recovers(
    backend: str, fresh_database: Callable[..., Database]
) -> None:
    if backend != "postgresql":
        pytest.skip("only a database server can drop connections under a live pool")
    db = fresh_database(pool_size=2)
    tenant = Tenant(db)
    with TestClient(create_app(db.settings, db=db), raise_server_exceptions=False) as client:
        campaign = {"id": make_campaign(db, tenant).id}
        with pg_admin() as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (make_url(db.settings.database_url).database,),
            )
        path = f"/v1/campaigns/{campaign['id']}/vouchers"
        outage = client.post(path, headers=pair(tenant))
        assert outage.status_code == 503
        assert outage.json()["key"] == "service_unavailable"
        assert outage.json()["code"] == 503
        assert client.post(path, headers=pair(tenant)).status_code == 200


class TestLists:
    """GET /v1/vouchers, /v1/redemptions and /v1/customers: numbered pages with totals, newest
    first, the tenant's own only; a filter naming nothing that exists lists nothing."""

    def add(self, api: TestClient, tenant: Tenant, campaign: str, **body: Any) -> dict[str, Any]:
        response = api.post(f"/v1/campaigns/{campaign}/vouchers", headers=pair(tenant), json=body)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def listed(self, api: TestClient, tenant: Tenant, path: str) -> dict[str, Any]:
        response = api.get(path, headers=pair(tenant))
        assert response.status_code == 200, response.text
        return dict(response.json())

    def test_vouchers_by_page_campaign_category_and_customer(
        self, api: TestClient, tenant: Tenant, db: Database
    ) -> None:
        cards = gift_campaign(api, tenant, "Cards")
        gift_campaign(api, tenant, "Other")
        made = [self.add(api, tenant, "Cards", code=f"CARD-{n}") for n in range(3)]
        made.append(self.add(api, tenant, "Other", code="OTHER-1", category="summer"))
        customer = api.post("/v1/customers", headers=pair(tenant), json={"source_id": "c-1"})
        published = api.post(
            "/v1/publications",
            headers=pair(tenant),
            json={"voucher": "CARD-1", "customer": {"source_id": "c-1"}},
        )
        assert published.status_code == 200, published.text
        newest_first = [v["code"] for v in reversed(made)]
        everything = self.listed(api, tenant, "/v1/vouchers")
        assert (everything["object"], everything["data_ref"], everything["total"]) == (
            "list", "vouchers", 4,
        )  # fmt: skip
        assert [v["code"] for v in everything["vouchers"]] == newest_first
        alone = api.get("/v1/vouchers/CARD-0", headers=pair(tenant)).json()
        listed = next(v for v in everything["vouchers"] if v["code"] == "CARD-0")
        assert {k: v for k, v in listed.items() if k != "publish"} == {
            k: v for k, v in alone.items() if k != "publish"
        }
        seen = []
        for page in (1, 2, 3):
            paged = self.listed(api, tenant, f"/v1/vouchers?page={page}&limit=2")
            assert paged["total"] == 4
            seen += [v["code"] for v in paged["vouchers"]]
        assert seen == newest_first
        for ref in ("Cards", cards["id"]):
            by_campaign = self.listed(api, tenant, f"/v1/vouchers?campaign={ref}")
            assert [v["code"] for v in by_campaign["vouchers"]] == ["CARD-2", "CARD-1", "CARD-0"]
        by_id = self.listed(api, tenant, f"/v1/vouchers?campaign_id={cards['id']}")
        assert by_id["total"] == 3
        both = self.listed(api, tenant, f"/v1/vouchers?campaign=Other&campaign_id={cards['id']}")
        assert both["total"] == 0  # filters narrow together: no voucher is in two campaigns
        by_category = self.listed(api, tenant, "/v1/vouchers?category=summer")
        assert [v["code"] for v in by_category["vouchers"]] == ["OTHER-1"]
        for ref in ("c-1", customer.json()["id"]):
            held = self.listed(api, tenant, f"/v1/vouchers?customer={ref}")
            assert [v["code"] for v in held["vouchers"]] == ["CARD-1"], ref
        for unknown in ("campaign=Nope", "customer=nobody", "category=winter"):
            empty = self.listed(api, tenant, f"/v1/vouchers?{unknown}")
            assert (empty["vouchers"], empty["total"]) == ([], 0)
        other = self.listed(api, Tenant(db), "/v1/vouchers")
        assert (other["vouchers"], other["total"]) == ([], 0)
        for bad in ("page=0", "limit=0", "limit=101", "page=x"):
            response = api.get(f"/v1/vouchers?{bad}", headers=pair(tenant))
            assert_error(response, 400, "invalid_payload")
        assert_error(api.get("/v1/vouchers"), 401, "unauthorized")

    def test_redemptions_by_page_voucher_campaign_customer_and_result(
        self, api: TestClient, tenant: Tenant, db: Database
    ) -> None:
        gift_campaign(api, tenant, "Cards")
        gift_campaign(api, tenant, "Other")
        self.add(api, tenant, "Cards", code="CARD-1")
        self.add(api, tenant, "Other", code="OTHER-1")
        customer = api.post("/v1/customers", headers=pair(tenant), json={"source_id": "c-1"})
        ids = []
        for code, who in (("CARD-1", {"source_id": "c-1"}), ("OTHER-1", None), ("CARD-1", None)):
            body = redeem_body(code, credits=100, **({"customer": who} if who else {}))
            response = api.post("/v1/redemptions", headers=pair(tenant), json=body)
            assert response.status_code == 200, response.text
            ids.append(response.json()["redemptions"][0]["id"])
        rollback = api.post(f"/v1/redemptions/{ids[1]}/rollback", headers=pair(tenant))
        assert rollback.status_code == 200, rollback.text
        newest_first = list(reversed(ids))
        everything = self.listed(api, tenant, "/v1/redemptions")
        assert (everything["object"], everything["data_ref"], everything["total"]) == (
            "list", "redemptions", 3,
        )  # fmt: skip
        assert [r["id"] for r in everything["redemptions"]] == newest_first
        for entry in everything["redemptions"]:  # the very objects GET /v1/redemptions/{id} shows
            assert entry == api.get(f"/v1/redemptions/{entry['id']}", headers=pair(tenant)).json()
        seen = []
        for page in (1, 2, 3, 4):
            paged = self.listed(api, tenant, f"/v1/redemptions?page={page}&limit=1")
            assert paged["total"] == 3
            seen += [r["id"] for r in paged["redemptions"]]
        assert seen == newest_first
        for query, expected in (
            ("voucher=CARD-1", [ids[2], ids[0]]),
            ("campaign=Other", [ids[1]]),
            ("customer=c-1", [ids[0]]),
            (f"customer={customer.json()['id']}", [ids[0]]),
            ("result=SUCCESS", newest_first),
            ("result=FAILURE", []),
            ("voucher=NOPE", []),
            ("campaign=Nope", []),
            ("customer=nobody", []),
        ):
            found = self.listed(api, tenant, f"/v1/redemptions?{query}")
            assert ([r["id"] for r in found["redemptions"]], found["total"]) == (
                expected, len(expected),
            ), query  # fmt: skip
        other = self.listed(api, Tenant(db), "/v1/redemptions")
        assert (other["redemptions"], other["total"]) == ([], 0)
        for bad in ("result=MAYBE", "limit=101", "page=0"):
            response = api.get(f"/v1/redemptions?{bad}", headers=pair(tenant))
            assert_error(response, 400, "invalid_payload")

    def test_customers_by_page_and_email_without_the_deleted(
        self, api: TestClient, tenant: Tenant, db: Database
    ) -> None:
        made = []
        for n in range(3):
            body = {"source_id": f"c-{n}", "email": f"c{n}@example.org"}
            made.append(api.post("/v1/customers", headers=pair(tenant), json=body).json())
        deleted = api.delete(f"/v1/customers/{made[0]['id']}", headers=pair(tenant))
        assert deleted.status_code == 204
        everything = self.listed(api, tenant, "/v1/customers")
        assert (everything["object"], everything["data_ref"], everything["total"]) == (
            "list", "customers", 2,
        )  # fmt: skip
        assert [c["id"] for c in everything["customers"]] == [made[2]["id"], made[1]["id"]]
        alone = api.get(f"/v1/customers/{made[2]['id']}", headers=pair(tenant)).json()
        assert everything["customers"][0] == alone
        second = self.listed(api, tenant, "/v1/customers?page=2&limit=1")
        assert ([c["id"] for c in second["customers"]], second["total"]) == ([made[1]["id"]], 2)
        by_email = self.listed(api, tenant, "/v1/customers?email=c1@example.org")
        assert [c["id"] for c in by_email["customers"]] == [made[1]["id"]]
        for gone in ("c0@example.org", "nobody@example.org"):
            empty = self.listed(api, tenant, f"/v1/customers?email={gone}")
            assert (empty["customers"], empty["total"]) == ([], 0)
        other = self.listed(api, Tenant(db), "/v1/customers")
        assert (other["customers"], other["total"]) == ([], 0)
        assert_error(
            api.get("/v1/customers?limit=101", headers=pair(tenant)), 400, "invalid_payload"
        )
