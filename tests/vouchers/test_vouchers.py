"""Vouchers through the native API: issue, limits, mint, read, list, state changes, balances."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.factories.vouchers import issue
from tests.support.clock import FakeClock
from voucherd.campaigns.models import Campaign
from voucherd.codes.generator import DEFAULT_ALPHABET, check_character, is_mistyped
from voucherd.db.engine import Database
from voucherd.vouchers.mint import mint_vouchers
from voucherd.vouchers.models import LedgerEntry, Voucher, VoucherEvent
from voucherd.vouchers.schemas import MintVouchers

VOUCHERS = "/api/v1/vouchers"
DEFAULT_CODE = re.compile(f"^[{DEFAULT_ALPHABET}]{{13}}$")


def _problem(response: Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    if code is not None:
        assert body["code"] == code, body
    return body


def _fields(problem: dict[str, Any]) -> list[str]:
    return [error["field"] for error in problem.get("errors", [])]


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _issue(client: TestClient, tenant: Tenant, **body: Any) -> Response:
    return client.post(VOUCHERS, headers=tenant.headers, json=body)


def _issued(client: TestClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    response = _issue(client, tenant, **body)
    assert response.status_code == 201, response.text
    issued: dict[str, Any] = response.json()
    return issued


def _mint(client: TestClient, tenant: Tenant, campaign: str, **body: Any) -> Response:
    return client.post(f"/api/v1/campaigns/{campaign}/vouchers", headers=tenant.headers, json=body)


def _get(client: TestClient, tenant: Tenant, ref: str) -> dict[str, Any]:
    response = client.get(f"{VOUCHERS}/{ref}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    got: dict[str, Any] = response.json()
    return got


def _post(client: TestClient, tenant: Tenant, path: str, body: Any = None) -> Response:
    return client.post(f"{VOUCHERS}/{path}", headers=tenant.headers, json=body)


def _redeem(client: TestClient, tenant: Tenant, code: str, **body: Any) -> Response:
    return client.post("/api/v1/redemptions", headers=tenant.headers, json={"code": code, **body})


def _ledger(db: Database, voucher_id: str) -> list[tuple[str, int]]:
    with db.unit_of_work(write=False) as session:
        rows = session.execute(
            select(LedgerEntry.kind, LedgerEntry.delta)
            .where(LedgerEntry.voucher_id == voucher_id)
            .order_by(LedgerEntry.id)
        ).all()
    return [(kind, delta) for kind, delta in rows]


def _stored_balance(db: Database, voucher_id: str) -> int | None:
    with db.unit_of_work(write=False) as session:
        return session.scalar(select(Voucher.balance).where(Voucher.id == voucher_id))


def _voucher_count(db: Database, campaign_id: str) -> int:
    with db.unit_of_work(write=False) as session:
        return int(
            session.scalar(select(func.count()).where(Voucher.campaign_id == campaign_id)) or 0
        )


def _list(client: TestClient, tenant: Tenant, **params: Any) -> list[dict[str, Any]]:
    response = client.get(VOUCHERS, headers=tenant.headers, params={"limit": 100, **params})
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


class TestIssue:
    def test_gift_with_the_campaign_default(
        self, client: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, name="Gift", default_value=5000)
        body = _issued(client, tenant, campaign="Gift")
        assert body["id"].startswith("v_")
        assert body["object"] == "voucher"
        assert body["campaign_id"] == campaign.id
        assert body["campaign"] == "Gift"
        assert body["type"] == "GIFT"
        assert body["state"] == "ACTIVE"
        assert body["currency"] == "EUR"
        assert body["value"] == body["balance"] == 5000
        assert body["redemption"] == {"quantity": None, "redeemed_quantity": 0}
        assert DEFAULT_CODE.match(body["code"])
        assert not is_mistyped(body["code"])
        token = body["page_url"].removeprefix("https://vouchers.example/v/")
        assert token != body["page_url"]
        assert len(token) == 20
        assert token != body["code"]
        assert _at(body["created_at"]) == clock()
        assert body["expiration_date"] is None
        assert _ledger(db, body["id"]) == [("ISSUE", 5000)]

    def test_value_overrides_the_default(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        make_campaign(db, tenant, name="Gift", default_value=5000)
        body = _issued(client, tenant, campaign="Gift", value=1234)
        assert body["value"] == body["balance"] == 1234
        assert _ledger(db, body["id"]) == [("ISSUE", 1234)]

    def test_by_campaign_id(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant)
        assert _issued(client, tenant, campaign=campaign.id)["campaign_id"] == campaign.id

    def test_cash_is_paid_once(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        make_campaign(db, tenant, name="Cash", type="CASH", currency="ZAR", default_value=2000)
        body = _issued(client, tenant, campaign="Cash")
        assert (body["type"], body["currency"], body["balance"]) == ("CASH", "ZAR", 2000)
        assert body["redemption"]["quantity"] == 1

    def test_discount_has_no_value_or_balance(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        make_campaign(db, tenant, name="Off", type="DISCOUNT", redemption_quantity=5)
        body = _issued(client, tenant, campaign="Off")
        assert (body["type"], body["value"], body["balance"]) == ("DISCOUNT", None, None)
        assert body["redemption"]["quantity"] == 5
        assert _ledger(db, body["id"]) == []
        problem = _problem(_issue(client, tenant, campaign="Off", value=100), 422)
        assert _fields(problem) == ["value"]

    def test_loyalty_points(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        make_campaign(db, tenant, name="Points", type="LOYALTY", default_value=100)
        body = _issued(client, tenant, campaign="Points", value=250)
        assert (body["type"], body["currency"], body["balance"]) == ("LOYALTY", None, 250)
        assert _ledger(db, body["id"]) == [("ISSUE", 250)]

    def test_loyalty_with_zero_points(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        make_campaign(db, tenant, name="Card", type="LOYALTY", default_value=0)
        body = _issued(client, tenant, campaign="Card")
        assert (body["state"], body["value"], body["balance"]) == ("ACTIVE", 0, 0)
        assert _ledger(db, body["id"]) == []

    def test_gift_without_any_value_is_refused(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, name="NoDefault", default_value=None)
        assert _fields(_problem(_issue(client, tenant, campaign="NoDefault"), 422)) == ["value"]
        assert _voucher_count(db, campaign.id) == 0

    @pytest.mark.parametrize("value", [0, -5, 10**14, "lots", 12.5])
    def test_bad_values_are_refused(self, client: TestClient, db: Database, value: Any) -> None:
        tenant = make_tenant(db)
        make_campaign(db, tenant, name="Gift")
        problem = _problem(_issue(client, tenant, campaign="Gift", value=value), 422)
        assert _fields(problem) == ["value"]

    def test_above_max_value_is_refused(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, name="Capped", default_value=1000, max_value=5000)
        assert _issued(client, tenant, campaign="Capped", value=5000)["balance"] == 5000
        problem = _problem(
            _issue(client, tenant, campaign="Capped", value=5001), 422, "value_above_maximum"
        )
        assert _fields(problem) == ["value"]
        assert "5000" in problem["detail"]
        assert _voucher_count(db, campaign.id) == 1

    def test_fields_of_the_voucher(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        make_campaign(db, tenant, name="Gift", category="campaign-cat")
        body = _issued(
            client,
            tenant,
            campaign="Gift",
            customer_ref=" cust-1 ",
            holder={"name": "Ann Smith", "postcode": "8001"},
            additional_info="ID required",
            metadata={"order": "A1"},
        )
        assert body["customer_ref"] == "cust-1"
        assert body["holder"] == {"name": "Ann Smith", "address": None, "postcode": "8001"}
        assert body["category"] == "campaign-cat"
        assert body["additional_info"] == "ID required"
        assert body["metadata"] == {"order": "A1"}
        assert _issued(client, tenant, campaign="Gift", category="own")["category"] == "own"

    def test_answer_is_what_is_stored(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        make_campaign(db, tenant, name="Gift", timezone="Europe/Paris", lifetime_days=3)
        body = _issued(
            client, tenant, campaign="Gift", customer_ref="c", start_date="2026-06-16T08:00:00"
        )
        # Dates without an offset are read in Paris, and every date is shown in UTC, the same
        # way in the answer to the issue as in any later read.
        assert body["start_date"] == "2026-06-16T06:00:00Z"
        assert body["expiration_date"] == "2026-06-18T21:59:59.999999Z"
        assert _get(client, tenant, body["id"]) == body

    def test_unknown_campaign_is_404(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        problem = _problem(_issue(client, tenant, campaign="ghost"), 404, "not_found")
        assert _fields(problem) == ["campaign"]

    def test_another_tenants_campaign_is_404(self, client: TestClient, db: Database) -> None:
        owner, stranger = make_tenant(db), make_tenant(db)
        campaign = make_campaign(db, owner)
        _problem(_issue(client, stranger, campaign=campaign.id), 404, "not_found")
        assert _voucher_count(db, campaign.id) == 0

    def test_inactive_campaign_is_refused(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, name="Off", active=False)
        _problem(_issue(client, tenant, campaign="Off"), 409, "campaign_inactive")
        assert _voucher_count(db, campaign.id) == 0

    def test_expired_campaign_is_refused(
        self, client: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        make_campaign(db, tenant, name="Old", expiration_date=clock() + timedelta(hours=1))
        clock.advance(hours=2)
        problem = _problem(_issue(client, tenant, campaign="Old"), 422, "campaign_expired")
        assert _fields(problem) == ["expiration_date"]

    def test_needs_issue_scope(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, name="Gift")
        headers = tenant.key_with(db, ["redeem", "manage"])
        response = client.post(VOUCHERS, headers=headers, json={"campaign": "Gift"})
        _problem(response, 403, "forbidden")
        assert _voucher_count(db, campaign.id) == 0


class TestExplicitCode:
    def test_code_is_kept_exactly(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        make_campaign(db, tenant, name="Gift")
        body = _issued(client, tenant, campaign="Gift", code="Summer-2026!")
        assert body["code"] == "Summer-2026!"
        assert _get(client, tenant, "Summer-2026!")["id"] == body["id"]

    def test_duplicate_code_is_409(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, name="Gift", budget=100_000, per_customer_limit=1)
        _issued(client, tenant, campaign="Gift", code="TWICE", customer_ref="alice")
        problem = _problem(
            _issue(client, tenant, campaign="Gift", code="TWICE", customer_ref="bob"),
            409,
            "duplicate_code",
        )
        assert _fields(problem) == ["code"]
        # Nothing of the refused issue stayed: no voucher, no budget spent, bob's count intact.
        assert _voucher_count(db, campaign.id) == 1
        with db.unit_of_work(write=False) as session:
            assert (
                session.scalar(select(Campaign.issued_value).where(Campaign.id == campaign.id))
                == 5000
            )
        _issued(client, tenant, campaign="Gift", customer_ref="bob")

    def test_codes_are_unique_across_tenants(self, client: TestClient, db: Database) -> None:
        first, second = make_tenant(db), make_tenant(db)
        make_campaign(db, first, name="A")
        make_campaign(db, second, name="B")
        _issued(client, first, campaign="A", code="EVERYWHERE")
        _problem(_issue(client, second, campaign="B", code="EVERYWHERE"), 409, "duplicate_code")

    def test_default_shaped_code_with_a_bad_check_character_is_refused(
        self, client: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, name="Gift")
        body = "ABCDEFGHJKLM"
        good = body + check_character(body)
        bad = body + next(ch for ch in DEFAULT_ALPHABET if ch != good[-1])
        problem = _problem(_issue(client, tenant, campaign="Gift", code=bad), 422)
        assert _fields(problem) == ["code"]
        assert _voucher_count(db, campaign.id) == 0
        assert _issued(client, tenant, campaign="Gift", code=good)["code"] == good

    @pytest.mark.parametrize("code", ["", "has space", "x" * 101, "naïve"])
    def test_malformed_codes_are_refused(self, client: TestClient, db: Database, code: str) -> None:
        tenant = make_tenant(db)
        make_campaign(db, tenant, name="Gift")
        assert _fields(_problem(_issue(client, tenant, campaign="Gift", code=code), 422)) == [
            "code"
        ]


TINY_CODE_SPACE = {"length": 2, "charset": "0123456789"}  # 100 codes, of which 1% may be used


class TestCodeSpace:
    def test_issue_past_the_code_space_is_refused(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db, weekly_value_limit=1_000_000)
        campaign = make_campaign(
            db,
            tenant,
            name="Tiny",
            code_config=TINY_CODE_SPACE,
            budget=100_000,
            per_customer_limit=5,
        )
        first = _issued(client, tenant, campaign="Tiny", customer_ref="c")
        assert re.fullmatch(r"[0-9]{2}", first["code"])
        problem = _problem(
            _issue(client, tenant, campaign="Tiny", customer_ref="c"), 422, "code_space_exhausted"
        )
        assert _fields(problem) == ["campaign"]
        assert "1 codes" in problem["detail"]
        # Nothing written: one voucher, one issue's worth of budget.
        assert _voucher_count(db, campaign.id) == 1
        with db.unit_of_work(write=False) as session:
            assert (
                session.scalar(select(Campaign.issued_value).where(Campaign.id == campaign.id))
                == 5000
            )

    def test_mint_past_the_code_space_is_refused_whole(
        self, client: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, name="Tiny", code_config=TINY_CODE_SPACE)
        problem = _problem(_mint(client, tenant, "Tiny", count=2), 422, "code_space_exhausted")
        assert _fields(problem) == ["count"]
        assert _voucher_count(db, campaign.id) == 0
        assert _mint(client, tenant, "Tiny", count=1).status_code == 201
        _problem(_mint(client, tenant, "Tiny", count=1), 422, "code_space_exhausted")
        assert _voucher_count(db, campaign.id) == 1

    def test_a_space_too_small_for_even_one_code(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        make_campaign(db, tenant, name="None", code_config={"length": 1, "charset": "AB"})
        _problem(_issue(client, tenant, campaign="None"), 422, "code_space_exhausted")

    def test_explicit_codes_do_not_use_the_drawn_space(
        self, client: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        make_campaign(db, tenant, name="Tiny", code_config=TINY_CODE_SPACE)
        _issued(client, tenant, campaign="Tiny", code="MINE-1")
        _issued(client, tenant, campaign="Tiny", code="MINE-2")
        assert _get(client, tenant, "MINE-2")["campaign"] == "Tiny"


class TestWeeklyValueLimit:
    def test_refused_past_the_limit_and_room_again_after_a_week(
        self, client: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db, weekly_value_limit=10_000)
        make_campaign(db, tenant, name="Gift", default_value=6000)
        _issued(client, tenant, campaign="Gift")
        _issued(client, tenant, campaign="Gift", value=4000)
        problem = _problem(
            _issue(client, tenant, campaign="Gift", value=1), 422, "weekly_value_limit_reached"
        )
        assert _fields(problem) == ["value"]
        assert "10000" in problem["detail"]
        clock.advance(days=7, hours=1)
        _issued(client, tenant, campaign="Gift", value=10_000)
        _problem(
            _issue(client, tenant, campaign="Gift", value=1), 422, "weekly_value_limit_reached"
        )

    def test_no_room_before_the_week_is_over(
        self, client: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db, weekly_value_limit=10_000)
        make_campaign(db, tenant, name="Gift")
        _issued(client, tenant, campaign="Gift", value=10_000)
        clock.advance(days=6, hours=22)
        _problem(
            _issue(client, tenant, campaign="Gift", value=1), 422, "weekly_value_limit_reached"
        )

    def test_the_window_rolls(self, client: TestClient, db: Database, clock: FakeClock) -> None:
        tenant = make_tenant(db, weekly_value_limit=10_000)
        make_campaign(db, tenant, name="Gift")
        _issued(client, tenant, campaign="Gift", value=6000)
        clock.advance(days=3)
        _issued(client, tenant, campaign="Gift", value=4000)
        clock.advance(days=4, hours=1)
        # The 6,000 left the window; the 4,000 of three days ago is still in it.
        _problem(
            _issue(client, tenant, campaign="Gift", value=6001), 422, "weekly_value_limit_reached"
        )
        _issued(client, tenant, campaign="Gift", value=6000)

    def test_a_refused_issue_spends_nothing(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db, weekly_value_limit=10_000)
        make_campaign(db, tenant, name="Gift", max_value=8000)
        _problem(_issue(client, tenant, campaign="Gift", value=9000), 422, "value_above_maximum")
        _problem(_issue(client, tenant, campaign="Gift", value=10_001), 422)
        _issued(client, tenant, campaign="Gift", value=8000)
        _issued(client, tenant, campaign="Gift", value=2000)

    def test_set_later_counts_the_last_seven_days(
        self, client: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        make_campaign(db, tenant, name="Gift")
        _issued(client, tenant, campaign="Gift", value=2000)  # leaves the window below
        clock.advance(days=2)
        _issued(client, tenant, campaign="Gift", value=7000)
        clock.advance(days=5, hours=1)
        patched = client.patch(
            "/api/v1/tenant", headers=tenant.headers, json={"weekly_value_limit": 10_000}
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()["weekly_value_limit"] == 10_000
        _problem(
            _issue(client, tenant, campaign="Gift", value=3001), 422, "weekly_value_limit_reached"
        )
        _issued(client, tenant, campaign="Gift", value=3000)
        cleared = client.patch(
            "/api/v1/tenant", headers=tenant.headers, json={"weekly_value_limit": None}
        )
        assert cleared.json()["weekly_value_limit"] is None
        _issued(client, tenant, campaign="Gift", value=50_000)

    def test_counts_mints_whole_and_refuses_them_whole(
        self, client: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db, weekly_value_limit=10_000)
        campaign = make_campaign(db, tenant, name="Gift", default_value=3000)
        _problem(_mint(client, tenant, "Gift", count=4), 422, "weekly_value_limit_reached")
        assert _voucher_count(db, campaign.id) == 0
        assert _mint(client, tenant, "Gift", count=3).status_code == 201
        _problem(
            _issue(client, tenant, campaign="Gift", value=1001), 422, "weekly_value_limit_reached"
        )
        _issued(client, tenant, campaign="Gift", value=1000)

    def test_points_and_discounts_carry_no_value(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db, weekly_value_limit=100)
        make_campaign(db, tenant, name="Points", type="LOYALTY", default_value=5000)
        make_campaign(db, tenant, name="Off", type="DISCOUNT")
        _issued(client, tenant, campaign="Points")
        _issued(client, tenant, campaign="Off")
        make_campaign(db, tenant, name="Gift")
        _issued(client, tenant, campaign="Gift", value=100)

    def test_one_tenants_limit_leaves_others_alone(self, client: TestClient, db: Database) -> None:
        limited, free = make_tenant(db, weekly_value_limit=1000), make_tenant(db)
        make_campaign(db, limited, name="Gift")
        make_campaign(db, free, name="Gift")
        _problem(
            _issue(client, limited, campaign="Gift", value=1001), 422, "weekly_value_limit_reached"
        )
        _issued(client, free, campaign="Gift", value=1_000_000)


class TestCampaignBudget:
    def test_refused_past_the_budget(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, name="Budget", default_value=4000, budget=10_000)
        _issued(client, tenant, campaign="Budget")
        _issued(client, tenant, campaign="Budget")
        problem = _problem(
            _issue(client, tenant, campaign="Budget"), 422, "campaign_budget_exhausted"
        )
        assert _fields(problem) == ["value"]
        assert _voucher_count(db, campaign.id) == 2
        shown = client.get("/api/v1/campaigns/Budget", headers=tenant.headers).json()
        assert shown["issued_value"] == 8000
        _issued(client, tenant, campaign="Budget", value=2000)
        assert (
            client.get("/api/v1/campaigns/Budget", headers=tenant.headers).json()["issued_value"]
            == 10_000
        )

    def test_mint_past_the_budget_is_refused_whole(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, name="Budget", default_value=1000, budget=10_000)
        _problem(_mint(client, tenant, "Budget", count=11), 422, "campaign_budget_exhausted")
        assert _voucher_count(db, campaign.id) == 0
        assert _mint(client, tenant, "Budget", count=10).status_code == 201
        assert _voucher_count(db, campaign.id) == 10


class TestPerCustomerLimit:
    def test_refused_past_the_limit_for_that_customer_only(
        self, client: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, name="Once", per_customer_limit=2)
        _issued(client, tenant, campaign="Once", customer_ref="alice")
        _issued(client, tenant, campaign="Once", customer_ref="alice")
        problem = _problem(
            _issue(client, tenant, campaign="Once", customer_ref="alice"),
            422,
            "customer_limit_reached",
        )
        assert _fields(problem) == ["customer_ref"]
        _issued(client, tenant, campaign="Once", customer_ref="bob")
        _issued(client, tenant, campaign="Once")  # no customer: not counted
        assert _voucher_count(db, campaign.id) == 4
        other = make_campaign(db, tenant, name="Other", per_customer_limit=1)
        assert _issued(client, tenant, campaign="Other", customer_ref="alice")["campaign_id"] == (
            other.id
        )

    def test_a_refused_issue_does_not_count(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        make_campaign(
            db, tenant, name="Once", per_customer_limit=1, default_value=None, max_value=100
        )
        _problem(
            _issue(client, tenant, campaign="Once", customer_ref="alice", value=101),
            422,
            "value_above_maximum",
        )
        _issued(client, tenant, campaign="Once", customer_ref="alice", value=100)


class TestLifetime:
    def test_expires_at_the_end_of_the_local_day(
        self, client: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        new_york = ZoneInfo("America/New_York")
        make_campaign(db, tenant, name="Month", timezone="America/New_York", lifetime_days=30)
        body = _issued(client, tenant, campaign="Month")
        # Issued 2026-06-15 08:00 in New York; 30 days on is 2026-07-15, ending there.
        expected = datetime(2026, 7, 15, 23, 59, 59, 999999, tzinfo=new_york)
        assert _at(body["expiration_date"]) == expected
        assert _at(_get(client, tenant, body["id"])["expiration_date"]) == expected
        assert _at(_get(client, tenant, body["id"])["expiration_date"]).astimezone(UTC) == (
            datetime(2026, 7, 16, 3, 59, 59, 999999, tzinfo=UTC)
        )
        clock.set(expected.astimezone(UTC))
        assert _get(client, tenant, body["id"])["state"] == "ACTIVE"
        clock.advance(microseconds=1)
        assert _get(client, tenant, body["id"])["state"] == "EXPIRED"

    def test_local_date_ahead_of_utc(
        self, client: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        clock.set(datetime(2026, 6, 15, 13, 0, tzinfo=UTC))  # 2026-06-16 01:00 in Auckland
        make_campaign(db, tenant, name="Today", timezone="Pacific/Auckland", lifetime_days=0)
        body = _issued(client, tenant, campaign="Today")
        assert _at(body["expiration_date"]) == datetime(2026, 6, 16, 11, 59, 59, 999999, tzinfo=UTC)

    def test_local_date_behind_utc(
        self, client: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        clock.set(datetime(2026, 6, 16, 2, 0, tzinfo=UTC))  # 2026-06-15 19:00 in Los Angeles
        make_campaign(db, tenant, name="LA", timezone="America/Los_Angeles", lifetime_days=1)
        body = _issued(client, tenant, campaign="LA")
        assert _at(body["expiration_date"]) == datetime(2026, 6, 17, 6, 59, 59, 999999, tzinfo=UTC)

    def test_the_earlier_of_lifetime_and_fixed_expiry(
        self, client: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        fixed = datetime(2026, 6, 20, 12, 0, tzinfo=UTC)
        make_campaign(db, tenant, name="Both", lifetime_days=30, expiration_date=fixed)
        assert _at(_issued(client, tenant, campaign="Both")["expiration_date"]) == fixed
        make_campaign(db, tenant, name="Short", lifetime_days=1, expiration_date=fixed)
        assert _at(_issued(client, tenant, campaign="Short")["expiration_date"]) == datetime(
            2026, 6, 16, 23, 59, 59, 999999, tzinfo=UTC
        )

    def test_voucher_override_and_its_time_zone(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        make_campaign(db, tenant, name="Berlin", timezone="Europe/Berlin", lifetime_days=30)
        body = _issued(
            client,
            tenant,
            campaign="Berlin",
            start_date="2026-06-20T10:00:00",
            expiration_date="2026-06-21T10:00:00",
        )
        assert _at(body["start_date"]) == datetime(2026, 6, 20, 8, 0, tzinfo=UTC)
        assert _at(body["expiration_date"]) == datetime(2026, 6, 21, 8, 0, tzinfo=UTC)
        problem = _problem(
            _issue(
                client,
                tenant,
                campaign="Berlin",
                start_date="2026-06-21T10:00:00Z",
                expiration_date="2026-06-20T10:00:00Z",
            ),
            422,
        )
        assert _fields(problem) == ["expiration_date"]


class TestMint:
    def test_count_one_answers_the_voucher(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, name="Gift", default_value=700)
        response = _mint(client, tenant, "Gift", count=1)
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["object"] == "voucher"
        assert body["campaign_id"] == campaign.id
        assert body["balance"] == 700
        assert _get(client, tenant, body["code"])["id"] == body["id"]
        assert _ledger(db, body["id"]) == [("ISSUE", 700)]

    def test_five_thousand_distinct_codes_and_an_exact_ledger(
        self, client: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, name="Bulk", default_value=250)
        response = _mint(client, tenant, "Bulk", count=5000)
        assert response.status_code == 201, response.text
        assert response.json() == {"object": "mint", "campaign_id": campaign.id, "count": 5000}
        with db.unit_of_work(write=False) as session:
            codes = list(
                session.scalars(select(Voucher.code).where(Voucher.campaign_id == campaign.id))
            )
            balances = session.execute(
                select(func.count(), func.sum(Voucher.balance), func.min(Voucher.balance)).where(
                    Voucher.campaign_id == campaign.id, Voucher.state == "ACTIVE"
                )
            ).one()
            ledger = session.execute(
                select(func.count(), func.sum(LedgerEntry.delta))
                .join(Voucher, Voucher.id == LedgerEntry.voucher_id)
                .where(Voucher.campaign_id == campaign.id, LedgerEntry.kind == "ISSUE")
            ).one()
            unmatched = session.scalar(
                select(func.count())
                .select_from(Voucher)
                .where(
                    Voucher.campaign_id == campaign.id,
                    ~select(LedgerEntry.id)
                    .where(
                        LedgerEntry.voucher_id == Voucher.id, LedgerEntry.delta == Voucher.balance
                    )
                    .exists(),
                )
            )
            minted = list(
                session.scalars(
                    select(VoucherEvent.data).where(
                        VoucherEvent.campaign_id == campaign.id, VoucherEvent.kind == "minted"
                    )
                )
            )
        assert len(codes) == len(set(codes)) == 5000
        assert all(DEFAULT_CODE.match(code) and not is_mistyped(code) for code in codes)
        assert tuple(balances) == (5000, 5000 * 250, 250)
        assert tuple(ledger) == (5000, 5000 * 250)
        assert unmatched == 0
        assert sum(event["count"] for event in minted) == 5000

    def test_in_several_batches(self, db: Database) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, name="Batches", default_value=10)
        result = mint_vouchers(db, tenant.caller, "Batches", MintVouchers(count=23), batch_size=10)
        assert (result.campaign_id, result.count, result.first) == (campaign.id, 23, None)
        with db.unit_of_work(write=False) as session:
            events = list(
                session.scalars(
                    select(VoucherEvent)
                    .where(VoucherEvent.campaign_id == campaign.id)
                    .order_by(VoucherEvent.id)
                )
            )
            ledger_total = session.scalar(
                select(func.sum(LedgerEntry.delta))
                .join(Voucher, Voucher.id == LedgerEntry.voucher_id)
                .where(Voucher.campaign_id == campaign.id)
            )
        assert [e.data["count"] for e in events if e.data] == [10, 10, 3]
        assert {e.kind for e in events} == {"minted"}
        assert {e.actor for e in events} == {tenant.key.key_id}
        assert _voucher_count(db, campaign.id) == 23
        assert ledger_total == 230

    def test_discount_mint_writes_no_ledger(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, name="Off", type="DISCOUNT")
        assert _mint(client, tenant, "Off", count=50).status_code == 201
        with db.unit_of_work(write=False) as session:
            ledger_rows = session.scalar(
                select(func.count())
                .select_from(LedgerEntry)
                .join(Voucher, Voucher.id == LedgerEntry.voucher_id)
                .where(Voucher.campaign_id == campaign.id)
            )
            balances = set(
                session.scalars(select(Voucher.balance).where(Voucher.campaign_id == campaign.id))
            )
        assert ledger_rows == 0
        assert balances == {None}
        assert _voucher_count(db, campaign.id) == 50

    def test_with_code_config_value_and_overrides(
        self, client: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        make_campaign(
            db,
            tenant,
            name="Shaped",
            default_value=500,
            max_value=900,
            code_config={"pattern": "GC-####-####", "charset": "0123456789"},
        )
        expiry = clock() + timedelta(days=10)
        response = _mint(
            client, tenant, "Shaped", count=40, value=900, expiration_date=_z(expiry),
            category="batch-7", metadata={"po": "123"},
        )  # fmt: skip
        assert response.status_code == 201, response.text
        vouchers = _list(client, tenant, campaign="Shaped")
        assert len(vouchers) == 40
        for voucher in vouchers:
            assert re.fullmatch(r"GC-[0-9]{4}-[0-9]{4}", voucher["code"])
            assert voucher["balance"] == voucher["value"] == 900
            assert _at(voucher["expiration_date"]) == expiry
            assert voucher["category"] == "batch-7"
            assert voucher["metadata"] == {"po": "123"}
            assert voucher["customer_ref"] is None
        _problem(_mint(client, tenant, "Shaped", count=2, value=901), 422, "value_above_maximum")

    @pytest.mark.parametrize("count", [0, -1, "many", None])
    def test_bad_count_is_refused(self, client: TestClient, db: Database, count: Any) -> None:
        tenant = make_tenant(db)
        make_campaign(db, tenant, name="Gift")
        assert _fields(_problem(_mint(client, tenant, "Gift", count=count), 422)) == ["count"]

    def test_unknown_campaign_is_404(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        _problem(_mint(client, tenant, "ghost", count=3), 404, "not_found")

    def test_inactive_campaign_is_refused(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, name="Off", active=False)
        _problem(_mint(client, tenant, "Off", count=3), 409, "campaign_inactive")
        assert _voucher_count(db, campaign.id) == 0


class TestGetVoucher:
    def test_by_id_and_by_code(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant)
        record = issue(db, tenant, campaign)
        by_id = _get(client, tenant, record.voucher.id)
        by_code = _get(client, tenant, record.voucher.code)
        assert by_id == by_code
        assert by_id["code"] == record.voucher.code

    def test_unknown_is_404(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        response = client.get(f"{VOUCHERS}/NOPE", headers=tenant.headers)
        assert _fields(_problem(response, 404, "not_found")) == ["voucher"]

    def test_another_tenants_voucher_is_404(self, client: TestClient, db: Database) -> None:
        owner, stranger = make_tenant(db), make_tenant(db)
        record = issue(db, owner, make_campaign(db, owner))
        for ref in (record.voucher.id, record.voucher.code):
            _problem(client.get(f"{VOUCHERS}/{ref}", headers=stranger.headers), 404)

    def test_expired_is_derived_from_the_clock(
        self, client: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, expiration_date=clock() + timedelta(days=1))
        record = issue(db, tenant, campaign)
        assert _get(client, tenant, record.voucher.id)["state"] == "ACTIVE"
        clock.advance(days=1, seconds=1)
        assert _get(client, tenant, record.voucher.id)["state"] == "EXPIRED"
        with db.unit_of_work(write=False) as session:
            stored = session.scalar(select(Voucher.state).where(Voucher.id == record.voucher.id))
        assert stored == "ACTIVE"  # never stored stale


class TestListVouchers:
    def test_filter_by_campaign(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        a = make_campaign(db, tenant, name="A")
        b = make_campaign(db, tenant, name="B")
        in_a = {issue(db, tenant, a).voucher.id for _ in range(3)}
        issue(db, tenant, b)
        assert {v["id"] for v in _list(client, tenant, campaign="A")} == in_a
        assert {v["id"] for v in _list(client, tenant, campaign=a.id)} == in_a
        assert len(_list(client, tenant)) == 4
        response = client.get(VOUCHERS, headers=tenant.headers, params={"campaign": "ghost"})
        _problem(response, 404, "not_found")

    def test_filter_by_state(self, client: TestClient, db: Database, clock: FakeClock) -> None:
        tenant = make_tenant(db)
        lasting = make_campaign(db, tenant, default_value=100)
        brief = make_campaign(db, tenant, expiration_date=clock() + timedelta(hours=1))
        active = issue(db, tenant, lasting).voucher
        disabled = issue(db, tenant, lasting).voucher
        cancelled = issue(db, tenant, lasting).voucher
        redeemed = issue(db, tenant, lasting).voucher
        expiring = issue(db, tenant, brief).voucher
        assert _post(client, tenant, f"{disabled.id}/disable").status_code == 200
        assert _post(client, tenant, f"{cancelled.id}/cancel").status_code == 200
        assert _redeem(client, tenant, redeemed.code, amount=100).status_code == 201

        def ids(state: str) -> set[str]:
            return {v["id"] for v in _list(client, tenant, state=state)}

        assert ids("ACTIVE") == {active.id, expiring.id}
        assert ids("EXPIRED") == set()
        clock.advance(hours=2)
        assert ids("ACTIVE") == {active.id}
        assert ids("EXPIRED") == {expiring.id}
        assert [v["state"] for v in _list(client, tenant, state="EXPIRED")] == ["EXPIRED"]
        assert ids("DISABLED") == {disabled.id}
        assert ids("CANCELLED") == {cancelled.id}
        assert ids("REDEEMED") == {redeemed.id}
        response = client.get(VOUCHERS, headers=tenant.headers, params={"state": "LOST"})
        assert _fields(_problem(response, 422)) == ["state"]

    def test_filter_by_customer(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant)
        alice = {issue(db, tenant, campaign, customer_ref="alice").voucher.id for _ in range(2)}
        issue(db, tenant, campaign, customer_ref="bob")
        issue(db, tenant, campaign)
        assert {v["id"] for v in _list(client, tenant, customer_ref="alice")} == alice
        assert _list(client, tenant, customer_ref="carol") == []

    def test_filter_by_creation_time(
        self, client: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant)
        t0 = clock()
        first = issue(db, tenant, campaign).voucher.id
        clock.advance(hours=1)
        second = issue(db, tenant, campaign).voucher.id
        clock.advance(hours=1)
        third = issue(db, tenant, campaign).voucher.id
        t1 = t0 + timedelta(hours=1)

        def ids(**params: Any) -> set[str]:
            return {v["id"] for v in _list(client, tenant, **params)}

        assert ids(created_after=_z(t1)) == {second, third}  # inclusive
        assert ids(created_before=_z(t1)) == {first}  # exclusive
        assert ids(created_after=_z(t0), created_before=_z(t0 + timedelta(hours=2))) == {
            first,
            second,
        }
        assert ids(created_after="2026-06-15T14:00:00+01:00") == {second, third}
        assert ids(created_after=_z(t0 + timedelta(hours=3))) == set()
        response = client.get(VOUCHERS, headers=tenant.headers, params={"created_after": "soon"})
        assert _fields(_problem(response, 422)) == ["created_after"]

    def test_creation_time_without_offset_is_read_as_utc(
        self, client: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant)
        first = issue(db, tenant, campaign).voucher.id
        clock.advance(hours=1)
        second = issue(db, tenant, campaign).voucher.id
        after = _list(client, tenant, created_after="2026-06-15T12:30:00")
        before = _list(client, tenant, created_before="2026-06-15T12:30:00")
        assert [v["id"] for v in after] == [second]
        assert [v["id"] for v in before] == [first]

    def test_cursor_pages_have_no_duplicates_and_no_gaps(
        self, client: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, name="Paged")
        other = make_campaign(db, tenant, name="Other")
        for i in range(23):
            issue(db, tenant, campaign, customer_ref="pager" if i % 2 else "other")
            issue(db, tenant, other, customer_ref="pager")
        everything = [
            v["id"] for v in _list(client, tenant, campaign="Paged", customer_ref="pager")
        ]
        assert len(everything) == 11
        assert everything == sorted(everything, reverse=True)

        seen: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"campaign": "Paged", "customer_ref": "pager", "limit": 4}
            if cursor is not None:
                params["cursor"] = cursor
            page = client.get(VOUCHERS, headers=tenant.headers, params=params).json()
            seen += [v["id"] for v in page["data"]]
            cursor = page["next_cursor"]
            assert page["has_more"] is (cursor is not None)
            if cursor is None:
                break
        assert seen == everything

    def test_only_the_callers_vouchers(self, client: TestClient, db: Database) -> None:
        owner, stranger = make_tenant(db), make_tenant(db)
        issue(db, owner, make_campaign(db, owner))
        assert _list(client, stranger) == []
        assert len(_list(client, owner)) == 1


class TestDisableEnable:
    def test_disable_then_enable(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        record = issue(db, tenant, make_campaign(db, tenant))
        code = record.voucher.code
        disabled = _post(client, tenant, f"{record.voucher.id}/disable", {"reason": "lost card"})
        assert disabled.status_code == 200, disabled.text
        assert disabled.json()["state"] == "DISABLED"
        _problem(_redeem(client, tenant, code, amount=1), 409, "voucher_disabled")
        enabled = _post(client, tenant, f"{code}/enable")
        assert enabled.status_code == 200, enabled.text
        assert enabled.json()["state"] == "ACTIVE"
        assert _redeem(client, tenant, code, amount=1).status_code == 201

    def test_repeating_is_harmless(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        voucher_id = issue(db, tenant, make_campaign(db, tenant)).voucher.id
        for _ in range(2):
            assert _post(client, tenant, f"{voucher_id}/disable").json()["state"] == "DISABLED"
        for _ in range(2):
            assert _post(client, tenant, f"{voucher_id}/enable").json()["state"] == "ACTIVE"

    @pytest.mark.parametrize("action", ["disable", "enable"])
    def test_a_cancelled_voucher_stays_cancelled(
        self, client: TestClient, db: Database, action: str
    ) -> None:
        tenant = make_tenant(db)
        voucher_id = issue(db, tenant, make_campaign(db, tenant)).voucher.id
        _post(client, tenant, f"{voucher_id}/cancel")
        problem = _problem(
            _post(client, tenant, f"{voucher_id}/{action}"), 409, "voucher_cancelled"
        )
        assert _fields(problem) == ["voucher"]
        assert _get(client, tenant, voucher_id)["state"] == "CANCELLED"

    def test_needs_manage_scope(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        voucher_id = issue(db, tenant, make_campaign(db, tenant)).voucher.id
        headers = tenant.key_with(db, ["issue", "redeem"])
        response = client.post(f"{VOUCHERS}/{voucher_id}/disable", headers=headers)
        _problem(response, 403, "forbidden")
        assert _get(client, tenant, voucher_id)["state"] == "ACTIVE"


class TestCancel:
    def test_cancel_is_final(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        record = issue(db, tenant, make_campaign(db, tenant))
        cancelled = _post(client, tenant, f"{record.voucher.code}/cancel", {"reason": "fraud"})
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["state"] == "CANCELLED"
        problem = _problem(
            _post(client, tenant, f"{record.voucher.id}/cancel"), 409, "voucher_cancelled"
        )
        assert "CANCELLED" in problem["detail"]
        _problem(_redeem(client, tenant, record.voucher.code, amount=1), 409, "voucher_cancelled")

    def test_a_disabled_voucher_can_be_cancelled(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        voucher_id = issue(db, tenant, make_campaign(db, tenant)).voucher.id
        _post(client, tenant, f"{voucher_id}/disable")
        assert _post(client, tenant, f"{voucher_id}/cancel").json()["state"] == "CANCELLED"

    def test_a_fully_redeemed_voucher_cannot_be_cancelled(
        self, client: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, type="CASH", currency="EUR", default_value=300)
        record = issue(db, tenant, campaign)
        assert _redeem(client, tenant, record.voucher.code).status_code == 201
        problem = _problem(
            _post(client, tenant, f"{record.voucher.id}/cancel"), 409, "voucher_redeemed"
        )
        assert _fields(problem) == ["voucher"]
        assert _get(client, tenant, record.voucher.id)["state"] == "REDEEMED"

    def test_unknown_and_foreign_vouchers_are_404(self, client: TestClient, db: Database) -> None:
        owner, stranger = make_tenant(db), make_tenant(db)
        voucher_id = issue(db, owner, make_campaign(db, owner)).voucher.id
        _problem(_post(client, stranger, f"{voucher_id}/cancel"), 404)
        _problem(_post(client, owner, "v_nothing/cancel"), 404)
        assert _get(client, owner, voucher_id)["state"] == "ACTIVE"


class TestEvents:
    def test_every_change_is_recorded_with_its_actor(
        self, client: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        make_campaign(db, tenant, name="Gift", default_value=1000)
        voucher = _issued(client, tenant, campaign="Gift", customer_ref="c")
        ref = voucher["id"]
        clock.advance(minutes=1)
        _post(client, tenant, f"{ref}/disable", {"reason": "suspicious"})
        second_key = tenant.key_with(db, ["manage"])
        client.post(f"{VOUCHERS}/{ref}/enable", headers=second_key)
        redeemed = _redeem(client, tenant, voucher["code"], amount=400).json()
        _post(client, tenant, f"{ref}/balance", {"amount": 50, "reason": "goodwill"})
        clock.advance(minutes=1)
        _post(client, tenant, f"{ref}/cancel", {"reason": "closed"})

        response = client.get(f"{VOUCHERS}/{ref}/events", headers=tenant.headers)
        assert response.status_code == 200, response.text
        events = response.json()["data"]
        assert [e["kind"] for e in events] == [
            "issued",
            "disabled",
            "enabled",
            "redeemed",
            "balance_adjusted",
            "cancelled",
        ]
        key_id = tenant.key.key_id
        second_key_id = second_key["Authorization"].removeprefix("Bearer ").partition(".")[0]
        assert [e["actor"] for e in events] == [
            key_id, key_id, second_key_id, key_id, key_id, key_id,
        ]  # fmt: skip
        assert [e["reason"] for e in events] == [
            None, "suspicious", None, None, "goodwill", "closed",
        ]  # fmt: skip
        assert events[0]["data"]["value"] == 1000
        assert events[1]["data"] == {"from": "ACTIVE"}
        assert events[2]["data"] == {"from": "DISABLED"}
        assert events[3]["data"]["redemption_id"] == redeemed["id"]
        assert events[4]["data"] == {"amount": 50}
        assert events[5]["data"] == {"from": "ACTIVE"}, events
        assert _at(events[0]["created_at"]) < _at(events[1]["created_at"])
        assert _at(events[-1]["created_at"]) == clock()
        assert all(e["object"] == "event" for e in events)

    def test_a_refused_change_writes_no_event(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        voucher_id = issue(db, tenant, make_campaign(db, tenant)).voucher.id
        _post(client, tenant, f"{voucher_id}/cancel")
        _problem(_post(client, tenant, f"{voucher_id}/cancel"), 409)
        _problem(_post(client, tenant, f"{voucher_id}/enable"), 409)
        _problem(_post(client, tenant, f"{voucher_id}/balance", {"amount": 5}), 409)
        events = client.get(f"{VOUCHERS}/{voucher_id}/events", headers=tenant.headers).json()
        assert [e["kind"] for e in events["data"]] == ["issued", "cancelled"]

    def test_another_tenants_events_are_404(self, client: TestClient, db: Database) -> None:
        owner, stranger = make_tenant(db), make_tenant(db)
        voucher_id = issue(db, owner, make_campaign(db, owner)).voucher.id
        _problem(client.get(f"{VOUCHERS}/{voucher_id}/events", headers=stranger.headers), 404)


class TestLedger:
    def test_every_balance_change_in_order_summing_to_the_balance(
        self, client: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        record = issue(db, tenant, make_campaign(db, tenant, default_value=1000))
        code = record.voucher.code
        redeemed = _redeem(client, tenant, code, amount=400).json()
        _post(client, tenant, f"{code}/balance", {"amount": 50, "reason": "goodwill"})
        rollback = f"/api/v1/redemptions/{redeemed['id']}/rollback"
        assert client.post(rollback, headers=tenant.headers).status_code in (200, 201)

        response = client.get(f"{VOUCHERS}/{code}/ledger", headers=tenant.headers)

        assert response.status_code == 200, response.text
        entries = response.json()["data"]
        assert [(e["kind"], e["delta"]) for e in entries] == _ledger(db, record.voucher.id)
        assert [e["kind"] for e in entries] == ["ISSUE", "REDEMPTION", "ADJUSTMENT", "ROLLBACK"]
        assert entries[1]["redemption_id"] == redeemed["id"]
        assert all(e["object"] == "ledger_entry" for e in entries)
        assert sum(e["delta"] for e in entries) == _get(client, tenant, code)["balance"] == 1050

    def test_another_tenants_ledger_is_404(self, client: TestClient, db: Database) -> None:
        owner, stranger = make_tenant(db), make_tenant(db)
        voucher_id = issue(db, owner, make_campaign(db, owner)).voucher.id
        _problem(client.get(f"{VOUCHERS}/{voucher_id}/ledger", headers=stranger.headers), 404)


class TestAdjustBalance:
    def test_top_up_revives_a_redeemed_voucher(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        record = issue(db, tenant, make_campaign(db, tenant, default_value=1000))
        code = record.voucher.code
        assert _redeem(client, tenant, code, amount=1000).json()["voucher"]["state"] == "REDEEMED"
        response = _post(client, tenant, f"{code}/balance", {"amount": 500})
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["state"], body["balance"], body["value"]) == ("ACTIVE", 500, 1500)
        assert _ledger(db, record.voucher.id) == [
            ("ISSUE", 1000),
            ("REDEMPTION", -1000),
            ("ADJUSTMENT", 500),
        ]
        assert _stored_balance(db, record.voucher.id) == 500
        assert _redeem(client, tenant, code, amount=500).status_code == 201

    def test_removal_below_zero_is_refused(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        record = issue(db, tenant, make_campaign(db, tenant, default_value=1000))
        problem = _problem(
            _post(client, tenant, f"{record.voucher.id}/balance", {"amount": -1001}),
            409,
            "insufficient_balance",
        )
        assert _fields(problem) == ["amount"]
        assert _stored_balance(db, record.voucher.id) == 1000
        assert _ledger(db, record.voucher.id) == [("ISSUE", 1000)]

    def test_removal_of_everything_uses_it_up(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        record = issue(db, tenant, make_campaign(db, tenant, default_value=1000))
        body = _post(client, tenant, f"{record.voucher.id}/balance", {"amount": -300}).json()
        assert (body["state"], body["balance"], body["value"]) == ("ACTIVE", 700, 1000)
        body = _post(client, tenant, f"{record.voucher.id}/balance", {"amount": -700}).json()
        assert (body["state"], body["balance"]) == ("REDEEMED", 0)
        assert sum(delta for _, delta in _ledger(db, record.voucher.id)) == 0

    def test_loyalty_points_from_zero(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, type="LOYALTY", default_value=0)
        record = issue(db, tenant, campaign)
        body = _post(client, tenant, f"{record.voucher.id}/balance", {"amount": 120}).json()
        assert body["balance"] == 120
        assert _ledger(db, record.voucher.id) == [("ADJUSTMENT", 120)]

    def test_zero_is_refused(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        record = issue(db, tenant, make_campaign(db, tenant))
        problem = _problem(
            _post(client, tenant, f"{record.voucher.id}/balance", {"amount": 0}), 422
        )
        assert _fields(problem) == ["amount"]

    @pytest.mark.parametrize("kind", ["CASH", "DISCOUNT"])
    def test_only_gift_and_loyalty(self, client: TestClient, db: Database, kind: str) -> None:
        tenant = make_tenant(db)
        fields: dict[str, Any] = {"currency": "EUR", "default_value": 100} if kind == "CASH" else {}
        record = issue(db, tenant, make_campaign(db, tenant, type=kind, **fields))
        problem = _problem(
            _post(client, tenant, f"{record.voucher.id}/balance", {"amount": 10}), 422
        )
        assert _fields(problem) == ["voucher"]

    def test_a_cancelled_voucher_is_refused(self, client: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        record = issue(db, tenant, make_campaign(db, tenant, default_value=1000))
        _post(client, tenant, f"{record.voucher.id}/cancel")
        _problem(_post(client, tenant, f"{record.voucher.id}/balance", {"amount": 10}), 409)
        assert _stored_balance(db, record.voucher.id) == 1000
