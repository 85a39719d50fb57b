"""Migrated databases to copy from, on SQLite and PostgreSQL.

PostgreSQL is found at ``VOUCHERD_TEST_POSTGRES_URL`` (default: the local server CI runs, trust
auth); ``VOUCHERD_REQUIRE_POSTGRES=1`` (set by ``.ci/run``) forbids skipping it.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
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


@dataclass
class Template:
    """A migrated database nobody connects to, to copy whole new databases from."""

    backend: str
    location: str  # PostgreSQL database name, or SQLite file path
    tmp: Path

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
        with pg_admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
