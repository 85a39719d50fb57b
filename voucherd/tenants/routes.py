from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from voucherd.api.deps import DB, QUERY_AS_DECLARED, CallerDep
from voucherd.api.openapi import NATIVE_ERRORS
from voucherd.api.responses import json_response
from voucherd.tenants import service
from voucherd.tenants.schemas import TenantUpdate, present_tenant

router = APIRouter(
    prefix="/api/v1/tenant",
    tags=["tenant"],
    responses=NATIVE_ERRORS,
    dependencies=QUERY_AS_DECLARED,
)


@router.get("", summary="The calling key's tenant")
def get_tenant(db: DB, caller: CallerDep) -> Response:
    tenant = service.get_tenant(db, caller.tenant_id)
    return json_response(present_tenant(tenant, caller.scopes, db.settings))


@router.patch("", summary="Change the tenant's settings")
def update_tenant(body: TenantUpdate, db: DB, caller: CallerDep) -> Response:
    changes: dict[str, Any] = {}
    if "weekly_value_limit" in body.model_fields_set:
        changes["weekly_value_limit"] = body.weekly_value_limit
    if body.rate_limits is not None:
        changes["rate_limits"] = body.rate_limits.model_dump(exclude_unset=True)
    tenant = service.update_tenant(db, caller, delivery=body.delivery, **changes)
    return json_response(present_tenant(tenant, caller.scopes, db.settings))
