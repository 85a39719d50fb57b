"""One build of each route's request handler per test process, not one per test's app.

Every test builds its own app (``create_app`` over the test's own ``db``), and FastAPI builds
an included route's handler (its dependant, body field, response field) lazily, per app, the
first time a request is matched against the route's router: a request to a route late in the
app (a dialect's, a page's, ``/healthz``) builds every route before it, about 0.35 s of CPU per
test. What FastAPI builds depends on the route and how its router was included, never on the
app, except for the app as ``dependency_overrides_provider`` (which no test overrides, and
``create_app`` includes every router the same way): so the suite keeps the first build of each
route and included router and hands it to every later app.

FastAPI's own names are private: if they change, :func:`share_route_builds` leaves FastAPI
as it is (the suite is slower, not wrong).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import routing

_Key = tuple[int, int, str]


def share_route_builds() -> bool:
    """Install the shared builds; False (and nothing changed) when FastAPI has no such hook."""
    included = getattr(routing, "_IncludedRouter", None)
    build = getattr(included, "_build_effective_context", None)
    context_type = getattr(routing, "_RouterIncludeContext", None)
    if (
        build is None
        or getattr(build, "shared_by_suite", False)
        or not dataclasses.is_dataclass(context_type)
        or "dependency_overrides_provider" not in {f.name for f in dataclasses.fields(context_type)}
    ):
        return False
    built: dict[_Key, tuple[Any, Any, Any]] = {}

    def shared(self: Any, route: Any) -> Any:
        provider = self.include_context.dependency_overrides_provider
        if not isinstance(route, routing.APIRoute) or getattr(
            provider, "dependency_overrides", None
        ):
            return build(self, route)  # overridden dependencies are the app's own: build anew
        context = dataclasses.replace(self.include_context, dependency_overrides_provider=None)
        key = (id(route), id(context.included_router), context.prefix)
        hit = built.get(key)
        if hit is not None and hit[0] is route and hit[1] == context:
            return hit[2]
        effective = build(self, route)
        built[key] = (route, context, effective)
        return effective

    shared.shared_by_suite = True  # type: ignore[attr-defined]
    included._build_effective_context = shared  # type: ignore[union-attr]
    return True
