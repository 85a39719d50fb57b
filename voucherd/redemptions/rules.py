"""What a redemption may take: the voucher it names, whether it is usable now, and the plan
(how much to spend, or what discount to give). Shared by validate and redeem, so a validation
answers exactly what a redemption would do."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from voucherd.campaigns.models import Campaign
from voucherd.errors import ErrorCode, InvalidInput, NotRedeemable, voucher_state
from voucherd.redemptions.discounts import discount_for
from voucherd.redemptions.schemas import Plan, RedeemableRequest
from voucherd.vouchers.lookup import find_voucher
from voucherd.vouchers.models import Voucher
from voucherd.vouchers.validity import refusal


@dataclass(frozen=True)
class Target:
    """A voucher with the campaign rules needed to judge it."""

    voucher: Voucher
    campaign: Campaign


def find_target(session: Session, tenant_id: str, code: str) -> Target:
    """The voucher a redemption names (by code or id), NotFound naming ``code``."""
    found = find_voucher(session, tenant_id, code, field="code")
    assert found.campaign is not None  # the lookup reads the campaign with the voucher
    return Target(found.voucher, found.campaign)


def refuse_if_unusable(target: Target, now: datetime) -> None:
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
            "the voucher has no redemptions left", field="code", code=ErrorCode.QUANTITY_EXCEEDED
        )


def plan_redemption(target: Target, body: RedeemableRequest) -> Plan:
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


def why_debit_failed(session: Session, voucher: Voucher, plan: Plan) -> NotRedeemable:
    state, balance, redeemed, quantity = session.execute(
        select(
            Voucher.state, Voucher.balance, Voucher.redeemed_quantity, Voucher.redemption_quantity
        ).where(Voucher.id == voucher.id)
    ).one()
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
