"""Campaigns, made through ``create_campaign`` from the same body the API would parse."""

from __future__ import annotations

import secrets
from datetime import datetime
from enum import Enum
from typing import Any

from tests.factories.tenants import Tenant
from voucherd.campaigns.models import Campaign
from voucherd.campaigns.schemas import CampaignCreate
from voucherd.db.engine import Database
from voucherd.vouchers.mint import create_campaign


class ByType(Enum):
    """A field the factory fills from the campaign's type unless the test names it.

    A sentinel rather than ``None``, because ``None`` is a value a test may mean: a GIFT campaign
    with no default value at all."""

    DEFAULT = "by type"


BY_TYPE = ByType.DEFAULT


def make_campaign(
    db: Database,
    tenant: Tenant,
    *,
    name: str | None = None,
    type: str = "GIFT",
    currency: str | None | ByType = BY_TYPE,
    default_value: int | None | ByType = BY_TYPE,
    discount: dict[str, Any] | None | ByType = BY_TYPE,
    mode: str | None = None,
    description: str | None = None,
    active: bool | None = None,
    max_value: int | None = None,
    start_date: datetime | str | None = None,
    expiration_date: datetime | str | None = None,
    lifetime_days: int | None = None,
    validity_timeframe: dict[str, str] | None = None,
    validity_day_of_week: list[int] | None = None,
    validity_hours: dict[str, Any] | None = None,
    timezone: str | None = None,
    redemption_quantity: int | None = None,
    per_customer_limit: int | None = None,
    budget: int | None = None,
    category: str | None = None,
    metadata: dict[str, Any] | None = None,
    help_text: str | None = None,
    store_finder_url: str | None = None,
    locale: str | None = None,
    message_templates: dict[str, Any] | None = None,
    delivery_channel: str | None = None,
    code_config: dict[str, Any] | None = None,
    vouchers_count: int | None = None,
) -> Campaign:
    """A campaign of ``type``: GIFT and CASH worth 5000 EUR, DISCOUNT 10 % off, unless named."""
    body: dict[str, Any] = {"name": name or f"campaign-{secrets.token_hex(4)}", "type": type}
    if type in ("GIFT", "CASH"):
        body["currency"] = "EUR"
        body["default_value"] = 5000
    if type == "DISCOUNT":
        body["discount"] = {"type": "PERCENT", "percent_off": 10}
    by_type = {"currency": currency, "default_value": default_value, "discount": discount}
    body.update({field: value for field, value in by_type.items() if value is not BY_TYPE})
    named = {
        "mode": mode,
        "description": description,
        "active": active,
        "max_value": max_value,
        "start_date": start_date,
        "expiration_date": expiration_date,
        "lifetime_days": lifetime_days,
        "validity_timeframe": validity_timeframe,
        "validity_day_of_week": validity_day_of_week,
        "validity_hours": validity_hours,
        "timezone": timezone,
        "redemption_quantity": redemption_quantity,
        "per_customer_limit": per_customer_limit,
        "budget": budget,
        "category": category,
        "metadata": metadata,
        "help_text": help_text,
        "store_finder_url": store_finder_url,
        "locale": locale,
        "message_templates": message_templates,
        "delivery_channel": delivery_channel,
        "code_config": code_config,
        "vouchers_count": vouchers_count,
    }
    body.update({field: value for field, value in named.items() if value is not None})
    return create_campaign(db, tenant.caller, CampaignCreate.model_validate(body))
