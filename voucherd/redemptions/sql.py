"""Redeeming's hot statements, with their PostgreSQL and SQLite spellings side by side.

The spend is one conditional UPDATE (``... WHERE balance >= :spend ... RETURNING``), backed by
``CHECK (balance >= 0)``: no read-modify-write, so no interleaving of concurrent redemptions can
overspend, on PostgreSQL or SQLite. The redemption, its ledger entry and its event follow in one
more round trip on PostgreSQL. Column lists come from the tables.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, case, insert, or_, text, update
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from voucherd.db.dialect import is_postgresql
from voucherd.redemptions.models import Redemption
from voucherd.redemptions.schemas import Plan
from voucherd.vouchers.models import Voucher
from voucherd.vouchers.sql import EVENT, EVENT_COLUMNS, LEDGER, names


def debit(
    session: Session, voucher: Voucher, plan: Plan, now: datetime
) -> Row[int | None, int, str] | None:
    """The check and the spend in one statement; None when the voucher no longer allows it."""
    spend = plan.spend or 0
    used_up = or_(
        Voucher.balance - spend == 0 if plan.spend is not None else False,
        (Voucher.redemption_quantity.is_not(None))
        & (Voucher.redeemed_quantity + 1 >= Voucher.redemption_quantity),
    )
    conditions = [
        Voucher.id == voucher.id,
        Voucher.state == "ACTIVE",
        or_(
            Voucher.redemption_quantity.is_(None),
            Voucher.redeemed_quantity < Voucher.redemption_quantity,
        ),
    ]
    values: dict[str, Any] = {
        "redeemed_quantity": Voucher.redeemed_quantity + 1,
        "state": case((used_up, "REDEEMED"), else_=Voucher.state),
        "updated_at": now,
    }
    if plan.spend is not None:
        conditions.append(Voucher.balance >= spend)
        values["balance"] = Voucher.balance - spend
    row: Row[int | None, int, str] | None = session.execute(
        update(Voucher)
        .where(*conditions)
        .values(**values)
        .returning(Voucher.balance, Voucher.redeemed_quantity, Voucher.state)
        .execution_options(synchronize_session=False)
    ).first()
    return row


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
# PostgreSQL: the redemption, its ledger entry and its event in one round trip, after the
# conditional UPDATE (:func:`debit`) has already taken the money.
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
    session: Session, redemption: Redemption, *, spend: int, campaign_id: str, actor: str
) -> None:
    """Write the redemption, the ledger entry for what it took, and its event.

    Prebuilt statements executed with parameters: building ORM statements per request cost
    more CPU than the database spent on the rows.
    """
    params: dict[str, Any] = {
        column: getattr(redemption, "metadata_" if column == "metadata" else column)
        for column in _REDEMPTION_COLUMNS
    }
    event = {"redemption_id": redemption.id, "amount": redemption.amount}
    if is_postgresql(session):
        if params["metadata"] is not None:
            params["metadata"] = json.dumps(params["metadata"])
        params.update(
            spend=spend, campaign_id=campaign_id, actor=actor, event_data=json.dumps(event)
        )
        session.execute(_RECORD_ON_POSTGRESQL, params)
        return
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
