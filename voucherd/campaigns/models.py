from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from voucherd.db.base import Base, JSONType, UTCDateTime

VOUCHER_TYPES = ("GIFT", "CASH", "DISCOUNT", "LOYALTY")
CAMPAIGN_MODES = ("STATIC", "AUTO_UPDATE")


class Campaign(Base):
    __tablename__ = "campaign"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        CheckConstraint("type IN ('GIFT', 'CASH', 'DISCOUNT', 'LOYALTY')", name="type"),
        CheckConstraint("mode IN ('STATIC', 'AUTO_UPDATE')", name="mode"),
        CheckConstraint("issued_value >= 0", name="issued_value_not_negative"),
        CheckConstraint("budget IS NULL OR issued_value <= budget", name="within_budget"),
        CheckConstraint("delivery_channel IN ('phone', 'email')", name="delivery_channel"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean)
    currency: Mapped[str | None] = mapped_column(String(3))
    default_value: Mapped[int | None] = mapped_column(BigInteger)
    max_value: Mapped[int | None] = mapped_column(BigInteger)
    discount: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    code_config: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Validity. Start and expiry are copied onto each voucher when it is issued; the recurring
    # rules (timeframe, days, hours) are read from the campaign whenever a voucher is checked.
    start_date: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expiration_date: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lifetime_days: Mapped[int | None] = mapped_column(Integer)
    validity_timeframe: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    validity_day_of_week: Mapped[list[int] | None] = mapped_column(JSONType)
    validity_hours: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    timezone: Mapped[str] = mapped_column(String(64))
    # Limits.
    redemption_quantity: Mapped[int | None] = mapped_column(Integer)
    per_customer_limit: Mapped[int | None] = mapped_column(Integer)
    budget: Mapped[int | None] = mapped_column(BigInteger)
    # Kept only while a budget is set (recomputed when one is set), so that campaigns without
    # a budget do not serialise every issue on this row.
    issued_value: Mapped[int] = mapped_column(BigInteger, default=0)
    category: Mapped[str | None] = mapped_column(String(100))
    # What the holder sees: the voucher page's help and store finder, the locale money and
    # dates are formatted in, and one message template per delivery channel (see delivery).
    help_text: Mapped[str | None] = mapped_column(Text)
    store_finder_url: Mapped[str | None] = mapped_column(String(500))
    locale: Mapped[str] = mapped_column(String(16), default="en", server_default="en")
    message_templates: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Deliver every voucher issued singly by this channel, to the recipient or else its
    # customer_ref (i-movo: "delivered automatically if your campaign is set up to do so").
    delivery_channel: Mapped[str | None] = mapped_column(String(16))
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CampaignCustomer(Base):
    """How many vouchers one customer reference got from one campaign (per-customer limit)."""

    __tablename__ = "campaign_customer"

    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaign.id"), primary_key=True)
    customer_ref: Mapped[str] = mapped_column(String(200), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))
    issued_count: Mapped[int] = mapped_column(Integer)
