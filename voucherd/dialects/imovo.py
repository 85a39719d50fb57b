"""i-movo's Voucher APIs (seeds/003_47925c14831df0ec.txt), spoken by voucherd.

Translation only: each endpoint parses i-movo's parameters, calls the use case the native API
calls (``issue_voucher``, ``cancel_voucher``) and answers in i-movo's envelope. Where the seed
is vague, these are the choices, each tested in tests/dialects/test_imovo.py:

* **Credentials**: ``X-API-KEY`` carries a voucherd API token (``voucherd keys create`` prints
  it). Missing or wrong: 401 with the envelope below.
* **Parameters** come from the query string (as the seed's examples send them), from a JSON
  object body, or from a form body, in any mix; a name given twice is refused. Names match
  case-insensitively, as ASP.NET's model binding (i-movo runs on Azure App Service) matches them,
  so ``campaignCode`` and ``CampaignCode``, ``PostCode`` and ``Postcode`` (the seed spells both)
  all work. Each endpoint reads its own names: ``value`` on Request, ``VoucherValue`` on
  RequestVoucherWithId. Unknown names are ignored, as i-movo's binder ignores them. Text values
  may also arrive as JSON numbers (a customer reference of digits).
* **Envelope**: success carries the seed's fields and ``"successfulRequest": true``; failure is
  ``{"errorMessages": [...], "successfulRequest": false}``, every message at once, with the
  seed's strings where it has one. Status codes follow the seed's labels: 400 for a refused
  request ("Error", "Validation Error"), 404 for "Error (Not Found)", 401 / 403 for a key that
  is wrong or lacks a scope, 503 (with Retry-After) while the database is unreachable. A client
  that reads only ``successfulRequest`` works either way.
* **Campaign errors**: Request answers the seed's "Unable to create voucher: the campaign code
  submitted does not exist"; RequestVoucherWithId answers ``InvalidCampaign`` (its own example).
  An inactive campaign is "... the campaign is not active" on Request, ``InvalidCampaign`` on
  RequestVoucherWithId.
* **Values** are major units of the campaign's currency (``20.00``), converted by the core; a
  value above the campaign's maximum, zero, negative, not a number or finer than the currency's
  cent is "Unable to create voucher: the value entered is invalid". Without one, the campaign's
  default value. The tenant's rolling weekly value limit answers ``ClientWeeklyValueLimitReached``.
* **Answer**: ``voucherCode``; ``balance`` as a number with the currency's decimals (``20.00``);
  ``expiryDate`` in the campaign's time zone without an offset, as .NET writes a local DateTime
  (``2024-08-09T23:59:59.999999``; null without expiry); ``message``: the campaign's SMS message
  (its template, or the default) with the value, expiry and the voucher page link.
* **Delivery**: a campaign whose ``delivery_channel`` is set delivers every voucher by SMS (or
  WhatsApp, the tenant's phone channel) or email, to ``DeliveryRecipient`` when given, else to
  ``customerReference``; a national number is read in the campaign locale's country
  (``07123456789`` in an en-GB campaign is +447123456789). That rule lives in the core.
* **RequestVoucherWithId**: ``CustomerName``, ``Address`` and ``PostCode`` are stored on the
  voucher (the core's holder) and printed on its page for the ID check; each missing one is named
  ("address is required", "post code is required", "customer name is required"), after any
  missing campaign code or customer reference.
* **CancelVoucher**: any voucher of the key's tenant by code; "Voucher not found" (404) for no
  such voucher (another tenant's included), "Voucher is already cancelled or redeemed" otherwise.
  Cancelling takes the key's ``manage`` scope, as in the native API.
* **Retries**: i-movo has no idempotency key and none is required here; cancelling twice is
  refused by the core's conditional update, so a retry never changes a voucher twice.
* **The seed's own typos**: its RequestVoucherWithId example body has an unquoted email
  address, which is not JSON; clients send it quoted (their JSON writer does), and a body that
  is not JSON is refused with "the request body is not valid JSON".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import orjson
from fastapi import APIRouter, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader
from pydantic import ValidationError

from voucherd.api.openapi import face_responses
from voucherd.api.responses import dumps
from voucherd.auth.caller import Caller
from voucherd.db.engine import Database
from voucherd.delivery.messages import holder_message
from voucherd.dialects import kit
from voucherd.dialects.routing import FaceRoute
from voucherd.errors import (
    Conflict,
    DomainError,
    ErrorCode,
    Forbidden,
    LimitReached,
    NotFound,
    Unauthorized,
)
from voucherd.money import to_major
from voucherd.pages.urls import page_url
from voucherd.vouchers.issue import issue_voucher
from voucherd.vouchers.schemas import IssueVoucher, VoucherRecord
from voucherd.vouchers.service import cancel_voucher

NO_CAMPAIGN = "Unable to create voucher: the campaign code submitted does not exist"
INACTIVE_CAMPAIGN = "Unable to create voucher: the campaign is not active"
INVALID_CAMPAIGN = "InvalidCampaign"
INVALID_VALUE = "Unable to create voucher: the value entered is invalid"
WEEKLY_LIMIT = "ClientWeeklyValueLimitReached"
VOUCHER_NOT_FOUND = "Voucher not found"
CODE_MISTYPED = "Voucher code is mistyped — check it and try again"
NOT_CANCELLABLE = "Voucher is already cancelled or redeemed"
NOT_JSON = kit.NOT_JSON

# How i-movo's users would name the core's fields in a message.
_FIELD_NAMES = {
    "campaign": "campaign code",
    "customer_ref": "customer reference",
    "recipient": "delivery recipient",
    "holder.name": "customer name",
    "holder.address": "address",
    "holder.postcode": "post code",
}


class Refused(Exception):
    """An i-movo failure envelope to answer with."""

    def __init__(self, status: int, *messages: str, headers: dict[str, str] | None = None):
        super().__init__(messages[0] if messages else "")
        self.status = status
        self.messages = list(messages)
        self.headers = headers


def envelope(status: int, messages: list[str], headers: dict[str, str] | None = None) -> Response:
    body = dumps({"errorMessages": messages, "successfulRequest": False})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


class _ImovoRoute(FaceRoute):
    """Every failure in i-movo's envelope: never problem+json, never a bare 500."""

    face = "i-movo"

    def refusal(self, request: Request, exc: Exception) -> Response | None:
        if isinstance(exc, Refused):
            return envelope(exc.status, exc.messages, exc.headers)
        if isinstance(exc, DomainError):
            return envelope(_status_of(exc), [exc.detail])
        if isinstance(exc, RequestValidationError | ValidationError):
            return envelope(400, _validation_messages(exc))
        return None

    def unavailable(self, request: Request) -> Response:
        return envelope(503, ["the service is unavailable; retry shortly"], {"Retry-After": "1"})

    def internal(self, request: Request) -> Response:
        return envelope(500, ["an unexpected error occurred"])


_ERROR_SCHEMA = {
    "type": "object",
    "required": ["errorMessages", "successfulRequest"],
    "properties": {
        "errorMessages": {"type": "array", "items": {"type": "string"}},
        "successfulRequest": {"type": "boolean", "enum": [False]},
    },
}
# Declares the credential (the routes read it in _caller).
_API_KEY = APIKeyHeader(name="X-API-KEY", scheme_name="ImovoApiKey", auto_error=False)

router = APIRouter(
    tags=["i-movo"],
    route_class=_ImovoRoute,
    dependencies=[Security(_API_KEY)],
    responses=face_responses("ImovoError", _ERROR_SCHEMA, 400, 401, 403, 404, 429, 503),
)


# --- parameters ---------------------------------------------------------------------------------


async def _parameters(request: Request) -> dict[str, Any]:
    """The request's parameters by lower-cased name, from the query string and the body."""
    found: dict[str, Any] = {}

    def put(name: str, value: Any) -> None:
        key = name.lower()
        if key in found:
            raise Refused(400, f"{name} is given more than once")
        found[key] = value

    for name, value in request.query_params.multi_items():
        put(name, value)
    raw = await request.body()
    if not raw.strip():
        return found
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError as exc:
            raise Refused(400, "the request body is not UTF-8") from exc
        for name, value in pairs:
            put(name, value)
        return found
    for name, value in kit.as_object(kit.parse_json(raw)).items():
        put(name, value)
    return found


def _text(parameters: Mapping[str, Any], name: str, label: str) -> str | None:
    """A text parameter, stripped; None when absent or blank."""
    value = parameters.get(name.lower())
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise Refused(400, f"{label} must be text")
    text = str(value).strip()
    return text or None


def _amount(parameters: Mapping[str, Any], name: str) -> Decimal | None:
    value = parameters.get(name.lower())
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise Refused(400, INVALID_VALUE)
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise Refused(400, INVALID_VALUE) from exc
    if not amount.is_finite() or amount <= 0:
        raise Refused(400, INVALID_VALUE)
    return amount


def _require(missing: list[str], value: str | None, label: str) -> str:
    if value is None:
        missing.append(f"{label} is required")
        return ""
    return value


# --- credentials and errors ---------------------------------------------------------------------


async def _caller(request: Request) -> Caller:
    """Off the event loop: a cold key cache reads the database."""
    scheme = kit.TokenHeader("x-api-key")
    return await kit.authenticate(request, scheme, missing="the X-API-KEY header is required")


def _status_of(exc: DomainError) -> int:
    # 429 (voucherd/guard: too many requests or failed lookups) keeps its status and its
    # Retry-After, which the guard's middleware adds.
    if isinstance(exc, Unauthorized | Forbidden | NotFound) or exc.status == 429:
        return exc.status
    return 400


def door(request: Request, exc: DomainError) -> Response:
    """A refusal made before any route was chosen (api/limits.py): a body over the limit (413),
    a NUL in the URL (400)."""
    return envelope(exc.status, [exc.detail])


def _validation_messages(exc: RequestValidationError | ValidationError) -> list[str]:
    messages = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        if field in ("value", "major_value"):
            messages.append(INVALID_VALUE)
            continue
        label = _FIELD_NAMES.get(field, field or "the request")
        reason = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        messages.append(f"{label} is invalid: {reason}")
    return list(dict.fromkeys(messages))


def _issue_refusal(exc: DomainError, *, with_id: bool) -> Refused:
    """The core's refusal of an issue, in the words the seed uses for each endpoint."""
    if isinstance(exc, Unauthorized | Forbidden):
        return Refused(exc.status, exc.detail)
    if isinstance(exc, NotFound) and exc.field == "campaign":
        return Refused(400, INVALID_CAMPAIGN if with_id else NO_CAMPAIGN)
    if isinstance(exc, Conflict) and exc.code == ErrorCode.CAMPAIGN_INACTIVE:
        return Refused(400, INVALID_CAMPAIGN if with_id else INACTIVE_CAMPAIGN)
    if isinstance(exc, LimitReached) and exc.code == ErrorCode.WEEKLY_VALUE_LIMIT_REACHED:
        return Refused(400, WEEKLY_LIMIT)
    if exc.field in ("value", "major_value"):
        return Refused(400, INVALID_VALUE)
    label = _FIELD_NAMES.get(exc.field or "")
    detail = f"{label}: {exc.detail}" if label else exc.detail
    return Refused(_status_of(exc), f"Unable to create voucher: {detail}")


# --- answers ------------------------------------------------------------------------------------


def _local_datetime(moment: datetime | None, timezone: str) -> str | None:
    """As .NET serialises a local DateTime: no offset, fractional seconds without trailing 0s."""
    if moment is None:
        return None
    local = moment.astimezone(ZoneInfo(timezone)).replace(tzinfo=None)
    text = local.isoformat(timespec="microseconds")
    return text.rstrip("0").rstrip(".")


def _balance(record: VoucherRecord) -> Any:
    voucher = record.voucher
    if voucher.balance is None:
        return None
    if voucher.currency is None:
        return voucher.balance  # points
    # A JSON number with the currency's decimals (20.00), as the seed shows it.
    return orjson.Fragment(str(to_major(voucher.balance, voucher.currency)).encode())


def _issued(db: Database, record: VoucherRecord) -> Response:
    voucher, campaign = record.voucher, record.campaign
    assert campaign is not None  # issue_voucher hands its campaign back
    page = page_url(db.settings.public_base_url, voucher.public_token)
    payload = {
        "voucherCode": voucher.code,
        "balance": _balance(record),
        "expiryDate": _local_datetime(voucher.expiration_date, campaign.timezone),
        "message": holder_message(voucher, campaign, page_url=page),
        "successfulRequest": True,
    }
    return Response(dumps(payload), media_type="application/json")


def _issue(db: Database, caller: Caller, body: dict[str, Any], *, with_id: bool) -> Response:
    try:
        request = IssueVoucher.model_validate(body)
        record = issue_voucher(db, caller, request)
    except DomainError as exc:
        raise _issue_refusal(exc, with_id=with_id) from exc
    return _issued(db, record)


# --- endpoints ----------------------------------------------------------------------------------


def _documented(*names: str) -> dict[str, Any]:
    """The parameters for /docs (read by hand above, so FastAPI cannot list them itself)."""
    query = [
        {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
        for name in names
    ]
    body = {
        "required": False,
        "description": "The same parameters as a JSON object (or a form), instead of the query.",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {name: {"type": "string"} for name in names},
                }
            }
        },
    }
    return {"parameters": query, "requestBody": body}


@router.post(
    "/VoucherRequest/Request",
    summary="i-movo: request a voucher",
    openapi_extra=_documented("campaignCode", "customerReference", "value"),
)
async def request_voucher(request: Request) -> Response:
    caller = await _caller(request)
    parameters = await _parameters(request)
    missing: list[str] = []
    campaign = _require(
        missing, _text(parameters, "campaignCode", "campaign code"), "campaign code"
    )
    customer = _require(
        missing, _text(parameters, "customerReference", "customer reference"), "customer reference"
    )
    if missing:
        raise Refused(400, *missing)
    body: dict[str, Any] = {"campaign": campaign, "customer_ref": customer}
    value = _amount(parameters, "value")
    if value is not None:
        body["major_value"] = value
    db: Database = request.app.state.db
    return await kit.off_loop(_issue, db, caller, body, with_id=False)


@router.post(
    "/VoucherRequest/RequestVoucherWithId",
    summary="i-movo: request a voucher showing the holder's name and address for an ID check",
    openapi_extra=_documented(
        "CampaignCode",
        "CustomerReference",
        "DeliveryRecipient",
        "VoucherValue",
        "CustomerName",
        "Address",
        "PostCode",
    ),
)
async def request_voucher_with_id(request: Request) -> Response:
    caller = await _caller(request)
    parameters = await _parameters(request)
    missing: list[str] = []
    campaign = _require(
        missing, _text(parameters, "campaignCode", "campaign code"), "campaign code"
    )
    customer = _require(
        missing, _text(parameters, "customerReference", "customer reference"), "customer reference"
    )
    # In the order the seed's example lists them.
    address = _require(missing, _text(parameters, "Address", "address"), "address")
    postcode = _require(missing, _text(parameters, "PostCode", "post code"), "post code")
    name = _require(missing, _text(parameters, "CustomerName", "customer name"), "customer name")
    if missing:
        raise Refused(400, *missing)
    body: dict[str, Any] = {
        "campaign": campaign,
        "customer_ref": customer,
        "holder": {"name": name, "address": address, "postcode": postcode},
    }
    recipient = _text(parameters, "DeliveryRecipient", "delivery recipient")
    if recipient is not None:
        body["recipient"] = recipient
    value = _amount(parameters, "VoucherValue")
    if value is not None:
        body["major_value"] = value
    db: Database = request.app.state.db
    return await kit.off_loop(_issue, db, caller, body, with_id=True)


def _cancel(db: Database, caller: Caller, code: str) -> Response:
    try:
        cancel_voucher(db, caller, code, reason="i-movo CancelVoucher")
    except NotFound as exc:
        typo = exc.code == ErrorCode.CODE_MISTYPED
        raise Refused(404, CODE_MISTYPED if typo else VOUCHER_NOT_FOUND) from exc
    except Conflict as exc:
        raise Refused(400, NOT_CANCELLABLE) from exc
    return Response(dumps({"successfulRequest": True}), media_type="application/json")


@router.post(
    "/Voucher/CancelVoucher",
    summary="i-movo: cancel a voucher",
    openapi_extra=_documented("voucherCode"),
)
async def cancel(request: Request) -> Response:
    caller = await _caller(request)
    parameters = await _parameters(request)
    code = _text(parameters, "voucherCode", "voucher code")
    if code is None:
        raise Refused(400, "voucher code is required")
    if len(code) > 100:
        raise Refused(404, VOUCHER_NOT_FOUND)
    db: Database = request.app.state.db
    return await kit.off_loop(_cancel, db, caller, code)


_ENDPOINTS = frozenset(
    ("VoucherRequest/Request", "VoucherRequest/RequestVoucherWithId", "Voucher/CancelVoucher")
)
_ANY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def _unknown(path: str) -> Response:
    if path.strip("/") in _ENDPOINTS:
        return envelope(405, ["use POST"], {"Allow": "POST"})
    return envelope(404, ["no such endpoint"])


# Anything else under i-movo's paths answers in i-movo's envelope too (not problem+json).
@router.api_route("/VoucherRequest/{rest:path}", methods=_ANY_METHOD, include_in_schema=False)
async def unknown_request_path(request: Request) -> Response:
    return _unknown(request.url.path)


@router.api_route("/Voucher/{rest:path}", methods=_ANY_METHOD, include_in_schema=False)
async def unknown_voucher_path(request: Request) -> Response:
    return _unknown(request.url.path)
