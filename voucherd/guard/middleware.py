"""The guard's place in the request: who is calling from where, and the headers on the way out.

The front door (api/front.py) opens a :class:`GuardedVisit` for every HTTP request inside the
observability part (which logs and counts the guard's 429s like any other answer) and outside
the body limits. It decides nothing itself: the page and the code lookups call the guard
(service.py) through the :class:`~.service.Visit` it opens here, and authentication through the
caller watcher it sets (auth/caller.py), so auth never imports the guard; on the way out it
writes the request's failed lookups through to the shared counters *before* the answer leaves,
so a guesser never learns an answer before its failure is counted, and adds the rate-limit
headers to whatever answer the face gave, in whatever shape.
"""

from __future__ import annotations

from contextvars import Token
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.types import Message, Scope

from voucherd.auth.caller import Caller, stop_watching, watch_callers
from voucherd.guard import service
from voucherd.guard.service import Guard, Visit


class GuardedVisit:
    """One request's visit, open from :meth:`open` until :meth:`close`."""

    __slots__ = ("_service_token", "_watching", "guard", "visit")

    def __init__(self, guard: Guard, scope: Scope) -> None:
        self.guard = guard
        self.visit = Visit(guard.client_address(scope))
        self._service_token: object = None
        self._watching: Token[Any] | None = None

    def open(self) -> None:
        """The lookups and authentication of this request report to this visit from now on."""
        self._service_token = service.enter(self.guard, self.visit)
        self._watching = watch_callers(self._admit, self._admit_without_waiting)

    def close(self) -> None:
        if self._watching is not None:
            stop_watching(self._watching)
        service.leave(self._service_token)

    def _admit(self, caller: Caller) -> None:
        self.guard.admit(self.visit, caller.tenant_id, caller.key_id)

    def _admit_without_waiting(self, caller: Caller) -> bool:
        return self.guard.admit_without_waiting(self.visit, caller.tenant_id, caller.key_id)

    async def before_answer(self, message: Message) -> None:
        """On ``http.response.start``: count the failed lookups, then add the headers."""
        visit = self.visit
        if visit.failures:
            await run_in_threadpool(self.guard.record_failures, visit)
        extra = visit.headers()
        if extra:
            message["headers"] = list(message.get("headers", []))
            headers = MutableHeaders(raw=message["headers"])
            for name, value in extra:
                # A face that chose its own Retry-After (the page, an outage) keeps it.
                if name not in headers:
                    headers.append(name, value)
