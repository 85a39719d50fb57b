"""Delivery's hot statements, with their PostgreSQL and SQLite spellings side by side.

A delivery asked for with an issue is written by the issue's own statement on PostgreSQL (one
round trip for the voucher, its ledger entry, its event, the outbox row and the row's first
event): :func:`delivery_ctes` gives the two CTEs that do it, :func:`delivery_parameters` their
parameters. On SQLite, and wherever no such host statement exists, :func:`insert_planned`
writes the same two rows as prebuilt statements.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import Column, Connection, Table, insert, text
from sqlalchemy.orm import Session

from voucherd.delivery.models import Delivery, DeliveryEvent, DeliveryVoucher

DELIVERY = cast(Table, Delivery.__table__)
DELIVERY_EVENT = cast(Table, DeliveryEvent.__table__)
BUNDLE = cast(Table, DeliveryVoucher.__table__)
INSERT_DELIVERY = insert(DELIVERY)
INSERT_DELIVERY_EVENT = insert(DELIVERY_EVENT)
INSERT_BUNDLE = insert(BUNDLE)

# The planned row's own values, bound as ``:d_<column>`` in :func:`delivery_ctes`.
_PLANNED: tuple[Column[Any], ...] = (
    DELIVERY.c.id, DELIVERY.c.channel, DELIVERY.c.recipient, DELIVERY.c.recipient_name,
    DELIVERY.c.message, DELIVERY.c.state, DELIVERY.c.origin, DELIVERY.c.due_at,
)  # fmt: skip
_PREFIX = "d_"


def _insert_select(table: Table, values: Mapping[Column[Any], str], source: str) -> str:
    names = ", ".join(column.name for column in values)
    return f"INSERT INTO {table.name} ({names}) SELECT {', '.join(values.values())} FROM {source}"


def delivery_ctes(*, voucher_cte: str, tenant_id: str, created_at: str, actor: str) -> str:
    """The delivery and its first event as two CTEs (``dlv``, ``dlv_event``) to append to a
    statement whose CTE ``voucher_cte`` inserted the voucher with ``RETURNING id``.

    The other arguments name the host statement's bind parameters the delivery shares with it
    (the tenant, the moment, the actor), so what is shared is said at the call, not assumed;
    the delivery's own values are bound by :func:`delivery_parameters`.
    """
    d, e = DELIVERY.c, DELIVERY_EVENT.c
    planned = {column: f":{_PREFIX}{column.name}" for column in _PLANNED}
    delivery = {
        d.id: planned[d.id],
        d.tenant_id: f":{tenant_id}",
        d.voucher_id: "id",
        d.channel: planned[d.channel],
        d.recipient: planned[d.recipient],
        d.recipient_name: planned[d.recipient_name],
        d.message: planned[d.message],
        d.state: planned[d.state],
        d.origin: planned[d.origin],
        d.attempt: "0",
        d.failures: "0",
        d.due_at: planned[d.due_at],
        d.created_at: f":{created_at}",
        d.updated_at: f":{created_at}",
    }
    event = {
        e.tenant_id: f":{tenant_id}",
        e.delivery_id: "id",
        e.attempt: "0",
        e.from_state: "NULL",
        e.to_state: planned[d.state],
        e.actor: f":{actor}",
        e.created_at: f":{created_at}",
    }
    return (
        f"dlv AS ({_insert_select(DELIVERY, delivery, voucher_cte)} RETURNING id), "
        f"dlv_event AS ({_insert_select(DELIVERY_EVENT, event, 'dlv')})"
    )


def delivery_parameters(row: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of :func:`delivery_ctes` for a planned row (enqueue.plan_delivery)."""
    return {f"{_PREFIX}{column.name}": row[column.name] for column in _PLANNED}


def insert_planned(
    session: Session | Connection, row: Mapping[str, Any], *, actor: str | None
) -> None:
    """The delivery and its first event as two prebuilt statements (SQLite's issue path, and
    every delivery asked for outside an issue)."""
    session.execute(INSERT_DELIVERY, dict(row))
    session.execute(
        INSERT_DELIVERY_EVENT,
        {
            "tenant_id": row["tenant_id"],
            "delivery_id": row["id"],
            "attempt": 0,
            "from_state": None,
            "to_state": row["state"],
            "actor": actor,
            "detail": None,
            "created_at": row["created_at"],
        },
    )


def _record_outcomes() -> Any:
    """The outcomes of a wave of sends and their events, in one PostgreSQL statement.

    Each row is fenced as ``outbox._RECORD`` fences one: ``attempt = <the claim's attempt> AND
    state = 'SENDING'``, so a worker that lost its lease (or a row a status callback already
    finished) writes nothing for that row; only rows written get an event, and their ids come
    back. Parameters are arrays, one element per outcome, in the same order.
    """
    d, e = DELIVERY.c, DELIVERY_EVENT.c
    written_columns = (e.tenant_id, e.delivery_id, e.attempt, e.from_state, e.to_state)
    event_columns = ", ".join(c.name for c in (*written_columns, e.actor, e.detail, e.created_at))
    return text(
        "WITH v AS (SELECT * FROM unnest("
        "CAST(:ids AS varchar[]), CAST(:attempts AS integer[]), CAST(:states AS varchar[]), "
        "CAST(:failures AS integer[]), CAST(:due_at AS timestamptz[]), "
        "CAST(:message_ids AS varchar[]), CAST(:errors AS text[]), CAST(:details AS text[]), "
        "CAST(:actors AS varchar[])"
        ") AS v(id, attempt, state, failures, due_at, message_id, error, detail, actor)), "
        f"done AS (UPDATE {DELIVERY.name} AS d SET "
        f"{d.state.name} = v.state, {d.failures.name} = v.failures, {d.due_at.name} = v.due_at, "
        f"{d.provider_message_id.name} = coalesce(v.message_id, d.{d.provider_message_id.name}), "
        f"{d.last_error.name} = v.error, {d.lease_owner.name} = NULL, "
        f"{d.updated_at.name} = CAST(:now AS timestamptz) "
        f"FROM v WHERE d.{d.id.name} = v.id AND d.{d.attempt.name} = v.attempt "
        f"AND d.{d.state.name} = 'SENDING' "
        f"RETURNING d.{d.id.name} AS id, d.{d.tenant_id.name} AS tenant_id, "
        f"d.{d.attempt.name} AS attempt, d.{d.state.name} AS state, v.detail, v.actor), "
        f"written AS (INSERT INTO {DELIVERY_EVENT.name} ({event_columns}) "
        "SELECT tenant_id, id, attempt, 'SENDING', state, actor, detail, CAST(:now AS timestamptz) "
        "FROM done) "
        "SELECT id FROM done"
    )


RECORD_OUTCOMES = _record_outcomes()
