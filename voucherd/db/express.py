"""The express lane: psycopg's asyncio connections, on the event loop, for the hottest use case
on PostgreSQL (a redemption without an Idempotency-Key, ``redemptions.service.redeem_on_loop``).

Why. A hot route handed its blocking use case to a worker thread (``api/offload.py``): a queue,
a thread woken, the interpreter lock passed back and forth, the answer handed back to the loop.
That trip cost far more than its instructions say: with the same two statements run on the
event loop instead, an API process spent 35% less CPU a redemption over HTTP (864-903 µs
against 1,367-1,559, ``bench.redeem`` many cards, interleaved; bench/README.md, eighth
session), mostly kernel time and waiting for the lock that no profile of Python shows.

What a lane connection is: an autocommit connection, as ``Database.single_write``'s, so only a
use case written for ``single_write`` (one write statement, reads of one statement each) runs
on it. Statements are the same ``DriverStatement`` objects, prepared by psycopg after a few
uses, with the same rows and the same errors (``db/driver.py``).

The rules it keeps:

* **Never waits.** At most ``size`` connections per process, opened as requests need them and
  kept; when all are in use :class:`LaneBusy` is raised at once and the caller takes the thread
  way, with the pool of ``Database.engine`` and its timeout. ``Database.from_settings`` gives
  the lane the half of ``VOUCHERD_DB_POOL_SIZE`` the pool's overflow had, so a process still
  holds at most 1.5 x ``VOUCHERD_DB_POOL_SIZE`` connections (README.md, Operations).
* **One request at a time, from any event loop.** psycopg's asyncio connection looks the
  running loop up at each wait, and a connection is lent to one request until it is returned,
  so a ``TestClient`` (each on a loop of its own) or a process's one uvicorn loop may use it.
* **A doubtful connection is closed, never lent again**: one that failed, one whose statement
  was interrupted (a cancelled request: its transaction status is not idle), one older than
  ``recycle_seconds`` (as the engine's ``pool_recycle``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import pq
from sqlalchemy.engine import URL, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable

from voucherd.db import driver

_IDLE = pq.TransactionStatus.IDLE
APPLICATION_NAME = "voucherd express lane"


class LaneBusy(Exception):
    """Every connection of the lane is lent: take the thread way instead."""


class ExpressLane:
    """A process's asyncio connections to PostgreSQL, lent one request at a time."""

    def __init__(
        self, url: URL, dialect: Dialect, *, size: int, recycle_seconds: float = 1800
    ) -> None:
        self.dialect = dialect
        self.size = size
        self._recycle_seconds = recycle_seconds
        # How SQLAlchemy's psycopg dialect connects, so both pools reach the same server alike.
        args, params = dialect.create_connect_args(url)
        self._args, self._params = tuple(args), dict(params)
        # Told apart in pg_stat_activity, unless the database URL names the application itself.
        self._params.setdefault("application_name", APPLICATION_NAME)
        self._lock = threading.Lock()  # a Database may serve several loops (tests, benchmarks)
        self._idle: list[tuple[psycopg.AsyncConnection[Any], float]] = []
        self._lent = 0
        self._closed = False

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A connection of the lane for one use case, returned (or closed) after it.

        :class:`LaneBusy` when none is free and the lane is at its size; the database's own
        error (a DBAPIError, ``connection_invalidated``) when a new one cannot be opened."""
        connection, opened_at = await self._take()
        try:
            yield connection
        finally:
            if self._reusable(connection, opened_at):
                with self._lock:
                    self._idle.append((connection, opened_at))
                    self._lent -= 1
            else:
                stale: list[tuple[psycopg.AsyncConnection[Any], float]] = []
                with self._lock:
                    self._lent -= 1
                    if connection.broken or connection.closed:
                        # Lost, as the server restarted or failed over: so are the idle ones,
                        # most likely (SQLAlchemy's pool is invalidated whole for the same).
                        stale, self._idle = self._idle, []
                for other, _ in stale:
                    other.pgconn.finish()
                await connection.close()

    @property
    def connections(self) -> int:
        """How many connections the lane holds open (idle or lent)."""
        with self._lock:
            return len(self._idle) + self._lent

    async def rows(
        self,
        connection: psycopg.AsyncConnection[Any],
        statement: Executable,
        params: Mapping[str, Any],
    ) -> list[Any]:
        """Every row of ``statement`` on ``connection`` (``driver.rows_on_loop``)."""
        return await driver.rows_on_loop(connection, self.dialect, statement, params)

    def close(self) -> None:
        """Close the idle connections now and the lent ones as they come back
        (``Database.dispose``)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection, _ in idle:
            connection.pgconn.finish()  # what close() does, without a loop to await it on

    async def _take(self) -> tuple[psycopg.AsyncConnection[Any], float]:
        with self._lock:
            if self._closed:
                raise LaneBusy
            if self._idle:
                self._lent += 1
                return self._idle.pop()
            if self._lent >= self.size:
                raise LaneBusy
            self._lent += 1  # the slot is this request's while the connection opens
        try:
            connection = await psycopg.AsyncConnection.connect(
                *self._args, **self._params, autocommit=True
            )
        except psycopg.Error as error:
            with self._lock:
                self._lent -= 1
            raise DBAPIError.instance(
                None, None, error, psycopg.Error, connection_invalidated=True, dialect=self.dialect
            ) from error
        except BaseException:
            with self._lock:
                self._lent -= 1
            raise
        return connection, time.monotonic()

    def _reusable(self, connection: psycopg.AsyncConnection[Any], opened_at: float) -> bool:
        return (
            not self._closed
            and not connection.closed
            and not connection.broken
            and connection.pgconn.transaction_status == _IDLE
            and time.monotonic() - opened_at < self._recycle_seconds
        )
