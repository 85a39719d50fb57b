"""Deliveries on the native API (list, look at, resend, deliver an existing voucher) and the
providers' status callbacks (unauthenticated, verified by signature, outside /api/v1)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from voucherd.api.deps import DB, ONE_VALUE_PER_QUERY_PARAMETER, QUERY_AS_DECLARED, CallerDep, Idem
from voucherd.api.openapi import NATIVE_ERRORS
from voucherd.api.responses import json_response, list_payload, respond_created
from voucherd.auth.caller import Caller
from voucherd.db.engine import Database
from voucherd.delivery import callbacks, service
from voucherd.delivery.schemas import (
    ChannelName,
    DeliveryFilters,
    DeliveryRequest,
    DeliveryStateName,
    present_delivery,
)
from voucherd.errors import InvalidInput
from voucherd.idempotency.service import Renderer
from voucherd.pagination import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter()
api = APIRouter(
    prefix="/api/v1",
    tags=["deliveries"],
    responses=NATIVE_ERRORS,
    dependencies=QUERY_AS_DECLARED,
)
# No credentials: each callback is verified by its provider's signature (403 when it is wrong).
receipts = APIRouter(
    prefix="/callbacks",
    tags=["delivery callbacks"],
    responses=NATIVE_ERRORS,
    dependencies=ONE_VALUE_PER_QUERY_PARAMETER,
)

_PRINTABLE = r"^[\x21-\x7e]+$"
DeliveryId = Annotated[str, Path(max_length=64, pattern=_PRINTABLE)]
TenantId = Annotated[str, Path(max_length=64, pattern=_PRINTABLE)]


@api.get("/deliveries", summary="List deliveries, newest first (per voucher, per state)")
def list_deliveries(
    db: DB,
    caller: CallerDep,
    voucher: Annotated[str | None, Query(max_length=200, pattern=_PRINTABLE)] = None,
    state: DeliveryStateName | None = None,
    channel: ChannelName | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=40, pattern=_PRINTABLE)] = None,
) -> Response:
    filters = DeliveryFilters(voucher, state, channel)
    page = service.list_deliveries(db, caller, filters, limit=limit, cursor=cursor)
    return json_response(list_payload([present_delivery(r) for r in page.items], page.next_cursor))


@api.get("/deliveries/{delivery}", summary="A delivery with its history")
def get_delivery(delivery: DeliveryId, db: DB, caller: CallerDep) -> Response:
    return json_response(present_delivery(service.get_delivery(db, caller, delivery)))


@api.post(
    "/deliveries/{delivery}/resend",
    status_code=201,
    summary="Send a finished (typically FAILED) delivery again, as a new delivery",
)
def resend(delivery: DeliveryId, db: DB, caller: CallerDep, idem: Idem) -> Response:
    record = service.resend_delivery(db, caller, delivery, idem=idem)
    return respond_created(db, caller, idem, present_delivery(record))


@api.post("/vouchers/{voucher}/deliveries", status_code=201, summary="Deliver an existing voucher")
def deliver(voucher: str, body: DeliveryRequest, db: DB, caller: CallerDep, idem: Idem) -> Response:
    record = service.deliver_voucher(db, caller, voucher, body, idem=idem)
    return respond_created(db, caller, idem, present_delivery(record))


@receipts.post("/twilio/{tenant_id}", status_code=204, summary="Twilio's message status callback")
async def twilio_status(
    tenant_id: TenantId,
    request: Request,
    signature: Annotated[str | None, Header(alias="X-Twilio-Signature")] = None,
) -> Response:
    # Twilio posts application/x-www-form-urlencoded; parsed here, every pair kept for the
    # signature (no multipart parser needed).
    body = await request.body()
    try:
        params = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError as exc:
        raise InvalidInput("the body is not a UTF-8 form", field="body") from exc
    db: Database = request.app.state.db
    # Twilio signs the URL it was given (our public base URL), not what a proxy forwarded.
    url = f"{db.settings.public_base_url}{request.url.path}"
    if request.url.query:
        url += f"?{request.url.query}"
    await run_in_threadpool(
        callbacks.twilio_status,
        db,
        tenant_id,
        url=url,
        params=params,
        signature=signature,
        delivery_id=request.query_params.get("delivery"),
    )
    return Response(status_code=204)


@receipts.post("/whatsapp/{tenant_id}", summary="WhatsApp Cloud API status webhook")
async def whatsapp_status(
    tenant_id: TenantId,
    request: Request,
    signature: Annotated[str | None, Header(alias="X-Hub-Signature-256")] = None,
) -> Response:
    body = await request.body()
    db: Database = request.app.state.db
    changed = await run_in_threadpool(callbacks.whatsapp_statuses, db, tenant_id, body, signature)
    return json_response({"received": True, "changed": changed})


@receipts.get("/whatsapp/{tenant_id}", summary="Meta's webhook verification handshake")
def whatsapp_handshake(
    tenant_id: TenantId,
    db: DB,
    mode: Annotated[str | None, Query(alias="hub.mode", max_length=50)] = None,
    token: Annotated[str | None, Query(alias="hub.verify_token", max_length=500)] = None,
    challenge: Annotated[str | None, Query(alias="hub.challenge", max_length=500)] = None,
) -> Response:
    callbacks.whatsapp_handshake(db, tenant_id, mode, token)
    return Response(challenge or "", media_type="text/plain")


def _replay(db: Database, tenant: str, delivery_id: str, _: str) -> tuple[int, dict[str, Any]]:
    return 201, present_delivery(service.get_delivery(db, Caller(tenant, "replay"), delivery_id))


REPLAY_RENDERERS: dict[str, Renderer] = {"delivery": _replay}
router.include_router(api)
router.include_router(receipts)
