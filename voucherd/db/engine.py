"""Engines and the unit of work.

Every public service function opens exactly one unit of work and commits it once at its end
(STYLE.md habit 3), or, for a read that is one statement, :meth:`Database.single_read`, and
on PostgreSQL, for a write that is one statement, :meth:`Database.single_write`. On SQLite a
writing unit of work starts with ``BEGIN IMMEDIATE`` so that two writers queue on the database lock instead of failing when a read lock cannot be upgraded;
pysqlite's own transaction handling is switched off for that (see SQLAlchemy's "Serializable
isolation / Savepoints / Transactional DDL" notes for pysqlite).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg import pq
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from voucherd.auth.caller import KeyCache
from voucherd.clock import Clock, system_clock
from voucherd.config import Settings
from voucherd.db.express import ExpressLane

WRITE_OPTION = "voucherd_write"
# WRITE_OPTION's value for a connection that runs each statement in its own transaction: no
# BEGIN at all (Database.single_read).
NO_TRANSACTION = "none"


def normalise_url(url: str) -> str:
    """Accept the plain ``postgresql://`` spelling users type and pick the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.drivername == "sqlite":
        parsed = parsed.set(drivername="sqlite+pysqlite")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, *, pool_size: int = 10, overflow: int | None = None) -> Engine:
    """``overflow`` connections (default: twice the pool) open beyond ``pool_size`` under load;
    each is closed again as soon as it is returned, so a process that often has more requests in
    flight than its pool starts and ends a PostgreSQL backend every few requests."""
    url = normalise_url(url)
    overflow = pool_size * 2 if overflow is None else overflow
    if url.startswith("sqlite"):
        return _sqlite_engine(url, pool_size, overflow)
    engine = create_engine(
        url,
        # Parameters carry codes and customer data; keep them out of exception text and logs.
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=overflow,
        # No pre-ping: it would cost a round trip on every unit of work. A connection found dead
        # invalidates the pool and its request answers 503 (api/problems.py), safe to retry.
        pool_recycle=1800,
    )
    engine.dialect.do_rollback = _rollback_keeping_prepared  # type: ignore[method-assign]
    return engine


def _rollback_keeping_prepared(dbapi_connection: Any) -> None:
    """Roll back, and keep the connection's prepared statements.

    psycopg's ``rollback()`` also forgets every statement it prepared on the connection and
    sends ``DEALLOCATE ALL`` (in case the transaction created what they refer to). voucherd
    rolls back every read unit of work (a ``GET``) and every refused write (a balance too low
    under an Idempotency-Key), and each such rollback sent the connection's hot statements
    back to being parsed and planned on every execution until psycopg prepared them again five
    executions later (bench/README.md, "Plans kept").

    Keeping them is safe while no unit of work re-creates an object under a name a prepared
    statement uses with another shape: PostgreSQL re-resolves the names of a statement whose
    plan went stale (the mint's ``ON COMMIT DROP`` staging table, re-created by each mint, is
    such a name, and psycopg never dropped its statements at a commit either); it fails only
    when the result's columns changed. Schema changes run in migrations, apart, before serving
    (CONTRIBUTING.md). A connection in the middle of a statement, or in a state libpq cannot
    tell, gets psycopg's own rollback, which refuses at once instead of waiting; a ROLLBACK
    that fails raises psycopg's OperationalError, so SQLAlchemy still sees a lost connection as
    one and invalidates it (tests/db/test_driver.py)."""
    pgconn = dbapi_connection.pgconn
    status = pgconn.transaction_status
    if status == pq.TransactionStatus.IDLE:
        return
    if status not in (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR):
        dbapi_connection.rollback()
        return
    result = pgconn.exec_(b"ROLLBACK")
    if result.status != pq.ExecStatus.COMMAND_OK:
        message = (result.error_message or pgconn.error_message).decode(errors="replace")
        raise psycopg.OperationalError(message.strip() or "ROLLBACK failed")


_SQLITE_BUSY_SECONDS = 60


class _QueuedWriterConnection(sqlite3.Connection):
    """A pysqlite connection whose write transactions queue on a lock shared by its engine.

    A writer that finds SQLite's database lock taken polls for it with sleeps of up to 100 ms
    (``sqlite3_busy_timeout``), so under many threads the lock sits free while the waiters
    sleep, and an unlucky one can wait past any timeout (tests/concurrency/test_concurrency.py showed
    32 threads on one hot card starving each other past the pool's 30 s). The threads of one
    process queue here instead and are woken as soon as the writer ahead commits or rolls back;
    other processes still meet SQLite's own lock and busy timeout.
    """

    writers: threading.Lock  # one per engine, set on the engine's own subclass
    _holds_writer = False

    def queue_for_write(self) -> None:
        if self._holds_writer:
            return
        if not self.writers.acquire(timeout=_SQLITE_BUSY_SECONDS):
            raise sqlite3.OperationalError("database is locked")
        self._holds_writer = True

    def leave_write_queue(self) -> None:
        if self._holds_writer:
            self._holds_writer = False
            self.writers.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.leave_write_queue()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.leave_write_queue()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.leave_write_queue()


def _sqlite_engine(url: str, pool_size: int, overflow: int) -> Engine:
    connection_class = type(
        "QueuedWriterConnection", (_QueuedWriterConnection,), {"writers": threading.Lock()}
    )
    # A thread waiting for a pooled connection rather than in the write queue fails after the
    # pool's timeout: size a file database's pool like PostgreSQL's (memory ones have no pool).
    in_memory = make_url(url).database in (None, "", ":memory:")
    pool: dict[str, Any] = {} if in_memory else {"pool_size": pool_size, "max_overflow": overflow}
    engine = create_engine(
        url,
        hide_parameters=True,
        connect_args={
            "check_same_thread": False,
            "timeout": _SQLITE_BUSY_SECONDS,
            "factory": connection_class,
        },
        **pool,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_SECONDS * 1000}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, True)
        if write == NO_TRANSACTION:
            return  # pysqlite's own transactions are off: each statement is its own
        if not write:
            conn.exec_driver_sql("BEGIN")
            return
        dbapi_connection: Any = conn.connection.dbapi_connection
        dbapi_connection.queue_for_write()
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            dbapi_connection.leave_write_queue()
            raise

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
        # Verified API keys, for ``key_cache_seconds``: state of this Database, not the process.
        self.key_cache = KeyCache()
        # The same pool, for reads of one statement that need no transaction of their own.
        pooled = self._bind if isinstance(self._bind, Engine) else engine
        self._single = pooled.execution_options(
            **(
                {"isolation_level": "AUTOCOMMIT"}
                if pooled.dialect.name == "postgresql"
                else {WRITE_OPTION: NO_TRANSACTION}
            )
        )
        # The hot use cases' asyncio connections, on PostgreSQL on the engine (db/express.py):
        # half as many as the pool keeps.
        self.express: ExpressLane | None = (
            ExpressLane(engine.url, engine.dialect, size=max(1, engine.pool.size() // 2))  # type: ignore[attr-defined]
            if self.writes_single
            else None
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        # A deployment keeps most of its peak open: 16 requests in flight on a pool of 10 (and
        # 20 of overflow) opened 160-223 backends in 12 s on one API process (bench.redeem).
        # At most half as many again: on PostgreSQL they are the express lane's (kept open),
        # elsewhere the pool's overflow.
        half = settings.db_pool_size // 2
        engine = make_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            overflow=0 if settings.database_url.startswith("postgres") else half,
        )
        return cls(engine, settings=settings)

    def now(self) -> datetime:
        return self.clock()

    @property
    def key_cache_seconds(self) -> float:
        return self.settings.key_cache_seconds

    @property
    def bind(self) -> Engine | Connection:
        """What units of work run on: the engine, or (the suite's rolled-back tests) one
        connection inside a transaction, whose writes no other connection can see."""
        return self._bind

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

    @contextmanager
    def single_read(self) -> Iterator[Connection]:
        """A connection for a read that is **one statement**, run without a transaction of its
        own: no ``BEGIN`` before it and no ``ROLLBACK`` after (on PostgreSQL two round trips
        and two backend wake-ups, as much CPU as the read itself).

        Nothing is lost by it: one statement sees one snapshot, taken when it starts, of every
        transaction committed by then, exactly what the first statement of a read transaction
        sees (READ COMMITTED). A use case that reads twice and needs both reads to agree
        uses :meth:`unit_of_work`. Bound to a connection (the tests' outer transaction), it
        is a read unit of work's connection, so the read sees what the test wrote."""
        if not isinstance(self._bind, Engine):
            with self.unit_of_work(write=False) as session:
                yield session.connection()
            return
        with self._single.connect() as connection:
            yield connection

    @property
    def writes_single(self) -> bool:
        """Whether :meth:`single_write` is available: PostgreSQL, on the engine. Not on SQLite,
        whose writers queue for the database lock from ``BEGIN IMMEDIATE`` (and whose spend is
        several statements), nor bound to the suite's connection, whose writes must stay inside
        the test's transaction."""
        return self.is_postgresql and isinstance(self._bind, Engine)

    @contextmanager
    def single_write(self) -> Iterator[Connection]:
        """A connection for a use case whose only write is **one statement** (reads before and
        after it, of one statement each, are allowed): every statement is its own transaction,
        committed by PostgreSQL as it ends. No ``BEGIN`` and no ``COMMIT`` round trip, and a
        row lock the statement takes is held to its end only, not through a round trip to the
        client and back (one hot card: every waiter waits that much less).

        Atomicity is the statement's: a data-modifying CTE writes all its rows or none. A use
        case needing two writes, or a read and a write to agree beyond what the write's own
        ``WHERE`` re-checks, uses :meth:`unit_of_work`. Only where :attr:`writes_single`."""
        if not self.writes_single:
            raise RuntimeError("single_write needs PostgreSQL on the engine (writes_single)")
        with self._single.connect() as connection:
            yield connection

    def dispose(self) -> None:
        if self.express is not None:
            self.express.close()
        self.engine.dispose()


def is_database_outage(exc: DBAPIError) -> bool:
    """The database went away (restart, failover, network): worth a 503 and a retry, unlike an
    error in a statement, which would fail the same way again."""
    return bool(exc.connection_invalidated) or isinstance(exc, OperationalError)
