"""Asking for a delivery inside another use case's transaction (issue, publication, resend).

Light on imports on purpose: the issue path imports it, so it must not import the services that
import the issue path. The voucher and the row that will deliver it are written together or not
at all; workers pick the row up later (outbox.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from voucherd.auth.models import Tenant
from voucherd.delivery.models import Delivery, DeliveryEvent
from voucherd.delivery.schemas import DeliveryRequest, RequestedDelivery
from voucherd.errors import InvalidInput
from voucherd.ids import new_id

_DELIVERY = cast(Table, Delivery.__table__)
_EVENT = cast(Table, DeliveryEvent.__table__)
_INSERT_DELIVERY = insert(_DELIVERY)
_INSERT_EVENT = insert(_EVENT)

# The delivery and its first event as two more CTEs of a statement whose CTE ``v`` inserted the
# voucher (``RETURNING id``): PostgreSQL's issue path stays one round trip. Parameters:
# :tenant_id, :created_at, :actor and the ``d_*`` ones from :func:`cte_parameters`.
DELIVERY_CTE = (
    "dlv AS (INSERT INTO delivery (id, tenant_id, voucher_id, channel, recipient, "
    "recipient_name, state, origin, attempt, failures, due_at, created_at, updated_at) "
    "SELECT :d_id, :tenant_id, id, :d_channel, :d_recipient, :d_recipient_name, :d_state, "
    ":d_origin, 0, 0, :d_due_at, :created_at, :created_at FROM v RETURNING id), "
    "dlv_event AS (INSERT INTO delivery_event "
    "(tenant_id, delivery_id, attempt, from_state, to_state, actor, created_at) "
    "SELECT :tenant_id, id, 0, NULL, :d_state, :actor, :created_at FROM dlv)"
)


def delivery_settings(tenant_settings: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict((tenant_settings or {}).get("delivery") or {})


def plan_delivery(
    request: DeliveryRequest,
    tenant_settings: Mapping[str, Any] | None,
    *,
    tenant_id: str,
    voucher_id: str,
    now: datetime,
    origin: str = "request",
    resend_of: str | None = None,
    field: str = "delivery",
) -> dict[str, Any]:
    """The delivery row for ``request``, or InvalidInput (naming ``field``) when the tenant has
    no provider for the channel: a clear 422 now rather than a failed delivery later."""
    configured = delivery_settings(tenant_settings)
    channel: str = request.channel
    if channel == "phone":
        phone_channel = configured.get("phone_channel")
        if phone_channel not in ("sms", "whatsapp") or phone_channel not in configured:
            raise InvalidInput(
                "this tenant has no SMS or WhatsApp provider configured (PATCH /api/v1/tenant)",
                field=f"{field}.channel",
                code="channel_not_configured",
            )
        channel = phone_channel
    elif channel in ("email", "webhook") and channel not in configured:
        raise InvalidInput(
            f"this tenant has no {channel} provider configured (PATCH /api/v1/tenant)",
            field=f"{field}.channel",
            code="channel_not_configured",
        )
    # Nothing to send for "none": the row records that the issuer shows the code itself.
    state = "SENT" if channel == "none" else "PENDING"
    return {
        "id": new_id("dlv"),
        "tenant_id": tenant_id,
        "voucher_id": voucher_id,
        "channel": channel,
        "recipient": request.recipient,
        "recipient_name": request.name,
        "state": state,
        "origin": origin,
        "resend_of": resend_of,
        "attempt": 0,
        "failures": 0,
        "due_at": now if state == "PENDING" else None,
        "created_at": now,
        "updated_at": now,
    }


def cte_parameters(row: Mapping[str, Any]) -> dict[str, Any]:
    """The ``d_*`` parameters of :data:`DELIVERY_CTE` for a planned row."""
    names = ("id", "channel", "recipient", "recipient_name", "state", "origin", "due_at")
    return {f"d_{name}": row[name] for name in names}


def insert_planned(session: Session, row: Mapping[str, Any], *, actor: str | None) -> None:
    session.execute(_INSERT_DELIVERY, dict(row))
    session.execute(
        _INSERT_EVENT,
        {
            "tenant_id": row["tenant_id"],
            "delivery_id": row["id"],
            "attempt": 0,
            "from_state": None,
            "to_state": row["state"],
            "actor": actor,
            "detail": None,
            "created_at": row["created_at"],
        },
    )


def tenant_settings(session: Session, tenant_id: str) -> dict[str, Any]:
    return session.scalar(select(Tenant.settings).where(Tenant.id == tenant_id)) or {}


def request_delivery(
    session: Session,
    *,
    tenant_id: str,
    voucher_id: str,
    request: DeliveryRequest,
    now: datetime,
    actor: str | None = None,
    origin: str = "request",
    field: str = "delivery",
    settings_of_tenant: Mapping[str, Any] | None = None,
) -> RequestedDelivery:
    """Write a delivery of ``voucher_id`` inside the caller's transaction (flush only).

    For use cases that ask for delivery as part of their own work (issue, publication).
    ``settings_of_tenant`` (``tenant.settings``) saves a read when the caller has them.
    """
    configured = settings_of_tenant
    if configured is None:
        configured = tenant_settings(session, tenant_id)
    row = plan_delivery(
        request,
        configured,
        tenant_id=tenant_id,
        voucher_id=voucher_id,
        now=now,
        origin=origin,
        field=field,
    )
    insert_planned(session, row, actor=actor)
    return RequestedDelivery(row["id"], row["channel"], row["state"])
