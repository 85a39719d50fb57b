"""The two steps every redemption use case runs for each voucher: judge it, and spend it.

A single redemption (``service.validate``/``service.redeem``) and a stacked one
(``stacked.py``) run the same steps inside their own transaction, so a rule changed here holds
for both. Neither step commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from voucherd.auth.caller import Caller
from voucherd.db import driver
from voucherd.db.dialect import is_postgresql
from voucherd.db.express import ExpressLane, LaneConnection
from voucherd.errors import InvalidInput, NotFound, NotRedeemable
from voucherd.ids import new_id
from voucherd.redemptions import sql
from voucherd.redemptions.models import Redemption
from voucherd.redemptions.rules import (
    DEBIT_STATE,
    Target,
    debit_refusal,
    find_target,
    plan_redemption,
    refuse_if_unusable,
    why_debit_failed,
)
from voucherd.redemptions.schemas import (
    Plan,
    RedeemRequest,
    RedemptionRecord,
    ValidateRequest,
    ValidationResult,
)
from voucherd.vouchers.lookup import RowLookup, Width, shown_record, voucher_of
from voucherd.vouchers.schemas import VoucherRecord, present_voucher
from voucherd.vouchers.terms import detached


def judge(
    session: Session | Connection,
    caller: Caller,
    body: ValidateRequest,
    now: datetime,
    base_url: str,
    *,
    show_record: bool = True,
) -> ValidationResult:
    """Would this voucher redeem now against the order, and for what? Changes nothing.

    ``show_record``: make the result's ``record`` (the voucher and campaign entities) for the
    faces that show more than ``voucher``; without it, ``record`` is None and ``voucher`` is
    presented straight from the row (the native answer: no entity made, fewer columns read)."""
    width = Width.WHOLE if show_record else Width.SHOWN
    try:
        target = find_target(session, caller.tenant_id, body.code, width=width)
    except NotFound as exc:  # not_found, or code_mistyped for a typo of a default code
        return _not_found(body, exc)
    return _judged(target, body, now, base_url, show_record=show_record)


async def judge_on_loop(
    lane: ExpressLane,
    connection: LaneConnection,
    caller: Caller,
    body: ValidateRequest,
    now: datetime,
    base_url: str,
) -> ValidationResult:
    """:func:`judge` on PostgreSQL on the express lane's connection (``db/express.py``), for
    the native answer (no ``record``): the same lookup (one statement), rules and refusals."""
    try:
        lookup = RowLookup(caller.tenant_id, body.code, field="code", width=Width.SHOWN)
        target = Target(lookup.pick(await lane.rows(connection, lookup.statement, lookup.params)))
    except NotFound as exc:
        return _not_found(body, exc)
    return _judged(target, body, now, base_url, show_record=False)


def _not_found(body: ValidateRequest, exc: NotFound) -> ValidationResult:
    order_amount = body.order.amount if body.order else None
    return ValidationResult(False, exc.code, exc.detail, None, None, order_amount)


def _judged(
    target: Target, body: ValidateRequest, now: datetime, base_url: str, *, show_record: bool
) -> ValidationResult:
    """The verdict on a voucher found: what a redemption would give, or why it would not."""
    order_amount = body.order.amount if body.order else None
    if show_record:
        record: VoucherRecord | None = VoucherRecord(
            target.voucher, target.row.c__name, campaign=target.campaign
        )
    else:
        record = None
    shown = present_voucher(record or shown_record(target.row), now=now, base_url=base_url)
    try:
        refuse_if_unusable(target, now)
        plan = plan_redemption(target, body)
    except (NotRedeemable, InvalidInput) as exc:
        return ValidationResult(False, exc.code, exc.detail, shown, None, order_amount, record)
    return ValidationResult(True, None, None, shown, plan, order_amount, record)


def spend(
    session: Session | Connection,
    caller: Caller,
    body: RedeemRequest,
    now: datetime,
    *,
    show_voucher: bool = True,
) -> RedemptionRecord:
    """Judge the voucher, then spend it and record the redemption with one conditional
    statement (``sql.debit``): the lookup and that statement are the round trips before the
    COMMIT, and the voucher's row is locked only from that statement on. On PostgreSQL
    ``session`` may be a ``Database.single_write`` connection: there is no COMMIT to wait for.
    On PostgreSQL, for the native answer, the lookup and the spend are first tried as one
    statement (:class:`_Fold`).

    ``show_voucher``: read the whole voucher and campaign, so that the record's ``voucher`` can
    show them (the faces answering with the whole voucher); without it, the narrow row the rules
    need, and ``voucher`` is None."""
    width = Width.WHOLE if show_voucher else Width.JUDGED
    lookup = RowLookup(caller.tenant_id, body.code, field="code", width=width)
    fold = _Fold.of(lookup, caller, body, now) if is_postgresql(session) else None
    if fold is None:
        target = Target(lookup.pick(driver.rows(session, lookup.statement, lookup.params)))
    else:
        row = lookup.pick(driver.rows(session, fold.statement, fold.params))
        if row.spent_state is not None:
            return fold.record(row)
        target = Target(row)
    refuse_if_unusable(target, now)
    plan = plan_redemption(target, body)
    redemption = _redemption_row(caller, body, target.row, plan, now)
    # Called through the module so the concurrency tests can swap in a racy spend.
    debited = sql.debit(
        session, redemption, plan, campaign_id=target.row.campaign_id, actor=caller.key_id
    )
    if debited is None:
        raise why_debit_failed(session, target.row.id, plan)
    return _record(redemption, target, debited, now, show_voucher=show_voucher)


async def spend_on_loop(
    lane: ExpressLane,
    connection: LaneConnection,
    caller: Caller,
    body: RedeemRequest,
    now: datetime,
) -> RedemptionRecord:
    """:func:`spend` on PostgreSQL on the express lane's connection (``db/express.py``), for the
    native answer (no whole voucher): the same lookup, rules, statements and refusals, each
    statement its own transaction as on a ``single_write`` connection."""
    lookup = RowLookup(caller.tenant_id, body.code, field="code", width=Width.JUDGED)
    fold = _Fold.of(lookup, caller, body, now)
    if fold is None:
        target = Target(lookup.pick(await lane.rows(connection, lookup.statement, lookup.params)))
    else:
        row = lookup.pick(await lane.rows(connection, fold.statement, fold.params))
        if row.spent_state is not None:
            return fold.record(row)
        target = Target(row)
    refuse_if_unusable(target, now)
    plan = plan_redemption(target, body)
    row = target.row
    redemption = _redemption_row(caller, body, row, plan, now)
    statement, params = sql.debit_on_postgresql(
        redemption, plan, campaign_id=row.campaign_id, actor=caller.key_id
    )
    debited = await lane.rows(connection, statement, params)
    if not debited:
        state = await lane.rows(connection, DEBIT_STATE, {"voucher_id": row.id})
        raise debit_refusal(state[0], plan)
    return _record(redemption, target, debited[0], now, show_voucher=False)


class _Fold:
    """A redemption's lookup and spend as one statement on PostgreSQL
    (``sql.find_and_debit_on_postgresql``): one round trip instead of two when the voucher's
    rules are ones SQL judges (a plain GIFT, CASH or LOYALTY voucher in its dates, no
    validity windows). Its row is the lookup's row either way; when it spent nothing
    (``spent_state`` NULL) the caller judges that row and spends as without the fold, so
    every refusal and every other kind of voucher is still judged by ``rules.py``."""

    __slots__ = ("body", "caller", "now", "params", "redemption_id", "statement")

    def __init__(self, caller: Caller, body: RedeemRequest, now: datetime, code: str) -> None:
        self.caller, self.body, self.now = caller, body, now
        self.redemption_id = new_id("r")
        self.statement, self.params = sql.find_and_debit_on_postgresql(
            caller.tenant_id,
            code,
            body,
            redemption_id=self.redemption_id,
            now=now,
            actor=caller.key_id,
        )

    @classmethod
    def of(
        cls, lookup: RowLookup, caller: Caller, body: RedeemRequest, now: datetime
    ) -> _Fold | None:
        """The fold for a lookup of one code, typed exactly as stored (not an id, no loose
        form to try: the statement matches one code), for the narrow row; None otherwise."""
        code = lookup.single_code
        if code is None or lookup.width is not Width.JUDGED:
            return None
        return cls(caller, body, now, code)

    def record(self, row: Any) -> RedemptionRecord:
        """The redemption the statement wrote, from its row."""
        redemption = _redemption(
            self.caller, self.body, self.redemption_id, row.id, row.spend, self.now
        )
        return RedemptionRecord(
            redemption,
            row.code,
            row.spent_state,
            row.spent_balance,
            row.spent_redeemed_quantity,
            row.currency,
            voucher_type=row.type,
        )


def _redemption_row(
    caller: Caller, body: RedeemRequest, row: Any, plan: Plan, now: datetime
) -> Redemption:
    amount = plan.spend if plan.spend is not None else plan.discount_amount
    return _redemption(caller, body, new_id("r"), row.id, amount, now)


def _redemption(
    caller: Caller,
    body: RedeemRequest,
    redemption_id: str,
    voucher_id: str,
    amount: int | None,
    now: datetime,
) -> Redemption:
    """The row to record, made as a load makes one (never added to a session: a statement
    writes it): the constructor's change events cost 30-34 µs of CPU, this 3-5 µs."""
    order = body.order
    return detached(
        Redemption,
        {
            "id": redemption_id,
            "tenant_id": caller.tenant_id,
            "voucher_id": voucher_id,
            "status": "SUCCEEDED",
            "amount": amount,
            "order_amount": order.amount if order else None,
            "order_reference": order.reference if order else None,
            "merchant_ref": body.merchant_ref,
            "store_ref": body.store_ref,
            "customer_ref": body.customer_ref,
            "metadata_": body.metadata,
            "created_at": now,
        },
    )


def _record(
    redemption: Redemption, target: Target, debited: Any, now: datetime, *, show_voucher: bool
) -> RedemptionRecord:
    """The redemption as the spend left the voucher (``debited``: its balance, redeemed
    quantity and state)."""
    row = target.row
    balance, redeemed, state = debited

    def shown() -> VoucherRecord:
        # The voucher as the spend left it, without a re-read; made only for a face showing it.
        changed = voucher_of(
            row, balance=balance, redeemed_quantity=redeemed, state=state, updated_at=now
        )
        return VoucherRecord(changed, row.c__name, campaign=target.campaign)

    return RedemptionRecord(
        redemption,
        row.code,
        state,
        balance,
        redeemed,
        row.currency,
        voucher_type=row.type,
        voucher_source=shown if show_voucher else None,
    )
