"""What every face does the same way, written once: credentials, bodies, the idempotency header.

A face differs from another in its paths, its field names and its error shapes; how it learns
who is calling, how it reads a JSON body and how it honours ``Idempotency-Key`` are the same
rules for all of them, so they live here and a face only chooses its header scheme and words
the refusals these raise (typed domain errors, with an :class:`~voucherd.errors.ErrorCode`).

Authentication may read the database (a cold key cache), so :func:`authenticate` runs it in
the threadpool: a handler that is ``async def`` (to read its own body) never blocks the event
loop on a database read. A face whose handlers are plain ``def`` (Voucherify) gets the same from
FastAPI, which runs sync dependencies in the threadpool; it calls :func:`identify` directly.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from fastapi import Request

from voucherd.api.deps import IDEMPOTENCY_KEY_PATTERN
from voucherd.api.offload import off_loop
from voucherd.auth.caller import Caller
from voucherd.auth.service import authenticate as authenticate_pair
from voucherd.db.engine import Database
from voucherd.errors import DomainError, ErrorCode, InvalidInput, Unauthorized
from voucherd.idempotency.service import IdempotencyClaim

# Blocking work (a use case, a lookup) from an ``async def`` handler goes through ``off_loop``
# (imported above): the native API's one cheap thread trip (api/offload.py), never the loop.

# --- credentials --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BearerToken:
    """``Authorization: Bearer <token>``: the token ``voucherd keys create`` prints."""

    def read(self, request: Request) -> tuple[str, str] | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return _split(token)


@dataclass(frozen=True)
class TokenHeader:
    """The same token in a header of the face's own (i-movo's ``X-API-KEY``)."""

    header: str

    def read(self, request: Request) -> tuple[str, str] | None:
        token = request.headers.get(self.header)
        if not token or not token.strip():
            return None
        return _split(token)


@dataclass(frozen=True)
class KeyPair:
    """A key id and its secret in two headers (Yoyo's ``apiId`` + ``apiPassword``, Voucherify's
    ``X-App-Id`` + ``X-App-Token``). With ``either``, one header of the two is enough to choose
    this scheme (and is refused as wrong credentials rather than as missing ones)."""

    id_header: str
    secret_header: str
    either: bool = False

    def read(self, request: Request) -> tuple[str, str] | None:
        key_id = request.headers.get(self.id_header) or ""
        secret = request.headers.get(self.secret_header) or ""
        if (key_id or secret) if self.either else (key_id and secret):
            return key_id.strip(), secret.strip()
        return None


Scheme = BearerToken | TokenHeader | KeyPair


def _split(token: str) -> tuple[str, str]:
    key_id, _, secret = token.strip().partition(".")
    return key_id, secret


def identify(db: Database, request: Request, *schemes: Scheme, missing: str) -> Caller:
    """The caller behind the first scheme whose headers were sent; ``Unauthorized(missing)``
    when none was. Blocking (a cold key cache reads the database): call it off the loop."""
    for scheme in schemes:
        credentials = scheme.read(request)
        if credentials is not None:
            return authenticate_pair(db, *credentials)
    raise Unauthorized(missing)


async def authenticate(request: Request, *schemes: Scheme, missing: str) -> Caller:
    """:func:`identify`, in the threadpool: for the ``async def`` handlers of every face."""
    db: Database = request.app.state.db
    return await off_loop(identify, db, request, *schemes, missing=missing)


# --- bodies -------------------------------------------------------------------------------------

NOT_JSON = "the request body is not valid JSON"
NOT_AN_OBJECT = "the request body must be a JSON object"


class MalformedBody(DomainError):
    """A body that is not JSON (or not the JSON object the endpoint reads)."""

    status, code, title = 400, ErrorCode.MALFORMED_JSON, "Malformed JSON"

    def __init__(self, detail: str, *, not_an_object: bool = False) -> None:
        super().__init__(detail, field="body")
        self.not_an_object = not_an_object


def parse_json(raw: bytes, *, decimals: bool = False) -> Any:
    """``decimals``: numbers with a fraction become Decimals, so ``12.34`` stays exactly that
    on its way to 1234 cents (a face that sends major units)."""
    try:
        if decimals:
            return json.loads(raw, parse_float=Decimal)
        return orjson.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:  # orjson.JSONDecodeError is a ValueError
        raise MalformedBody(NOT_JSON) from exc


def as_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise MalformedBody(NOT_AN_OBJECT, not_an_object=True)
    return body


async def json_body(request: Request, *, decimals: bool = False) -> tuple[Any, bytes]:
    """The parsed body and its bytes (which an idempotency claim hashes)."""
    raw = await request.body()
    return parse_json(raw, decimals=decimals), raw


async def json_object(request: Request, *, decimals: bool = False) -> tuple[dict[str, Any], bytes]:
    body, raw = await json_body(request, decimals=decimals)
    return as_object(body), raw


# --- Idempotency-Key ----------------------------------------------------------------------------

IDEMPOTENCY_KEY = "Idempotency-Key"
_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)


def idempotency_claim(request: Request, raw: bytes) -> IdempotencyClaim | None:
    """The claim of a request that sent ``Idempotency-Key`` (the rule the native API declares:
    1 to 255 printable ASCII characters), for a face that reads its own body."""
    key = request.headers.get(IDEMPOTENCY_KEY)
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not _KEY.match(key):
        raise InvalidInput("1 to 255 printable characters", field=IDEMPOTENCY_KEY)
    return IdempotencyClaim.of(key, request.method, request.url.path, raw)
