"""How a voucher reads on its page: every figure formatted, every notice worded, nothing decided
by the template.

The words are in the campaign's language (voucherd.pages.i18n: English, German, French, Spanish,
Dutch, Afrikaans); numbers, money and dates follow its locale and time zone (voucherd.formatting,
shared with delivery's messages so an SMS and its page never disagree about a value).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from babel.numbers import format_percent

from voucherd.formatting import format_expiry, format_points, format_value
from voucherd.pages.i18n import Gettext, html_lang, translator
from voucherd.pages.service import VoucherPageFacts
from voucherd.vouchers.validity import effective_state


def _title(kind: str, _: Gettext) -> str:
    titles = {
        "GIFT": _("Gift card"),
        "CASH": _("Cash voucher"),
        "DISCOUNT": _("Discount voucher"),
        "LOYALTY": _("Loyalty card"),
    }
    return titles.get(kind) or _("Voucher")


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
    lang: str
    title: str
    campaign_name: str
    code: str
    # The code in groups for reading aloud (4-4-5 for the default 13 characters); the barcode,
    # the QR and a copy of the text still carry the code exactly.
    code_groups: list[str]
    figure: Figure | None
    banner: Banner | None
    # Barcode and QR are left off a voucher that cannot be used, so nobody tries it at a till.
    scannable: bool
    validity: list[str]
    holder: Holder | None
    help_text: str | None
    store_finder_url: str | None


def present_page(facts: VoucherPageFacts, *, now: datetime) -> VoucherPageView:
    _ = translator(facts.locale)
    state = effective_state(facts.state, facts.expiration_date, now)
    banner = _banner(facts, state, _)
    holder = None
    if facts.holder_name or facts.holder_address or facts.holder_postcode:
        holder = Holder(facts.holder_name, facts.holder_address, facts.holder_postcode)
    return VoucherPageView(
        lang=html_lang(facts.locale),
        title=_title(facts.type, _),
        campaign_name=facts.campaign_name,
        code=facts.code,
        code_groups=code_groups(facts.code),
        figure=_figure(facts, _),
        banner=banner,
        scannable=banner is None,
        # A cancelled or used-up voucher's dates no longer matter; an expired one's banner says when.
        validity=[] if banner is not None and banner.final else _validity(facts, now, _),
        holder=holder,
        help_text=facts.help_text,
        store_finder_url=_http_only(facts.store_finder_url),
    )


def code_groups(code: str) -> list[str]:
    """Groups of four, a lone last character joining the group before (13: 4-4-5, 9: 4-5).

    A code with its own separators (a prefix and a dash, spaces) or too short to need it is
    shown as it is.
    """
    if len(code) < 8 or not code.isalnum():
        return [code]
    groups = [code[i : i + 4] for i in range(0, len(code), 4)]
    if len(groups[-1]) == 1:
        groups[-2:] = [groups[-2] + groups[-1]]
    return groups


def _banner(facts: VoucherPageFacts, state: str, _: Gettext) -> Banner | None:
    if state == "CANCELLED":
        return Banner(state, _("This voucher has been cancelled and can no longer be used."), True)
    if state == "REDEEMED":
        return Banner(state, _("This voucher has been used up."), True)
    if state == "EXPIRED":
        moment = format_expiry(facts.expiration_date, facts.timezone, facts.locale)
        return Banner(state, _("This voucher expired on %(moment)s.") % {"moment": moment}, True)
    if state == "DISABLED" or not facts.campaign_active:
        # Both can be switched back on, so the holder should keep the voucher.
        return Banner(
            "DISABLED",
            _("This voucher is on hold and cannot be used at the moment. Please keep it."),
            False,
        )
    return None


def _figure(facts: VoucherPageFacts, _: Gettext) -> Figure | None:
    locale = facts.locale
    if facts.type == "GIFT" and facts.balance is not None:
        value = format_value(facts.balance, facts.currency, locale) or ""
        note = None
        if facts.amount is not None and facts.amount != facts.balance:
            total = format_value(facts.amount, facts.currency, locale)
            note = _("of %(amount)s") % {"amount": total}
        return Figure(_("Balance"), value, note)
    if facts.type == "LOYALTY" and facts.balance is not None:
        return Figure(_("Points"), format_points(facts.balance, locale))
    if facts.type == "DISCOUNT" and facts.discount:
        return Figure(_("Discount"), describe_discount(facts.discount, facts.currency, locale))
    amount = format_value(facts.amount, facts.currency, locale)
    return Figure(_("Value"), amount) if amount else None


def describe_discount(discount: dict[str, Any], currency: str | None, locale: str) -> str:
    """A campaign's discount definition as a shopper reads it: "10% off, up to €5.00"."""
    _ = translator(locale)

    def money(minor: int) -> str:
        return format_value(minor, currency, locale) or str(minor)

    kind = discount.get("type")
    if kind == "AMOUNT":
        return _("%(amount)s off") % {"amount": money(discount["amount_off"])}
    if kind == "PERCENT":
        share = Decimal(str(discount["percent_off"])) / 100
        percent = format_percent(share, locale=locale, decimal_quantization=False)
        text = _("%(percent)s off") % {"percent": percent}
        limit = discount.get("amount_limit")
        if limit and currency:
            return _("%(discount)s, up to %(limit)s") % {"discount": text, "limit": money(limit)}
        return text
    if kind == "FIXED":
        return _("Pay only %(amount)s") % {"amount": money(discount["fixed_amount"])}
    if kind == "UNIT":
        count = format_points(discount["unit_off"], locale)
        return _("%(count)s × %(unit)s free") % {"count": count, "unit": discount["unit_type"]}
    return _("Discount")


def _validity(facts: VoucherPageFacts, now: datetime, _: Gettext) -> list[str]:
    lines = []
    if facts.start_date is not None and now < facts.start_date:
        start = format_expiry(facts.start_date, facts.timezone, facts.locale)
        lines.append(_("Valid from %(moment)s") % {"moment": start})
    if facts.expiration_date is None:
        lines.append(_("No expiry date"))
    else:
        moment = format_expiry(facts.expiration_date, facts.timezone, facts.locale)
        lines.append(_("Expires %(moment)s") % {"moment": moment})
    return lines


def _http_only(url: str | None) -> str | None:
    """The campaign schema admits only http(s) links; checked again where one becomes an href."""
    if url is None or not url.lower().startswith(("https://", "http://")):
        return None
    return url
