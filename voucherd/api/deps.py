"""FastAPI dependencies of the native API: the database, the caller, the idempotency claim."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from voucherd.api.methods import declared_query_parameters
from voucherd.api.offload import off_loop
from voucherd.auth.caller import Caller
from voucherd.auth.service import authenticate, authenticate_without_waiting, split_token
from voucherd.db.engine import Database
from voucherd.errors import DomainError, ErrorCode, InvalidInput, Unauthorized
from voucherd.idempotency.service import IdempotencyClaim
from voucherd.pagination import CURSOR

# Public so the dialects that take the same token declare the same security scheme.
BEARER = HTTPBearer(auto_error=False, description="`voucherd keys create` prints the token")


IDEMPOTENCY_KEY_PATTERN = r"^[\x20-\x7e]+$"


# The dependencies below do no I/O, so they are ``async def``: FastAPI runs a plain ``def``
# dependency in the threadpool, a trip (and a wake-up of another thread) per dependency per
# request, which cost more CPU than the checks themselves.


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def database(request: Request) -> Database:
    """:func:`get_db` as a dependency (on the event loop)."""
    db: Database = request.app.state.db
    return db


async def get_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> Caller:
    """The caller, from the key cache on the event loop when it knows the key and the guard can
    count the request from memory; else (a database read) in the threadpool."""
    if credentials is None:
        raise Unauthorized("send the API token as 'Authorization: Bearer <token>'")
    db: Database = request.app.state.db
    key_id, secret = split_token(credentials.credentials)
    caller = authenticate_without_waiting(db, key_id, secret)
    if caller is None:
        caller = await off_loop(authenticate, db, key_id, secret)
    return caller


def single_query_values(request: Request) -> None:
    """Refuse a query parameter given twice: FastAPI would silently keep the last one, so
    ``?state=ACTIVE&state=DISABLED`` would list only disabled vouchers. Every query parameter
    voucherd declares takes one value."""
    if not request.scope.get("query_string"):
        return
    seen: set[str] = set()
    for name, _ in request.query_params.multi_items():
        if name in seen:
            raise InvalidInput("is given more than once", field=name)
        seen.add(name)


def known_query_parameters(request: Request) -> None:
    """Refuse a query parameter the operation does not take, as bodies refuse unknown fields: a
    typo (``?stat=ACTIVE``) would otherwise list every voucher."""
    if not request.scope.get("query_string"):
        return
    declared = declared_query_parameters(request)
    if declared is None:
        return
    for name in request.query_params:
        if name not in declared:
            raise InvalidInput("is not a parameter of this endpoint", field=name)


def valid_cursor(request: Request) -> None:
    """A cursor is the id a list gave as ``next_cursor``; anything else would page from an
    arbitrary point (``?cursor=garbage`` sorted after every id and listed nothing, as if empty)."""
    if not request.scope.get("query_string"):
        return
    cursor = request.query_params.get("cursor")
    if cursor is not None and not CURSOR.match(cursor):
        raise InvalidInput(
            "is not a cursor: give the next_cursor of the page before", field="cursor"
        )


async def one_value_per_query_parameter(request: Request) -> None:
    """:func:`single_query_values` as a dependency (on the event loop)."""
    single_query_values(request)


class UnsupportedMediaType(DomainError):
    status, code, title = 415, ErrorCode.UNSUPPORTED_MEDIA_TYPE, "Unsupported media type"


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    kind, _, subtype = media_type.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


async def json_content_type(request: Request) -> None:
    """A route that reads a JSON body refuses a body of another media type, naming Content-Type.
    FastAPI parses a body as JSON only when it says so, and validated the raw text of any other
    as the model, answering "Input should be a valid dictionary"."""
    route = request.scope.get("route")
    if getattr(route, "body_field", None) is None:
        return  # the route reads no body, or reads its own (a form, a provider's callback)
    content_type = request.headers.get("content-type")
    if (content_type is not None and _is_json(content_type)) or not await request.body():
        return
    # FastAPI reads a body without a Content-Type as JSON no more (strict_content_type).
    sent = f"not {content_type.split(';')[0]}" if content_type else "no Content-Type was sent"
    raise UnsupportedMediaType(
        f"the body must be JSON, sent as application/json ({sent})", field="Content-Type"
    )


async def query_as_declared(request: Request) -> None:
    """The native API's requests, in this order: one value per query parameter, only the
    declared parameters, a cursor that a list gave, and JSON bodies said to be JSON. One
    dependency rather than four: each costs FastAPI's dependency machinery per request."""
    single_query_values(request)
    known_query_parameters(request)
    valid_cursor(request)
    await json_content_type(request)


ONE_VALUE_PER_QUERY_PARAMETER = [Depends(one_value_per_query_parameter)]
QUERY_AS_DECLARED = [Depends(query_as_declared)]


async def get_idempotency(
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Retries with the same key get the first answer",
            # Declared, so the document says what is refused: 1 to 255 printable ASCII characters.
            min_length=1,
            max_length=255,
            pattern=IDEMPOTENCY_KEY_PATTERN,
        ),
    ] = None,
) -> IdempotencyClaim | None:
    if idempotency_key is None:
        return None
    body = await request.body()
    return IdempotencyClaim.of(idempotency_key, request.method, request.url.path, body)


DB = Annotated[Database, Depends(database)]
CallerDep = Annotated[Caller, Depends(get_caller)]
Idem = Annotated[IdempotencyClaim | None, Depends(get_idempotency)]
