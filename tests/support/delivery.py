"""Local servers that speak the providers' real protocols, recording what they receive.

* :class:`Provider`: one HTTP server answering as Twilio's Messages API
  (``/2010-04-01/Accounts/{sid}/Messages.json``), Meta's WhatsApp Cloud API
  (``/v21.0/{phone-number-id}/messages``) and an issuer's webhook endpoint (``/hook``). Tests
  script its answers (status, body, headers, a delay) per path; by default it succeeds.
* :class:`SmtpServer`: aiosmtpd with STARTTLS (a trustme CA) and AUTH LOGIN/PLAIN.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from sqlalchemy import select

from tests.factories.tenants import Tenant
from voucherd.config import Settings
from voucherd.db.engine import Database
from voucherd.delivery.channels.http import close_client
from voucherd.delivery.models import Delivery, DeliveryEvent
from voucherd.delivery.outbox import run_due_deliveries
from voucherd.delivery.settings import DeliverySettingsPatch, new_webhook_secret
from voucherd.tenants.service import configure_delivery

TWILIO_SID = "AC" + "0123456789abcdef" * 2
TWILIO_TOKEN = "twilio-auth-token-0123456789abcdef"
WHATSAPP_PHONE_ID = "106540352242922"
WHATSAPP_TOKEN = "EAAG-meta-access-token-0123456789"
WHATSAPP_APP_SECRET = "meta-app-secret-0123456789abcdef"
WHATSAPP_VERIFY_TOKEN = "verify-me-0123456789"
SMTP_USER = "mailer"
SMTP_PASSWORD = "smtp-password-0123456789"
PHONE = "+447911123456"


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))

    def json(self) -> Any:
        return json.loads(self.body)

    def basic_auth(self) -> tuple[str, str]:
        scheme, _, encoded = self.headers.get("authorization", "").partition(" ")
        assert scheme == "Basic", self.headers
        user, _, password = base64.b64decode(encoded).decode().partition(":")
        return user, password


@dataclass
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request (a killed worker) is not the server's error."""


class Provider:
    """Twilio, Meta and an issuer's webhook on one local HTTP server."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.scripts: dict[str, deque[Answer]] = {}
        self.lock = threading.Lock()
        self.delay = 0.0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body in one write, sent at once: otherwise Nagle's algorithm holds the
            # body back until the client's delayed ACK (40 ms a request).
            wbufsize = 1 << 16
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if len(body) < length:
                    self.close_connection = True
                    return  # the sender died mid-request: no message arrived
                path, _, query = self.path.partition("?")
                request = Received(
                    "POST", path, query, {k.lower(): v for k, v in self.headers.items()}, body
                )
                answer = provider.answer_for(request)
                if answer.delay:
                    time.sleep(answer.delay)
                payload = answer.body
                raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def script(self, kind: str, *answers: Answer) -> None:
        """Answers for the next requests of ``kind`` (sms, whatsapp, webhook), in order."""
        with self.lock:
            self.scripts.setdefault(kind, deque()).extend(answers)

    def kind_of(self, path: str) -> str:
        if path.startswith("/2010-04-01/"):
            return "sms"
        if path.endswith("/messages"):
            return "whatsapp"
        return "webhook"

    def answer_for(self, request: Received) -> Answer:
        kind = self.kind_of(request.path)
        with self.lock:
            self.received.append(request)
            queued = self.scripts.get(kind)
            if queued:
                return queued.popleft()
        if kind == "sms":
            sid = "SM" + secrets.token_hex(16)
            return Answer(201, {"sid": sid, "status": "queued"}, delay=self.delay)
        if kind == "whatsapp":
            wamid = "wamid." + secrets.token_hex(12)
            return Answer(200, {"messaging_product": "whatsapp", "messages": [{"id": wamid}]})
        return Answer(200, {"ok": True}, delay=self.delay)

    def of(self, kind: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if self.kind_of(r.path) == kind]

    def start(self) -> Provider:
        self.thread.start()
        return self

    def close(self) -> None:
        close_client()  # its keep-alive connections point at this server
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@contextmanager
def running_provider() -> Iterator[Provider]:
    provider = Provider().start()
    try:
        yield provider
    finally:
        provider.close()


# --- SMTP ---------------------------------------------------------------------------------------


@dataclass
class SmtpServer:
    host: str
    port: int
    ca_file: str
    messages: list[tuple[Envelope, EmailMessage]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    # (code, text) to answer the next RCPT with, e.g. (550, "no such user").
    refuse_next: list[tuple[int, str]] = field(default_factory=list)


class _Handler:
    def __init__(self, box: SmtpServer) -> None:
        self.box = box

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, _: list[str]
    ) -> str:
        if self.box.refuse_next:
            code, text = self.box.refuse_next.pop(0)
            return f"{code} {text}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        parsed = message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.box.messages.append((envelope, parsed))
        return "250 Message accepted"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running_smtp(tmp: Path) -> Iterator[SmtpServer]:
    """An SMTP server on 127.0.0.1 requiring STARTTLS before AUTH, with a trustme CA."""
    ca = trustme.CA()
    certificate = ca.issue_cert("127.0.0.1", "localhost")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(server_context)
    ca_file = tmp / "smtp-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    box = SmtpServer("127.0.0.1", _free_port(), str(ca_file))

    def authenticate(
        server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login, password = data.login.decode(), data.password.decode()
        box.logins.append((login, password))
        ok = (login, password) == (SMTP_USER, SMTP_PASSWORD)
        return AuthResult(success=ok)

    controller = Controller(
        _Handler(box),
        hostname=box.host,
        port=box.port,
        server_hostname="localhost",
        tls_context=server_context,
        require_starttls=True,
        authenticator=authenticate,
        auth_require_tls=True,
        ready_timeout=10,
    )
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


# --- tenant settings ----------------------------------------------------------------------------


def sms_settings(**overrides: Any) -> dict[str, Any]:
    return {
        "account_sid": TWILIO_SID,
        "auth_token": TWILIO_TOKEN,
        "from_number": "+15005550006",
        **overrides,
    }


def whatsapp_settings() -> dict[str, Any]:
    return {
        "phone_number_id": WHATSAPP_PHONE_ID,
        "access_token": WHATSAPP_TOKEN,
        "app_secret": WHATSAPP_APP_SECRET,
        "verify_token": WHATSAPP_VERIFY_TOKEN,
    }


def configure(db: Database, tenant: Tenant, **blocks: Any) -> None:
    """Set a tenant's delivery settings through the real service."""
    configure_delivery(db, tenant.id, DeliverySettingsPatch.model_validate(blocks))


def with_all_channels(
    db: Database,
    tenant: Tenant,
    provider: Provider,
    *,
    phone_channel: str = "sms",
    smtp: SmtpServer | None = None,
) -> str:
    """Every channel configured against the local servers; the webhook secret."""
    secret = new_webhook_secret()
    blocks: dict[str, Any] = {
        "phone_channel": phone_channel,
        "sms": sms_settings(),
        "whatsapp": whatsapp_settings(),
        "webhook": {"url": f"{provider.url}/hook", "secret": secret},
    }
    if smtp is not None:
        blocks["email"] = {
            "host": smtp.host,
            "port": smtp.port,
            "security": "starttls",
            "username": SMTP_USER,
            "password": SMTP_PASSWORD,
            "from_address": "vouchers@shop.example",
            "from_name": "Shop Vouchers",
        }
    configure(db, tenant, **blocks)
    return secret


def settings_for(provider: Provider, **overrides: Any) -> Settings:
    """The suite's settings with the providers' base URLs on the local server."""
    values: dict[str, Any] = {
        "database_url": "sqlite:///unused.db",
        "public_base_url": "https://vouchers.example",
        "key_cache_seconds": 0,
        "max_body_bytes": 64 * 1024,
        "twilio_base_url": provider.url,
        "whatsapp_base_url": f"{provider.url}/v21.0",
        "delivery_concurrency": 1,
        "delivery_timeout_seconds": 5,
    }
    return Settings(**{**values, **overrides})


def deliver_due(db: Database, worker_id: str = "test-worker") -> int:
    """One pass of the outbox job, as a worker makes it."""
    return run_due_deliveries(db, worker_id, threading.Event())


def delivery_row(db: Database, delivery_id: str) -> Delivery:
    with db.unit_of_work(write=False) as session:
        found = session.get(Delivery, delivery_id)
        assert found is not None
        return found


def events_of(db: Database, delivery_id: str) -> list[tuple[str | None, str, int]]:
    """(from, to, attempt) of each event, oldest first."""
    with db.unit_of_work(write=False) as session:
        rows = session.execute(
            select(DeliveryEvent.from_state, DeliveryEvent.to_state, DeliveryEvent.attempt)
            .where(DeliveryEvent.delivery_id == delivery_id)
            .order_by(DeliveryEvent.id)
        ).all()
    return [(a, b, c) for a, b, c in rows]
