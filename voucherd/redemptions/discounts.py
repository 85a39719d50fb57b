"""What a DISCOUNT voucher takes off an order."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from voucherd.money import percent_of


def discount_for(
    discount: dict[str, Any], order_amount: int | None, items: list[dict[str, Any]] | None
) -> int | None:
    """The discount in minor units, or None when the order lacks what the discount needs.

    AMOUNT takes ``amount_off`` (never more than the order); PERCENT takes a share rounded half
    up, capped by ``amount_limit``; FIXED brings the order down to ``fixed_amount``; UNIT gives
    ``unit_off`` items of ``unit_type`` free at their price in the order.
    """
    kind = discount["type"]
    if kind == "AMOUNT":
        off = int(discount["amount_off"])
        return off if order_amount is None else min(off, order_amount)
    if kind == "UNIT":
        for item in items or []:
            if item.get("sku") == discount["unit_type"]:
                free = min(int(discount["unit_off"]), int(item["quantity"]))
                return free * int(item["price"])
        return None
    if order_amount is None:
        return None
    if kind == "PERCENT":
        off = percent_of(order_amount, Decimal(str(discount["percent_off"])))
        limit = discount.get("amount_limit")
        return off if limit is None else min(off, int(limit))
    if kind == "FIXED":
        return max(order_amount - int(discount["fixed_amount"]), 0)
    raise ValueError(f"unknown discount type {kind}")
