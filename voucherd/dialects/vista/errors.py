"""Vista's error answers: ASP.NET Core's validation problem details, with Vista's headers.

``{"type", "title", "status", "errors": {"<vistaField>": ["reason"]}, "traceId"}`` as
``application/json``; every answer, success or failure, carries ``vista-correlation-id`` and
``vista-trace-id``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from voucherd.api.responses import dumps
from voucherd.dialects.kit import MalformedBody
from voucherd.dialects.routing import FaceRoute
from voucherd.errors import DomainError, Forbidden, IdempotencyKeyInFlight, Unauthorized
from voucherd.idempotency.service import Replay

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
    413: "https://tools.ietf.org/html/rfc9110#section-15.5.14",
    429: "https://tools.ietf.org/html/rfc6585#section-4",
    500: "https://tools.ietf.org/html/rfc9110#section-15.6.1",
    503: "https://tools.ietf.org/html/rfc9110#section-15.6.4",
}

ERROR_SCHEMA = {
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


class Refused(Exception):
    """A Vista error answer: the status and the reasons per Vista field."""

    def __init__(
        self, status: int, errors: dict[str, list[str]], headers: dict[str, str] | None = None
    ):
        super().__init__(next(iter(errors.values()), [""])[0] if errors else "")
        self.status = status
        self.errors = errors
        self.headers = headers


def vista_field(field: str | None, names: dict[str, str]) -> str:
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


def refusal(exc: Exception, names: dict[str, str]) -> Refused:
    """A core refusal (or pydantic's) with its fields named as Vista spells them."""
    if isinstance(exc, DomainError):
        if isinstance(exc, Unauthorized):
            return Refused(401, {"": [exc.detail]}, {"WWW-Authenticate": "Bearer"})
        if isinstance(exc, Forbidden) or exc.status == 429:
            # 429: too many requests or failed lookups (voucherd/guard), with Retry-After.
            return Refused(exc.status, {"": [exc.detail]})
        if isinstance(exc, IdempotencyKeyInFlight):
            return Refused(409, {"Idempotency-Key": [exc.detail]})
        if isinstance(exc, MalformedBody):
            return Refused(400, {"": [exc.detail]})  # the body as a whole
        return Refused(400, {vista_field(exc.field, names): [exc.detail]})
    assert isinstance(exc, RequestValidationError | ValidationError)
    errors: dict[str, list[str]] = {}
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ()) if p != "body"]
        # A model-level rule names no field; pydantic's own prefix says nothing to a client.
        field = vista_field(".".join(loc), names)
        reason = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        errors.setdefault(field, []).append(reason)
    return Refused(400, errors)


def translated(call: Callable[[], Response], names: dict[str, str]) -> Response:
    """Run a use case, naming any refusal's field as Vista spells it."""
    try:
        return call()
    except (DomainError, ValidationError) as exc:
        raise refusal(exc, names) from exc


def _problem(request: Request, status: int, errors: dict[str, list[str]]) -> Response:
    body: dict[str, Any] = {
        "type": _TYPES.get(status, _TYPES[400]),
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "errors": errors,
        "traceId": request.state.vista_trace_id,
    }
    return Response(dumps(body), status_code=status, media_type="application/json")


_CORRELATION = re.compile(r"^[\x21-\x7e]{1,128}$")


def _trace(request: Request) -> None:
    given = request.headers.get("correlationid", "")
    request.state.vista_correlation_id = (
        given if _CORRELATION.match(given) else secrets.token_hex(16)
    )
    request.state.vista_trace_id = secrets.token_hex(16)


def _stamped(request: Request, response: Response) -> Response:
    response.headers["vista-correlation-id"] = request.state.vista_correlation_id
    response.headers["vista-trace-id"] = request.state.vista_trace_id
    return response


def door(request: Request, exc: DomainError) -> Response:
    """A refusal made before any route was chosen (api/limits.py): a body over the limit (413),
    a NUL in the URL (400); Vista's shape and headers all the same."""
    _trace(request)
    response = _problem(request, exc.status, {vista_field(exc.field, {}): [exc.detail]})
    return _stamped(request, response)


class VistaRoute(FaceRoute):
    """Every answer in Vista's shapes: never problem+json, never a bare 500."""

    face = "vista"

    def begin(self, request: Request) -> None:
        _trace(request)

    def finish(self, request: Request, response: Response) -> Response:
        return _stamped(request, response)

    def refusal(self, request: Request, exc: Exception) -> Response | None:
        if isinstance(exc, DomainError | RequestValidationError | ValidationError):
            exc = refusal(exc, {})
        if isinstance(exc, Refused):
            response = _problem(request, exc.status, exc.errors)
            for name, value in (exc.headers or {}).items():
                response.headers[name] = value
            return response
        return None

    def unfinished_replay(self, request: Request, exc: Replay) -> Response | None:
        reason = "the first request with this Idempotency-Key has not finished"
        return _problem(request, 409, {"Idempotency-Key": [reason]})

    def unavailable(self, request: Request) -> Response:
        response = _problem(request, 503, {"": ["the service is unavailable; retry shortly"]})
        response.headers["Retry-After"] = "1"
        return response

    def internal(self, request: Request) -> Response:
        return _problem(request, 500, {"": ["an unexpected error occurred"]})
