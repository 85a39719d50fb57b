"""Validations, redemptions (the stacking API and the legacy per-voucher one), rollbacks."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response

from voucherd.api.deps import DB, Idem
from voucherd.api.responses import json_response, respond_created
from voucherd.dialects.voucherify import bodies, shapes, translate
from voucherd.dialects.voucherify.errors import BODY_REQUIRED, VoucherifyRoute, describe, error_body
from voucherd.dialects.voucherify.vouchers import Limit, Page, Vf
from voucherd.errors import ErrorCode, InvalidInput
from voucherd.redemptions import service as redemptions
from voucherd.redemptions import stacked

router = APIRouter(tags=["voucherify"], route_class=VoucherifyRoute)


def _customer(given: bodies.Customer | None) -> stacked.CustomerGiven | None:
    """Who the request names; the core resolves a customer given by its id to its source_id."""
    if given is None:
        return None
    return stacked.CustomerGiven(source_id=given.source_id, id=given.id)


def _items(
    body: bodies.Redeem | bodies.LegacyRedeem, redeemables: list[bodies.Redeemable]
) -> list[dict[str, Any]]:
    """Each redeemable as the core's body; a source_id given is the customer's reference."""
    ref = body.customer.source_id if body.customer is not None else None
    return [translate.redeemable(item, body.order, ref) for item in redeemables]


@router.post(
    "/v1/validations",
    summary="Voucherify: Validate Stackable Discounts",
    openapi_extra=BODY_REQUIRED,
)
def validate(db: DB, caller: Vf, body: bodies.Redeem | None = None) -> Response:
    if body is None:
        raise InvalidInput("give the redeemables to validate", field="redeemables")
    requests = [translate.validate_request(data) for data in _items(body, body.redeemables)]
    validation = stacked.validate_stacked(db, caller, requests, customer=_customer(body.customer))
    items: list[dict[str, Any]] = []
    for item, result in zip(body.redeemables, validation.results, strict=True):
        if result.valid and result.plan is not None:
            items.append(shapes.applicable(result, item.id))
        else:
            status, key, message = describe(result.reason or ErrorCode.INVALID_INPUT)
            error = error_body(status, key, message, result.detail or message)
            items.append(shapes.inapplicable(item.id, error, result))
    amount = body.order.amount if body.order else None
    tracking = body.tracking_id or validation.customer_ref
    return json_response(shapes.validation(items, amount, validation.taken, tracking))


@router.post(
    "/v1/redemptions",
    summary="Voucherify: Redeem Stackable Discounts",
    description="Every redeemable is redeemed, or none is (one transaction).",
    openapi_extra=BODY_REQUIRED,
)
def redeem(db: DB, caller: Vf, idem: Idem, body: bodies.Redeem | None = None) -> Response:
    if body is None:
        raise InvalidInput("give the redeemables to redeem", field="redeemables")
    requests = [
        translate.redeem_request(data, body.metadata) for data in _items(body, body.redeemables)
    ]
    records = stacked.redeem_stacked(
        db, caller, requests, customer=_customer(body.customer), idem=idem
    )
    shown = shapes.redemption_result(records, base_url=db.settings.public_base_url)
    return respond_created(db, caller, idem, shown, status=200)


# The code becomes the redeemable's id, so the path takes what a typed code may be
# (fields.TypedCode: spaces and lower case too; the core reads it, codes/typed.py).
RedeemedCode = Annotated[str, Path(min_length=1, max_length=100)]


@router.post("/v1/vouchers/{code}/redemption", summary="Voucherify: Redeem Voucher (legacy)")
def redeem_voucher(
    code: RedeemedCode,
    db: DB,
    caller: Vf,
    idem: Idem,
    body: bodies.LegacyRedeem | None = None,
) -> Response:
    body = body or bodies.LegacyRedeem()
    item = bodies.Redeemable(object="voucher", id=code, gift=body.gift, reward=body.reward)
    (data,) = _items(body, [item])
    (record,) = stacked.redeem_stacked(
        db,
        caller,
        [translate.redeem_request(data, body.metadata)],
        customer=_customer(body.customer),
        idem=idem,
    )
    shown = shapes.redemption(record, base_url=db.settings.public_base_url)
    return respond_created(db, caller, idem, shown, status=200)


@router.get("/v1/vouchers/{code}/redemptions", summary="Voucherify: List Voucher Redemptions")
# Voucherify's reference (and its SDK's get_voucher_redemptions) spells this path singular,
# while the ``redemption.url`` of every voucher object says plural: both answer the same.
@router.get("/v1/vouchers/{code}/redemption", summary="Voucherify: Get Voucher's Redemptions")
def voucher_redemptions(
    code: str, db: DB, caller: Vf, page: Page = 1, limit: Limit = 10
) -> Response:
    listed = redemptions.number_voucher_redemptions(db, caller, code, page=page, limit=limit)
    base_url = db.settings.public_base_url
    return json_response(
        shapes.voucher_redemptions(listed, page=page, limit=limit, base_url=base_url)
    )


@router.get(
    "/v1/redemptions",
    summary="Voucherify: List Redemptions",
    description=(
        "Newest first, rolled-back redemptions included. voucherd keeps no failed redemption, "
        "so result=FAILURE answers an empty list; so does a filter naming nothing that exists."
    ),
)
def list_redemptions(
    db: DB,
    caller: Vf,
    page: Page = 1,
    limit: Limit = 10,
    voucher: Annotated[str | None, Query(max_length=100, description="code or id")] = None,
    campaign: Annotated[str | None, Query(max_length=200, description="id or name")] = None,
    customer: Annotated[str | None, Query(max_length=200, description="id or source_id")] = None,
    result: Literal["SUCCESS", "FAILURE"] | None = None,
) -> Response:
    if result == "FAILURE":  # refusals are answered, not recorded: there is none to list
        return json_response(shapes.listing("redemptions", [], 0))
    found, total = redemptions.number_redemptions(
        db, caller, voucher=voucher, campaign=campaign, customer=customer, page=page, limit=limit
    )
    base_url = db.settings.public_base_url
    items = [shapes.redemption(record, base_url=base_url) for record in found]
    return json_response(shapes.listing("redemptions", items, total))


@router.get("/v1/redemptions/{redemptionId}", summary="Voucherify: Get Redemption")
def get_redemption(redemptionId: str, db: DB, caller: Vf) -> Response:
    record = redemptions.get_redemption(db, caller, redemptionId)
    return json_response(shapes.redemption(record, base_url=db.settings.public_base_url))


@router.post("/v1/redemptions/{redemptionId}/rollback", summary="Voucherify: Rollback Redemption")
def rollback(
    redemptionId: str,
    db: DB,
    caller: Vf,
    idem: Idem,
    reason: Annotated[str | None, Query(max_length=500)] = None,
    tracking_id: Annotated[str | None, Query(max_length=200)] = None,
    body: bodies.Rollback | None = None,
) -> Response:
    why = reason or (body.reason if body is not None else None)
    record = redemptions.rollback(db, caller, redemptionId, why, idem=idem)
    return respond_created(db, caller, idem, shapes.rollback(record), status=200)
