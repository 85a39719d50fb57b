"""What an operation's handler uses inside its own step transactions.

A handler runs an operation as a series of steps. Each step is one unit of work that does a
bounded piece of the work and, in the same transaction, records how far it got (its
checkpoint), what it produced (a chunk of the result) and the renewed lease. So a worker that
dies mid-operation loses at most its current step: whoever claims the operation next resumes
from the last committed checkpoint, and the result holds exactly the committed steps' output.

Every write here is fenced by the run's lease token: once another worker has claimed the
operation (the lease ran out), the stale worker's step raises :class:`LeaseLost` and its
transaction rolls back instead of writing over its successor's work.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from voucherd.operations.models import COMPLETED, PROCESSING, Operation, OperationResultChunk

# An export's CSV shrinks to about a sixth at level 1 (16% of its size; level 6: 15.5%, for
# no less CPU): the result of a million-voucher export is stored in about 25 MB, not 156.
_COMPRESSION_LEVEL = 1


class LeaseLost(Exception):
    """Another worker holds the operation now; this run must stop without writing."""


@dataclass
class Run:
    """One worker's claim on one operation, and the progress it has recorded so far."""

    operation_id: str
    tenant_id: str
    kind: str
    actor: str | None
    parameters: dict[str, Any]
    checkpoint: dict[str, Any] | None
    done: int
    total: int | None
    attempts: int
    worker_id: str
    lease_token: str
    lease: timedelta

    def fence(self) -> Any:
        """The condition every write of this run carries."""
        return (
            (Operation.id == self.operation_id)
            & (Operation.lease_token == self.lease_token)
            & (Operation.status == PROCESSING)
        )


def _fenced_update(session: Session, run: Run, values: dict[str, Any]) -> None:
    changed = session.execute(
        update(Operation).where(run.fence()).values(**values).returning(Operation.id)
    ).first()
    if changed is None:
        raise LeaseLost(run.operation_id)


def append_output(session: Session, run: Run, data: bytes) -> None:
    """Add the next piece of the result (compressed); it counts once the step commits."""
    if not data:
        return
    seq = session.scalar(
        select(func.coalesce(func.max(OperationResultChunk.seq) + 1, 0)).where(
            OperationResultChunk.operation_id == run.operation_id
        )
    )
    session.execute(
        insert(OperationResultChunk).values(
            operation_id=run.operation_id,
            seq=seq,
            tenant_id=run.tenant_id,
            size=len(data),
            data=zlib.compress(data, _COMPRESSION_LEVEL),
        )
    )


def advance(
    session: Session,
    run: Run,
    *,
    now: datetime,
    done: int,
    checkpoint: dict[str, Any],
    total: int | None = None,
) -> None:
    """Record a finished step: progress, where to resume, and a renewed lease."""
    values: dict[str, Any] = {
        "done": done,
        "checkpoint": checkpoint,
        "lease_expires_at": now + run.lease,
        "updated_at": now,
    }
    if total is not None:
        values["total"] = total
    _fenced_update(session, run, values)
    run.done, run.checkpoint = done, checkpoint
    if total is not None:
        run.total = total


def complete(
    session: Session,
    run: Run,
    *,
    now: datetime,
    done: int,
    result: dict[str, Any],
    total: int | None = None,
    entity_type: str | None = None,
    entity_id: str | None = None,
) -> None:
    """Finish the operation in the same transaction as its last step.

    When the operation produced output, the result also says how big it is, from the chunks
    themselves, so it can never disagree with what the download serves.
    """
    chunks, size = session.execute(
        select(func.count(), func.coalesce(func.sum(OperationResultChunk.size), 0)).where(
            OperationResultChunk.operation_id == run.operation_id
        )
    ).one()
    if chunks:
        result = {**result, "size": int(size), "chunks": int(chunks)}
    values: dict[str, Any] = {
        "status": COMPLETED,
        "done": done,
        "total": done if total is None else total,
        "result": result,
        "checkpoint": None,
        "leased_by": None,
        "lease_token": None,
        "lease_expires_at": None,
        "updated_at": now,
        "finished_at": now,
    }
    if entity_type is not None:  # else it keeps the entity it was started for, if any
        values.update(entity_type=entity_type, entity_id=entity_id)
    _fenced_update(session, run, values)


def add_progress(session: Session, run: Run, *, now: datetime, count: int) -> None:
    """Count ``count`` more done, and renew the lease, for a step that runs beside others of
    the same operation (an order's batches minted in parallel): an increment, not a total, so
    concurrent steps add up instead of overwriting each other. Issue it as the step's last
    statement: it locks the operation's row until the step commits."""
    _fenced_update(
        session,
        run,
        {
            "done": Operation.done + count,
            "lease_expires_at": now + run.lease,
            "updated_at": now,
        },
    )
