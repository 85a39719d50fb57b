"""What the OpenAPI document says about answers and credentials that no single route states.

FastAPI documents a route's success answer and its parameters; the refusals (problem+json on the
native API, each dialect's own error shape) and the answers given before any route is chosen
(api/limits.py) are declared here once and attached per router, so /openapi.json tells a client
(and tests/properties/test_schemathesis.py) every status and content type it can get.

Credentials: each face's security schemes come from FastAPI security dependencies. FastAPI lists
every scheme of a route as an alternative (any one suffices); where a face needs a *pair* of
headers (Voucherify's ``X-App-Id`` + ``X-App-Token``, Yoyo's ``apiId`` + ``apiPassword``),
:func:`install` joins them into one requirement, as the server checks them.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

PROBLEM_JSON = "application/problem+json"

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": "RFC 9457 problem details; `code` is stable, `errors` names what to fix.",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "reason"],
                "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
            },
        },
    },
}

_MEANINGS = {
    400: "Malformed: the body is not JSON, or the URL holds a NUL byte",
    401: "No credentials, or credentials that are not a live key",
    403: "The key lacks the scope this needs, or the signature does not match",
    404: "No such object for this key's tenant",
    405: "This path does not take this method",
    409: "Conflict: the state forbids it, or the Idempotency-Key's first request is running",
    413: "The body is larger than the server accepts",
    422: "Refused: a field is invalid or a rule forbids it (the field is named)",
    429: "Too many requests or failed lookups; Retry-After says when to try again",
    503: "The database is unavailable; retry (with the same Idempotency-Key)",
}

# Answered by api/limits.py before any route (or face) is chosen, always as problem+json.
_BEFORE_ROUTING = (400, 413)
_NATIVE_STATUSES = (400, 401, 403, 404, 409, 413, 422, 429, 503)


# Error shapes by name, served once under components/schemas (install) and referred to by every
# operation's responses, rather than repeated in each.
_SHAPES: dict[str, dict[str, Any]] = {"Problem": PROBLEM_SCHEMA}


def _content(media_type: str, shape: str) -> dict[str, Any]:
    return {media_type: {"schema": {"$ref": f"#/components/schemas/{shape}"}}}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """problem+json answers for these statuses, for a router's ``responses``."""
    return {
        status: {
            "description": _MEANINGS.get(status, "Refused"),
            "content": _content(PROBLEM_JSON, "Problem"),
        }
        for status in statuses
    }


NATIVE_ERRORS = problem_responses(*_NATIVE_STATUSES)


def face_responses(
    name: str,
    schema: dict[str, Any],
    *statuses: int,
    media_type: str = "application/json",
) -> dict[int | str, dict[str, Any]]:
    """A dialect's own error shape for these statuses, plus the problem+json answers given before
    the dialect is chosen (a NUL in the URL, a body over the limit). ``name`` names the shape
    in the document's components."""
    _SHAPES[name] = schema
    responses: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, *_BEFORE_ROUTING}):
        content: dict[str, Any] = {}
        if status in statuses:
            content.update(_content(media_type, name))
        if status in _BEFORE_ROUTING:
            content.update(_content(PROBLEM_JSON, "Problem"))
        responses[status] = {"description": _MEANINGS.get(status, "Refused"), "content": content}
    return responses


# Schemes that the server checks together: one requirement, not alternatives.
_PAIRS = (("VoucherifyAppId", "VoucherifyAppToken"), ("YoyoApiId", "YoyoApiPassword"))


def _joined(requirements: list[dict[str, list[str]]]) -> list[dict[str, list[str]]]:
    for first, second in _PAIRS:
        names = [next(iter(r)) if len(r) == 1 else None for r in requirements]
        if first in names and second in names:
            requirements = [r for r in requirements if not ({first, second} & r.keys())]
            requirements.insert(0, {first: [], second: []})
    return requirements


def _not_null(parameter: dict[str, Any]) -> None:
    """FastAPI declares an optional parameter ``str | None`` as "string or null"; a query string
    or header has no null (absent is how it says none), and "or null" made a validator read the
    text ``false`` as a boolean that is neither."""
    schema = parameter.get("schema", {})
    variants = schema.get("anyOf")
    if isinstance(variants, list):
        kept = [variant for variant in variants if variant != {"type": "null"}]
        if len(kept) == 1 and len(kept) < len(variants):
            del schema["anyOf"]
            schema.update(kept[0])


# Built documents by the routes they describe. Every app create_app builds has the same routes
# (routers are module-level), so a process builds the document once, not once per app: building
# it costs about 0.3 s, and the native API reads it on the first request (api/methods.py).
_DOCUMENTS: dict[tuple[Any, ...], dict[str, Any]] = {}


def _routes_key(app: FastAPI) -> tuple[Any, ...]:
    return tuple(
        (
            getattr(route, "path", None),
            tuple(sorted(getattr(route, "methods", None) or ())),
            # Named, not the function itself: FastAPI makes its own routes' endpoints
            # (/openapi.json, /docs) as closures per app.
            getattr(getattr(route, "endpoint", None), "__module__", None),
            getattr(getattr(route, "endpoint", None), "__qualname__", None),
        )
        for route in app.routes
    )


def install(app: FastAPI) -> None:
    """Serve the document FastAPI builds, with paired credentials joined and optional parameters
    not nullable (see :func:`_not_null`)."""
    build = app.openapi

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            key = _routes_key(app)
            if key not in _DOCUMENTS:
                _DOCUMENTS[key] = _finished(build())
            app.openapi_schema = _DOCUMENTS[key]
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]


def _finished(schema: dict[str, Any]) -> dict[str, Any]:
    schema.setdefault("components", {}).setdefault("schemas", {}).update(_SHAPES)
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            if "security" in operation:
                operation["security"] = _joined(operation["security"])
            for parameter in operation.get("parameters", []):
                _not_null(parameter)
    return schema
