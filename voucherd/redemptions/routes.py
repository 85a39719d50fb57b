from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from voucherd.api.deps import DB, QUERY_AS_DECLARED, CallerDep, Idem
from voucherd.api.offload import off_loop
from voucherd.api.openapi import NATIVE_ERRORS
from voucherd.api.responses import json_response, list_payload, respond_created
from voucherd.auth.caller import Caller
from voucherd.db.engine import Database
from voucherd.idempotency.service import IdempotencyClaim
from voucherd.pagination import DEFAULT_LIMIT, MAX_LIMIT
from voucherd.redemptions import service
from voucherd.redemptions.schemas import (
    RedeemRequest,
    RollbackRequest,
    ValidateRequest,
    present_redemption,
    present_validation,
)

router = APIRouter(
    prefix="/api/v1",
    tags=["redemptions"],
    responses=NATIVE_ERRORS,
    dependencies=QUERY_AS_DECLARED,
)

# Ids and codes are printable ASCII. Anything else names nothing, and some of it (a NUL byte)
# PostgreSQL refuses even to compare, so it is refused here as bad input naming the parameter.
_PRINTABLE = r"^[\x21-\x7e]+$"
RedemptionId = Annotated[str, Path(max_length=64, pattern=_PRINTABLE)]


# Validate and redeem are hot (a till's every sale): each is an ``async`` route running on the
# express lane (db/express.py) when it can, otherwise handing its whole blocking body to one
# thread trip (api/offload.py).
@router.post("/validations", summary="Would this voucher redeem now, and for what?")
async def validate(body: ValidateRequest, db: DB, caller: CallerDep) -> Response:
    # On PostgreSQL, on the event loop when the express lane has a connection free, as redeem.
    result = await service.validate_on_loop(db, caller, body)
    if result is not None:
        return json_response(present_validation(result))
    return await off_loop(_validate, db, caller, body)


def _validate(db: Database, caller: Caller, body: ValidateRequest) -> Response:
    # The native answer shows ``voucher`` only, never the result's ``record``.
    result = service.validate(db, caller, body, show_record=False)
    return json_response(present_validation(result))


@router.post("/redemptions", status_code=201, summary="Redeem a voucher, whole or in part")
async def redeem(body: RedeemRequest, db: DB, caller: CallerDep, idem: Idem) -> Response:
    if idem is None:
        # On PostgreSQL, on the event loop itself when the express lane has a connection free
        # (db/express.py): the thread trip cost more CPU than the use case's own Python.
        record = await service.redeem_on_loop(db, caller, body)
        if record is not None:
            return respond_created(db, caller, None, present_redemption(record))
    return await off_loop(_redeem, db, caller, body, idem)


def _redeem(
    db: Database, caller: Caller, body: RedeemRequest, idem: IdempotencyClaim | None
) -> Response:
    # The native answer shows the voucher's state and balance only, never the whole voucher.
    record = service.redeem(db, caller, body, idem=idem, show_voucher=False)
    return respond_created(db, caller, idem, present_redemption(record))


@router.post("/redemptions/{redemption_id}/rollback", summary="Give a redemption's value back")
def rollback(
    redemption_id: RedemptionId,
    db: DB,
    caller: CallerDep,
    idem: Idem,
    body: RollbackRequest | None = None,
) -> Response:
    reason = body.reason if body else None
    record = service.rollback(db, caller, redemption_id, reason, idem=idem)
    return respond_created(db, caller, idem, present_redemption(record), status=200)


@router.get("/redemptions/{redemption_id}", summary="Get a redemption")
def get_redemption(redemption_id: RedemptionId, db: DB, caller: CallerDep) -> Response:
    return json_response(present_redemption(service.get_redemption(db, caller, redemption_id)))


@router.get("/redemptions", summary="List redemptions, newest first")
def list_redemptions(
    db: DB,
    caller: CallerDep,
    voucher: Annotated[str | None, Query(max_length=200, pattern=_PRINTABLE)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=40, pattern=_PRINTABLE)] = None,
) -> Response:
    page = service.list_redemptions(db, caller, voucher=voucher, limit=limit, cursor=cursor)
    return json_response(
        list_payload([present_redemption(r) for r in page.items], page.next_cursor)
    )
