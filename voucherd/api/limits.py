"""A request body larger than the limit is refused with 413 before it is read into memory."""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voucherd.api.problems import PROBLEM_JSON
from voucherd.api.responses import dumps
from voucherd.errors import ErrorCode


class RefuseNulInUrl:
    """A NUL in a path or query can match nothing, and PostgreSQL refuses to compare text with
    one (a 500): refuse it at the door with a 400 naming where it was."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw_path = scope.get("raw_path") or scope["path"].encode()
            for where, raw in (("path", raw_path), ("query", scope.get("query_string", b""))):
                if b"\x00" in unquote_to_bytes(raw):
                    detail = f"the {where} contains a NUL character"
                    await _send_problem(send, 400, ErrorCode.INVALID_URL, detail, where)
                    return
        await self.app(scope, receive, send)


async def _send_problem(send: Send, status: int, code: str, detail: str, field: str) -> None:
    body = dumps(
        {
            "type": f"urn:voucherd:problem:{code}",
            "title": "Invalid URL",
            "status": status,
            "detail": detail,
            "code": code,
            "errors": [{"field": field, "reason": detail}],
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


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
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
                await self._refuse(send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = dumps(
            {
                "type": f"urn:voucherd:problem:{ErrorCode.BODY_TOO_LARGE}",
                "title": "Body too large",
                "status": 413,
                "detail": f"request bodies are limited to {self.max_bytes} bytes",
                "code": ErrorCode.BODY_TOO_LARGE,
                "errors": [{"field": "body", "reason": f"larger than {self.max_bytes} bytes"}],
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass
