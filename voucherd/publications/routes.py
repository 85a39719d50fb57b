from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from voucherd.api.deps import DB, QUERY_AS_DECLARED, CallerDep, Idem
from voucherd.api.offload import off_loop
from voucherd.api.openapi import NATIVE_ERRORS
from voucherd.api.responses import json_response, list_payload, respond_created
from voucherd.auth.caller import Caller
from voucherd.db.engine import Database
from voucherd.fields import Timestamp
from voucherd.idempotency.service import IdempotencyClaim, Renderer
from voucherd.pagination import DEFAULT_LIMIT, MAX_LIMIT
from voucherd.publications import service
from voucherd.publications.publish import publish as publish_use_case
from voucherd.publications.publish import publish_on_loop
from voucherd.publications.schemas import (
    PublicationFilters,
    PublicationRecord,
    PublishRequest,
    present_publication,
)

router = APIRouter(
    prefix="/api/v1/publications",
    tags=["publications"],
    responses=NATIVE_ERRORS,
    dependencies=QUERY_AS_DECLARED,
)


def _shown(db: Database, record: PublicationRecord) -> dict[str, Any]:
    return present_publication(record, now=db.now(), base_url=db.settings.public_base_url)


@router.post(
    "",
    status_code=201,
    summary="Publish a given voucher, or codes from a campaign's pool, to a customer",
    description="201 with the new publication; 200 with the earlier one when its source_id "
    "was used before with the same body.",
)
async def publish(body: PublishRequest, db: DB, caller: CallerDep, idem: Idem) -> Response:
    # Hot (a pool claim per customer): on the event loop when the express lane can take it
    # (db/express.py), else one cheap thread trip for the blocking body.
    if idem is None:
        published = await publish_on_loop(db, caller, body)
        if published is not None:
            return respond_created(db, caller, None, _shown(db, published.record))
    return await off_loop(_publish, db, caller, body, idem)


def _publish(
    db: Database, caller: Caller, body: PublishRequest, idem: IdempotencyClaim | None
) -> Response:
    published = publish_use_case(db, caller, body, idem=idem)
    status = 201 if published.created else 200
    return respond_created(db, caller, idem, _shown(db, published.record), status)


@router.get("", summary="List publications, newest first")
def list_publications(
    db: DB,
    caller: CallerDep,
    campaign: Annotated[str | None, Query(max_length=200, description="Id or name")] = None,
    voucher: Annotated[str | None, Query(max_length=100, description="Id or code")] = None,
    customer: Annotated[str | None, Query(max_length=200, description="Id or source_id")] = None,
    channel: Annotated[str | None, Query(max_length=100)] = None,
    created_after: Timestamp | None = None,
    created_before: Timestamp | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    filters = PublicationFilters(
        campaign, voucher, customer, channel, created_after, created_before
    )
    page = service.list_publications(db, caller, filters, limit=limit, cursor=cursor)
    return json_response(list_payload([_shown(db, r) for r in page.items], page.next_cursor))


@router.get("/{publication}", summary="Get a publication")
def get_publication(publication: str, db: DB, caller: CallerDep) -> Response:
    return json_response(_shown(db, service.get_publication(db, caller, publication)))


def _replay(db: Database, tenant: str, publication_id: str, _: str) -> tuple[int, dict[str, Any]]:
    record = service.get_publication(db, Caller(tenant, "replay"), publication_id)
    return 201, _shown(db, record)


REPLAY_RENDERERS: dict[str, Renderer] = {"publication": _replay}
