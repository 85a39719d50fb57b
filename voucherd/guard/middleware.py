"""The guard's place in the request: who is calling from where, and the headers on the way out.

Installed inside the observability middleware (which logs and counts the guard's 429s like any
other answer) and outside the body limits. It decides nothing itself: the page and the code
lookups call the guard (service.py) through the :class:`~.service.Visit` it opens here, and
authentication through the caller watcher it sets (auth/caller.py), so auth never imports the
guard; on the way out it writes the request's failed lookups through to the shared counters
*before* the answer leaves, so a guesser never learns an answer before its failure is counted,
and adds the rate-limit headers to whatever answer the face gave, in whatever shape.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voucherd.auth.caller import Caller, stop_watching, watch_callers
from voucherd.guard import service
from voucherd.guard.service import Guard, Visit


class GuardRequests:
    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.guard.enabled:
            await self.app(scope, receive, send)
            return
        guard = self.guard
        visit = Visit(guard.client_address(scope))

        def admit(caller: Caller) -> None:
            guard.admit(visit, caller.tenant_id, caller.key_id)

        def admit_without_waiting(caller: Caller) -> bool:
            return guard.admit_without_waiting(visit, caller.tenant_id, caller.key_id)

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                if visit.failures:
                    await run_in_threadpool(guard.record_failures, visit)
                extra = visit.headers()
                if extra:
                    message["headers"] = list(message.get("headers", []))
                    headers = MutableHeaders(raw=message["headers"])
                    for name, value in extra:
                        # A face that chose its own Retry-After (the page, an outage) keeps it.
                        if name not in headers:
                            headers.append(name, value)
            await send(message)

        token = service.enter(guard, visit)
        watching = watch_callers(admit, admit_without_waiting)
        try:
            await self.app(scope, receive, guarded_send)
        finally:
            stop_watching(watching)
            service.leave(token)
