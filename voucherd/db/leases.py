"""Claiming due rows with a lease: the first step of every worker job that sends something (the
delivery outbox, webhook messages), written once.

A leased table has ``id``, ``state`` (``PENDING``/``SENDING``/... ``FAILED``), ``attempt``,
``failures``, ``due_at``, ``lease_owner``, ``last_error`` and ``updated_at``. Due rows are
PENDING rows whose time has come and SENDING rows whose lease ran out (their worker died
mid-send). In one transaction, the caller's:

1. the due rows are locked with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (on SQLite the write
   transaction's ``BEGIN IMMEDIATE`` already makes the claim exclusive), so concurrent workers
   take disjoint rows without waiting for each other;
2. a SENDING row that has already lost ``max_attempts - 1`` workers is given up (FAILED, with
   the reason): a message that kills its worker every time must not kill workers forever;
3. the others move to SENDING with ``attempt + 1`` (the fencing token the outcome is recorded
   under), the lease (``due_at``, ``lease_owner``), and one more failure when their previous
   lease ran out.

What each job adds (its own filter on what is due, its events, what it reads with the claim)
stays in the job; the state machine above lives here only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, Table, case, update
from sqlalchemy.orm import Session

UNFINISHED = ("PENDING", "SENDING")


@dataclass(frozen=True)
class Leased:
    """What one claim took: the rows now SENDING (the columns asked for), the rows given up
    (``id``, ``tenant_id``, ``attempt``), and each taken row's state before the claim."""

    claimed: list[Row[Any]]
    given_up: list[Row[Any]]
    previous: dict[Any, str]


def lease_due(
    session: Session,
    table: Table,
    due: Select[Any],
    *,
    now: datetime,
    lease_until: datetime,
    worker_id: str,
    limit: int,
    max_attempts: int,
    give_up_reason: str,
    returning: Sequence[ColumnElement[Any]],
    order_by: Sequence[ColumnElement[Any]] = (),
) -> Leased:
    """Claim up to ``limit`` due rows of ``table`` for ``worker_id`` until ``lease_until``.

    ``due`` is the job's ``select(table.c.id, table.c.state, table.c.failures)`` with its own
    joins and filters; this step adds what makes a row due, the order (``order_by``, by default
    ``due_at``), the limit and the lock (of ``table`` only). ``returning`` are the columns the
    job needs of each claimed row. A step of the caller's transaction: it never commits.
    """
    c = table.c
    rows = session.execute(
        due.where(c.state.in_(UNFINISHED), c.due_at <= now)
        .order_by(*(order_by or (c.due_at,)))
        .limit(limit)
        .with_for_update(skip_locked=True, of=table)
    ).all()
    if not rows:
        return Leased([], [], {})
    previous = {r.id: r.state for r in rows}
    hopeless = {r.id for r in rows if r.state == "SENDING" and r.failures + 1 >= max_attempts}
    given_up: list[Row[Any]] = []
    if hopeless:
        given_up = list(
            session.execute(
                update(table)
                .where(c.id.in_(hopeless))
                .values(
                    state="FAILED",
                    failures=c.failures + 1,
                    due_at=None,
                    lease_owner=None,
                    last_error=give_up_reason,
                    updated_at=now,
                )
                .returning(c.id, c.tenant_id, c.attempt)
            ).all()
        )
    ids = [r.id for r in rows if r.id not in hopeless]
    claimed: list[Row[Any]] = []
    if ids:
        claimed = list(
            session.execute(
                update(table)
                .where(c.id.in_(ids))
                .values(
                    state="SENDING",
                    attempt=c.attempt + 1,
                    # A lease that ran out means the worker died mid-send: a failure.
                    failures=c.failures + case((c.state == "SENDING", 1), else_=0),
                    lease_owner=worker_id,
                    due_at=lease_until,
                    updated_at=now,
                )
                .returning(*returning)
            ).all()
        )
    return Leased(claimed, given_up, previous)
