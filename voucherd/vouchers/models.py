from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from voucherd.db.base import Base, JSONType, UTCDateTime

# EXPIRED is never stored: it is derived from expiration_date whenever a voucher is read.
STORED_STATES = ("ACTIVE", "DISABLED", "REDEEMED", "CANCELLED")

AutoId = BigInteger().with_variant(Integer(), "sqlite")


class Voucher(Base):
    __tablename__ = "voucher"
    __table_args__ = (
        CheckConstraint("state IN ('ACTIVE', 'DISABLED', 'REDEEMED', 'CANCELLED')", name="state"),
        CheckConstraint("balance IS NULL OR balance >= 0", name="balance_not_negative"),
        CheckConstraint("redeemed_quantity >= 0", name="redeemed_quantity_not_negative"),
        CheckConstraint(
            "redemption_quantity IS NULL OR redeemed_quantity <= redemption_quantity",
            name="redeemed_within_quantity",
        ),
        Index("ix_voucher_tenant_id_id", "tenant_id", "id"),
        Index("ix_voucher_campaign_id_id", "campaign_id", "id"),
        Index("ix_voucher_tenant_id_customer_ref", "tenant_id", "customer_ref"),
        # A campaign's pool (publications/service.claim_pool): only unpublished ACTIVE codes, so
        # a claim reads the head of this index and the index shrinks as the pool drains.
        Index(
            "ix_voucher_pool",
            "campaign_id",
            "id",
            postgresql_where=text("published_count = 0 AND state = 'ACTIVE'"),
            sqlite_where=text("published_count = 0 AND state = 'ACTIVE'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaign.id"))
    # Unique across the deployment: a merchant looks a code up without knowing its campaign.
    code: Mapped[str] = mapped_column(String(100), unique=True)
    public_token: Mapped[str] = mapped_column(String(32), unique=True)
    type: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str | None] = mapped_column(String(3))
    amount: Mapped[int | None] = mapped_column(BigInteger)  # value or points at issue
    balance: Mapped[int | None] = mapped_column(BigInteger)  # cached sum of the ledger
    redemption_quantity: Mapped[int | None] = mapped_column(Integer)
    redeemed_quantity: Mapped[int] = mapped_column(Integer, default=0)
    start_date: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expiration_date: Mapped[datetime | None] = mapped_column(UTCDateTime())
    customer_ref: Mapped[str | None] = mapped_column(String(200))
    # Shown on the voucher page for an ID check at the till (i-movo RequestVoucherWithId).
    holder_name: Mapped[str | None] = mapped_column(String(200))
    holder_address: Mapped[str | None] = mapped_column(String(500))
    holder_postcode: Mapped[str | None] = mapped_column(String(20))
    category: Mapped[str | None] = mapped_column(String(100))
    additional_info: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Publications (see voucherd.publications): how many this voucher is in, and the customer it
    # was published to. Server defaults keep the bulk COPY mint path unaware of them.
    published_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    holder_id: Mapped[str | None] = mapped_column(ForeignKey("customer.id"))


class VoucherEvent(Base):
    """Every state change: who (key id), when, what, why. Bulk mints write one event per batch
    with the campaign and the count, rather than one per voucher."""

    __tablename__ = "voucher_event"
    __table_args__ = (Index("ix_voucher_event_voucher_id_id", "voucher_id", "id"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))
    voucher_id: Mapped[str | None] = mapped_column(ForeignKey("voucher.id"))
    campaign_id: Mapped[str | None] = mapped_column(ForeignKey("campaign.id"))
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LedgerEntry(Base):
    """One change of a balance. ``voucher.balance`` is the cached sum of these rows."""

    __tablename__ = "ledger_entry"
    __table_args__ = (
        CheckConstraint("kind IN ('ISSUE', 'REDEMPTION', 'ROLLBACK', 'ADJUSTMENT')", name="kind"),
        Index("ix_ledger_entry_voucher_id", "voucher_id"),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))
    voucher_id: Mapped[str] = mapped_column(ForeignKey("voucher.id"))
    delta: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    redemption_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
