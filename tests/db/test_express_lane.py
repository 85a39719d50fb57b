"""The express lane's line (``db/express.py``): a request finding every connection lent waits
its turn on the event loop, first come first served, for at most ``wait_seconds``; a
connection coming back goes to the longest waiting, on whatever loop it waits; a waiter that
gives up or is cancelled takes nothing with it; and ``close()`` sends the line the thread way.

PostgreSQL only: on SQLite there is no lane.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from voucherd.db.engine import Database
from voucherd.db.express import ExpressLane, LaneBusy, LaneConnection


@pytest.fixture
def lane(backend: str, fresh_database: Callable[..., Database]) -> ExpressLane:
    if backend != "postgresql":
        pytest.skip("the express lane is PostgreSQL's")
    database = fresh_database(pool_size=2)  # a lane of one connection
    assert database.express is not None
    assert database.express.size == 1
    return database.express


async def _one(lane: ExpressLane) -> int:
    async with lane.connection() as connection:
        rows = await connection.execute("SELECT 1")
        return int((await rows.fetchone() or [0])[0])


def test_a_request_waits_its_turn_and_takes_the_connection_handed_back(
    lane: ExpressLane,
) -> None:
    order: list[str] = []

    async def scenario() -> tuple[Any, Any]:
        first_in = asyncio.Event()

        async def first() -> Any:
            async with lane.connection() as connection:
                first_in.set()
                await asyncio.sleep(0.05)
                order.append("first done")
                return connection

        async def second() -> Any:
            await first_in.wait()
            async with lane.connection() as connection:  # every connection lent: waits
                order.append("second in")
                return connection

        return tuple(await asyncio.gather(first(), second()))

    held, taken = asyncio.run(scenario())
    assert order == ["first done", "second in"]
    assert taken is held  # handed over, not a new one opened
    assert lane.connections == 1


def test_waiters_are_served_first_come_first_served(lane: ExpressLane) -> None:
    served: list[int] = []

    async def scenario() -> None:
        lent = lane.connection()
        await lent.__aenter__()

        async def waiter(n: int) -> None:
            async with lane.connection():
                served.append(n)

        tasks = []
        for n in range(5):
            tasks.append(asyncio.create_task(waiter(n)))
            await asyncio.sleep(0.005)  # each in line before the next
        await lent.__aexit__(None, None, None)
        await asyncio.gather(*tasks)

    asyncio.run(scenario())
    assert served == [0, 1, 2, 3, 4]
    assert lane.connections == 1


def test_a_request_that_waited_too_long_gives_way_and_takes_nothing(lane: ExpressLane) -> None:
    lane.wait_seconds = 0.05

    async def scenario() -> int:
        lent = lane.connection()
        await lent.__aenter__()
        with pytest.raises(LaneBusy):
            await _one(lane)
        await lent.__aexit__(None, None, None)
        return await _one(lane)  # the connection came back to the idle ones, not the gone one

    assert asyncio.run(scenario()) == 1
    assert lane.connections == 1


def test_a_cancelled_waiter_takes_nothing_with_it(lane: ExpressLane) -> None:
    async def scenario() -> int:
        lent = lane.connection()
        await lent.__aenter__()
        waiting = asyncio.create_task(_one(lane))
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await lent.__aexit__(None, None, None)
        return await _one(lane)

    assert asyncio.run(scenario()) == 1
    assert lane.connections == 1


def test_the_slot_of_a_connection_closed_on_return_goes_to_the_waiter(
    lane: ExpressLane,
) -> None:
    async def scenario() -> tuple[Any, Any, int]:
        lent = lane.connection()
        closed = await lent.__aenter__()
        waiting = asyncio.create_task(_one(lane))
        await asyncio.sleep(0.01)
        await closed.close()  # as a failed statement leaves one: not lent again
        await lent.__aexit__(None, None, None)
        answered = await waiting
        async with lane.connection() as opened:
            return closed, opened, answered

    closed, opened, answered = asyncio.run(scenario())
    assert answered == 1
    assert opened is not closed
    assert lane.connections == 1


def test_a_connection_is_handed_to_a_request_waiting_on_another_loop(
    lane: ExpressLane,
) -> None:
    """As a benchmark's or a test's threads each run a loop of their own."""
    lent_elsewhere = threading.Event()
    release = threading.Event()

    def holder() -> None:
        async def hold() -> None:
            async with lane.connection():
                lent_elsewhere.set()
                while not release.is_set():
                    await asyncio.sleep(0.005)

        asyncio.run(hold())

    thread = threading.Thread(target=holder)
    thread.start()
    assert lent_elsewhere.wait(10)

    async def scenario() -> int:
        waiting = asyncio.create_task(_one(lane))
        await asyncio.sleep(0.02)
        assert not waiting.done()
        release.set()
        return await waiting

    assert asyncio.run(scenario()) == 1
    thread.join(10)
    assert lane.connections == 1


def test_closing_the_lane_sends_the_line_the_thread_way(lane: ExpressLane) -> None:
    async def scenario() -> None:
        lent = lane.connection()
        await lent.__aenter__()
        waiting = asyncio.create_task(_one(lane))
        await asyncio.sleep(0.01)
        lane.close()
        with pytest.raises(LaneBusy):
            await waiting
        await lent.__aexit__(None, None, None)
        with pytest.raises(LaneBusy):
            await _one(lane)

    asyncio.run(scenario())
    assert lane.connections == 0


def test_statements_of_different_shapes_share_a_connection_s_cursor(lane: ExpressLane) -> None:
    """A lane connection runs its statements on one kept cursor; each statement's rows still
    come in its own shape (names, timestamps at UTC), however they alternate, and a statement
    that fails leaves the cursor fit for the next."""
    one = text("SELECT 1 AS n")
    two = text(
        "SELECT CAST(:word AS text) AS word, "
        "CAST('2026-12-08 01:00:00+01' AS timestamptz) AS at, 2 AS n"
    )
    wrong = text("SELECT 1 / 0 AS n")

    async def scenario() -> list[Any]:
        got: list[Any] = []
        async with lane.connection() as connection:
            assert isinstance(connection, LaneConnection)
            cursor = connection.statement_cursor()
            for word in ("a", "b", "c"):
                got.append(await lane.rows(connection, one, {}))
                got.append(await lane.rows(connection, two, {"word": word}))
                with pytest.raises(DBAPIError):
                    await lane.rows(connection, wrong, {})
            assert connection.statement_cursor() is cursor
        return got

    got = asyncio.run(scenario())
    assert [row.n for rows in got[0::2] for row in rows] == [1, 1, 1]
    shaped = [rows[0] for rows in got[1::2]]
    assert [(row.word, row.n) for row in shaped] == [("a", 2), ("b", 2), ("c", 2)]
    assert {row.at for row in shaped} == {datetime(2026, 12, 8, 0, 0, tzinfo=UTC)}
    assert all(row.at.tzinfo is UTC for row in shaped)
