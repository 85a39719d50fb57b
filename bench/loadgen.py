"""The HTTP load generator: keep-alive connections on asyncio (uvloop when installed), one request
in flight on each, every answer's status tallied and every expected body checked."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from bench.cpu import CpuMeter, CpuUsage, process_group
from bench.failures import BenchFailed


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    pid: int  # also its process group: the supervisor and its workers

    def pids(self) -> list[int]:
        return process_group(self.pid)


def http_request(server: Server, method: str, path: str, token: str, body: bytes) -> bytes:
    """One HTTP/1.1 keep-alive request, built once and sent as is every time."""
    head = (
        f"{method} {path} HTTP/1.1\r\n"
        f"Host: {server.host}:{server.port}\r\n"
        f"Authorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


# What a benchmark expects of an answer's body: given the request sent and the body received,
# None when the body is what was asked for, else what is wrong with it.
BodyCheck = Callable[[bytes, bytes], str | None]
# One request sent as is every time, or a function drawing the next one (e.g. a random card).
Requests = bytes | Callable[[], bytes]


@dataclass
class HttpResult:
    statuses: Counter[int]  # of the answers completed inside the measured window
    latencies: list[float]  # seconds, of the same answers
    seconds: float
    cpu: CpuUsage
    everything: Counter[int]  # every answer, warm-up included: what the database must hold
    reconnects: int = 0
    samples: list[bytes] = field(default_factory=list)  # a few unexpected answers, for the log
    wrong_bodies: int = 0  # answers with the expected status and a body not asked for

    def count(self, status: int) -> int:
        return self.statuses[status]

    def unexpected(self, status: int) -> dict[int, int]:
        """Answers other than ``status`` over the whole run, warm-up included."""
        return {s: n for s, n in sorted(self.everything.items()) if s != status}

    def latency_ms(self, quantile: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]

    def require_clean(self, expect: int, what: str) -> None:
        """:class:`BenchFailed` (after printing what came instead) unless every answer of the
        run, warm-up included, had status ``expect`` and the body asked for, on connections
        the server never dropped. A 429 is a failure like any other: the benchmark's tenant
        has the limits it needs (:func:`raise_rate_limits`)."""
        unexpected = self.unexpected(expect)
        if not unexpected and not self.reconnects and not self.wrong_bodies:
            return
        print(
            f"    NOT {expect}: {unexpected}, wrong bodies: {self.wrong_bodies}, "
            f"dropped connections: {self.reconnects}"
        )
        for sample in self.samples:
            print(f"      {sample!r}")
        problems = [f"{n:,} answered {status}" for status, n in unexpected.items()]
        problems += [f"{self.wrong_bodies:,} bodies not asked for"] if self.wrong_bodies else []
        problems += [f"{self.reconnects:,} dropped connections"] if self.reconnects else []
        raise BenchFailed(f"{what}: {', '.join(problems)} (of {sum(self.everything.values()):,})")


class _Load:
    """The shared state of one load run: the requests, the window, the tallies."""

    def __init__(
        self,
        requests: Requests,
        expect: int,
        measure_from: float,
        stop_at: float,
        server: Server,
        check: BodyCheck | None = None,
    ) -> None:
        self.next_request: Callable[[], bytes] = (
            requests if callable(requests) else (lambda: requests)
        )
        self.check = check
        self.wrong_bodies = 0
        self.expect = expect
        self.measure_from = measure_from
        self.stop_at = stop_at
        self.server = server
        self.stopping = False
        self.failure: Exception | None = None
        self.open = 0
        self.reconnects = 0
        self.closed = asyncio.Event()
        self.statuses: Counter[int] = Counter()
        self.everything: Counter[int] = Counter()
        self.latencies: list[float] = []
        self.samples: list[bytes] = []

    def answered(self, status: int, latency: float, raw: bytes | None) -> None:
        now = time.time()
        self.everything[status] += 1
        if self.measure_from <= now < self.stop_at:
            self.statuses[status] += 1
            self.latencies.append(latency)
        if raw is not None and len(self.samples) < 3:
            self.samples.append(raw[:500])

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: _Connection(self), self.server.host, self.server.port)


class KeepAliveConnection(asyncio.Protocol):
    """One keep-alive connection with one request in flight; parses just enough HTTP/1.1.

    Subclasses say what to send next (:meth:`next_request`) and what an answer means
    (:meth:`answered`); the load they serve keeps the run's state (``open``, ``stopping``,
    ``stop_at``, ``failure``, ``reconnects``, ``closed``, ``connect()``).
    """

    def __init__(self, load: Any) -> None:
        self.load = load
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.sent_at = 0.0
        self.status = 0
        self.body_length: int | None = None

    def next_request(self) -> bytes:
        raise NotImplementedError

    def answered(self, status: int, latency: float, answer: bytes, body_start: int) -> None:
        raise NotImplementedError

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.load.open += 1
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        request = self.next_request()
        self.sent_at = time.perf_counter()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        try:
            while self._take_response():
                if self.load.stopping or time.time() >= self.load.stop_at:
                    self.transport.close()
                    return
                self._send()
        except (ValueError, IndexError, KeyError, RuntimeError) as exc:  # a garbled answer
            self.load.failure = exc
            self.load.stopping = True
            self.transport.close()

    def _take_response(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        if self.body_length is None:
            lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            self.status = int(lines[0].split(" ", 2)[1])
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    self.body_length = int(value)
            if self.body_length is None:
                raise RuntimeError(f"an answer without Content-Length: {lines}")
        total = end + 4 + self.body_length
        if len(self.buffer) < total:
            return False
        answer = bytes(self.buffer[:total])
        del self.buffer[:total]
        self.body_length = None
        self.answered(self.status, time.perf_counter() - self.sent_at, answer, end + 4)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.load.open -= 1
        if not self.load.stopping and time.time() < self.load.stop_at:
            # The server should never close a busy keep-alive connection: count it, go on.
            self.load.reconnects += 1
            asyncio.get_running_loop().create_task(self.load.connect())
        elif self.load.open == 0:
            self.load.closed.set()


class _Connection(KeepAliveConnection):
    """The load's requests, one after the other; each expected answer's body is checked, and
    only unexpected answers are kept, as samples."""

    sent = b""

    def next_request(self) -> bytes:
        self.sent = self.load.next_request()
        return self.sent

    def answered(self, status: int, latency: float, answer: bytes, body_start: int) -> None:
        load = self.load
        if status != load.expect:
            load.answered(status, latency, answer)
            return
        problem = load.check(self.sent, answer[body_start:]) if load.check else None
        if problem is None:
            load.answered(status, latency, None)
            return
        load.wrong_bodies += 1
        load.answered(status, latency, f"{problem}: ".encode() + answer)


def drive_http(
    server: Server,
    requests: Requests,
    *,
    expect: int,
    connections: int,
    warmup: float,
    seconds: float,
    meter: CpuMeter,
    check: BodyCheck | None = None,
) -> HttpResult:
    """Keep ``connections`` requests in flight for ``warmup + seconds``; count the answers that
    complete inside the last ``seconds``; ``check`` each answer with status ``expect``. Runs on
    uvloop when it is installed."""
    with event_loop_runner() as runner:
        return runner.run(
            _drive(server, requests, expect, connections, warmup, seconds, meter, check)
        )


def event_loop_runner() -> asyncio.Runner:
    """uvloop when it is installed (the load generator's CPU is then negligible), else asyncio's."""
    try:
        import uvloop

        return asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        return asyncio.Runner()


async def _drive(
    server: Server,
    requests: Requests,
    expect: int,
    connections: int,
    warmup: float,
    seconds: float,
    meter: CpuMeter,
    check: BodyCheck | None,
) -> HttpResult:
    measure_from = time.time() + warmup
    load = _Load(requests, expect, measure_from, measure_from + seconds, server, check)
    for _ in range(connections):
        await load.connect()
    await asyncio.sleep(max(0.0, measure_from - time.time()))
    start = meter.sample()
    await asyncio.sleep(max(0.0, load.stop_at - time.time()))
    end = meter.sample()
    load.stopping = True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(load.closed.wait(), timeout=30)
    if load.failure is not None:
        raise RuntimeError("the HTTP load run failed") from load.failure
    return HttpResult(
        load.statuses,
        load.latencies,
        seconds,
        end.since(start),
        load.everything,
        load.reconnects,
        load.samples,
        load.wrong_bodies,
    )
