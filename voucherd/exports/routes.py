from __future__ import annotations

from fastapi import APIRouter, Response

from voucherd.api.deps import DB, QUERY_AS_DECLARED, CallerDep, Idem
from voucherd.api.openapi import NATIVE_ERRORS
from voucherd.api.responses import respond_created
from voucherd.exports import service
from voucherd.exports.schemas import ExportRequest
from voucherd.operations.schemas import present_operation

router = APIRouter(
    prefix="/api/v1/campaigns",
    tags=["exports"],
    responses=NATIVE_ERRORS,
    dependencies=QUERY_AS_DECLARED,
)


@router.post(
    "/{campaign}/exports",
    status_code=202,
    summary="Export a campaign's vouchers as CSV",
    description="Starts an export operation and answers it at once (202). Follow the "
    "operation at `/api/v1/operations/{id}`; once `Completed`, download the CSV from its "
    "`result_url`. Exporting unpublished codes (`published: false`) is an export for "
    "distribution: the codes are recorded as published with channel `Export`.",
)
def start_export(
    campaign: str, db: DB, caller: CallerDep, idem: Idem, body: ExportRequest | None = None
) -> Response:
    operation = service.start_export(db, caller, campaign, body or ExportRequest(), idem=idem)
    response = respond_created(db, caller, idem, present_operation(operation), status=202)
    response.headers["Location"] = f"/api/v1/operations/{operation.id}"
    return response
