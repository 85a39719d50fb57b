"""The campaign form's fields past the basics, as the native API's body: the discount of each
kind, validity timeframe and daily hours, metadata as JSON, the automatic delivery channel, the
locale; and the live preview of the SMS and e-mail while the form is filled in.

Only translation happens here (major units to minor, text to JSON); whether the result is a
valid campaign is the core's CampaignCreate / CampaignUpdate to say, field by field.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

from voucherd.campaigns.models import Campaign
from voucherd.codes.generator import CodeConfigError, spec_from_config
from voucherd.delivery.messages import MessageError, compose, variables
from voucherd.errors import DomainError
from voucherd.money import to_major, to_minor
from voucherd.vouchers.models import Voucher

DISCOUNT_TYPES = ("AMOUNT", "PERCENT", "FIXED", "UNIT")
DISCOUNT_MONEY = ("amount_off", "amount_limit", "fixed_amount")
CHANNELS = ("", "phone", "email")
# Fields this module fills that an edit clears when left empty (the locale is kept instead:
# a campaign always has one).
MORE = ("validity_timeframe", "validity_hours", "metadata", "delivery_channel")


# A refusal of a whole block is shown next to the form field that block is typed into.
_SHOWN_AT = {
    "validity_timeframe": "interval",
    "validity_hours": "start_time",
    "daily": "start_time",
}


def shown_at(errors: dict[str, str]) -> dict[str, str]:
    """Errors keyed by the form field that shows them."""
    return {_SHOWN_AT.get(name, name): reason for name, reason in errors.items()}


def _money(text: str, currency: str | None, name: str) -> int:
    try:
        value = Decimal(text.strip().replace(",", "."))
        return to_minor(value, currency) if currency else int(value)
    except (ValueError, InvalidOperation) as exc:
        raise DomainError("an amount such as 5.00", field=name) from exc


def discount_of(form: dict[str, str], currency: str | None) -> dict[str, Any] | None:
    kind = form.get("discount_type", "").strip().upper()
    if not kind and form.get("percent_off", "").strip():
        kind = "PERCENT"  # the form's first version had only a percentage
    if not kind:
        return None
    found: dict[str, Any] = {"type": kind}
    for name in DISCOUNT_MONEY:
        if form.get(name, "").strip():
            found[name] = _money(form[name], currency, name)
    if form.get("percent_off", "").strip():
        found["percent_off"] = form["percent_off"].strip()
    if form.get("unit_off", "").strip():
        try:
            found["unit_off"] = int(form["unit_off"].strip())
        except ValueError as exc:
            raise DomainError("a whole number", field="unit_off") from exc
    if form.get("unit_type", "").strip():
        found["unit_type"] = form["unit_type"].strip()
    return found


def metadata_of(text: str) -> dict[str, Any] | None:
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise DomainError(f"not JSON ({exc.msg} at {where})", field="metadata") from exc
    if not isinstance(value, dict):
        raise DomainError('a JSON object, such as {"team": "north"}', field="metadata")
    return value


def more_fields(form: dict[str, str]) -> dict[str, Any]:
    """The extra fields present in ``form``, in the API's shape."""
    body: dict[str, Any] = {}
    duration, interval = form.get("duration", "").strip(), form.get("interval", "").strip()
    if duration or interval:
        body["validity_timeframe"] = {"duration": duration, "interval": interval}
    start, end = form.get("start_time", "").strip(), form.get("expiration_time", "").strip()
    if start or end:
        body["validity_hours"] = {"daily": [{"start_time": start, "expiration_time": end}]}
    metadata = metadata_of(form.get("metadata", ""))
    if metadata is not None:
        body["metadata"] = metadata
    if form.get("delivery_channel", "").strip():
        body["delivery_channel"] = form["delivery_channel"].strip()
    if form.get("locale", "").strip():
        body["locale"] = form["locale"].strip()
    return body


def more_values(campaign: Any) -> dict[str, str]:
    """A campaign's extra fields as the form shows them."""
    values: dict[str, str] = {}
    frame = campaign.validity_timeframe or {}
    values["duration"], values["interval"] = frame.get("duration", ""), frame.get("interval", "")
    daily = (campaign.validity_hours or {}).get("daily") or [{}]
    values["start_time"] = daily[0].get("start_time", "")
    values["expiration_time"] = daily[0].get("expiration_time", "")
    metadata = getattr(campaign, "metadata_", None)
    values["metadata"] = json.dumps(metadata, indent=2, ensure_ascii=False) if metadata else ""
    values["delivery_channel"] = campaign.delivery_channel or ""
    values["locale"] = campaign.locale or ""
    discount = campaign.discount or {}
    values["discount_type"] = discount.get("type", "")
    for name in DISCOUNT_MONEY:
        found = discount.get(name)
        if found is None:
            values[name] = ""
        else:
            values[name] = str(to_major(found, campaign.currency) if campaign.currency else found)
    for name in ("percent_off", "unit_off", "unit_type"):
        found = discount.get(name)
        values[name] = "" if found is None else str(found)
    return values


def message_preview(form: dict[str, str], base_url: str) -> dict[str, Any]:
    """The SMS and e-mail a holder would get from the form as it stands (rendered by the
    delivery feature's compose for a sample voucher), or why a template cannot render."""
    currency = form.get("currency", "").strip().upper() or None
    try:
        value = _money(form["default_value"], currency, "default_value")
    except (KeyError, DomainError):
        value = None
    templates: dict[str, Any] = {}
    if form.get("sms_text", "").strip():
        templates["sms"] = {"text": form["sms_text"]}
    if form.get("email_subject", "").strip() and form.get("email_text", "").strip():
        templates["email"] = {"subject": form["email_subject"], "text": form["email_text"]}
    campaign = Campaign(
        name=form.get("name", "").strip() or "Your campaign",
        type=form.get("type", "GIFT"),
        currency=currency,
        locale=form.get("locale", "").strip() or "en",
        timezone=form.get("timezone", "").strip() or "UTC",
        help_text=form.get("help_text") or None,
        store_finder_url=form.get("store_finder_url") or None,
    )
    try:
        code = spec_from_config(_code_config(form)).generate(1)[0]
    except (CodeConfigError, ValueError):
        code = spec_from_config(None).generate(1)[0]
    sample = Voucher(code=code, type=campaign.type, currency=currency, amount=value, balance=value)
    page = f"{base_url}/v/SAMPLE"
    values = variables(sample, campaign, customer_name="Ada Lovelace", page_url=page)
    shown: dict[str, Any] = {}
    for channel in ("sms", "email"):
        try:
            shown[channel] = compose(channel, templates, values, locale=campaign.locale or "en")
        except MessageError as exc:
            shown[channel] = str(exc)
    return shown


def _code_config(form: dict[str, str]) -> dict[str, Any] | None:
    config: dict[str, Any] = {}
    for name in ("pattern", "prefix", "postfix", "charset"):
        if form.get(name, "").strip():
            config[name] = form[name].strip()
    if form.get("length", "").strip().isdigit():
        config["length"] = int(form["length"])
    return config or None
