"""Vouchers: get, enable, disable, their publications; publications themselves."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from voucherd.api.deps import DB, Idem
from voucherd.api.responses import json_response, respond_created
from voucherd.auth.caller import Caller
from voucherd.db.engine import Database
from voucherd.dialects.voucherify import bodies, shapes, translate
from voucherd.dialects.voucherify.errors import BODY_REQUIRED, VoucherifyRoute, voucherify_caller
from voucherd.errors import Conflict, ErrorCode, InvalidInput
from voucherd.publications import service as publications
from voucherd.publications.publish import publish
from voucherd.publications.schemas import PublicationFilters
from voucherd.vouchers import service as vouchers
from voucherd.vouchers.schemas import VoucherRecord

router = APIRouter(tags=["voucherify"], route_class=VoucherifyRoute)

Vf = Annotated[Caller, Depends(voucherify_caller)]
Page = Annotated[int, Query(ge=1, le=1_000_000)]
Limit = Annotated[int, Query(ge=1, le=100)]


def _shown(db: Database, record: VoucherRecord) -> Response:
    return json_response(shapes.voucher(record, base_url=db.settings.public_base_url))


@router.get(
    "/v1/vouchers",
    summary="Voucherify: List Vouchers",
    description="Newest first. A filter naming nothing that exists answers an empty list.",
)
def list_vouchers(
    db: DB,
    caller: Vf,
    page: Page = 1,
    limit: Limit = 10,
    campaign: Annotated[str | None, Query(max_length=200, description="id or name")] = None,
    campaign_id: Annotated[str | None, Query(max_length=200)] = None,
    customer: Annotated[
        str | None, Query(max_length=200, description="the holder's id or source_id")
    ] = None,
    category: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    found, total = vouchers.number_vouchers(
        db,
        caller,
        campaigns=tuple(ref for ref in (campaign, campaign_id) if ref is not None),
        customer=customer,
        category=category,
        page=page,
        limit=limit,
    )
    base_url = db.settings.public_base_url
    items = [shapes.voucher(record, base_url=base_url) for record in found]
    return json_response(shapes.listing("vouchers", items, total))


@router.get("/v1/vouchers/{code}", summary="Voucherify: Get Voucher (code or id)")
def get_voucher(code: str, db: DB, caller: Vf) -> Response:
    return _shown(db, vouchers.get_voucher(db, caller, code))


@router.post("/v1/vouchers/{code}/enable", summary="Voucherify: Enable Voucher")
def enable_voucher(code: str, db: DB, caller: Vf) -> Response:
    return _shown(db, vouchers.enable_voucher(db, caller, code))


@router.post("/v1/vouchers/{code}/disable", summary="Voucherify: Disable Voucher")
def disable_voucher(code: str, db: DB, caller: Vf) -> Response:
    return _shown(db, vouchers.disable_voucher(db, caller, code))


def _publications(
    db: Database, caller: Caller, filters: PublicationFilters, page: int, limit: int
) -> Response:
    found, total = publications.number_publications(db, caller, filters, page=page, limit=limit)
    base_url = db.settings.public_base_url
    items = [shapes.publication(record, base_url=base_url) for record in found]
    return json_response(shapes.listing("publications", items, total))


@router.get("/v1/vouchers/{code}/publications", summary="Voucherify: a voucher's publications")
def voucher_publications(
    code: str, db: DB, caller: Vf, page: Page = 1, limit: Limit = 10
) -> Response:
    return _publications(db, caller, PublicationFilters(voucher=code), page, limit)


@router.post(
    "/v1/publications", summary="Voucherify: Create Publication", openapi_extra=BODY_REQUIRED
)
def create_publication(
    db: DB,
    caller: Vf,
    idem: Idem,
    join_once: bool = False,
    body: bodies.Publish | None = None,
) -> Response:
    if body is None:
        raise InvalidInput("give a voucher or a campaign to publish", field="voucher")
    request = translate.publish(body).model_copy(update={"join_once": join_once})
    base_url = db.settings.public_base_url
    try:
        published = publish(db, caller, request, idem=idem)
    except Conflict as exc:
        # Voucherify's join_once: "a particular person gets only one and always the same code
        # even if the app sends multiple publication requests". A repeat answers the customer's
        # first publication of the campaign; nothing new is published, so nothing is kept for
        # an Idempotency-Key either.
        first = exc.extra.get("publication_id") if exc.code == ErrorCode.ALREADY_JOINED else None
        if not isinstance(first, str):
            raise
        return json_response(
            shapes.publication(publications.get_publication(db, caller, first), base_url=base_url)
        )
    shown = shapes.publication(published.record, base_url=base_url)
    return respond_created(db, caller, idem, shown, status=200)


@router.get("/v1/publications", summary="Voucherify: List Publications")
def list_publications(
    db: DB,
    caller: Vf,
    page: Page = 1,
    limit: Limit = 10,
    campaign: Annotated[str | None, Query(max_length=200)] = None,
    customer: Annotated[str | None, Query(max_length=200)] = None,
    voucher: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    filters = PublicationFilters(campaign=campaign, voucher=voucher, customer=customer)
    return _publications(db, caller, filters, page, limit)
