from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from voucherd.db.base import Base, JSONType, UTCDateTime


class Redemption(Base):
    __tablename__ = "redemption"
    __table_args__ = (
        CheckConstraint("status IN ('SUCCEEDED', 'ROLLED_BACK')", name="status"),
        Index("ix_redemption_voucher_id_id", "voucher_id", "id"),
        Index("ix_redemption_tenant_id_id", "tenant_id", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))
    voucher_id: Mapped[str] = mapped_column(ForeignKey("voucher.id"))
    status: Mapped[str] = mapped_column(String(16))
    # Taken from the balance (GIFT, CASH, LOYALTY) or granted as discount (DISCOUNT).
    amount: Mapped[int | None] = mapped_column(BigInteger)
    order_amount: Mapped[int | None] = mapped_column(BigInteger)
    order_reference: Mapped[str | None] = mapped_column(String(200))
    merchant_ref: Mapped[str | None] = mapped_column(String(200))
    store_ref: Mapped[str | None] = mapped_column(String(200))
    customer_ref: Mapped[str | None] = mapped_column(String(200))
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    rollback_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    rolled_back_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    rollback_reason: Mapped[str | None] = mapped_column(Text)
