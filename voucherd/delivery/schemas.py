"""Asking for a delivery (every face reuses :class:`DeliveryRequest`), and how one is shown."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from voucherd.delivery.models import Delivery, DeliveryEvent
from voucherd.fields import RequestModel, email_address, phone_number

RequestedChannel = Literal["phone", "email", "webhook", "none"]
ChannelName = Literal["sms", "whatsapp", "email", "webhook", "none"]
DeliveryStateName = Literal["PENDING", "SENDING", "SENT", "DELIVERED", "FAILED"]
# Ten SMS segments: Twilio itself refuses a body past 1,600 characters.
MAX_MESSAGE_LENGTH = 1_600


class DeliveryRequest(RequestModel):
    """How the holder should get the voucher.

    ``phone`` goes by SMS or WhatsApp, whichever the tenant uses (a tenant setting, as in Yoyo:
    not chosen per request); ``email`` by the tenant's SMTP server; ``webhook`` posts the voucher
    to the tenant's signed webhook so the issuer delivers it itself; ``none`` records that the
    issuer shows the code in its own app.
    """

    channel: RequestedChannel
    recipient: str | None = Field(
        default=None,
        min_length=3,
        max_length=254,
        description="A phone number in international form (phone) or an email address (email).",
        examples=["+447911123456"],
        validate_default=True,
    )
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="How the message greets the recipient; the voucher's holder name if absent.",
    )
    message: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_MESSAGE_LENGTH,
        description=(
            "The issuer's own text for this message (phone and email), sent instead of the "
            "campaign's message with the code appended; a campaign template that uses "
            "{{ message }} places both itself. On WhatsApp it fills only template parameters "
            "that use {{ message }}: Meta allows only approved templates to open a conversation."
        ),
    )

    @field_validator("recipient")
    @classmethod
    def _recipient_fits_channel(cls, value: str | None, info: ValidationInfo) -> str | None:
        channel = info.data.get("channel")
        if channel is None:
            return value  # the channel itself is wrong, and that error says so
        if value is None:
            if channel in ("phone", "email"):
                raise ValueError(f"a {channel} delivery needs a recipient")
            return None
        value = value.strip()
        if channel == "phone":
            return phone_number(value)
        if channel == "email":
            return email_address(value)
        raise ValueError(f"a {channel} delivery has no recipient")

    @field_validator("message")
    @classmethod
    def _message_fits_channel(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if info.data.get("channel") in ("webhook", "none"):
            raise ValueError(f"a {info.data['channel']} delivery sends no message text")
        if not value.strip():
            raise ValueError("must not be blank")
        return value


@dataclass(frozen=True)
class RequestedDelivery:
    """What a use case that asked for a delivery hands back to its caller."""

    id: str
    channel: str
    state: str

    def present(self) -> dict[str, Any]:
        return {"id": self.id, "object": "delivery", "channel": self.channel, "state": self.state}


@dataclass(frozen=True)
class DeliveryFilters:
    voucher: str | None = None
    state: DeliveryStateName | None = None
    channel: ChannelName | None = None


@dataclass(frozen=True)
class DeliveryRecord:
    delivery: Delivery
    voucher_code: str
    events: tuple[DeliveryEvent, ...] = ()


def mask_recipient(recipient: str | None) -> str | None:
    """Enough to recognise a recipient, too little to harvest it (logs, operator lists)."""
    if recipient is None:
        return None
    if "@" in recipient:
        local, _, domain = recipient.partition("@")
        return f"{local[:1]}***@{domain}"
    return recipient[:3] + "*" * max(len(recipient) - 5, 0) + recipient[-2:]


def mask_code(code: str) -> str:
    return "*" * max(len(code) - 4, 0) + code[-4:]


def present_delivery(record: DeliveryRecord) -> dict[str, Any]:
    d = record.delivery
    shown: dict[str, Any] = {
        "id": d.id,
        "object": "delivery",
        "voucher_id": d.voucher_id,
        "code": record.voucher_code,
        "channel": d.channel,
        "recipient": d.recipient,
        "recipient_name": d.recipient_name,
        "message": d.message,
        "state": d.state,
        "origin": d.origin,
        "resend_of": d.resend_of,
        "attempts": d.attempt,
        "failures": d.failures,
        "next_attempt_at": d.due_at if d.state == "PENDING" else None,
        "provider_message_id": d.provider_message_id,
        "last_error": d.last_error,
        "created_at": d.created_at,
        "updated_at": d.updated_at,
    }
    if record.events:
        shown["events"] = [present_event(e) for e in record.events]
    return shown


def present_event(event: DeliveryEvent) -> dict[str, Any]:
    return {
        "object": "delivery_event",
        "attempt": event.attempt,
        "from_state": event.from_state,
        "to_state": event.to_state,
        "actor": event.actor,
        "detail": event.detail,
        "created_at": event.created_at,
    }
