"""The worker's side of operations: claim what is due, run it step by step, record the outcome.

* **Claim.** One due operation at a time, with a lease (``FOR UPDATE SKIP LOCKED`` on
  PostgreSQL, so workers never wait on one another; SQLite's writers are serialised anyway). An
  operation whose lease ran out while it still carried a lease token was abandoned by a dead
  worker: it is claimed again and that counts as a failed attempt.
* **Run.** The handler for the operation's kind (from the table the caller hands in, built by
  ``voucherd.composition`` from the features' tasks) runs one step per call, each step its own
  transaction that also renews the lease (steps.py). Between steps the runner checks the stop
  event and its time slice: when either is over it hands the operation back (lease released,
  progress kept), so one long export cannot starve the deliveries the same worker loop serves,
  and a worker shutting down leaves its operation to be resumed at once elsewhere.
* **Outcome.** A handler's DomainError means the operation cannot succeed as asked (say, its
  campaign is gone): Failed at once, with the reason. Anything else is retried with exponential
  backoff and Failed after ``MAX_ATTEMPTS``, with the last error.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import case, or_, select, update

from voucherd.db.engine import Database
from voucherd.errors import DomainError
from voucherd.operations.models import FAILED, PROCESSING, Operation
from voucherd.operations.steps import LeaseLost, Run

log = logging.getLogger("voucherd.operations")

# A handler runs one step of an operation and says whether the operation is now finished.
Handler = Callable[[Database, Run], bool]
# Operation kind -> its handler. The features own the handlers; the composition module (the
# top) collects them, so this platform module imports no feature.
Handlers = Mapping[str, Handler]

MAX_ATTEMPTS = 5
SLICE_SECONDS = 5.0  # of steps per call before handing back to the worker loop
_BACKOFF_FIRST = timedelta(seconds=10)
_BACKOFF_MOST = timedelta(minutes=15)
_ERROR_CHARS = 500


def run_due_operations(
    db: Database, worker_id: str, stop: threading.Event, handlers: Handlers
) -> int:
    """Claim due operations, run them with ``handlers``, record the outcomes; how many were
    handled."""
    handled = 0
    deadline = time.monotonic() + SLICE_SECONDS
    while not stop.is_set() and time.monotonic() < deadline:
        run = claim_next(db, worker_id)
        if run is None:
            break
        handled += 1
        _run(db, run, stop, deadline, handlers)
    return handled


def _due(now: Any) -> Any:
    return (
        (Operation.status == PROCESSING)
        & (Operation.run_after <= now)
        & or_(Operation.lease_expires_at.is_(None), Operation.lease_expires_at < now)
    )


def claim_next(db: Database, worker_id: str) -> Run | None:
    """Lease the next due operation to ``worker_id`` (in its own transaction), or None."""
    now = db.now()
    lease = timedelta(seconds=db.settings.operation_lease_seconds)
    with db.unit_of_work() as session:
        operation_id = session.scalar(
            select(Operation.id)
            .where(_due(now))
            .order_by(Operation.run_after, Operation.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if operation_id is None:
            return None
        abandoned = Operation.lease_token.is_not(None)
        token = secrets.token_hex(16)
        claimed = session.execute(
            update(Operation)
            .where(Operation.id == operation_id, _due(now))
            .values(
                attempts=Operation.attempts + case((abandoned, 1), else_=0),
                last_error=case(
                    (abandoned, "the worker running it stopped before finishing"),
                    else_=Operation.last_error,
                ),
                leased_by=worker_id,
                lease_token=token,
                lease_expires_at=now + lease,
                updated_at=now,
            )
            .returning(
                Operation.tenant_id,
                Operation.kind,
                Operation.actor,
                Operation.parameters,
                Operation.checkpoint,
                Operation.done,
                Operation.total,
                Operation.attempts,
            )
        ).first()
        session.commit()
    if claimed is None:
        return None
    tenant_id, kind, actor, parameters, checkpoint, done, total, attempts = claimed
    return Run(
        operation_id=operation_id,
        tenant_id=tenant_id,
        kind=kind,
        actor=actor,
        parameters=parameters,
        checkpoint=checkpoint,
        done=done,
        total=total,
        attempts=attempts,
        worker_id=worker_id,
        lease_token=token,
        lease=lease,
    )


def _run(
    db: Database, run: Run, stop: threading.Event, deadline: float, handlers: Handlers
) -> None:
    handler = handlers.get(run.kind)
    if handler is None:
        _fail(db, run, f"no handler for operations of kind {run.kind!r}")
        return
    if run.attempts >= MAX_ATTEMPTS:
        _fail(db, run, f"gave up after {run.attempts} attempts; the last: {_last_error(db, run)}")
        return
    log.info("operation %s (%s) claimed by %s", run.operation_id, run.kind, run.worker_id)
    try:
        while not handler(db, run):
            if stop.is_set() or time.monotonic() >= deadline:
                _release(db, run)
                return
    except LeaseLost:
        log.warning("operation %s: lease lost by %s", run.operation_id, run.worker_id)
        return
    except DomainError as exc:
        _fail(db, run, exc.detail)
        return
    except Exception as exc:
        log.exception("operation %s (%s) failed a step", run.operation_id, run.kind)
        _retry_or_fail(db, run, _describe(exc))
        return
    log.info("operation %s (%s) completed", run.operation_id, run.kind)


def _describe(exc: Exception) -> str:
    """An error for the operation's record. Only the first line: database errors put the
    offending values (a code, a customer's details) in their DETAIL lines below."""
    first_line = (str(exc).splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first_line}"[:_ERROR_CHARS]


def _fenced(db: Database, run: Run, values: dict[str, Any]) -> bool:
    with db.unit_of_work() as session:
        changed = session.execute(
            update(Operation).where(run.fence()).values(**values).returning(Operation.id)
        ).first()
        session.commit()
    return changed is not None


def _release(db: Database, run: Run) -> None:
    """Hand the operation back, progress kept, for any worker to resume now."""
    _fenced(
        db,
        run,
        {"leased_by": None, "lease_token": None, "lease_expires_at": None, "updated_at": db.now()},
    )


def _fail(db: Database, run: Run, error: str) -> None:
    now = db.now()
    log.warning("operation %s (%s) failed", run.operation_id, run.kind)
    _fenced(
        db,
        run,
        {
            "status": FAILED,
            "last_error": error[:_ERROR_CHARS],
            "leased_by": None,
            "lease_token": None,
            "lease_expires_at": None,
            "updated_at": now,
            "finished_at": now,
        },
    )


def _retry_or_fail(db: Database, run: Run, error: str) -> None:
    attempts = run.attempts + 1
    if attempts >= MAX_ATTEMPTS:
        _fail(db, run, f"gave up after {attempts} attempts; the last: {error}")
        return
    now = db.now()
    delay = min(_BACKOFF_FIRST * 2 ** (attempts - 1), _BACKOFF_MOST)
    _fenced(
        db,
        run,
        {
            "attempts": attempts,
            "last_error": error,
            "run_after": now + delay,
            "leased_by": None,
            "lease_token": None,
            "lease_expires_at": None,
            "updated_at": now,
        },
    )


def _last_error(db: Database, run: Run) -> str:
    with db.unit_of_work(write=False) as session:
        error = session.scalar(select(Operation.last_error).where(Operation.id == run.operation_id))
    return error or "unknown"
