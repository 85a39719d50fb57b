"""``/api/v1/tenant``: the PATCH body (each feature's own patch, composed) and the answer."""

from __future__ import annotations

from pydantic import Field

from voucherd.config import Settings
from voucherd.delivery.settings import DeliverySettingsPatch
from voucherd.fields import MinorUnits, RequestModel
from voucherd.guard.limits import TenantLimits
from voucherd.guard.schemas import RateLimitsPatch
from voucherd.tenants.service import TenantView


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


def present_tenant(
    tenant: TenantView, scopes: frozenset[str], settings: Settings
) -> dict[str, object]:
    return {
        "id": tenant.id,
        "object": "tenant",
        "name": tenant.name,
        "weekly_value_limit": tenant.weekly_value_limit,
        "created_at": tenant.created_at,
        "delivery": tenant.delivery,
        "rate_limits": TenantLimits.defaults(settings).merged(tenant.rate_limits).as_dict(),
        "key_scopes": sorted(scopes),
    }
