"""Bad input on the native API: RFC 9457 problem+json naming the field, never a 5xx, and
nothing half-written.

Every request goes through ``api``, which fails the test on any 5xx answer. Each refused write
counts the rows of the tables a write could touch before and after.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.factories.vouchers import issue
from tests.support.rows import count_rows
from voucherd.api.problems import PROBLEM_JSON
from voucherd.app import create_app
from voucherd.auth.service import revoke_key
from voucherd.config import Settings
from voucherd.db.engine import Database
from voucherd.money import MAX_MINOR_UNITS

JSON = {"content-type": "application/json"}


class World:
    """One of each object, so every route has something real to address."""

    def __init__(self, db: Database, tenant: Tenant, api: TestClient) -> None:
        self.tenant = tenant
        self.campaign = make_campaign(db, tenant, name="Gift", type="GIFT", default_value=5000)
        self.voucher = issue(db, tenant, self.campaign).voucher
        made = api.post(
            "/api/v1/redemptions",
            headers=tenant.headers,
            json={"code": self.voucher.code, "amount": 100},
        )
        assert made.status_code == 201, made.text
        self.redemption_id: str = made.json()["id"]

    def writes(self) -> list[tuple[str, str]]:
        """Every route that takes a body: (method, path)."""
        c, v, r = self.campaign.id, self.voucher.id, self.redemption_id
        return [
            ("POST", "/api/v1/campaigns"),
            ("PATCH", f"/api/v1/campaigns/{c}"),
            ("POST", f"/api/v1/campaigns/{c}/vouchers"),
            ("POST", "/api/v1/vouchers"),
            ("POST", f"/api/v1/vouchers/{v}/disable"),
            ("POST", f"/api/v1/vouchers/{v}/enable"),
            ("POST", f"/api/v1/vouchers/{v}/cancel"),
            ("POST", f"/api/v1/vouchers/{v}/balance"),
            ("POST", "/api/v1/validations"),
            ("POST", "/api/v1/redemptions"),
            ("POST", f"/api/v1/redemptions/{r}/rollback"),
            ("PATCH", "/api/v1/tenant"),
        ]


@pytest.fixture
def world(db: Database, tenant: Tenant, api: TestClient) -> World:
    return World(db, tenant, api)


def assert_problem(
    response: httpx.Response, status: int, code: str, *fields: str
) -> dict[str, Any]:
    """An RFC 9457 document with our extensions: ``code`` and ``errors`` naming each field."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    problem: dict[str, Any] = response.json()
    assert problem["type"] == f"urn:voucherd:problem:{code}"
    assert problem["status"] == status
    assert problem["code"] == code
    assert problem["title"]
    assert problem["detail"]
    if fields:
        named = {e["field"] for e in problem["errors"]}
        assert set(fields) <= named, (fields, problem["errors"])
        assert all(isinstance(e["reason"], str) and e["reason"] for e in problem["errors"])
    return problem


class TestMalformedJson:
    def test_every_route_with_a_body(self, api: TestClient, db: Database, world: World) -> None:
        before = count_rows(db)

        for method, path in world.writes():
            response = api.request(
                method, path, headers={**world.tenant.headers, **JSON}, content=b'{"name": '
            )
            problem = assert_problem(response, 400, "malformed_json", "body")
            assert problem["title"] == "Malformed JSON", path

        assert count_rows(db) == before

    @pytest.mark.parametrize(
        "content",
        [b'{"name": "\xff\xfe", "type": "GIFT"}', b"[" * 5000 + b"]" * 5000],
        ids=["not-utf8", "nested-too-deep"],
    )
    def test_a_body_that_cannot_be_decoded(
        self, api: TestClient, db: Database, tenant: Tenant, content: bytes
    ) -> None:
        before = count_rows(db)

        response = api.post(
            "/api/v1/campaigns", headers={**tenant.headers, **JSON}, content=content
        )

        assert_problem(response, 400, "malformed_json", "body")
        assert count_rows(db) == before

    @pytest.mark.parametrize("body", [[], "campaign", 42, None])
    def test_json_that_is_not_an_object(
        self, api: TestClient, db: Database, tenant: Tenant, body: Any
    ) -> None:
        response = api.post(
            "/api/v1/vouchers", headers={**tenant.headers, **JSON}, content=json.dumps(body)
        )

        assert_problem(response, 422, "invalid_input", "body")

    def test_no_body_at_all(self, api: TestClient, tenant: Tenant) -> None:
        response = api.post("/api/v1/redemptions", headers=tenant.headers)

        assert_problem(response, 422, "invalid_input", "body")


def refused_writes(
    api: TestClient,
    db: Database,
    tenant: Tenant,
    cases: list[tuple[str, str, Any, int, str, str]],
) -> None:
    """Send each (method, path, body, status, code, field) and check nothing was written."""
    before = count_rows(db)
    for method, path, body, status, code, field in cases:
        response = api.request(method, path, headers=tenant.headers, json=body)
        assert response.status_code == status, f"{method} {path} {body!r}: {response.text}"
        assert_problem(response, status, code, field)
    assert count_rows(db) == before


class TestWrongTypes:
    def test_campaign_fields(self, api: TestClient, db: Database, tenant: Tenant) -> None:
        gift = {"name": "g", "type": "GIFT", "currency": "EUR"}
        cases: list[tuple[str, str, Any, int, str, str]] = [
            ("POST", "/api/v1/campaigns", {"name": 123, "type": "GIFT"}, 422, "invalid_input", "name"),
            ("POST", "/api/v1/campaigns", {"name": "g", "type": "BOGUS"}, 422, "invalid_input", "type"),
            ("POST", "/api/v1/campaigns", {**gift, "currency": "XXX"}, 422, "invalid_input", "currency"),
            ("POST", "/api/v1/campaigns", {**gift, "default_value": "lots"}, 422, "invalid_input", "default_value"),
            ("POST", "/api/v1/campaigns", {**gift, "default_value": 12.5}, 422, "invalid_input", "default_value"),
            ("POST", "/api/v1/campaigns", {**gift, "active": "maybe"}, 422, "invalid_input", "active"),
            ("POST", "/api/v1/campaigns", {**gift, "timezone": "Mars/Olympus"}, 422, "invalid_input", "timezone"),
            ("POST", "/api/v1/campaigns", {**gift, "validity_day_of_week": [7]}, 422, "invalid_input", "validity_day_of_week"),
            ("POST", "/api/v1/campaigns", {**gift, "metadata": ["a"]}, 422, "invalid_input", "metadata"),
            ("POST", "/api/v1/campaigns", {**gift, "code_config": {"pattern": "AB"}}, 422, "invalid_input", "code_config"),
            (
                "POST",
                "/api/v1/campaigns",
                {"name": "d", "type": "DISCOUNT", "discount": {"type": "PERCENT", "percent_off": "ten"}},
                422,
                "invalid_input",
                "discount.percent_off",
            ),
        ]  # fmt: skip
        refused_writes(api, db, tenant, cases)

    def test_voucher_fields(self, api: TestClient, db: Database, world: World) -> None:
        c, v = world.campaign.id, world.voucher.id
        cases: list[tuple[str, str, Any, int, str, str]] = [
            ("POST", "/api/v1/vouchers", {"campaign": ["Gift"]}, 422, "invalid_input", "campaign"),
            ("POST", "/api/v1/vouchers", {"campaign": c, "value": 10.5}, 422, "invalid_input", "value"),
            ("POST", "/api/v1/vouchers", {"campaign": c, "value": "ten"}, 422, "invalid_input", "value"),
            ("POST", "/api/v1/vouchers", {"campaign": c, "holder": "ann"}, 422, "invalid_input", "holder"),
            ("POST", "/api/v1/vouchers", {"campaign": c, "code": "has space"}, 422, "invalid_input", "code"),
            ("POST", f"/api/v1/campaigns/{c}/vouchers", {"count": "many"}, 422, "invalid_input", "count"),
            ("POST", f"/api/v1/vouchers/{v}/balance", {"amount": "more"}, 422, "invalid_input", "amount"),
            ("POST", f"/api/v1/vouchers/{v}/disable", {"reason": 5}, 422, "invalid_input", "reason"),
        ]  # fmt: skip
        refused_writes(api, db, world.tenant, cases)

    def test_redemption_fields(self, api: TestClient, db: Database, world: World) -> None:
        code, r = world.voucher.code, world.redemption_id
        item = {"sku": "tea", "quantity": "two", "price": 100}
        cases: list[tuple[str, str, Any, int, str, str]] = [
            ("POST", "/api/v1/redemptions", {"code": 123}, 422, "invalid_input", "code"),
            ("POST", "/api/v1/redemptions", {"code": code, "amount": "ten"}, 422, "invalid_input", "amount"),
            ("POST", "/api/v1/redemptions", {"code": code, "order": "big"}, 422, "invalid_input", "order"),
            ("POST", "/api/v1/redemptions", {"code": code, "order": {"items": [item]}}, 422, "invalid_input", "order.items.0.quantity"),
            ("POST", "/api/v1/validations", {"code": code, "order": {"amount": []}}, 422, "invalid_input", "order.amount"),
            ("POST", f"/api/v1/redemptions/{r}/rollback", {"reason": ["x"]}, 422, "invalid_input", "reason"),
        ]  # fmt: skip
        refused_writes(api, db, world.tenant, cases)

    def test_a_boolean_is_not_money(self, api: TestClient, db: Database, world: World) -> None:
        cases: list[tuple[str, str, Any, int, str, str]] = [
            ("POST", "/api/v1/vouchers", {"campaign": "Gift", "value": True}, 422, "invalid_input", "value"),
            ("POST", "/api/v1/redemptions", {"code": world.voucher.code, "amount": True}, 422, "invalid_input", "amount"),
        ]  # fmt: skip
        refused_writes(api, db, world.tenant, cases)


class TestMissingFields:
    def test_required_fields_are_named(self, api: TestClient, db: Database, world: World) -> None:
        c, v = world.campaign.id, world.voucher.id
        cases: list[tuple[str, str, Any, int, str, str]] = [
            ("POST", "/api/v1/campaigns", {"type": "GIFT"}, 422, "invalid_input", "name"),
            ("POST", "/api/v1/campaigns", {"name": "x"}, 422, "invalid_input", "type"),
            ("POST", "/api/v1/campaigns", {"name": "x", "type": "GIFT"}, 422, "invalid_input", "currency"),
            ("POST", "/api/v1/campaigns", {"name": "x", "type": "DISCOUNT"}, 422, "invalid_input", "discount"),
            (
                "POST",
                "/api/v1/campaigns",
                {"name": "x", "type": "DISCOUNT", "discount": {"type": "PERCENT"}},
                422,
                "invalid_input",
                "discount",
            ),
            ("POST", "/api/v1/vouchers", {}, 422, "invalid_input", "campaign"),
            ("POST", f"/api/v1/campaigns/{c}/vouchers", {}, 422, "invalid_input", "count"),
            ("POST", f"/api/v1/vouchers/{v}/balance", {}, 422, "invalid_input", "amount"),
            ("POST", "/api/v1/redemptions", {"amount": 1}, 422, "invalid_input", "code"),
            ("POST", "/api/v1/validations", {}, 422, "invalid_input", "code"),
            ("PATCH", "/api/v1/tenant", {}, 422, "invalid_input", "weekly_value_limit"),
        ]  # fmt: skip
        refused_writes(api, db, world.tenant, cases)

    def test_every_missing_field_is_named_at_once(self, api: TestClient, tenant: Tenant) -> None:
        response = api.post("/api/v1/campaigns", headers=tenant.headers, json={})

        assert_problem(response, 422, "invalid_input", "name", "type")


class TestUnknownFields:
    def test_are_refused_by_name(self, api: TestClient, db: Database, world: World) -> None:
        c, v, r = world.campaign.id, world.voucher.id, world.redemption_id
        code = world.voucher.code
        gift = {"name": "g", "type": "GIFT", "currency": "EUR"}
        cases: list[tuple[str, str, Any, int, str, str]] = [
            ("POST", "/api/v1/campaigns", {**gift, "colour": "red"}, 422, "invalid_input", "colour"),
            ("POST", "/api/v1/campaigns", {**gift, "code_config": {"size": 8}}, 422, "invalid_input", "code_config.size"),
            ("PATCH", f"/api/v1/campaigns/{c}", {"type": "CASH"}, 422, "invalid_input", "type"),
            ("POST", f"/api/v1/campaigns/{c}/vouchers", {"count": 1, "customer_ref": "x"}, 422, "invalid_input", "customer_ref"),
            ("POST", "/api/v1/vouchers", {"campaign": c, "balance": 9}, 422, "invalid_input", "balance"),
            ("POST", f"/api/v1/vouchers/{v}/cancel", {"why": "x"}, 422, "invalid_input", "why"),
            ("POST", "/api/v1/redemptions", {"code": code, "amount": 1, "tip": 5}, 422, "invalid_input", "tip"),
            ("POST", "/api/v1/redemptions", {"code": code, "order": {"amount": 1, "vat": 2}}, 422, "invalid_input", "order.vat"),
            ("POST", "/api/v1/validations", {"code": code, "merchant_ref": "m"}, 422, "invalid_input", "merchant_ref"),
            ("POST", f"/api/v1/redemptions/{r}/rollback", {"amount": 1}, 422, "invalid_input", "amount"),
            ("PATCH", "/api/v1/tenant", {"weekly_value_limit": None, "name": "x"}, 422, "invalid_input", "name"),
        ]  # fmt: skip
        refused_writes(api, db, world.tenant, cases)


class TestUnknownCampaign:
    def test_is_404_naming_campaign(self, api: TestClient, db: Database, tenant: Tenant) -> None:
        h = tenant.headers
        before = count_rows(db)

        answers = [
            api.post("/api/v1/vouchers", headers=h, json={"campaign": "No such"}),
            api.post("/api/v1/campaigns/No%20such/vouchers", headers=h, json={"count": 2}),
            api.get("/api/v1/campaigns/No%20such", headers=h),
            api.patch("/api/v1/campaigns/No%20such", headers=h, json={"description": "x"}),
            api.get("/api/v1/vouchers", headers=h, params={"campaign": "No such"}),
        ]

        for response in answers:
            assert_problem(response, 404, "not_found", "campaign")
        assert count_rows(db) == before

    def test_unknown_routes_and_methods(self, api: TestClient, tenant: Tenant) -> None:
        assert_problem(api.get("/api/v1/nothing", headers=tenant.headers), 404, "not_found")
        assert_problem(
            api.delete("/api/v1/campaigns", headers=tenant.headers), 405, "method_not_allowed"
        )


ABSURD = MAX_MINOR_UNITS + 1


class TestAmounts:
    def test_negative_zero_and_absurd(self, api: TestClient, db: Database, world: World) -> None:
        c, v, code = world.campaign.id, world.voucher.id, world.voucher.code
        gift = {"name": "g", "type": "GIFT", "currency": "EUR"}
        cases: list[tuple[str, str, Any, int, str, str]] = []
        for bad in (-1, 0, ABSURD, 10**30):
            cases += [
                ("POST", "/api/v1/vouchers", {"campaign": c, "value": bad}, 422, "invalid_input", "value"),
                ("POST", "/api/v1/redemptions", {"code": code, "amount": bad}, 422, "invalid_input", "amount"),
                ("POST", "/api/v1/validations", {"code": code, "amount": bad}, 422, "invalid_input", "amount"),
                ("POST", f"/api/v1/campaigns/{c}/vouchers", {"count": bad}, 422, "invalid_input", "count"),
                ("POST", "/api/v1/campaigns", {**gift, "max_value": bad}, 422, "invalid_input", "max_value"),
            ]  # fmt: skip
        for bad in (-1, ABSURD):
            cases += [
                ("POST", "/api/v1/campaigns", {**gift, "default_value": bad}, 422, "invalid_input", "default_value"),
                ("POST", "/api/v1/campaigns", {**gift, "budget": bad}, 422, "invalid_input", "budget"),
                ("PATCH", f"/api/v1/campaigns/{c}", {"default_value": bad}, 422, "invalid_input", "default_value"),
                ("POST", "/api/v1/redemptions", {"code": code, "order": {"amount": bad}}, 422, "invalid_input", "order.amount"),
                ("PATCH", "/api/v1/tenant", {"weekly_value_limit": bad}, 422, "invalid_input", "weekly_value_limit"),
            ]  # fmt: skip
        cases += [
            ("POST", f"/api/v1/vouchers/{v}/balance", {"amount": 0}, 422, "invalid_input", "amount"),
            (
                "POST",
                "/api/v1/redemptions",
                {"code": code, "order": {"items": [{"sku": "a", "quantity": 10**6, "price": 10**8}]}},
                422,
                "invalid_input",
                "order.items.0",
            ),
        ]  # fmt: skip
        refused_writes(api, db, world.tenant, cases)

    def test_above_the_campaign_maximum(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        campaign = make_campaign(db, tenant, default_value=1000, max_value=2000)

        refused_writes(
            api,
            db,
            tenant,
            [
                (
                    "POST",
                    "/api/v1/vouchers",
                    {"campaign": campaign.id, "value": 2001},
                    422,
                    "value_above_maximum",
                    "value",
                ),
            ],
        )

    def test_a_huge_unit_discount_is_refused_not_overflowed(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        campaign = make_campaign(
            db,
            tenant,
            type="DISCOUNT",
            discount={"type": "UNIT", "unit_off": 10**9, "unit_type": "gold"},
        )
        code = issue(db, tenant, campaign).voucher.code
        items = [{"sku": "gold", "quantity": 10**9, "price": 10**13}]

        refused_writes(
            api,
            db,
            tenant,
            [
                ("POST", "/api/v1/validations", {"code": code, "order": {"items": items}}, 422, "invalid_input", "order.items.0"),
                ("POST", "/api/v1/redemptions", {"code": code, "order": {"items": items}}, 422, "invalid_input", "order.items.0"),
            ],
        )  # fmt: skip

    def test_an_absurd_balance_adjustment(
        self, api: TestClient, db: Database, world: World
    ) -> None:
        path = f"/api/v1/vouchers/{world.voucher.id}/balance"
        refused_writes(
            api,
            db,
            world.tenant,
            [
                ("POST", path, {"amount": 9 * 10**18}, 422, "invalid_input", "amount"),
                ("POST", path, {"amount": 10**19}, 422, "invalid_input", "amount"),
            ],
        )


class TestDates:
    def test_bad_dates_are_named(self, api: TestClient, db: Database, world: World) -> None:
        c = world.campaign.id
        gift = {"name": "g", "type": "GIFT", "currency": "EUR", "default_value": 100}
        window = {"start_time": "25:00", "expiration_time": "26:00"}
        cases: list[tuple[str, str, Any, int, str, str]] = [
            ("POST", "/api/v1/campaigns", {**gift, "start_date": "2026-13-01"}, 422, "invalid_input", "start_date"),
            ("POST", "/api/v1/campaigns", {**gift, "expiration_date": "tomorrow"}, 422, "invalid_input", "expiration_date"),
            ("POST", "/api/v1/campaigns", {**gift, "start_date": "2026-07-01T00:00:00Z", "expiration_date": "2026-06-30T00:00:00Z"}, 422, "invalid_input", "expiration_date"),
            ("POST", "/api/v1/campaigns", {**gift, "validity_timeframe": {"duration": "PT1H", "interval": "P1D"}}, 422, "invalid_input", "start_date"),
            ("POST", "/api/v1/campaigns", {**gift, "validity_timeframe": {"duration": "1 hour", "interval": "P1D"}}, 422, "invalid_input", "validity_timeframe.duration"),
            ("POST", "/api/v1/campaigns", {**gift, "validity_hours": {"daily": [window]}}, 422, "invalid_input", "validity_hours.daily.0.start_time"),
            ("POST", "/api/v1/campaigns", {**gift, "lifetime_days": -1}, 422, "invalid_input", "lifetime_days"),
            ("PATCH", f"/api/v1/campaigns/{c}", {"expiration_date": "2026-02-30"}, 422, "invalid_input", "expiration_date"),
            ("POST", "/api/v1/vouchers", {"campaign": c, "start_date": "soon"}, 422, "invalid_input", "start_date"),
            ("POST", "/api/v1/vouchers", {"campaign": c, "expiration_date": "2020-01-01T00:00:00Z"}, 422, "campaign_expired", "expiration_date"),
            ("POST", f"/api/v1/campaigns/{c}/vouchers", {"count": 2, "expiration_date": "2020-01-01T00:00:00Z"}, 422, "campaign_expired", "expiration_date"),
        ]  # fmt: skip
        refused_writes(api, db, world.tenant, cases)

    def test_bad_query_dates(self, api: TestClient, tenant: Tenant) -> None:
        response = api.get(
            "/api/v1/vouchers", headers=tenant.headers, params={"created_after": "last week"}
        )

        assert_problem(response, 422, "invalid_input", "created_after")

    def test_a_query_date_without_offset(self, api: TestClient, db: Database, world: World) -> None:
        h = world.tenant.headers
        # The world's voucher was made at the test clock's 2026-06-15 12:00 UTC.
        for after, found in [("2026-06-15T11:59", 1), ("2026-06-15T12:01", 0)]:
            listed = api.get("/api/v1/vouchers", headers=h, params={"created_after": after})
            assert listed.status_code == 200, listed.text
            assert len(listed.json()["data"]) == found, after

    def test_dates_at_the_edge_of_the_calendar(
        self, api: TestClient, db: Database, world: World
    ) -> None:
        gift = {"name": "g", "type": "GIFT", "currency": "EUR", "default_value": 100}
        cases: list[tuple[str, str, Any, int, str, str]] = [
            ("POST", "/api/v1/campaigns", {**gift, "expiration_date": "9999-12-31T23:59:59-05:00"}, 422, "invalid_input", "expiration_date"),
            ("POST", "/api/v1/vouchers", {"campaign": world.campaign.id, "start_date": "0001-01-01T00:00:00+05:00"}, 422, "invalid_input", "start_date"),
        ]  # fmt: skip
        refused_writes(api, db, world.tenant, cases)


class TestQueryParameters:
    @pytest.mark.parametrize(
        "path", ["/api/v1/campaigns", "/api/v1/vouchers", "/api/v1/redemptions"]
    )
    def test_limit_and_cursor(self, api: TestClient, tenant: Tenant, path: str) -> None:
        for params, field in [
            ({"limit": "abc"}, "limit"),
            ({"limit": 0}, "limit"),
            ({"limit": 101}, "limit"),
            ({"limit": -5}, "limit"),
            ({"cursor": "x" * 41}, "cursor"),
        ]:
            response = api.get(path, headers=tenant.headers, params=params)
            assert_problem(response, 422, "invalid_input", field)

    def test_filters(self, api: TestClient, tenant: Tenant) -> None:
        h = tenant.headers
        assert_problem(
            api.get("/api/v1/vouchers", headers=h, params={"state": "GONE"}),
            422,
            "invalid_input",
            "state",
        )
        for params in ({"voucher": "a\x00b"}, {"cursor": "r_\x00"}):
            response = api.get("/api/v1/redemptions", headers=h, params=params)
            assert_problem(response, 400, "invalid_url", "query")
        assert_problem(
            api.get("/api/v1/redemptions", headers=h, params={"voucher": "caf\u00e9"}),
            422,
            "invalid_input",
            "voucher",
        )

    def test_a_nul_in_a_redemption_id(self, api: TestClient, tenant: Tenant) -> None:
        for response in (
            api.get("/api/v1/redemptions/r_%00", headers=tenant.headers),
            api.post("/api/v1/redemptions/r_%00/rollback", headers=tenant.headers),
        ):
            assert_problem(response, 400, "invalid_url", "path")
        response = api.get("/api/v1/redemptions/r_%C3%A9", headers=tenant.headers)
        assert_problem(response, 422, "invalid_input", "redemption_id")


def big_campaign(size: int) -> bytes:
    body = {"name": "big", "type": "GIFT", "currency": "EUR", "description": "x" * size}
    return json.dumps(body).encode()


class TestBodySize:
    def test_a_declared_length_over_the_limit(
        self, api: TestClient, db: Database, tenant: Tenant, settings: Settings
    ) -> None:
        content = big_campaign(settings.max_body_bytes)
        before = count_rows(db)

        response = api.post(
            "/api/v1/campaigns", headers={**tenant.headers, **JSON}, content=content
        )

        assert "content-length" in response.request.headers
        problem = assert_problem(response, 413, "body_too_large", "body")
        assert str(settings.max_body_bytes) in problem["detail"]
        assert count_rows(db) == before

    def test_a_chunked_body_over_the_limit(
        self, api: TestClient, db: Database, world: World, settings: Settings
    ) -> None:
        content = big_campaign(settings.max_body_bytes)
        before = count_rows(db)

        for path in ("/api/v1/campaigns", "/api/v1/redemptions", "/api/v1/vouchers"):

            def chunks() -> Iterator[bytes]:
                for i in range(0, len(content), 8192):
                    yield content[i : i + 8192]

            response = api.post(path, headers={**world.tenant.headers, **JSON}, content=chunks())
            assert "content-length" not in response.request.headers
            assert response.request.headers["transfer-encoding"] == "chunked"
            assert_problem(response, 413, "body_too_large", "body")
        assert count_rows(db) == before

    def test_a_stream_is_cut_off_at_the_limit(
        self, db: Database, tenant: Tenant, settings: Settings
    ) -> None:
        """Straight over ASGI, in many messages: the body is not read past the limit."""
        app = create_app(settings, db=db)
        chunk = b" " * 4096
        sent: list[int] = []
        answer: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            sent.append(len(chunk))
            return {"type": "http.request", "body": chunk, "more_body": len(sent) < 1000}

        async def send(message: dict[str, Any]) -> None:
            answer.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/api/v1/campaigns",
            "raw_path": b"/api/v1/campaigns",
            "root_path": "",
            "query_string": b"",
            "headers": [
                (b"content-type", b"application/json"),
                (b"authorization", tenant.headers["Authorization"].encode()),
            ],
            "client": ("127.0.0.1", 1),
            "server": ("testserver", 80),
        }
        asyncio.run(app(scope, receive, send))

        assert answer[0]["type"] == "http.response.start"
        assert answer[0]["status"] == 413
        assert sum(sent) <= settings.max_body_bytes + len(chunk)
        assert json.loads(answer[1]["body"])["code"] == "body_too_large"

    def test_a_body_under_the_limit_is_accepted(
        self, api: TestClient, tenant: Tenant, settings: Settings
    ) -> None:
        metadata = {f"k{i}": "v" * 1000 for i in range(50)}
        body = {"name": "roomy", "type": "GIFT", "currency": "EUR", "metadata": metadata}
        content = json.dumps(body).encode()
        assert settings.max_body_bytes - 16_384 < len(content) < settings.max_body_bytes

        response = api.post(
            "/api/v1/campaigns", headers={**tenant.headers, **JSON}, content=content
        )

        assert response.status_code == 201, response.text


class TestCredentials:
    def assert_unauthorized(self, response: httpx.Response) -> None:
        assert_problem(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"

    def test_missing_malformed_and_wrong(self, api: TestClient, db: Database, world: World) -> None:
        key = world.tenant.key
        other = make_tenant(db).key
        attempts = [
            {},
            {"Authorization": ""},
            {"Authorization": "Bearer"},
            {"Authorization": f"Basic {key.token}"},
            {"Authorization": "Bearer nonsense"},
            {"Authorization": f"Bearer {key.key_id}"},
            {"Authorization": f"Bearer {key.key_id}.wrong-secret"},
            {"Authorization": f"Bearer {key.key_id}.{other.secret}"},
            {"Authorization": f"Bearer vk_unknown.{key.secret}"},
            {"Authorization": f"Bearer {key.key_id}.{'x' * 500}"},
        ]
        before = count_rows(db)

        for headers in attempts:
            self.assert_unauthorized(api.get("/api/v1/campaigns", headers=headers))
            self.assert_unauthorized(
                api.post(
                    "/api/v1/redemptions",
                    headers=headers,
                    json={"code": world.voucher.code, "amount": 1},
                )
            )
            self.assert_unauthorized(
                api.post("/api/v1/vouchers", headers=headers, json={"campaign": "Gift"})
            )

        assert count_rows(db) == before

    def test_a_revoked_key(self, api: TestClient, db: Database, world: World) -> None:
        assert api.get("/api/v1/campaigns", headers=world.tenant.headers).status_code == 200
        revoke_key(db, world.tenant.key.key_id)
        before = count_rows(db)

        self.assert_unauthorized(api.get("/api/v1/campaigns", headers=world.tenant.headers))
        self.assert_unauthorized(
            api.post(
                "/api/v1/redemptions",
                headers=world.tenant.headers,
                json={"code": world.voucher.code, "amount": 1},
            )
        )

        assert count_rows(db) == before


class TestInputTheStoreCannotKeep:
    """Values a database or the JSON encoder cannot hold are refused before anything is
    written, naming the field."""

    def test_a_nul_character_in_text(self, api: TestClient, db: Database, world: World) -> None:
        code = world.voucher.code
        cases: list[tuple[str, str, Any, int, str, str]] = [
            ("POST", "/api/v1/campaigns", {"name": "a\x00b", "type": "GIFT", "currency": "EUR"}, 422, "invalid_input", "name"),
            ("POST", "/api/v1/vouchers", {"campaign": "Gift", "customer_ref": "c\x00"}, 422, "invalid_input", "customer_ref"),
            ("POST", "/api/v1/redemptions", {"code": code, "amount": 1, "merchant_ref": "m\x00"}, 422, "invalid_input", "merchant_ref"),
            ("POST", "/api/v1/redemptions", {"code": code, "amount": 1, "metadata": {"k": "\x00"}}, 422, "invalid_input", "metadata"),
        ]  # fmt: skip
        refused_writes(api, db, world.tenant, cases)

    @pytest.mark.parametrize("where", ["campaign", "redemption"])
    def test_metadata_the_answer_cannot_encode(
        self, api: TestClient, db: Database, world: World, where: str
    ) -> None:
        deep: dict[str, Any] = {}
        level = deep
        for _ in range(300):
            level["a"] = {}
            level = level["a"]
        cases: list[tuple[str, str, Any, int, str, str]] = []
        for metadata in ({"n": 2**64}, deep):
            if where == "campaign":
                body = {"name": "m", "type": "GIFT", "currency": "EUR", "metadata": metadata}
                cases.append(("POST", "/api/v1/campaigns", body, 422, "invalid_input", "metadata"))
            else:
                body = {"code": world.voucher.code, "amount": 1, "metadata": metadata}
                cases.append(
                    ("POST", "/api/v1/redemptions", body, 422, "invalid_input", "metadata")
                )
        refused_writes(api, db, world.tenant, cases)

    def test_a_nul_character_in_a_path_or_cursor(self, api: TestClient, world: World) -> None:
        h = world.tenant.headers
        for response in (
            api.get("/api/v1/vouchers/%00", headers=h),
            api.get("/api/v1/campaigns/%00", headers=h),
            api.get("/api/v1/vouchers", headers=h, params={"cursor": "v_\x00"}),
            api.get("/api/v1/campaigns", headers=h, params={"cursor": "c_\x00"}),
        ):
            # A NUL can match nothing: the URL is refused at the door, naming where it was.
            assert response.status_code == 400, response.text
            assert response.json()["code"] == "invalid_url"
