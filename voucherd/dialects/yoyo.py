"""Yoyo / wiGroup's Issue Coupon API (seeds/000_f38765be40d38e3f.txt), spoken by voucherd.

Translation only: the request becomes the native ``issue_voucher`` call, the voucher comes back
in Yoyo's words. Where the seed is vague, these are the choices, each tested in
tests/dialects/test_yoyo.py:

* **Credentials**: ``apiId`` + ``apiPassword`` headers carry a voucherd key's ``key_id`` and
  ``secret``. Missing or wrong: 401 in the error shape below.
* **Body**: a JSON object; names exactly as the seed spells them (``campaignId``, ``userRef``,
  ``mobileNumber``, ``smsMessage``, ``sendSMS``), unknown names ignored, as Yoyo's Java clients
  may send more. ``campaignId`` is the campaign's id or name, a JSON string or number (wiGroup's
  ids are numbers). ``userRef`` is mandatory and becomes the voucher's ``customer_ref``.
  ``sendSMS`` is a JSON boolean (``"true"`` / ``"false"`` strings too, as Jackson coerces them).
* **sendSMS: true** delivers the voucher through the tenant's phone channel (SMS or WhatsApp:
  a tenant setting, never per request) to ``mobileNumber``, mandatory then and in international
  form (``+27821234567``). ``smsMessage`` is the text with the code appended, unless the
  campaign's SMS template places ``{{ message }}`` and ``{{ code }}`` itself; without it the
  campaign's own message is sent. On WhatsApp the text fills only template parameters that use
  ``{{ message }}`` (Meta opens conversations only with approved templates).
* **Without sendSMS** nothing is sent and no delivery is written: the issuer shows the code in
  its own app, and a campaign set to deliver automatically does not send it either (the core's
  ``campaign_delivers=False``). ``mobileNumber`` and ``smsMessage`` are then unused and not
  checked.
* **issueWiCode**: every voucherd voucher has its code, and the seed's own example of
  ``issueWiCode=false`` ("Get wiCode for Custom Distribution") still answers the wiCode, so the
  flag changes nothing: ``true`` or ``false`` (any case) are accepted, absent means ``true``,
  anything else is refused. Whether a message goes out is ``sendSMS``'s call alone.
* **Answer** (200): ``id`` (the voucher's id; a string, voucherd ids are not numbers),
  ``wiCode`` (the code), ``stateId``, plus ``campaignId``, ``userRef``, ``value`` and
  ``balance`` (minor units, as wiGroup spells money), ``expiryDate`` (ISO 8601, UTC),
  ``responseCode`` ``"-1"`` and ``responseDesc`` ``"Success"`` (wiGroup's success convention).
  ``stateId`` letters: ``A`` active, ``D`` disabled, ``R`` redeemed (used up), ``C`` cancelled,
  ``E`` expired.
* **GET /cvs-issuer/rest/coupons/{id}**: the same answer for a voucher of the key's tenant, by
  its id (or its wiCode), with its state now, for issuers that poll. Another tenant's voucher is
  not found.
* **Errors**: ``{"responseCode": <voucherd's error code>, "responseDesc": <what is wrong, naming
  the field as Yoyo spells it>}`` with the HTTP status the native API would give (400 malformed,
  401, 403, 404, 409, 422, 503 while the database is unreachable). Yoyo documents no error
  shape; this mirrors the success answer's pair, so a client that logs ``responseDesc`` keeps
  working.
* **Retries**: Yoyo has no idempotency key and none is required here: a retried POST issues a
  second voucher, as Yoyo itself would.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader
from pydantic import ValidationError

from voucherd.api.deps import ONE_VALUE_PER_QUERY_PARAMETER
from voucherd.api.methods import allowed_methods
from voucherd.api.openapi import face_responses
from voucherd.api.responses import dumps
from voucherd.auth.caller import Caller
from voucherd.db.engine import Database
from voucherd.dialects import kit
from voucherd.dialects.kit import MalformedBody
from voucherd.dialects.routing import FaceRoute
from voucherd.errors import DomainError, ErrorCode, InvalidInput
from voucherd.vouchers.issue import issue_voucher
from voucherd.vouchers.schemas import IssueVoucher, VoucherRecord
from voucherd.vouchers.service import get_voucher
from voucherd.vouchers.validity import effective_state

# How Yoyo words a body that is not JSON (False) or not an object (True).
_MALFORMED = {False: "the body is not valid JSON", True: "the body must be a JSON object"}
STATE_IDS = {"ACTIVE": "A", "DISABLED": "D", "REDEEMED": "R", "CANCELLED": "C", "EXPIRED": "E"}
SUCCESS = {"responseCode": "-1", "responseDesc": "Success"}
# The core's field names as Yoyo spells them, for error messages.
_FIELD_NAMES = {
    "campaign": "campaignId",
    "customer_ref": "userRef",
    "delivery.recipient": "mobileNumber",
    "delivery.message": "smsMessage",
    "delivery.channel": "sendSMS",
    "delivery": "sendSMS",
}


def error(
    status: int, code: str, description: str, headers: dict[str, str] | None = None
) -> Response:
    body = dumps({"responseCode": code, "responseDesc": description})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


class _YoyoRoute(FaceRoute):
    """Every failure in the Yoyo error shape: never problem+json, never a bare 500."""

    face = "yoyo"

    def refusal(self, request: Request, exc: Exception) -> Response | None:
        if isinstance(exc, MalformedBody):
            return error(exc.status, exc.code, f"body: {_MALFORMED[exc.not_an_object]}")
        if isinstance(exc, DomainError):
            return error(exc.status, exc.code, _described(exc))
        if isinstance(exc, RequestValidationError | ValidationError):
            return error(422, ErrorCode.INVALID_INPUT, _validation_description(exc))
        return None

    def unavailable(self, request: Request) -> Response:
        return error(
            503,
            ErrorCode.DATABASE_UNAVAILABLE,
            "the database is unavailable; retry shortly",
            {"Retry-After": "1"},
        )

    def internal(self, request: Request) -> Response:
        return error(500, ErrorCode.INTERNAL_ERROR, "an unexpected error occurred")


_ERROR_SCHEMA = {
    "type": "object",
    "required": ["responseCode", "responseDesc"],
    "properties": {"responseCode": {"type": "string"}, "responseDesc": {"type": "string"}},
}
# Declares the credentials (the routes read them in _caller); api/openapi.py pairs them.
_API_ID = APIKeyHeader(name="apiId", scheme_name="YoyoApiId", auto_error=False)
_API_PASSWORD = APIKeyHeader(name="apiPassword", scheme_name="YoyoApiPassword", auto_error=False)

router = APIRouter(
    prefix="/cvs-issuer/rest",
    tags=["Yoyo / wiGroup"],
    route_class=_YoyoRoute,
    dependencies=[Security(_API_ID), Security(_API_PASSWORD), *ONE_VALUE_PER_QUERY_PARAMETER],
    responses=face_responses("YoyoError", _ERROR_SCHEMA, 400, 401, 403, 404, 409, 422, 429, 503),
)


def _yoyo_field(field: str) -> str:
    return _FIELD_NAMES.get(field, field)


def _described(exc: DomainError) -> str:
    if exc.field and exc.field != "voucher":
        return f"{_yoyo_field(exc.field)}: {exc.detail}"
    return exc.detail


def door(request: Request, exc: DomainError) -> Response:
    """A refusal made before any route was chosen (api/limits.py): a body over the limit, a NUL
    in the URL."""
    return error(exc.status, exc.code, _described(exc))


def _validation_description(exc: RequestValidationError | ValidationError) -> str:
    reasons = []
    for item in exc.errors():
        field = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        reason = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        reasons.append(f"{_yoyo_field(field)}: {reason}")
    return "; ".join(dict.fromkeys(reasons))


async def _caller(request: Request) -> Caller:
    """Off the event loop: a cold key cache reads the database."""
    scheme = kit.KeyPair("apiid", "apipassword")
    return await kit.authenticate(request, scheme, missing="send the apiId and apiPassword headers")


def _flag(value: Any, name: str, *, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise InvalidInput("must be true or false", field=name)


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidInput("must be a string", field=name)
    text = str(value).strip()
    return text or None


def _issue_request(body: dict[str, Any]) -> dict[str, Any]:
    """The native issue request for Yoyo's body; InvalidInput names Yoyo's field."""
    campaign = _text(body, "campaignId")
    if campaign is None:
        raise InvalidInput("is mandatory", field="campaignId")
    user_ref = _text(body, "userRef")
    if user_ref is None:
        raise InvalidInput("is mandatory", field="userRef")
    request: dict[str, Any] = {"campaign": campaign, "customer_ref": user_ref}
    if _flag(body.get("sendSMS"), "sendSMS", default=False):
        mobile = _text(body, "mobileNumber")
        if mobile is None:
            raise InvalidInput("is mandatory when sendSMS is true", field="mobileNumber")
        delivery: dict[str, Any] = {"channel": "phone", "recipient": mobile}
        message = body.get("smsMessage")
        if message is not None:
            if not isinstance(message, str):
                raise InvalidInput("must be a string", field="smsMessage")
            if message.strip():
                delivery["message"] = message.strip()
        request["delivery"] = delivery
    return request


def present_coupon(record: VoucherRecord, now: datetime) -> dict[str, Any]:
    voucher = record.voucher
    state = effective_state(voucher.state, voucher.expiration_date, now)
    return {
        "id": voucher.id,
        "wiCode": voucher.code,
        "stateId": STATE_IDS[state],
        "campaignId": voucher.campaign_id,
        "userRef": voucher.customer_ref,
        "value": voucher.amount,
        "balance": voucher.balance,
        "expiryDate": voucher.expiration_date,
        **SUCCESS,
    }


def _issue(db: Database, caller: Caller, body: dict[str, Any]) -> Response:
    request = IssueVoucher.model_validate(_issue_request(body))
    # sendSMS false: nothing is sent, even by a campaign that delivers every voucher.
    record = issue_voucher(db, caller, request, campaign_delivers=request.delivery is not None)
    return Response(dumps(present_coupon(record, db.now())), media_type="application/json")


def _read(db: Database, caller: Caller, coupon_id: str) -> Response:
    record = get_voucher(db, caller, coupon_id)
    return Response(dumps(present_coupon(record, db.now())), media_type="application/json")


_ISSUE_DOCS = {
    "parameters": [
        {"name": "issueWiCode", "in": "query", "schema": {"type": "boolean", "default": True}},
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["campaignId", "userRef"],
                    "properties": {
                        "campaignId": {
                            "type": ["string", "integer"],
                            "pattern": r"\S",
                            "description": "Campaign id or name",
                        },
                        "userRef": {"type": "string", "pattern": r"\S"},
                        "mobileNumber": {"type": "string", "example": "+27821234567"},
                        "smsMessage": {"type": "string"},
                        "sendSMS": {"type": "boolean", "default": False},
                    },
                }
            }
        },
    },
}


@router.post(
    "/coupons",
    summary="Yoyo: issue a coupon (and send it by SMS or WhatsApp)",
    openapi_extra=_ISSUE_DOCS,
)
async def issue_coupon(request: Request) -> Response:
    caller = await _caller(request)
    _flag(request.query_params.get("issueWiCode"), "issueWiCode", default=True)
    body, _ = await kit.json_object(request)
    db: Database = request.app.state.db
    return await kit.off_loop(_issue, db, caller, body)


@router.get(
    "/coupons/{coupon_id}",
    summary="Yoyo: a coupon and its state now",
)
async def read_coupon(coupon_id: str, request: Request) -> Response:
    caller = await _caller(request)
    db: Database = request.app.state.db
    return await kit.off_loop(_read, db, caller, coupon_id)


@router.api_route(
    "/{rest:path}",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    include_in_schema=False,
)
async def unknown(rest: str, request: Request) -> Response:
    """Anything else under Yoyo's path answers in Yoyo's shape too (not problem+json)."""
    allowed = ", ".join(allowed_methods(request))
    if allowed:
        return error(405, ErrorCode.METHOD_NOT_ALLOWED, f"use {allowed}", {"Allow": allowed})
    return error(404, ErrorCode.NOT_FOUND, "no such endpoint")
