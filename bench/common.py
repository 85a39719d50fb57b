"""What the benchmarks share: a throw-away database, a voucherd server, an HTTP load generator,
the raw-floor client processes, CPU accounting, and the printed tables.

Every benchmark measures voucherd and the raw PostgreSQL floor for the same writes in the same
run, one after the other on the same database, so a noisy machine moves both figures together
and their ratio stays meaningful.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn

import psycopg
from sqlalchemy.engine import make_url

# The benchmarks reach these as common.X: cpu, failures, floor and loadgen are common's parts.
from bench.cpu import (  # noqa: F401
    CpuMeter,
    CpuSample,
    CpuUsage,
    postgres_serving,
    process_group,
    this_process,
)
from bench.failures import BenchFailed, require
from bench.floor import FloorBody, FloorClient, FloorResult, libpq_url, run_floor  # noqa: F401
from bench.loadgen import (  # noqa: F401
    BodyCheck,
    HttpResult,
    KeepAliveConnection,
    Requests,
    Server,
    drive_http,
    event_loop_runner,
    http_request,
)
from voucherd.auth.caller import Caller
from voucherd.auth.service import authenticate_token, create_key
from voucherd.campaigns.schemas import CampaignCreate
from voucherd.config import Settings
from voucherd.db.engine import Database, make_engine
from voucherd.db.migrate import upgrade
from voucherd.tenants.service import create_tenant
from voucherd.vouchers.mint import create_campaign

URL_VARIABLE = "VOUCHERD_BENCH_DATABASE_URL"
# Where a benchmark appends its runs as JSON lines for bench.table (see record_runs).
RESULTS_VARIABLE = "BENCH_RESULTS"
# The checkout these benchmarks belong to: its voucherd is what every child process must run.
REPO_ROOT = Path(__file__).resolve().parent.parent
# How many requests per window a benchmark's tenant may make: far above what one machine can
# send, so the guard counts every request (its cost is measured) but never refuses one.
BENCH_RATE_LIMIT = 1_000_000_000
_SOCKET_DIR = "/var/run/postgresql"
# How long a server may take to answer /readyz: on a loaded 2-core machine, importing the app in
# each worker process took over 60 s.
READY_SECONDS = 180
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


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def _admin(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(libpq_url(url), autocommit=True, connect_timeout=5)


@contextlib.contextmanager
def bench_database(url: str | None = None, *, setup: str | None = None) -> Iterator[str]:
    """A new ``voucherd_bench_*`` database migrated to head; dropped on the way out, whatever
    happens (errors, Ctrl-C, SIGTERM under :func:`run`). ``setup``: SQL run on it after the
    migrations, as one command (a schema variant to measure against the migrated one)."""
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
        if setup:
            with psycopg.connect(libpq_url(bench_url), autocommit=True) as conn:
                conn.execute(setup.encode())
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


def make_gift_tenant(url: str, *, value: int) -> tuple[BenchTenant, str]:
    """A tenant with a key, and a GIFT campaign (its id) opening every voucher at ``value``."""
    db = open_database(url)
    try:
        tenant = make_tenant(db)
        return tenant, make_gift_campaign(db, tenant, value=value)
    finally:
        db.dispose()


def make_gift_campaign(db: Database, tenant: BenchTenant, *, value: int) -> str:
    """A GIFT campaign with default codes and ``value`` as every voucher's opening balance."""
    body = CampaignCreate(
        name=f"bench-{secrets.token_hex(4)}", type="GIFT", currency="EUR", default_value=value
    )
    return create_campaign(db, tenant.caller, body).id


# --- the voucherd server --------------------------------------------------------------------


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
def voucherd_server(
    database_url: str, *, workers: int = 2, env: Mapping[str, str] | None = None
) -> Iterator[Server]:
    """``voucherd serve --workers N`` on a free port, stopped (its whole process group) on exit.

    Production defaults: the guard, metrics and JSON access logs (into a scratch file, shown
    if the server fails), and ``env`` on top (a benchmark's ``--env``: a setting to compare);
    a benchmark raises its tenant's rate limits with :func:`raise_rate_limits`, never by
    switching the guard off.
    """
    port = _free_port()
    command = [sys.executable, "-m", "voucherd", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", str(workers)]
    with tempfile.TemporaryFile() as log:
        # Its own session: Ctrl-C reaches only us, and we stop the server in order.
        process = subprocess.Popen(
            command,
            env=child_env(database_url, **(env or {})),
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
    deadline = time.monotonic() + READY_SECONDS
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
    raise RuntimeError(f"the server did not become ready in {READY_SECONDS} s:\n{_tail(log)}")


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


def run_postgres_floor(
    body: FloorBody, url: str, args: argparse.Namespace, params: Mapping[str, Any], **more: Any
) -> FloorResult:
    """:func:`run_floor` as the PostgreSQL benchmarks run it: their ``--clients``,
    ``--warmup`` and ``--seconds``, with PostgreSQL's CPU metered; ``more`` for ``connect`` and
    ``failures``."""
    return run_floor(
        body,
        url,
        clients=args.clients,
        warmup=args.warmup,
        seconds=args.seconds,
        params=params,
        meter=CpuMeter({"postgres": postgres_serving(url)}),
        **more,
    )


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


def add_env_option(command: argparse.ArgumentParser, help: str) -> None:
    """``--env NAME=VALUE``, repeatable: settings for the voucherd processes a benchmark
    starts (``args.env``: a list of (name, value))."""
    command.add_argument(
        "--env", action="append", default=[], type=_env_item, metavar="NAME=VALUE", help=help
    )


def _env_item(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError("NAME=VALUE")
    return name, value


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def print_runs(
    headers: Sequence[str], runs: Sequence[Sequence[float]], *, key: str | None = None
) -> None:
    """One row per run, numbered, then the medians when there were several; with ``key``, also
    recorded for ``bench.table`` (:func:`record_runs`)."""
    if key is not None:
        record_runs(key, headers, runs)
    rows: list[list[object]] = [[n, *figures] for n, figures in enumerate(runs, 1)]
    if len(runs) > 1:
        rows.append(["median", *(median([r[i] for r in runs]) for i in range(len(runs[0])))])
    print()
    print_table(["run", *headers], rows)


def record_runs(key: str, headers: Sequence[str], runs: Sequence[Sequence[float]]) -> None:
    """Append a benchmark's runs and their medians as one JSON line to ``$BENCH_RESULTS`` when
    it is set: how ``python -m bench.table`` collects the figures of the benchmarks it starts,
    without parsing their printed tables. Recorded only once every check of the run passed
    (a failed benchmark raises before it prints its summary)."""
    path = os.environ.get(RESULTS_VARIABLE)
    if not path:
        return
    columns = list(headers)
    line = {
        "key": key,
        "headers": columns,
        "runs": [list(map(float, run)) for run in runs],
        "median": {h: median([float(r[i]) for r in runs]) for i, h in enumerate(columns)},
    }
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")


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
