"""Validate, redeem and roll back, and read redemptions back.

What a redemption may take is judged in ``redemptions/rules.py``; the spend itself (one
conditional UPDATE, no read-modify-write) and the rows that record it are in
``redemptions/sql.py``. The balance column is the cached sum of the ledger, and both change in
the same transaction.
"""

from __future__ import annotations

from sqlalchemy import case, func, insert, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.sql import Select

from voucherd.auth.caller import Caller
from voucherd.campaigns.lookup import campaign_named
from voucherd.campaigns.models import Campaign
from voucherd.customers.models import Customer
from voucherd.db.engine import Database
from voucherd.db.express import LaneBusy
from voucherd.errors import Conflict, ErrorCode, NotFound
from voucherd.idempotency import service as idempotency
from voucherd.ids import new_id
from voucherd.observability import metrics
from voucherd.pagination import Page
from voucherd.redemptions import steps
from voucherd.redemptions.models import Redemption
from voucherd.redemptions.schemas import (
    RedeemRequest,
    RedemptionRecord,
    ValidateRequest,
    ValidationResult,
    VoucherRedemptions,
)
from voucherd.vouchers.lookup import find_voucher, voucher_named
from voucherd.vouchers.models import LedgerEntry, Voucher, VoucherEvent


def validate(
    db: Database, caller: Caller, body: ValidateRequest, *, show_record: bool = True
) -> ValidationResult:
    """Would this redemption succeed now, and what would it give? Changes nothing.

    ``show_record=False`` for callers that show only the result's ``voucher`` (the native
    answer): the voucher is then presented from the row, and ``record`` is None."""
    caller.require("redeem")
    now = db.now()
    # Judging reads one row (the voucher joined with its campaign) in one statement: no
    # transaction is needed around it, and none is opened (Database.single_read).
    with db.single_read() as connection:
        base_url = db.settings.public_base_url
        return steps.judge(connection, caller, body, now, base_url, show_record=show_record)


async def validate_on_loop(
    db: Database, caller: Caller, body: ValidateRequest
) -> ValidationResult | None:
    """:func:`validate` for the native answer (no ``record``), on the event loop: its one
    lookup on a connection of the express lane (``db/express.py``). Same rules and verdicts.

    None, with nothing done, when the lane cannot take it (SQLite, a Database bound to one
    connection, every lane connection lent): the caller then runs :func:`validate` on a worker
    thread."""
    lane = db.express
    if lane is None:
        return None
    caller.require("redeem")
    now = db.now()
    base_url = db.settings.public_base_url
    try:
        async with lane.connection() as connection:
            return await steps.judge_on_loop(lane, connection, caller, body, now, base_url)
    except LaneBusy:
        return None


def redeem(
    db: Database,
    caller: Caller,
    body: RedeemRequest,
    *,
    idem: idempotency.IdempotencyClaim | None = None,
    show_voucher: bool = True,
) -> RedemptionRecord:
    """Spend the voucher ``body`` names and record the redemption, in one transaction.

    ``show_voucher=False`` for callers that never show the record's whole ``voucher`` (the
    native answer): the lookup then reads only the columns the rules need."""
    caller.require("redeem")
    now = db.now()
    if idem is None and db.writes_single:
        # The lookup and the spend (one conditional statement writing every row) each as their
        # own transaction: under READ COMMITTED the spend never saw the lookup's snapshot
        # anyway, and its WHERE re-checks what could have changed. Two round trips, not four
        # (one, for the native answer, when the rules allow: steps._Fold), and the voucher's
        # row is locked only while that statement runs.
        with db.single_write() as connection:
            record = steps.spend(connection, caller, body, now, show_voucher=show_voucher)
    else:
        with db.unit_of_work() as session:
            idempotency.claim(session, db, caller.tenant_id, idem)
            record = steps.spend(session, caller, body, now, show_voucher=show_voucher)
            idempotency.bind_effect(
                session, caller.tenant_id, idem, "redemption", record.redemption.id
            )
            session.commit()
    metrics.redemption("redeem")
    return record


async def redeem_on_loop(
    db: Database, caller: Caller, body: RedeemRequest
) -> RedemptionRecord | None:
    """:func:`redeem` without an Idempotency-Key and without the whole voucher (the native
    answer), on the event loop: its lookup and its one spending statement (one statement in
    all when the rules allow: ``steps._Fold``) on a connection of the express lane
    (``db/express.py``), each statement its own transaction, as
    ``redeem`` runs them on a ``single_write`` connection. Same rules, rows and refusals.

    None, with nothing done, when the lane cannot take it (SQLite, a Database bound to one
    connection, every lane connection lent): the caller then runs :func:`redeem` on a worker
    thread."""
    lane = db.express
    if lane is None:
        return None
    caller.require("redeem")
    now = db.now()
    try:
        async with lane.connection() as connection:
            record = await steps.spend_on_loop(lane, connection, caller, body, now)
    except LaneBusy:
        return None
    metrics.redemption("redeem")
    return record


def rollback(
    db: Database,
    caller: Caller,
    redemption_id: str,
    reason: str | None = None,
    *,
    idem: idempotency.IdempotencyClaim | None = None,
) -> RedemptionRecord:
    """Give a redemption's value back: the balance, the used quantity, and ACTIVE if used up."""
    caller.require("redeem")
    now = db.now()
    with db.unit_of_work() as session:
        idempotency.claim(session, db, caller.tenant_id, idem)
        rolled = session.execute(
            update(Redemption)
            .where(
                Redemption.id == redemption_id,
                Redemption.tenant_id == caller.tenant_id,
                Redemption.status == "SUCCEEDED",
            )
            .values(
                status="ROLLED_BACK",
                rollback_id=new_id("rr"),
                rolled_back_at=now,
                rollback_reason=reason,
            )
            .returning(Redemption.voucher_id, Redemption.amount)
            .execution_options(synchronize_session=False)
        ).first()
        if rolled is None:
            exists = session.scalar(
                select(Redemption.id).where(
                    Redemption.id == redemption_id, Redemption.tenant_id == caller.tenant_id
                )
            )
            if exists is None:
                raise NotFound("no such redemption", field="redemption")
            raise Conflict(
                "the redemption is already rolled back",
                field="redemption",
                code=ErrorCode.ALREADY_ROLLED_BACK,
            )
        voucher_id, amount = rolled
        restored = session.execute(
            update(Voucher)
            .where(Voucher.id == voucher_id)
            .values(
                balance=case(
                    (Voucher.balance.is_(None), None), else_=Voucher.balance + (amount or 0)
                ),
                redeemed_quantity=Voucher.redeemed_quantity - 1,
                state=case((Voucher.state == "REDEEMED", "ACTIVE"), else_=Voucher.state),
                updated_at=now,
            )
            .returning(
                Voucher.balance,
                Voucher.redeemed_quantity,
                Voucher.state,
                Voucher.code,
                Voucher.campaign_id,
                Voucher.currency,
            )
            .execution_options(synchronize_session=False)
        ).one()
        balance, redeemed, state, code, campaign_id, currency = restored
        if balance is not None and amount:
            session.execute(
                insert(LedgerEntry).values(
                    tenant_id=caller.tenant_id,
                    voucher_id=voucher_id,
                    delta=amount,
                    kind="ROLLBACK",
                    redemption_id=redemption_id,
                    created_at=now,
                )
            )
        session.execute(
            insert(VoucherEvent).values(
                tenant_id=caller.tenant_id,
                voucher_id=voucher_id,
                campaign_id=campaign_id,
                kind="rolled_back",
                actor=caller.key_id,
                reason=reason,
                data={"redemption_id": redemption_id, "amount": amount},
                created_at=now,
            )
        )
        idempotency.bind_effect(
            session, caller.tenant_id, idem, "redemption:rollback", redemption_id
        )
        redemption = session.get(Redemption, redemption_id)
        assert redemption is not None
        session.commit()
    metrics.redemption("rollback")
    return RedemptionRecord(redemption, code, state, balance, redeemed, currency)


_WITH_VOUCHER = (
    Redemption,
    Voucher.code,
    Voucher.state,
    Voucher.balance,
    Voucher.redeemed_quantity,
    Voucher.currency,
    Voucher.type,
)


def _with_voucher(
    tenant_id: str,
) -> Select[Redemption, str, str, int | None, int, str | None, str]:
    """Redemptions joined with the voucher facts shown beside them: one query per page."""
    return (
        select(*_WITH_VOUCHER)
        .join(Voucher, Voucher.id == Redemption.voucher_id)
        .where(Redemption.tenant_id == tenant_id)
    )


def _record(row: Row[Redemption, str, str, int | None, int, str | None, str]) -> RedemptionRecord:
    redemption, code, state, balance, redeemed, currency, kind = row
    return RedemptionRecord(redemption, code, state, balance, redeemed, currency, voucher_type=kind)


def get_redemption(db: Database, caller: Caller, redemption_id: str) -> RedemptionRecord:
    with db.unit_of_work(write=False) as session:
        row = session.execute(
            _with_voucher(caller.tenant_id).where(Redemption.id == redemption_id)
        ).first()
        if row is None:
            raise NotFound("no such redemption", field="redemption")
        return _record(row)


def list_redemptions(
    db: Database, caller: Caller, *, voucher: str | None, limit: int, cursor: str | None
) -> Page[RedemptionRecord]:
    query = _with_voucher(caller.tenant_id)
    with db.unit_of_work(write=False) as session:
        if voucher is not None:
            found = find_voucher(session, caller.tenant_id, voucher)
            query = query.where(Redemption.voucher_id == found.voucher.id)
        if cursor:
            query = query.where(Redemption.id < cursor)
        rows = session.execute(query.order_by(Redemption.id.desc()).limit(limit + 1)).all()
    records = [_record(row) for row in rows[:limit]]
    return Page(records, records[-1].redemption.id if len(rows) > limit else None)


def number_voucher_redemptions(
    db: Database, caller: Caller, voucher: str, *, page: int, limit: int
) -> VoucherRedemptions:
    """Page ``page`` (from 1) of ``limit`` of one voucher's redemptions, newest first, with how
    many it has in all: for faces that number their pages (Voucherify) rather than follow a
    cursor. Rolled-back redemptions are listed too, with their status."""
    with db.unit_of_work(write=False) as session:
        found = find_voucher(session, caller.tenant_id, voucher)
        query = _with_voucher(caller.tenant_id).where(Redemption.voucher_id == found.voucher.id)
        total = session.scalar(
            select(func.count())
            .select_from(Redemption)
            .where(
                Redemption.tenant_id == caller.tenant_id,
                Redemption.voucher_id == found.voucher.id,
            )
        )
        rows = session.execute(
            query.order_by(Redemption.id.desc()).offset((page - 1) * limit).limit(limit)
        ).all()
        return VoucherRedemptions(found, [_record(row) for row in rows], int(total or 0))


def number_redemptions(
    db: Database,
    caller: Caller,
    *,
    voucher: str | None = None,
    campaign: str | None = None,
    customer: str | None = None,
    page: int,
    limit: int,
) -> tuple[list[RedemptionRecord], int]:
    """Page ``page`` (from 1) of ``limit`` of the tenant's redemptions, newest first, and how
    many match in all: for faces that number their pages (Voucherify) rather than follow a
    cursor. Rolled-back redemptions are listed too, with their status.

    ``voucher`` is a code or id, ``campaign`` an id or name, ``customer`` an id or the
    source_id the redemption was made for. A filter naming nothing that exists matches no
    redemption rather than failing (no lookup, so nothing for the guard to count either).
    """
    query = _with_voucher(caller.tenant_id)
    if voucher is not None:
        query = query.where(voucher_named(voucher))
    if campaign is not None:
        named = select(Campaign.id).where(
            Campaign.tenant_id == caller.tenant_id, campaign_named(campaign)
        )
        query = query.where(Voucher.campaign_id.in_(named))
    if customer is not None:
        sources = select(Customer.source_id).where(
            Customer.tenant_id == caller.tenant_id, Customer.id == customer
        )
        query = query.where(
            or_(Redemption.customer_ref == customer, Redemption.customer_ref.in_(sources))
        )
    with db.unit_of_work(write=False) as session:
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = session.execute(
            query.order_by(Redemption.id.desc()).offset((page - 1) * limit).limit(limit)
        ).all()
        return [_record(row) for row in rows], int(total)
