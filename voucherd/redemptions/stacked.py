"""Stacked validation and redemption: several vouchers against one order, for one customer.

A stacked redemption is one use case and one transaction: the customer is resolved, every
voucher is judged and spent, and the Idempotency-Key is claimed in the same unit of work, so a
refusal of any voucher (or a failure between two of them) leaves no voucher spent and no
redemption recorded. A stacked validation judges each voucher on its own against the whole
order and adds up what they would take off it; it changes nothing.

The steps (judge, spend) are ``redemptions/steps.py``'s, the ones a single redemption runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.orm import Session

from voucherd.auth.caller import Caller
from voucherd.customers.resolve import customer_ref
from voucherd.db.engine import Database
from voucherd.errors import InvalidInput
from voucherd.idempotency import service as idempotency
from voucherd.observability import metrics
from voucherd.redemptions import steps
from voucherd.redemptions.schemas import (
    RedeemRequest,
    RedemptionRecord,
    ValidateRequest,
    ValidationResult,
)

# How many vouchers one stacked request may name (Voucherify's own limit).
MAX_STACKED = 30


@dataclass(frozen=True)
class CustomerGiven:
    """The customer a stacked request names: by its own reference, or by voucherd's id."""

    source_id: str | None = None
    id: str | None = None


@dataclass(frozen=True)
class StackedValidation:
    results: list[ValidationResult]
    # What the valid vouchers would take off the order together (discounts and spends).
    taken: int
    customer_ref: str | None


def validate_stacked(
    db: Database,
    caller: Caller,
    items: Sequence[ValidateRequest],
    *,
    customer: CustomerGiven | None = None,
) -> StackedValidation:
    """Would each voucher redeem now against the order, and what would they take together?"""
    caller.require("redeem")
    _check_count(items)
    now = db.now()
    with db.unit_of_work(write=False) as session:
        ref = _customer_ref(session, caller, customer)
        base_url = db.settings.public_base_url
        results = [steps.judge(session, caller, _for(i, ref), now, base_url) for i in items]
    taken = sum(
        (r.plan.discount_amount or 0) + (r.plan.spend or 0)
        for r in results
        if r.valid and r.plan is not None
    )
    return StackedValidation(results, taken, ref)


def redeem_stacked(
    db: Database,
    caller: Caller,
    items: Sequence[RedeemRequest],
    *,
    customer: CustomerGiven | None = None,
    idem: idempotency.IdempotencyClaim | None = None,
) -> list[RedemptionRecord]:
    """Redeem every voucher, or none: the first refusal undoes the spends before it."""
    caller.require("redeem")
    _check_count(items)
    if len({item.code for item in items}) < len(items):
        raise InvalidInput("a voucher is given more than once", field="redeemables")
    now = db.now()
    with db.unit_of_work() as session:
        idempotency.claim(session, db, caller.tenant_id, idem)
        ref = _customer_ref(session, caller, customer)
        records: list[RedemptionRecord] = []
        for item in items:
            record = steps.spend(session, caller, _for(item, ref), now)
            if any(r.redemption.voucher_id == record.redemption.voucher_id for r in records):
                # The same voucher by its code and by its id.
                raise InvalidInput("a voucher is given more than once", field="redeemables")
            records.append(record)
        idempotency.bind_effect(
            session, caller.tenant_id, idem, "redemption", records[0].redemption.id
        )
        session.commit()
    for _ in records:
        metrics.redemption("redeem")
    return records


_Item = TypeVar("_Item", ValidateRequest, RedeemRequest)


def _for(item: _Item, ref: str | None) -> _Item:
    """The item as the customer's: a reference it carries itself is kept."""
    if item.customer_ref is not None or ref is None:
        return item
    return item.model_copy(update={"customer_ref": ref})


def _customer_ref(session: Session, caller: Caller, given: CustomerGiven | None) -> str | None:
    if given is None:
        return None
    return customer_ref(session, caller.tenant_id, source_id=given.source_id, customer_id=given.id)


def _check_count(items: Sequence[object]) -> None:
    if not 1 <= len(items) <= MAX_STACKED:
        raise InvalidInput(f"give 1 to {MAX_STACKED} vouchers", field="redeemables")
