"""What the access line needs to know about the request being served, wherever it is learnt.

The middleware opens a :class:`RequestContext` per request; authentication, deep in a dependency
that may run on a worker thread, notes the tenant in it. A context variable carries it there:
Starlette copies the context into the threads it runs sync code on, and the copy holds the same
object, so what the thread notes the middleware reads.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from dataclasses import dataclass

from starlette.routing import Match
from starlette.types import Scope

_CURRENT: ContextVar[RequestContext | None] = ContextVar("voucherd_request", default=None)
# A caller's own id is kept when it is short and plain enough to be safe in a header and a log
# line (a UUID, a ULID, a trace id); anything else is replaced, not cleaned.
UNMATCHED = "<unmatched>"
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{7,63}$")


@dataclass
class RequestContext:
    request_id: str
    tenant_id: str | None = None


def request_id_from(given: str | None) -> str:
    """The caller's ``X-Request-Id`` when acceptable, else a new one."""
    if given and _ACCEPTABLE.match(given):
        return given
    return uuid.uuid4().hex


def current() -> RequestContext | None:
    return _CURRENT.get()


def enter(context: RequestContext) -> object:
    return _CURRENT.set(context)


def leave(token: object) -> None:
    _CURRENT.reset(token)  # type: ignore[arg-type]


def note_tenant(tenant_id: str) -> None:
    """Called by authentication: the request being served acts for this tenant."""
    context = _CURRENT.get()
    if context is not None:
        context.tenant_id = tenant_id


def route_template(scope: Scope) -> str:
    """The path template of the route that answered (``/v1/vouchers/{code}``), never the path.

    FastAPI leaves the matched route in the scope; a request refused before routing (a body too
    large, a NUL in the URL) is matched here against the app's routes instead.
    """
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    app = scope.get("app")
    partial = None
    for candidate in getattr(getattr(app, "router", None), "routes", ()):
        match, _ = candidate.matches(scope)
        if match == Match.FULL:
            return str(getattr(candidate, "path", UNMATCHED))
        if match == Match.PARTIAL and partial is None:
            partial = str(getattr(candidate, "path", UNMATCHED))
    return partial or UNMATCHED
