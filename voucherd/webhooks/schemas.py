"""Webhook endpoints on the native API, and how endpoints, messages and attempts are shown."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from voucherd.fields import RequestModel
from voucherd.webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage

EventType = Literal[
    "voucher.issued",
    "voucher.published",
    "voucher.redeemed",
    "redemption.rolled_back",
    "voucher.disabled",
    "voucher.enabled",
    "voucher.cancelled",
    "voucher.balance_adjusted",
    "delivery.failed",
    "order.completed",
    "operation.failed",
]
EndpointState = Literal["ENABLED", "DISABLED"]
MessageState = Literal["PENDING", "SENDING", "DELIVERED", "FAILED"]
_Url = Field(min_length=8, max_length=2000, description="Where to POST; https, a public host.")
_Events = Field(min_length=1, max_length=20, description="The event types to send.")
_Description = Field(default=None, max_length=500)


class EndpointCreate(RequestModel):
    url: str = _Url
    events: list[EventType] = _Events
    description: str | None = _Description


class EndpointUpdate(RequestModel):
    """Fields left out stay as they are. ``state: ENABLED`` revives a disabled endpoint (its
    pending messages go out again); ``DISABLED`` pauses it."""

    url: str | None = Field(default=None, min_length=8, max_length=2000)
    events: list[EventType] | None = Field(default=None, min_length=1, max_length=20)
    description: str | None = _Description
    state: EndpointState | None = None


@dataclass(frozen=True)
class EndpointRecord:
    endpoint: WebhookEndpoint
    events: tuple[str, ...]
    secret: str | None = None  # only when just created


@dataclass(frozen=True)
class MessageRecord:
    message: WebhookMessage
    attempts: tuple[WebhookAttempt, ...] | None = None


def present_endpoint(record: EndpointRecord) -> dict[str, Any]:
    e = record.endpoint
    shown: dict[str, Any] = {
        "id": e.id,
        "object": "webhook_endpoint",
        "url": e.url,
        "description": e.description,
        "events": list(record.events),
        "state": e.state,
        "disabled_reason": e.disabled_reason,
        "failing_since": e.failing_since,
        "created_at": e.created_at,
        "updated_at": e.updated_at,
    }
    if record.secret is not None:
        shown["secret"] = record.secret  # shown once: it is not returned again
    return shown


def present_attempt(attempt: WebhookAttempt) -> dict[str, Any]:
    return {
        "attempt": attempt.attempt,
        "outcome": attempt.outcome,
        "detail": attempt.detail,
        "worker": attempt.worker,
        "created_at": attempt.created_at,
    }


def present_message(record: MessageRecord) -> dict[str, Any]:
    m = record.message
    shown: dict[str, Any] = {
        "id": m.event_id,
        "object": "webhook_message",
        "endpoint_id": m.endpoint_id,
        "type": m.event_type,
        "occurred_at": m.occurred_at,
        "subject_id": m.subject_id,
        "state": m.state,
        "attempts_made": m.attempt,
        "failures": m.failures,
        "next_attempt_at": m.due_at if m.state == "PENDING" else None,
        "last_error": m.last_error,
    }
    if record.attempts is not None:
        shown["attempts"] = [present_attempt(a) for a in record.attempts]
    return shown
