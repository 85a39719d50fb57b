"""What the benchmarks share: a throw-away database, a voucherd server, an HTTP load generator,
the raw-floor client processes, CPU accounting, and the printed tables.

Every benchmark measures voucherd and the raw PostgreSQL floor for the same writes in the same
run, one after the other on the same database, so a noisy machine moves both figures together
and their ratio stays meaningful.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import multiprocessing
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NoReturn, cast

import psycopg
from sqlalchemy.engine import make_url

from voucherd.auth.service import Caller, authenticate_token, create_key, create_tenant
from voucherd.campaigns.schemas import CampaignCreate
from voucherd.campaigns.service import create_campaign
from voucherd.config import Settings
from voucherd.db.engine import Database, make_engine
from voucherd.db.migrate import upgrade

URL_VARIABLE = "VOUCHERD_BENCH_DATABASE_URL"
# The checkout these benchmarks belong to: its voucherd is what every child process must run.
REPO_ROOT = Path(__file__).resolve().parent.parent
# How many requests per window a benchmark's tenant may make: far above what one machine can
# send, so the guard counts every request (its cost is measured) but never refuses one.
BENCH_RATE_LIMIT = 1_000_000_000
_SOCKET_DIR = "/var/run/postgresql"
# Tables a phase writes; emptied before each phase so that every phase starts alike.
_VOUCHER_TABLES = "voucher, ledger_entry, voucher_event, redemption, idempotency_record"


# --- the database ---------------------------------------------------------------------------


def server_url() -> str:
    """Where the bench databases are created: ``$VOUCHERD_BENCH_DATABASE_URL``, else the local
    server over its unix socket (how DESIGN.md's budget was measured), else over TCP."""
    url = os.environ.get(URL_VARIABLE)
    if url:
        return url
    if Path(_SOCKET_DIR, ".s.PGSQL.5432").exists():
        return f"postgresql://postgres@/postgres?host={_SOCKET_DIR}"
    return "postgresql://postgres@127.0.0.1:5432/postgres"


def libpq_url(url: str) -> str:
    """The URL as libpq (and so psycopg) spells it: SQLAlchemy's ``+driver`` suffix removed."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def _admin(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(libpq_url(url), autocommit=True, connect_timeout=5)


@contextlib.contextmanager
def bench_database(url: str | None = None) -> Iterator[str]:
    """A new ``voucherd_bench_*`` database migrated to head; dropped on the way out, whatever
    happens (errors, Ctrl-C, SIGTERM under :func:`run`)."""
    base = url or server_url()
    name = f"voucherd_bench_{secrets.token_hex(4)}"
    bench_url = _with_database(base, name)
    try:
        with _admin(base) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        engine = make_engine(bench_url)
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        yield bench_url
    finally:
        with _admin(base) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_version(url: str) -> str:
    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def where(url: str) -> str:
    parsed = make_url(url)
    return str(parsed.query.get("host") or f"{parsed.host}:{parsed.port or 5432}")


def reset_tables(url: str) -> None:
    """Empty the voucher tables and flush dirty pages, so that a phase neither inherits the
    previous phase's rows nor pays for its checkpoint."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(f"TRUNCATE {_VOUCHER_TABLES} CASCADE")
    settle(url)


def settle(url: str) -> None:
    """Vacuum, analyze and checkpoint: a phase after a setup (a mint) pays for neither its
    dead rows, its stale statistics nor its dirty pages."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute("CHECKPOINT")


def open_database(url: str, *, pool_size: int = 10) -> Database:
    """voucherd's own :class:`Database` on the bench database, as ``voucherd serve`` builds it."""
    return Database.from_settings(Settings(database_url=url, db_pool_size=pool_size))


class BenchFailed(Exception):
    """An answer, a row count or a ledger other than the benchmark expected: whatever the run
    measured, it was not the path it meant to measure, so it prints no figures to compare."""


def require(ok: bool, what: str) -> None:
    """Stop the benchmark (exit status 1, no ratio printed) unless ``ok``."""
    if not ok:
        raise BenchFailed(what)


def run(main: Callable[[], int]) -> NoReturn:
    """Run a benchmark's ``main`` as a command. SIGTERM unwinds like Ctrl-C, so the server and
    the database are cleaned up either way, and an interruption ends quietly. A
    :class:`BenchFailed` ends it with status 1 and no summary: the figures of a run that got
    unexpected answers (a 429 from the guard, say) measure something else."""

    def _exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # progress shows through a pipe, e.g. tee
    try:
        status = main()
    except KeyboardInterrupt:
        print("\ninterrupted; the server and the bench database are gone", file=sys.stderr)
        status = 130
    except BenchFailed as failure:
        print(f"\nFAILED: {failure}\nno figures: this run did not measure what it should")
        status = 1
    sys.exit(status)


# --- tenants, keys and campaigns, made through voucherd's own services --------------------------


@dataclass(frozen=True)
class BenchTenant:
    name: str
    id: str
    token: str  # for ``Authorization: Bearer``
    caller: Caller  # for calling services in-process


def make_tenant(db: Database) -> BenchTenant:
    name = f"bench-{secrets.token_hex(4)}"
    tenant = create_tenant(db, name)
    key = create_key(db, name, scopes=["issue", "redeem", "manage"])
    return BenchTenant(name, tenant.id, key.token, authenticate_token(db, key.token))


def make_gift_campaign(db: Database, tenant: BenchTenant, *, value: int) -> str:
    """A GIFT campaign with default codes and ``value`` as every voucher's opening balance."""
    body = CampaignCreate(
        name=f"bench-{secrets.token_hex(4)}", type="GIFT", currency="EUR", default_value=value
    )
    return create_campaign(db, tenant.caller, body).id


# --- the voucherd server --------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    pid: int  # also its process group: the supervisor and its workers

    def pids(self) -> list[int]:
        return process_group(self.pid)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def child_env(database_url: str, **settings: str) -> dict[str, str]:
    """The environment of a voucherd child process: production defaults (the guard, metrics,
    JSON logs at INFO: every ``VOUCHERD_*`` this shell may carry is dropped), the bench
    database, ``settings`` (``VOUCHERD_...`` names) on top, and this checkout first on
    ``PYTHONPATH``, so the child runs the voucherd the benchmark imported, whatever an editable
    install elsewhere points at."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOUCHERD_")}
    path = [str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(path))
    return {**env, "VOUCHERD_DATABASE_URL": database_url, **settings}


def voucherd_origin() -> str:
    """Where this process and a child started with :func:`child_env` import voucherd from;
    :class:`BenchFailed` if they differ (a bench measuring another checkout's code)."""
    import voucherd

    here = str(Path(voucherd.__file__).resolve().parent)
    probe = "import pathlib, voucherd; print(pathlib.Path(voucherd.__file__).resolve().parent)"
    child = subprocess.run(
        [sys.executable, "-c", probe],
        env=child_env("sqlite://"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    require(child == here, f"this process imports voucherd from {here}, its children from {child}")
    return here


@contextlib.contextmanager
def voucherd_server(database_url: str, *, workers: int = 2) -> Iterator[Server]:
    """``voucherd serve --workers N`` on a free port, stopped (its whole process group) on exit.

    Production defaults: the guard, metrics and JSON access logs (into a scratch file, shown
    if the server fails); a benchmark raises its tenant's rate limits with
    :func:`raise_rate_limits`, never by switching the guard off.
    """
    port = _free_port()
    command = [sys.executable, "-m", "voucherd", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", str(workers)]
    with tempfile.TemporaryFile() as log:
        # Its own session: Ctrl-C reaches only us, and we stop the server in order.
        process = subprocess.Popen(
            command,
            env=child_env(database_url),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_ready(process, port, log)
            yield Server("127.0.0.1", port, process.pid)
        finally:
            _stop_group(process)
            if process.returncode not in (0, -signal.SIGTERM, None):
                print(f"voucherd server exited with {process.returncode}:\n{_tail(log)}")


def raise_rate_limits(server: Server, token: str, limit: int = BENCH_RATE_LIMIT) -> None:
    """Give the token's tenant room for a benchmark: ``PATCH /api/v1/tenant`` with
    ``rate_limits`` per key and per tenant (the guessing thresholds keep their defaults).

    Call it before the tenant's first other request: each API process trusts the limits it
    read for ``key_cache_seconds``, and this answer resets only the process that served it.
    """
    body = json.dumps({"rate_limits": {"per_key": limit, "per_tenant": limit}}).encode()
    request = urllib.request.Request(
        f"http://{server.host}:{server.port}/api/v1/tenant",
        data=body,
        method="PATCH",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            status, shown = answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        detail = f"PATCH /api/v1/tenant answered {refused.code}: {refused.read()!r}"
        raise BenchFailed(detail) from None
    limits = shown.get("rate_limits", {})
    require(
        status == 200 and limits.get("per_key") == limit and limits.get("per_tenant") == limit,
        f"PATCH /api/v1/tenant answered {status} with rate_limits {limits}",
    )


def _wait_ready(process: subprocess.Popen[bytes], port: int, log: IO[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited early:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server did not become ready in 60 s:\n{_tail(log)}")


def _tail(log: IO[bytes], size: int = 4000) -> str:
    """The end of a child's log (JSON access lines at INFO: it may be large)."""
    log.flush()
    log.seek(0, os.SEEK_END)
    log.seek(max(0, log.tell() - size))
    return log.read().decode(errors="replace")


def _stop_group(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # a worker that outlived its supervisor


# --- the HTTP load generator ------------------------------------------------------------------


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


# --- the raw floor: one psycopg connection per client process --------------------------------


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
FloorBody = Callable[[psycopg.Connection[Any], FloorClient], None]


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
) -> FloorResult:
    """Run ``body`` in a loop in ``clients`` processes (no GIL between them, as with pgbench)
    for ``warmup + seconds``, counting the transactions completed inside the last ``seconds``."""
    # forkserver: the benchmark module is imported once, not once per client.
    context = multiprocessing.get_context("forkserver")
    ready: multiprocessing.Queue[tuple[int, str | None]] = context.Queue()
    results: multiprocessing.Queue[tuple[int, int, dict[str, int]]] = context.Queue()
    go = context.Event()
    finish = context.Event()
    window = context.Array("d", 2)
    processes = [
        context.Process(
            target=_floor_client,
            args=(body, libpq_url(url), i, dict(params), ready, go, finish, window, results),
            daemon=True,
        )
        for i in range(clients)
    ]
    try:
        for process in processes:
            process.start()
        for _ in processes:
            _, failure = ready.get(timeout=120)
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
    conninfo: str,
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
    try:
        conn = psycopg.connect(conninfo, autocommit=True)
    except psycopg.Error as exc:
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
            except psycopg.Error as exc:
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


# --- CPU accounting from /proc -----------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int | str) -> list[str] | None:
    """Fields of /proc/PID/stat from the state on (field 3), or None if the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return [stat[stat.index("(") + 1 : stat.rindex(")")], *stat[stat.rindex(")") + 2 :].split()]


def _cpu_seconds(pid: int) -> float:
    fields = _stat_fields(pid)
    return 0.0 if fields is None else (int(fields[12]) + int(fields[13])) / _TICKS


def _all_processes() -> Iterator[tuple[int, list[str]]]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(entry.name)) is not None:
            yield int(entry.name), fields


def process_group(pgid: int) -> list[int]:
    return [pid for pid, fields in _all_processes() if int(fields[3]) == pgid]


def postgres_serving(url: str) -> Callable[[], list[int]]:
    """The PostgreSQL processes working for the database of ``url``: its backends and the
    server's shared ones (WAL writer, checkpointer...), not other databases' backends."""
    database = make_url(url).database or ""

    def pids() -> list[int]:
        found = []
        for pid, fields in _all_processes():
            if fields[0] != "postgres":
                continue
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            # A client backend's title is "postgres: <cluster>: <user> <database> <client> ..."
            serves_a_client = "[local]" in title or "(" in title
            if not serves_a_client or f" {database} " in title:
                found.append(pid)
        return found

    return pids


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except OSError:
        return 0, 0
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


@dataclass(frozen=True)
class CpuSample:
    at: float
    per_pid: dict[str, dict[int, float]]
    machine: tuple[int, int]

    def then(self, newer: CpuSample) -> CpuSample:
        """``newer``, still counting the processes that ended since this sample was taken."""
        per_pid = {
            name: {**self.per_pid.get(name, {}), **pids} for name, pids in newer.per_pid.items()
        }
        return CpuSample(newer.at, per_pid, newer.machine)

    def since(self, start: CpuSample) -> CpuUsage:
        wall = self.at - start.at
        groups = {
            name: {
                pid: seconds - start.per_pid.get(name, {}).get(pid, 0.0)
                for pid, seconds in pids.items()
                if seconds > 0  # 0: the process ended in the window; its time is unknown
            }
            for name, pids in self.per_pid.items()
        }
        busy = self.machine[0] - start.machine[0]
        total = self.machine[1] - start.machine[1]
        return CpuUsage(wall, groups, busy / total if total else float("nan"))


@dataclass(frozen=True)
class CpuUsage:
    """CPU seconds spent by each group of processes during a measured window."""

    wall: float
    per_pid: dict[str, dict[int, float]]
    machine_busy: float  # fraction of all cores

    def seconds(self, group: str) -> float:
        return sum(self.per_pid.get(group, {}).values())

    def describe(self, operations: int, unit: str) -> str:
        """E.g. ``CPU per request: voucherd 610 µs (1.21 cores: 0.62+0.59), ...``."""
        parts = []
        for group, pids in self.per_pid.items():
            total = sum(pids.values())
            per_op = 1e6 * total / operations if operations else float("nan")
            busy = sorted(
                (s / self.wall for s in pids.values() if s / self.wall >= 0.05), reverse=True
            )
            split = f": {'+'.join(f'{c:.2f}' for c in busy)}" if 1 < len(busy) <= 4 else ""
            parts.append(f"{group} {per_op:,.0f} µs ({total / self.wall:.2f} cores{split})")
        return (
            f"CPU per {unit}: {', '.join(parts)}; machine {self.machine_busy:.0%} busy, "
            f"{self.others:.2f} cores of it by other processes"
        )

    @property
    def others(self) -> float:
        """Cores busy with processes outside the groups: the noise of a shared machine."""
        ours = sum(sum(pids.values()) for pids in self.per_pid.values()) / self.wall
        return max(0.0, self.machine_busy * (os.cpu_count() or 1) - ours)


class CpuMeter:
    """Samples the CPU time of named groups of processes (this one, the server, PostgreSQL)."""

    def __init__(self, groups: Mapping[str, Callable[[], Iterable[int]]] | None = None) -> None:
        self.groups: dict[str, Callable[[], Iterable[int]]] = dict(groups or {})

    def add(self, name: str, pids: Callable[[], Iterable[int]]) -> None:
        self.groups[name] = pids

    def remove(self, name: str) -> None:
        self.groups.pop(name, None)

    def sample(self) -> CpuSample:
        per_pid = {
            name: {pid: _cpu_seconds(pid) for pid in pids()} for name, pids in self.groups.items()
        }
        return CpuSample(time.time(), per_pid, _machine_ticks())


def this_process() -> list[int]:
    return [os.getpid()]


# --- arguments and printing ---------------------------------------------------------------------


def parser(description: str, *, seconds: float = 20.0) -> argparse.ArgumentParser:
    command = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    command.add_argument(
        "--seconds", type=float, default=seconds, help="measured seconds of each phase"
    )
    command.add_argument(
        "--warmup", type=float, default=3.0, help="unmeasured seconds before each phase"
    )
    command.add_argument(
        "--runs", type=int, default=1, help="repeat voucherd and floor phases; print medians"
    )
    return command


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def print_runs(headers: Sequence[str], runs: Sequence[Sequence[float]]) -> None:
    """One row per run, numbered, then the medians when there were several."""
    rows: list[list[object]] = [[n, *figures] for n, figures in enumerate(runs, 1)]
    if len(runs) > 1:
        rows.append(["median", *(median([r[i] for r in runs]) for i in range(len(runs[0])))])
    print()
    print_table(["run", *headers], rows)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def machine_line(url: str) -> str:
    return (
        f"{os.cpu_count()} CPUs, PostgreSQL {server_version(url)} via {where(url)}, "
        f"Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d %H:%M %Z')}"
    )
