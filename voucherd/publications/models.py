"""Publications: which customer got which codes, through which channel.

A voucher's ``published_count`` (on ``voucher``) is the number of publications it is in; the pool
of a campaign is its ACTIVE, unexpired vouchers whose count is still 0. Claiming from the pool is
one conditional UPDATE on that count (see service.claim_pool), so no code is ever claimed twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from voucherd.db.base import Base, JSONType, UTCDateTime


class Publication(Base):
    __tablename__ = "publication"
    __table_args__ = (
        # The issuer's own id of a publication: a retry with it returns the same publication.
        UniqueConstraint("tenant_id", "source_id"),
        Index("ix_publication_tenant_id_id", "tenant_id", "id"),
        Index("ix_publication_campaign_id_id", "campaign_id", "id"),
        Index("ix_publication_customer_id_id", "customer_id", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))
    campaign_id: Mapped[str | None] = mapped_column(ForeignKey("campaign.id"))
    # None for publications to nobody in particular (a CSV export, a printed batch).
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customer.id"))
    channel: Mapped[str] = mapped_column(String(100))
    source_id: Mapped[str | None] = mapped_column(String(200))
    # What the request asked for, so a replay of its source_id with another body is refused.
    request_hash: Mapped[str | None] = mapped_column(String(64))
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONType)
    actor: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PublicationVoucher(Base):
    """One voucher of one publication."""

    __tablename__ = "publication_voucher"
    __table_args__ = (Index("ix_publication_voucher_voucher_id", "voucher_id"),)

    publication_id: Mapped[str] = mapped_column(ForeignKey("publication.id"), primary_key=True)
    voucher_id: Mapped[str] = mapped_column(ForeignKey("voucher.id"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))


class CampaignHolder(Base):
    """How many vouchers of a campaign one customer was given.

    Upserted by every publication to a customer; its row lock is what makes ``join_once`` (at
    most one voucher of a campaign per customer) hold under concurrent requests.
    """

    __tablename__ = "campaign_holder"

    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaign.id"), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customer.id"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))
    voucher_count: Mapped[int] = mapped_column(Integer)
    first_publication_id: Mapped[str] = mapped_column(String(32))
