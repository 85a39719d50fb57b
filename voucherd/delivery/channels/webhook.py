"""A signed POST of the voucher to the issuer's own URL, so the issuer can deliver it itself.

Signed as Standard Webhooks specifies (https://www.standardwebhooks.com/, "Signature scheme"):
``webhook-id`` (the delivery id: the same on every retry, so the receiver can drop duplicates),
``webhook-timestamp`` (Unix seconds) and ``webhook-signature``: ``v1,`` + base64 of
HMAC-SHA256 over ``{id}.{timestamp}.{body}`` keyed with the base64-decoded part of the
``whsec_`` secret. A 2xx answer means the issuer has the voucher: the delivery is DELIVERED.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from voucherd.config import Settings
from voucherd.delivery.channels.base import Message, Outcome
from voucherd.delivery.channels.http import Answer, client, post
from voucherd.delivery.settings import webhook_secret_bytes


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(webhook_secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(secret: str, message_id: str, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers for ``body``, stamped now (real time: the receiver checks
    the timestamp against its own clock). Event webhooks sign with the same function."""
    timestamp = int(time.time())
    return {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }


def reason(response: Answer) -> str:
    return (response.text or response.reason_phrase)[:300]


class WebhookChannel:
    def send(self, message: Message, provider: dict[str, Any], settings: Settings) -> Outcome:
        body = message.webhook_body or b"{}"
        headers = signed_headers(provider["secret"], message.delivery_id, body)
        return post(
            lambda: client().post(
                provider["url"], body, headers, timeout=settings.delivery_timeout_seconds
            ),
            reason=reason,
            message_id=lambda _: message.delivery_id,
            success="delivered",
        )
