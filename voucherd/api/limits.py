"""Refusals at the door, before any route is chosen: a body larger than the limit (413, before
it is read into memory) and a URL holding a NUL byte (400).

No face has been chosen yet, but the path says which face the client speaks: each face gives
the front door (api/front.py) a :data:`Door` for its path prefixes (dialects/doors.py, wired in app.py), so a
Voucherify client gets Voucherify's error object and an i-movo client i-movo's envelope; any
other path gets the native problem+json.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum
from urllib.parse import unquote_to_bytes

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voucherd.api.problems import PROBLEM_JSON
from voucherd.api.responses import dumps
from voucherd.errors import DomainError, ErrorCode


class BodyTooLarge(DomainError):
    status, code, title = 413, ErrorCode.BODY_TOO_LARGE, "Body too large"


class InvalidUrl(DomainError):
    status, code, title = 400, ErrorCode.INVALID_URL, "Invalid URL"


# A face's answer to a refusal at the door, in its own error shape.
Door = Callable[[Request, DomainError], Response]
Doors = Sequence[tuple[str, Door]]


async def _refuse(scope: Scope, send: Send, doors: Doors, exc: DomainError, reason: str) -> None:
    """``exc`` in the shape of the face whose prefix the path starts with (the longest such),
    else as the native problem+json, whose ``errors`` give ``reason``."""
    path = scope.get("path", "")
    matching = [(prefix, door) for prefix, door in doors if path.startswith(prefix)]
    if matching:
        _, door = max(matching, key=lambda pair: len(pair[0]))

        async def no_body() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        await door(Request(scope), exc)(scope, no_body, send)
        return
    await _send_problem(send, exc.status, exc.code, exc.title, exc.detail, exc.field, reason)


def refuse_nul_in_url(scope: Scope) -> InvalidUrl | None:
    """A NUL in a path or query can match nothing, and PostgreSQL refuses to compare text with
    one (a 500): the 400 naming where it was, to refuse it at the door; None when there is none."""
    raw_path = scope.get("raw_path") or scope["path"].encode()
    for where, raw in (("path", raw_path), ("query", scope.get("query_string", b""))):
        # Without a "%", the URL is its own decoding: no need to decode it.
        if b"\x00" in (unquote_to_bytes(raw) if b"%" in raw else raw):
            return InvalidUrl(f"the {where} contains a NUL character", field=where)
    return None


async def refuse(scope: Scope, send: Send, doors: Doors, exc: DomainError) -> None:
    """``exc`` (a refusal at the door) in the shape of the face the path belongs to."""
    await _refuse(scope, send, doors, exc, exc.detail)


async def _send_problem(
    send: Send, status: int, code: str, title: str, detail: str, field: str | None, reason: str
) -> None:
    body = dumps(
        {
            "type": f"urn:voucherd:problem:{code}",
            "title": title,
            "status": status,
            "detail": detail,
            "code": code,
            "errors": [{"field": field, "reason": reason}],
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Body(Enum):
    """What the body limit makes of a request before any of its body is read."""

    TOO_LARGE = "too large"  # its Content-Length says so (or is not a number): refuse it
    WITHIN = "within"  # its Content-Length is within the limit and the server enforces it
    COUNTED = "counted"  # no length declared (chunked): count it as it is read


class BodySizeLimit:
    """A body larger than ``max_bytes`` answered 413 before it is read into memory: the front
    door (api/front.py) asks :meth:`verdict`, then refuses, calls the app, or has :meth:`count`
    count the body as the app reads it."""

    def __init__(self, app: ASGIApp, max_bytes: int, doors: Doors = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.doors = doors

    def verdict(self, scope: Scope) -> Body:
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return Body.TOO_LARGE
        if declared is not None and b"transfer-encoding" not in headers:
            # The server hands the app no more than the declared length (HTTP/1.1), which is
            # within the limit: nothing to count on the way in, nothing to replace on the way out.
            return Body.WITHIN
        return Body.COUNTED

    async def count(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app, counting the body as it is read: 413 as soon as it passes the limit."""
        seen = 0
        started = False
        too_large = False
        replaced = False

        async def counting_receive() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started, replaced
            if replaced:
                return
            if too_large and not started and message["type"] == "http.response.start":
                # Whoever read the body may have caught _TooLarge and answered on its own
                # (FastAPI turns any error while reading a body into "400 error parsing the
                # body"): the answer is still 413, sent instead of theirs.
                started = replaced = True
                await self.refuse(scope, send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self.refuse(scope, send)

    async def refuse(self, scope: Scope, send: Send) -> None:
        detail = f"request bodies are limited to {self.max_bytes} bytes"
        exc = BodyTooLarge(detail, field="body")
        await _refuse(scope, send, self.doors, exc, f"larger than {self.max_bytes} bytes")


class _TooLarge(Exception):
    pass
