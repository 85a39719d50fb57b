"""Vouchers, issued one at a time through ``issue_voucher``."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from tests.factories.tenants import Tenant
from voucherd.campaigns.models import Campaign
from voucherd.db.engine import Database
from voucherd.vouchers.issue import issue_voucher
from voucherd.vouchers.schemas import IssueVoucher, VoucherRecord


def issue(
    db: Database,
    tenant: Tenant,
    campaign: Campaign | str,
    *,
    customer_ref: str | None = None,
    value: int | None = None,
    major_value: Decimal | str | None = None,
    code: str | None = None,
    holder: dict[str, str] | None = None,
    delivery: dict[str, Any] | None = None,
    recipient: str | None = None,
    start_date: datetime | str | None = None,
    expiration_date: datetime | str | None = None,
    category: str | None = None,
    additional_info: str | None = None,
    metadata: dict[str, Any] | None = None,
    redemption_quantity: int | None = None,
    code_config: dict[str, Any] | None = None,
) -> VoucherRecord:
    """One voucher of ``campaign`` (the object, or its id or name); the campaign's defaults for
    everything not named."""
    named = {
        "customer_ref": customer_ref,
        "value": value,
        "major_value": major_value,
        "code": code,
        "holder": holder,
        "delivery": delivery,
        "recipient": recipient,
        "start_date": start_date,
        "expiration_date": expiration_date,
        "category": category,
        "additional_info": additional_info,
        "metadata": metadata,
        "redemption_quantity": redemption_quantity,
        "code_config": code_config,
    }
    ref = campaign if isinstance(campaign, str) else campaign.id
    body = {"campaign": ref, **{field: v for field, v in named.items() if v is not None}}
    return issue_voucher(db, tenant.caller, IssueVoucher.model_validate(body))
