"""What the HTTP channels share: one pooled HTTP/1.1 client per process, and how answers are read.

The rule for every HTTP provider: 2xx is success; 408, 425, 429 and 5xx are transient (retried
with backoff, honouring ``Retry-After``); any other 4xx is permanent, failed at once with the
provider's own reason. Timeouts and connection errors are transient.

**The client** is the standard library's ``http.client`` on kept-alive connections, pooled per
origin (and, for a webhook dialled at a checked address, per address and TLS name). It replaced
httpx because a send is most of what a worker does per message: httpx cost about 3x the CPU of
``http.client`` for the same POST (building its request and response models, its connection
pool's bookkeeping, its h11 state machine), which capped two workers on two cores near 1,000
messages per second; urllib3, the other well-kept option, cost 1.5x ``http.client``. What httpx
gave that a sender needs is kept: certificates checked against the Mozilla roots (certifi) or
``SSL_CERT_FILE`` / ``SSL_CERT_DIR``, a timeout on connect, write and read, no redirects
followed, a dropped keep-alive connection never reused, and the same words for failures
(``ConnectError``, ``ReadTimeout``...), which operators read in ``last_error``. Proxies from the
environment are not used: a webhook must connect to the very address that was checked.
"""

from __future__ import annotations

import atexit
import http.client
import os
import select
import ssl
import threading
from base64 import b64encode
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message as Headers
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Literal
from urllib.parse import urlencode, urlsplit

import orjson

from voucherd.delivery.channels.base import Outcome

_TRANSIENT_STATUSES = frozenset({408, 425, 429})
_MAX_RETRY_AFTER = 86_400.0
# An answer is read up to this much (a reason, a message id); a longer one is cut there and its
# connection closed rather than read to the end.
_MAX_ANSWER = 1 << 20
_IDLE_PER_ORIGIN = 64
_USER_AGENT = "voucherd"


# --- failures, named as operators have always read them -----------------------------------------


class TransportError(Exception):
    """The request did not get an answer; the class name says at which step."""


class TimeoutException(TransportError):
    """A step took longer than the send's timeout."""


class ConnectError(TransportError):
    pass


class WriteError(TransportError):
    pass


class ReadError(TransportError):
    pass


class RemoteProtocolError(TransportError):
    """The server closed the connection or answered something that is not HTTP/1.1."""


class ConnectTimeout(TimeoutException):
    pass


class WriteTimeout(TimeoutException):
    pass


class ReadTimeout(TimeoutException):
    pass


# --- answers ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """A provider's answer, read whole (up to ``_MAX_ANSWER``)."""

    status_code: int
    headers: Headers  # case-insensitive ``get``
    content: bytes

    @property
    def reason_phrase(self) -> str:
        try:
            return HTTPStatus(self.status_code).phrase
        except ValueError:
            return ""

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> object:
        """The body as JSON; ValueError when it is not."""
        return orjson.loads(self.content)


# --- connections --------------------------------------------------------------------------------


class _TlsConnection(http.client.HTTPSConnection):
    """HTTPS to ``host`` (a name, or the address a webhook's name was checked to resolve to)
    with ``server_name`` in SNI and in the certificate check."""

    def __init__(
        self, host: str, port: int, *, timeout: float, context: ssl.SSLContext, server_name: str
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self.tls = context
        self.server_name = server_name

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)  # TCP, with TCP_NODELAY
        self.sock = self.tls.wrap_socket(self.sock, server_hostname=self.server_name)


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """Whether an idle kept-alive connection was closed by its server (readable while idle:
    the end of the stream, or bytes nobody asked for). Either way it is not reused."""
    sock = connection.sock
    if sock is None:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


_Origin = tuple[str, str, int, str | None]  # scheme, host (or address), port, TLS server name


def _tls_context() -> ssl.SSLContext:
    """Certificates checked as httpx checked them: ``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` when
    set (an operator's private CA), else the Mozilla roots of certifi (else the system's)."""
    if os.environ.get("SSL_CERT_FILE"):
        context = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    elif os.environ.get("SSL_CERT_DIR"):
        context = ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    else:
        try:
            import certifi
        except ImportError:  # pragma: no cover - certifi is a dependency
            context = ssl.create_default_context()
        else:
            context = ssl.create_default_context(cafile=certifi.where())
    context.set_alpn_protocols(["http/1.1"])
    return context


@dataclass(eq=False)
class HttpClient:
    """Kept-alive HTTP/1.1 connections shared by a worker's sending threads: each request takes
    an idle connection of its origin (or opens one) and gives it back once the answer is read,
    unless the server said it would close it."""

    _idle: dict[_Origin, list[http.client.HTTPConnection]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _tls: ssl.SSLContext | None = None
    _closed: bool = False

    def post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        timeout: float,
        server_name: str | None = None,
    ) -> Answer:
        """POST ``body`` to ``url``; the answer, or a TransportError saying which step failed.

        ``server_name``: for https, the name the certificate must be for when ``url`` holds an
        address in its place (a webhook's checked address); a ``Host`` header in ``headers``
        is sent as given.
        """
        parts = urlsplit(url)
        secure = parts.scheme == "https"
        if not secure and parts.scheme != "http":
            raise ConnectError(f"not an http(s) URL: {parts.scheme}")
        host = parts.hostname or ""
        port = parts.port or (443 if secure else 80)
        origin = (parts.scheme, host, port, (server_name or host) if secure else None)
        target = parts.path or "/"
        if parts.query:
            target = f"{target}?{parts.query}"
        connection = self._take(origin, timeout)
        try:
            answer, reusable = self._exchange(connection, target, body, headers, timeout)
        except BaseException:
            connection.close()
            raise
        if reusable:
            self._give_back(origin, connection)
        else:
            connection.close()
        return answer

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()

    def _take(self, origin: _Origin, timeout: float) -> http.client.HTTPConnection:
        with self._lock:
            idle = self._idle.get(origin)
            while idle:
                connection = idle.pop()
                if not _dropped(connection):
                    assert connection.sock is not None
                    connection.sock.settimeout(timeout)
                    connection.timeout = timeout
                    return connection
                connection.close()
        return self._open(origin, timeout)

    def _open(self, origin: _Origin, timeout: float) -> http.client.HTTPConnection:
        scheme, host, port, server_name = origin
        connection: http.client.HTTPConnection
        if scheme == "https":
            connection = _TlsConnection(
                host,
                port,
                timeout=timeout,
                context=self._context(),
                server_name=server_name or host,
            )
        else:
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            connection.connect()
        except TimeoutError as exc:
            connection.close()
            raise ConnectTimeout(str(exc)) from exc
        except OSError as exc:  # refused, unreachable, TLS refused (ssl.SSLError is an OSError)
            connection.close()
            raise ConnectError(str(exc)) from exc
        return connection

    def _context(self) -> ssl.SSLContext:
        with self._lock:
            if self._tls is None:
                self._tls = _tls_context()
            return self._tls

    def _give_back(self, origin: _Origin, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if not self._closed and len(idle) < _IDLE_PER_ORIGIN:
                idle.append(connection)
                return
        connection.close()

    @staticmethod
    def _exchange(
        connection: http.client.HTTPConnection,
        target: str,
        body: bytes,
        headers: Mapping[str, str],
        timeout: float,
    ) -> tuple[Answer, bool]:
        """One request and its whole answer; whether the connection may be used again."""
        try:
            connection.request("POST", target, body, {"User-Agent": _USER_AGENT, **headers})
        except TimeoutError as exc:
            raise WriteTimeout(str(exc)) from exc
        except OSError as exc:
            raise WriteError(str(exc)) from exc
        try:
            response = connection.getresponse()
            content = response.read(_MAX_ANSWER)
        except TimeoutError as exc:
            raise ReadTimeout(str(exc)) from exc
        except http.client.HTTPException as exc:
            raise RemoteProtocolError(str(exc) or type(exc).__name__) from exc
        except OSError as exc:
            raise ReadError(str(exc)) from exc
        reusable = response.isclosed() and not response.will_close
        return Answer(response.status, response.msg, content), reusable


# --- the process's client -----------------------------------------------------------------------

_client: HttpClient | None = None
_lock = threading.Lock()


def close_client() -> None:
    """Close the shared client's connections (at exit, or when its servers went away); the next
    send makes a new one, reading ``SSL_CERT_FILE`` again."""
    global _client
    with _lock:
        closing, _client = _client, None
    if closing is not None:
        closing.close()


atexit.register(close_client)


def client() -> HttpClient:
    """The keep-alive client shared by a worker's sending threads."""
    global _client
    with _lock:
        if _client is None:
            _client = HttpClient()
        return _client


# --- reading answers ----------------------------------------------------------------------------


def retry_after(response: Answer) -> float | None:
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
    send: Callable[[], Answer],
    *,
    reason: Callable[[Answer], str],
    message_id: Callable[[Answer], str | None],
    success: Literal["sent", "delivered"] = "sent",
) -> Outcome:
    """Make the request and classify what came back."""
    try:
        response = send()
    except TimeoutException as exc:
        return Outcome.transient(f"timeout: {type(exc).__name__}")
    except TransportError as exc:
        return Outcome.transient(f"connection error: {type(exc).__name__}")
    status = response.status_code
    if 200 <= status < 300:
        return Outcome(success, provider_message_id=message_id(response))
    why = f"HTTP {status}: {reason(response)}"[:1000]
    if status >= 500 or status in _TRANSIENT_STATUSES:
        return Outcome.transient(why, retry_after(response))
    return Outcome.permanent(why)


def json_field(response: Answer, *path: str | int) -> object:
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


def form_body(form: Mapping[str, str]) -> bytes:
    """``application/x-www-form-urlencoded``, as browsers and httpx encode it."""
    return urlencode(form).encode("ascii")


def json_body(value: object) -> bytes:
    """Compact UTF-8 JSON, as httpx's ``json=`` sent it."""
    return orjson.dumps(value)


def basic_auth(user: str, password: str) -> str:
    """An ``Authorization`` header's value for HTTP Basic (RFC 7617, UTF-8)."""
    return "Basic " + b64encode(f"{user}:{password}".encode()).decode("ascii")
