"""The methods a path takes, for the ``Allow`` header of a 405.

Starlette answers a wrong method with the methods of the *first* route whose path matched,
but voucherd declares each method of a path as its own route (GET and PATCH
/api/v1/campaigns/{campaign}), so its ``Allow`` named only one of them; and the dialects'
catch-alls answered a known path's wrong method with 404. RFC 9110 wants 405 and every method.
The OpenAPI document is the list of what each path takes, so it is read from there.
"""

from __future__ import annotations

import re

from fastapi import Request

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^{}]+\})", template)
    return re.compile(
        "".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts) + "$"
    )


def allowed_methods(request: Request) -> list[str]:
    """Every method the OpenAPI document gives this request's path (HEAD with GET, as Starlette
    answers it); empty for a path the document does not know."""
    # A concrete path is matched before a templated one that would also match (OpenAPI's rule,
    # and the routers' order): /api/v1/operations/resolve is not /api/v1/operations/{operation}.
    matches = [
        (template.count("{"), operations)
        for template, operations in request.app.openapi().get("paths", {}).items()
        if _pattern(template).match(request.url.path)
    ]
    fewest = min((variables for variables, _ in matches), default=0)
    methods: set[str] = set()
    for variables, operations in matches:
        if variables == fewest:
            methods |= {method.upper() for method in operations if method in _METHODS}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)
