"""Vista's Voucher Management APIs (seeds/004_333ed73a481a83b3.txt), spoken by voucherd.

Translation only: each endpoint renames Vista's fields to the native bodies' (orders.schemas),
calls the use case the native API calls (``create_client``, ``place_order``,
``create_distribution``, ``resolve_tokens``) and answers in Vista's shapes. Where the seed is
silent, these are the choices, each tested in tests/dialects/test_vista.py (errors in errors.py,
bodies in bodies.py):

* **Credentials**: ``Authorization: Bearer <token>``, the voucherd API token ``voucherd keys
  create`` prints (Vista's integration platform takes a Bearer JWT; any client of it already
  sends this header). Missing or wrong: 401; a key without the scope: 403. Creating a client
  takes ``manage``, orders and distributions ``issue``, resolving any key.
* **Asynchronous answers**: ``POST client``, ``client-order``, ``email-distribution`` and
  ``mobile-distribution`` answer 200 with ``{"responses": [{"operationResultToken": ...}]}``,
  one token per distribution item for distributions. A client is created at once; its token
  still resolves (``Completed``, ``VoucherClient``, the client's id). An order's token resolves
  to ``VoucherClientOrder`` and the order's id while it is ``Processing``, as the seed shows; a
  distribution item's to ``VoucherOrderDistribution`` and the item's id.
* **Resolve**: ``POST /api/v1/identity-resolution/from-operation-result-tokens`` with a JSON
  array of tokens, the path of Vista's own "Resolve Operation Result Tokens" endpoint, and the
  same under ``/api/v1/voucher-management/resolve-operation-result-tokens`` for clients that
  keep all of this API under one prefix. The answer is one object per token, in order:
  ``operationResultToken``, ``entityId``, ``status`` (``Processing``, ``Completed``,
  ``Failed``), ``entityType``; all but the token are null for a token voucherd does not know
  (as Vista answers for an entity not found), which includes another tenant's. At most 100.
* **Bodies**: the seed's fields, camelCase; fields the seed abbreviates away (``...``) and any
  other unknown field are ignored, as ASP.NET's binder ignores them. Amounts (``salePrice``,
  ``redeemPrice``) are major units of the product's currency (``12.34``), read exactly (no
  float rounding) and converted by the core. ``clientCode`` is the client's code (or id).
* **Voucher types and products**: a client's ``voucherTypeCodes`` and an order line's
  ``productCode`` both name voucherd campaigns, by name (or id); a campaign must exist before
  a client lists it. A client may order only its voucher types (a core rule, for every face):
  any other ``productCode`` is a 400 on ``vouchers[i].productCode`` that lists the client's
  voucher types and says how to add one (``PATCH /api/v1/clients/{code}`` with
  ``voucher_types``, same Bearer token; Vista has no client update). Note that the seed's own
  example pair is inconsistent: its client lists ``VOUCHERTYPE1`` and ``VOUCHERTYPE2`` and its
  order asks for ``ABC12``, so replayed as written the order is refused; list ``ABC12`` among
  the client's ``voucherTypeCodes`` (or order a listed type) and it is accepted.
* **clientOrderItemId** is the integer id of an order's line item, as in the seed (``1234``);
  a string, a fraction or an id of no item of yours is a 400 on
  ``distributionItems[i].clientOrderItemId``. A Vista client learns it from its order: the
  order's token resolves to ``entityId``, the order's id, and ``GET /api/v1/orders/{entityId}``
  (same Bearer token) lists the order's ``items`` with each one's ``id`` (and how many are
  ``available`` to distribute). An item's vouchers can be distributed once its order has
  resolved to ``Completed``.
* **Recipients**, which the seed abbreviates (``...``), are optional. Without them (as a real
  Vista client sends, since it hands the vouchers out itself) the distribution assigns
  ``quantityPerRecipient`` vouchers of each item to one unnamed recipient, the client, and
  hands them back. To split the codes per person, send ``recipients: [{"name", "email"}]``
  for an email distribution or ``[{"name", "mobileNumber"}]`` (international form) for a
  mobile one: each recipient gets ``quantityPerRecipient`` of each item.
* **externallyDistributed**: Vista supports only ``true`` (the codes are assigned, published
  with channel ``Distribution`` and handed back; read them at ``GET /api/v1/distributions/{id}``
  or as each item operation's CSV result; nothing is sent). voucherd also accepts ``false``:
  it then needs ``recipients`` (400 on ``recipients`` without) and sends each recipient one
  message with all its codes. Left out, it is ``true``.
* **Errors** are Vista's (ASP.NET Core) validation problem details as ``application/json``:
  ``{"type", "title", "status", "errors": {"<vistaField>": ["reason"]}, "traceId"}``, with the
  field named as Vista names it (``vouchers[0].expiryDate``). The status follows Vista's
  conventions: 400 for invalid data or a broken business rule (an unknown client or product
  included), 401, 403, 409 while an Idempotency-Key's first request is in flight, 503 with
  Retry-After while the database is unreachable. Every answer carries ``vista-correlation-id``
  (the request's ``correlationid`` header, or a new one) and ``vista-trace-id``.
* **Retries**: an ``Idempotency-Key`` header works as on the native API; Vista itself has none.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, Security

from voucherd.api.deps import BEARER
from voucherd.api.openapi import face_responses
from voucherd.api.responses import dumps, respond_created
from voucherd.auth.caller import Caller
from voucherd.db.engine import Database
from voucherd.dialects import kit
from voucherd.dialects.vista import bodies
from voucherd.dialects.vista.errors import ERROR_SCHEMA, Refused, VistaRoute, translated
from voucherd.idempotency.service import IdempotencyClaim
from voucherd.operations.service import MAX_RESOLVE, resolve_tokens
from voucherd.orders.clients import create_client
from voucherd.orders.distributions import create_distribution
from voucherd.orders.schemas import ClientCreate, DistributionCreate, OrderCreate
from voucherd.orders.service import place_order

PREFIX = "/api/v1/voucher-management"
RESOLVE_PATH = "/api/v1/identity-resolution/from-operation-result-tokens"

router = APIRouter(
    tags=["Vista"],
    route_class=VistaRoute,
    # Declares the credential (the routes read it through the kit).
    dependencies=[Security(BEARER)],
    responses=face_responses("VistaError", ERROR_SCHEMA, 400, 401, 403, 409, 429, 503),
)


# --- requests -----------------------------------------------------------------------------------


async def _caller(request: Request) -> Caller:
    """Off the event loop: a cold key cache reads the database."""
    missing = "send the API token as 'Authorization: Bearer <token>'"
    return await kit.authenticate(request, kit.BearerToken(), missing=missing)


async def _begin(request: Request) -> tuple[Caller, dict[str, Any], IdempotencyClaim | None]:
    """Who calls, the body (amounts read exactly, as Decimals) and its idempotency claim."""
    caller = await _caller(request)
    body, raw = await kit.json_object(request, decimals=True)
    return caller, body, kit.idempotency_claim(request, raw)


def _tokens(*tokens: str) -> dict[str, Any]:
    return {"responses": [{"operationResultToken": token} for token in tokens]}


def _answer(db: Database, caller: Caller, idem: IdempotencyClaim | None, payload: Any) -> Response:
    return respond_created(db, caller, idem, payload, status=200)


# --- endpoints ----------------------------------------------------------------------------------


def _documented(example: Any) -> dict[str, Any]:
    """The body for /docs (read by hand, so FastAPI cannot describe it itself)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}, "example": example}},
        },
    }


@router.post(
    f"{PREFIX}/client",
    summary="Create a client (Vista); answers an Operation Result Token",
    openapi_extra=_documented({"code": "ABC123", "name": "Vista", "voucherTypeCodes": ["T1"]}),
)
async def vista_client(request: Request) -> Response:
    caller, body, idem = await _begin(request)
    db: Database = request.app.state.db

    def run() -> Response:
        native = ClientCreate.model_validate(bodies.client_body(body))
        record = create_client(db, caller, native, idem=idem)
        assert record.operation is not None
        return _answer(db, caller, idem, _tokens(record.operation.token))

    return await kit.off_loop(translated, run, bodies.CLIENT_FIELDS)


@router.post(
    f"{PREFIX}/client-order",
    summary="Place a client order (Vista); answers an Operation Result Token",
    openapi_extra=_documented(
        {
            "clientCode": "ABC123",
            "vouchers": [{"productCode": "ABC12", "quantity": 5, "redeemPrice": 12.34}],
        }
    ),
)
async def vista_client_order(request: Request) -> Response:
    caller, body, idem = await _begin(request)
    db: Database = request.app.state.db

    def run() -> Response:
        native = OrderCreate.model_validate(bodies.order_body(body))
        record = place_order(db, caller, native, idem=idem)
        return _answer(db, caller, idem, _tokens(record.operation.token))

    return await kit.off_loop(translated, run, bodies.ORDER_FIELDS)


async def _distribute(request: Request, channel: str) -> Response:
    caller, body, idem = await _begin(request)
    db: Database = request.app.state.db

    def run() -> Response:
        native = DistributionCreate.model_validate(bodies.distribution_body(body, channel))
        record = create_distribution(db, caller, native, idem=idem)
        return _answer(db, caller, idem, _tokens(*(op.token for _, op in record.items)))

    return await kit.off_loop(translated, run, bodies.distribution_fields(channel))


_DISTRIBUTION_EXAMPLE = {
    "reference": "abc",
    "distributionData": "string",
    "distributionItems": [{"clientOrderItemId": 1234, "quantityPerRecipient": 1}],
    "externallyDistributed": True,
}


@router.post(
    f"{PREFIX}/email-distribution",
    summary="Distribute order items by email (Vista); one token per distribution item",
    openapi_extra=_documented(
        {**_DISTRIBUTION_EXAMPLE, "recipients": [{"name": "Ada", "email": "ada@example.com"}]}
    ),
)
async def vista_email_distribution(request: Request) -> Response:
    return await _distribute(request, "email")


@router.post(
    f"{PREFIX}/mobile-distribution",
    summary="Distribute order items by mobile (Vista); one token per distribution item",
    openapi_extra=_documented(
        {**_DISTRIBUTION_EXAMPLE, "recipients": [{"name": "Ada", "mobileNumber": "+6421000000"}]}
    ),
)
async def vista_mobile_distribution(request: Request) -> Response:
    return await _distribute(request, "mobile")


async def _resolve(request: Request) -> Response:
    caller = await _caller(request)
    body, _ = await kit.json_body(request, decimals=True)
    if not isinstance(body, list) or not all(isinstance(t, str) for t in body):
        raise Refused(400, {"": ["the request body must be a JSON array of tokens"]})
    if not body:
        raise Refused(400, {"": ["give at least one token"]})
    if len(body) > MAX_RESOLVE:
        raise Refused(400, {"": [f"at most {MAX_RESOLVE} tokens at once"]})
    db: Database = request.app.state.db
    found = await kit.off_loop(resolve_tokens, db, caller, body)
    payload = [
        {
            "operationResultToken": token,
            "entityId": operation.entity_id if operation else None,
            "status": operation.status if operation else None,
            "entityType": operation.entity_type if operation else None,
        }
        for token, operation in zip(body, found, strict=True)
    ]
    return Response(dumps(payload), media_type="application/json")


_RESOLVE_DOC = _documented(["<RESULT TOKEN 1>", "<RESULT TOKEN 2>"])
# The tokens are a JSON array, not an object.
_RESOLVE_DOC["requestBody"]["content"]["application/json"]["schema"] = {
    "type": "array",
    "items": {"type": "string"},
    "minItems": 1,
    "maxItems": MAX_RESOLVE,
}


@router.post(
    RESOLVE_PATH, summary="Resolve Operation Result Tokens (Vista)", openapi_extra=_RESOLVE_DOC
)
async def vista_resolve(request: Request) -> Response:
    return await _resolve(request)


@router.post(
    f"{PREFIX}/resolve-operation-result-tokens",
    summary="Resolve Operation Result Tokens (Vista), under the voucher-management prefix",
    openapi_extra=_RESOLVE_DOC,
)
async def vista_resolve_here(request: Request) -> Response:
    return await _resolve(request)
