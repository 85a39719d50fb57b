"""What the OpenAPI document says a path takes: its methods (for the ``Allow`` header of a 405)
and an operation's query parameters.

Starlette answers a wrong method with the methods of the *first* route whose path matched,
but voucherd declares each method of a path as its own route (GET and PATCH
/api/v1/campaigns/{campaign}), so its ``Allow`` named only one of them; and the dialects'
catch-alls answered a known path's wrong method with 404. RFC 9110 wants 405 and every method.
The OpenAPI document is the list of what each path takes, so it is read from there.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from fastapi import Request

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@lru_cache(maxsize=512)
def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^{}]+\})", template)
    return re.compile(
        "".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts) + "$"
    )


def _path_items(request: Request) -> list[dict[str, Any]]:
    """The document's entries for this request's path. A concrete path is matched before a
    templated one that would also match (OpenAPI's rule, and the routers' order):
    /api/v1/operations/resolve is not /api/v1/operations/{operation}."""
    matches = [
        (template.count("{"), operations)
        for template, operations in request.app.openapi().get("paths", {}).items()
        if _pattern(template).match(request.url.path)
    ]
    fewest = min((variables for variables, _ in matches), default=0)
    return [operations for variables, operations in matches if variables == fewest]


def declared_query_parameters(request: Request) -> set[str] | None:
    """The query parameters the document gives this request's operation; None if it has none.

    A routed request names its path template (``scope["route"].path_format``, the document's
    key), so the hot path is a dictionary lookup, not a match against every template."""
    template = getattr(request.scope.get("route"), "path_format", None)
    paths = request.app.openapi().get("paths", {})
    items = [paths[template]] if template in paths else _path_items(request)
    for operations in items:
        operation = operations.get(request.method.lower())
        if isinstance(operation, dict):
            return {
                parameter["name"]
                for parameter in operation.get("parameters", [])
                if parameter.get("in") == "query"
            }
    return None


def allowed_methods(request: Request) -> list[str]:
    """Every method the OpenAPI document gives this request's path (HEAD with GET, as Starlette
    answers it); empty for a path the document does not know."""
    methods: set[str] = set()
    for operations in _path_items(request):
        methods |= {method.upper() for method in operations if method in _METHODS}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)
