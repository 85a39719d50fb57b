"""A real voucherd under uvicorn in a thread, for clients that speak HTTP themselves: an SDK, a
browser, threads of raw clients, a request that must wait while others are answered."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import uvicorn
from starlette.types import ASGIApp

from voucherd.app import create_app
from voucherd.db.engine import Database

STARTUP_SECONDS = 30  # a loaded CI machine can be slow to start a thread's server


@contextmanager
def serving_app(app: ASGIApp, *, lifespan: Literal["on", "off", "auto"] = "off") -> Iterator[str]:
    """``app`` on a free 127.0.0.1 port; yields its base URL. No access log, as `voucherd serve`:
    a page's path holds its secret token."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan=lifespan, ws="none", backlog=256
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start serving")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def serving(db: Database, *, lifespan: Literal["on", "off", "auto"] = "off") -> Iterator[str]:
    """The whole app over ``db``; ``lifespan="on"`` also runs its in-process worker."""
    with serving_app(create_app(db.settings, db=db), lifespan=lifespan) as base_url:
        yield base_url
