"""The front door: the one middleware every HTTP request passes before FastAPI routes it.

In this order, what four middlewares did as four layers (a coroutine each and, for two of them,
a wrapper of ``send`` per request: 15.5 µs of CPU per request as four, 11.7 as one, the access
line aside; bench/README.md, "Validation: a read without a transaction, one front door"):

1. **observe** (observability/middleware.py): a request id, on every answer as ``X-Request-Id``;
   one access line and the metrics for every answer, the refusals below included; a
   problem+json 500 for an error nothing answered, re-raised for the server to log;
2. **guard** (guard/middleware.py, when the guard is on): the request's visit, to which the
   lookups and authentication report; on the way out, its failed lookups counted before the
   answer leaves and the rate-limit headers added;
3. **a NUL in the URL**: 400 (api/limits.py);
4. **a body over the limit**: 413 before it is read, or as soon as a chunked body passes it;
5. **an express lane** (api/hot.py), when the request's method and path have one: the hot
   routes answered without FastAPI's routing; every other request goes on into the app.

The answers are the same, header for header: the guard's headers are added before the request
id, as when the guard's layer sat inside the observing one, and a 500 answered here carries no
rate-limit headers, as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voucherd.api.hot import Lane
from voucherd.api.limits import Body, BodySizeLimit, Doors, refuse, refuse_nul_in_url
from voucherd.guard.middleware import GuardedVisit
from voucherd.guard.service import Guard
from voucherd.observability import context
from voucherd.observability.middleware import (
    mark_answer,
    record,
    request_id_of,
    send_internal_error,
)


class FrontDoor:
    def __init__(
        self,
        app: ASGIApp,
        *,
        guard: Guard,
        max_body_bytes: int,
        doors: Doors = (),
        express_lanes: Callable[[ASGIApp], Mapping[tuple[str, str], Lane]] | None = None,
    ) -> None:
        self.app = app
        self.guard = guard
        self.doors = doors
        # Built with the middleware stack, once the app is whole: a lane hands what it does not
        # answer to the rest of the app (``app``).
        self.lanes = express_lanes(app) if express_lanes is not None else {}
        self.body_limit = BodySizeLimit(self._routed, max_body_bytes, doors)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # 1. observe
        request_id = request_id_of(scope)
        current = context.RequestContext(request_id)
        token = context.enter(current)
        started = time.perf_counter()
        status: int | None = None
        # 2. the guard, when on; None again once the request has left it (a 500 answered
        # below passes no guard)
        visit = GuardedVisit(self.guard, scope) if self.guard.enabled else None

        async def answer(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                if visit is not None:
                    await visit.before_answer(message)
                status = message["status"]
                mark_answer(message, request_id)
            await send(message)

        try:
            if visit is not None:
                visit.open()
            try:
                await self._limited(scope, receive, answer)
            finally:
                if visit is not None:
                    visit.close()
                    visit = None
        except Exception:
            if status is None:
                status = 500
                await send_internal_error(answer)
            # The request's context stays set: Starlette's error handler and the server log
            # this exception after it leaves here, in this same task, and their lines carry the
            # request id. The task ends with the request, and the context with it.
            record(scope, current, started, status)
            raise
        record(scope, current, started, status)
        context.leave(token)

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        # 3. a NUL in the URL, 4. the body's size, 5. an express lane or the app
        bad_url = refuse_nul_in_url(scope)
        if bad_url is not None:
            await refuse(scope, send, self.doors, bad_url)
            return
        body_limit = self.body_limit
        verdict = body_limit.verdict(scope)
        if verdict is Body.WITHIN:
            await self._routed(scope, receive, send)
        elif verdict is Body.TOO_LARGE:
            await body_limit.refuse(scope, send)
        else:
            await body_limit.count(scope, receive, send)

    async def _routed(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = self.lanes.get((scope["method"], scope["path"])) if self.lanes else None
        if lane is None:
            await self.app(scope, receive, send)
        else:
            await lane(scope, receive, send)
