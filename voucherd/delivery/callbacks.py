"""Delivery receipts from providers: Twilio's status callback and WhatsApp's status webhook.

Both are unauthenticated HTTP calls, so each is verified with the tenant's own secret before it
is read: Twilio signs the full callback URL plus the sorted POST parameters with HMAC-SHA1 keyed
by the auth token (``X-Twilio-Signature``, https://www.twilio.com/docs/usage/security); Meta signs
the raw body with HMAC-SHA256 keyed by the app secret (``X-Hub-Signature-256``). The tenant is
named in the callback URL, so the key is known before anything in the body is trusted.

A receipt moves a delivery that is SENDING or SENT to DELIVERED or FAILED, with one conditional
UPDATE: a repeated or late receipt finds the delivery already final and changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, insert, or_, select, update
from sqlalchemy.orm import Session

from voucherd.auth.models import Tenant
from voucherd.db.engine import Database
from voucherd.delivery.enqueue import delivery_settings
from voucherd.delivery.models import Delivery, DeliveryEvent
from voucherd.errors import Forbidden, InvalidInput, Unauthorized
from voucherd.observability import metrics

_DELIVERY = cast(Table, Delivery.__table__)
_INSERT_EVENT = insert(cast(Table, DeliveryEvent.__table__))
_REFUSED = "the callback's signature does not verify"

# https://www.twilio.com/docs/messaging/api/message-resource#message-status-values
TWILIO_FINAL = {
    "delivered": "DELIVERED",
    "read": "DELIVERED",
    "undelivered": "FAILED",
    "failed": "FAILED",
    "canceled": "FAILED",
}
# https://developers.facebook.com/docs/whatsapp/cloud-api/webhooks/payload-examples#message-status-updates
WHATSAPP_FINAL = {"delivered": "DELIVERED", "read": "DELIVERED", "failed": "FAILED"}


@dataclass(frozen=True)
class Receipt:
    """One provider report about one message."""

    to_state: str
    delivery_id: str | None  # when the provider echoes ours back
    provider_message_id: str | None
    detail: str


def twilio_signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    signed = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def meta_signature(app_secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def _provider(session: Session, tenant_id: str, channel: str) -> dict[str, Any]:
    stored = session.scalar(select(Tenant.settings).where(Tenant.id == tenant_id))
    provider = delivery_settings(stored).get(channel) if stored is not None else None
    if not provider:
        raise Forbidden(_REFUSED)
    return dict(provider)


def _verify(expected: str, presented: str) -> None:
    if not hmac.compare_digest(expected.encode(), presented.encode()):
        raise Forbidden(_REFUSED)


def twilio_status(
    db: Database,
    tenant_id: str,
    *,
    url: str,
    params: list[tuple[str, str]],
    signature: str | None,
    delivery_id: str | None,
) -> bool:
    """Apply a Twilio status callback; True when it changed a delivery."""
    if not signature:
        raise Unauthorized("X-Twilio-Signature is missing")
    with db.unit_of_work() as session:
        provider = _provider(session, tenant_id, "sms")
        _verify(twilio_signature(provider["auth_token"], url, params), signature)
        fields = dict(params)
        to_state = TWILIO_FINAL.get(fields.get("MessageStatus", "").lower())
        if to_state is None:
            return False  # queued, sent, ...: progress, not an outcome
        detail = f"Twilio: {fields.get('MessageStatus')}"
        if fields.get("ErrorCode"):
            detail += f" (error {fields['ErrorCode']})"
        receipt = Receipt(to_state, delivery_id, fields.get("MessageSid"), detail)
        changed = _apply(session, tenant_id, receipt, db, actor="twilio")
        session.commit()
    if changed:
        metrics.delivery_recorded("sms", to_state)
    return changed


def whatsapp_statuses(db: Database, tenant_id: str, body: bytes, signature: str | None) -> int:
    """Apply the statuses of one WhatsApp webhook call; how many deliveries changed."""
    if not signature:
        raise Unauthorized("X-Hub-Signature-256 is missing")
    with db.unit_of_work() as session:
        provider = _provider(session, tenant_id, "whatsapp")
        _verify(meta_signature(provider["app_secret"], body), signature)
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise InvalidInput("the body is not JSON", field="body") from exc
        applied = [
            receipt.to_state
            for receipt in _whatsapp_receipts(payload)
            if _apply(session, tenant_id, receipt, db, actor="whatsapp")
        ]
        session.commit()
    for state in applied:
        metrics.delivery_recorded("whatsapp", state)
    return len(applied)


def whatsapp_handshake(db: Database, tenant_id: str, mode: str | None, token: str | None) -> None:
    """Meta's webhook verification: the GET it sends when the webhook URL is saved."""
    if mode != "subscribe" or not token:
        raise Forbidden("not a subscription handshake")
    with db.unit_of_work(write=False) as session:
        provider = _provider(session, tenant_id, "whatsapp")
    _verify(provider["verify_token"], token)


def _whatsapp_receipts(payload: Any) -> Iterator[Receipt]:
    """Statuses in ``entry[].changes[].value.statuses[]``; anything else (messages) is skipped."""
    entries = payload.get("entry") if isinstance(payload, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        for change in changes if isinstance(changes, list) else []:
            value = change.get("value") if isinstance(change, dict) else None
            statuses = value.get("statuses") if isinstance(value, dict) else None
            for status in statuses if isinstance(statuses, list) else []:
                if not isinstance(status, dict):
                    continue
                to_state = WHATSAPP_FINAL.get(str(status.get("status", "")).lower())
                if to_state is None:
                    continue
                detail = f"WhatsApp: {status.get('status')}"
                errors = status.get("errors")
                if isinstance(errors, list) and errors and isinstance(errors[0], dict):
                    first = errors[0]
                    title = first.get("title") or first.get("message") or "error"
                    detail += f" ({title}, Meta error {first.get('code')})"
                opaque = status.get("biz_opaque_callback_data")
                yield Receipt(
                    to_state,
                    str(opaque) if opaque else None,
                    str(status["id"]) if status.get("id") else None,
                    detail,
                )


def _apply(session: Session, tenant_id: str, receipt: Receipt, db: Database, *, actor: str) -> bool:
    c = _DELIVERY.c
    if receipt.delivery_id:
        which = c.id == receipt.delivery_id
    elif receipt.provider_message_id:
        which = c.provider_message_id == receipt.provider_message_id
    else:
        return False
    found = session.execute(
        select(c.id, c.state, c.attempt, c.provider_message_id).where(
            c.tenant_id == tenant_id, which
        )
    ).first()
    if found is None or found.state not in ("SENDING", "SENT"):
        return False
    if (
        receipt.to_state == "FAILED"
        and receipt.provider_message_id
        and found.provider_message_id
        and found.provider_message_id != receipt.provider_message_id
    ):
        # A copy sent by a worker that died before recording it failed; the recorded one may
        # still arrive. (A copy that arrived is good news whichever attempt sent it.)
        return False
    now = db.now()
    values: dict[str, Any] = {
        "state": receipt.to_state,
        "due_at": None,
        "lease_owner": None,
        "updated_at": now,
    }
    if found.provider_message_id is None and receipt.provider_message_id:
        values["provider_message_id"] = receipt.provider_message_id
    if receipt.to_state == "FAILED":
        values["last_error"] = receipt.detail
    moved = session.execute(
        update(_DELIVERY)
        .where(c.id == found.id, or_(c.state == "SENDING", c.state == "SENT"))
        .values(**values)
        .returning(c.id)
    ).first()
    if moved is None:
        return False
    session.execute(
        _INSERT_EVENT,
        {
            "tenant_id": tenant_id,
            "delivery_id": found.id,
            "attempt": found.attempt,
            "from_state": found.state,
            "to_state": receipt.to_state,
            "actor": actor,
            "detail": receipt.detail,
            "created_at": now,
        },
    )
    return True
