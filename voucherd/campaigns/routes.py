from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from voucherd.api.deps import DB, QUERY_AS_DECLARED, CallerDep, Idem
from voucherd.api.openapi import NATIVE_ERRORS
from voucherd.api.responses import json_response, list_payload, respond_created
from voucherd.campaigns import service
from voucherd.campaigns.schemas import CampaignCreate, CampaignUpdate, present_campaign
from voucherd.pagination import DEFAULT_LIMIT, MAX_LIMIT
from voucherd.vouchers import mint
from voucherd.vouchers.schemas import MintVouchers, present_voucher

router = APIRouter(
    prefix="/api/v1/campaigns",
    tags=["campaigns"],
    responses=NATIVE_ERRORS,
    dependencies=QUERY_AS_DECLARED,
)


@router.post("", status_code=201, summary="Create a campaign")
def create_campaign(body: CampaignCreate, db: DB, caller: CallerDep, idem: Idem) -> Response:
    campaign = mint.create_campaign(db, caller, body, idem=idem)
    return respond_created(db, caller, idem, present_campaign(campaign))


@router.get("", summary="List campaigns, newest first")
def list_campaigns(
    db: DB,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    page = service.list_campaigns(db, caller, limit=limit, cursor=cursor)
    return json_response(list_payload([present_campaign(c) for c in page.items], page.next_cursor))


@router.get("/{campaign}", summary="Get a campaign by id or name")
def get_campaign(campaign: str, db: DB, caller: CallerDep) -> Response:
    return json_response(present_campaign(service.get_campaign(db, caller, campaign)))


@router.patch("/{campaign}", summary="Change a campaign")
def update_campaign(campaign: str, body: CampaignUpdate, db: DB, caller: CallerDep) -> Response:
    return json_response(present_campaign(service.update_campaign(db, caller, campaign, body)))


@router.post(
    "/{campaign}/vouchers",
    status_code=201,
    summary="Add vouchers to a campaign",
    description="Mints `count` vouchers with the campaign's defaults, all or nothing. "
    "Answers the voucher itself for a count of 1.",
)
def add_vouchers(
    campaign: str, body: MintVouchers, db: DB, caller: CallerDep, idem: Idem
) -> Response:
    result = mint.mint_vouchers(db, caller, campaign, body, idem=idem)
    if result.first is not None:
        payload = present_voucher(result.first, now=db.now(), base_url=db.settings.public_base_url)
    else:
        payload = {"object": "mint", "campaign_id": result.campaign_id, "count": result.count}
    return respond_created(db, caller, idem, payload)
