"""A bare ASGI app for bench.servers: reads the request body, answers a small JSON; what it
costs beside the server is close to nothing, so the server's CPU per request is the server's."""

from __future__ import annotations

import json
from typing import Any

BODY = json.dumps({"valid": True, "code": "ABCDEFGHJKLMN", "balance": 5000}).encode()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(BODY)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": BODY})
