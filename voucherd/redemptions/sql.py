"""Redeeming's hot statements, with their PostgreSQL and SQLite spellings side by side.

The spend is one conditional UPDATE (``... WHERE balance >= :spend ... RETURNING``), backed by
``CHECK (balance >= 0)``: no read-modify-write, so no interleaving of concurrent redemptions can
overspend, on PostgreSQL or SQLite. On PostgreSQL the redemption, its ledger entry and its event
are written by the same statement, from what the UPDATE returned (data-modifying CTEs): one round
trip between the lookup and the COMMIT, so the row lock the UPDATE takes is held for the rest of
that statement and the COMMIT only. For the native answer the lookup is folded into that
statement too (:func:`find_and_debit_on_postgresql`): one round trip in all when SQL can read
the rules plainly. On SQLite (locked whole from ``BEGIN IMMEDIATE``) the UPDATE
and the inserts are separate statements. Every statement is built once, at import, and executed
with parameters: building them per call cost more CPU than the database spent on the rows.
Column lists come from the tables.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
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

from voucherd.campaigns.models import Campaign
from voucherd.db import driver
from voucherd.db.dialect import is_postgresql
from voucherd.redemptions.models import Redemption
from voucherd.redemptions.schemas import Plan, RedeemRequest
from voucherd.vouchers.lookup import CAMPAIGN_PREFIX, JUDGED_CAMPAIGN, JUDGED_VOUCHER
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
CAMPAIGN = cast(Table, Campaign.__table__)
# What the spend returns: the voucher as it left it.
Debited = Row[int | None, int, str]


def _debit_sql(row: str, spend: str | None) -> tuple[str, str]:
    """The conditional spend's SET list and its conditions, for the voucher's columns prefixed
    ``row`` (``""``, or a table alias and its dot): one more use, ``spend`` taken from the
    balance (None: a discount-only redemption, the balance untouched), REDEEMED when that
    empties it or uses its last redemption; only an ACTIVE voucher with a use left and, when
    spending, the balance to cover it. Both PostgreSQL statements spend with these words."""
    used_up = (
        f"{row}redemption_quantity IS NOT NULL "
        f"AND {row}redeemed_quantity + 1 >= {row}redemption_quantity"
    )
    if spend is not None:
        used_up = f"{row}balance - {spend} = 0 OR ({used_up})"
    changes = (
        (f"balance = {row}balance - {spend}, " if spend is not None else "")
        + f"redeemed_quantity = {row}redeemed_quantity + 1, "
        f"state = CASE WHEN {used_up} THEN 'REDEEMED' ELSE {row}state END, "
        "updated_at = :created_at"
    )
    conditions = (
        f"{row}state = 'ACTIVE' "
        f"AND ({row}redemption_quantity IS NULL "
        f"OR {row}redeemed_quantity < {row}redemption_quantity)"
        + (f" AND {row}balance >= {spend}" if spend is not None else "")
    )
    return changes, conditions


def _spend_and_record_on_postgresql(*, spending: bool) -> TextClause:
    """The conditional UPDATE and, only when it took the voucher, the redemption, its ledger
    entry (when money moved) and its event: one statement. ``spending``: a spend from the
    balance (GIFT, CASH, LOYALTY); without it a discount-only redemption, the balance untouched.
    """
    spend = "CAST(:spend AS bigint)"
    changes, conditions = _debit_sql("", spend if spending else None)
    return text(
        f"WITH d AS (UPDATE {VOUCHER.name} SET {changes} "
        f"WHERE id = :voucher_id AND {conditions} "
        "RETURNING balance, redeemed_quantity, state), "
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


def _find_spend_and_record_on_postgresql() -> TextClause:
    """The lookup, the conditional spend and the rows that record it, in one statement: a
    redemption's one round trip when the rules can be read in SQL.

    ``t`` is the lookup (``vouchers/lookup.py``'s judged row, by code) and computes the spend
    the plan would (``rules.plan_redemption``) and ``judged_in_sql``: whether the rules are
    ones SQL can judge here and they allow the redemption (an ACTIVE voucher of a non-DISCOUNT
    type in an active campaign, inside its dates, with no validity window, day or hour rules,
    for the amount asked or the order's). Only then ``d`` spends, with the same conditions as
    :func:`_spend_and_record_on_postgresql`'s, re-checked on the row as it stands once locked,
    and the redemption, ledger entry and event are written from what it returned. Otherwise
    nothing is written and the statement answers the lookup's row: the caller judges it in
    Python (refusing, or planning a discount or a windowed voucher) and spends with the
    statement above, as without the fold. ``spent_state`` is NULL exactly when nothing was
    spent. The rules here are a subset of ``rules.py``'s, never a second opinion: whatever SQL
    does not judge, Python does.
    """
    asked = "CAST(:asked AS bigint)"
    order = "CAST(:order_amount AS bigint)"
    spend = (
        f"CASE WHEN v.type = 'CASH' THEN v.balance WHEN {asked} IS NOT NULL THEN {asked} "
        f"WHEN {order} IS NOT NULL THEN LEAST(v.balance, {order}) END"
    )

    def no_rule(column: str) -> str:
        return f"(c.{column} IS NULL OR c.{column} = CAST('null' AS jsonb))"

    judged_in_sql = " AND ".join(
        (
            "v.state = 'ACTIVE'",
            "c.active",
            "v.type <> 'DISCOUNT'",
            "v.balance IS NOT NULL",
            f"(v.type <> 'CASH' OR {asked} IS NULL OR {asked} = v.balance)",
            "(v.start_date IS NULL OR v.start_date <= :created_at)",
            "(v.expiration_date IS NULL OR v.expiration_date >= :created_at)",
            f"(v.start_date IS NULL OR {no_rule('validity_timeframe')})",
            no_rule("validity_day_of_week"),
            no_rule("validity_hours"),
        )
    )
    judged = [f"v.{column}" for column in JUDGED_VOUCHER] + [
        f"c.{column} AS {CAMPAIGN_PREFIX}{column}" for column in JUDGED_CAMPAIGN
    ]
    # The row answered: the lookup's, but the campaign's JSON only when Python is to judge it
    # (psycopg's converting it was 4% of a spent redemption's instructions in an API process).
    answered = [f"t.{column}" for column in JUDGED_VOUCHER] + [
        f"CASE WHEN d.state IS NULL THEN t.{label} END AS {label}"
        if isinstance(CAMPAIGN.c[column].type, JSON)
        else f"t.{label}"
        for column in JUDGED_CAMPAIGN
        for label in (CAMPAIGN_PREFIX + column,)
    ]
    changes, conditions = _debit_sql("u.", "t.spend")
    recorded = {
        _R.voucher_id.name: "t.id",
        _R.amount.name: "d.spend",
        _R.metadata.name: f"CAST(:{_R.metadata.name} AS jsonb)",
    }
    return text(
        "WITH t AS (SELECT "
        + ", ".join(judged)
        + f", {spend} AS spend, {judged_in_sql} AS judged_in_sql "
        f"FROM {VOUCHER.name} v JOIN {CAMPAIGN.name} c ON c.id = v.campaign_id "
        "WHERE v.tenant_id = :tenant_id AND v.code = :exact), "
        f"d AS (UPDATE {VOUCHER.name} AS u SET {changes} FROM t "
        f"WHERE u.id = t.id AND t.judged_in_sql AND t.spend > 0 AND {conditions} "
        "RETURNING u.balance, u.redeemed_quantity, u.state, t.spend), "
        f"r AS (INSERT INTO {_REDEMPTION_TABLE.name} ("
        + ", ".join(_REDEMPTION_COLUMNS)
        + ") SELECT "
        + ", ".join(recorded.get(c, f":{c}") for c in _REDEMPTION_COLUMNS)
        + " FROM t, d RETURNING id), "
        f"ledger AS (INSERT INTO {LEDGER.name} ({_REDEMPTION_LEDGER}) "
        "SELECT :tenant_id, t.id, -d.spend, 'REDEMPTION', r.id, :created_at FROM t, d, r), "
        f"event AS (INSERT INTO {EVENT.name} ({names(EVENT_COLUMNS)}) "
        "SELECT :tenant_id, t.id, t.campaign_id, 'redeemed', :actor, "
        "jsonb_build_object('redemption_id', r.id, 'amount', d.spend), :created_at "
        "FROM t, d, r) "
        "SELECT "
        + ", ".join(answered)
        + ", t.spend, d.balance AS spent_balance, d.redeemed_quantity AS spent_redeemed_quantity, "
        "d.state AS spent_state FROM t LEFT JOIN d ON true"
    )


_FIND_SPEND_AND_RECORD_ON_POSTGRESQL = _find_spend_and_record_on_postgresql()


def find_and_debit_on_postgresql(
    tenant_id: str,
    code: str,
    body: RedeemRequest,
    *,
    redemption_id: str,
    now: datetime,
    actor: str,
) -> tuple[TextClause, dict[str, Any]]:
    """:func:`_find_spend_and_record_on_postgresql`'s statement and its parameters, for the
    voucher whose code is exactly ``code``; the redemption recorded, if any, is
    ``redemption_id`` (the caller makes its row from the row returned: ``steps._Fold``)."""
    order = body.order
    params: dict[str, Any] = {
        "tenant_id": tenant_id,
        "exact": code,
        "asked": body.amount,
        "id": redemption_id,
        "status": "SUCCEEDED",
        "order_amount": order.amount if order else None,
        "order_reference": order.reference if order else None,
        "merchant_ref": body.merchant_ref,
        "store_ref": body.store_ref,
        "customer_ref": body.customer_ref,
        "metadata": json.dumps(body.metadata) if body.metadata is not None else None,
        "created_at": now,
        "actor": actor,
    }
    return _FIND_SPEND_AND_RECORD_ON_POSTGRESQL, params


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
