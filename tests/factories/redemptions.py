"""Redemptions, made through the ``redeem`` use case."""

from __future__ import annotations

from typing import Any

from tests.factories.tenants import Tenant
from voucherd.db.engine import Database
from voucherd.redemptions.schemas import RedeemRequest, RedemptionRecord
from voucherd.redemptions.service import redeem


def make_redemption(
    db: Database,
    tenant: Tenant,
    *,
    code: str,
    amount: int | None = None,
    order: dict[str, Any] | None = None,
    customer_ref: str | None = None,
    merchant_ref: str | None = None,
    store_ref: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> RedemptionRecord:
    named = {
        "order": order,
        "customer_ref": customer_ref,
        "merchant_ref": merchant_ref,
        "store_ref": store_ref,
        "metadata": metadata,
    }
    body = {"code": code, "amount": amount, **{f: v for f, v in named.items() if v is not None}}
    return redeem(db, tenant.caller, RedeemRequest.model_validate(body))
