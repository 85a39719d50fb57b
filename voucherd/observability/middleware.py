"""The outermost part of every answer: a request id on it, one access line, the metrics.

The front door (api/front.py) does this outside every other check (body limits, the guard) so
their refusals (413, 400, 429) are counted, logged and carry ``X-Request-Id`` like any other
answer. Even an unhandled error, which Starlette answers from outside all middlewares, is
answered there first: a problem+json 500 with the request id, then re-raised so the server logs
it as before. This module holds the pieces: the request id, the access line and counters, and
the 500.
"""

from __future__ import annotations

import logging
import time

from starlette.types import Message, Scope, Send

from voucherd.api.problems import PROBLEM_JSON
from voucherd.api.responses import dumps
from voucherd.observability import context, metrics

log = logging.getLogger("voucherd.access")
HEADER = "X-Request-Id"
_HEADER_KEY = HEADER.lower().encode("latin-1")
# Probes and scrapes come every few seconds; their lines are kept for DEBUG.
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


def request_id_of(scope: Scope) -> str:
    """The caller's ``X-Request-Id`` (the first one sent) when acceptable, else a new id."""
    for name, value in scope["headers"]:
        if name == _HEADER_KEY:
            return context.request_id_from(value.decode("latin-1"))
    return context.new_request_id()


def mark_answer(message: Message, request_id: str) -> None:
    """``X-Request-Id`` on an ``http.response.start``, as Starlette's ``MutableHeaders`` sets
    it: replacing any the answer carried, else last, on a copy of its header list (the
    response's own list is left as it was)."""
    headers = list(message.get("headers", ()))
    value = request_id.encode("latin-1")
    found = [i for i, (name, _) in enumerate(headers) if name == _HEADER_KEY]
    if not found:
        headers.append((_HEADER_KEY, value))
    else:
        for i in reversed(found[1:]):
            del headers[i]
        headers[found[0]] = (_HEADER_KEY, value)
    message["headers"] = headers


def record(
    scope: Scope, current: context.RequestContext, started: float, status: int | None
) -> None:
    """The request's access line and its counters (None: no answer started, a 500)."""
    seconds = time.perf_counter() - started
    route = context.route_template(scope)
    answered = status if status is not None else 500
    metrics.observe_request(scope["method"], route, answered, seconds)
    log.log(
        logging.DEBUG if route in _QUIET_ROUTES and answered < 400 else logging.INFO,
        "%s %s %d",
        scope["method"],
        route,
        answered,
        extra={
            "method": scope["method"],
            "route": route,
            "status": answered,
            "duration_ms": round(seconds * 1000, 3),
            "tenant_id": current.tenant_id,
        },
    )


async def send_internal_error(send: Send) -> None:
    """The problem+json 500 for an error nothing else answered."""
    body = dumps(
        {
            "type": "urn:voucherd:problem:internal_error",
            "title": "Internal error",
            "status": 500,
            "detail": "an unexpected error occurred",
            "code": "internal_error",
        }
    )
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": body})
