"""Asking for a delivery inside another use case's transaction (issue, publication, resend).

Light on imports on purpose: the issue path imports it, so it must not import the services that
import the issue path. The voucher and the row that will deliver it are written together or not
at all; workers pick the row up later (outbox.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import babel
import phonenumbers
from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from voucherd.auth.models import Tenant
from voucherd.campaigns.models import Campaign
from voucherd.delivery.schemas import DeliveryRequest, RequestedDelivery
from voucherd.delivery.sql import INSERT_BUNDLE, insert_planned
from voucherd.errors import ErrorCode, InvalidInput
from voucherd.fields import email_address
from voucherd.ids import new_id


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
                code=ErrorCode.CHANNEL_NOT_CONFIGURED,
            )
        channel = phone_channel
    elif channel in ("email", "webhook") and channel not in configured:
        raise InvalidInput(
            f"this tenant has no {channel} provider configured (PATCH /api/v1/tenant)",
            field=f"{field}.channel",
            code=ErrorCode.CHANNEL_NOT_CONFIGURED,
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
        "message": request.message,
        "state": state,
        "origin": origin,
        "resend_of": resend_of,
        "attempt": 0,
        "failures": 0,
        "due_at": now if state == "PENDING" else None,
        "created_at": now,
        "updated_at": now,
    }


def automatic_delivery(
    campaign: Campaign, *, recipient: str | None, customer_ref: str | None
) -> DeliveryRequest | None:
    """The delivery a campaign set to deliver every voucher (``delivery_channel``) asks for.

    The recipient is the one given, or else the customer reference, which for such campaigns
    *is* the number or address (i-movo's ``customerReference``). A phone number without its
    country code is read in the country of the campaign's locale, as the issuer's own customers
    write it; InvalidInput names the field that held it.
    """
    channel = campaign.delivery_channel
    if channel is None:
        return None
    field = "recipient" if recipient is not None else "customer_ref"
    given = (recipient if recipient is not None else customer_ref or "").strip()
    if not given:
        raise InvalidInput(
            f"this campaign delivers every voucher by {channel}: give a recipient or a "
            "customer_ref holding the " + ("phone number" if channel == "phone" else "address"),
            field="customer_ref",
            code=ErrorCode.RECIPIENT_REQUIRED,
        )
    try:
        if channel == "phone":
            address = _national_or_international(given, _region(campaign.locale))
        else:
            address = email_address(given)
    except ValueError as exc:
        raise InvalidInput(
            f"this campaign delivers every voucher by {channel}: {exc}",
            field=field,
            code=ErrorCode.INVALID_RECIPIENT,
        ) from exc
    return DeliveryRequest(channel=channel, recipient=address)


def _region(locale: str | None) -> str | None:
    try:
        return babel.Locale.parse(locale or "en").territory
    except (ValueError, babel.UnknownLocaleError):
        return None


def _national_or_international(value: str, region: str | None) -> str:
    try:
        parsed = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        where = f" or national in {region}" if region else ""
        raise ValueError(f"not a phone number (international{where})") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError("not a valid phone number for its country")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


# A tenant's settings (parameter ``tenant_id``): built once, so a caller running it its own way
# (the express lane) runs the same statement; :func:`settings_of_rows` reads its rows.
TENANT_SETTINGS = select(Tenant.settings).where(Tenant.id == bindparam("tenant_id"))


def tenant_settings(session: Session | Connection, tenant_id: str) -> dict[str, Any]:
    return session.scalar(TENANT_SETTINGS, {"tenant_id": tenant_id}) or {}


def settings_of_rows(rows: Sequence[Any]) -> dict[str, Any]:
    return (rows[0][0] if rows else None) or {}


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


def request_bundle_delivery(
    session: Session,
    *,
    tenant_id: str,
    voucher_ids: Sequence[str],
    request: DeliveryRequest,
    now: datetime,
    actor: str | None = None,
    origin: str = "publication",
    field: str = "delivery",
    settings_of_tenant: Mapping[str, Any] | None = None,
) -> RequestedDelivery:
    """One message carrying all of ``voucher_ids`` (a distribution's share for one recipient),
    written in the caller's transaction. The delivery row names the first voucher; the
    message lists every one (delivery.messages ``vouchers``)."""
    if not voucher_ids:
        raise ValueError("a delivery needs at least one voucher")
    requested = request_delivery(
        session,
        tenant_id=tenant_id,
        voucher_id=voucher_ids[0],
        request=request,
        now=now,
        actor=actor,
        origin=origin,
        field=field,
        settings_of_tenant=settings_of_tenant,
    )
    if len(voucher_ids) > 1:
        session.execute(
            INSERT_BUNDLE,
            [
                {
                    "delivery_id": requested.id,
                    "position": position,
                    "voucher_id": voucher_id,
                    "tenant_id": tenant_id,
                }
                for position, voucher_id in enumerate(voucher_ids)
            ],
        )
    return requested
