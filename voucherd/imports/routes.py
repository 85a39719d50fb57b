from __future__ import annotations

import io
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from voucherd.api.deps import DB, QUERY_AS_DECLARED, CallerDep, Idem
from voucherd.api.openapi import NATIVE_ERRORS
from voucherd.api.responses import respond_created
from voucherd.imports import service
from voucherd.imports.reader import FileFormat, detect_format
from voucherd.operations.schemas import present_operation

router = APIRouter(
    prefix="/api/v1/campaigns",
    tags=["imports"],
    responses=NATIVE_ERRORS,
    dependencies=QUERY_AS_DECLARED,
)


@router.post(
    "/{campaign}/imports",
    status_code=202,
    summary="Import existing vouchers from CSV or JSON lines",
    description="The body is the file itself (`text/csv`, or `application/x-ndjson` for JSON "
    "lines; without either, a body starting with `{` is JSON lines). Starts an import "
    "operation and answers it at once (202). Follow it at `/api/v1/operations/{id}`: its "
    "result counts the vouchers imported, already present and refused, and names each refused "
    "row by line and column; the full list of refusals is its CSV download. Bodies are limited "
    "to the server's request size (`VOUCHERD_MAX_BODY_BYTES`); `voucherd import` takes files "
    "of any size.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        }
    },
)
async def start_import(
    campaign: str,
    request: Request,
    db: DB,
    caller: CallerDep,
    idem: Idem,
    all_or_nothing: Annotated[
        bool, Query(description="Import nothing unless every row can be imported")
    ] = False,
    format: Annotated[FileFormat | None, Query(description="csv or jsonl")] = None,
) -> Response:
    body = await request.body()
    file_format = format or detect_format(body[:64], hint=request.headers.get("content-type"))
    operation = await run_in_threadpool(
        service.start_import,
        db,
        caller,
        campaign,
        io.BytesIO(body),
        file_format=file_format,
        all_or_nothing=all_or_nothing,
        idem=idem,
    )
    response = respond_created(db, caller, idem, present_operation(operation), status=202)
    response.headers["Location"] = f"/api/v1/operations/{operation.id}"
    return response
