"""Voucherify's error object, its credentials, and the route class that renders every failure so.

Every failure on the Voucherify face is ``{code, key, message, details, request_id}`` with the
HTTP status in ``code``, never problem+json and never a 500 page: a domain error, a body that is
not JSON or not the right shape, missing or wrong credentials, an unknown path under ``/v1``
and a database outage (503) alike.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from fastapi import Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from voucherd.api.deps import BEARER, get_db
from voucherd.api.methods import declared_query_parameters
from voucherd.api.responses import json_response
from voucherd.auth.caller import Caller
from voucherd.dialects import kit
from voucherd.dialects.routing import FaceRoute
from voucherd.errors import DomainError, ErrorCode, InvalidInput
from voucherd.observability import context as request_context

# Our error codes in Voucherify's words: (HTTP status, key, message). A code not listed falls
# back on its error class (below). Voucherify answers rule violations with 400 and names the
# rule in ``key``; these are the keys its API documents for the same situations.
_BY_CODE: dict[str, tuple[int, str, str]] = {
    ErrorCode.UNAUTHORIZED: (401, "unauthorized", "Unauthorized"),
    ErrorCode.FORBIDDEN: (403, "forbidden", "Forbidden"),
    ErrorCode.NOT_FOUND: (404, "not_found", "Resource not found"),
    # A typo of a default code: still Voucherify's not_found (what its clients branch on); the
    # details say "mistyped".
    ErrorCode.CODE_MISTYPED: (404, "not_found", "Resource not found"),
    ErrorCode.CUSTOMER_ERASED: (404, "not_found", "Resource not found"),
    ErrorCode.DUPLICATE_NAME: (409, "duplicate_found", "Duplicated resource found"),
    ErrorCode.DUPLICATE_CODE: (409, "duplicate_found", "Duplicated resource found"),
    ErrorCode.DUPLICATE_SOURCE_ID: (409, "duplicate_found", "Duplicated resource found"),
    ErrorCode.INVALID_INPUT: (400, "invalid_payload", "Invalid payload"),
    ErrorCode.MALFORMED_JSON: (400, "invalid_payload", "Invalid payload"),
    ErrorCode.QUANTITY_EXCEEDED: (400, "quantity_exceeded", "Quantity exceeded"),
    ErrorCode.VOUCHER_REDEEMED: (400, "quantity_exceeded", "Quantity exceeded"),
    ErrorCode.VOUCHER_DISABLED: (400, "voucher_disabled", "Voucher is disabled"),
    ErrorCode.VOUCHER_CANCELLED: (400, "voucher_disabled", "Voucher is disabled"),
    ErrorCode.VOUCHER_EXPIRED: (400, "voucher_expired", "Voucher expired"),
    ErrorCode.CAMPAIGN_EXPIRED: (400, "voucher_expired", "Voucher expired"),
    ErrorCode.VOUCHER_NOT_ACTIVE_YET: (400, "voucher_not_active", "Voucher not active"),
    ErrorCode.OUTSIDE_VALIDITY_TIMEFRAME: (400, "voucher_not_active", "Voucher not active"),
    ErrorCode.OUTSIDE_VALIDITY_DAYS: (400, "voucher_not_active", "Voucher not active"),
    ErrorCode.OUTSIDE_VALIDITY_HOURS: (400, "voucher_not_active", "Voucher not active"),
    ErrorCode.CAMPAIGN_INACTIVE: (400, "campaign_disabled", "Campaign is disabled"),
    ErrorCode.INSUFFICIENT_BALANCE: (400, "gift_amount_exceeded", "Gift amount exceeded"),
    ErrorCode.ORDER_RULES_VIOLATED: (
        400,
        "order_rules_violated",
        "Order does not match validation rules",
    ),
    ErrorCode.CUSTOMER_LIMIT_REACHED: (
        400,
        "customer_rules_violated",
        "Customer does not match validation rules",
    ),
    ErrorCode.ALREADY_JOINED: (
        400,
        "customer_rules_violated",
        "Customer does not match validation rules",
    ),
    ErrorCode.POOL_EXHAUSTED: (
        400,
        "no_voucher_suitable_for_publication",
        "Couldn't find any voucher suitable for publication.",
    ),
    ErrorCode.VOUCHER_HELD_BY_ANOTHER_CUSTOMER: (
        400,
        "no_voucher_suitable_for_publication",
        "Couldn't find any voucher suitable for publication.",
    ),
    ErrorCode.ALREADY_ROLLED_BACK: (
        400,
        "already_rolled_back",
        "Redemption has already been rolled back",
    ),
    ErrorCode.VALUE_ABOVE_MAXIMUM: (400, "invalid_payload", "Invalid payload"),
    ErrorCode.IDEMPOTENCY_KEY_REUSED: (400, "invalid_payload", "Invalid payload"),
    ErrorCode.IDEMPOTENCY_KEY_IN_FLIGHT: (409, "duplicate_found", "Duplicated resource found"),
}
_BY_STATUS: dict[int, tuple[str, str]] = {
    400: ("invalid_payload", "Invalid payload"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Resource not found"),
    405: ("method_not_allowed", "HTTP Method Not Allowed"),
    409: ("duplicate_found", "Duplicated resource found"),
    413: ("invalid_payload", "Invalid payload"),
    # Limits (budget, weekly value, code space) and other refusals of valid requests.
    422: ("limit_exceeded", "Limit exceeded"),
    # The guard (voucherd/guard): too many requests or failed lookups; Retry-After says when.
    429: ("too_many_requests", "Too Many Requests"),
}
# What a refused field refers to, for ``resource_type`` on not-found errors.
_RESOURCE = {
    "voucher": "voucher",
    "code": "voucher",
    "campaign": "campaign",
    "customer": "customer",
    "redemption": "redemption",
    "operation": "async_action",
    "publication": "publication",
}


def describe(code: str) -> tuple[int, str, str]:
    """Status, key and message for one of our error codes (a refused redeemable's reason)."""
    return _BY_CODE.get(code) or (400, *_BY_STATUS[400])


def error_body(
    status: int, key: str, message: str, details: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    # The answer's own X-Request-Id, so what a client logs from the body finds our access line;
    # outside a request (never on this face today) a Voucherify-looking one ("v-0a8850...").
    context = request_context.current()
    body = {
        "code": status,
        "key": key,
        "message": message,
        "details": details,
        "request_id": context.request_id if context else f"v-{secrets.token_hex(9)}",
    }
    body.update(extra or {})
    return body


def error_response(
    status: int, key: str, message: str, details: str, extra: dict[str, Any] | None = None
) -> Response:
    headers = {"WWW-Authenticate": 'X-App-Token realm="voucherd"'} if status == 401 else None
    return json_response(error_body(status, key, message, details, extra), status, headers)


def domain_error(exc: DomainError) -> Response:
    """A domain error as Voucherify's error object; the field at fault is named in details."""
    fallback = exc.status if exc.status in _BY_STATUS else 400
    status, key, message = _BY_CODE.get(exc.code) or (
        400 if fallback == 422 else fallback,  # Voucherify refuses rule violations with 400
        *_BY_STATUS[fallback],
    )
    details = exc.detail if exc.field is None else f"{exc.field}: {exc.detail}"
    extra = {}
    if status == 404 and exc.field in _RESOURCE:
        extra["resource_type"] = _RESOURCE[exc.field]
    return error_response(status, key, message, details, extra)


def door(request: Request, exc: DomainError) -> Response:
    """A refusal made before any route was chosen (api/limits.py): a body over the limit, a NUL
    in the URL."""
    return domain_error(exc)


def invalid_payload(errors: Sequence[Mapping[str, Any]]) -> Response:
    """Pydantic's complaints as one invalid_payload error naming each field and why."""
    reasons = []
    for error in errors:
        if error.get("type") == "json_invalid":
            reasons.append("the body is not valid JSON")
            continue
        parts = [str(p) for p in error.get("loc", ())]
        if parts and parts[0] in ("body", "query", "path", "header"):
            parts = parts[1:]
        reasons.append(f"{'.'.join(parts) or 'body'}: {error.get('msg', 'invalid')}")
    return error_response(400, "invalid_payload", "Invalid payload", "; ".join(reasons))


class VoucherifyRoute(FaceRoute):
    """Renders every failure of a Voucherify route as Voucherify's error object."""

    face = "voucherify"

    def refusal(self, request: Request, exc: Exception) -> Response | None:
        if isinstance(exc, DomainError):
            return domain_error(exc)
        if isinstance(exc, RequestValidationError | ValidationError):
            return invalid_payload(exc.errors())
        if isinstance(exc, HTTPException):
            # FastAPI's answer to a body it cannot decode at all (not UTF-8, too deep).
            key, message = _BY_STATUS.get(exc.status_code, _BY_STATUS[400])
            return error_response(exc.status_code, key, message, str(exc.detail))
        return None

    def unavailable(self, request: Request) -> Response:
        return error_response(
            503,
            "service_unavailable",
            "Service Unavailable",
            "the database is unavailable; retry shortly",
        )

    def internal(self, request: Request) -> Response:
        return _internal()


# The body is optional to FastAPI (so that its absence is refused in Voucherify's words, naming
# the field), but required to the client: the document says so.
BODY_REQUIRED = {"requestBody": {"required": True}}

ERROR_SCHEMA = {
    "type": "object",
    "required": ["code", "key", "message", "details", "request_id"],
    "properties": {
        "code": {"type": "integer"},
        "key": {"type": "string"},
        "message": {"type": "string"},
        "details": {"type": "string"},
        "request_id": {"type": "string"},
        "resource_type": {"type": "string"},
    },
}


def _internal() -> Response:
    return error_response(
        500, "internal_server_error", "Internal Server Error", "an unexpected error occurred"
    )


# Security schemes, so the OpenAPI document declares both ways in (api/openapi.py pairs these two).
_APP_ID = APIKeyHeader(name="X-App-Id", scheme_name="VoucherifyAppId", auto_error=False)
_APP_TOKEN = APIKeyHeader(name="X-App-Token", scheme_name="VoucherifyAppToken", auto_error=False)


_SCHEMES = (kit.KeyPair("x-app-id", "x-app-token", either=True), kit.BearerToken())


def voucherify_caller(
    request: Request,
    # Declared so the OpenAPI document lists them; the kit reads the headers themselves.
    x_app_id: Annotated[str | None, Security(_APP_ID)],
    x_app_token: Annotated[str | None, Security(_APP_TOKEN)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
) -> Caller:
    """The caller behind ``X-App-Id`` + ``X-App-Token`` (the pair wins when both ways are
    sent, as the seed's example does), or behind ``Authorization: Bearer <token>``.

    A sync dependency, so FastAPI runs it (and a cold key cache's database read) in the
    threadpool."""
    missing = "send your API key id as X-App-Id and its secret as X-App-Token"
    return kit.identify(get_db(request), request, *_SCHEMES, missing=missing)


# Voucherify's own query parameters of the lists voucherd answers (its API reference, and what
# SDK 6.1.1 sends when a caller gives them) that voucherd does not filter or sort by. Refused
# with a reason of their own: ignoring one would answer a list that looks filtered and is not.
_NOT_SUPPORTED = frozenset(
    {
        "access_settings", "campaign_status", "campaign_type", "city", "code", "created_at",
        "filters", "ids", "is_referral_code", "name", "segment_id", "source_id",
        "starting_after", "starting_after_id", "updated_at", "voucher_type",
    }
)  # fmt: skip
# Accepted as they are: ``expand`` only asks for more detail than voucherd has, and voucherd's
# lists are newest first, which is ``order=-created_at``.
_HARMLESS = {"expand": None, "order": "-created_at"}


def voucherify_query(request: Request) -> None:
    """Only the query parameters an endpoint declares, as the native API (api/deps.py): a typo
    (``?campain=X``) would otherwise list everything."""
    declared = declared_query_parameters(request)
    if declared is None:
        return
    for name, value in request.query_params.items():
        if name in declared:
            continue
        if name in _HARMLESS and _HARMLESS[name] in (None, value):
            continue
        if name == "order":
            raise InvalidInput("voucherd lists newest first: only -created_at", field=name)
        if name in _NOT_SUPPORTED:
            raise InvalidInput("a Voucherify filter voucherd does not support", field=name)
        raise InvalidInput("is not a parameter of this endpoint", field=name)
