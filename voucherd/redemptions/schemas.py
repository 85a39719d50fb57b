"""Validation and redemption request bodies, and how a redemption is shown."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pydantic import Field, model_validator

from voucherd.fields import (
    CustomerRef,
    Metadata,
    MinorUnits,
    PositiveMinorUnits,
    Quantity,
    Reference,
    RequestModel,
    TypedCode,
)
from voucherd.money import MAX_MINOR_UNITS
from voucherd.redemptions.models import Redemption
from voucherd.vouchers.schemas import VoucherRecord


class OrderItem(RequestModel):
    sku: str = Field(min_length=1, max_length=100)
    quantity: Quantity
    price: MinorUnits = Field(description="Unit price in minor units.")

    @model_validator(mode="after")
    def _line_total_is_money(self) -> OrderItem:
        # A UNIT discount is quantity x price: keep it inside the amounts voucherd stores.
        if self.quantity * self.price > MAX_MINOR_UNITS:
            raise ValueError(f"quantity x price is above {MAX_MINOR_UNITS}")
        return self


class Order(RequestModel):
    amount: MinorUnits | None = Field(default=None, description="Order total in minor units.")
    reference: Reference | None = None
    items: list[OrderItem] | None = Field(default=None, max_length=500)


class RedeemableRequest(RequestModel):
    code: TypedCode
    amount: PositiveMinorUnits | None = Field(
        default=None,
        description="GIFT/LOYALTY: how much to take. Without it, as much of order.amount as the "
        "balance covers.",
    )
    order: Order | None = None
    customer_ref: CustomerRef | None = None


class ValidateRequest(RedeemableRequest):
    pass


class RedeemRequest(RedeemableRequest):
    merchant_ref: Reference | None = None
    store_ref: Reference | None = None
    metadata: Metadata | None = None


class RollbackRequest(RequestModel):
    reason: str | None = Field(default=None, max_length=500)

    @model_validator(mode="before")
    @classmethod
    def _allow_empty(cls, data: Any) -> Any:
        return {} if data is None else data


@dataclass(frozen=True)
class Plan:
    """What one redemption would do: take ``spend`` from the balance and/or grant a discount."""

    spend: int | None
    discount_amount: int | None


@dataclass(frozen=True)
class ValidationResult:
    valid: bool
    reason: str | None
    detail: str | None
    voucher: dict[str, Any] | None
    plan: Plan | None
    order_amount: int | None
    # The voucher judged, with its campaign, for faces that show more of it than ``voucher``.
    record: VoucherRecord | None = None


@dataclass(frozen=True)
class RedemptionRecord:
    redemption: Redemption
    code: str
    voucher_state: str
    voucher_balance: int | None
    redeemed_quantity: int
    currency: str | None
    # The voucher's type (GIFT, CASH, DISCOUNT, LOYALTY) where ``voucher`` is not loaded (reads):
    # faces whose redemption shape depends on it (Voucherify's ``gift``) need no second read.
    voucher_type: str | None = None
    # Makes ``voucher`` where the use case had it at hand (redeem), on first use only: the
    # native answer never shows it, and making the entities costs CPU on every redemption.
    voucher_source: Callable[[], VoucherRecord] | None = field(default=None, repr=False)

    @cached_property
    def voucher(self) -> VoucherRecord | None:
        """The voucher as the redemption left it, where the use case had it at hand (redeem):
        faces that answer with the whole voucher (Voucherify) need no second read."""
        return self.voucher_source() if self.voucher_source is not None else None


@dataclass(frozen=True)
class VoucherRedemptions:
    """One numbered page of a voucher's redemptions, how many it has in all, and the voucher
    itself (its redemption counts are shown beside the page)."""

    voucher: VoucherRecord
    redemptions: list[RedemptionRecord]
    total: int


def present_redemption(record: RedemptionRecord) -> dict[str, Any]:
    r = record.redemption
    rollback = None
    if r.rollback_id is not None:
        rollback = {
            "id": r.rollback_id,
            "created_at": r.rolled_back_at,
            "reason": r.rollback_reason,
        }
    return {
        "id": r.id,
        "object": "redemption",
        "status": r.status,
        "voucher_id": r.voucher_id,
        "code": record.code,
        "amount": r.amount,
        "currency": record.currency,
        "order": {"amount": r.order_amount, "reference": r.order_reference},
        "voucher": {
            "state": record.voucher_state,
            "balance": record.voucher_balance,
            "redeemed_quantity": record.redeemed_quantity,
        },
        "customer_ref": r.customer_ref,
        "merchant_ref": r.merchant_ref,
        "store_ref": r.store_ref,
        "metadata": r.metadata_,
        "created_at": r.created_at,
        "rollback": rollback,
    }


def present_validation(result: ValidationResult) -> dict[str, Any]:
    plan = result.plan
    discount = plan.discount_amount if plan else None
    total = None
    if result.order_amount is not None:
        taken = (discount or 0) + (plan.spend or 0 if plan else 0)
        total = max(result.order_amount - taken, 0)
    return {
        "valid": result.valid,
        "reason": result.reason,
        "detail": result.detail,
        "voucher": result.voucher,
        "amount": plan.spend if plan else None,
        "discount_amount": discount,
        "order": {
            "amount": result.order_amount,
            "discount_amount": discount,
            "total_amount": total,
        },
    }
