from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import Field, StringConstraints

from voucherd.api.deps import DB, QUERY_AS_DECLARED, CallerDep
from voucherd.api.openapi import NATIVE_ERRORS
from voucherd.api.responses import json_response, list_payload
from voucherd.auth.caller import Caller
from voucherd.db.engine import Database
from voucherd.fields import RequestModel
from voucherd.idempotency.service import Renderer
from voucherd.operations import service
from voucherd.operations.schemas import OperationStatusName, present_operation
from voucherd.pagination import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter(
    prefix="/api/v1/operations",
    tags=["operations"],
    responses=NATIVE_ERRORS,
    dependencies=QUERY_AS_DECLARED,
)


@router.get("", summary="List long-running operations, newest first")
def list_operations(
    db: DB,
    caller: CallerDep,
    kind: Annotated[str | None, Query(max_length=32)] = None,
    status: OperationStatusName | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    page = service.list_operations(db, caller, kind=kind, status=status, limit=limit, cursor=cursor)
    return json_response(list_payload([present_operation(o) for o in page.items], page.next_cursor))


class ResolveTokens(RequestModel):
    tokens: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=service.MAX_RESOLVE
    )


@router.post(
    "/resolve",
    summary="Many operations' status at once, by token (or id)",
    description="Answers one entry per token asked, in order: `operation` is null for a "
    "token that names no operation of yours.",
)
def resolve_operations(body: ResolveTokens, db: DB, caller: CallerDep) -> Response:
    found = service.resolve_tokens(db, caller, body.tokens)
    data = [
        {"token": token, "operation": present_operation(o) if o is not None else None}
        for token, o in zip(body.tokens, found, strict=True)
    ]
    return json_response({"object": "list", "data": data})


@router.get(
    "/{operation}",
    summary="An operation's status and progress, by id or token",
    description="`status` is `Processing`, `Completed` or `Failed`; `progress` counts what is "
    "done of the total (the total is known once the operation has started).",
)
def get_operation(operation: str, db: DB, caller: CallerDep) -> Response:
    return json_response(present_operation(service.get_operation(db, caller, operation)))


@router.get(
    "/{operation}/result",
    summary="Download a completed operation's result",
    description="Streams the stored result (an export's CSV). 409 while the operation is "
    "still Processing or when it Failed.",
    response_class=StreamingResponse,
)
def download_result(operation: str, db: DB, caller: CallerDep) -> Response:
    download = service.open_result(db, caller, operation)
    return StreamingResponse(
        download.chunks,
        media_type=download.media_type,
        headers={
            "Content-Length": str(download.size),
            "Content-Disposition": f'attachment; filename="{download.filename}"',
        },
    )


def _replay(db: Database, tenant_id: str, operation_id: str, _: str) -> tuple[int, dict[str, Any]]:
    """The answer to a replayed request that started an operation (see idempotency)."""
    operation = service.get_operation(db, Caller(tenant_id, "replay"), operation_id)
    return 202, present_operation(operation)


REPLAY_RENDERERS: dict[str, Renderer] = {"operation": _replay}
