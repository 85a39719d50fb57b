"""The delivery outbox: one row per message to send, and one event row per change of its state.

A delivery is written in the same transaction as the voucher (or publication, or resend) that
asks for it. Workers claim due rows with a lease: ``due_at`` is when a PENDING row should be tried
and, while a row is SENDING, when its lease runs out. ``attempt`` counts claims and is the fencing
token: an outcome is recorded only ``WHERE attempt = <the attempt that sent it>``, so a worker
that lost its lease cannot overwrite a newer attempt.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from voucherd.db.base import Base, UTCDateTime
from voucherd.vouchers.models import AutoId

CHANNELS = ("sms", "whatsapp", "email", "webhook", "none")
STATES = ("PENDING", "SENDING", "SENT", "DELIVERED", "FAILED")
# SENT is final for channels without receipts (email, none) and waits for a status callback on
# those with them (sms, whatsapp); DELIVERED and FAILED are final everywhere.
FINAL_STATES = ("SENT", "DELIVERED", "FAILED")
ORIGINS = ("issue", "publication", "request", "resend")
_DUE = "state IN ('PENDING', 'SENDING')"


class Delivery(Base):
    __tablename__ = "delivery"
    __table_args__ = (
        CheckConstraint(
            "channel IN ('sms', 'whatsapp', 'email', 'webhook', 'none')", name="channel"
        ),
        CheckConstraint(
            "state IN ('PENDING', 'SENDING', 'SENT', 'DELIVERED', 'FAILED')", name="state"
        ),
        CheckConstraint("origin IN ('issue', 'publication', 'request', 'resend')", name="origin"),
        CheckConstraint("attempt >= 0 AND failures >= 0", name="counts_not_negative"),
        Index("ix_delivery_tenant_id_id", "tenant_id", "id"),
        Index("ix_delivery_voucher_id_id", "voucher_id", "id"),
        Index("ix_delivery_tenant_id_state_id", "tenant_id", "state", "id"),
        # What workers poll: only unfinished rows, so the index stays as small as the backlog.
        Index(
            "ix_delivery_due",
            "due_at",
            postgresql_where=text(_DUE),
            sqlite_where=text(_DUE),
        ),
        Index("ix_delivery_provider_message_id", "provider_message_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))
    voucher_id: Mapped[str] = mapped_column(ForeignKey("voucher.id"))
    channel: Mapped[str] = mapped_column(String(16))
    # E.164 for sms and whatsapp, an address for email; none for webhook (the tenant's URL)
    # and none (nothing is sent).
    recipient: Mapped[str | None] = mapped_column(String(254))
    recipient_name: Mapped[str | None] = mapped_column(String(200))
    # The issuer's own text for this one message (Yoyo's smsMessage), sent instead of the
    # campaign's message: see delivery.messages for where the code goes.
    message: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    origin: Mapped[str] = mapped_column(String(16))
    resend_of: Mapped[str | None] = mapped_column(ForeignKey("delivery.id"))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DeliveryEvent(Base):
    """One change of a delivery's state, with the attempt it belongs to and why."""

    __tablename__ = "delivery_event"
    __table_args__ = (Index("ix_delivery_event_delivery_id_id", "delivery_id", "id"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))
    delivery_id: Mapped[str] = mapped_column(ForeignKey("delivery.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str | None] = mapped_column(String(100))
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DeliveryVoucher(Base):
    """The vouchers of a delivery that sends several in one message (a distribution gives one
    recipient all its codes at once); ``delivery.voucher_id`` is the first of them. A delivery
    of one voucher has no rows here."""

    __tablename__ = "delivery_voucher"

    delivery_id: Mapped[str] = mapped_column(ForeignKey("delivery.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    voucher_id: Mapped[str] = mapped_column(ForeignKey("voucher.id"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))
