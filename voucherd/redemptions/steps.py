"""The two steps every redemption use case runs for each voucher: judge it, and spend it.

A single redemption (``service.validate``/``service.redeem``) and a stacked one
(``stacked.py``) run the same steps inside their own transaction, so a rule changed here holds
for both. Neither step commits.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from voucherd.auth.caller import Caller
from voucherd.errors import InvalidInput, NotFound, NotRedeemable
from voucherd.ids import new_id
from voucherd.redemptions import sql
from voucherd.redemptions.models import Redemption
from voucherd.redemptions.rules import (
    find_target,
    plan_redemption,
    refuse_if_unusable,
    why_debit_failed,
)
from voucherd.redemptions.schemas import (
    RedeemRequest,
    RedemptionRecord,
    ValidateRequest,
    ValidationResult,
)
from voucherd.vouchers.schemas import VoucherRecord, present_voucher


def judge(
    session: Session, caller: Caller, body: ValidateRequest, now: datetime, base_url: str
) -> ValidationResult:
    """Would this voucher redeem now against the order, and for what? Changes nothing."""
    order_amount = body.order.amount if body.order else None
    try:
        target = find_target(session, caller.tenant_id, body.code)
    except NotFound as exc:  # not_found, or code_mistyped for a typo of a default code
        return ValidationResult(False, exc.code, exc.detail, None, None, order_amount)
    record = VoucherRecord(target.voucher, target.campaign.name, campaign=target.campaign)
    shown = present_voucher(record, now=now, base_url=base_url)
    try:
        refuse_if_unusable(target, now)
        plan = plan_redemption(target, body)
    except (NotRedeemable, InvalidInput) as exc:
        return ValidationResult(False, exc.code, exc.detail, shown, None, order_amount, record)
    return ValidationResult(True, None, None, shown, plan, order_amount, record)


def spend(session: Session, caller: Caller, body: RedeemRequest, now: datetime) -> RedemptionRecord:
    """Judge the voucher, spend it with one conditional UPDATE, and record the redemption."""
    target = find_target(session, caller.tenant_id, body.code)
    refuse_if_unusable(target, now)
    plan = plan_redemption(target, body)
    voucher = target.voucher
    # Called through the module so the concurrency tests can slow the debit down.
    debited = sql.debit(session, voucher, plan, now)
    if debited is None:
        raise why_debit_failed(session, voucher, plan)
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
    sql.record_redemption(
        session,
        redemption,
        spend=plan.spend or 0,
        campaign_id=voucher.campaign_id,
        actor=caller.key_id,
    )
    balance, redeemed, state = debited
    # The UPDATE bypassed the loaded voucher; show it as the spend left it, without a re-read.
    changed = {"balance": balance, "redeemed_quantity": redeemed, "state": state, "updated_at": now}
    for name, value in changed.items():
        set_committed_value(voucher, name, value)
    shown = VoucherRecord(voucher, target.campaign.name, campaign=target.campaign)
    return RedemptionRecord(
        redemption, voucher.code, state, balance, redeemed, voucher.currency, voucher=shown
    )
