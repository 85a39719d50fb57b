"""A test message through one of the tenant's providers: does this configuration reach anyone?

Sent at once, not through the outbox: the operator who just typed the credentials waits for the
provider's answer (accepted, or its reason), which a queued delivery would only show later. No
voucher is involved, so no code goes out and no delivery row is written; the attempt and its
outcome are recorded as a tenant-level voucher event (``voucher_id`` empty, as a bulk mint's
are), under the caller's actor, in the same log every API action writes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import insert

from voucherd.auth.caller import Caller
from voucherd.db.engine import Database
from voucherd.delivery.channels.base import Message, Outcome
from voucherd.delivery.channels.registry import channel_for
from voucherd.delivery.enqueue import delivery_settings, tenant_settings
from voucherd.delivery.messages import Composed, WhatsAppTemplateMessage
from voucherd.delivery.schemas import mask_recipient
from voucherd.errors import InvalidInput
from voucherd.fields import email_address, phone_number
from voucherd.ids import new_id
from voucherd.vouchers.models import VoucherEvent

log = logging.getLogger("voucherd.delivery")

ProviderName = Literal["sms", "whatsapp", "email", "webhook"]
PROVIDERS: tuple[ProviderName, ...] = ("sms", "whatsapp", "email", "webhook")
EVENT_KIND = "delivery_test"
TEXT = "A test message from voucherd: this provider is set up and reaches you."
# Meta lets a business send only approved templates; hello_world is the one every WhatsApp
# Business account starts with, meant for exactly this check.
WHATSAPP_TEST = WhatsAppTemplateMessage("hello_world", "en_US", ())


@dataclass(frozen=True)
class ProbeResult:
    channel: str
    recipient: str | None  # masked
    ok: bool
    provider_message_id: str | None
    error: str | None


def _recipient(channel: str, recipient: str | None) -> str | None:
    value = (recipient or "").strip()
    if channel == "webhook":
        return None
    if not value:
        raise InvalidInput(f"a {channel} test message needs a recipient", field="recipient")
    try:
        return email_address(value) if channel == "email" else phone_number(value)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="recipient") from exc


def _message(tenant_id: str, channel: str, recipient: str | None, message_id: str) -> Message:
    content = Composed(text=TEXT, subject="voucherd test message", html=None)
    if channel == "whatsapp":
        content = Composed(whatsapp=WHATSAPP_TEST)
    body = None
    if channel == "webhook":
        body = json.dumps({"type": "voucherd.test", "data": {"text": TEXT}}).encode("utf-8")
    return Message(
        delivery_id=message_id,
        tenant_id=tenant_id,
        channel=channel,
        recipient=recipient,
        content=content,
        webhook_body=body,
    )


def send_test_message(
    db: Database, caller: Caller, channel: str, recipient: str | None
) -> ProbeResult:
    """Send one fixed text through the tenant's ``channel`` provider, and record the outcome.

    InvalidInput when the channel is not one of the providers, is not configured, or the
    recipient does not fit it. A provider's refusal is not an error: it is the answer asked for.
    """
    caller.require("manage")
    if channel not in PROVIDERS:
        raise InvalidInput(f"one of {', '.join(PROVIDERS)}", field="channel")
    to = _recipient(channel, recipient)
    with db.unit_of_work(write=False) as session:
        provider = delivery_settings(tenant_settings(session, caller.tenant_id)).get(channel)
    if not provider:
        raise InvalidInput(f"no {channel} provider is configured", field="channel")
    message = _message(caller.tenant_id, channel, to, new_id("tst"))
    try:
        outcome = channel_for(channel).send(message, provider, db.settings)
    except Exception as exc:  # an adapter's bug is an answer here too, not a 500
        log.exception("test message: the %s adapter failed", channel)
        outcome = Outcome.transient(f"internal error: {type(exc).__name__}")
    ok = outcome.kind in ("sent", "delivered")
    result = ProbeResult(
        channel, mask_recipient(to), ok, outcome.provider_message_id, outcome.error
    )
    with db.unit_of_work() as session:
        session.execute(
            insert(VoucherEvent).values(
                tenant_id=caller.tenant_id,
                voucher_id=None,
                campaign_id=None,
                kind=EVENT_KIND,
                actor=caller.key_id,
                reason=None,
                data={
                    "channel": channel,
                    "recipient": result.recipient,
                    "outcome": outcome.kind,
                    "error": outcome.error,
                },
                created_at=db.now(),
            )
        )
        session.commit()
    return result
