"""Voucher request bodies for the native API, and how a voucher is shown."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from voucherd.campaigns.models import Campaign
from voucherd.campaigns.schemas import CodeConfig
from voucherd.delivery.schemas import DeliveryRequest, RequestedDelivery
from voucherd.fields import (
    CampaignRef,
    CustomerRef,
    MajorUnits,
    Metadata,
    PositiveMinorUnits,
    Quantity,
    RequestModel,
    SignedMinorUnits,
    Timestamp,
    VoucherCode,
)
from voucherd.pages.urls import barcode_url, page_url, qr_url
from voucherd.vouchers.models import LedgerEntry, Voucher, VoucherEvent
from voucherd.vouchers.validity import effective_state


class Holder(RequestModel):
    """Printed on the voucher page so a cashier can check the holder's ID."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    address: str | None = Field(default=None, min_length=1, max_length=500)
    postcode: str | None = Field(default=None, min_length=1, max_length=20)


class VoucherOverrides(RequestModel):
    """What a single voucher may set differently from its campaign."""

    start_date: Timestamp | None = None
    expiration_date: Timestamp | None = None
    category: str | None = Field(default=None, max_length=100)
    additional_info: str | None = Field(default=None, max_length=2000)
    metadata: Metadata | None = None
    redemption_quantity: Quantity | None = Field(
        default=None,
        description="How many times this voucher may be redeemed (campaign's if absent).",
    )
    code_config: CodeConfig | None = Field(
        default=None, description="How to draw this request's codes (the campaign's if absent)."
    )


class IssueVoucher(VoucherOverrides):
    campaign: CampaignRef
    customer_ref: CustomerRef | None = None
    value: PositiveMinorUnits | None = Field(
        default=None,
        description="Minor units (GIFT, CASH) or points (LOYALTY); the campaign's default if absent.",
    )
    major_value: MajorUnits | None = Field(
        default=None,
        description=(
            "The value in major units of the campaign's currency (20.00), instead of value: for "
            "faces that spell money so, since only the campaign knows its currency."
        ),
    )
    code: VoucherCode | None = Field(default=None, description="An explicit code; drawn if absent.")
    holder: Holder | None = None
    delivery: DeliveryRequest | None = Field(
        default=None,
        description="Deliver the voucher: written in the same transaction, sent by a worker.",
    )
    recipient: str | None = Field(
        default=None,
        min_length=3,
        max_length=254,
        description=(
            "Who a campaign that delivers every voucher (delivery_channel) sends this one to; "
            "customer_ref when absent. Ignored by campaigns that do not deliver on their own."
        ),
    )


class MintVouchers(VoucherOverrides):
    count: Quantity
    value: PositiveMinorUnits | None = None


class ChangeState(RequestModel):
    reason: str | None = Field(default=None, max_length=500)


class AdjustBalance(RequestModel):
    amount: SignedMinorUnits = Field(
        description="Minor units or points to add (positive) or remove (negative)."
    )
    reason: str | None = Field(default=None, max_length=500)


VoucherStateName = Literal["ACTIVE", "DISABLED", "REDEEMED", "CANCELLED", "EXPIRED"]


@dataclass(frozen=True)
class VoucherFilters:
    campaign: str | None = None
    state: VoucherStateName | None = None
    customer_ref: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


@dataclass(frozen=True)
class VoucherRecord:
    """A voucher with the campaign facts every face shows beside it."""

    voucher: Voucher
    campaign_name: str
    # The voucher's latest publications, shaped as ``publish.entries`` (publications.pool.
    # publication_entries); None where they were not loaded, as in lists.
    publications: list[dict[str, Any]] | None = None
    # The delivery asked for with the voucher, when it was issued with one.
    delivery: RequestedDelivery | None = None
    # The campaign itself, where the use case had it at hand (issue): faces that answer with
    # the holder's message (i-movo) render it without reading the campaign again.
    campaign: Campaign | None = None


@dataclass(frozen=True)
class MintResult:
    campaign_id: str
    count: int
    first: VoucherRecord | None  # set when count == 1, the one voucher made


def present_voucher(record: VoucherRecord, *, now: datetime, base_url: str) -> dict[str, Any]:
    v = record.voucher
    holder = None
    if v.holder_name or v.holder_address or v.holder_postcode:
        holder = {"name": v.holder_name, "address": v.holder_address, "postcode": v.holder_postcode}
    return {
        "id": v.id,
        "object": "voucher",
        "code": v.code,
        "campaign_id": v.campaign_id,
        "campaign": record.campaign_name,
        "type": v.type,
        "state": effective_state(v.state, v.expiration_date, now),
        "currency": v.currency,
        "value": v.amount,
        "balance": v.balance,
        "redemption": {
            "quantity": v.redemption_quantity,
            "redeemed_quantity": v.redeemed_quantity,
        },
        "publish": _publish_summary(record),
        "holder_id": v.holder_id,
        "start_date": v.start_date,
        "expiration_date": v.expiration_date,
        "customer_ref": v.customer_ref,
        "holder": holder,
        "category": v.category,
        "additional_info": v.additional_info,
        "metadata": v.metadata_,
        "page_url": page_url(base_url, v.public_token),
        # Voucherify's image URLs of the code (voucherd.pages draws them).
        "assets": {
            "qr": {"url": qr_url(base_url, v.public_token)},
            "barcode": {"url": barcode_url(base_url, v.public_token)},
        },
        "created_at": v.created_at,
        "updated_at": v.updated_at,
    }


def _publish_summary(record: VoucherRecord) -> dict[str, Any]:
    """The seed voucher object's ``publish`` list: a count from the voucher's own column (no
    query per voucher in lists), the entries where they were loaded and there are some."""
    v = record.voucher
    count = v.published_count or 0
    summary: dict[str, Any] = {
        "object": "list",
        "count": count,
        "url": f"/api/v1/publications?voucher={v.id}",
    }
    if record.publications:  # none yet: the same shape as in lists and the issue answer
        summary.update(data_ref="entries", entries=record.publications, total=count)
    return summary


def present_event(event: VoucherEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "object": "event",
        "kind": event.kind,
        "actor": event.actor,
        "reason": event.reason,
        "data": event.data,
        "created_at": event.created_at,
    }


def present_ledger_entry(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "object": "ledger_entry",
        "kind": entry.kind,
        "delta": entry.delta,
        "redemption_id": entry.redemption_id,
        "created_at": entry.created_at,
    }
