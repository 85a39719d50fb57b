"""FastAPI dependencies of the native API: the database, the caller, the idempotency claim."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from voucherd.api.methods import declared_query_parameters
from voucherd.auth.caller import Caller
from voucherd.auth.service import authenticate_token
from voucherd.db.engine import Database
from voucherd.errors import DomainError, ErrorCode, InvalidInput, Unauthorized
from voucherd.idempotency.service import IdempotencyClaim
from voucherd.pagination import CURSOR

# Public so the dialects that take the same token declare the same security scheme.
BEARER = HTTPBearer(auto_error=False, description="`voucherd keys create` prints the token")


IDEMPOTENCY_KEY_PATTERN = r"^[\x20-\x7e]+$"


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> Caller:
    if credentials is None:
        raise Unauthorized("send the API token as 'Authorization: Bearer <token>'")
    return authenticate_token(get_db(request), credentials.credentials)


def single_query_values(request: Request) -> None:
    """Refuse a query parameter given twice: FastAPI would silently keep the last one, so
    ``?state=ACTIVE&state=DISABLED`` would list only disabled vouchers. Every query parameter
    voucherd declares takes one value."""
    seen: set[str] = set()
    for name, _ in request.query_params.multi_items():
        if name in seen:
            raise InvalidInput("is given more than once", field=name)
        seen.add(name)


def known_query_parameters(request: Request) -> None:
    """Refuse a query parameter the operation does not take, as bodies refuse unknown fields: a
    typo (``?stat=ACTIVE``) would otherwise list every voucher."""
    declared = declared_query_parameters(request)
    if declared is None:
        return
    for name in request.query_params:
        if name not in declared:
            raise InvalidInput("is not a parameter of this endpoint", field=name)


def valid_cursor(request: Request) -> None:
    """A cursor is the id a list gave as ``next_cursor``; anything else would page from an
    arbitrary point (``?cursor=garbage`` sorted after every id and listed nothing, as if empty)."""
    cursor = request.query_params.get("cursor")
    if cursor is not None and not CURSOR.match(cursor):
        raise InvalidInput(
            "is not a cursor: give the next_cursor of the page before", field="cursor"
        )


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


ONE_VALUE_PER_QUERY_PARAMETER = [Depends(single_query_values)]
# The native API's requests: one value per query parameter, only the declared parameters, a
# cursor that a list gave, and JSON bodies said to be JSON.
QUERY_AS_DECLARED = [
    Depends(single_query_values),
    Depends(known_query_parameters),
    Depends(valid_cursor),
    Depends(json_content_type),
]


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


DB = Annotated[Database, Depends(get_db)]
CallerDep = Annotated[Caller, Depends(get_caller)]
Idem = Annotated[IdempotencyClaim | None, Depends(get_idempotency)]
