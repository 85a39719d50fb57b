from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import Field

from voucherd.api.deps import DB, QUERY_AS_DECLARED, CallerDep
from voucherd.api.openapi import NATIVE_ERRORS
from voucherd.api.responses import json_response
from voucherd.auth import service
from voucherd.auth.service import TenantView
from voucherd.db.engine import Database
from voucherd.delivery.settings import DeliverySettingsPatch
from voucherd.fields import MinorUnits, RequestModel
from voucherd.guard.schemas import RateLimitsPatch
from voucherd.guard.service import TenantLimits

router = APIRouter(
    prefix="/api/v1/tenant",
    tags=["tenant"],
    responses=NATIVE_ERRORS,
    dependencies=QUERY_AS_DECLARED,
)


class TenantUpdate(RequestModel):
    """A partial update: only the fields present change."""

    weekly_value_limit: MinorUnits | None = Field(
        default=None,
        description="Most value issued in any rolling 7 days, minor units; null for none.",
    )
    delivery: DeliverySettingsPatch | None = Field(
        default=None,
        description=(
            "Which of SMS and WhatsApp reaches phones, and each provider's settings. Credentials "
            "are stored, never shown again in full."
        ),
    )
    rate_limits: RateLimitsPatch | None = Field(
        default=None,
        description=(
            "The tenant's own request limits per window and guessing thresholds; null in a "
            "field restores the operator's default."
        ),
    )


def _present(tenant: TenantView, scopes: frozenset[str], db: Database) -> dict[str, object]:
    return {
        "id": tenant.id,
        "object": "tenant",
        "name": tenant.name,
        "weekly_value_limit": tenant.weekly_value_limit,
        "created_at": tenant.created_at,
        "delivery": tenant.delivery,
        "rate_limits": TenantLimits.defaults(db.settings).merged(tenant.rate_limits).as_dict(),
        "key_scopes": sorted(scopes),
    }


@router.get("", summary="The calling key's tenant")
def get_tenant(db: DB, caller: CallerDep) -> Response:
    return json_response(_present(service.get_tenant(db, caller.tenant_id), caller.scopes, db))


@router.patch("", summary="Change the tenant's settings")
def update_tenant(body: TenantUpdate, db: DB, caller: CallerDep) -> Response:
    changes: dict[str, Any] = {}
    if "weekly_value_limit" in body.model_fields_set:
        changes["weekly_value_limit"] = body.weekly_value_limit
    if body.rate_limits is not None:
        changes["rate_limits"] = body.rate_limits.model_dump(exclude_unset=True)
    tenant = service.update_tenant(db, caller, delivery=body.delivery, **changes)
    return json_response(_present(tenant, caller.scopes, db))
