"""The express lane: psycopg's asyncio connections, on the event loop, for the hottest use cases
on PostgreSQL (a validation, and a redemption, an issue and a pool publication without an
Idempotency-Key: ``redemptions.service.validate_on_loop``/``redeem_on_loop``,
``vouchers.issue.issue_on_loop``, ``publications.publish.publish_on_loop``).

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

* **Waits briefly, in line, then gives way.** At most ``size`` connections per process, opened
  as requests need them and kept; when all are lent a request waits its turn on the event loop
  (first come, first served: a connection coming back is handed to the longest waiting) for up
  to ``wait_seconds``, then :class:`LaneBusy` is raised and the caller takes the thread way,
  with the pool of ``Database.engine`` and its timeout. Waiting costs no CPU, and the lane's
  use cases hold a connection for one to three statements, so the line moves in milliseconds;
  spilling over instead sent roughly a third of a busy process's redemptions the thread way
  (py-spy, bench.redeem many cards), each at the thread trip's cost. Only a lane whose
  connections are all stuck (a database that stopped answering) makes a request wait the
  whole time.
  ``Database.from_settings`` gives the lane the half of ``VOUCHERD_DB_POOL_SIZE`` the pool's
  overflow had, so a process still holds at most 1.5 x ``VOUCHERD_DB_POOL_SIZE`` connections
  (README.md, Operations).
* **One request at a time, from any event loop.** psycopg's asyncio connection looks the
  running loop up at each wait, and a connection is lent to one request until it is returned,
  so a ``TestClient`` (each on a loop of its own) or a process's one uvicorn loop may use it.
* **A doubtful connection is closed, never lent again**: one that failed, one whose statement
  was interrupted (a cancelled request: its transaction status is not idle), one older than
  ``recycle_seconds`` (as the engine's ``pool_recycle``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
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

# A connection handed over, with when it was opened; or None: a slot handed over, for the
# taker to open a connection in (the one returned was closed).
_Handed = tuple["LaneConnection", float] | None
_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[_Handed]"]


class LaneBusy(Exception):
    """Every connection of the lane is lent: take the thread way instead."""


class LaneConnection(psycopg.AsyncConnection[Any]):
    """A lane connection, with the one cursor its statements run on.

    A lane connection runs one statement at a time (it is lent to one request, whose
    statements follow each other), so one cursor serves them all. A cursor made and closed
    for each statement cost 2-7% of an API process's instructions a request (redeem, validate,
    issue, claim; bench/README.md, tenth session). It goes with its connection."""

    _statement_cursor: psycopg.AsyncCursor[Any] | None = None

    def statement_cursor(self) -> psycopg.AsyncCursor[Any]:
        cursor = self._statement_cursor
        if cursor is None or cursor.closed:
            cursor = self._statement_cursor = self.cursor()
        return cursor


class ExpressLane:
    """A process's asyncio connections to PostgreSQL, lent one request at a time."""

    def __init__(
        self,
        url: URL,
        dialect: Dialect,
        *,
        size: int,
        wait_seconds: float = 1.0,
        recycle_seconds: float = 1800,
    ) -> None:
        self.dialect = dialect
        self.size = size
        self.wait_seconds = wait_seconds
        self._recycle_seconds = recycle_seconds
        # How SQLAlchemy's psycopg dialect connects, so both pools reach the same server alike.
        args, params = dialect.create_connect_args(url)
        self._args, self._params = tuple(args), dict(params)
        # Told apart in pg_stat_activity, unless the database URL names the application itself.
        self._params.setdefault("application_name", APPLICATION_NAME)
        self._lock = threading.Lock()  # a Database may serve several loops (tests, benchmarks)
        self._idle: list[tuple[LaneConnection, float]] = []
        self._lent = 0  # connections lent, slots handed over and connections being opened
        self._waiters: deque[_Waiter] = deque()
        self._closed = False

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[LaneConnection]:
        """A connection of the lane for one use case, returned (or closed) after it.

        :class:`LaneBusy` when none is free and the lane is at its size; the database's own
        error (a DBAPIError, ``connection_invalidated``) when a new one cannot be opened."""
        connection, opened_at = await self._take()
        try:
            yield connection
        finally:
            if self._reusable(connection, opened_at):
                self._give_back((connection, opened_at))
            else:
                stale: list[tuple[LaneConnection, float]] = []
                if connection.broken or connection.closed:
                    # Lost, as the server restarted or failed over: so are the idle ones, most
                    # likely (SQLAlchemy's pool is invalidated whole for the same).
                    with self._lock:
                        stale, self._idle = self._idle, []
                for other, _ in stale:
                    other.pgconn.finish()
                self._give_back(None)  # its slot, to a waiting request or to no one
                await connection.close()

    @property
    def connections(self) -> int:
        """How many connections the lane holds open (idle or lent)."""
        with self._lock:
            return len(self._idle) + self._lent

    async def rows(
        self,
        connection: LaneConnection,
        statement: Executable,
        params: Mapping[str, Any],
    ) -> list[Any]:
        """Every row of ``statement`` on ``connection`` (``driver.rows_on_loop``)."""
        return await driver.rows_on_loop(
            connection.statement_cursor(), self.dialect, statement, params
        )

    def close(self) -> None:
        """Close the idle connections now and the lent ones as they come back; the requests
        waiting take the thread way (``Database.dispose``)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            waiters, self._waiters = list(self._waiters), deque()
        for connection, _ in idle:
            connection.pgconn.finish()  # what close() does, without a loop to await it on
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_expire, future)
            except RuntimeError:  # that loop is closed: the request is gone
                pass

    async def _take(self) -> tuple[LaneConnection, float]:
        waiting: asyncio.Future[_Handed] | None = None
        with self._lock:
            if self._closed:
                raise LaneBusy
            if self._idle:
                self._lent += 1
                return self._idle.pop()
            if self._lent >= self.size:
                if self.wait_seconds <= 0:
                    raise LaneBusy
                loop = asyncio.get_running_loop()
                waiting = loop.create_future()
                self._waiters.append((loop, waiting))
            else:
                self._lent += 1  # the slot is this request's while the connection opens
        if waiting is not None:
            handed = await self._wait(waiting)
            if handed is not None:
                return handed
            # The slot of a connection closed as it came back: open one in it.
        return await self._open()

    async def _wait(self, waiting: asyncio.Future[_Handed]) -> _Handed:
        """What :meth:`_give_back` hands this request; LaneBusy after ``wait_seconds``."""
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.wait_seconds, _expire, waiting)
        try:
            return await waiting
        except BaseException:  # LaneBusy, or the request was cancelled while it waited
            with self._lock:
                if (loop, waiting) in self._waiters:
                    self._waiters.remove((loop, waiting))
            # Handed over in the same turn of the loop as the expiry: pass it on.
            if waiting.done() and not waiting.cancelled() and waiting.exception() is None:
                self._give_back(waiting.result())
            raise
        finally:
            timer.cancel()

    def _give_back(self, handed: _Handed) -> None:
        """A connection (or, None, the slot of one closed) back: to the longest waiting
        request, else to the idle ones (or, a slot, to no one)."""
        with self._lock:
            if self._waiters and not self._closed:
                loop, future = self._waiters.popleft()
            else:
                if handed is not None and not self._closed:
                    self._idle.append(handed)
                    handed = None
                self._lent -= 1
                loop = None
        if loop is None:
            if handed is not None:  # returned after close(): not kept
                handed[0].pgconn.finish()
            return
        self._hand(loop, future, handed)

    def _hand(
        self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[_Handed], handed: _Handed
    ) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._deliver(future, handed)
            return
        try:  # a request waiting on another loop (a test's, a benchmark's thread)
            loop.call_soon_threadsafe(self._deliver, future, handed)
        except RuntimeError:  # that loop is closed: the request is gone
            self._give_back(handed)

    def _deliver(self, future: asyncio.Future[_Handed], handed: _Handed) -> None:
        if future.done():  # it stopped waiting (expired, cancelled) as this was handed over
            self._give_back(handed)
        else:
            future.set_result(handed)

    async def _open(self) -> tuple[LaneConnection, float]:
        """A new connection, in the slot this request holds (counted in ``_lent``)."""
        try:
            connection = await LaneConnection.connect(*self._args, **self._params, autocommit=True)
        except psycopg.Error as error:
            self._give_back(None)
            raise DBAPIError.instance(
                None, None, error, psycopg.Error, connection_invalidated=True, dialect=self.dialect
            ) from error
        except BaseException:
            self._give_back(None)
            raise
        return connection, time.monotonic()

    def _reusable(self, connection: LaneConnection, opened_at: float) -> bool:
        return (
            not self._closed
            and not connection.closed
            and not connection.broken
            and connection.pgconn.transaction_status == _IDLE
            and time.monotonic() - opened_at < self._recycle_seconds
        )


def _expire(waiting: asyncio.Future[_Handed]) -> None:
    if not waiting.done():
        waiting.set_exception(LaneBusy())
