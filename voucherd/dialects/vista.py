"""Vista's Voucher Management APIs (seeds/004_333ed73a481a83b3.txt), spoken by voucherd.

Translation only: each endpoint renames Vista's fields to the native bodies' (orders.schemas),
calls the use case the native API calls (``create_client``, ``place_order``,
``create_distribution``, ``resolve_tokens``) and answers in Vista's shapes. Where the seed is
silent, these are the choices, each tested in tests/test_dialect_vista.py:

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

import json
import re
import secrets
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request, Response, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from voucherd.api.deps import BEARER
from voucherd.api.openapi import face_responses
from voucherd.api.responses import dumps
from voucherd.auth.service import Caller, authenticate_token
from voucherd.db.engine import Database
from voucherd.dialects.routing import FaceRoute
from voucherd.errors import DomainError, Forbidden, IdempotencyKeyInFlight, Unauthorized
from voucherd.idempotency.service import IdempotencyClaim, Replay, remember_response
from voucherd.operations.service import MAX_RESOLVE, resolve_tokens
from voucherd.orders.clients import create_client
from voucherd.orders.distributions import create_distribution
from voucherd.orders.schemas import ClientCreate, DistributionCreate, OrderCreate
from voucherd.orders.service import place_order

PREFIX = "/api/v1/voucher-management"
RESOLVE_PATH = "/api/v1/identity-resolution/from-operation-result-tokens"
_TITLES = {
    400: "One or more validation errors occurred.",
    401: "Unauthorized",
    403: "Forbidden",
    409: "Conflict",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "An unexpected error occurred.",
    503: "Service Unavailable",
}
_TYPES = {
    400: "https://tools.ietf.org/html/rfc9110#section-15.5.1",
    401: "https://tools.ietf.org/html/rfc9110#section-15.5.2",
    403: "https://tools.ietf.org/html/rfc9110#section-15.5.4",
    409: "https://tools.ietf.org/html/rfc9110#section-15.5.10",
    429: "https://tools.ietf.org/html/rfc6585#section-4",
    500: "https://tools.ietf.org/html/rfc9110#section-15.6.1",
    503: "https://tools.ietf.org/html/rfc9110#section-15.6.4",
}

# The native bodies' field names, as Vista spells them (per endpoint).
_CLIENT_FIELDS = {
    "code": "code",
    "name": "name",
    "contact": "contact",
    "external_client_id": "externalClientId",
    "external_data": "externalData",
    "voucher_types": "voucherTypeCodes",
}
_ORDER_FIELDS = {
    "client": "clientCode",
    "reference": "reference",
    "electronic_distribution": "electronicDistribution",
    "external_user_id": "externalUserId",
    "delivery_address": "deliveryAddress",
    "external_data": "externalData",
    "items": "vouchers",
    "product": "productCode",
    "quantity": "quantity",
    "sale_price": "salePrice",
    "major_sale_price": "salePrice",
    "redeem_price": "redeemPrice",
    "major_redeem_price": "redeemPrice",
    "expiry_date": "expiryDate",
}
_DISTRIBUTION_FIELDS = {
    "reference": "reference",
    "distribution_data": "distributionData",
    "externally_distributed": "externallyDistributed",
    "items": "distributionItems",
    "order_item": "clientOrderItemId",
    "quantity_per_recipient": "quantityPerRecipient",
    "recipients": "recipients",
    "email": "email",
    "phone": "mobileNumber",
    "name": "name",
    "channel": "channel",
}


class Refused(Exception):
    """A Vista error answer: the status and the reasons per Vista field."""

    def __init__(
        self, status: int, errors: dict[str, list[str]], headers: dict[str, str] | None = None
    ):
        super().__init__(next(iter(errors.values()), [""])[0] if errors else "")
        self.status = status
        self.errors = errors
        self.headers = headers


def _vista_field(field: str | None, names: dict[str, str]) -> str:
    """``items.0.expiry_date`` -> ``vouchers[0].expiryDate``."""
    if not field:
        return ""
    out = ""
    for part in field.split("."):
        if part.isdigit():
            out += f"[{part}]"
        else:
            out += ("." if out else "") + names.get(part, part)
    return out


def _refusal(exc: Exception, names: dict[str, str]) -> Refused:
    if isinstance(exc, DomainError):
        if isinstance(exc, Unauthorized | Forbidden) or exc.status == 429:
            # 429: too many requests or failed lookups (voucherd/guard), with Retry-After.
            return Refused(exc.status, {"": [exc.detail]})
        if isinstance(exc, IdempotencyKeyInFlight):
            return Refused(409, {"Idempotency-Key": [exc.detail]})
        return Refused(400, {_vista_field(exc.field, names): [exc.detail]})
    assert isinstance(exc, RequestValidationError | ValidationError)
    errors: dict[str, list[str]] = {}
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ()) if p != "body"]
        # A model-level rule names no field; pydantic's own prefix says nothing to a client.
        field = _vista_field(".".join(loc), names)
        reason = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        errors.setdefault(field, []).append(reason)
    return Refused(400, errors)


def _problem(request: Request, status: int, errors: dict[str, list[str]]) -> Response:
    body = {
        "type": _TYPES.get(status, _TYPES[400]),
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "errors": errors,
        "traceId": request.state.vista_trace_id,
    }
    return Response(dumps(body), status_code=status, media_type="application/json")


def _correlate(request: Request, response: Response) -> Response:
    response.headers["vista-correlation-id"] = request.state.vista_correlation_id
    response.headers["vista-trace-id"] = request.state.vista_trace_id
    return response


_CORRELATION = re.compile(r"^[\x21-\x7e]{1,128}$")


class _VistaRoute(FaceRoute):
    """Every answer in Vista's shapes: never problem+json, never a bare 500."""

    face = "vista"

    def begin(self, request: Request) -> None:
        given = request.headers.get("correlationid", "")
        request.state.vista_correlation_id = (
            given if _CORRELATION.match(given) else secrets.token_hex(16)
        )
        request.state.vista_trace_id = secrets.token_hex(16)

    def finish(self, request: Request, response: Response) -> Response:
        return _correlate(request, response)

    def refusal(self, request: Request, exc: Exception) -> Response | None:
        if isinstance(exc, Refused):
            response = _problem(request, exc.status, exc.errors)
            for name, value in (exc.headers or {}).items():
                response.headers[name] = value
            return response
        if isinstance(exc, Replay):
            if exc.body is not None and exc.status is not None:
                replayed = Response(exc.body, status_code=exc.status, media_type="application/json")
                replayed.headers["Idempotent-Replayed"] = "true"
                return replayed
            reason = "the first request with this Idempotency-Key has not finished"
            return _problem(request, 409, {"Idempotency-Key": [reason]})
        if isinstance(exc, DomainError | RequestValidationError | ValidationError):
            refused = _refusal(exc, {})
            return _problem(request, refused.status, refused.errors)
        return None

    def unavailable(self, request: Request) -> Response:
        response = _problem(request, 503, {"": ["the service is unavailable; retry shortly"]})
        response.headers["Retry-After"] = "1"
        return response

    def internal(self, request: Request) -> Response:
        return _problem(request, 500, {"": ["an unexpected error occurred"]})


_ERROR_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "errors", "traceId"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "errors": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
        "traceId": {"type": "string"},
    },
}

router = APIRouter(
    tags=["Vista"],
    route_class=_VistaRoute,
    # Declares the credential (the routes read it in _caller).
    dependencies=[Security(BEARER)],
    responses=face_responses("VistaError", _ERROR_SCHEMA, 400, 401, 403, 409, 429, 503),
)


# --- requests -----------------------------------------------------------------------------------


def _caller(request: Request) -> Caller:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Refused(
            401,
            {"": ["send the API token as 'Authorization: Bearer <token>'"]},
            {"WWW-Authenticate": "Bearer"},
        )
    try:
        return authenticate_token(request.app.state.db, token)
    except Unauthorized as exc:
        raise Refused(401, {"": [exc.detail]}, {"WWW-Authenticate": "Bearer"}) from exc


async def _json(request: Request) -> tuple[Any, bytes]:
    raw = await request.body()
    try:
        # Decimals, not floats: 12.34 must stay 12.34 when it becomes 1234 cents.
        return json.loads(raw, parse_float=Decimal), raw
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused(400, {"": ["the request body is not valid JSON"]}) from exc


async def _object(request: Request) -> tuple[dict[str, Any], bytes]:
    body, raw = await _json(request)
    if not isinstance(body, dict):
        raise Refused(400, {"": ["the request body must be a JSON object"]})
    return body, raw


def _idempotency(request: Request, raw: bytes) -> IdempotencyClaim | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isprintable():
        raise Refused(400, {"Idempotency-Key": ["1 to 255 printable characters"]})
    return IdempotencyClaim.of(key, request.method, request.url.path, raw)


def _pick(body: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """The native body: each Vista field present under its native name; others are dropped."""
    return {native: body[vista] for native, vista in names.items() if vista in body}


def _client_body(body: dict[str, Any]) -> dict[str, Any]:
    native = _pick(body, _CLIENT_FIELDS)
    contact = native.get("contact")
    if isinstance(contact, dict):
        # Vista sends "" for a detail the client has none of (its example's fax).
        native["contact"] = {
            k: (None if v == "" else v)
            for k, v in contact.items()
            if k in ("name", "email", "phone", "fax")
        }
    if native.get("voucher_types") is None:
        native.pop("voucher_types", None)
    return native


def _order_body(body: dict[str, Any]) -> dict[str, Any]:
    native = _pick(
        body,
        {
            "client": "clientCode",
            "reference": "reference",
            "electronic_distribution": "electronicDistribution",
            "external_user_id": "externalUserId",
            "delivery_address": "deliveryAddress",
            "external_data": "externalData",
            "items": "vouchers",
        },
    )
    items = native.get("items")
    if isinstance(items, list):
        native["items"] = [
            _pick(
                item,
                {
                    "product": "productCode",
                    "quantity": "quantity",
                    "major_sale_price": "salePrice",
                    "major_redeem_price": "redeemPrice",
                    "expiry_date": "expiryDate",
                },
            )
            if isinstance(item, dict)
            else item
            for item in items
        ]
    return native


def _distribution_body(body: dict[str, Any], channel: str) -> dict[str, Any]:
    native = _pick(
        body,
        {
            "reference": "reference",
            "distribution_data": "distributionData",
            "externally_distributed": "externallyDistributed",
            "items": "distributionItems",
            "recipients": "recipients",
        },
    )
    native["channel"] = channel
    items = native.get("items")
    if isinstance(items, list):
        native["items"] = [
            _pick(
                i,
                {
                    "order_item": "clientOrderItemId",
                    "quantity_per_recipient": "quantityPerRecipient",
                },
            )
            if isinstance(i, dict)
            else i
            for i in items
        ]
    recipients = native.get("recipients")
    address = "email" if channel == "email" else "mobileNumber"
    if isinstance(recipients, list):
        native["recipients"] = [
            _pick(r, {"name": "name", "email" if channel == "email" else "phone": address})
            if isinstance(r, dict)
            else r
            for r in recipients
        ]
    return native


def _tokens(*tokens: str) -> dict[str, Any]:
    return {"responses": [{"operationResultToken": token} for token in tokens]}


def _answer(db: Database, caller: Caller, idem: IdempotencyClaim | None, payload: Any) -> Response:
    body = dumps(payload)
    if idem is not None:
        remember_response(db, caller.tenant_id, idem, 200, body)
    return Response(body, media_type="application/json")


def _translated(call: Callable[[], Response], names: dict[str, str]) -> Response:
    """Run a use case, naming any refusal's field as Vista spells it."""
    try:
        return call()
    except (DomainError, ValidationError) as exc:
        raise _refusal(exc, names) from exc


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
    caller = _caller(request)
    body, raw = await _object(request)
    idem = _idempotency(request, raw)
    db: Database = request.app.state.db

    def run() -> Response:
        record = create_client(
            db, caller, ClientCreate.model_validate(_client_body(body)), idem=idem
        )
        assert record.operation is not None
        return _answer(db, caller, idem, _tokens(record.operation.token))

    return await run_in_threadpool(_translated, run, _CLIENT_FIELDS)


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
    caller = _caller(request)
    body, raw = await _object(request)
    idem = _idempotency(request, raw)
    db: Database = request.app.state.db

    def run() -> Response:
        record = place_order(db, caller, OrderCreate.model_validate(_order_body(body)), idem=idem)
        return _answer(db, caller, idem, _tokens(record.operation.token))

    return await run_in_threadpool(_translated, run, _ORDER_FIELDS)


async def _distribute(request: Request, channel: str) -> Response:
    caller = _caller(request)
    body, raw = await _object(request)
    idem = _idempotency(request, raw)
    db: Database = request.app.state.db

    def run() -> Response:
        native = DistributionCreate.model_validate(_distribution_body(body, channel))
        record = create_distribution(db, caller, native, idem=idem)
        return _answer(db, caller, idem, _tokens(*(op.token for _, op in record.items)))

    names = {**_DISTRIBUTION_FIELDS, "phone": "mobileNumber" if channel == "mobile" else "phone"}
    return await run_in_threadpool(_translated, run, names)


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
    caller = _caller(request)
    body, _ = await _json(request)
    if not isinstance(body, list) or not all(isinstance(t, str) for t in body):
        raise Refused(400, {"": ["the request body must be a JSON array of tokens"]})
    if not body:
        raise Refused(400, {"": ["give at least one token"]})
    if len(body) > MAX_RESOLVE:
        raise Refused(400, {"": [f"at most {MAX_RESOLVE} tokens at once"]})
    db: Database = request.app.state.db
    found = await run_in_threadpool(resolve_tokens, db, caller, body)
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
