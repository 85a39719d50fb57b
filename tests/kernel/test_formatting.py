"""Money, points and dates as a holder reads them (messages and the voucher page share these)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from voucherd.formatting import format_moment, format_money, format_value


@pytest.mark.parametrize(
    ("minor", "currency", "locale", "expected"),
    [
        (1050, "GBP", "en_GB", "£10.50"),
        (1050, "EUR", "de_DE", "10,50\xa0€"),
        (500, "JPY", "ja", "￥500"),
        (12345, "KWD", "en", "KWD12.345"),
        (0, "ZAR", "en_ZA", "R0,00"),
    ],
)
def test_money_uses_the_currencys_decimals_and_the_locales_signs(
    minor: int, currency: str, locale: str, expected: str
) -> None:
    assert format_money(minor, currency, locale) == expected


def test_points_have_no_currency() -> None:
    assert format_value(1234567, None, "en") == "1,234,567"
    assert format_value(None, "EUR", "en") is None


def test_moment_is_shown_in_the_campaign_zone() -> None:
    midnight_utc = datetime(2026, 7, 1, 23, 30, tzinfo=UTC)
    assert format_moment(midnight_utc, "Europe/London", "en_GB") == "2 Jul 2026, 00:30:00"
    assert format_moment(None, "UTC") is None
