"""When a voucher may be used: state, dates, recurring windows, days and hours.

Every rule is evaluated in the campaign's time zone. Voucherify numbers days 0 = Sunday.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from voucherd.campaigns.validity import parse_duration
from voucherd.errors import ErrorCode


def end_of_local_day(moment: datetime, tz: ZoneInfo) -> datetime:
    """23:59:59.999999 local time on ``moment``'s local date, as i-movo vouchers expire."""
    local = moment.astimezone(tz)
    return datetime.combine(local.date(), time.max, tzinfo=tz)


def expiry_at_issue(
    *,
    issued_at: datetime,
    expiration_date: datetime | None,
    lifetime_days: int | None,
    timezone: str,
) -> datetime | None:
    """The earlier of the campaign's fixed expiry and the relative lifetime from issue."""
    candidates = []
    if expiration_date is not None:
        candidates.append(expiration_date)
    if lifetime_days is not None:
        tz = ZoneInfo(timezone)
        end = end_of_local_day(issued_at + timedelta(days=lifetime_days), tz)
        candidates.append(end.astimezone(UTC))  # shown in UTC, as the database gives it back
    return min(candidates) if candidates else None


def effective_state(state: str, expiration_date: datetime | None, now: datetime) -> str:
    if state == "ACTIVE" and expiration_date is not None and now > expiration_date:
        return "EXPIRED"
    return state


@dataclass(frozen=True)
class Refusal:
    code: str
    detail: str


def _sunday_first(moment: datetime) -> int:
    return (moment.weekday() + 1) % 7


def refusal(
    *,
    state: str,
    start_date: datetime | None,
    expiration_date: datetime | None,
    campaign_active: bool,
    timezone: str,
    timeframe: dict[str, Any] | None,
    days_of_week: list[int] | None,
    hours: dict[str, Any] | None,
    now: datetime,
) -> Refusal | None:
    """Why a voucher cannot be used at ``now``, or None when it can."""
    if state == "CANCELLED":
        return Refusal(ErrorCode.VOUCHER_CANCELLED, "the voucher has been cancelled")
    if state == "REDEEMED":
        return Refusal(ErrorCode.VOUCHER_REDEEMED, "the voucher has been fully redeemed")
    if state == "DISABLED":
        return Refusal(ErrorCode.VOUCHER_DISABLED, "the voucher is disabled")
    if not campaign_active:
        return Refusal(ErrorCode.CAMPAIGN_INACTIVE, "the voucher's campaign is not active")
    if start_date is not None and now < start_date:
        return Refusal(
            ErrorCode.VOUCHER_NOT_ACTIVE_YET,
            f"the voucher is valid from {start_date:%Y-%m-%dT%H:%M:%SZ}",
        )
    if expiration_date is not None and now > expiration_date:
        return Refusal(ErrorCode.VOUCHER_EXPIRED, "the voucher has expired")
    tz = ZoneInfo(timezone)
    local = now.astimezone(tz)
    if timeframe and start_date is not None:
        duration = parse_duration(timeframe["duration"])
        interval = parse_duration(timeframe["interval"])
        # Counted on the campaign's wall clock, so "10:00-11:00 every day" stays at 10:00 local
        # across a daylight-saving change instead of drifting by an hour.
        elapsed = local.replace(tzinfo=None) - start_date.astimezone(tz).replace(tzinfo=None)
        if elapsed % interval >= duration:
            return Refusal(
                ErrorCode.OUTSIDE_VALIDITY_TIMEFRAME, "the voucher is outside its validity window"
            )
    if days_of_week and _sunday_first(local) not in days_of_week:
        return Refusal(
            ErrorCode.OUTSIDE_VALIDITY_DAYS, "the voucher is not valid on this day of the week"
        )
    if hours and hours.get("daily"):
        clock = local.strftime("%H:%M")
        day = _sunday_first(local)
        if not any(
            day in window.get("days_of_week", range(7))
            and window["start_time"] <= clock < window["expiration_time"]
            for window in hours["daily"]
        ):
            return Refusal(
                ErrorCode.OUTSIDE_VALIDITY_HOURS, "the voucher is not valid at this time of day"
            )
    return None
