"""The outermost layer of the app: a request id on every answer, one access line, the metrics.

It sits outside every other middleware (body limits, the guard) so their refusals (413, 400,
429) are counted, logged and carry ``X-Request-Id`` like any other answer. Even an unhandled
error, which Starlette answers from outside all middlewares, is answered here first: a
problem+json 500 with the request id, then re-raised so the server logs it as before.
"""

from __future__ import annotations

import logging
import time

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voucherd.api.problems import PROBLEM_JSON
from voucherd.api.responses import dumps
from voucherd.observability import context, metrics

log = logging.getLogger("voucherd.access")
HEADER = "X-Request-Id"
# Probes and scrapes come every few seconds; their lines are kept for DEBUG.
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


class ObserveRequests:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = context.request_id_from(Headers(scope=scope).get(HEADER))
        current = context.RequestContext(request_id)
        token = context.enter(current)
        started = time.perf_counter()
        status: int | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if status is None:
                status = 500
                await self._internal_error(send_with_id)
            # The request's context stays set: Starlette's error handler and the server log
            # this exception after it leaves here, in this same task, and their lines carry the
            # request id. The task ends with the request, and the context with it.
            self._record(scope, current, started, status)
            raise
        self._record(scope, current, started, status)
        context.leave(token)

    @staticmethod
    def _record(
        scope: Scope, current: context.RequestContext, started: float, status: int | None
    ) -> None:
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

    @staticmethod
    async def _internal_error(send: Send) -> None:
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
