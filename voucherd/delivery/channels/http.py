"""What the HTTP channels share: one pooled client per process, and how answers are read.

The rule for every HTTP provider: 2xx is success; 408, 425, 429 and 5xx are transient (retried
with backoff, honouring ``Retry-After``); any other 4xx is permanent, failed at once with the
provider's own reason. Timeouts and connection errors are transient.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

import httpx

from voucherd.delivery.channels.base import Outcome

_TRANSIENT_STATUSES = frozenset({408, 425, 429})
_MAX_RETRY_AFTER = 86_400.0
_client: httpx.Client | None = None
_lock = threading.Lock()


def close_client() -> None:
    """Close the shared client's connections (at exit, or when its servers went away)."""
    global _client
    with _lock:
        if _client is not None:
            _client.close()
            _client = None


atexit.register(close_client)


def client() -> httpx.Client:
    """A keep-alive client shared by a worker's sending threads (httpx.Client is thread-safe)."""
    global _client
    with _lock:
        if _client is None:
            _client = httpx.Client(
                limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
                follow_redirects=False,
                headers={"User-Agent": "voucherd"},
            )
        return _client


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header, as delay-seconds or an HTTP-date (RFC 9110 10.2.3)."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), _MAX_RETRY_AFTER)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return min(max((moment - datetime.now(UTC)).total_seconds(), 0.0), _MAX_RETRY_AFTER)


def post(
    send: Callable[[], httpx.Response],
    *,
    reason: Callable[[httpx.Response], str],
    message_id: Callable[[httpx.Response], str | None],
    success: Literal["sent", "delivered"] = "sent",
) -> Outcome:
    """Make the request and classify what came back."""
    try:
        response = send()
    except httpx.TimeoutException as exc:
        return Outcome.transient(f"timeout: {type(exc).__name__}")
    except httpx.TransportError as exc:
        return Outcome.transient(f"connection error: {type(exc).__name__}")
    status = response.status_code
    if 200 <= status < 300:
        return Outcome(success, provider_message_id=message_id(response))
    why = f"HTTP {status}: {reason(response)}"[:1000]
    if status >= 500 or status in _TRANSIENT_STATUSES:
        return Outcome.transient(why, retry_after(response))
    return Outcome.permanent(why)


def json_field(response: httpx.Response, *path: str | int) -> object:
    """A nested field of a JSON answer, or None when the answer is not shaped like that."""
    try:
        value: object = response.json()
    except ValueError:
        return None
    for key in path:
        if isinstance(key, int) and isinstance(value, list) and len(value) > key:
            value = value[key]
        elif isinstance(key, str) and isinstance(value, dict):
            value = value.get(key)
        else:
            return None
    return value
