"""Engines and the unit of work.

Every public service function opens exactly one unit of work and commits it once at its end
(STYLE.md habit 3). On SQLite a writing unit of work starts with ``BEGIN IMMEDIATE`` so that two
writers queue on the database lock instead of failing when a read lock cannot be upgraded;
pysqlite's own transaction handling is switched off for that (see SQLAlchemy's "Serializable
isolation / Savepoints / Transactional DDL" notes for pysqlite).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from voucherd.clock import Clock, system_clock
from voucherd.config import Settings

WRITE_OPTION = "voucherd_write"


def normalise_url(url: str) -> str:
    """Accept the plain ``postgresql://`` spelling users type and pick the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.drivername == "sqlite":
        parsed = parsed.set(drivername="sqlite+pysqlite")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    return create_engine(
        url,
        # Parameters carry codes and customer data; keep them out of exception text and logs.
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=pool_size * 2,
        pool_pre_ping=True,
        pool_recycle=1800,
    )


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(
        url, hide_parameters=True, connect_args={"check_same_thread": False, "timeout": 60}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, True)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


class Database:
    """The engine, how units of work bind to it, the clock and the settings services consult.

    ``bind`` is the engine in production; tests hand a connection inside an open transaction so
    every unit of work becomes a savepoint that the test rolls back.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        settings: Settings,
        bind: Engine | Connection | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self._bind: Engine | Connection = bind if bind is not None else engine

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(
            make_engine(settings.database_url, pool_size=settings.db_pool_size), settings=settings
        )

    def now(self) -> datetime:
        return self.clock()

    @property
    def key_cache_seconds(self) -> float:
        return self.settings.key_cache_seconds

    @property
    def is_postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def unit_of_work(self, *, write: bool = True) -> Iterator[Session]:
        options = {WRITE_OPTION: write} if isinstance(self._bind, Engine) else None
        session = Session(
            bind=self._bind,
            expire_on_commit=False,
            autoflush=False,
            join_transaction_mode="create_savepoint",
        )
        try:
            if options:
                session.connection(execution_options=options)
            yield session
        finally:
            # A unit of work that did not reach its commit leaves nothing behind.
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
