"""Delivering: messages per second through ``voucherd worker`` processes to a local provider,
beside two floors measured in the same run.

voucherd: a backlog of SMS deliveries (PENDING outbox rows of real vouchers) and N
``voucherd worker`` processes with default settings, sending to a local Twilio-compatible
provider (an asyncio HTTP server in its own process, answering 201 with a message SID). The
figure is the rate at which deliveries reach SENT in the measured window.

Floors, on the same database after a fresh backlog:
* the raw outbox cycle: N psycopg client processes claiming batches with ``FOR UPDATE SKIP
  LOCKED`` (state, attempt, lease and the claim events in one statement) and recording each row
  SENT with its event (one statement, one transaction per row), sending nothing;
* the provider's own rate: keep-alive HTTP connections posting the same form, no database.

The workers run with production defaults (JSON logs at INFO, metrics). A delivery that failed
or was retried, a backlog that ran out, a failed floor transaction or a provider answer other
than 201 stops the benchmark with exit status 1 and no ratio.

    python -m bench.deliver [--seconds 20] [--workers 2] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

if __package__ in (None, ""):  # run as ``python bench/deliver.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from voucherd.delivery.settings import DeliverySettingsPatch
from voucherd.ids import new_ids
from voucherd.tenants.service import configure_delivery
from voucherd.vouchers.mint import mint_vouchers
from voucherd.vouchers.schemas import MintVouchers

PHONE = "+447911123456"
BATCH = 32  # the floor's claim size (voucherd's default delivery_batch_size)
_TWILIO_ANSWER = b'{"sid": "SM%s", "status": "queued"}'

# --- the provider: Twilio's Messages API, as fast as asyncio can answer ---------------------------


class _ProviderProtocol(asyncio.Protocol):
    count = 0

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            if head.startswith("GET /count"):
                body = str(_ProviderProtocol.count).encode()
                status = b"200 OK"
            else:
                _ProviderProtocol.count += 1
                body = _TWILIO_ANSWER % secrets.token_hex(16).encode()
                status = b"201 Created"
            assert self.transport is not None
            self.transport.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )


def serve_provider(port: int) -> None:
    """The provider process (``python -m bench.deliver --provider PORT``)."""
    runner = common.event_loop_runner()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_ProviderProtocol, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    with runner:
        runner.run(main())


@contextlib.contextmanager
def provider() -> Iterator[common.Server]:
    port = common._free_port()
    command = [sys.executable, "-m", "bench.deliver", "--provider", str(port)]
    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen(command, cwd=root, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                provider_count(port)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the provider did not start") from None
                time.sleep(0.1)
        yield common.Server("127.0.0.1", port, process.pid)
    finally:
        common._stop_group(process)


def provider_count(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=5) as answer:
        return int(answer.read())


# --- the backlog --------------------------------------------------------------------------------


def setup(url: str, provider_url: str) -> tuple[common.BenchTenant, str]:
    db = common.open_database(url)
    try:
        tenant = common.make_tenant(db)
        campaign = common.make_gift_campaign(db, tenant, value=2500)
        sms = {
            "account_sid": "AC" + "0" * 32,
            "auth_token": "bench-token",
            "from_number": "+15005550006",
        }
        patch = DeliverySettingsPatch.model_validate({"phone_channel": "sms", "sms": sms})
        configure_delivery(db, tenant.id, patch)
    finally:
        db.dispose()
    return tenant, campaign


def fill_backlog(url: str, tenant: common.BenchTenant, campaign: str, count: int) -> None:
    """``count`` vouchers, each with a PENDING SMS delivery and its first event (COPY)."""
    db = common.open_database(url)
    try:
        mint_vouchers(db, tenant.caller, campaign, MintVouchers(count=count))
    finally:
        db.dispose()
    with psycopg.connect(common.libpq_url(url)) as conn:
        voucher_ids = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM voucher WHERE NOT EXISTS "
                "(SELECT 1 FROM delivery d WHERE d.voucher_id = voucher.id)"
            )
        ]
        ids = new_ids("dlv", len(voucher_ids))
        with conn.cursor() as cursor:
            with cursor.copy(
                "COPY delivery (id, tenant_id, voucher_id, channel, recipient, state, origin, "
                "attempt, failures, due_at, created_at, updated_at) FROM STDIN"
            ) as copy:
                now = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime())
                for delivery_id, voucher_id in zip(ids, voucher_ids, strict=True):
                    copy.write_row(
                        (
                            delivery_id,
                            tenant.id,
                            voucher_id,
                            "sms",
                            PHONE,
                            "PENDING",
                            "request",
                            0,
                            0,
                            now,
                            now,
                            now,
                        )
                    )
            cursor.execute(
                "INSERT INTO delivery_event (tenant_id, delivery_id, attempt, to_state, created_at) "
                "SELECT tenant_id, id, 0, 'PENDING', created_at FROM delivery WHERE state = 'PENDING'"
            )
    reset_delivery_tables(url, keep=True)


def reset_delivery_tables(url: str, *, keep: bool = False) -> None:
    with psycopg.connect(common.libpq_url(url), autocommit=True) as conn:
        if not keep:
            conn.execute(
                "TRUNCATE delivery_event, delivery, voucher, ledger_entry, voucher_event CASCADE"
            )
        conn.execute("VACUUM ANALYZE")
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute("CHECKPOINT")


def sent(url: str) -> int:
    with psycopg.connect(common.libpq_url(url)) as conn:
        row = conn.execute("SELECT count(*) FROM delivery WHERE state = 'SENT'").fetchone()
    return int(row[0]) if row else 0


def troubled(url: str) -> int:
    """Deliveries that failed or had to be retried: none should, the provider answers 201."""
    with psycopg.connect(common.libpq_url(url)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM delivery WHERE state = 'FAILED' OR failures > 0"
        ).fetchone()
    return int(row[0]) if row else 0


def pending(url: str) -> int:
    with psycopg.connect(common.libpq_url(url)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM delivery WHERE state IN ('PENDING', 'SENDING')"
        ).fetchone()
    return int(row[0]) if row else 0


# --- voucherd -----------------------------------------------------------------------------------


@contextlib.contextmanager
def workers(url: str, provider_port: int, count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    env = common.child_env(url, VOUCHERD_TWILIO_BASE_URL=f"http://127.0.0.1:{provider_port}")
    stack = contextlib.ExitStack()
    logs = [stack.enter_context(tempfile.TemporaryFile()) for _ in range(count)]  # noqa: SIM115
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "voucherd", "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for log in logs
    ]
    try:
        yield processes
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process, log in zip(processes, logs, strict=True):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.returncode != 0:
                print(f"worker exited {process.returncode}:\n{common._tail(log)}")
        stack.close()


def _wait_for_first_send(url: str, timeout: float = 120.0) -> None:
    """The warm-up starts when the workers send, not when they start: importing voucherd on a
    busy machine can take longer than a short warm-up, and a window of idle workers measures
    nothing."""
    deadline = time.monotonic() + timeout
    while not sent(url):
        common.require(time.monotonic() < deadline, f"no message SENT in {timeout:g} s")
        time.sleep(0.1)


def voucherd_phase(
    url: str, server: common.Server, args: argparse.Namespace
) -> tuple[float, common.CpuUsage]:
    with workers(url, server.port, args.workers) as processes:
        meter = common.CpuMeter(
            {
                "workers": lambda: [p.pid for p in processes],
                "postgres": common.postgres_serving(url),
                "provider": server.pids,
            }
        )
        _wait_for_first_send(url)
        time.sleep(args.warmup)
        before, start = sent(url), meter.sample()
        time.sleep(args.seconds)
        after, end = sent(url), meter.sample()
        left = pending(url)
    common.require(left > 0, f"the backlog ran out: raise --messages (it was {args.messages:,})")
    failed = troubled(url)
    common.require(not failed, f"{failed:,} deliveries failed or were retried")
    rate = (after - before) / args.seconds
    usage = end.since(start)
    print(f"  voucherd, {args.workers} workers: {rate:,.0f} messages/s")
    print(f"    {usage.describe(after - before, 'message')}")
    return rate, usage


# --- the floors ---------------------------------------------------------------------------------

_FLOOR_CLAIM = f"""
WITH due AS (
    SELECT id FROM delivery WHERE state IN ('PENDING', 'SENDING') AND due_at <= now()
    ORDER BY due_at LIMIT {BATCH} FOR UPDATE SKIP LOCKED),
claimed AS (
    UPDATE delivery d SET state = 'SENDING', attempt = d.attempt + 1, lease_owner = %(worker)s,
        due_at = now() + interval '60 seconds', updated_at = now()
    FROM due WHERE d.id = due.id RETURNING d.id, d.tenant_id, d.attempt),
events AS (
    INSERT INTO delivery_event (tenant_id, delivery_id, attempt, from_state, to_state, actor,
                                created_at)
    SELECT tenant_id, id, attempt, 'PENDING', 'SENDING', %(worker)s, now() FROM claimed)
SELECT id, tenant_id, attempt FROM claimed
"""
_FLOOR_RECORD = """
WITH done AS (
    UPDATE delivery SET state = 'SENT', lease_owner = NULL, due_at = NULL,
        provider_message_id = %(sid)s, updated_at = now()
    WHERE id = %(id)s AND attempt = %(attempt)s AND state = 'SENDING'
    RETURNING id, tenant_id, attempt)
INSERT INTO delivery_event (tenant_id, delivery_id, attempt, from_state, to_state, actor,
                            created_at)
SELECT tenant_id, id, attempt, 'SENDING', 'SENT', %(worker)s, now() FROM done
"""


def outbox_cycle(conn: psycopg.Connection[Any], client: common.FloorClient) -> None:
    """One floor "transaction": claim a batch, then record each row SENT in its own transaction
    (as voucherd does, so a crash loses at most the row in hand). Counted per batch."""
    worker = f"floor-{client.index}"
    with conn.transaction():
        rows = conn.execute(_FLOOR_CLAIM, {"worker": worker}).fetchall()
    for delivery_id, _, attempt in rows:
        params = {"id": delivery_id, "attempt": attempt, "sid": "SMfloor", "worker": worker}
        with conn.transaction():
            conn.execute(_FLOOR_RECORD, params)
    client.seq += len(rows)
    if len(rows) < BATCH:
        raise RuntimeError("the floor's backlog ran out")


def floor_phase(url: str, args: argparse.Namespace) -> tuple[float, common.CpuUsage]:
    result = common.run_floor(
        outbox_cycle,
        url,
        clients=args.workers,
        warmup=args.warmup,
        seconds=args.seconds,
        params={},
        meter=common.CpuMeter({"postgres": common.postgres_serving(url)}),
    )
    common.require(not result.errors, f"floor, raw claim + record: {dict(result.errors)}")
    rate = result.rate * BATCH
    print(f"  floor, raw claim + record, {args.workers} clients: {rate:,.0f} messages/s")
    print(f"    {result.cpu.describe(result.transactions * BATCH, 'message')}")
    return rate, result.cpu


def provider_phase(server: common.Server, args: argparse.Namespace) -> float:
    body = (
        f"To=%2B447911123456&From=%2B15005550006&Body={'x' * 140}"
        "&StatusCallback=https%3A%2F%2Fvouchers.example%2Fcallbacks%2Ftwilio%2Ft"
    ).encode()
    head = (
        f"POST /2010-04-01/Accounts/AC0/Messages.json HTTP/1.1\r\nHost: {server.host}\r\n"
        "Authorization: Basic QUMwOmJlbmNoLXRva2Vu\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    result = common.drive_http(
        server,
        head.encode() + body,
        expect=201,
        connections=args.workers * 8,
        warmup=min(args.warmup, 2.0),
        seconds=min(args.seconds, 5.0),
        meter=common.CpuMeter({"provider": server.pids, "load generator": common.this_process}),
    )
    result.require_clean(201, "the provider alone")
    rate = result.count(201) / result.seconds
    print(f"  provider alone, {args.workers * 8} connections: {rate:,.0f} requests/s")
    return rate


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--provider":
        serve_provider(int(sys.argv[2]))
        return 0
    command = common.parser(__doc__.split("\n\n")[0])
    command.add_argument("--workers", type=int, default=2, help="voucherd worker processes")
    command.add_argument(
        "--messages", type=int, default=60_000, help="backlog per phase (must outlast it)"
    )
    args = command.parse_args(argv)
    runs: list[list[float]] = []
    origin = common.voucherd_origin()
    with common.bench_database() as url, provider() as server:
        tenant, campaign = setup(url, f"http://127.0.0.1:{server.port}")
        print(f"deliver: {common.machine_line(url)}; voucherd from {origin}")
        print(
            f"{args.workers} x voucherd worker (default settings: batch 32, 8 sends at a time) -> "
            f"local Twilio-compatible provider; {args.seconds:g} s measured after "
            f"{args.warmup:g} s warm-up; backlog {args.messages:,}"
        )
        for run in range(1, args.runs + 1):
            print(f"\nrun {run}:")
            reset_delivery_tables(url)
            fill_backlog(url, tenant, campaign, args.messages)
            rate, usage = voucherd_phase(url, server, args)
            reset_delivery_tables(url)
            fill_backlog(url, tenant, campaign, args.messages)
            floor, floor_usage = floor_phase(url, args)
            provider_rate = provider_phase(server, args)
            noise = max(usage.others, floor_usage.others)
            runs.append([rate, floor, provider_rate, rate / floor, rate / provider_rate, noise])
    common.print_runs(
        ["voucherd msg/s", "floor msg/s", "provider req/s", "vs floor", "vs provider", "others"],
        runs,
        key="deliver",
    )
    print("vs floor = voucherd messages/s / raw claim+record messages/s (no sending)")
    print("vs provider = voucherd messages/s / the provider's own request rate (no database)")
    return 0


if __name__ == "__main__":
    common.run(main)
