"""Migrated databases to copy from, on SQLite and PostgreSQL.

PostgreSQL is found at ``VOUCHERD_TEST_POSTGRES_URL`` (default: the local server CI runs, trust
auth); ``VOUCHERD_REQUIRE_POSTGRES=1`` (set by ``.ci/run``) forbids skipping it.
"""

from __future__ import annotations

import os
import queue
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

PG_URL = os.environ.get(
    "VOUCHERD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_PG = os.environ.get("VOUCHERD_REQUIRE_POSTGRES") == "1"
BACKENDS = ["sqlite", "postgresql"]


def pg_admin() -> psycopg.Connection:
    """An autocommit connection to the server's maintenance database, to create and drop."""
    url = make_url(PG_URL)
    return psycopg.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username or "postgres",
        password=url.password,
        dbname=url.database or "postgres",
        autocommit=True,
        connect_timeout=3,
    )


def pg_url_for(database: str) -> str:
    return make_url(PG_URL).set(database=database).render_as_string(hide_password=False)


class Dropper:
    """Drops PostgreSQL databases on a thread of its own, so that no test waits for one.

    PostgreSQL 15's DROP DATABASE forces an immediate checkpoint (it makes the checkpointer
    forget the database's files): on a busy server that flushes everyone's dirty pages, a second
    or more per drop, which each test that made a database used to wait for in its teardown.
    The databases dropped here are ones nothing uses any more (their engines are disposed;
    ``WITH (FORCE)`` ends any straggling connection), so when they go does not matter, as long
    as they all go: :meth:`wait` (at the end of the session) blocks until then and raises what
    failed.
    """

    def __init__(self) -> None:
        self._names: queue.Queue[str] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.failures: list[str] = []

    def drop(self, name: str) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="voucherd-test-dropper", daemon=True
                )
                self._thread.start()
        self._names.put(name)

    def wait(self) -> None:
        """Return once every database handed over is dropped; raise if any drop failed."""
        while self._names.unfinished_tasks:
            if self._thread is None or not self._thread.is_alive():
                raise AssertionError("the thread dropping test databases died; see its traceback")
            time.sleep(0.02)
        if self.failures:
            failed, self.failures = self.failures, []
            raise AssertionError("databases not dropped:\n" + "\n".join(failed))

    def _run(self) -> None:
        while True:
            name = self._names.get()
            try:
                with pg_admin() as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except psycopg.Error as exc:  # reported by wait(), at the end of the session
                self.failures.append(f"{name}: {exc}")
            finally:
                self._names.task_done()


@dataclass
class Template:
    """A migrated database nobody connects to, to copy whole new databases from."""

    backend: str
    location: str  # PostgreSQL database name, or SQLite file path
    tmp: Path
    dropper: Dropper = field(default_factory=Dropper)

    def copy(self) -> str:
        name = f"voucherd_t_{secrets.token_hex(6)}"
        if self.backend == "sqlite":
            path = self.tmp / f"{name}.db"
            shutil.copy(self.location, path)
            return f"sqlite:///{path}"
        with pg_admin() as admin:
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.location}"')
        return pg_url_for(name)

    def drop(self, url: str) -> None:
        if self.backend == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(make_url(url).database + suffix).unlink(missing_ok=True)  # type: ignore[operator]
            return
        self.dropper.drop(str(make_url(url).database))
