"""Redeeming's hot statements, with their PostgreSQL and SQLite spellings side by side.

The spend is one conditional UPDATE (``... WHERE balance >= :spend ... RETURNING``), backed by
``CHECK (balance >= 0)``: no read-modify-write, so no interleaving of concurrent redemptions can
overspend, on PostgreSQL or SQLite. On PostgreSQL the redemption, its ledger entry and its event
are written by the same statement, from what the UPDATE returned (data-modifying CTEs): one round
trip between the lookup and the COMMIT, so the row lock the UPDATE takes is held for the rest of
that statement and the COMMIT only. On SQLite (locked whole from ``BEGIN IMMEDIATE``) the UPDATE
and the inserts are separate statements. Every statement is built once, at import, and executed
with parameters: building them per call cost more CPU than the database spent on the rows.
Column lists come from the tables.
"""

from __future__ import annotations

import json
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Table,
    bindparam,
    case,
    insert,
    or_,
    text,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import TextClause

from voucherd.db import driver
from voucherd.db.dialect import is_postgresql
from voucherd.redemptions.models import Redemption
from voucherd.redemptions.schemas import Plan
from voucherd.vouchers.sql import EVENT, EVENT_COLUMNS, LEDGER, VOUCHER, names

_REDEMPTION_TABLE = cast(Table, Redemption.__table__)
_R = _REDEMPTION_TABLE.c
# What redeeming writes: every column but those a rollback fills in later.
_REDEMPTION_COLUMNS = tuple(
    c.name
    for c in _REDEMPTION_TABLE.c
    if c.name not in (_R.rollback_id.name, _R.rolled_back_at.name, _R.rollback_reason.name)
)
_L = LEDGER.c
_REDEMPTION_LEDGER = names(
    (_L.tenant_id, _L.voucher_id, _L.delta, _L.kind, _L.redemption_id, _L.created_at)
)
_V = VOUCHER.c
# What the spend returns: the voucher as it left it.
Debited = Row[int | None, int, str]


def _spend_and_record_on_postgresql(*, spending: bool) -> TextClause:
    """The conditional UPDATE and, only when it took the voucher, the redemption, its ledger
    entry (when money moved) and its event: one statement. ``spending``: a spend from the
    balance (GIFT, CASH, LOYALTY); without it a discount-only redemption, the balance untouched.
    """
    spend = "CAST(:spend AS bigint)"
    used_up = "redemption_quantity IS NOT NULL AND redeemed_quantity + 1 >= redemption_quantity"
    if spending:
        used_up = f"balance - {spend} = 0 OR ({used_up})"
    return text(
        f"WITH d AS (UPDATE {VOUCHER.name} SET "
        + (f"balance = balance - {spend}, " if spending else "")
        + "redeemed_quantity = redeemed_quantity + 1, "
        f"state = CASE WHEN {used_up} THEN 'REDEEMED' ELSE state END, "
        "updated_at = :created_at "
        "WHERE id = :voucher_id AND state = 'ACTIVE' "
        "AND (redemption_quantity IS NULL OR redeemed_quantity < redemption_quantity)"
        + (f" AND balance >= {spend}" if spending else "")
        + " RETURNING balance, redeemed_quantity, state), "
        f"r AS (INSERT INTO {_REDEMPTION_TABLE.name} ("
        + ", ".join(_REDEMPTION_COLUMNS)
        + ") SELECT "
        + ", ".join(
            f"CAST(:{c} AS jsonb)" if c == _R.metadata.name else f":{c}"
            for c in _REDEMPTION_COLUMNS
        )
        + " FROM d RETURNING id), "
        f"ledger AS (INSERT INTO {LEDGER.name} ({_REDEMPTION_LEDGER}) "
        f"SELECT :tenant_id, :voucher_id, -{spend}, 'REDEMPTION', id, :created_at "
        f"FROM r WHERE {spend} > 0), "
        f"event AS (INSERT INTO {EVENT.name} ({names(EVENT_COLUMNS)}) "
        "SELECT :tenant_id, :voucher_id, :campaign_id, 'redeemed', :actor, "
        "CAST(:event_data AS jsonb), :created_at FROM r) "
        "SELECT balance, redeemed_quantity, state FROM d"
    )


_SPEND_AND_RECORD_ON_POSTGRESQL = _spend_and_record_on_postgresql(spending=True)
_GRANT_AND_RECORD_ON_POSTGRESQL = _spend_and_record_on_postgresql(spending=False)


def _debit_on_sqlite(*, spending: bool) -> Any:
    """The same conditional UPDATE as a Core statement (SQLite)."""
    spend = bindparam("spend", type_=BigInteger())
    used_up: ColumnElement[bool] = (_V.redemption_quantity.is_not(None)) & (
        _V.redeemed_quantity + 1 >= _V.redemption_quantity
    )
    conditions = [
        _V.id == bindparam("voucher_id"),
        _V.state == "ACTIVE",
        or_(_V.redemption_quantity.is_(None), _V.redeemed_quantity < _V.redemption_quantity),
    ]
    values: dict[str, Any] = {
        "redeemed_quantity": _V.redeemed_quantity + 1,
        "updated_at": bindparam("now", type_=_V.updated_at.type),
    }
    if spending:
        used_up = or_(_V.balance - spend == 0, used_up)
        conditions.append(_V.balance >= spend)
        values["balance"] = _V.balance - spend
    values["state"] = case((used_up, "REDEEMED"), else_=_V.state)
    return (
        update(VOUCHER)
        .where(*conditions)
        .values(**values)
        .returning(_V.balance, _V.redeemed_quantity, _V.state)
    )


_SPEND_ON_SQLITE = _debit_on_sqlite(spending=True)
_GRANT_ON_SQLITE = _debit_on_sqlite(spending=False)


def debit_on_postgresql(
    redemption: Redemption, plan: Plan, *, campaign_id: str, actor: str
) -> tuple[TextClause, dict[str, Any]]:
    """:func:`debit`'s one statement on PostgreSQL and its parameters, for a caller running it
    its own way (the express lane, on the event loop): it returns one row (``Debited``) when
    it took the voucher, none (and wrote nothing) when the voucher no longer allows it."""
    params = _redemption_parameters(redemption, campaign_id=campaign_id, actor=actor)
    params["spend"] = plan.spend or 0
    spending = plan.spend is not None
    statement = _SPEND_AND_RECORD_ON_POSTGRESQL if spending else _GRANT_AND_RECORD_ON_POSTGRESQL
    return statement, params


def debit(
    session: Session | Connection,
    redemption: Redemption,
    plan: Plan,
    *,
    campaign_id: str,
    actor: str,
) -> Debited | None:
    """The check and the spend in one conditional statement, and the rows that record them
    (:func:`record_redemption`'s); None, with nothing written, when the voucher no longer
    allows it. ``redemption`` is the row to record (not added to the session); its
    ``created_at`` is the voucher's new ``updated_at``."""
    spending = plan.spend is not None
    spend = plan.spend or 0
    if is_postgresql(session):
        statement, params = debit_on_postgresql(
            redemption, plan, campaign_id=campaign_id, actor=actor
        )
        # On single_write's connection, straight on psycopg's cursor.
        debited = driver.rows(session, statement, params)
        return cast(Debited, debited[0]) if debited else None
    row = session.execute(
        _SPEND_ON_SQLITE if spending else _GRANT_ON_SQLITE,
        {"voucher_id": redemption.voucher_id, "spend": spend, "now": redemption.created_at},
    ).first()
    if row is not None:
        record_redemption(session, redemption, spend=spend, campaign_id=campaign_id, actor=actor)
    return row


def _redemption_parameters(
    redemption: Redemption, *, campaign_id: str, actor: str
) -> dict[str, Any]:
    """The parameters of PostgreSQL's recording statements, JSON bound as text and cast."""
    params: dict[str, Any] = {
        column: getattr(redemption, "metadata_" if column == "metadata" else column)
        for column in _REDEMPTION_COLUMNS
    }
    if params["metadata"] is not None:
        params["metadata"] = json.dumps(params["metadata"])
    event = {"redemption_id": redemption.id, "amount": redemption.amount}
    params.update(campaign_id=campaign_id, actor=actor, event_data=json.dumps(event))
    return params


# PostgreSQL: the redemption, its ledger entry and its event alone, for a spend made some other
# way than :func:`debit` (a test's deliberately racy one).
_RECORD_ON_POSTGRESQL = text(
    f"WITH r AS (INSERT INTO {_REDEMPTION_TABLE.name} ("
    + ", ".join(_REDEMPTION_COLUMNS)
    + ") VALUES ("
    + ", ".join(
        f"CAST(:{c} AS jsonb)" if c == _R.metadata.name else f":{c}" for c in _REDEMPTION_COLUMNS
    )
    + ") RETURNING id), "
    f"ledger AS (INSERT INTO {LEDGER.name} ({_REDEMPTION_LEDGER}) "
    "SELECT :tenant_id, :voucher_id, -CAST(:spend AS bigint), 'REDEMPTION', id, :created_at "
    "FROM r WHERE CAST(:spend AS bigint) > 0) "
    f"INSERT INTO {EVENT.name} ({names(EVENT_COLUMNS)}) "
    "SELECT :tenant_id, :voucher_id, :campaign_id, 'redeemed', :actor, CAST(:event_data AS jsonb), "
    ":created_at FROM r"
)
_RECORD_REDEMPTION_ON_SQLITE = insert(_REDEMPTION_TABLE)
_RECORD_LEDGER_ON_SQLITE = insert(LEDGER)
_RECORD_EVENT_ON_SQLITE = insert(EVENT)


def record_redemption(
    session: Session | Connection,
    redemption: Redemption,
    *,
    spend: int,
    campaign_id: str,
    actor: str,
) -> None:
    """Write the redemption, the ledger entry for what it took, and its event, after a spend
    already made (:func:`debit` calls it on SQLite; on PostgreSQL it writes them itself)."""
    if is_postgresql(session):
        recorded = _redemption_parameters(redemption, campaign_id=campaign_id, actor=actor)
        recorded["spend"] = spend
        session.execute(_RECORD_ON_POSTGRESQL, recorded)
        return
    params: dict[str, Any] = {
        column: getattr(redemption, "metadata_" if column == "metadata" else column)
        for column in _REDEMPTION_COLUMNS
    }
    event = {"redemption_id": redemption.id, "amount": redemption.amount}
    session.execute(_RECORD_REDEMPTION_ON_SQLITE, params)
    if spend:
        session.execute(
            _RECORD_LEDGER_ON_SQLITE,
            {
                "tenant_id": redemption.tenant_id,
                "voucher_id": redemption.voucher_id,
                "delta": -spend,
                "kind": "REDEMPTION",
                "redemption_id": redemption.id,
                "created_at": redemption.created_at,
            },
        )
    session.execute(
        _RECORD_EVENT_ON_SQLITE,
        {
            "tenant_id": redemption.tenant_id,
            "voucher_id": redemption.voucher_id,
            "campaign_id": campaign_id,
            "kind": "redeemed",
            "actor": actor,
            "data": event,
            "created_at": redemption.created_at,
        },
    )
