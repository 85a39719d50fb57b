"""Customers: the holders of vouchers, found by the issuer's own reference (``source_id``).

``source_id`` is the same concept as a voucher's ``customer_ref`` (Yoyo ``userRef``, i-movo
``customerReference``, Vista ``externalUserId``): the issuer's key for its customer, unique per
tenant. Erasing a customer wipes every personal field (``source_id`` too, because issuers often
use a phone number or an email as their reference) and keeps the row, so publications and
vouchers that point at it keep their history.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from voucherd.db.base import Base, JSONType, UTCDateTime


class Customer(Base):
    __tablename__ = "customer"
    __table_args__ = (
        UniqueConstraint("tenant_id", "source_id"),
        Index("ix_customer_tenant_id_id", "tenant_id", "id"),
        Index("ix_customer_tenant_id_email", "tenant_id", "email"),
        Index("ix_customer_tenant_id_phone", "tenant_id", "phone"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))
    source_id: Mapped[str | None] = mapped_column(String(200))
    name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(32))  # E.164
    # Printed on ID-checked vouchers (i-movo RequestVoucherWithId).
    address: Mapped[str | None] = mapped_column(String(500))
    postcode: Mapped[str | None] = mapped_column(String(20))
    city: Mapped[str | None] = mapped_column(String(100))
    region: Mapped[str | None] = mapped_column(String(100))  # state, county, province
    country: Mapped[str | None] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    birthdate: Mapped[date | None] = mapped_column(Date)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
