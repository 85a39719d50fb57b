"""Validate, redeem and roll back.

The spend is one conditional UPDATE (``... WHERE balance >= :spend ... RETURNING``), backed by
``CHECK (balance >= 0)``: no read-modify-write, so no interleaving of concurrent redemptions can
overspend, on PostgreSQL or SQLite. The balance column is the cached sum of the ledger, and
both change in the same transaction.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, case, func, insert, or_, select, text, update
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql import Select

from voucherd.auth.service import Caller
from voucherd.campaigns.models import Campaign
from voucherd.codes.generator import is_mistyped
from voucherd.customers.models import Customer
from voucherd.db.dialect import is_postgresql
from voucherd.db.engine import Database
from voucherd.errors import Conflict, InvalidInput, NotFound, NotRedeemable
from voucherd.guard import service as guard
from voucherd.idempotency import service as idempotency
from voucherd.ids import new_id
from voucherd.observability import metrics
from voucherd.pagination import Page
from voucherd.redemptions.discounts import discount_for
from voucherd.redemptions.models import Redemption
from voucherd.redemptions.schemas import (
    Plan,
    RedeemableRequest,
    RedeemRequest,
    RedemptionRecord,
    ValidateRequest,
    ValidationResult,
    VoucherRedemptions,
)
from voucherd.vouchers.models import LedgerEntry, Voucher, VoucherEvent
from voucherd.vouchers.schemas import VoucherRecord, present_voucher
from voucherd.vouchers.service import find_voucher
from voucherd.vouchers.validity import refusal


class _Target:
    """A voucher with the campaign rules needed to judge it."""

    def __init__(self, voucher: Voucher, campaign: Campaign) -> None:
        self.voucher = voucher
        self.campaign = campaign


def _find_target(session: Session, tenant_id: str, code: str) -> _Target:
    if is_mistyped(code):
        # A typo in a default code fails its check character: no database lookup needed.
        raise NotFound("no such voucher", field="code")
    guard.before_lookup()  # a caller refused for guessing (voucherd/guard) stops here
    row = session.execute(
        select(Voucher, Campaign)
        .join(Campaign, Campaign.id == Voucher.campaign_id)
        .where(Voucher.tenant_id == tenant_id, or_(Voucher.code == code, Voucher.id == code))
    ).first()
    if row is None:
        guard.failed_lookup()
        raise NotFound("no such voucher", field="code")
    return _Target(row[0], row[1])


def _refuse_if_unusable(target: _Target, now: datetime) -> None:
    v, c = target.voucher, target.campaign
    why = refusal(
        state=v.state,
        start_date=v.start_date,
        expiration_date=v.expiration_date,
        campaign_active=c.active,
        timezone=c.timezone,
        timeframe=c.validity_timeframe,
        days_of_week=c.validity_day_of_week,
        hours=c.validity_hours,
        now=now,
    )
    if why is not None:
        raise NotRedeemable(why.detail, field="code", code=why.code)
    if v.redemption_quantity is not None and v.redeemed_quantity >= v.redemption_quantity:
        raise NotRedeemable(
            "the voucher has no redemptions left", field="code", code="quantity_exceeded"
        )


def _plan(target: _Target, body: RedeemableRequest) -> Plan:
    v = target.voucher
    order = body.order
    order_amount = order.amount if order else None
    if v.type == "DISCOUNT":
        if body.amount is not None:
            raise InvalidInput(
                "a DISCOUNT voucher takes no amount; send order.amount", field="amount"
            )
        discount = target.campaign.discount or {}
        amount = discount_for(
            discount,
            order_amount,
            [i.model_dump() for i in order.items] if order and order.items else None,
        )
        if discount.get("type") == "UNIT" and amount is None:
            raise NotRedeemable(
                f"the order has no {discount['unit_type']} item for this unit discount",
                field="order.items",
                code="order_rules_violated",
            )
        return Plan(spend=None, discount_amount=amount)
    balance = v.balance or 0
    if v.type == "CASH":
        if body.amount is not None and body.amount != balance:
            raise InvalidInput(
                f"a CASH voucher is redeemed once for its whole value of {balance}", field="amount"
            )
        return Plan(spend=balance, discount_amount=None)
    if body.amount is not None:
        spend = body.amount
    elif order_amount is not None:
        spend = min(balance, order_amount)
    else:
        raise InvalidInput("say how much to take: amount, or order.amount", field="amount")
    if spend <= 0:
        raise InvalidInput("nothing to take: the order amount is zero", field="order.amount")
    if spend > balance:
        raise NotRedeemable(
            f"the balance of {balance} does not cover {spend}",
            field="amount",
            code="insufficient_balance",
            extra={"balance": balance},
        )
    return Plan(spend=spend, discount_amount=None)


def validate(db: Database, caller: Caller, body: ValidateRequest) -> ValidationResult:
    """Would this redemption succeed now, and what would it give? Changes nothing."""
    caller.require("redeem")
    now = db.now()
    order_amount = body.order.amount if body.order else None
    with db.unit_of_work(write=False) as session:
        try:
            target = _find_target(session, caller.tenant_id, body.code)
        except NotFound as exc:
            return ValidationResult(False, "not_found", exc.detail, None, None, order_amount)
    record = VoucherRecord(target.voucher, target.campaign.name, campaign=target.campaign)
    shown = present_voucher(record, now=now, base_url=db.settings.public_base_url)
    try:
        _refuse_if_unusable(target, now)
        plan = _plan(target, body)
    except (NotRedeemable, InvalidInput) as exc:
        return ValidationResult(False, exc.code, exc.detail, shown, None, order_amount, record)
    return ValidationResult(True, None, None, shown, plan, order_amount, record)


def _debit(
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


def _why_debit_failed(session: Session, voucher: Voucher, plan: Plan) -> NotRedeemable:
    state, balance, redeemed, quantity = session.execute(
        select(
            Voucher.state, Voucher.balance, Voucher.redeemed_quantity, Voucher.redemption_quantity
        ).where(Voucher.id == voucher.id)
    ).one()
    if state != "ACTIVE":
        return NotRedeemable(
            f"the voucher is {state}", field="code", code=f"voucher_{state.lower()}"
        )
    if quantity is not None and redeemed >= quantity:
        return NotRedeemable(
            "the voucher has no redemptions left", field="code", code="quantity_exceeded"
        )
    return NotRedeemable(
        f"the balance of {balance} does not cover {plan.spend}",
        field="amount",
        code="insufficient_balance",
        extra={"balance": balance},
    )


_REDEMPTION_COLUMNS = (
    "id", "tenant_id", "voucher_id", "status", "amount", "order_amount", "order_reference",
    "merchant_ref", "store_ref", "customer_ref", "metadata", "created_at",
)  # fmt: skip
_REDEMPTION_TABLE = cast(Table, Redemption.__table__)
# PostgreSQL: the redemption, its ledger entry and its event in one round trip, after the
# conditional UPDATE (``_debit``) has already taken the money.
_RECORD_ON_POSTGRESQL = text(
    "WITH r AS (INSERT INTO redemption ("
    + ", ".join(_REDEMPTION_COLUMNS)
    + ") VALUES ("
    + ", ".join(
        "CAST(:metadata AS jsonb)" if c == "metadata" else f":{c}" for c in _REDEMPTION_COLUMNS
    )
    + ") RETURNING id), "
    "ledger AS (INSERT INTO ledger_entry "
    "(tenant_id, voucher_id, delta, kind, redemption_id, created_at) "
    "SELECT :tenant_id, :voucher_id, -CAST(:spend AS bigint), 'REDEMPTION', id, :created_at "
    "FROM r WHERE CAST(:spend AS bigint) > 0) "
    "INSERT INTO voucher_event (tenant_id, voucher_id, campaign_id, kind, actor, data, created_at) "
    "SELECT :tenant_id, :voucher_id, :campaign_id, 'redeemed', :actor, CAST(:event_data AS jsonb), "
    ":created_at FROM r"
)
_RECORD_REDEMPTION_ON_SQLITE = insert(_REDEMPTION_TABLE)
_RECORD_LEDGER_ON_SQLITE = insert(cast(Table, LedgerEntry.__table__))
_RECORD_EVENT_ON_SQLITE = insert(cast(Table, VoucherEvent.__table__))


def _record_redemption(
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


def redeem(
    db: Database,
    caller: Caller,
    body: RedeemRequest,
    *,
    idem: idempotency.IdempotencyClaim | None = None,
) -> RedemptionRecord:
    caller.require("redeem")
    now = db.now()
    with db.unit_of_work() as session:
        idempotency.claim(session, db, caller.tenant_id, idem)
        target = _find_target(session, caller.tenant_id, body.code)
        _refuse_if_unusable(target, now)
        plan = _plan(target, body)
        voucher = target.voucher
        debited = _debit(session, voucher, plan, now)
        if debited is None:
            raise _why_debit_failed(session, voucher, plan)
        redemption = Redemption(
            id=new_id("r"),
            tenant_id=caller.tenant_id,
            voucher_id=voucher.id,
            status="SUCCEEDED",
            amount=plan.spend if plan.spend is not None else plan.discount_amount,
            order_amount=body.order.amount if body.order else None,
            order_reference=body.order.reference if body.order else None,
            merchant_ref=body.merchant_ref,
            store_ref=body.store_ref,
            customer_ref=body.customer_ref,
            metadata_=body.metadata,
            created_at=now,
        )
        _record_redemption(
            session,
            redemption,
            spend=plan.spend or 0,
            campaign_id=voucher.campaign_id,
            actor=caller.key_id,
        )
        idempotency.bind_effect(session, caller.tenant_id, idem, "redemption", redemption.id)
        session.commit()
    metrics.redemption("redeem")
    balance, redeemed, state = debited
    # The UPDATE bypassed the loaded voucher; show it as the spend left it, without a re-read.
    changed = {"balance": balance, "redeemed_quantity": redeemed, "state": state, "updated_at": now}
    for name, value in changed.items():
        set_committed_value(voucher, name, value)
    shown = VoucherRecord(voucher, target.campaign.name, campaign=target.campaign)
    return RedemptionRecord(
        redemption, voucher.code, state, balance, redeemed, voucher.currency, voucher=shown
    )


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
                code="already_rolled_back",
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
        query = query.where(or_(Voucher.code == voucher, Voucher.id == voucher))
    if campaign is not None:
        named = select(Campaign.id).where(
            Campaign.tenant_id == caller.tenant_id,
            or_(Campaign.id == campaign, Campaign.name == campaign),
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
