"""voucherd's objects in Voucherify's shapes: voucher, campaign, publication, redemption,
rollback, customer, async action, validation, and its lists.

Field names, nesting and enum words are Voucherify's (seeds 001 and 002, and the models of its
Python SDK 6.1.1, which parses every answer here). Where voucherd has no such concept the field
is there with Voucherify's neutral value (``is_referral_code: false``, empty ``categories``).
"""

from __future__ import annotations

import secrets
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from voucherd.campaigns.models import Campaign
from voucherd.codes.generator import DEFAULT_ALPHABET, DEFAULT_CODE_LENGTH
from voucherd.customers.models import Customer
from voucherd.imports.service import IMPORT_KIND
from voucherd.operations.models import COMPLETED, FAILED, Operation
from voucherd.pages.urls import page_url
from voucherd.publications.schemas import PublicationRecord
from voucherd.redemptions.schemas import RedemptionRecord, ValidationResult, VoucherRedemptions
from voucherd.vouchers.schemas import VoucherRecord

# voucherd's types in Voucherify's words. A CASH voucher (paid out once) is a gift card whose
# redemption quantity is 1: Voucherify has no other word for it.
VOUCHER_TYPES = {
    "GIFT": "GIFT_VOUCHER",
    "CASH": "GIFT_VOUCHER",
    "DISCOUNT": "DISCOUNT_VOUCHER",
    "LOYALTY": "LOYALTY_CARD",
}
CAMPAIGN_TYPES = {
    "GIFT": "GIFT_VOUCHERS",
    "CASH": "GIFT_VOUCHERS",
    "DISCOUNT": "DISCOUNT_COUPONS",
    "LOYALTY": "LOYALTY_PROGRAM",
}
ASYNC_PREFIX, OPERATION_PREFIX = "aa_", "op_"
_EMPTY_LIST = {"object": "list", "data_ref": "data", "data": [], "total": 0}


def async_action_id(operation_id: str) -> str:
    """Operations are ``op_...``; Voucherify's async actions are ``aa_...``: same id, its prefix."""
    return ASYNC_PREFIX + operation_id.removeprefix(OPERATION_PREFIX)


def operation_id(async_id: str) -> str:
    return OPERATION_PREFIX + async_id.removeprefix(ASYNC_PREFIX)


def listing(name: str, items: list[dict[str, Any]], total: int) -> dict[str, Any]:
    return {"object": "list", "data_ref": name, name: items, "total": total}


def discount(stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """A campaign's discount definition (percent stored as text, to keep its precision) with
    Voucherify's numbers: percent_off a number, amounts integers of cents."""
    if not stored:
        return None
    shown: dict[str, Any] = {"type": stored["type"]}
    for name in ("amount_off", "amount_limit", "fixed_amount", "unit_off"):
        if stored.get(name) is not None:
            shown[name] = int(stored[name])
    if stored.get("percent_off") is not None:
        shown["percent_off"] = float(Decimal(str(stored["percent_off"])))
    if stored.get("unit_type") is not None:
        shown["unit_type"] = stored["unit_type"]
    shown["effect"] = "ADD_MISSING_ITEMS" if stored["type"] == "UNIT" else "APPLY_TO_ORDER"
    return shown


def voucher(record: VoucherRecord, *, base_url: str) -> dict[str, Any]:
    v, c = record.voucher, record.campaign
    kind = v.type
    amount, balance = v.amount or 0, v.balance or 0
    code = quote(v.code, safe="")
    publish: dict[str, Any] = {
        "object": "list",
        "count": v.published_count or 0,
        "url": f"/v1/vouchers/{code}/publications?page=1&limit=10",
    }
    if record.publications:
        publish.update(
            data_ref="entries", entries=record.publications, total=v.published_count or 0
        )
    redemption: dict[str, Any] = {
        "quantity": v.redemption_quantity,
        "redeemed_quantity": v.redeemed_quantity,
        "object": "list",
        "url": f"/v1/vouchers/{code}/redemptions?page=1&limit=10",
    }
    if kind == "LOYALTY":
        redemption["redeemed_points"] = amount - balance
    elif kind in ("GIFT", "CASH"):
        redemption["redeemed_amount"] = amount - balance
    page = page_url(base_url, v.public_token)
    return {
        "id": v.id,
        "code": v.code,
        "campaign": record.campaign_name,
        "campaign_id": v.campaign_id,
        "category": v.category,
        "category_id": None,
        "type": VOUCHER_TYPES[kind],
        "discount": discount(c.discount) if kind == "DISCOUNT" and c is not None else None,
        "gift": {
            "amount": amount,
            "subtracted_amount": amount - balance,
            "balance": balance,
            "effect": "APPLY_TO_ORDER",
        }
        if kind in ("GIFT", "CASH")
        else None,
        "loyalty_card": {
            "points": amount,
            "balance": balance,
            "subtracted_points": amount - balance,
        }
        if kind == "LOYALTY"
        else None,
        "start_date": v.start_date,
        "expiration_date": v.expiration_date,
        "validity_timeframe": c.validity_timeframe if c is not None else None,
        "validity_day_of_week": c.validity_day_of_week if c is not None else None,
        "validity_hours": c.validity_hours if c is not None else None,
        # The voucher's own switch, as in Voucherify: dates decide expiry apart from it, and a
        # cancelled voucher (deleted, in Voucherify's terms) is switched off for good.
        "active": v.state not in ("DISABLED", "CANCELLED"),
        "additional_info": v.additional_info,
        "metadata": v.metadata_,
        "assets": {
            "qr": {"id": v.public_token, "url": f"{page}/qr.svg"},
            "barcode": {"id": v.public_token, "url": f"{page}/barcode.svg"},
        },
        "is_referral_code": False,
        "created_at": v.created_at,
        "updated_at": v.updated_at,
        "holder_id": v.holder_id,
        "referrer_id": None,
        "object": "voucher",
        "publish": publish,
        "redemption": redemption,
        "categories": [],
        "validation_rules_assignments": dict(_EMPTY_LIST),
    }


def _code_config(campaign: Campaign) -> dict[str, Any]:
    if campaign.code_config:
        return dict(campaign.code_config)
    # The default code: 12 random characters and a check character (codes/generator.py).
    return {"length": DEFAULT_CODE_LENGTH, "charset": DEFAULT_ALPHABET, "prefix": "", "postfix": ""}


def campaign(c: Campaign, *, vouchers_count: int | None = None) -> dict[str, Any]:
    template: dict[str, Any] = {
        "type": VOUCHER_TYPES[c.type],
        "redemption": {"quantity": c.redemption_quantity},
        "code_config": _code_config(c),
        "is_referral_code": False,
        "start_date": c.start_date,
        "expiration_date": c.expiration_date,
    }
    if c.type == "DISCOUNT":
        template["discount"] = discount(c.discount)
    elif c.type == "LOYALTY":
        template["loyalty_card"] = {"points": c.default_value}
    else:
        template["gift"] = {"amount": c.default_value, "effect": "APPLY_TO_ORDER"}
    shown: dict[str, Any] = {
        "id": c.id,
        "name": c.name,
        "description": c.description,
        "campaign_type": CAMPAIGN_TYPES[c.type],
        "type": c.mode,
        "voucher": template,
        "auto_join": False,
        "join_once": False,
        "use_voucher_metadata_schema": False,
        "validity_timeframe": c.validity_timeframe,
        "validity_day_of_week": c.validity_day_of_week,
        "validity_hours": c.validity_hours,
        "start_date": c.start_date,
        "expiration_date": c.expiration_date,
        "active": c.active,
        "metadata": c.metadata_,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "category": c.category,
        "category_id": None,
        "categories": [],
        "creation_status": "DONE",
        "vouchers_generation_status": "DONE",
        "readonly": False,
        "protected": False,
        "object": "campaign",
    }
    if vouchers_count is not None:
        shown["vouchers_count"] = vouchers_count
    return shown


def _customer_ref(customer_id: str | None, source_id: str | None) -> dict[str, Any] | None:
    if customer_id is None and source_id is None:
        return None
    return {"id": customer_id, "source_id": source_id, "object": "customer"}


def publication(record: PublicationRecord, *, base_url: str) -> dict[str, Any]:
    p = record.publication
    shown: dict[str, Any] = {
        "id": p.id,
        "object": "publication",
        "created_at": p.created_at,
        "customer_id": p.customer_id,
        # Voucherify's tracking id is the customer's own reference: the source_id here.
        "tracking_id": record.customer_source_id,
        "metadata": p.metadata_,
        "channel": p.channel,
        "source_id": p.source_id,
        "result": "SUCCESS",
        "customer": _customer_ref(p.customer_id, record.customer_source_id),
        "vouchers": [code for _, code in record.codes],
        "vouchers_id": [voucher_id for voucher_id, _ in record.codes],
    }
    if record.voucher is not None:
        shown["voucher"] = voucher(record.voucher, base_url=base_url)
    return shown


def customer(c: Customer) -> dict[str, Any]:
    line_1, _, line_2 = (c.address or "").partition("\n")
    address = None
    if any((c.address, c.city, c.region, c.country, c.postcode)):
        address = {
            "city": c.city,
            "state": c.region,
            "line_1": line_1 or None,
            "line_2": line_2 or None,
            "country": c.country,
            "postal_code": c.postcode,
        }
    return {
        "id": c.id,
        "source_id": c.source_id,
        "name": c.name,
        "description": c.description,
        "email": c.email,
        "phone": c.phone,
        "birthdate": c.birthdate,
        "address": address,
        "metadata": c.metadata_,
        "system_metadata": {},
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "object": "customer",
    }


def order(amount: int | None, taken: int, reference: str | None = None) -> dict[str, Any]:
    """An order with what the redeemables take off it (discounts and gift card credits alike,
    as Voucherify counts them)."""
    shown: dict[str, Any] = {"object": "order", "source_id": reference, "amount": amount}
    if amount is not None:
        taken = min(taken, amount)
        shown.update(
            discount_amount=taken,
            total_discount_amount=taken,
            total_amount=amount - taken,
            applied_discount_amount=taken,
            total_applied_discount_amount=taken,
        )
    return shown


def _kind_of(record: RedemptionRecord) -> str | None:
    return record.voucher.voucher.type if record.voucher is not None else record.voucher_type


def redemption(record: RedemptionRecord, *, base_url: str) -> dict[str, Any]:
    r = record.redemption
    amount = r.amount or 0
    kind = _kind_of(record)
    shown: dict[str, Any] = {
        "id": r.id,
        "object": "redemption",
        "date": r.created_at,
        "customer_id": None,
        "tracking_id": r.customer_ref,
        "metadata": r.metadata_,
        "amount": amount,
        "redemption": None,
        "result": "SUCCESS",
        "status": "ROLLED_BACK" if r.status == "ROLLED_BACK" else "SUCCEEDED",
        "order": order(r.order_amount, amount, r.order_reference),
        "channel": {"channel_id": None, "channel_type": "API"},
        "customer": _customer_ref(None, r.customer_ref),
        "related_object_type": "voucher",
        "related_object_id": r.voucher_id,
        "voucher": voucher(record.voucher, base_url=base_url)
        if record.voucher is not None
        else {"id": r.voucher_id, "code": record.code, "object": "voucher"},
    }
    if kind in ("GIFT", "CASH"):
        shown["gift"] = {"amount": amount}
    elif kind == "LOYALTY":
        shown["loyalty_card"] = {"points": amount}
    return shown


def voucher_redemptions(
    listed: VoucherRedemptions, *, page: int, limit: int, base_url: str
) -> dict[str, Any]:
    """A voucher's redemptions (``GET /v1/vouchers/{code}/redemptions``): its counts, then the
    page of redemptions as ``redemption_entries``; ``url`` is this page's own."""
    v = listed.voucher.voucher
    code = quote(v.code, safe="")
    entries = [redemption(r, base_url=base_url) for r in listed.redemptions]
    return {
        "quantity": v.redemption_quantity,
        "redeemed_quantity": v.redeemed_quantity,
        "object": "list",
        "url": f"/v1/vouchers/{code}/redemptions?page={page}&limit={limit}",
        "data_ref": "redemption_entries",
        "total": listed.total,
        "redemption_entries": entries,
    }


def rollback(record: RedemptionRecord) -> dict[str, Any]:
    """A rollback: its amount is negative, what went back onto the voucher (Voucherify)."""
    r = record.redemption
    amount = -(r.amount or 0)
    return {
        "id": r.rollback_id,
        "object": "redemption_rollback",
        "date": r.rolled_back_at,
        "customer_id": None,
        "tracking_id": r.customer_ref,
        "metadata": r.metadata_,
        "amount": amount,
        "redemption": r.id,
        "reason": r.rollback_reason,
        "result": "SUCCESS",
        "status": "SUCCEEDED",
        "order": order(r.order_amount, 0, r.order_reference),
        "channel": {"channel_id": None, "channel_type": "API"},
        "customer": _customer_ref(None, r.customer_ref),
        "related_object_type": "voucher",
        "related_object_id": r.voucher_id,
        "voucher": {"id": r.voucher_id, "code": record.code, "object": "voucher"},
    }


def redemption_result(records: list[RedemptionRecord], *, base_url: str) -> dict[str, Any]:
    taken = sum(r.redemption.amount or 0 for r in records)
    first = records[0].redemption
    return {
        "redemptions": [redemption(r, base_url=base_url) for r in records],
        "order": order(first.order_amount, taken, first.order_reference),
        "inapplicable_redeemables": [],
        "skipped_redeemables": [],
    }


def applicable(result: ValidationResult, code: str) -> dict[str, Any]:
    """One redeemable that would redeem: what it would take off the order."""
    plan, record = result.plan, result.record
    assert plan is not None
    assert record is not None
    v = record.voucher
    taken = (plan.discount_amount or 0) + (plan.spend or 0)
    outcome: dict[str, Any] = {}
    if v.type == "DISCOUNT":
        outcome["discount"] = discount(record.campaign.discount if record.campaign else None)
    elif v.type in ("GIFT", "CASH"):
        outcome["gift"] = {"credits": plan.spend, "balance": v.balance}
    elif v.type == "LOYALTY":
        outcome["loyalty_card"] = {"points": plan.spend}
    return {
        "status": "APPLICABLE",
        "id": code,
        "object": "voucher",
        "order": order(result.order_amount, taken),
        "applicable_to": dict(_EMPTY_LIST),
        "inapplicable_to": dict(_EMPTY_LIST),
        "result": outcome,
        "metadata": v.metadata_,
        "categories": [],
        "campaign_name": record.campaign_name,
        "campaign_id": v.campaign_id,
    }


def inapplicable(code: str, error: dict[str, Any], result: ValidationResult) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "status": "INAPPLICABLE",
        "id": code,
        "object": "voucher",
        "result": {
            "error": error,
            "details": {"key": error["key"], "message": error["details"]},
        },
        "categories": [],
    }
    if result.record is not None:
        shown.update(
            metadata=result.record.voucher.metadata_,
            campaign_name=result.record.campaign_name,
            campaign_id=result.record.voucher.campaign_id,
        )
    return shown


# What voucherd does when several redeemables come together: each is judged on its own, all
# must apply for any to be redeemed, and they are redeemed in the order given.
STACKING_RULES = {
    "redeemables_limit": 30,
    "applicable_redeemables_limit": 5,
    "applicable_exclusive_redeemables_limit": 1,
    "exclusive_categories": [],
    "joint_categories": [],
    "redeemables_application_mode": "ALL",
    "redeemables_sorting_rule": "REQUESTED_ORDER",
}


def validation(
    items: list[dict[str, Any]],
    order_amount: int | None,
    taken: int,
    tracking_id: str | None,
) -> dict[str, Any]:
    valid = all(item["status"] == "APPLICABLE" for item in items)
    return {
        "id": f"valid_{secrets.token_hex(12)}",
        "valid": valid,
        "redeemables": items,
        "inapplicable_redeemables": [i for i in items if i["status"] == "INAPPLICABLE"],
        "skipped_redeemables": [],
        "order": order(order_amount, taken),
        "tracking_id": tracking_id,
        "stacking_rules": STACKING_RULES,
    }


def async_action(op: Operation, *, now: datetime) -> dict[str, Any]:
    """An operation as Voucherify's async action: ENQUEUED until a worker starts it."""
    if op.status == COMPLETED:
        status, outcome = "DONE", "SUCCESS"
    elif op.status == FAILED:
        status, outcome = "FAILED", "FAILED"
    else:
        started = op.done > 0 or op.lease_token is not None
        status, outcome = ("IN_PROGRESS" if started else "ENQUEUED"), "UNKNOWN"
    progress = 100 if op.status == COMPLETED else (op.done * 100 // op.total if op.total else 0)
    end = op.finished_at or now
    result: dict[str, Any] = {"done": op.done, "total": op.total}
    imported = op.kind == IMPORT_KIND
    if op.status == COMPLETED:
        result["message"] = (
            f"{op.done} voucher(s) imported"
            if imported
            else f"{op.done} voucher(s) added to campaign {op.parameters.get('campaign')}"
        )
    if op.status == FAILED:
        result["message"] = op.last_error
    return {
        "id": async_action_id(op.id),
        "type": "VOUCHERS.IMPORT" if imported else "CAMPAIGN.VOUCHERS_GENERATION",
        "status": status,
        "operation_status": outcome,
        "created_at": op.created_at,
        "updated_at": op.updated_at,
        "request_id": None,
        "processing_time": int((end - op.created_at).total_seconds() * 1000),
        "progress": min(progress, 100),
        "object": "async_action",
        "result": result,
    }
