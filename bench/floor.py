"""The raw floor: client processes (no GIL between them, as with pgbench), one psycopg connection
each, running a minimal transaction in a loop; what a benchmark compares voucherd against."""

from __future__ import annotations

import multiprocessing
import signal
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from bench.cpu import CpuMeter, CpuUsage


def libpq_url(url: str) -> str:
    """The URL as libpq (and so psycopg) spells it: SQLAlchemy's ``+driver`` suffix removed."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


# How long the floor clients may take to connect, on a machine as busy as a shared one gets.
_START_SECONDS = 600


@dataclass
class FloorClient:
    """What one floor transaction needs: the client's number, the ids the benchmark set up,
    and the client's own counter."""

    index: int
    params: dict[str, Any]
    seq: int = 0
    state: dict[str, Any] = field(default_factory=dict)  # the body's own, e.g. pre-drawn ids


# One transaction of the floor, on an autocommit connection (so the body says where BEGIN and
# COMMIT are). A module-level function, so that it can be sent to the client processes.
FloorBody = Callable[[Any, FloorClient], None]
# How a floor client opens its connection, given the URL: a module-level function too. The
# default is psycopg on PostgreSQL; bench.sqlite passes one that opens a SQLite file.
FloorConnect = Callable[[str], Any]


def connect_postgresql(url: str) -> psycopg.Connection[Any]:
    """An autocommit psycopg connection (the body writes its own transactions)."""
    return psycopg.connect(libpq_url(url), autocommit=True)


@dataclass
class FloorResult:
    transactions: int  # completed inside the measured window
    seconds: float
    cpu: CpuUsage
    errors: Counter[str]

    @property
    def rate(self) -> float:
        return self.transactions / self.seconds


def run_floor(
    body: FloorBody,
    url: str,
    *,
    clients: int,
    warmup: float,
    seconds: float,
    params: Mapping[str, Any],
    meter: CpuMeter,
    connect: FloorConnect = connect_postgresql,
    failures: tuple[type[Exception], ...] = (psycopg.Error,),
) -> FloorResult:
    """Run ``body`` in a loop in ``clients`` processes (no GIL between them, as with pgbench)
    for ``warmup + seconds``, counting the transactions completed inside the last ``seconds``.

    ``connect`` opens each client's connection from ``url``; an exception of ``failures``
    raised by ``body`` is counted as a failed transaction (any of them fails the benchmark).
    """
    # forkserver, with the body's module (the benchmark, and voucherd with it) imported by the
    # server before it forks: each client starts without importing anything. Importing it in
    # each of 32 clients took over two minutes on a machine with a load average of 40.
    context = multiprocessing.get_context("forkserver")
    module = getattr(body, "__module__", None)
    if module and module != "__main__":
        context.set_forkserver_preload([module])
    ready: multiprocessing.Queue[tuple[int, str | None]] = context.Queue()
    results: multiprocessing.Queue[tuple[int, int, dict[str, int]]] = context.Queue()
    go = context.Event()
    finish = context.Event()
    window = context.Array("d", 2)
    processes = [
        context.Process(
            target=_floor_client,
            args=(
                body,
                connect,
                url,
                failures,
                i,
                dict(params),
                ready,
                go,
                finish,
                window,
                results,
            ),
            daemon=True,
        )
        for i in range(clients)
    ]
    try:
        for process in processes:
            process.start()
        for _ in processes:
            _, failure = ready.get(timeout=_START_SECONDS)
            if failure is not None:
                raise RuntimeError(f"a floor client could not start: {failure}")
        measure_from = time.time() + warmup
        window[0], window[1] = measure_from, measure_from + seconds
        go.set()
        meter.add("floor clients", lambda: [p.pid for p in processes if p.pid is not None])
        time.sleep(max(0.0, measure_from - time.time()))
        start = meter.sample()
        time.sleep(max(0.0, window[1] - time.time()))
        end = meter.sample()
        done, errors = 0, Counter[str]()
        for _ in processes:
            _, count, failed = results.get(timeout=120)
            done += count
            errors.update(failed)
        return FloorResult(done, seconds, end.since(start), errors)
    finally:
        finish.set()
        meter.remove("floor clients")
        for process in processes:
            if process.pid is None:
                continue  # never started
            if process.is_alive():
                process.terminate()
            process.join(5)


def _floor_client(
    body: FloorBody,
    connect: FloorConnect,
    url: str,
    failures: tuple[type[Exception], ...],
    index: int,
    params: dict[str, Any],
    ready: multiprocessing.Queue[tuple[int, str | None]],
    go: Any,
    finish: Any,
    window: Any,
    results: multiprocessing.Queue[tuple[int, int, dict[str, int]]],
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    client = FloorClient(index, params)
    errors: Counter[str] = Counter()
    done = 0
    refused: tuple[type[Exception], ...] = (*failures, OSError)
    try:
        conn = connect(url)
    except refused as exc:
        ready.put((index, repr(exc)))
        return
    with conn:
        ready.put((index, None))
        go.wait()
        measure_from, stop_at = window[0], window[1]
        while True:
            try:
                body(conn, client)
                ok = True
            except failures as exc:
                errors[type(exc).__name__] += 1
                ok = False
            now = time.time()
            if now >= stop_at:
                break
            if ok and now >= measure_from:
                done += 1
            client.seq += 1
        results.put((index, done, dict(errors)))
        finish.wait(60)  # keep this process and its backend until the parent has read their CPU
