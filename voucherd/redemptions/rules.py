"""What a redemption may take: the voucher it names, whether it is usable now, and the plan
(how much to spend, or what discount to give). Shared by validate and redeem, so a validation
answers exactly what a redemption would do."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, select
from sqlalchemy.orm import Session

from voucherd.campaigns.models import Campaign
from voucherd.errors import ErrorCode, InvalidInput, NotRedeemable, voucher_state
from voucherd.redemptions.discounts import discount_for
from voucherd.redemptions.schemas import Plan, RedeemableRequest
from voucherd.vouchers.lookup import Width, campaign_of, find_voucher_row, voucher_of
from voucherd.vouchers.models import Voucher
from voucherd.vouchers.validity import refusal


class Target:
    """A voucher with the campaign rules needed to judge it, read as one row
    (``vouchers/lookup.find_voucher_row``): the rules read the row's columns; the entities
    are made only for a caller that shows them (validation, the faces' whole voucher)."""

    __slots__ = ("_campaign", "_voucher", "row")

    def __init__(self, row: Row[Any]) -> None:
        # The voucher's attributes by their names, the campaign's prefixed ``c__``.
        self.row = row
        self._voucher: Voucher | None = None
        self._campaign: Campaign | None = None

    @property
    def voucher(self) -> Voucher:
        """The voucher as it was read (a detached entity, made once)."""
        if self._voucher is None:
            self._voucher = voucher_of(self.row)
        return self._voucher

    @property
    def campaign(self) -> Campaign:
        """Its campaign (a detached entity, made once)."""
        if self._campaign is None:
            self._campaign = campaign_of(self.row)
        return self._campaign


def find_target(
    session: Session | Connection, tenant_id: str, code: str, *, width: Width = Width.WHOLE
) -> Target:
    """The voucher a redemption names (by code or id), NotFound naming ``code``. Below
    :attr:`Width.WHOLE`, ``campaign`` cannot be made; at :attr:`Width.JUDGED`, nor ``voucher``:
    the rules read only the row's columns."""
    return Target(find_voucher_row(session, tenant_id, code, field="code", width=width))


def refuse_if_unusable(target: Target, now: datetime) -> None:
    v = target.row
    why = refusal(
        state=v.state,
        start_date=v.start_date,
        expiration_date=v.expiration_date,
        campaign_active=v.c__active,
        timezone=v.c__timezone,
        timeframe=v.c__validity_timeframe,
        days_of_week=v.c__validity_day_of_week,
        hours=v.c__validity_hours,
        now=now,
    )
    if why is not None:
        raise NotRedeemable(why.detail, field="code", code=why.code)
    if v.redemption_quantity is not None and v.redeemed_quantity >= v.redemption_quantity:
        raise NotRedeemable(
            "the voucher has no redemptions left", field="code", code=ErrorCode.QUANTITY_EXCEEDED
        )


def plan_redemption(target: Target, body: RedeemableRequest) -> Plan:
    v = target.row
    order = body.order
    order_amount = order.amount if order else None
    if v.type == "DISCOUNT":
        if body.amount is not None:
            raise InvalidInput(
                "a DISCOUNT voucher takes no amount; send order.amount", field="amount"
            )
        discount = v.c__discount or {}
        amount = discount_for(
            discount,
            order_amount,
            [i.model_dump() for i in order.items] if order and order.items else None,
        )
        if discount.get("type") == "UNIT" and amount is None:
            raise NotRedeemable(
                f"the order has no {discount['unit_type']} item for this unit discount",
                field="order.items",
                code=ErrorCode.ORDER_RULES_VIOLATED,
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
            code=ErrorCode.INSUFFICIENT_BALANCE,
            extra={"balance": balance},
        )
    return Plan(spend=spend, discount_amount=None)


# What a refused spend is explained by (:func:`debit_refusal`), read after the refusal.
DEBIT_STATE = select(
    Voucher.state, Voucher.balance, Voucher.redeemed_quantity, Voucher.redemption_quantity
).where(Voucher.id == bindparam("voucher_id"))


def why_debit_failed(session: Session | Connection, voucher_id: str, plan: Plan) -> NotRedeemable:
    return debit_refusal(session.execute(DEBIT_STATE, {"voucher_id": voucher_id}).one(), plan)


def debit_refusal(row: Any, plan: Plan) -> NotRedeemable:
    """Why the conditional spend took nothing, from the voucher's :data:`DEBIT_STATE` row as
    read after it."""
    state, balance, redeemed, quantity = row
    if state != "ACTIVE":
        return NotRedeemable(f"the voucher is {state}", field="code", code=voucher_state(state))
    if quantity is not None and redeemed >= quantity:
        return NotRedeemable(
            "the voucher has no redemptions left", field="code", code=ErrorCode.QUANTITY_EXCEEDED
        )
    return NotRedeemable(
        f"the balance of {balance} does not cover {plan.spend}",
        field="amount",
        code=ErrorCode.INSUFFICIENT_BALANCE,
        extra={"balance": balance},
    )
