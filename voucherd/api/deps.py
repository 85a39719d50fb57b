"""FastAPI dependencies of the native API: the database, the caller, the idempotency claim."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from voucherd.api.methods import declared_query_parameters
from voucherd.auth.caller import Caller
from voucherd.auth.service import authenticate_token
from voucherd.db.engine import Database
from voucherd.errors import InvalidInput, Unauthorized
from voucherd.idempotency.service import IdempotencyClaim

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


ONE_VALUE_PER_QUERY_PARAMETER = [Depends(single_query_values)]
# The native API's query strings: one value per parameter, and only the declared parameters.
QUERY_AS_DECLARED = [Depends(single_query_values), Depends(known_query_parameters)]


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
