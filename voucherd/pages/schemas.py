"""How a voucher reads on its page: every figure formatted, every notice worded, nothing decided
by the template.

The words are English; numbers, money and dates follow the campaign's locale and time zone
(voucherd.formatting, shared with delivery's messages so an SMS and its page never disagree).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from babel.numbers import format_percent

from voucherd.formatting import format_moment, format_points, format_value
from voucherd.pages.service import VoucherPageFacts
from voucherd.vouchers.validity import effective_state

_TITLES = {
    "GIFT": "Gift card",
    "CASH": "Cash voucher",
    "DISCOUNT": "Discount voucher",
    "LOYALTY": "Loyalty card",
}


@dataclass(frozen=True)
class Banner:
    """Why the voucher cannot be used now. ``final`` ones will never change back."""

    state: str
    text: str
    final: bool


@dataclass(frozen=True)
class Figure:
    label: str
    value: str
    note: str | None = None


@dataclass(frozen=True)
class Holder:
    name: str | None
    address: str | None
    postcode: str | None


@dataclass(frozen=True)
class VoucherPageView:
    title: str
    campaign_name: str
    code: str
    figure: Figure | None
    banner: Banner | None
    # Barcode and QR are left off a voucher that cannot be used, so nobody tries it at a till.
    scannable: bool
    validity: list[str]
    holder: Holder | None
    help_text: str | None
    store_finder_url: str | None


def present_page(facts: VoucherPageFacts, *, now: datetime) -> VoucherPageView:
    state = effective_state(facts.state, facts.expiration_date, now)
    banner = _banner(facts, state)
    holder = None
    if facts.holder_name or facts.holder_address or facts.holder_postcode:
        holder = Holder(facts.holder_name, facts.holder_address, facts.holder_postcode)
    return VoucherPageView(
        title=_TITLES.get(facts.type, "Voucher"),
        campaign_name=facts.campaign_name,
        code=facts.code,
        figure=_figure(facts),
        banner=banner,
        scannable=banner is None,
        # A cancelled or used-up voucher's dates no longer matter; an expired one's banner says when.
        validity=[] if banner is not None and banner.final else _validity(facts, now),
        holder=holder,
        help_text=facts.help_text,
        store_finder_url=_http_only(facts.store_finder_url),
    )


def _banner(facts: VoucherPageFacts, state: str) -> Banner | None:
    moment = format_moment(facts.expiration_date, facts.timezone, facts.locale)
    if state == "CANCELLED":
        return Banner(state, "This voucher has been cancelled and can no longer be used.", True)
    if state == "REDEEMED":
        return Banner(state, "This voucher has been used up.", True)
    if state == "EXPIRED":
        return Banner(state, f"This voucher expired on {moment}.", True)
    if state == "DISABLED" or not facts.campaign_active:
        # Both can be switched back on, so the holder should keep the voucher.
        return Banner(
            "DISABLED",
            "This voucher is on hold and cannot be used at the moment. Please keep it.",
            False,
        )
    return None


def _figure(facts: VoucherPageFacts) -> Figure | None:
    locale = facts.locale
    if facts.type == "GIFT" and facts.balance is not None:
        value = format_value(facts.balance, facts.currency, locale) or ""
        note = None
        if facts.amount is not None and facts.amount != facts.balance:
            note = f"of {format_value(facts.amount, facts.currency, locale)}"
        return Figure("Balance", value, note)
    if facts.type == "LOYALTY" and facts.balance is not None:
        return Figure("Points", format_points(facts.balance, locale))
    if facts.type == "DISCOUNT" and facts.discount:
        return Figure("Discount", describe_discount(facts.discount, facts.currency, locale))
    amount = format_value(facts.amount, facts.currency, locale)
    return Figure("Value", amount) if amount else None


def describe_discount(discount: dict[str, Any], currency: str | None, locale: str) -> str:
    """A campaign's discount definition as a shopper reads it: "10% off, up to €5.00"."""

    def money(minor: int) -> str:
        return format_value(minor, currency, locale) or str(minor)

    kind = discount.get("type")
    if kind == "AMOUNT":
        return f"{money(discount['amount_off'])} off"
    if kind == "PERCENT":
        share = Decimal(str(discount["percent_off"])) / 100
        text = f"{format_percent(share, locale=locale, decimal_quantization=False)} off"
        limit = discount.get("amount_limit")
        return f"{text}, up to {money(limit)}" if limit and currency else text
    if kind == "FIXED":
        return f"Pay only {money(discount['fixed_amount'])}"
    if kind == "UNIT":
        return f"{format_points(discount['unit_off'], locale)} × {discount['unit_type']} free"
    return "Discount"


def _validity(facts: VoucherPageFacts, now: datetime) -> list[str]:
    lines = []
    if facts.start_date is not None and now < facts.start_date:
        lines.append(f"Valid from {format_moment(facts.start_date, facts.timezone, facts.locale)}")
    if facts.expiration_date is None:
        lines.append("No expiry date")
    else:
        moment = format_moment(facts.expiration_date, facts.timezone, facts.locale)
        lines.append(f"Expires {moment}")
    return lines


def _http_only(url: str | None) -> str | None:
    """The campaign schema admits only http(s) links; checked again where one becomes an href."""
    if url is None or not url.lower().startswith(("https://", "http://")):
        return None
    return url
