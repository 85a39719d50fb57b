"""What the access line needs to know about the request being served, wherever it is learnt.

The middleware opens a :class:`RequestContext` per request; authentication, deep in a dependency
that may run on a worker thread, notes the tenant in it. A context variable carries it there:
Starlette copies the context into the threads it runs sync code on, and the copy holds the same
object, so what the thread notes the middleware reads.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

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
    return new_request_id()


def new_request_id() -> str:
    """A random (version 4) UUID's 32 hex digits, as ``uuid.uuid4().hex`` gives, without
    building a ``UUID`` object per request (a few µs of pure Python)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC 4122 variant
    return raw.hex()


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
    found = _path_of(scope.get("route"))
    if found:
        return found
    partial = None
    for candidate in _routes_of(scope.get("app")):
        match, _ = candidate.matches(scope)
        path = _path_of(candidate)
        if match == Match.FULL and path:
            return path
        if match == Match.PARTIAL:
            partial = partial or path
    return partial or UNMATCHED


def _routes_of(app: Any) -> list[Any]:
    """Every route of the app, flattened once (half a millisecond) and kept in its state; again
    only when routes were added since."""
    routes = getattr(getattr(app, "router", None), "routes", None)
    state = getattr(app, "state", None)
    if routes is None or state is None:
        return []
    cached: tuple[int, list[Any]] | None = getattr(state, "observability_routes", None)
    if cached is None or cached[0] != len(routes):
        cached = (len(routes), list(flat_routes(routes)))
        state.observability_routes = cached
    return cached[1]


def flat_routes(routes: Iterable[Any]) -> Iterator[Any]:
    """Every route, those of included routers too (which FastAPI matches as one block)."""
    for route in routes:
        nested = getattr(route, "effective_route_contexts", None)
        if callable(nested):
            yield from nested()
        else:
            yield route


def _path_of(route: object) -> str | None:
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else None
