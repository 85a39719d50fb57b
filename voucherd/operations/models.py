"""Long-running operations and the results they leave behind.

An operation is a row that any API process can answer for (status, progress, result) while a
worker, possibly on another machine, runs it. Its result lives in the database as compressed
chunks, not on the worker's disk, so whichever API process is asked can serve the download.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from voucherd.db.base import Base, JSONType, UTCDateTime

# Vista's Operation Result Token status words, kept verbatim so its dialect shows them unchanged.
PROCESSING, COMPLETED, FAILED = "Processing", "Completed", "Failed"
OPERATION_STATUSES = (PROCESSING, COMPLETED, FAILED)


class Operation(Base):
    __tablename__ = "operation"
    __table_args__ = (
        CheckConstraint("status IN ('Processing', 'Completed', 'Failed')", name="status"),
        CheckConstraint("done >= 0", name="done_not_negative"),
        Index("ix_operation_tenant_id_id", "tenant_id", "id"),
        # What a worker's claim scans: due, unfinished operations.
        Index("ix_operation_status_run_after", "status", "run_after"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))
    # Vista's opaque Operation Result Token; the id works everywhere a token does.
    token: Mapped[str] = mapped_column(String(40), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str | None] = mapped_column(String(64))  # the key id that started it
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONType)
    done: Mapped[int] = mapped_column(BigInteger, default=0)
    total: Mapped[int | None] = mapped_column(BigInteger)
    # Where a resumed run carries on: each step commits its work and its checkpoint together.
    checkpoint: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # What the operation produced, in Vista's words (entityType "VoucherClientOrder", entityId).
    entity_type: Mapped[str | None] = mapped_column(String(40))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # failed or abandoned runs
    run_after: Mapped[datetime] = mapped_column(UTCDateTime())
    # The lease: who runs it now and until when. ``lease_token`` fences every write of a run,
    # so a worker that lost its lease (paused past it, then woke) cannot write over its successor.
    leased_by: Mapped[str | None] = mapped_column(String(64))
    lease_token: Mapped[str | None] = mapped_column(String(32))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OperationResultChunk(Base):
    """One zlib-compressed piece of an operation's result, in order of ``seq``."""

    __tablename__ = "operation_result_chunk"

    operation_id: Mapped[str] = mapped_column(ForeignKey("operation.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))
    size: Mapped[int] = mapped_column(Integer)  # bytes once decompressed
    data: Mapped[bytes] = mapped_column(LargeBinary)
