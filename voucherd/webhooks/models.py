"""Event webhooks: endpoints, what they subscribe to, the message outbox and its attempts.

Messages are a sibling of the delivery outbox, not rows of it: a delivery belongs to a voucher
and a channel (``delivery.voucher_id`` is required, ``channel`` is checked), while an event may
belong to an operation or an order, goes to one endpoint rather than a recipient, and must be
sent in order per voucher, which deliveries need not be. The columns that make an outbox (state,
``attempt`` as the fencing token, ``failures``, ``due_at`` as the lease, ``lease_owner``) are the
same, and so is the code that computes backoff and reads an HTTP answer.

Message rows are written by the database itself, by triggers on ``voucher_event``, ``delivery``
and ``operation`` (migration 0012): every change those tables record gets its messages in the
same statement, so the hot paths gain no round trip and no code path can forget an event.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from voucherd.db.base import Base, UTCDateTime
from voucherd.vouchers.models import AutoId

EVENT_TYPES = (
    "voucher.issued",
    "voucher.published",
    "voucher.redeemed",
    "redemption.rolled_back",
    "voucher.disabled",
    "voucher.enabled",
    "voucher.cancelled",
    "voucher.balance_adjusted",
    "delivery.failed",
    "order.completed",
    "operation.failed",
)
ENDPOINT_STATES = ("ENABLED", "DISABLED")
MESSAGE_STATES = ("PENDING", "SENDING", "DELIVERED", "FAILED")
_DUE = "state IN ('PENDING', 'SENDING')"


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoint"
    __table_args__ = (
        CheckConstraint("state IN ('ENABLED', 'DISABLED')", name="state"),
        Index("ix_webhook_endpoint_tenant_id_id", "tenant_id", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(String(500))
    # Kept as given: the worker signs with it. Shown once, when the endpoint is created.
    secret: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16))
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    # Since when every attempt has failed; cleared by a success. A day of it disables.
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebhookSubscription(Base):
    """One event type an endpoint wants. The triggers probe ``(tenant_id, event_type)``: for a
    tenant without endpoints that is one look into an index that has nothing for it."""

    __tablename__ = "webhook_subscription"
    __table_args__ = (
        Index("ix_webhook_subscription_tenant_id_event_type", "tenant_id", "event_type"),
    )

    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoint.id"), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))


class WebhookMessage(Base):
    """One event for one endpoint. ``id`` orders messages as their events happened; the worker
    sends a message only when no earlier one with the same ``ordering_key`` (the voucher) is
    still unfinished for that endpoint, so a receiver sees a voucher's events in order.

    The object is rendered when sending, from the row the event points at (``subject_id``), with
    what changes over a voucher's life (state, balance, redeemed quantity, amount) taken from
    the snapshot the trigger wrote, so the payload shows the voucher as it was at the event.
    Deliveries, orders and operations are rendered as they are: their events fire on a final
    state, which does not change afterwards.
    """

    __tablename__ = "webhook_message"
    __table_args__ = (
        CheckConstraint("state IN ('PENDING', 'SENDING', 'DELIVERED', 'FAILED')", name="state"),
        CheckConstraint("attempt >= 0 AND failures >= 0", name="counts_not_negative"),
        UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_message_endpoint_event"),
        Index("ix_webhook_message_endpoint_id_id", "endpoint_id", "id"),
        Index(
            "ix_webhook_message_due",
            "due_at",
            postgresql_where=text(_DUE),
            sqlite_where=text(_DUE),
        ),
        # The claim's "nothing earlier for this voucher is unfinished" probe.
        Index(
            "ix_webhook_message_unfinished",
            "endpoint_id",
            "ordering_key",
            "id",
            postgresql_where=text(_DUE),
            sqlite_where=text(_DUE),
        ),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoint.id"))
    # The same for every endpoint and every retry: the webhook-id a receiver deduplicates by.
    event_id: Mapped[str] = mapped_column(String(80))
    event_type: Mapped[str] = mapped_column(String(40))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    subject_id: Mapped[str] = mapped_column(String(64))
    ordering_key: Mapped[str] = mapped_column(String(64))
    # The voucher_event row of a voucher event: its reason and data (redemption, amount).
    source_id: Mapped[int | None] = mapped_column(BigInteger)
    voucher_state: Mapped[str | None] = mapped_column(String(16))
    voucher_balance: Mapped[int | None] = mapped_column(BigInteger)
    voucher_redeemed_quantity: Mapped[int | None] = mapped_column(Integer)
    voucher_amount: Mapped[int | None] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebhookAttempt(Base):
    """One try at sending a message: when, by which worker, what came back."""

    __tablename__ = "webhook_attempt"
    __table_args__ = (Index("ix_webhook_attempt_message_id_id", "message_id", "id"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))
    message_id: Mapped[int] = mapped_column(ForeignKey("webhook_message.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))  # DELIVERED, RETRY, FAILED, REPLAY
    detail: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
