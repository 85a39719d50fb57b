"""When a voucher may be used: dates, recurring windows, days and hours, in the campaign's zone.

Every rule is checked through both faces of the native API that judge it: a validation (which
answers valid or not, and why) and a redemption (which is refused with that same reason).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.factories.vouchers import issue
from tests.support.clock import FakeClock
from voucherd.campaigns.validity import parse_duration
from voucherd.db.engine import Database

# The FakeClock starts on Monday 2026-06-15 at 12:00 UTC.
MONDAY_NOON = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def _validate(client: TestClient, tenant: Tenant, code: str) -> dict[str, Any]:
    response = client.post(
        "/api/v1/validations", headers=tenant.headers, json={"code": code, "amount": 100}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _reason(client: TestClient, tenant: Tenant, code: str) -> str | None:
    """None when the voucher validates; otherwise the reason it does not."""
    body = _validate(client, tenant, code)
    assert body["valid"] is (body["reason"] is None), body
    return None if body["valid"] else str(body["reason"])


def _redeem_refused(client: TestClient, tenant: Tenant, code: str, reason: str) -> None:
    response = client.post(
        "/api/v1/redemptions", headers=tenant.headers, json={"code": code, "amount": 100}
    )
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["code"] == reason
    assert [e["field"] for e in problem["errors"]] == ["code"]


def _redeem_ok(client: TestClient, tenant: Tenant, code: str) -> None:
    response = client.post(
        "/api/v1/redemptions", headers=tenant.headers, json={"code": code, "amount": 100}
    )
    assert response.status_code == 201, response.text


def _voucher(db: Database, tenant: Tenant, **campaign: Any) -> str:
    """A GIFT voucher worth 5,000 from a new campaign with these rules; its code."""
    return issue(db, tenant, make_campaign(db, tenant, **campaign)).voucher.code


class TestStartDate:
    def test_not_active_until_the_start(
        self, client: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        start = clock() + timedelta(days=1)
        code = _voucher(db, tenant, start_date=start)
        assert _reason(client, tenant, code) == "voucher_not_active_yet"
        _redeem_refused(client, tenant, code, "voucher_not_active_yet")
        clock.set(start - timedelta(microseconds=1))
        assert _reason(client, tenant, code) == "voucher_not_active_yet"
        clock.set(start)
        assert _reason(client, tenant, code) is None
        _redeem_ok(client, tenant, code)

    def test_start_without_offset_is_local(
        self, client: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        # 2026-06-16 09:00 in Johannesburg (UTC+2) is 07:00 UTC.
        code = _voucher(
            db, tenant, timezone="Africa/Johannesburg", start_date=datetime(2026, 6, 16, 9, 0)
        )
        clock.set(datetime(2026, 6, 16, 6, 59, tzinfo=UTC))
        assert _reason(client, tenant, code) == "voucher_not_active_yet"
        clock.set(datetime(2026, 6, 16, 7, 0, tzinfo=UTC))
        assert _reason(client, tenant, code) is None

    def test_a_voucher_may_start_later_than_its_campaign(
        self, client: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant)
        code = issue(db, tenant, campaign, start_date=clock() + timedelta(hours=2)).voucher.code
        assert _reason(client, tenant, code) == "voucher_not_active_yet"
        clock.advance(hours=2)
        assert _reason(client, tenant, code) is None


class TestExpiry:
    def test_expired_after_the_expiration_date(
        self, client: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        expiry = clock() + timedelta(hours=1)
        code = _voucher(db, tenant, expiration_date=expiry)
        clock.set(expiry)
        assert _reason(client, tenant, code) is None  # valid up to and including the instant
        clock.advance(microseconds=1)
        body = _validate(client, tenant, code)
        assert (body["valid"], body["reason"]) == (False, "voucher_expired")
        assert body["voucher"]["state"] == "EXPIRED"
        _redeem_refused(client, tenant, code, "voucher_expired")

    def test_lifetime_ends_at_local_midnight(
        self, client: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        # Monday 12:00 UTC is Monday 22:00 in Brisbane (UTC+10, no daylight saving).
        code = _voucher(db, tenant, timezone="Australia/Brisbane", lifetime_days=0)
        clock.set(datetime(2026, 6, 15, 13, 59, 59, tzinfo=UTC))  # 23:59:59 local
        assert _reason(client, tenant, code) is None
        clock.set(datetime(2026, 6, 15, 14, 0, tzinfo=UTC))  # Tuesday 00:00 local
        assert _reason(client, tenant, code) == "voucher_expired"


_TIMEFRAME_CHECKS: list[tuple[timedelta, str | None]] = [
    (timedelta(0), None),
    (timedelta(minutes=59, seconds=59), None),
    (timedelta(hours=1), "outside_validity_timeframe"),
    (timedelta(hours=23), "outside_validity_timeframe"),
    (timedelta(days=1), "outside_validity_timeframe"),
    (timedelta(days=1, hours=23, minutes=59), "outside_validity_timeframe"),
    (timedelta(days=2), None),
    (timedelta(days=2, minutes=30), None),
    (timedelta(days=2, hours=1), "outside_validity_timeframe"),
    (timedelta(days=3), "outside_validity_timeframe"),
    (timedelta(days=20, minutes=10), None),
    (timedelta(days=21, minutes=10), "outside_validity_timeframe"),
]


class TestValidityTimeframe:
    """PT1H every P2D from start_date: 12:00-13:00 UTC on Monday, Wednesday, Friday..."""

    def test_window_repeats_from_the_start(
        self, client: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        code = _voucher(
            db,
            tenant,
            start_date=MONDAY_NOON,
            validity_timeframe={"duration": "PT1H", "interval": "P2D"},
        )
        for offset, reason in _TIMEFRAME_CHECKS:
            clock.set(MONDAY_NOON + offset)
            assert _reason(client, tenant, code) == reason, offset
            if reason is None:
                _redeem_ok(client, tenant, code)
            else:
                _redeem_refused(client, tenant, code, reason)

    def test_before_the_start_it_is_not_active_yet(
        self, client: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        code = _voucher(
            db,
            tenant,
            start_date=MONDAY_NOON + timedelta(days=1),
            validity_timeframe={"duration": "PT1H", "interval": "P2D"},
        )
        assert _reason(client, tenant, code) == "voucher_not_active_yet"

    def test_window_keeps_its_local_time_across_daylight_saving(
        self, client: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        clock.set(datetime(2026, 3, 20, 8, 0, tzinfo=UTC))
        # Every day 10:00-11:00 in Berlin, from a start in winter time (UTC+1).
        code = _voucher(
            db,
            tenant,
            timezone="Europe/Berlin",
            start_date=datetime(2026, 3, 20, 10, 0),
            validity_timeframe={"duration": "PT1H", "interval": "P1D"},
        )
        clock.set(datetime(2026, 3, 21, 9, 30, tzinfo=UTC))  # 10:30 CET
        assert _reason(client, tenant, code) is None
        # Summer time (UTC+2) from 29 March: the window is still 10:00-11:00 on the wall clock.
        clock.set(datetime(2026, 4, 1, 8, 30, tzinfo=UTC))  # 10:30 CEST
        assert _reason(client, tenant, code) is None
        clock.set(datetime(2026, 4, 1, 9, 30, tzinfo=UTC))  # 11:30 CEST
        assert _reason(client, tenant, code) == "outside_validity_timeframe"
        clock.set(datetime(2026, 4, 1, 7, 59, tzinfo=UTC))  # 09:59 CEST
        assert _reason(client, tenant, code) == "outside_validity_timeframe"


class TestValidityDayOfWeek:
    @pytest.mark.parametrize(
        ("days", "advance_days", "reason"),
        [
            ([1], 0, None),  # Monday
            ([1], 1, "outside_validity_days"),  # Tuesday
            ([0], 0, "outside_validity_days"),
            ([0], 6, None),  # Sunday is 0
            ([6], 5, None),  # Saturday is 6
            ([6], 6, "outside_validity_days"),
            ([0, 6], 5, None),
            ([2, 3, 4], 3, None),  # Thursday
        ],
    )
    def test_days_are_numbered_from_sunday(
        self,
        client: TestClient,
        db: Database,
        clock: FakeClock,
        days: list[int],
        advance_days: int,
        reason: str | None,
    ) -> None:
        tenant = make_tenant(db)
        code = _voucher(db, tenant, validity_day_of_week=days)
        clock.advance(days=advance_days)
        assert _reason(client, tenant, code) == reason
        if reason is not None:
            _redeem_refused(client, tenant, code, reason)

    def test_local_day_ahead_of_utc(
        self, client: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        # Tuesdays in Auckland (UTC+12 in June): Monday noon UTC is Tuesday midnight there.
        code = _voucher(db, tenant, timezone="Pacific/Auckland", validity_day_of_week=[2])
        in_utc = _voucher(db, tenant, validity_day_of_week=[2])
        assert _reason(client, tenant, code) is None
        assert _reason(client, tenant, in_utc) == "outside_validity_days"
        clock.set(MONDAY_NOON - timedelta(minutes=1))  # Monday 23:59 in Auckland
        assert _reason(client, tenant, code) == "outside_validity_days"
        clock.set(MONDAY_NOON + timedelta(hours=23, minutes=59))  # Tuesday 23:59 in Auckland
        assert _reason(client, tenant, code) is None
        clock.set(MONDAY_NOON + timedelta(days=1))  # Wednesday 00:00 in Auckland
        assert _reason(client, tenant, code) == "outside_validity_days"

    def test_local_day_behind_utc(self, client: TestClient, db: Database, clock: FakeClock) -> None:
        tenant = make_tenant(db)
        clock.set(datetime(2026, 6, 15, 5, 0, tzinfo=UTC))  # Sunday 22:00 in Los Angeles
        code = _voucher(db, tenant, timezone="America/Los_Angeles", validity_day_of_week=[0])
        assert _reason(client, tenant, code) is None
        clock.set(datetime(2026, 6, 15, 7, 0, tzinfo=UTC))  # Monday 00:00 in Los Angeles
        assert _reason(client, tenant, code) == "outside_validity_days"


WORKDAYS_IN_NEW_YORK = {
    "daily": [{"start_time": "09:00", "expiration_time": "17:00", "days_of_week": [1, 2, 3, 4, 5]}]
}


# New York is UTC-4 in June; 2026-06-15 is a Monday.
_WORKDAY_CHECKS: list[tuple[datetime, str | None]] = [
    (datetime(2026, 6, 15, 12, 0, tzinfo=UTC), "outside_validity_hours"),  # Mon 08:00
    (datetime(2026, 6, 15, 12, 59, tzinfo=UTC), "outside_validity_hours"),  # Mon 08:59
    (datetime(2026, 6, 15, 13, 0, tzinfo=UTC), None),  # Mon 09:00
    (datetime(2026, 6, 15, 20, 59, tzinfo=UTC), None),  # Mon 16:59
    (datetime(2026, 6, 15, 21, 0, tzinfo=UTC), "outside_validity_hours"),  # Mon 17:00
    (datetime(2026, 6, 19, 20, 0, tzinfo=UTC), None),  # Fri 16:00
    (datetime(2026, 6, 20, 14, 0, tzinfo=UTC), "outside_validity_hours"),  # Sat 10:00
    (datetime(2026, 6, 20, 0, 30, tzinfo=UTC), "outside_validity_hours"),  # Fri 20:30
]


class TestValidityHours:
    def test_daily_window_in_the_campaign_zone(
        self, client: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        code = _voucher(
            db, tenant, timezone="America/New_York", validity_hours=WORKDAYS_IN_NEW_YORK
        )
        for moment, reason in _WORKDAY_CHECKS:
            clock.set(moment)
            assert _reason(client, tenant, code) == reason, moment
            if reason is None:
                _redeem_ok(client, tenant, code)
            else:
                _redeem_refused(client, tenant, code, reason)

    def test_several_windows(self, client: TestClient, db: Database, clock: FakeClock) -> None:
        tenant = make_tenant(db)
        hours = {
            "daily": [
                {"start_time": "09:00", "expiration_time": "12:00"},
                {"start_time": "14:00", "expiration_time": "18:00", "days_of_week": [6]},
            ]
        }
        code = _voucher(db, tenant, validity_hours=hours)
        expectations = [
            (datetime(2026, 6, 15, 10, 0, tzinfo=UTC), None),  # Monday morning
            (datetime(2026, 6, 15, 12, 0, tzinfo=UTC), "outside_validity_hours"),  # end excluded
            (datetime(2026, 6, 15, 15, 0, tzinfo=UTC), "outside_validity_hours"),  # not Saturday
            (datetime(2026, 6, 20, 15, 0, tzinfo=UTC), None),  # Saturday afternoon
            (datetime(2026, 6, 20, 11, 59, tzinfo=UTC), None),  # Saturday morning
            (datetime(2026, 6, 21, 8, 59, tzinfo=UTC), "outside_validity_hours"),  # Sunday early
        ]
        for moment, reason in expectations:
            clock.set(moment)
            assert _reason(client, tenant, code) == reason, moment

    def test_local_day_differs_from_utc(
        self, client: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        hours = {
            "daily": [{"start_time": "08:00", "expiration_time": "10:00", "days_of_week": [2]}]
        }
        code = _voucher(db, tenant, timezone="Asia/Tokyo", validity_hours=hours)
        assert _reason(client, tenant, code) == "outside_validity_hours"  # Monday 21:00 in Tokyo
        clock.set(datetime(2026, 6, 15, 23, 30, tzinfo=UTC))  # Tuesday 08:30 in Tokyo
        assert _reason(client, tenant, code) is None
        _redeem_ok(client, tenant, code)
        clock.set(datetime(2026, 6, 16, 23, 30, tzinfo=UTC))  # Wednesday 08:30 in Tokyo
        assert _reason(client, tenant, code) == "outside_validity_hours"

    def test_all_rules_together(self, client: TestClient, db: Database, clock: FakeClock) -> None:
        tenant = make_tenant(db)
        code = _voucher(
            db,
            tenant,
            timezone="Europe/London",
            start_date=MONDAY_NOON - timedelta(days=7),
            expiration_date=MONDAY_NOON + timedelta(days=30),
            validity_day_of_week=[1, 3],
            validity_hours={"daily": [{"start_time": "12:00", "expiration_time": "14:00"}]},
        )
        clock.set(datetime(2026, 6, 15, 11, 30, tzinfo=UTC))  # Monday 12:30 in London
        assert _reason(client, tenant, code) is None
        clock.set(datetime(2026, 6, 16, 11, 30, tzinfo=UTC))  # Tuesday
        assert _reason(client, tenant, code) == "outside_validity_days"
        clock.set(datetime(2026, 6, 17, 13, 30, tzinfo=UTC))  # Wednesday 14:30
        assert _reason(client, tenant, code) == "outside_validity_hours"
        clock.set(datetime(2026, 7, 20, 11, 30, tzinfo=UTC))  # Monday, after expiry
        assert _reason(client, tenant, code) == "voucher_expired"


class TestCampaignActive:
    def test_an_inactive_campaign_refuses_its_vouchers(
        self, client: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, name="Pausable")
        code = issue(db, tenant, campaign).voucher.code
        path = "/api/v1/campaigns/Pausable"
        assert client.patch(path, headers=tenant.headers, json={"active": False}).status_code == 200
        assert _reason(client, tenant, code) == "campaign_inactive"
        _redeem_refused(client, tenant, code, "campaign_inactive")
        assert client.patch(path, headers=tenant.headers, json={"active": True}).status_code == 200
        assert _reason(client, tenant, code) is None
        _redeem_ok(client, tenant, code)

    def test_the_vouchers_own_state_is_reported_first(
        self, client: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, name="Pausable")
        voucher = issue(db, tenant, campaign).voucher
        client.post(f"/api/v1/vouchers/{voucher.id}/disable", headers=tenant.headers)
        client.patch("/api/v1/campaigns/Pausable", headers=tenant.headers, json={"active": False})
        assert _reason(client, tenant, voucher.code) == "voucher_disabled"


class TestParseDuration:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("PT1H", timedelta(hours=1)),
            ("P2D", timedelta(days=2)),
            ("P1W", timedelta(weeks=1)),
            ("PT30M", timedelta(minutes=30)),
            ("PT45S", timedelta(seconds=45)),
            ("P1DT12H", timedelta(days=1, hours=12)),
            ("P1W2DT3H4M5S", timedelta(weeks=1, days=2, hours=3, minutes=4, seconds=5)),
            ("PT90M", timedelta(minutes=90)),
            ("PT0S", timedelta(0)),
        ],
    )
    def test_weeks_days_hours_minutes_seconds(self, text: str, expected: timedelta) -> None:
        assert parse_duration(text) == expected

    @pytest.mark.parametrize(
        "text",
        [
            "P1M",  # a month varies in length
            "P1Y",
            "P1Y2D",
            "P2M3D",
            "P1H",  # hours need the T
            "PT1D",  # days must not follow the T
            "P",
            "PT",
            "P1DT",
            "1D",
            "PT1.5H",
            "PT1,5H",
            "-P1D",
            "pt1h",
            "",
            " PT1H",
            "PT1H ",
            "PT1H\n",
            "PT1H30",
            "every day",
        ],
    )
    def test_refuses_months_years_and_garbage(self, text: str) -> None:
        with pytest.raises(ValueError, match="ISO 8601 duration"):
            parse_duration(text)
