"""A shorter way through FastAPI's request handling for ``async`` routes whose parameters are
plain: the hot routes (issue, validate, redeem, publish) and any other route of the same shape.

FastAPI's handler reads the body, parses its Content-Type with the ``email`` package, then solves
the dependency tree generically (a response object, override look-ups, cache keys, telemetry
hooks per dependency): 13-17% of the CPU of an issue request, more than the issue's INSERT. For
a route whose dependencies are all ``async`` functions taking the request, headers, path or query
values and other such dependencies (no ``yield``, no background tasks, no security scopes, no
form), the same work is a short list of calls known when the app starts.

**The answers stay FastAPI's, to the byte.** A request takes the short way only when nothing in
it would make FastAPI answer with a validation error: every header, path, query and body value
is validated first, with FastAPI's own functions and fields, before any dependency runs; the
body must be empty or sent as ``application/json``. Anything else (a missing or invalid
parameter, a body that is not JSON, another media type, dependency overrides, telemetry) goes to
FastAPI's own handler, untouched, before any dependency has run, so nothing is counted twice.
When every parameter is valid, FastAPI would call the dependencies in the same order with the
same values, so an error a dependency raises (401, 429, a refused query parameter) is the same
error either way.

The handler replaces the one FastAPI builds for each route it includes (``install``, called by the
app factory once every router is in): FastAPI 0.165's included routes keep their handler on an
"effective route context"; if a later FastAPI keeps it elsewhere, ``install`` finds nothing to
replace and every route keeps FastAPI's handler (tests/api/test_hot.py says so).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Iterator
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, HTTPException, params
from fastapi._body_limit import get_body_limit_error
from fastapi._compat import ModelField, field_annotation_is_sequence
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import (
    _get_param_aliases,
    _get_param_model,
    request_body_to_args,
)
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from fastapi.telemetry import get_telemetry_data
from pydantic_core import PydanticUndefined
from starlette._exception_handler import wrap_app_handling_exceptions
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voucherd.observability.context import flat_routes

Handler = Callable[[Request], Awaitable[Response]]


class _Ineligible(Exception):
    """The route has a parameter or dependency the short way does not handle."""


@dataclass
class _Step:
    """One dependency (or the endpoint, last) and where each of its arguments comes from."""

    call: Callable[..., Awaitable[Any]]
    dependant: Dependant
    params: tuple[_Param, ...] = ()
    # (argument name, index of the step whose result it is)
    sub_results: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class _Plan:
    steps: list[_Step]
    body: Dependant | None  # the endpoint's node, when it takes a body


def _is_async(call: Any) -> bool:
    if inspect.isasyncgenfunction(call) or inspect.isgeneratorfunction(call):
        return False
    if inspect.iscoroutinefunction(call):
        return True
    dunder = getattr(call, "__call__", None)  # noqa: B004  (an instance such as HTTPBearer)
    return (
        not inspect.isfunction(call)
        and inspect.iscoroutinefunction(dunder)
        and not inspect.isasyncgenfunction(dunder)
    )


def _plan(endpoint: Dependant, embed_body_fields: bool) -> _Plan:
    steps: list[_Step] = []
    known: dict[int, int] = {}  # id(call) -> step index, for dependencies used more than once

    def visit(node: Dependant, top: bool) -> int:
        call = node.call
        if call is None or not _is_async(call):
            raise _Ineligible("a sync or generator dependency")
        if (
            node.websocket_param_name
            or node.response_param_name
            or node.background_tasks_param_name
            or node.security_scopes_param_name
            or node.own_oauth_scopes
            or node.parent_oauth_scopes
            or getattr(node, "concurrency", None) is not None
        ):
            raise _Ineligible("a parameter only FastAPI's solver provides")
        if node.body_params and (not top or embed_body_fields or len(node.body_params) != 1):
            raise _Ineligible("a body other than one model")
        if node.body_params and isinstance(node.body_params[0].field_info, params.Form):
            raise _Ineligible("a form body")
        if not top and node.use_cache and id(call) in known:
            return known[id(call)]
        step = _Step(call, node, _params_of(node))
        for sub in node.dependencies:
            index = visit(sub, False)
            if sub.name is not None:
                step.sub_results.append((sub.name, index))
        steps.append(step)
        if not top and node.use_cache:
            known[id(call)] = len(steps) - 1
        return len(steps) - 1

    visit(endpoint, True)
    return _Plan(steps, endpoint if endpoint.body_params else None)


def _plain_json(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


class _Invalid(Exception):
    """Some value would make FastAPI answer with a validation error: let FastAPI answer."""


_UNCHANGEABLE = (bool, int, float, str, bytes)


@dataclass(frozen=True)
class _Param:
    """A path, query, header or cookie value, read as FastAPI's ``request_params_to_args``
    reads a plain (single-valued, non-model) parameter, with its look-ups done once."""

    field: ModelField
    keys: tuple[str, ...]  # the request keys it may come under, preferred first
    where: str  # "path", "query", "header", "cookie": the first item of an error's loc
    required: bool
    # The default as FastAPI gives it (a deep copy per request), kept when it cannot change
    # (None, a number, a string): a header most requests leave out (Idempotency-Key) then costs
    # no look-up through pydantic's FieldInfo.
    kept_default: Any = None
    default_kept: bool = False

    @classmethod
    def of(cls, field: ModelField) -> _Param:
        info = field.field_info
        if not isinstance(info, params.Param) or _get_param_model(field) is not None:
            raise _Ineligible("a parameter model")
        if field_annotation_is_sequence(info.annotation) or info.validate_default:
            raise _Ineligible("a list parameter or a validated default")
        keys = tuple(key for _, key in _get_param_aliases(field))
        required = info.is_required()
        if required or info.default_factory is not None:
            return cls(field, keys, info.in_.value, required)
        default = field.default
        kept = default is None or type(default) in _UNCHANGEABLE
        return cls(field, keys, info.in_.value, required, default, kept)

    def read(self, source: Any) -> Any:
        key = next((k for k in self.keys if k in source), self.keys[0])
        value = source.get(key)
        if value is None:
            if self.required:
                raise _Invalid
            if self.default_kept:
                return self.kept_default
            return deepcopy(self.field.default)
        found, errors = self.field.validate(value, {}, loc=(self.where, key))
        if errors:
            raise _Invalid
        return found


def _params_of(node: Dependant) -> tuple[_Param, ...]:
    fields = [*node.path_params, *node.query_params, *node.header_params, *node.cookie_params]
    return tuple(_Param.of(field) for field in fields)


def _parameters(request: Request, step: _Step) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for param in step.params:
        if param.where == "header":
            source: Any = request.headers
        elif param.where == "path":
            source = request.path_params
        elif param.where == "query":
            source = request.query_params
        else:
            source = request.cookies
        values[param.field.name] = param.read(source)
    node = step.dependant
    if node.request_param_name:
        values[node.request_param_name] = request
    if node.http_connection_param_name:
        values[node.http_connection_param_name] = request
    return values


def short_way(plan: _Plan, slow: Handler, overrides: Any, status_code: int | None) -> Handler:
    """The route's handler: ``plan`` when every value is valid, else FastAPI's ``slow``."""

    async def handle(request: Request) -> Response:
        if _fastapi_must_answer(overrides):
            return await slow(request)
        answer = await _answer(plan, request, status_code)
        return await slow(request) if answer is None else answer

    return handle


def _fastapi_must_answer(overrides: Any) -> bool:
    """Dependency overrides (tests) or FastAPI's telemetry: only FastAPI's solver honours them."""
    return bool(getattr(overrides, "dependency_overrides", None)) or (
        get_telemetry_data() is not None
    )


async def _answer(plan: _Plan, request: Request, status_code: int | None) -> Response | None:
    """The route's answer, the short way; None, before any dependency has run, when some value
    would make FastAPI answer with a validation error (then FastAPI answers)."""
    steps = plan.steps
    try:
        arguments = [_parameters(request, step) for step in steps]
        if plan.body is not None:
            arguments[-1].update(await _body(request, plan.body))
    except _Invalid:
        return None
    results: list[Any] = []
    for step, values in zip(steps, arguments, strict=True):
        for name, index in step.sub_results:
            values[name] = results[index]
        results.append(await step.call(**values))
    answer = results[-1]
    if isinstance(answer, Response):
        return answer
    # FastAPI's answer for a route without a response model returning plain data.
    return JSONResponse(jsonable_encoder(answer), status_code=status_code or 200)


async def _body(request: Request, node: Dependant) -> dict[str, Any]:
    try:
        raw = await request.body()
    except HTTPException:
        raise
    except Exception as exc:  # as FastAPI's handler answers a body it could not read
        if MAX_BODY_SIZE_SCOPE_KEY in request.scope and (error := get_body_limit_error(exc)):
            raise error from exc
        raise HTTPException(status_code=400, detail="There was an error parsing the body") from exc
    body: Any = None
    if raw:
        content_type = request.headers.get("content-type")
        if content_type is None or not _plain_json(content_type):
            raise _Invalid
        try:
            body = json.loads(raw)
        except ValueError:
            raise _Invalid from None
    else:
        body = PydanticUndefined  # FastAPI's "no body": the model's default, or "missing"
    values, errors = await request_body_to_args(node.body_params, body, False)
    if errors:
        raise _Invalid
    return values


def _contexts(app: FastAPI) -> Iterator[Any]:
    for route in app.router.routes:
        nested = getattr(route, "effective_route_contexts", None)
        if callable(nested):
            yield from nested()


@dataclass(frozen=True)
class _Eligible:
    context: Any  # FastAPI's effective route context of an included route
    plan: _Plan


def _eligible(app: FastAPI) -> Iterator[_Eligible]:
    """Every route of ``app``'s included routers the short way can answer."""
    from fastapi import routing

    for context in _contexts(app):
        route = context.original_route
        # Exactly FastAPI's route: a face's own route class may wrap the handler (its error
        # shape), which the short way would step around.
        if type(route) is not routing.APIRoute or context.dependant is None:
            continue
        if not _returns_response(route.endpoint) or context.is_sse_stream:
            continue
        if context.is_json_stream or context.stream_item_field is not None:
            continue
        try:
            yield _Eligible(context, _plan(context.dependant, context._embed_body_fields))
        except _Ineligible:
            continue


def install(app: FastAPI) -> list[str]:
    """Give every eligible route of ``app``'s included routers the short way; the paths it
    was given to, as ``METHOD path``."""
    from fastapi import routing

    context_var = getattr(routing, "_effective_route_context_var", None)
    wrap = getattr(routing, "wrap_app_with_body_limit", None)
    if context_var is None or wrap is None:
        return []
    given: list[str] = []
    for eligible in _eligible(app):
        context = eligible.context
        token = context_var.set(context)
        try:
            slow = context.original_route.get_route_handler()
        finally:
            context_var.reset(token)
        overrides = context.dependency_overrides_provider
        handler = short_way(eligible.plan, slow, overrides, context.status_code)
        context.app = wrap(routing.request_response(handler), context.max_body_size)
        given += [f"{method} {context.path}" for method in sorted(context.methods or ())]
    return given


def _returns_response(endpoint: Callable[..., Any]) -> bool:
    """The endpoint says it returns a Response: FastAPI then neither validates nor serializes
    its answer, and neither does the short way."""
    try:
        annotation = inspect.signature(endpoint, eval_str=True).return_annotation
    except (NameError, TypeError, ValueError):
        return False
    return isinstance(annotation, type) and issubclass(annotation, Response)


# --- express lanes: the hot routes without routing -------------------------------------------
#
# The short way above still starts below FastAPI's routing: Starlette's exception middleware,
# FastAPI's exit stacks, and a match of the path against every route of every router before
# the route's own (10 of the ~30 frames of a request's stack, 5-9% of a redemption's or a
# validation's CPU in one process, bench/README.md "Express lanes"). A route whose path has no
# parameters is found by one dictionary look-up on (method, path) instead: the front door
# (api/front.py) hands the request to its lane, which does what routing and those layers would
# have done for it (the scope's route, endpoint and path parameters; the app's exception
# handlers), then answers the short way. Anything the short way would give to FastAPI (an
# invalid value, a body that is not JSON, overrides) goes through the whole app as before, its
# body replayed.

Lane = Callable[[Scope, Receive, Send], Awaitable[None]]


def express_lanes(app: FastAPI, inner: ASGIApp) -> dict[tuple[str, str], Lane]:
    """A lane for each route the short way answers whose path has no parameters and which
    FastAPI's routing would choose for that method and path, keyed by (method, path).

    ``inner`` is what the front door would otherwise call: Starlette's exception middleware
    around the rest of the app. Its exception handlers are the ones a lane hands errors to; if
    it is something else (a later Starlette), there are no lanes."""
    handlers = (
        getattr(inner, "_exception_handlers", None),
        getattr(inner, "_status_handlers", None),
    )
    if not isinstance(inner, ExceptionMiddleware) or None in handlers:
        return {}
    lanes: dict[tuple[str, str], Lane] = {}
    for eligible in _eligible(app):
        context = eligible.context
        if context.param_convertors or context.max_body_size is not None:
            continue
        for method in context.methods or ():
            if _routed_to(app, method, context.path) is context:
                lanes[(method, context.path)] = _lane(app, eligible, handlers, inner)
    return lanes


def _routed_to(app: FastAPI, method: str, path: str) -> Any:
    """The route FastAPI's routing would choose first for ``method`` and ``path``."""
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}
    for candidate in flat_routes(app.router.routes):
        match, _ = candidate.matches(scope)
        if match == Match.FULL:
            return candidate
    return None


class _Refused(Exception):
    """The short way gave the request to FastAPI: the lane sends it through the whole app."""


def _lane(app: FastAPI, eligible: _Eligible, handlers: tuple[Any, Any], inner: ASGIApp) -> Lane:
    context, plan = eligible.context, eligible.plan
    route = context.original_route
    overrides = context.dependency_overrides_provider
    status_code = context.status_code

    async def lane(scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("root_path") or _fastapi_must_answer(overrides):
            await inner(scope, receive, send)
            return
        # What routing and the exception middleware would have left in the scope: the access
        # line and the metrics name the route by it, dependencies read the app and the route,
        # and errors go to the app's exception handlers.
        scope["app"] = app
        scope.setdefault("router", app.router)
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = {}
        scope["starlette.exception_handlers"] = handlers
        request = Request(scope, receive, send)

        async def respond(scope: Scope, receive: Receive, send: Send) -> None:
            answer = await _answer(plan, request, status_code)
            if answer is None:
                raise _Refused
            await answer(scope, receive, send)

        # Errors as FastAPI's handler and then Starlette's exception middleware take them: an
        # error becomes its handler's answer; an error a handler raises (a replay's answer
        # re-read as the database drops) is looked up again, outside (a 503, not a 500).
        routed = wrap_app_handling_exceptions(respond, request)
        try:
            await wrap_app_handling_exceptions(routed, request)(scope, receive, send)
            return
        except _Refused:
            pass
        # Outside the except: an error of the second pass is not logged as raised "during
        # handling of" the refusal.
        await inner(scope, _replayed(request, receive), send)

    return lane


def _replayed(request: Request, receive: Receive) -> Receive:
    """``receive`` as it was before the lane read the body: the body first, then the rest."""
    body: bytes | None = getattr(request, "_body", None)
    if body is None:
        return receive
    given = False

    async def again() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again
