"""Campaigns through the native API: create, get, update, list, and every cross-field rule."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.factories.vouchers import issue
from tests.support.clock import FakeClock
from voucherd.db.engine import Database

URL = "/api/v1/campaigns"


def _problem(response: Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] == f"urn:voucherd:problem:{body['code']}"
    return body


def _fields(problem: dict[str, Any]) -> list[str]:
    return [error["field"] for error in problem.get("errors", [])]


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _create(client: TestClient, tenant: Tenant, **body: Any) -> Response:
    return client.post(URL, headers=tenant.headers, json=body)


def _created(client: TestClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    response = _create(client, tenant, **body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


class TestCreateCampaign:
    def test_gift_with_defaults(self, client: TestClient, db: Database, clock: FakeClock) -> None:
        tenant = make_tenant(db)
        body = _created(
            client, tenant, name="Gift", type="GIFT", currency="EUR", default_value=5000
        )
        assert body["id"].startswith("camp_")
        assert body["object"] == "campaign"
        assert body["name"] == "Gift"
        assert body["type"] == "GIFT"
        assert body["mode"] == "STATIC"
        assert body["active"] is True
        assert body["currency"] == "EUR"
        assert body["default_value"] == 5000
        assert body["max_value"] is None
        assert body["discount"] is None
        assert body["code_config"] is None
        assert body["timezone"] == "UTC"
        assert body["redemption_quantity"] is None
        assert body["budget"] is None
        assert body["issued_value"] is None
        assert _at(body["created_at"]) == clock()
        assert _at(body["updated_at"]) == clock()

    def test_cash_is_redeemed_once(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        body = _created(
            client, tenant, name="Cash", type="CASH", currency="ZAR", default_value=2000
        )
        assert body["type"] == "CASH"
        assert body["redemption_quantity"] == 1
        explicit = _created(
            client, tenant, name="Cash1", type="CASH", currency="ZAR", redemption_quantity=1
        )
        assert explicit["redemption_quantity"] == 1

    @pytest.mark.parametrize(
        ("discount", "currency"),
        [
            ({"type": "AMOUNT", "amount_off": 500}, "EUR"),
            ({"type": "PERCENT", "percent_off": 12.5, "amount_limit": 2000}, None),
            ({"type": "PERCENT", "percent_off": 10}, "EUR"),
            ({"type": "FIXED", "fixed_amount": 999}, "GBP"),
            ({"type": "UNIT", "unit_off": 2, "unit_type": "sku_coffee"}, None),
        ],
    )
    def test_discount_of_each_kind(
        self, client: TestClient, db: Database, discount: dict[str, Any], currency: str | None
    ) -> None:
        tenant = make_tenant(db)
        body = _created(
            client,
            tenant,
            name="Discount",
            type="DISCOUNT",
            currency=currency,
            discount=discount,
            redemption_quantity=3,
        )
        assert body["type"] == "DISCOUNT"
        assert body["currency"] == currency
        assert body["redemption_quantity"] == 3
        shown = dict(body["discount"])
        if "percent_off" in shown:
            shown["percent_off"] = float(shown["percent_off"])
        assert shown == discount
        assert body["default_value"] is None

    def test_loyalty_without_currency(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        body = _created(client, tenant, name="Points", type="LOYALTY", default_value=0)
        assert body["type"] == "LOYALTY"
        assert body["currency"] is None
        assert body["default_value"] == 0

    def test_every_field_is_stored_and_shown(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        request: dict[str, Any] = {
            "name": "Everything",
            "description": "all the fields",
            "type": "GIFT",
            "mode": "AUTO_UPDATE",
            "active": False,
            "currency": "EUR",
            "default_value": 2500,
            "max_value": 10000,
            "code_config": {
                "length": 6,
                "charset": "ABCDEF",
                "prefix": "X-",
                "postfix": "-Y",
                "initial_count": 10,
            },
            "start_date": "2026-07-01T00:00:00Z",
            "expiration_date": "2026-12-31T23:59:59Z",
            "lifetime_days": 30,
            "validity_timeframe": {"duration": "PT1H", "interval": "P2D"},
            "validity_day_of_week": [5, 1, 1, 3],
            "validity_hours": {
                "daily": [{"start_time": "09:00", "expiration_time": "17:30", "days_of_week": [1]}]
            },
            "timezone": "Europe/Berlin",
            "per_customer_limit": 2,
            "budget": 1_000_000,
            "category": "xmas",
            "metadata": {"channel": "shop", "n": 1},
        }
        body = _created(client, tenant, **request)
        assert body["description"] == "all the fields"
        assert body["mode"] == "AUTO_UPDATE"
        assert body["active"] is False
        assert body["max_value"] == 10000
        # initial_count is accepted and not stored.
        assert body["code_config"] == {
            "length": 6,
            "charset": "ABCDEF",
            "prefix": "X-",
            "postfix": "-Y",
        }
        assert _at(body["start_date"]) == datetime(2026, 7, 1, tzinfo=UTC)
        assert _at(body["expiration_date"]) == datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
        assert body["lifetime_days"] == 30
        assert body["validity_timeframe"] == {"duration": "PT1H", "interval": "P2D"}
        assert body["validity_day_of_week"] == [1, 3, 5]
        assert body["validity_hours"] == {
            "daily": [{"start_time": "09:00", "expiration_time": "17:30", "days_of_week": [1]}]
        }
        assert body["timezone"] == "Europe/Berlin"
        assert body["per_customer_limit"] == 2
        assert body["budget"] == 1_000_000
        assert body["issued_value"] == 0
        assert body["category"] == "xmas"
        assert body["metadata"] == {"channel": "shop", "n": 1}
        # What was answered is what is stored.
        assert client.get(f"{URL}/{body['id']}", headers=tenant.headers).json() == body

    def test_dates_without_offset_are_read_in_the_campaign_time_zone(
        self, client: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        body = _created(
            client,
            tenant,
            name="Local",
            type="GIFT",
            currency="EUR",
            timezone="America/New_York",
            start_date="2026-07-01T09:00:00",
            expiration_date="2026-07-31T18:00:00+02:00",
        )
        # Shown in UTC, in the answer as in a later read.
        assert body["start_date"] == "2026-07-01T13:00:00Z"
        assert body["expiration_date"] == "2026-07-31T16:00:00Z"
        assert client.get(f"{URL}/{body['id']}", headers=tenant.headers).json() == body

    def test_duplicate_name_is_409(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        _created(client, tenant, name="Twice", type="LOYALTY")
        problem = _problem(_create(client, tenant, name="Twice", type="LOYALTY"), 409)
        assert problem["code"] == "duplicate_name"
        assert _fields(problem) == ["name"]
        # Stripped before comparing: " Twice " is the same name.
        problem = _problem(_create(client, tenant, name=" Twice ", type="LOYALTY"), 409)
        assert problem["code"] == "duplicate_name"
        listed = client.get(URL, headers=tenant.headers).json()["data"]
        assert [c["name"] for c in listed] == ["Twice"]

    def test_same_name_in_another_tenant_is_fine(self, client: TestClient, db: Database) -> None:
        first, second = make_tenant(db), make_tenant(db)
        a = _created(client, first, name="Shared", type="LOYALTY")
        b = _created(client, second, name="Shared", type="LOYALTY")
        assert a["id"] != b["id"]

    def test_needs_manage_scope(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        headers = tenant.key_with(db, ["issue", "redeem"])
        response = client.post(URL, headers=headers, json={"name": "No", "type": "LOYALTY"})
        assert _problem(response, 403)["code"] == "forbidden"
        assert client.get(URL, headers=tenant.headers).json()["data"] == []

    def test_unknown_field_is_refused(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        problem = _problem(_create(client, tenant, name="X", type="LOYALTY", colour="red"), 422)
        assert _fields(problem) == ["colour"]

    def test_empty_code_config_means_default_codes(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        body = _created(
            client, tenant, name="Empty", type="LOYALTY", default_value=5, code_config={}
        )
        voucher = client.post(
            "/api/v1/vouchers", headers=tenant.headers, json={"campaign": body["id"]}
        ).json()
        assert len(voucher["code"]) == 13


# Every rule that spans fields, with the field its error must name.
_GIFT: dict[str, Any] = {"type": "GIFT", "currency": "EUR"}
_BAD_CREATES: list[tuple[str, dict[str, Any], str]] = [
    ("gift without currency", {"type": "GIFT"}, "currency"),
    ("cash without currency", {"type": "CASH", "default_value": 100}, "currency"),
    ("loyalty with currency", {"type": "LOYALTY", "currency": "EUR"}, "currency"),
    ("discount without discount", {"type": "DISCOUNT"}, "discount"),
    (
        "amount discount without currency",
        {"type": "DISCOUNT", "discount": {"type": "AMOUNT", "amount_off": 100}},
        "currency",
    ),
    (
        "fixed discount without currency",
        {"type": "DISCOUNT", "discount": {"type": "FIXED", "fixed_amount": 100}},
        "currency",
    ),
    (
        "discount with a default value",
        {"type": "DISCOUNT", "discount": {"type": "PERCENT", "percent_off": 5}, "default_value": 1},
        "default_value",
    ),
    (
        "discount on a gift",
        {**_GIFT, "discount": {"type": "PERCENT", "percent_off": 5}},
        "discount",
    ),
    (
        "cash redeemed twice",
        {"type": "CASH", "currency": "EUR", "redemption_quantity": 2},
        "redemption_quantity",
    ),
    (
        "default above maximum",
        {**_GIFT, "default_value": 5001, "max_value": 5000},
        "default_value",
    ),
    (
        "start equal to expiry",
        {**_GIFT, "start_date": "2026-07-01T00:00:00Z", "expiration_date": "2026-07-01T00:00:00Z"},
        "expiration_date",
    ),
    (
        "start after expiry",
        {**_GIFT, "start_date": "2026-08-01T00:00:00Z", "expiration_date": "2026-07-01T00:00:00Z"},
        "expiration_date",
    ),
    (
        "timeframe without start",
        {**_GIFT, "validity_timeframe": {"duration": "PT1H", "interval": "P2D"}},
        "start_date",
    ),
]
_BAD_FIELDS: list[tuple[str, dict[str, Any], str]] = [
    ("unknown type", {"type": "COUPON"}, "type"),
    ("blank name", {**_GIFT, "name": "   "}, "name"),
    ("bad timezone", {**_GIFT, "timezone": "Mars/Olympus_Mons"}, "timezone"),
    ("bad currency", {"type": "GIFT", "currency": "XYZ"}, "currency"),
    ("lower-case currency", {"type": "GIFT", "currency": "eur"}, "currency"),
    ("negative default value", {**_GIFT, "default_value": -1}, "default_value"),
    ("zero maximum value", {**_GIFT, "max_value": 0}, "max_value"),
    ("absurd budget", {**_GIFT, "budget": 10**20}, "budget"),
    ("bad date", {**_GIFT, "start_date": "2026-02-30T00:00:00Z"}, "start_date"),
    ("negative lifetime", {**_GIFT, "lifetime_days": -1}, "lifetime_days"),
    ("unknown mode", {**_GIFT, "mode": "DYNAMIC"}, "mode"),
    (
        "percent discount without percent_off",
        {"type": "DISCOUNT", "discount": {"type": "PERCENT"}},
        "discount",
    ),
    (
        "percent above 100",
        {"type": "DISCOUNT", "discount": {"type": "PERCENT", "percent_off": 101}},
        "discount.percent_off",
    ),
    (
        "unit discount without unit_type",
        {"type": "DISCOUNT", "discount": {"type": "UNIT", "unit_off": 1}},
        "discount",
    ),
    (
        "code_config charset too short",
        {**_GIFT, "code_config": {"charset": "A"}},
        "code_config.charset",
    ),
    ("code_config length zero", {**_GIFT, "code_config": {"length": 0}}, "code_config.length"),
    ("code_config unknown key", {**_GIFT, "code_config": {"size": 5}}, "code_config.size"),
    (
        "bad start_time",
        {
            **_GIFT,
            "validity_hours": {"daily": [{"start_time": "9:00", "expiration_time": "17:00"}]},
        },
        "validity_hours.daily.0.start_time",
    ),
    (
        "bad expiration_time",
        {
            **_GIFT,
            "validity_hours": {"daily": [{"start_time": "09:00", "expiration_time": "24:00"}]},
        },
        "validity_hours.daily.0.expiration_time",
    ),
    (
        "minutes out of range",
        {
            **_GIFT,
            "validity_hours": {"daily": [{"start_time": "09:60", "expiration_time": "17:00"}]},
        },
        "validity_hours.daily.0.start_time",
    ),
    (
        "hours backwards",
        {
            **_GIFT,
            "validity_hours": {"daily": [{"start_time": "17:00", "expiration_time": "09:00"}]},
        },
        "validity_hours.daily.0",
    ),
    ("no daily hours", {**_GIFT, "validity_hours": {"daily": []}}, "validity_hours.daily"),
    (
        "daily day 7",
        {
            **_GIFT,
            "validity_hours": {
                "daily": [{"start_time": "09:00", "expiration_time": "17:00", "days_of_week": [7]}]
            },
        },
        "validity_hours.daily.0.days_of_week",
    ),
    ("day of week 7", {**_GIFT, "validity_day_of_week": [1, 7]}, "validity_day_of_week"),
    ("day of week -1", {**_GIFT, "validity_day_of_week": [-1]}, "validity_day_of_week"),
    ("no days of week", {**_GIFT, "validity_day_of_week": []}, "validity_day_of_week"),
    (
        "timeframe in months",
        {
            **_GIFT,
            "start_date": "2026-07-01T00:00:00Z",
            "validity_timeframe": {"duration": "PT1H", "interval": "P1M"},
        },
        "validity_timeframe.interval",
    ),
    (
        "timeframe garbage",
        {
            **_GIFT,
            "start_date": "2026-07-01T00:00:00Z",
            "validity_timeframe": {"duration": "an hour", "interval": "P1D"},
        },
        "validity_timeframe.duration",
    ),
    (
        "timeframe zero",
        {
            **_GIFT,
            "start_date": "2026-07-01T00:00:00Z",
            "validity_timeframe": {"duration": "PT0S", "interval": "P1D"},
        },
        "validity_timeframe.duration",
    ),
    (
        "window longer than interval",
        {
            **_GIFT,
            "start_date": "2026-07-01T00:00:00Z",
            "validity_timeframe": {"duration": "P3D", "interval": "P2D"},
        },
        "validity_timeframe",
    ),
]


class TestCampaignRules:
    @pytest.mark.parametrize(
        ("body", "field"),
        [pytest.param(body, field, id=name) for name, body, field in _BAD_CREATES + _BAD_FIELDS],
    )
    def test_refused_with_problem_naming_the_field(
        self, client: TestClient, db: Database, body: dict[str, Any], field: str
    ) -> None:
        tenant = make_tenant(db)
        problem = _problem(_create(client, tenant, **{"name": "Bad", **body}), 422)
        assert problem["code"] == "invalid_input"
        assert field in _fields(problem), problem
        assert problem["detail"]
        assert all(error["reason"] for error in problem["errors"])
        # Nothing was written.
        assert client.get(f"{URL}/Bad", headers=tenant.headers).status_code == 404

    @pytest.mark.parametrize(
        ("code_config", "word"),
        [
            ({"charset": "ABCA"}, "charset"),
            ({"charset": "AB C"}, "charset"),
            ({"prefix": "A B"}, "prefix"),
            ({"postfix": "é"}, "postfix"),
            ({"pattern": "ABCD"}, "pattern"),
            ({"length": 95, "prefix": "PREFIX"}, "longer than 100"),
        ],
    )
    def test_code_config_errors_say_which_setting(
        self, client: TestClient, db: Database, code_config: dict[str, Any], word: str
    ) -> None:
        tenant = make_tenant(db)
        problem = _problem(
            _create(client, tenant, name="Bad", **_GIFT, code_config=code_config), 422
        )
        assert any(e["field"].startswith("code_config") for e in problem["errors"]), problem
        assert word in problem["detail"], problem

    def test_malformed_json_is_400(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        response = client.post(
            URL,
            headers={**tenant.headers, "Content-Type": "application/json"},
            content=b'{"name": "x", ',
        )
        assert _problem(response, 400)["code"] == "malformed_json"


class TestGetCampaign:
    def test_by_id_and_by_name(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        created = _created(client, tenant, name="Summer sale", type="LOYALTY")
        by_id = client.get(f"{URL}/{created['id']}", headers=tenant.headers)
        by_name = client.get(f"{URL}/Summer sale", headers=tenant.headers)
        assert by_id.status_code == by_name.status_code == 200
        assert by_id.json() == by_name.json()
        assert by_id.json()["id"] == created["id"]

    def test_unknown_is_404(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        problem = _problem(client.get(f"{URL}/nope", headers=tenant.headers), 404)
        assert problem["code"] == "not_found"

    def test_another_tenants_campaign_is_404(self, client: TestClient, db: Database) -> None:
        owner, stranger = make_tenant(db), make_tenant(db)
        created = _created(client, owner, name="Mine", type="LOYALTY")
        assert client.get(f"{URL}/{created['id']}", headers=stranger.headers).status_code == 404
        assert client.get(f"{URL}/Mine", headers=stranger.headers).status_code == 404

    def test_id_wins_over_a_name_that_looks_like_an_id(
        self, client: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        real = _created(client, tenant, name="Real", type="LOYALTY")
        _created(client, tenant, name=real["id"], type="LOYALTY")
        assert client.get(f"{URL}/{real['id']}", headers=tenant.headers).json()["name"] == "Real"

    def test_needs_credentials(self, client: TestClient) -> None:
        assert _problem(client.get(f"{URL}/x"), 401)["code"] == "unauthorized"


class TestUpdateCampaign:
    def _patch(self, client: TestClient, tenant: Tenant, ref: str, **body: Any) -> Response:
        return client.patch(f"{URL}/{ref}", headers=tenant.headers, json=body)

    def test_partial_update_changes_only_the_fields_sent(
        self, client: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        before = _created(
            client,
            tenant,
            name="Partial",
            type="GIFT",
            currency="EUR",
            default_value=1000,
            max_value=5000,
            category="a",
            metadata={"k": "v"},
        )
        clock.advance(minutes=5)
        response = self._patch(
            client, tenant, before["id"], default_value=2000, description="now with text"
        )
        assert response.status_code == 200, response.text
        after = response.json()
        assert after["default_value"] == 2000
        assert after["description"] == "now with text"
        assert _at(after["updated_at"]) == clock()
        unchanged = set(before) - {"default_value", "description", "updated_at"}
        for key in unchanged:
            assert after[key] == before[key], key
        assert client.get(f"{URL}/{before['id']}", headers=tenant.headers).json() == after

    def test_explicit_null_clears_an_optional_field(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        created = _created(
            client, tenant, name="Clear", type="GIFT", currency="EUR", max_value=9, category="c"
        )
        after = self._patch(client, tenant, created["id"], max_value=None, category=None).json()
        assert after["max_value"] is None
        assert after["category"] is None

    def test_rename_and_address_by_new_name(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        created = _created(client, tenant, name="Old", type="LOYALTY")
        assert self._patch(client, tenant, "Old", name="New").json()["name"] == "New"
        assert client.get(f"{URL}/New", headers=tenant.headers).json()["id"] == created["id"]
        assert client.get(f"{URL}/Old", headers=tenant.headers).status_code == 404

    def test_rename_onto_another_name_is_409(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        _created(client, tenant, name="A", type="LOYALTY")
        _created(client, tenant, name="B", type="LOYALTY")
        problem = _problem(self._patch(client, tenant, "B", name="A"), 409)
        assert problem["code"] == "duplicate_name"
        assert _fields(problem) == ["name"]
        assert client.get(f"{URL}/B", headers=tenant.headers).status_code == 200

    @pytest.mark.parametrize("field", ["name", "timezone", "active"])
    def test_required_fields_cannot_be_nulled(
        self, client: TestClient, db: Database, field: str
    ) -> None:
        tenant = make_tenant(db)
        _created(client, tenant, name="Keep", type="LOYALTY")
        problem = _problem(self._patch(client, tenant, "Keep", **{field: None}), 422)
        assert _fields(problem) == [field]

    @pytest.mark.parametrize("field", ["type", "currency", "discount", "code_config", "mode"])
    def test_fields_fixed_at_creation_are_refused(
        self, client: TestClient, db: Database, field: str
    ) -> None:
        tenant = make_tenant(db)
        _created(client, tenant, name="Fixed", type="GIFT", currency="EUR")
        problem = _problem(self._patch(client, tenant, "Fixed", **{field: "x"}), 422)
        assert _fields(problem) == [field]

    @pytest.mark.parametrize(
        ("created", "patch", "field"),
        [
            ({"max_value": 5000}, {"default_value": 6000}, "default_value"),
            ({"default_value": 5000}, {"max_value": 4000}, "default_value"),
            (
                {"start_date": "2026-08-01T00:00:00Z"},
                {"expiration_date": "2026-07-01T00:00:00Z"},
                "expiration_date",
            ),
            ({}, {"validity_timeframe": {"duration": "PT1H", "interval": "P1D"}}, "start_date"),
            (
                {
                    "start_date": "2026-07-01T00:00:00Z",
                    "validity_timeframe": {"duration": "PT1H", "interval": "P1D"},
                },
                {"start_date": None},
                "start_date",
            ),
            ({}, {"timezone": "Nowhere/Special"}, "timezone"),
            ({}, {"validity_day_of_week": [8]}, "validity_day_of_week"),
        ],
    )
    def test_cross_field_rules_hold_after_a_patch(
        self,
        client: TestClient,
        db: Database,
        created: dict[str, Any],
        patch: dict[str, Any],
        field: str,
    ) -> None:
        tenant = make_tenant(db)
        before = _created(client, tenant, name="Rules", **_GIFT, **created)
        problem = _problem(self._patch(client, tenant, "Rules", **patch), 422)
        assert field in _fields(problem), problem
        assert client.get(f"{URL}/Rules", headers=tenant.headers).json() == before

    def test_cash_quantity_stays_one(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        _created(client, tenant, name="Cash", type="CASH", currency="EUR", default_value=100)
        problem = _problem(self._patch(client, tenant, "Cash", redemption_quantity=2), 422)
        assert _fields(problem) == ["redemption_quantity"]

    def test_budget_switched_on_later_counts_what_was_issued(
        self, client: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, name="Budget", default_value=5000)
        for _ in range(3):
            issue(db, tenant, campaign)
        issue(db, tenant, campaign, value=1500)
        assert client.get(f"{URL}/Budget", headers=tenant.headers).json()["issued_value"] is None
        after = self._patch(client, tenant, "Budget", budget=20000)
        assert after.status_code == 200, after.text
        assert after.json()["budget"] == 20000
        assert after.json()["issued_value"] == 16500
        # 3,500 left: one more of 3,500 fits, then nothing.
        issued = client.post(
            "/api/v1/vouchers", headers=tenant.headers, json={"campaign": "Budget", "value": 3500}
        )
        assert issued.status_code == 201, issued.text
        refused = client.post(
            "/api/v1/vouchers", headers=tenant.headers, json={"campaign": "Budget", "value": 1}
        )
        assert _problem(refused, 422)["code"] == "campaign_budget_exhausted"
        assert client.get(f"{URL}/Budget", headers=tenant.headers).json()["issued_value"] == 20000

    def test_budget_switched_on_below_what_was_issued_is_refused(
        self, client: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, name="Small", default_value=5000)
        issue(db, tenant, campaign)
        problem = _problem(self._patch(client, tenant, "Small", budget=4999), 422)
        assert _fields(problem) == ["budget"]
        assert client.get(f"{URL}/Small", headers=tenant.headers).json()["budget"] is None

    def test_budget_lowered_below_what_was_issued_is_refused(
        self, client: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, name="Lower", default_value=5000, budget=20000)
        issue(db, tenant, campaign)
        issue(db, tenant, campaign)
        problem = _problem(self._patch(client, tenant, "Lower", budget=9999), 422)
        assert _fields(problem) == ["budget"]
        shown = client.get(f"{URL}/Lower", headers=tenant.headers).json()
        assert (shown["budget"], shown["issued_value"]) == (20000, 10000)
        assert self._patch(client, tenant, "Lower", budget=10000).status_code == 200

    def test_budget_switched_off_and_on_again_recounts(
        self, client: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, name="Toggle", default_value=1000, budget=100000)
        issue(db, tenant, campaign)
        assert self._patch(client, tenant, "Toggle", budget=None).json()["issued_value"] is None
        issue(db, tenant, campaign)
        issue(db, tenant, campaign)
        assert self._patch(client, tenant, "Toggle", budget=5000).json()["issued_value"] == 3000

    def test_unknown_campaign_is_404(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        assert _problem(self._patch(client, tenant, "ghost", category="x"), 404)["code"] == (
            "not_found"
        )

    def test_needs_manage_scope(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        _created(client, tenant, name="Guarded", type="LOYALTY")
        headers = tenant.key_with(db, ["issue", "redeem"])
        response = client.patch(f"{URL}/Guarded", headers=headers, json={"category": "x"})
        assert _problem(response, 403)["code"] == "forbidden"
        assert client.get(f"{URL}/Guarded", headers=tenant.headers).json()["category"] is None


class TestListCampaigns:
    def test_cursor_pages_have_no_duplicates_and_no_gaps(
        self, client: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        other = make_tenant(db)
        made = {make_campaign(db, tenant, type="LOYALTY").id for _ in range(11)}
        make_campaign(db, other, type="LOYALTY")
        everything = client.get(URL, headers=tenant.headers, params={"limit": 100}).json()
        assert everything["has_more"] is False
        assert everything["next_cursor"] is None
        all_ids = [c["id"] for c in everything["data"]]
        assert set(all_ids) == made
        assert all_ids == sorted(all_ids, reverse=True)  # newest first: ids are time-ordered

        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 4}
            if cursor:
                params["cursor"] = cursor
            page = client.get(URL, headers=tenant.headers, params=params).json()
            pages += 1
            assert page["object"] == "list"
            seen += [c["id"] for c in page["data"]]
            cursor = page["next_cursor"]
            assert page["has_more"] is (cursor is not None)
            if cursor is None:
                break
            assert cursor == page["data"][-1]["id"]
        assert pages == 3
        assert seen == all_ids

    def test_exact_multiple_of_the_page_size_ends_cleanly(
        self, client: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        for _ in range(4):
            make_campaign(db, tenant, type="LOYALTY")
        first = client.get(URL, headers=tenant.headers, params={"limit": 2}).json()
        second = client.get(
            URL, headers=tenant.headers, params={"limit": 2, "cursor": first["next_cursor"]}
        ).json()
        assert len(first["data"]) == len(second["data"]) == 2
        assert second["next_cursor"] is None

    def test_empty(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        assert client.get(URL, headers=tenant.headers).json() == {
            "object": "list",
            "data": [],
            "next_cursor": None,
            "has_more": False,
        }

    @pytest.mark.parametrize("limit", [0, 101, -1])
    def test_limit_out_of_range_is_422(self, client: TestClient, db: Database, limit: int) -> None:
        tenant = make_tenant(db)
        response = client.get(URL, headers=tenant.headers, params={"limit": limit})
        assert _fields(_problem(response, 422)) == ["limit"]


class TestHolderFacingContent:
    """What the holder sees: page help, store finder, locale and message templates."""

    def test_content_is_kept_and_shown(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        templates = {
            "sms": {"text": "Your voucher {{ code }} is worth {{ value }}: {{ page_url }}"},
            "whatsapp": {"name": "voucher_issued", "language": "en_GB",
                         "body_parameters": ["{{ code }}", "{{ value }}"]},
            "email": {"subject": "Your voucher", "text": "Code {{ code }}",
                      "html": "<p>Code <b>{{ code }}</b></p>"},
        }  # fmt: skip
        body = _created(
            client,
            tenant,
            name="Gift",
            type="GIFT",
            currency="GBP",
            help_text="Show this at the till.",
            store_finder_url="https://shops.example/find",
            locale="en-GB",
            message_templates=templates,
        )
        assert body["help_text"] == "Show this at the till."
        assert body["store_finder_url"] == "https://shops.example/find"
        assert body["locale"] == "en_GB"
        assert body["message_templates"] == templates
        fetched = client.get(f"{URL}/{body['id']}", headers=tenant.headers).json()
        assert fetched["message_templates"] == templates

    def test_locale_defaults_to_english(self, client: TestClient, db: Database) -> None:
        body = _created(client, make_tenant(db), name="G", type="GIFT", currency="EUR")
        assert body["locale"] == "en"
        assert body["message_templates"] is None

    def test_update_replaces_templates_and_clears_help(
        self, client: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        created = _created(
            client, tenant, name="G", type="GIFT", currency="EUR", help_text="old",
            message_templates={"sms": {"text": "old {{ code }}"}},
        )  # fmt: skip
        response = client.patch(
            f"{URL}/{created['id']}",
            headers=tenant.headers,
            json={"help_text": None, "message_templates": {"sms": {"text": "new {{ code }}"}}},
        )
        assert response.status_code == 200, response.text
        assert response.json()["help_text"] is None
        assert response.json()["message_templates"] == {"sms": {"text": "new {{ code }}"}}

    @pytest.mark.parametrize(
        ("field", "value", "named"),
        [
            ("message_templates", {"sms": {"text": "{{ code "}}, "message_templates.sms.text"),
            ("message_templates", {"fax": {"text": "hi"}}, "message_templates.fax"),
            ("message_templates", {"email": {"text": "no subject"}}, "message_templates.email"),
            ("store_finder_url", "ftp://shops.example", "store_finder_url"),
            ("store_finder_url", "/relative", "store_finder_url"),
            ("locale", "xx-nowhere", "locale"),
            ("help_text", "x" * 4001, "help_text"),
        ],
    )
    def test_bad_content_is_422_naming_the_field(
        self, client: TestClient, db: Database, field: str, value: Any, named: str
    ) -> None:
        tenant = make_tenant(db)
        response = _create(client, tenant, name="G", type="GIFT", currency="EUR", **{field: value})
        problem = _problem(response, 422)
        assert any(f.startswith(named) for f in _fields(problem)), problem
        assert client.get(URL, headers=tenant.headers).json()["data"] == []
