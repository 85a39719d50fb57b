"""FastAPI dependencies of the native API: the database, the caller, the idempotency claim."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from voucherd.auth.service import Caller, authenticate_token
from voucherd.db.engine import Database
from voucherd.errors import InvalidInput, Unauthorized
from voucherd.idempotency.service import IdempotencyClaim

_bearer = HTTPBearer(auto_error=False, description="`voucherd keys create` prints the token")


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    if credentials is None:
        raise Unauthorized("send the API token as 'Authorization: Bearer <token>'")
    return authenticate_token(get_db(request), credentials.credentials)


async def get_idempotency(
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key", description="Retries with the same key get the first answer"
        ),
    ] = None,
) -> IdempotencyClaim | None:
    if idempotency_key is None:
        return None
    if not 1 <= len(idempotency_key) <= 255 or not idempotency_key.isprintable():
        raise InvalidInput("1 to 255 printable characters", field="Idempotency-Key")
    body = await request.body()
    return IdempotencyClaim.of(idempotency_key, request.method, request.url.path, body)


DB = Annotated[Database, Depends(get_db)]
CallerDep = Annotated[Caller, Depends(get_caller)]
Idem = Annotated[IdempotencyClaim | None, Depends(get_idempotency)]
