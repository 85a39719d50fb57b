"""Vista's lookups run off the event loop: a slow database never stops other requests.

The database is made slow for real: another connection holds an ACCESS EXCLUSIVE lock on the
``api_key`` table, so a cold key cache's lookup waits inside PostgreSQL. While a Vista request
waits there, the server (uvicorn, on a thread) still answers ``/healthz``; once the lock goes,
the Vista request completes.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import psycopg
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from tests.factories.tenants import make_tenant
from voucherd.app import create_app
from voucherd.db.engine import Database

RESOLVE = "/api/v1/identity-resolution/from-operation-result-tokens"


@contextmanager
def _serving(app: FastAPI) -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive(), "uvicorn did not start"
            assert time.monotonic() < deadline, "uvicorn did not start in time"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _waiting_on_api_key(lock: psycopg.Connection) -> bool:
    """Some other session waits for a lock on api_key (the Vista request's key lookup)."""
    row = lock.execute(
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
        "WHERE c.relname = 'api_key' AND NOT l.granted AND l.pid <> pg_backend_pid()"
    ).fetchone()
    return bool(row and row[0])


def test_a_key_lookup_waiting_on_the_database_does_not_stop_other_requests(
    backend: str, fresh_database: Callable[..., Database]
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite in WAL mode lets readers through any lock: only a server is slow")
    db = fresh_database()
    assert db.settings.key_cache_seconds == 0  # every request looks its key up: a cold cache
    tenant = make_tenant(db)
    url = make_url(db.settings.database_url).set(drivername="postgresql")
    answers: list[httpx.Response] = []

    with (
        _serving(create_app(db.settings, db=db)) as base,
        psycopg.connect(url.render_as_string(hide_password=False)) as lock,
    ):
        lock.execute("LOCK TABLE api_key IN ACCESS EXCLUSIVE MODE")

        def vista() -> None:
            answers.append(
                httpx.post(base + RESOLVE, headers=tenant.headers, json=["x"], timeout=30)
            )

        waiting = threading.Thread(target=vista)
        waiting.start()
        deadline = time.monotonic() + 10
        while not _waiting_on_api_key(lock):
            assert time.monotonic() < deadline, "the Vista request never reached the database"
            time.sleep(0.02)

        health = httpx.get(base + "/healthz", timeout=5)

        assert health.status_code == 200
        assert waiting.is_alive()  # still waiting for its key
        assert not answers
        lock.rollback()  # the lock goes
        waiting.join(30)

    (resolved,) = answers
    assert resolved.status_code == 200, resolved.text
    assert resolved.json() == [
        {"operationResultToken": "x", "entityId": None, "status": None, "entityType": None}
    ]
