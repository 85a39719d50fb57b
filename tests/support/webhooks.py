"""A local receiver of event webhooks that checks the Standard Webhooks signature itself (its
own HMAC, not voucherd's), and drives the webhook job the way a worker does."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from voucherd.db.engine import Database
from voucherd.webhooks.tasks import run_due_webhooks

TOLERANCE_SECONDS = 300  # the spec's suggested window for webhook-timestamp


@dataclass(frozen=True)
class Hook:
    webhook_id: str
    host: str
    payload: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.payload["type"])


def signature_is_valid(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Standard Webhooks verification, as a receiver would write it."""
    msg_id, stamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    if not msg_id or not stamp.isdigit() or abs(time.time() - int(stamp)) > TOLERANCE_SECONDS:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    expected = base64.b64encode(digest).decode()
    offered = [s.partition(",") for s in headers.get("webhook-signature", "").split()]
    return any(v == "v1" and hmac.compare_digest(sig, expected) for v, _, sig in offered)


class Receiver:
    """Answers 204 to a correctly signed POST (or what a test scripted), 401 to a bad one."""

    def __init__(self) -> None:
        self.secret = ""
        self.hooks: list[Hook] = []
        self.forged = 0
        self.statuses: deque[int] = deque()
        self.delay = 0.0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if len(body) < length:
                    self.close_connection = True
                    return  # the sender died mid-request
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = receiver.take(headers, body)
                if receiver.delay:
                    time.sleep(receiver.delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def take(self, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            if not signature_is_valid(self.secret, headers, body):
                self.forged += 1
                return 401
            status = self.statuses.popleft() if self.statuses else 204
            if 200 <= status < 300:
                hook = Hook(headers["webhook-id"], headers.get("host", ""), json.loads(body))
                self.hooks.append(hook)
            return status

    def types(self) -> list[str]:
        return [h.type for h in self.hooks]


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


def drain(db: Database, worker: str = "w1") -> int:
    """Run the webhook job until nothing is due now; how many messages it handled."""
    handled = 0
    while taken := run_due_webhooks(db, worker, threading.Event()):
        handled += taken
    return handled


def register(
    api: Any, headers: dict[str, str], receiver: Receiver, events: list[str] | None = None
) -> dict[str, Any]:
    """An endpoint for ``receiver`` over the native API (every event type unless named); the
    receiver learns the secret, shown this once."""
    from voucherd.webhooks.models import EVENT_TYPES

    body = {"url": receiver.url, "events": events or list(EVENT_TYPES)}
    response = api.post("/api/v1/webhook-endpoints", headers=headers, json=body)
    assert response.status_code == 201, response.text
    shown: dict[str, Any] = response.json()
    receiver.secret = shown["secret"]
    return shown
