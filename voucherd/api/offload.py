"""Blocking work from an ``async def`` route, on a thread: the one trip a hot request makes.

FastAPI runs a plain ``def`` route through anyio's worker threads (a capacity limiter, a cancel
scope, a pure-Python queue whose ``put`` wakes the thread through a ``Condition``): 45-70 µs of
CPU per trip on the benchmark machine, against 19 µs through the standard library's executor,
whose queue is C. A hot route (issue, redeem) that is ``async def`` and hands its whole blocking
body to :func:`off_loop` pays the cheaper trip, once. The request's context (its id for the
logs, the guard's visit, the tenant noted for the access line) goes with it, as with anyio.

The body runs to its end even if the awaiting request is cancelled, as anyio's threads do: a
use case is one transaction, committed or rolled back, never abandoned half-way.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

_P = ParamSpec("_P")
_T = TypeVar("_T")

# As many threads as anyio's default limiter gives FastAPI (40): more would only queue on the
# database pool (VOUCHERD_DB_POOL_SIZE, three times over at most). Threads start on demand.
_THREADS = ThreadPoolExecutor(max_workers=40, thread_name_prefix="voucherd-route")


async def off_loop(function: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """``function(*args, **kwargs)`` on a worker thread, in a copy of the current context.

    The thread hands its outcome straight to an asyncio future (one ``call_soon_threadsafe``)
    rather than through ``run_in_executor``'s chained futures, which copy the state across in
    three more callbacks."""
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[_T] = loop.create_future()
    context = contextvars.copy_context()

    def run() -> None:
        try:
            result = context.run(function, *args, **kwargs)
        except BaseException as exc:  # noqa: BLE001  (handed to the awaiting task, as is)
            loop.call_soon_threadsafe(_fail, outcome, exc)
        else:
            loop.call_soon_threadsafe(_succeed, outcome, result)

    _THREADS.submit(run)
    return await outcome


def _succeed(outcome: asyncio.Future[_T], result: _T) -> None:
    if not outcome.cancelled():  # the request went away; the work itself is done
        outcome.set_result(result)


def _fail(outcome: asyncio.Future[Any], exc: BaseException) -> None:
    if not outcome.cancelled():
        outcome.set_exception(exc)
