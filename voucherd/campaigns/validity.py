"""How a campaign reads dates and durations: shared by the campaign's own rules and by every
voucher issued from it (vouchers.validity, vouchers.terms), so it sits in the lower feature."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

_DURATION = re.compile(
    r"^P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$"
)


def parse_duration(text: str) -> timedelta:
    """An ISO 8601 duration in weeks, days, hours, minutes and seconds.

    Months and years are refused: their length varies, so "every month" is not a fixed
    interval a window can repeat on.
    """
    match = _DURATION.fullmatch(text)  # not match(): "$" would let a trailing newline in
    if not match or text in ("P", "PT") or text.endswith("T"):
        raise ValueError(
            "must be an ISO 8601 duration in weeks, days, hours, minutes or seconds "
            "(e.g. PT1H, P2D, P1W)"
        )
    parts = {name: int(value) for name, value in match.groupdict().items() if value}
    return timedelta(**parts)


def localise(value: datetime | None, timezone: str) -> datetime | None:
    """A date without an offset is read in the campaign's time zone. Kept in UTC, as the
    database hands dates back, so an answer shows a date the same way as a later read."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(timezone))
    return value.astimezone(UTC)
