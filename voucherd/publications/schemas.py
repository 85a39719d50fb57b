"""Publication request bodies, and how a publication is shown (field names follow the
Voucherify publication object of seeds/002, which the Voucherify dialect translates)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic import Strict as StrictType

from voucherd.customers.schemas import CustomerCreate
from voucherd.delivery.schemas import RequestedChannel, RequestedDelivery
from voucherd.fields import CampaignRef, CustomerRef, Metadata, RequestModel, whole_number
from voucherd.publications.models import Publication
from voucherd.publications.pool import DEFAULT_CHANNEL
from voucherd.vouchers.schemas import VoucherRecord, present_voucher

# Codes one request may take from a pool, and codes a publication shows (an export's
# publication may hold a million; its ``count`` says how many there are).
MAX_PUBLISH_COUNT = 1000
SHOWN_CODES = MAX_PUBLISH_COUNT

PublishCount = Annotated[
    int, StrictType(), Field(ge=1, le=MAX_PUBLISH_COUNT), BeforeValidator(whole_number)
]


class PublicationDelivery(RequestModel):
    """Send the published codes to the customer, one message per code, written in the same
    transaction as the publication. Without a ``recipient`` the customer's own phone (channel
    ``phone``) or email (channel ``email``) is used, so a known customer needs only a channel."""

    channel: RequestedChannel
    recipient: str | None = Field(default=None, min_length=3, max_length=254)
    name: str | None = Field(default=None, min_length=1, max_length=200)


class PublishRequest(RequestModel):
    """Either ``voucher`` (a given code) or ``campaign`` (+ ``count``: codes from its pool)."""

    voucher: str | None = Field(
        default=None, min_length=1, max_length=100, description="A voucher's id or code."
    )
    campaign: CampaignRef | None = None
    count: PublishCount | None = Field(
        default=None, description="How many codes to take from the campaign's pool (default 1)."
    )
    customer: CustomerRef | CustomerCreate | None = Field(
        default=None,
        description="A customer's id or source_id, or a customer given inline (found by its "
        "source_id when it has one, created otherwise).",
    )
    channel: str = Field(default=DEFAULT_CHANNEL, min_length=1, max_length=100)
    source_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Your id of this publication: a retry with it returns the same publication.",
    )
    join_once: Annotated[bool, StrictType()] = Field(
        default=False, description="Refuse if the customer already has a voucher of the campaign."
    )
    metadata: Metadata | None = None
    delivery: PublicationDelivery | None = None


@dataclass(frozen=True)
class PublicationFilters:
    campaign: str | None = None
    voucher: str | None = None
    customer: str | None = None
    channel: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


@dataclass(frozen=True)
class PublicationRecord:
    publication: Publication
    campaign_name: str | None
    customer_source_id: str | None
    count: int
    codes: list[tuple[str, str]]  # (voucher id, code), at most SHOWN_CODES
    voucher: VoucherRecord | None = None  # the one voucher, when there is exactly one
    # Asked for by this request (shown in its answer only; GET /deliveries?voucher= lists all).
    deliveries: list[RequestedDelivery] = field(default_factory=list)


@dataclass(frozen=True)
class Published:
    record: PublicationRecord
    created: bool  # False: the source_id was seen before and this is that publication


def present_publication(
    record: PublicationRecord, *, now: datetime, base_url: str
) -> dict[str, Any]:
    p = record.publication
    shown: dict[str, Any] = {
        "id": p.id,
        "object": "publication",
        "created_at": p.created_at,
        "campaign_id": p.campaign_id,
        "campaign": record.campaign_name,
        "customer_id": p.customer_id,
        "customer": record.customer_source_id,
        "channel": p.channel,
        "source_id": p.source_id,
        "metadata": p.metadata_,
        "count": record.count,
        "vouchers": [code for _, code in record.codes],
        "vouchers_id": [voucher_id for voucher_id, _ in record.codes],
    }
    if record.voucher is not None:
        shown["voucher"] = present_voucher(record.voucher, now=now, base_url=base_url)
    if record.deliveries:
        shown["deliveries"] = [delivery.present() for delivery in record.deliveries]
    return shown
