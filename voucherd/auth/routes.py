from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from voucherd.api.deps import DB, CallerDep
from voucherd.api.responses import json_response
from voucherd.auth import service
from voucherd.auth.service import TenantView
from voucherd.fields import MinorUnits

router = APIRouter(prefix="/api/v1/tenant", tags=["tenant"])


class TenantUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weekly_value_limit: MinorUnits | None = Field(
        description="Most value issued in any rolling 7 days, minor units; null for none."
    )


def _present(tenant: TenantView, scopes: frozenset[str]) -> dict[str, object]:
    return {
        "id": tenant.id,
        "object": "tenant",
        "name": tenant.name,
        "weekly_value_limit": tenant.weekly_value_limit,
        "created_at": tenant.created_at,
        "key_scopes": sorted(scopes),
    }


@router.get("", summary="The calling key's tenant")
def get_tenant(db: DB, caller: CallerDep) -> Response:
    return json_response(_present(service.get_tenant(db, caller.tenant_id), caller.scopes))


@router.patch("", summary="Change the tenant's settings")
def update_tenant(body: TenantUpdate, db: DB, caller: CallerDep) -> Response:
    tenant = service.change_weekly_value_limit(db, caller, body.weekly_value_limit)
    return json_response(_present(tenant, caller.scopes))
