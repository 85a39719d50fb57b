"""Tenants and their settings: each public function is one use case and one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from voucherd.auth.caller import Caller
from voucherd.auth.models import Tenant
from voucherd.db.engine import Database
from voucherd.delivery.settings import (
    SECRET_FIELDS,
    DeliverySettingsPatch,
    kept_secrets,
    masked,
    merged,
)
from voucherd.errors import Conflict, InvalidInput, NotFound
from voucherd.guard import service as guard
from voucherd.guard.limits import TENANT_SETTING, patched_limits
from voucherd.ids import new_id
from voucherd.vouchers.limits import switch_weekly_value_limit


@dataclass(frozen=True)
class TenantView:
    id: str
    name: str
    weekly_value_limit: int | None
    created_at: datetime
    # Delivery settings with every credential masked (delivery/settings.py): safe to show.
    delivery: dict[str, Any] = field(default_factory=dict)
    # The tenant's own rate limits (voucherd/guard); absent ones are the operator's defaults.
    rate_limits: dict[str, int] = field(default_factory=dict)


def _tenant_view(tenant: Tenant) -> TenantView:
    delivery = masked((tenant.settings or {}).get("delivery"))
    limits = (tenant.settings or {}).get(TENANT_SETTING) or {}
    return TenantView(
        tenant.id, tenant.name, tenant.weekly_value_limit, tenant.created_at, delivery, limits
    )


def _tenant_by_name(session: Session, name: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        raise NotFound(f"no tenant named {name!r}", field="tenant")
    return tenant


def _locked(session: Session, tenant_id: str) -> Tenant:
    tenant = session.get(Tenant, tenant_id, with_for_update=True)
    if tenant is None:
        raise NotFound("tenant not found")
    return tenant


def create_tenant(db: Database, name: str, *, weekly_value_limit: int | None = None) -> TenantView:
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidInput("a tenant name is 1 to 100 characters", field="name")
    if weekly_value_limit is not None and weekly_value_limit < 0:
        raise InvalidInput("must not be negative", field="weekly_value_limit")
    with db.unit_of_work() as session:
        tenant = Tenant(
            id=new_id("ten"),
            name=name,
            weekly_value_limit=weekly_value_limit,
            settings={},
            created_at=db.now(),
        )
        session.add(tenant)
        try:
            session.flush()
        except IntegrityError as exc:
            raise Conflict(f"a tenant named {name!r} exists", field="name") from exc
        session.commit()
        return _tenant_view(tenant)


def get_tenant(db: Database, tenant_id: str) -> TenantView:
    with db.unit_of_work(write=False) as session:
        tenant = session.get(Tenant, tenant_id)
        if tenant is None:
            raise NotFound("tenant not found")
        return _tenant_view(tenant)


def list_tenants(db: Database) -> list[TenantView]:
    with db.unit_of_work(write=False) as session:
        return [_tenant_view(t) for t in session.scalars(select(Tenant).order_by(Tenant.name))]


def tenant_id_by_name(db: Database, name: str) -> str:
    with db.unit_of_work(write=False) as session:
        return _tenant_by_name(session, name).id


def set_weekly_value_limit(db: Database, tenant_id: str, limit: int | None) -> TenantView:
    """Set or clear the rolling weekly value limit. Switching it on counts the value issued in
    the last 7 days, so a limit set today already knows about yesterday."""
    if limit is not None and limit < 0:
        raise InvalidInput("must not be negative", field="weekly_value_limit")
    with db.unit_of_work() as session:
        tenant = _locked(session, tenant_id)
        switch_weekly_value_limit(session, tenant, limit, db.now())
        session.commit()
        return _tenant_view(tenant)


def change_weekly_value_limit(db: Database, caller: Caller, limit: int | None) -> TenantView:
    caller.require("manage")
    return set_weekly_value_limit(db, caller.tenant_id, limit)


_UNCHANGED: Any = object()


def update_tenant(
    db: Database,
    caller: Caller,
    *,
    weekly_value_limit: int | None = _UNCHANGED,
    delivery: DeliverySettingsPatch | None = None,
    rate_limits: dict[str, int | None] | None = None,
) -> TenantView:
    """Change what the PATCH named, in one transaction: the weekly limit, delivery settings,
    rate limits; each through the step of the feature that owns it."""
    caller.require("manage")
    if weekly_value_limit is _UNCHANGED and delivery is None and rate_limits is None:
        raise InvalidInput(
            "nothing to change: give weekly_value_limit, delivery or rate_limits",
            field="weekly_value_limit",
        )
    if isinstance(weekly_value_limit, int) and weekly_value_limit < 0:
        raise InvalidInput("must not be negative", field="weekly_value_limit")
    with db.unit_of_work() as session:
        tenant = _locked(session, caller.tenant_id)
        if weekly_value_limit is not _UNCHANGED:
            switch_weekly_value_limit(session, tenant, weekly_value_limit, db.now())
        if delivery is not None:
            _apply_delivery(tenant, delivery)
        if rate_limits is not None:
            current = dict(tenant.settings or {})
            limits = patched_limits(current.get(TENANT_SETTING), rate_limits, db.settings)
            tenant.settings = {**current, TENANT_SETTING: limits}
        session.commit()
    guard.tenant_changed(caller.tenant_id)
    return _tenant_view(tenant)


def save_delivery_provider(
    db: Database, caller: Caller, name: str, block: dict[str, Any]
) -> TenantView:
    """Replace one provider block from a form that never shows secrets back: a secret left
    empty keeps the stored one (delivery/settings.py ``kept_secrets``); the block is then
    checked as a PATCH's would be (pydantic's ValidationError names the field)."""
    caller.require("manage")
    if name not in SECRET_FIELDS:
        raise InvalidInput(f"one of {', '.join(SECRET_FIELDS)}", field="provider")
    with db.unit_of_work() as session:
        tenant = _locked(session, caller.tenant_id)
        stored = dict(tenant.settings or {}).get("delivery")
        patch = DeliverySettingsPatch.model_validate({name: kept_secrets(stored, name, block)})
        _apply_delivery(tenant, patch)
        session.commit()
    return _tenant_view(tenant)


def configure_delivery(db: Database, tenant_id: str, patch: DeliverySettingsPatch) -> TenantView:
    """The operator's way (``voucherd deliveries configure``) to the same settings."""
    with db.unit_of_work() as session:
        tenant = _locked(session, tenant_id)
        _apply_delivery(tenant, patch)
        session.commit()
        return _tenant_view(tenant)


def _apply_delivery(tenant: Tenant, patch: DeliverySettingsPatch) -> None:
    current = dict(tenant.settings or {})
    # A new dict, so the JSON column is seen as changed.
    tenant.settings = {**current, "delivery": merged(current.get("delivery"), patch)}
