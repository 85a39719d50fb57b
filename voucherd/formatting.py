"""How money, points and dates read to a holder, in the campaign's locale and time zone.

Shared by messages and the voucher page so an SMS and the page never disagree about a value.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime, format_time, get_datetime_format
from babel.numbers import format_currency, format_decimal

from voucherd.money import to_major


def format_money(minor: int, currency: str, locale: str = "en") -> str:
    """``1050, "GBP", "en_GB"`` reads ``£10.50``: the currency's own decimals, the locale's signs."""
    return format_currency(to_major(minor, currency), currency, locale=locale, currency_digits=True)


def format_points(points: int, locale: str = "en") -> str:
    return format_decimal(points, locale=locale)


def format_value(amount: int | None, currency: str | None, locale: str = "en") -> str | None:
    """Money when there is a currency, points when not, nothing when there is no amount."""
    if amount is None:
        return None
    return format_money(amount, currency, locale) if currency else format_points(amount, locale)


def format_moment(moment: datetime | None, timezone: str, locale: str = "en") -> str | None:
    """A date and time as the holder reads it: in the campaign's zone, the locale's style."""
    if moment is None:
        return None
    return format_datetime(moment, "medium", tzinfo=ZoneInfo(timezone), locale=locale)


def format_expiry(moment: datetime | None, timezone: str, locale: str = "en") -> str | None:
    """An expiry as a holder reads it: the date, and the time only when it is not the end of
    the day (a voucher valid "until 30 Jun 2027" needs no "23:59:59"); never seconds."""
    if moment is None:
        return None
    local = moment.astimezone(ZoneInfo(timezone))
    day = format_date(local, "medium", locale=locale)
    if (local.hour, local.minute) == (23, 59):
        return day
    time = format_time(local, "short", locale=locale)
    pattern = str(get_datetime_format("medium", locale=locale)).replace("'", "")
    return pattern.format(time, day)
