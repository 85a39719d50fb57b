"""RFC 9457 problem details for the native API: every error names its field and reason."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from voucherd.api.methods import allowed_methods
from voucherd.api.responses import dumps
from voucherd.db.engine import is_database_outage
from voucherd.errors import DomainError
from voucherd.idempotency.service import Renderers, Replay
from voucherd.observability.context import route_template

log = logging.getLogger("voucherd.api")
PROBLEM_JSON = "application/problem+json"


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": f"urn:voucherd:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if errors:
        body["errors"] = errors
    if extra:
        body.update(extra)
    return Response(dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers)


def field_of(loc: tuple[Any, ...] | list[Any]) -> str:
    """("body", "order", "amount") -> "order.amount"; ("query", "limit") -> "limit"."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            errors.append(
                {
                    "field": "body",
                    "reason": f"not valid JSON: {error.get('ctx', {}).get('error', 'parse error')}",
                }
            )
            continue
        errors.append(
            {"field": field_of(error.get("loc", ())), "reason": str(error.get("msg", "invalid"))}
        )
    return errors


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> Response:
        errors = [{"field": exc.field, "reason": exc.detail}] if exc.field else None
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return problem(exc.status, exc.code, exc.title, exc.detail, errors, headers, exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        errors = validation_errors(exc)
        malformed = any(e.get("type") == "json_invalid" for e in exc.errors())
        if malformed:
            return problem(
                400, "malformed_json", "Malformed JSON", "the body is not valid JSON", errors
            )
        detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
        return problem(422, "invalid_input", "Invalid input", detail, errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400:
            # FastAPI's own answer when a body cannot be decoded at all (not UTF-8, nested
            # deeper than the parser goes): still a malformed body, and still named.
            reason = f"not valid JSON: {exc.detail}"
            errors = [{"field": "body", "reason": reason}]
            return problem(400, "malformed_json", "Malformed JSON", reason, errors)
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(
            exc.status_code, "http_error"
        )
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return problem(exc.status_code, code, str(exc.detail), str(exc.detail), headers=headers)

    @app.exception_handler(Replay)
    async def _replay(request: Request, exc: Replay) -> Response:
        if exc.body is not None and exc.status is not None:
            return Response(
                exc.body,
                status_code=exc.status,
                media_type="application/json",
                headers={"Idempotent-Replayed": "true"},
            )
        kind, _, detail = (exc.resource_type or "").partition(":")
        renderers: Renderers = request.app.state.renderers
        renderer = renderers.get(kind)
        if renderer is None or exc.resource_id is None:
            return problem(
                409,
                "idempotency_key_in_flight",
                "Request in progress",
                "the first request with this Idempotency-Key has not finished",
            )
        status, payload = await run_in_threadpool(
            renderer, request.app.state.db, exc.tenant_id, exc.resource_id, detail
        )
        return Response(
            dumps(payload),
            status_code=status,
            media_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> Response:
        if is_database_outage(exc):
            # The database went away (restart, failover). The unit of work rolled back, unless
            # the connection died during its COMMIT: a retry with the same Idempotency-Key is
            # safe either way (it replays if the effect did commit).
            log.warning(
                "database unavailable on %s %s", request.method, route_template(request.scope)
            )
            return problem(
                503,
                "database_unavailable",
                "Service unavailable",
                "the database is unavailable; retry shortly",
                headers={"Retry-After": "1"},
            )
        log.exception("database error on %s %s", request.method, route_template(request.scope))
        return problem(500, "internal_error", "Internal error", "an unexpected error occurred")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, route_template(request.scope))
        return problem(500, "internal_error", "Internal error", "an unexpected error occurred")
