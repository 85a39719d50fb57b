from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse

from voucherd.api.deps import DB, QUERY_AS_DECLARED, CallerDep, Idem
from voucherd.api.openapi import NATIVE_ERRORS
from voucherd.api.responses import json_response, list_payload, respond_created
from voucherd.auth.caller import Caller
from voucherd.db.engine import Database
from voucherd.idempotency.service import Renderer
from voucherd.orders import clients, distributions, service
from voucherd.orders.schemas import (
    ClientCreate,
    ClientUpdate,
    DistributionCreate,
    OrderCreate,
    present_client,
    present_distribution,
    present_order,
)
from voucherd.pagination import DEFAULT_LIMIT, MAX_LIMIT
from voucherd.vouchers.schemas import present_voucher

router = APIRouter(prefix="/api/v1", responses=NATIVE_ERRORS, dependencies=QUERY_AS_DECLARED)

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Cursor = Annotated[str | None, Query(max_length=40)]


@router.post("/clients", status_code=201, tags=["clients"], summary="Create a corporate client")
def create_client(body: ClientCreate, db: DB, caller: CallerDep, idem: Idem) -> Response:
    record = clients.create_client(db, caller, body, idem=idem)
    return respond_created(db, caller, idem, present_client(record))


@router.get("/clients", tags=["clients"], summary="List or search clients, newest first")
def list_clients(
    db: DB,
    caller: CallerDep,
    external_client_id: Annotated[str | None, Query(max_length=200)] = None,
    q: Annotated[
        str | None, Query(min_length=1, max_length=200, description="Part of a name or code")
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response:
    page = clients.list_clients(
        db, caller, external_client_id=external_client_id, q=q, limit=limit, cursor=cursor
    )
    return json_response(list_payload([present_client(c) for c in page.items], page.next_cursor))


@router.get("/clients/{client}", tags=["clients"], summary="Get a client by id or code")
def get_client(client: str, db: DB, caller: CallerDep) -> Response:
    return json_response(present_client(clients.get_client(db, caller, client)))


@router.patch(
    "/clients/{client}",
    tags=["clients"],
    summary="Change a client (fields sent as null are cleared; voucher_types is replaced)",
)
def update_client(client: str, body: ClientUpdate, db: DB, caller: CallerDep) -> Response:
    return json_response(present_client(clients.update_client(db, caller, client, body)))


@router.post(
    "/orders",
    status_code=202,
    tags=["orders"],
    summary="Place a client order; its vouchers are minted in the background",
    description="Everything is checked first (client, products the client may order, "
    "quantities, prices, expiry): a refused order writes nothing. The answer (202) is the "
    "order with `status` `Processing`; follow it here or at `/api/v1/operations/{token}`.",
)
def place_order(body: OrderCreate, db: DB, caller: CallerDep, idem: Idem) -> Response:
    record = service.place_order(db, caller, body, idem=idem)
    response = respond_created(db, caller, idem, present_order(record), status=202)
    response.headers["Location"] = f"/api/v1/orders/{record.order.id}"
    return response


@router.get("/orders", tags=["orders"], summary="List client orders, newest first")
def list_orders(
    db: DB,
    caller: CallerDep,
    client: Annotated[str | None, Query(max_length=100, description="Id or code")] = None,
    external_user_id: Annotated[str | None, Query(max_length=200)] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response:
    page = service.list_orders(
        db, caller, client=client, external_user_id=external_user_id, limit=limit, cursor=cursor
    )
    return json_response(list_payload([present_order(o) for o in page.items], page.next_cursor))


@router.get("/orders/{order}", tags=["orders"], summary="A client order, its items and status")
def get_order(order: str, db: DB, caller: CallerDep) -> Response:
    return json_response(present_order(service.get_order(db, caller, order)))


@router.get("/orders/{order}/vouchers", tags=["orders"], summary="An order's vouchers")
def list_order_vouchers(
    order: str,
    db: DB,
    caller: CallerDep,
    item: Annotated[int | None, Query(ge=1, description="Only this item's")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response:
    page = service.list_order_vouchers(db, caller, order, item=item, limit=limit, cursor=cursor)
    now, base = db.now(), db.settings.public_base_url
    shown = [
        {**present_voucher(record, now=now, base_url=base), "client_order_item_id": item_id}
        for record, item_id in page.items
    ]
    return json_response(list_payload(shown, page.next_cursor))


@router.get(
    "/orders/{order}/vouchers.csv",
    tags=["orders"],
    summary="Export an order's vouchers as CSV",
    response_class=StreamingResponse,
)
def export_order(order: str, db: DB, caller: CallerDep) -> Response:
    filename, chunks = service.export_order(db, caller, order)
    return StreamingResponse(
        chunks,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.post(
    "/distributions",
    status_code=202,
    tags=["distributions"],
    summary="Distribute order items' vouchers to recipients by email or mobile",
    description="Each item's vouchers are promised at once (asking for more than an item "
    "has left is refused with `not_enough_vouchers`); each item then runs as its own "
    "operation. `externally_distributed: true` hands the codes back (here and as each item "
    "operation's CSV result) and sends nothing, and may leave `recipients` out: the codes "
    "(`quantity_per_recipient` of each item) then go to one unnamed recipient, you; `false` "
    "needs `recipients` and sends each one message with all its codes.",
)
def create_distribution(
    body: DistributionCreate, db: DB, caller: CallerDep, idem: Idem
) -> Response:
    record = distributions.create_distribution(db, caller, body, idem=idem)
    response = respond_created(db, caller, idem, present_distribution(record), status=202)
    response.headers["Location"] = f"/api/v1/distributions/{record.distribution.id}"
    return response


@router.get(
    "/distributions/{distribution}",
    tags=["distributions"],
    summary="A distribution: its items' status and each recipient's codes",
)
def get_distribution(distribution: str, db: DB, caller: CallerDep) -> Response:
    return json_response(
        present_distribution(distributions.get_distribution(db, caller, distribution))
    )


def _client(db: Database, tenant: str, client_id: str, _: str) -> tuple[int, dict[str, Any]]:
    return 201, present_client(clients.get_client(db, Caller(tenant, "replay"), client_id))


def _order(db: Database, tenant: str, order_id: str, _: str) -> tuple[int, dict[str, Any]]:
    return 202, present_order(service.get_order(db, Caller(tenant, "replay"), order_id))


def _distribution(db: Database, tenant: str, ref: str, _: str) -> tuple[int, dict[str, Any]]:
    record = distributions.get_distribution(db, Caller(tenant, "replay"), ref)
    return 202, present_distribution(record)


REPLAY_RENDERERS: dict[str, Renderer] = {
    "client": _client,
    "client_order": _order,
    "distribution": _distribution,
}
