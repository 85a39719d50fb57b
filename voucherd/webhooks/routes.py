"""Event webhook endpoints on the native API: register (the secret is shown once), list, look
at, change, remove; an endpoint's messages with their attempts; replay one event."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from voucherd.api.deps import DB, QUERY_AS_DECLARED, CallerDep, Idem
from voucherd.api.openapi import NATIVE_ERRORS
from voucherd.api.responses import json_response, list_payload, respond_created
from voucherd.auth.caller import Caller
from voucherd.db.engine import Database
from voucherd.idempotency.service import Renderer
from voucherd.pagination import DEFAULT_LIMIT, MAX_LIMIT
from voucherd.webhooks import service
from voucherd.webhooks.schemas import (
    EndpointCreate,
    EndpointUpdate,
    MessageState,
    present_endpoint,
    present_message,
)

router = APIRouter(
    prefix="/api/v1/webhook-endpoints",
    tags=["webhooks"],
    responses=NATIVE_ERRORS,
    dependencies=QUERY_AS_DECLARED,
)
_PRINTABLE = r"^[\x21-\x7e]+$"
EndpointId = Annotated[str, Path(max_length=64, pattern=_PRINTABLE)]
EventId = Annotated[str, Path(max_length=80, pattern=_PRINTABLE)]


@router.post("", status_code=201, summary="Register an endpoint; its secret is shown this once")
def create_endpoint(body: EndpointCreate, db: DB, caller: CallerDep, idem: Idem) -> Response:
    record = service.create_endpoint(db, caller, body, idem=idem)
    return respond_created(db, caller, idem, present_endpoint(record))


@router.get("", summary="The tenant's endpoints")
def list_endpoints(db: DB, caller: CallerDep) -> Response:
    records = service.list_endpoints(db, caller)
    return json_response(list_payload([present_endpoint(r) for r in records], None))


@router.get("/{endpoint}", summary="One endpoint")
def get_endpoint(endpoint: EndpointId, db: DB, caller: CallerDep) -> Response:
    return json_response(present_endpoint(service.get_endpoint(db, caller, endpoint)))


@router.patch("/{endpoint}", summary="Change an endpoint's URL, events or state")
def update_endpoint(
    endpoint: EndpointId, body: EndpointUpdate, db: DB, caller: CallerDep
) -> Response:
    return json_response(present_endpoint(service.update_endpoint(db, caller, endpoint, body)))


@router.delete("/{endpoint}", status_code=204, summary="Remove an endpoint and its messages")
def delete_endpoint(endpoint: EndpointId, db: DB, caller: CallerDep) -> Response:
    service.delete_endpoint(db, caller, endpoint)
    return Response(status_code=204)


@router.get("/{endpoint}/events", summary="The endpoint's event messages, newest first")
def list_messages(
    endpoint: EndpointId,
    db: DB,
    caller: CallerDep,
    state: MessageState | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=40, pattern=_PRINTABLE)] = None,
) -> Response:
    page = service.list_messages(db, caller, endpoint, state=state, limit=limit, cursor=cursor)
    return json_response(list_payload([present_message(r) for r in page.items], page.next_cursor))


@router.get("/{endpoint}/events/{event}", summary="One event's message with every attempt")
def get_message(endpoint: EndpointId, event: EventId, db: DB, caller: CallerDep) -> Response:
    return json_response(present_message(service.get_message(db, caller, endpoint, event)))


@router.post(
    "/{endpoint}/events/{event}/replay",
    status_code=202,
    summary="Send an event to the endpoint again, now, with the same webhook-id",
)
def replay(endpoint: EndpointId, event: EventId, db: DB, caller: CallerDep, idem: Idem) -> Response:
    record = service.replay_message(db, caller, endpoint, event, idem=idem)
    return respond_created(db, caller, idem, present_message(record), status=202)


def _endpoint(db: Database, tenant: str, endpoint_id: str, _: str) -> tuple[int, dict[str, Any]]:
    # The secret is not shown again, even to a replay of the request that created it.
    return 201, present_endpoint(
        service.get_endpoint(db, Caller(tenant, "replay", frozenset({"manage"})), endpoint_id)
    )


def _replay(db: Database, tenant: str, key: str, _: str) -> tuple[int, dict[str, Any]]:
    endpoint_id, _, event_id = key.partition(":")
    caller = Caller(tenant, "replay", frozenset({"manage"}))
    return 202, present_message(service.get_message(db, caller, endpoint_id, event_id))


REPLAY_RENDERERS: dict[str, Renderer] = {"webhook_endpoint": _endpoint, "webhook_replay": _replay}
