"""JSON encoded once, by orjson, from data the services built (no response-model re-validation)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Response

from voucherd.auth.caller import Caller
from voucherd.db.engine import Database
from voucherd.idempotency.service import IdempotencyClaim, Replay, remember_response

_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS


def dumps(payload: Any) -> bytes:
    return orjson.dumps(payload, option=_OPTIONS)


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        dumps(payload), status_code=status, media_type="application/json", headers=headers
    )


def respond_created(
    db: Database, caller: Caller, idem: IdempotencyClaim | None, payload: Any, status: int = 201
) -> Response:
    """Answer a POST that created or spent something, keeping the answer for key replays."""
    body = dumps(payload)
    if idem is not None:
        remember_response(db, caller.tenant_id, idem, status, body)
    return Response(body, status_code=status, media_type="application/json")


def replayed(exc: Replay) -> Response | None:
    """The answer kept for a key's first request, marked as a replay; None if none was kept."""
    if exc.body is None or exc.status is None:
        return None
    return Response(
        exc.body,
        status_code=exc.status,
        media_type="application/json",
        headers={"Idempotent-Replayed": "true"},
    )


def list_payload(items: list[Any], next_cursor: str | None) -> dict[str, Any]:
    return {
        "object": "list",
        "data": items,
        "next_cursor": next_cursor,
        "has_more": next_cursor is not None,
    }
