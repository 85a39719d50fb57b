from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from voucherd.db.base import Base, UTCDateTime


class IdempotencyRecord(Base):
    """An ``Idempotency-Key`` and the effect it produced.

    The row is inserted in the same transaction as the effect, so a key exists exactly when its
    effect does. The response body is added right after; if the process dies in between, a
    retry re-renders the response from ``resource_type``/``resource_id``.
    """

    __tablename__ = "idempotency_record"
    __table_args__ = (Index("ix_idempotency_record_expires_at", "expires_at"),)

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str | None] = mapped_column(String(32))
    resource_id: Mapped[str | None] = mapped_column(String(32))
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
