"""Campaigns, adding vouchers to them, and the async action that adds many."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from voucherd.api.deps import DB, Idem
from voucherd.api.responses import json_response, respond_created
from voucherd.campaigns import service as campaigns
from voucherd.dialects.voucherify import bodies, shapes, translate
from voucherd.dialects.voucherify.errors import BODY_REQUIRED, VoucherifyRoute
from voucherd.dialects.voucherify.vouchers import Vf
from voucherd.errors import InvalidInput, NotFound
from voucherd.imports.service import IMPORT_KIND
from voucherd.operations import service as operations
from voucherd.vouchers import mint
from voucherd.vouchers.issue import issue_voucher
from voucherd.vouchers.tasks import MINT_KIND, start_mint

router = APIRouter(tags=["voucherify"], route_class=VoucherifyRoute)

Page = Annotated[int, Query(ge=1, le=1_000_000)]
Limit = Annotated[int, Query(ge=1, le=100)]


@router.post("/v1/campaigns", summary="Voucherify: Create Campaign", openapi_extra=BODY_REQUIRED)
def create_campaign(
    db: DB, caller: Vf, idem: Idem, body: bodies.CampaignCreate | None = None
) -> Response:
    if body is None:
        raise InvalidInput("give the campaign, with at least its name", field="name")
    request = translate.campaign(body, db.settings.voucherify_currency)
    with translate.named_as_sent(translate.CAMPAIGN_FIELDS):
        created = mint.create_campaign(db, caller, request, idem=idem)
    shown = shapes.campaign(created, vouchers_count=body.vouchers_count or 0)
    return respond_created(db, caller, idem, shown, status=200)


@router.get("/v1/campaigns", summary="Voucherify: List Campaigns")
def list_campaigns(db: DB, caller: Vf, page: Page = 1, limit: Limit = 10) -> Response:
    found, total = campaigns.number_campaigns(db, caller, page=page, limit=limit)
    return json_response(shapes.listing("campaigns", [shapes.campaign(c) for c in found], total))


@router.get("/v1/campaigns/{campaignId}", summary="Voucherify: Get Campaign (id or name)")
def get_campaign(campaignId: str, db: DB, caller: Vf) -> Response:
    campaign, count = campaigns.count_vouchers(db, caller, campaignId)
    return json_response(shapes.campaign(campaign, vouchers_count=count))


@router.post(
    "/v1/campaigns/{campaignId}/vouchers",
    summary="Voucherify: Add Vouchers to Campaign",
    description="The voucher itself for a count of 1; 202 with an async_action_id for more.",
)
def add_vouchers(
    campaignId: str,
    db: DB,
    caller: Vf,
    idem: Idem,
    vouchers_count: Annotated[int | None, Query(ge=1)] = None,
    body: bodies.AddVouchers | None = None,
) -> Response:
    body = body or bodies.AddVouchers()
    count = vouchers_count or 1
    if count == 1:
        record = issue_voucher(db, caller, translate.issue(campaignId, body), idem=idem)
        shown = shapes.voucher(record, base_url=db.settings.public_base_url)
        return respond_created(db, caller, idem, shown, status=200)
    if body.code is not None:
        raise InvalidInput("a given code makes one voucher; vouchers_count must be 1", field="code")
    operation = start_mint(db, caller, campaignId, translate.mint(count, body), idem=idem)
    shown = {"async_action_id": shapes.async_action_id(operation.id)}
    return respond_created(db, caller, idem, shown, status=202)


@router.get("/v1/async-actions/{asyncActionId}", summary="Voucherify: Get Async Action")
def get_async_action(asyncActionId: str, db: DB, caller: Vf) -> Response:
    operation = operations.get_operation(db, caller, shapes.operation_id(asyncActionId))
    if operation.kind not in (MINT_KIND, IMPORT_KIND):  # others belong to other faces
        raise NotFound("no such async action", field="operation")
    return json_response(shapes.async_action(operation, now=db.now()))
