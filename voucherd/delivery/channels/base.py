"""The one small interface every channel adapter implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from voucherd.config import Settings
from voucherd.delivery.messages import Composed

OutcomeKind = Literal["sent", "delivered", "transient", "permanent"]


@dataclass(frozen=True)
class Message:
    delivery_id: str
    tenant_id: str
    channel: str
    recipient: str | None
    content: Composed
    # Where the provider reports delivery receipts (sms); opaque data it echoes back (whatsapp).
    status_callback: str | None = None
    webhook_body: bytes | None = None


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    provider_message_id: str | None = None
    error: str | None = None
    retry_after: float | None = None  # seconds, from the provider's Retry-After

    @classmethod
    def transient(cls, error: str, retry_after: float | None = None) -> Outcome:
        return cls("transient", error=error, retry_after=retry_after)

    @classmethod
    def permanent(cls, error: str) -> Outcome:
        return cls("permanent", error=error)


class Channel(Protocol):
    """Sends one message with the tenant's provider settings for this channel."""

    def send(self, message: Message, provider: dict[str, Any], settings: Settings) -> Outcome: ...
