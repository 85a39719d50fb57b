"""An import's file, kept in the database while the import runs.

The request that starts an import stores the file here, already split into records, one
zlib-compressed chunk per batch; the worker that runs the operation (any worker, on any machine)
reads the chunk of its next step. A chunk is exactly one step's batch, so a resumed operation
starts again at the first chunk it had not committed.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, LargeBinary
from sqlalchemy.orm import Mapped, mapped_column

from voucherd.db.base import Base


class ImportChunk(Base):
    __tablename__ = "import_chunk"

    operation_id: Mapped[str] = mapped_column(ForeignKey("operation.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))
    records: Mapped[int] = mapped_column(Integer)
    # JSON of [[line, {column: text}] or [line, null, problem], ...], compressed.
    data: Mapped[bytes] = mapped_column(LargeBinary)
