"""Issuing's hot statements, with their PostgreSQL and SQLite spellings side by side.

Statements are built once at import and executed with parameters: building an ORM statement per
request cost more CPU than the database spent on the rows. Column lists come from the tables,
so a renamed or added column is caught at import, not by a failing INSERT.

Bulk minting is written for PostgreSQL's strengths: codes are drawn in Python in batches,
``COPY``-ed into a temporary staging table, and moved into ``voucher`` by one
``INSERT ... SELECT ... ON CONFLICT (code) DO NOTHING`` per batch, with the opening ledger
entries written by the same statement (a data-modifying CTE). A code that collides with one
already stored is simply redrawn, so the database's unique index is the only judge of
uniqueness, under any number of concurrent minters.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Connection, String, Table, insert, text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from voucherd.db import driver
from voucherd.db.dialect import is_postgresql
from voucherd.delivery.sql import delivery_ctes, delivery_parameters, insert_planned
from voucherd.vouchers.models import LedgerEntry, Voucher, VoucherEvent

VOUCHER = cast(Table, Voucher.__table__)
LEDGER = cast(Table, LedgerEntry.__table__)
EVENT = cast(Table, VoucherEvent.__table__)
_V, _L, _E = VOUCHER.c, LEDGER.c, EVENT.c


def names(columns: Sequence[Any]) -> str:
    """A column list for a statement's text, read from the table's columns."""
    return ", ".join(column.name for column in columns)


# What issuing one voucher writes: every column but those a voucher gains later.
ISSUE_COLUMNS = tuple(
    c.name for c in VOUCHER.c if c.name not in (_V.published_count.name, _V.holder_id.name)
)
_JSON = {_V.metadata.name}  # bound as text on PostgreSQL and cast, as json.dumps gives it

_ISSUE_LEDGER = (_L.tenant_id, _L.voucher_id, _L.delta, _L.kind, _L.created_at)
# A voucher event as the hot paths write it (issued, redeemed): no reason.
EVENT_COLUMNS = (
    _E.tenant_id,
    _E.voucher_id,
    _E.campaign_id,
    _E.kind,
    _E.actor,
    _E.data,
    _E.created_at,
)
# PostgreSQL: the voucher, its opening ledger entry and its "issued" event in one statement,
# one round trip. A code that collides inserts nothing at all, and the caller redraws.
_ISSUE_CTES = (
    f"WITH v AS (INSERT INTO {VOUCHER.name} ({', '.join(ISSUE_COLUMNS)}) VALUES ("
    + ", ".join(f"CAST(:{c} AS jsonb)" if c in _JSON else f":{c}" for c in ISSUE_COLUMNS)
    + f") ON CONFLICT ({_V.code.name}) DO NOTHING RETURNING {_V.id.name}, {_V.balance.name}), "
    f"ledger AS (INSERT INTO {LEDGER.name} ({names(_ISSUE_LEDGER)}) "
    f"SELECT :tenant_id, id, balance, 'ISSUE', :created_at FROM v WHERE balance > 0), "
    f"event AS (INSERT INTO {EVENT.name} ({names(EVENT_COLUMNS)}) "
    "SELECT :tenant_id, id, :campaign_id, 'issued', :actor, CAST(:event_data AS jsonb), "
    ":created_at FROM v)"
)
_ISSUE_ON_POSTGRESQL = text(_ISSUE_CTES + " SELECT id FROM v")
# Issued with a delivery: its outbox row and first event ride in the same statement.
_DELIVERY_CTES = delivery_ctes(
    voucher_cte="v", tenant_id="tenant_id", created_at="created_at", actor="actor"
)
_ISSUE_WITH_DELIVERY_ON_POSTGRESQL = text(f"{_ISSUE_CTES}, {_DELIVERY_CTES} SELECT id FROM v")
# SQLite: the same rows as prebuilt statements; its round trips are function calls.
_ISSUE_VOUCHER_ON_SQLITE = (
    sqlite_insert(VOUCHER).on_conflict_do_nothing(index_elements=[_V.code.name]).returning(_V.id)
)
_INSERT_LEDGER = insert(LEDGER)
_INSERT_EVENT = insert(EVENT)


def insert_issued(
    session: Session | Connection,
    row: dict[str, Any],
    *,
    actor: str,
    event: dict[str, Any],
    delivery: dict[str, Any] | None = None,
) -> bool:
    """Write one issued voucher with its ledger entry, its event and (when asked) its planned
    delivery; False, writing nothing, if its code is taken.

    On PostgreSQL that is one statement, so ``session`` may be a ``Database.single_write``
    connection: the statement is its own transaction, and a taken code (``ON CONFLICT DO
    NOTHING``, so no ``v`` row for the other CTEs to select from) commits nothing at all."""
    # The session's connection, not Session.execute: these are Core statements, and the ORM's
    # execution path (events, compile state) costs CPU on every issue for nothing.
    conn = session if isinstance(session, Connection) else session.connection()
    if is_postgresql(conn):
        statement, params = issue_on_postgresql(row, actor=actor, event=event, delivery=delivery)
        # On single_write's connection, straight on psycopg's cursor.
        return bool(driver.rows(session, statement, params))
    params = _issue_parameters(row)
    if conn.execute(_ISSUE_VOUCHER_ON_SQLITE, params).first() is None:
        return False
    if row["balance"]:
        conn.execute(
            _INSERT_LEDGER,
            {
                "tenant_id": row["tenant_id"],
                "voucher_id": row["id"],
                "delta": row["balance"],
                "kind": "ISSUE",
                "created_at": row["created_at"],
            },
        )
    conn.execute(
        _INSERT_EVENT,
        {
            "tenant_id": row["tenant_id"],
            "voucher_id": row["id"],
            "campaign_id": row["campaign_id"],
            "kind": "issued",
            "actor": actor,
            "data": event,
            "created_at": row["created_at"],
        },
    )
    if delivery is not None:
        insert_planned(conn, delivery, actor=actor)
    return True


def issue_on_postgresql(
    row: dict[str, Any],
    *,
    actor: str,
    event: dict[str, Any],
    delivery: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """:func:`insert_issued`'s one statement on PostgreSQL and its parameters, for a caller
    that runs it its own way (the express lane, ``db/express.py``): a row returned means the
    voucher and everything with it was written; none, that its code is taken (nothing was)."""
    params = _issue_parameters(row)
    if params["metadata"] is not None:
        params["metadata"] = json.dumps(params["metadata"])
    params.update(actor=actor, event_data=json.dumps(event))
    if delivery is None:
        return _ISSUE_ON_POSTGRESQL, params
    params.update(delivery_parameters(delivery))
    return _ISSUE_WITH_DELIVERY_ON_POSTGRESQL, params


def _issue_parameters(row: dict[str, Any]) -> dict[str, Any]:
    params = {column: row.get(column) for column in ISSUE_COLUMNS}
    params[_V.metadata.name] = row.get("metadata_")
    return params


# Bulk minting. The staging table holds what differs per voucher; the rest of each row is
# the batch's constants, bound once as ``:p_<column>``.
_STAGED = (_V.id, _V.code, _V.public_token)
_STAGED_NAMES = names(_STAGED)
_STAGING_SHAPE = ", ".join(f"{c.name} varchar({cast(String, c.type).length})" for c in _STAGED)
_CREATE_STAGING_ON_POSTGRESQL = text(
    f"CREATE TEMP TABLE IF NOT EXISTS mint_staging ({_STAGING_SHAPE}) ON COMMIT DROP"
)
_CREATE_STAGING_ON_SQLITE = text(f"CREATE TEMP TABLE IF NOT EXISTS mint_staging ({_STAGING_SHAPE})")
_CLEAR_STAGING = text("DELETE FROM mint_staging")
_STAGE_ON_SQLITE = text(f"INSERT INTO mint_staging ({_STAGED_NAMES}) VALUES (:id, :code, :tok)")
_COPY_STAGING = f"COPY mint_staging ({_STAGED_NAMES}) FROM STDIN"
# What a minted voucher holds: no customer or holder, as it goes into the pool (or straight
# into one publication).
MINT_COLUMNS = tuple(
    c.name
    for c in VOUCHER.c
    if c.name
    not in (
        _V.customer_ref.name,
        _V.holder_name.name,
        _V.holder_address.name,
        _V.holder_postcode.name,
        _V.holder_id.name,
    )
)
_FROM_STAGING = {_V.id.name: "s.id", _V.code.name: "s.code", _V.public_token.name: "s.public_token"}


def _move_vouchers(postgres: bool) -> str:
    values = ", ".join(
        _FROM_STAGING.get(c) or (f"CAST(:p_{c} AS jsonb)" if postgres and c in _JSON else f":p_{c}")
        for c in MINT_COLUMNS
    )
    return (
        f"INSERT INTO {VOUCHER.name} ({', '.join(MINT_COLUMNS)}) SELECT {values} "
        f"FROM mint_staging s WHERE true ON CONFLICT ({_V.code.name}) DO NOTHING"
    )


_MOVE_ON_POSTGRESQL = text(_move_vouchers(postgres=True))
_MOVE_ON_SQLITE = text(_move_vouchers(postgres=False))
# PostgreSQL: the moved vouchers' opening ledger entries in the same statement.
_MOVE_WITH_LEDGER_ON_POSTGRESQL = text(
    f"WITH moved AS ({_move_vouchers(postgres=True)} RETURNING id) "
    f"INSERT INTO {LEDGER.name} ({names(_ISSUE_LEDGER)}) "
    "SELECT :p_tenant_id, id, :p_balance, 'ISSUE', :p_created_at FROM moved"
)
# SQLite: a second statement finds the staged rows that made it in.
_LEDGER_FOR_MOVED_ON_SQLITE = text(
    f"INSERT INTO {LEDGER.name} ({names(_ISSUE_LEDGER)}) "
    "SELECT :p_tenant_id, s.id, :p_balance, 'ISSUE', :p_created_at FROM mint_staging s "
    f"WHERE EXISTS (SELECT 1 FROM {VOUCHER.name} v WHERE v.id = s.id)"
)
_NOT_MOVED = text(
    "SELECT s.id FROM mint_staging s "
    f"WHERE NOT EXISTS (SELECT 1 FROM {VOUCHER.name} v WHERE v.id = s.id)"
)


def create_staging(session: Session) -> None:
    postgres = is_postgresql(session)
    session.execute(_CREATE_STAGING_ON_POSTGRESQL if postgres else _CREATE_STAGING_ON_SQLITE)


def stage(session: Session, rows: Sequence[tuple[str, str, str]]) -> None:
    """Replace the staging table's rows with ``(id, code, public_token)`` rows."""
    session.execute(_CLEAR_STAGING)
    if is_postgresql(session):
        # psycopg's COPY: the fastest way to hand PostgreSQL many rows.
        raw: Any = session.connection().connection.dbapi_connection
        with raw.cursor() as cursor, cursor.copy(_COPY_STAGING) as copy:
            for row in rows:
                copy.write_row(row)
        return
    session.execute(_STAGE_ON_SQLITE, [{"id": i, "code": c, "tok": t} for i, c, t in rows])


def move_staged(session: Session, params: dict[str, Any], *, with_ledger: bool) -> int:
    """Move the staged rows whose codes are free into ``voucher`` (with their opening ledger
    entries when ``with_ledger``); how many moved."""
    if is_postgresql(session):
        statement = _MOVE_WITH_LEDGER_ON_POSTGRESQL if with_ledger else _MOVE_ON_POSTGRESQL
        return int(session.execute(statement, params).rowcount)  # type: ignore[attr-defined]
    moved = int(session.execute(_MOVE_ON_SQLITE, params).rowcount)  # type: ignore[attr-defined]
    if with_ledger:
        session.execute(_LEDGER_FOR_MOVED_ON_SQLITE, params)
    return moved


def not_moved(session: Session) -> list[str]:
    """The staged ids whose codes were taken: to be redrawn."""
    return list(session.scalars(_NOT_MOVED))
