"""Load: a realistic mix of requests against voucherd on PostgreSQL in its production shape.

voucherd: ``voucherd serve --workers 2 --no-worker`` (two API processes) and one ``voucherd
worker`` on a fresh migrated database, seeded with a working set: thousands of GIFT vouchers
with balances (some nearly spent) and single-use DISCOUNT codes. Keep-alive connections each
keep one request in flight, drawn at random from the mix:

* 70% ``POST /api/v1/validations`` (a GIFT code and an amount, or a DISCOUNT code and an order),
* 20% ``POST /api/v1/redemptions`` (a small amount off a random GIFT voucher, or a DISCOUNT code
  on an order; every one with its own ``Idempotency-Key``),
* 10% ``POST /api/v1/vouchers`` (issue a GIFT voucher; some delivered to a local signed webhook,
  some with channel ``none``, most without delivery), so the worker has an outbox to empty.

voucherd runs with its production defaults (the guard, metrics, JSON access logs); the bench's
tenant raises its own rate limits (``PATCH /api/v1/tenant``), so the guard counts every request
and refuses none. A refusal the client caused (a balance too low, a single-use code already used)
is a client outcome, counted apart. Any other answer (a 429, any other 4xx, a 5xx, a status or a
body other than the kind's own), a dropped connection or a failed check fails the run: exit
status 1, and no summary table.
Afterwards: every balance equals its ledger's sum, every 201 redemption is a row and every row
was answered 201, every 201 issue is a voucher, and the outbox drains with nothing FAILED.

There is no raw floor for a mix: see ``bench.issue`` and ``bench.redeem`` for the floors of its
writes.

    python -m bench.load [--seconds 60] [--warmup 5] [--connections 16] [--runs 1]
                         [--vouchers 20000] [--mix 70,20,10] [--env VOUCHERD_X=Y ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

if __package__ in (None, ""):  # run as ``python bench/load.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common, deliver
from voucherd.campaigns.schemas import CampaignCreate
from voucherd.delivery.settings import DeliverySettingsPatch, new_webhook_secret
from voucherd.tenants.service import configure_delivery
from voucherd.vouchers.mint import create_campaign, mint_vouchers
from voucherd.vouchers.schemas import MintVouchers

KINDS = ("validate", "redeem", "issue")
EXPECTED = {"validate": 200, "redeem": 201, "issue": 201}
# Refusals the mix provokes on purpose: the client's outcome, not a fault of the server (a
# balance too low; a single-use code, or a balance spent to 0, already redeemed).
CLIENT_OUTCOMES = {"insufficient_balance", "quantity_exceeded", "voucher_redeemed"}
GIFT_VALUE = 5000  # opening balance of most of the working set, minor units
LOW_VALUE = 300  # the nearly spent part: redemptions above this are refused
LOW_SHARE = 0.1  # of the GIFT vouchers
# How long the requests in flight when the window closes may take to answer; one still waiting
# then is a server error (a hung request), not a request quietly left out of the figures.
ANSWER_GRACE = 30.0
DISCOUNT_SHARE = 0.1  # of the working set: single-use 10%-off codes

# The rate limits stay on, so the bench pays for counting every request (voucherd.guard), with
# room made through the tenant's own rate_limits (common.raise_rate_limits): by default one key
# may make 1,000 requests per 10 s window, fewer than this bench sends from its one key. The
# guessing guard keeps its defaults: every code the mix sends exists, so nothing here is a
# failed lookup.


# --- the working set ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    tenant: common.BenchTenant
    gift_campaign: str
    discount_campaign: str


@dataclass(frozen=True)
class WorkingSet:
    gift_codes: list[str]
    discount_codes: list[str]


def setup(url: str, provider_port: int) -> Setup:
    """A tenant whose webhook is the local provider, a GIFT and a single-use DISCOUNT campaign."""
    db = common.open_database(url)
    try:
        tenant = common.make_tenant(db)
        gift = common.make_gift_campaign(db, tenant, value=GIFT_VALUE)
        discount = CampaignCreate.model_validate(
            {
                "name": "bench-discount",
                "type": "DISCOUNT",
                "currency": "EUR",
                "discount": {"type": "PERCENT", "percent_off": 10, "amount_limit": 2000},
                "redemption_quantity": 1,
            }
        )
        discount_id = create_campaign(db, tenant.caller, discount).id
        webhook = {"url": f"http://127.0.0.1:{provider_port}/hook", "secret": new_webhook_secret()}
        configure_delivery(
            db, tenant.id, DeliverySettingsPatch.model_validate({"webhook": webhook})
        )
    finally:
        db.dispose()
    return Setup(tenant, gift, discount_id)


def seed(url: str, bench: Setup, vouchers: int) -> WorkingSet:
    """Empty the voucher tables and mint a fresh working set: most GIFT vouchers at the full
    value, some nearly spent, and single-use DISCOUNT codes. Then vacuum and checkpoint, so the
    measured window pays for neither the seed's dirty pages nor stale statistics."""
    common.reset_tables(url)
    discount = max(1, int(vouchers * DISCOUNT_SHARE))
    low = max(1, int((vouchers - discount) * LOW_SHARE))
    full = max(1, vouchers - discount - low)
    db = common.open_database(url)
    try:
        caller = bench.tenant.caller
        mint_vouchers(db, caller, bench.gift_campaign, MintVouchers(count=full))
        mint_vouchers(db, caller, bench.gift_campaign, MintVouchers(count=low, value=LOW_VALUE))
        mint_vouchers(db, caller, bench.discount_campaign, MintVouchers(count=discount))
    finally:
        db.dispose()
    with psycopg.connect(common.libpq_url(url), autocommit=True) as conn:
        rows = conn.execute("SELECT code, type FROM voucher").fetchall()
        conn.execute("VACUUM ANALYZE")
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute("CHECKPOINT")
    return WorkingSet(
        [code for code, kind in rows if kind == "GIFT"],
        [code for code, kind in rows if kind == "DISCOUNT"],
    )


# --- the processes: two API processes, one worker, the local webhook receiver ---------------------


def _env(url: str, extra: dict[str, str]) -> dict[str, str]:
    """Production defaults (common.child_env), plus what ``--env`` asked for."""
    return common.child_env(url, **extra)


@contextlib.contextmanager
def api_server(
    url: str, workers: int, extra: dict[str, str], options: Sequence[str] = ()
) -> Iterator[common.Server]:
    """``voucherd serve --no-worker --workers N [options]`` on a free port, in its own process
    group."""
    port = common._free_port()
    command = [sys.executable, "-m", "voucherd", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", str(workers), "--no-worker", *options]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command,
            env=_env(url, extra),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            common._wait_ready(process, port, log)
            yield common.Server("127.0.0.1", port, process.pid)
        finally:
            common._stop_group(process)
            if process.returncode not in (0, -signal.SIGTERM, None):
                print(f"voucherd serve exited with {process.returncode}:\n{common._tail(log)}")


@contextlib.contextmanager
def worker(url: str, extra: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """One ``voucherd worker`` in its own process group; SIGTERM lets it hand work back."""
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "voucherd", "worker"],
            env=_env(url, extra),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            common._stop_group(process, grace=30)
            if process.returncode not in (0, -signal.SIGTERM, None):
                print(f"voucherd worker exited with {process.returncode}:\n{common._tail(log)}")


# --- the load generator: the mix over keep-alive connections ----------------------------------------


class Mix:
    """Draws the next request of the mix; bodies and idempotency keys differ on every request."""

    def __init__(
        self,
        server: common.Server,
        bench: Setup,
        working: WorkingSet,
        *,
        shares: tuple[float, float, float],
        tag: str,
        seed: int,
    ) -> None:
        self.random = random.Random(seed)
        self.validate_below = shares[0]
        self.redeem_below = shares[0] + shares[1]
        self.gift = working.gift_codes
        self.discount = working.discount_codes
        self.campaign = bench.gift_campaign
        self.tag = tag
        self.seq = 0
        self.head = (
            f"Host: {server.host}:{server.port}\r\n"
            f"Authorization: Bearer {bench.tenant.token}\r\n"
            "Content-Type: application/json\r\n"
        )

    def _request(self, path: str, body: dict[str, Any], extra: str = "") -> bytes:
        data = json.dumps(body, separators=(",", ":")).encode()
        head = f"POST {path} HTTP/1.1\r\n{self.head}{extra}Content-Length: {len(data)}\r\n\r\n"
        return head.encode("ascii") + data

    def next(self) -> tuple[int, bytes]:
        self.seq += 1
        draw = self.random.random()
        pick = self.random.random()
        if draw < self.validate_below:
            if pick < 0.85:
                body: dict[str, Any] = {
                    "code": self.random.choice(self.gift),
                    "amount": self.random.randint(100, 2000),
                }
            else:
                order: dict[str, Any] = {"amount": self.random.randint(1000, 20000)}
                body = {"code": self.random.choice(self.discount), "order": order}
            return 0, self._request("/api/v1/validations", body)
        if draw < self.redeem_below:
            reference = f"{self.tag}-{self.seq}"
            if pick < 0.9:
                body = {
                    "code": self.random.choice(self.gift),
                    "amount": self.random.randint(50, 500),
                    "order": {"reference": reference},
                }
            else:
                order = {
                    "amount": self.random.randint(1000, 20000),
                    "reference": reference,
                }
                body = {"code": self.random.choice(self.discount), "order": order}
            key = f"Idempotency-Key: {reference}\r\n"
            return 1, self._request("/api/v1/redemptions", body, key)
        body = {"campaign": self.campaign, "customer_ref": f"cust-{self.random.randrange(10**6)}"}
        if pick < 0.3:
            body["delivery"] = {"channel": "webhook"}
        elif pick < 0.4:
            body["delivery"] = {"channel": "none"}
        return 2, self._request("/api/v1/vouchers", body)


@dataclass
class KindTally:
    statuses: Counter[int] = field(default_factory=Counter)  # inside the measured window
    everything: Counter[int] = field(default_factory=Counter)  # warm-up included
    latencies: list[float] = field(default_factory=list)  # seconds, inside the window
    problems: Counter[str] = field(default_factory=Counter)  # 4xx problem codes, whole run
    wrong: Counter[str] = field(default_factory=Counter)  # other statuses, bodies not asked for
    valid: Counter[bool] = field(default_factory=Counter)  # validations: valid or not, whole run

    def latency_ms(self, quantile: float) -> float:
        return _quantile_ms(self.latencies, quantile)


def _quantile_ms(latencies: list[float], quantile: float) -> float:
    if not latencies:
        return float("nan")
    ordered = sorted(latencies)
    return 1000 * ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]


@dataclass
class LoadResult:
    kinds: dict[str, KindTally]
    seconds: float
    cpu: common.CpuUsage
    reconnects: int
    unanswered: int  # requests still without an answer ANSWER_GRACE seconds after the window
    redemption_ids: list[str]  # of every 201 redemption, warm-up included
    samples: list[bytes]  # a few unexpected answers, for the log
    outbox_at_stop: int  # deliveries PENDING or SENDING when the window closed
    spread: list[int]  # the load's connections held by each API process, most first

    def rate(self, kind: str | None = None) -> float:
        tallies = self.kinds.values() if kind is None else [self.kinds[kind]]
        return sum(sum(t.statuses.values()) for t in tallies) / self.seconds

    def latency_ms(self, quantile: float) -> float:
        return _quantile_ms([x for t in self.kinds.values() for x in t.latencies], quantile)

    def server_errors(self) -> int:
        fives = sum(n for t in self.kinds.values() for s, n in t.everything.items() if s >= 500)
        return fives + self.reconnects + self.unanswered

    def unexpected(self) -> Counter[str]:
        """Every answer but the kind's own and the client outcomes: a 429, any other 4xx, a
        5xx, another status, a body not asked for."""
        found: Counter[str] = Counter()
        for name, tally in self.kinds.items():
            for code, n in tally.problems.items():
                if code not in CLIENT_OUTCOMES:
                    found[f"{name} {code}"] += n
            for what, n in tally.wrong.items():
                found[f"{name} {what}"] += n
        return found


class _Load:
    def __init__(
        self, mix: Mix, server: common.Server, measure_from: float, stop_at: float
    ) -> None:
        self.campaign = mix.campaign
        self.mix = mix
        self.server = server
        self.measure_from = measure_from
        self.stop_at = stop_at
        self.stopping = False
        self.failure: Exception | None = None
        self.open = 0
        self.reconnects = 0
        self.closed = asyncio.Event()
        self.kinds = [KindTally() for _ in KINDS]
        self.redemption_ids: list[str] = []
        self.samples: list[bytes] = []

    def answered(self, kind: int, status: int, latency: float, body: bytes) -> None:
        tally = self.kinds[kind]
        tally.everything[status] += 1
        now = time.time()
        if self.measure_from <= now < self.stop_at:
            tally.statuses[status] += 1
            tally.latencies.append(latency)
        code = None
        if status == EXPECTED[KINDS[kind]]:
            problem = self._wrong_body(kind, json.loads(body))
            if problem is None:
                return
            tally.wrong[problem] += 1
        elif 400 <= status < 500:
            with contextlib.suppress(ValueError, AttributeError):
                code = json.loads(body).get("code")
            tally.problems[str(code)] += 1
        elif status < 500:  # 5xx are server errors, counted from ``everything``
            tally.wrong[f"status {status}"] += 1
        if code not in CLIENT_OUTCOMES and len(self.samples) < 5:
            self.samples.append(f"{KINDS[kind]} {status}: ".encode() + body[:400])

    def _wrong_body(self, kind: int, answer: dict[str, Any]) -> str | None:
        """What is wrong with an answer of the expected status, or None; tallies the good."""
        if kind == 0:
            if not isinstance(answer.get("valid"), bool):
                return "a validation without a verdict"
            self.kinds[0].valid[answer["valid"]] += 1
        elif kind == 1:
            if answer.get("object") != "redemption" or answer.get("status") != "SUCCEEDED":
                return "a 201 that is not a redemption"
            self.redemption_ids.append(answer["id"])
        elif answer.get("campaign_id") != self.campaign or not answer.get("code"):
            return "a 201 that is not a voucher of the campaign"
        return None

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: _Connection(self), self.server.host, self.server.port)


class _Connection(common.KeepAliveConnection):
    """One keep-alive connection with one request of the mix in flight: each request is drawn
    anew and each answer's body is read."""

    kind = 0

    def next_request(self) -> bytes:
        self.kind, request = self.load.mix.next()
        return bytes(request)

    def answered(self, status: int, latency: float, answer: bytes, body_start: int) -> None:
        self.load.answered(self.kind, status, latency, answer[body_start:])


def drive(
    url: str,
    server: common.Server,
    mix: Mix,
    *,
    connections: int,
    warmup: float,
    seconds: float,
    meter: common.CpuMeter,
) -> LoadResult:
    with common.event_loop_runner() as runner:
        return runner.run(_drive(url, server, mix, connections, warmup, seconds, meter))


async def _drive(
    url: str,
    server: common.Server,
    mix: Mix,
    connections: int,
    warmup: float,
    seconds: float,
    meter: common.CpuMeter,
) -> LoadResult:
    measure_from = time.time() + warmup
    load = _Load(mix, server, measure_from, measure_from + seconds)
    for _ in range(connections):
        await load.connect()
    await asyncio.sleep(max(0.0, measure_from - time.time()))
    start = meter.sample()
    await asyncio.sleep(max(0.0, load.stop_at - time.time()))
    end = meter.sample()
    spread = connections_per_process(server)
    load.stopping = True
    outbox = outbox_depth(url)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(load.closed.wait(), timeout=ANSWER_GRACE)
    if load.failure is not None:
        raise RuntimeError("the load run failed") from load.failure
    return LoadResult(
        dict(zip(KINDS, load.kinds, strict=True)),
        seconds,
        end.since(start),
        load.reconnects,
        load.open,
        load.redemption_ids,
        load.samples,
        outbox,
        spread,
    )


def connections_per_process(server: common.Server) -> list[int]:
    """How many of the load's keep-alive connections each API process holds (Linux only; empty
    elsewhere): a connection stays with the process that accepted it, so an uneven spread
    queues more requests in one process and shows in the tail latency."""
    port = f":{server.port:04X}"
    established: set[str] = set()
    # Three reads: the kernel writes the table out in pages, and on a busy machine a socket
    # moved between two pages of one read is missing from that read.
    for table in ("/proc/net/tcp", "/proc/net/tcp6") * 3:
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[1].endswith(port) and fields[3] == "01":  # local port, ESTABLISHED
                    established.add(fields[9])  # the socket's inode
    spread = []
    for pid in server.pids():
        with contextlib.suppress(OSError):
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
            held = sum(1 for link in links if link[8:-1] in established)
            if held:
                spread.append(held)
    return sorted(spread, reverse=True)


# --- the checks afterwards ---------------------------------------------------------------------------


def outbox_depth(url: str) -> int:
    with psycopg.connect(common.libpq_url(url)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM delivery WHERE state IN ('PENDING', 'SENDING')"
        ).fetchone()
    return int(row[0]) if row else 0


def drain_outbox(url: str, timeout: float = 120.0) -> tuple[float, dict[str, int]]:
    """Wait for the worker to empty the outbox; seconds it took and the deliveries by state."""
    started = time.monotonic()
    while outbox_depth(url) and time.monotonic() - started < timeout:
        time.sleep(0.5)
    with psycopg.connect(common.libpq_url(url)) as conn:
        rows = conn.execute("SELECT state, count(*) FROM delivery GROUP BY state ORDER BY state")
        states = {str(state): int(count) for state, count in rows}
    return time.monotonic() - started, states


def _one_row(conn: psycopg.Connection[Any], sql: str) -> tuple[Any, ...]:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return tuple(row)


def check(url: str, result: LoadResult, seeded: int) -> list[tuple[bool, str]]:
    """What must hold whatever the speed: money, redemptions and issues all add up."""
    issued = result.kinds["issue"].everything[201]
    answered = set(result.redemption_ids)
    with psycopg.connect(common.libpq_url(url)) as conn:
        balances, wrong, vouchers = _one_row(
            conn,
            "SELECT count(*) FILTER (WHERE v.balance IS NOT NULL),"
            " count(*) FILTER (WHERE v.balance IS DISTINCT FROM l.total AND v.balance IS NOT NULL),"
            " count(*) FROM voucher v LEFT JOIN"
            " (SELECT voucher_id, sum(delta) AS total FROM ledger_entry GROUP BY voucher_id) l"
            " ON l.voucher_id = v.id",
        )
        stored = {r[0] for r in conn.execute("SELECT id FROM redemption")}
        redeemed, debited = _one_row(
            conn,
            "SELECT (SELECT coalesce(sum(r.amount), 0) FROM redemption r"
            "        JOIN voucher v ON v.id = r.voucher_id WHERE v.type = 'GIFT'),"
            " (SELECT coalesce(-sum(delta), 0) FROM ledger_entry WHERE kind = 'REDEMPTION')",
        )
        negative, overspent, codes, distinct_codes = _one_row(
            conn,
            "SELECT (SELECT count(*) FROM voucher WHERE balance < 0),"
            " (SELECT count(*) FROM voucher v WHERE v.type = 'GIFT' AND v.amount <"
            "  (SELECT coalesce(sum(r.amount), 0) FROM redemption r WHERE r.voucher_id = v.id"
            "   AND r.status = 'SUCCEEDED')),"
            " (SELECT count(*) FROM voucher), (SELECT count(DISTINCT code) FROM voucher)",
        )
        (reused,) = _one_row(
            conn,
            "SELECT count(*) FROM (SELECT r.voucher_id FROM redemption r"
            " JOIN voucher v ON v.id = r.voucher_id WHERE v.type = 'DISCOUNT'"
            " GROUP BY r.voucher_id HAVING count(*) > 1) twice",
        )
    missing, unanswered = len(answered - stored), len(stored - answered)
    redemptions = (
        f"{len(result.redemption_ids):,} redemptions answered 201, {len(stored):,} stored: "
        f"{missing:,} answered but missing, {unanswered:,} stored but never answered"
    )
    return [
        (wrong == 0, f"{balances:,} balances, {wrong:,} differing from their ledger's sum"),
        (
            redeemed == debited,
            f"GIFT redemptions took {redeemed:,} in all, their ledger entries {debited:,}",
        ),
        (
            len(answered) == len(result.redemption_ids) and not missing and not unanswered,
            redemptions,
        ),
        (reused == 0, f"{reused:,} single-use DISCOUNT codes redeemed more than once"),
        (
            negative == 0 and overspent == 0,
            (
                f"no overspend: {negative:,} balances below 0, {overspent:,} GIFT vouchers "
                "whose redemptions took more than their value"
            ),
        ),
        (
            codes == distinct_codes,
            f"no code twice: {codes:,} vouchers, {distinct_codes:,} distinct codes",
        ),
        (
            vouchers == seeded + issued,
            f"{vouchers:,} vouchers = {seeded:,} seeded + {issued:,} answered 201 to an issue",
        ),
    ]


# --- printing -----------------------------------------------------------------------------------------


def report(result: LoadResult, connections: int) -> None:
    total = result.rate()
    print(f"  voucherd, {connections} connections: {total:,.0f} requests/s")
    rows: list[list[object]] = []
    for name, tally in result.kinds.items():
        n = sum(tally.statuses.values())
        statuses = " ".join(f"{s}:{c}" for s, c in sorted(tally.everything.items()))
        rows.append(
            [
                name,
                f"{n / (total * result.seconds):.0%}" if total else "-",
                result.rate(name),
                tally.latency_ms(0.5),
                tally.latency_ms(0.99),
                statuses,
            ]
        )
    rows.append(["all", "100%", total, result.latency_ms(0.5), result.latency_ms(0.99), ""])
    common.print_table(
        ["kind", "share", "req/s", "p50 ms", "p99 ms", "answers, warm-up included"], rows
    )
    served = sum(sum(t.statuses.values()) for t in result.kinds.values())
    print(f"  {result.cpu.describe(served, 'request')}")
    if result.spread:
        print(f"  connections per API process: {'+'.join(map(str, result.spread))}")
    validate = result.kinds["validate"].valid
    print(
        f"  validations: {validate[True]:,} valid, {validate[False]:,} not (a balance too low, a code used up)"
    )
    outcomes = Counter[str]()
    for name, tally in result.kinds.items():
        for code, n in tally.problems.items():
            if code in CLIENT_OUTCOMES:
                outcomes[f"{name} {code}"] += n
    print(f"  client outcomes (refused as they should be): {dict(outcomes) or 'none'}")
    fives = result.server_errors() - result.reconnects - result.unanswered
    print(
        f"  server errors: {result.server_errors()} (5xx {fives}, dropped connections "
        f"{result.reconnects}, requests unanswered {ANSWER_GRACE:g} s after the window "
        f"{result.unanswered})"
    )
    unexpected = result.unexpected()
    if unexpected:
        print(f"  UNEXPECTED: {dict(unexpected)}")
    for sample in result.samples:
        print(f"    {sample!r}")


def _mix(text: str) -> tuple[float, float, float]:
    """``70,20,10`` as shares of one."""
    parts = [float(p) for p in text.split(",")]
    if len(parts) != 3 or min(parts) < 0 or not sum(parts):
        raise argparse.ArgumentTypeError("three non-negative weights: validate,redeem,issue")
    total = sum(parts)
    return parts[0] / total, parts[1] / total, parts[2] / total


def main(argv: list[str] | None = None) -> int:
    command = common.parser(__doc__.split("\n\n")[0], seconds=60.0)
    command.set_defaults(warmup=5.0)
    command.add_argument("--connections", type=int, default=16, help="keep-alive HTTP connections")
    command.add_argument("--workers", type=int, default=2, help="API processes (serve --workers)")
    command.add_argument(
        "--vouchers", type=int, default=20_000, help="working set minted before each run"
    )
    command.add_argument(
        "--mix",
        type=_mix,
        default="70,20,10",
        metavar="V,R,I",
        help="shares of validate, redeem and issue, e.g. 70,20,10 or 1,0,0",
    )
    common.add_env_option(
        command,
        "more environment for the API and worker processes, e.g. VOUCHERD_GUARD_ENABLED=false",
    )
    command.add_argument(
        "--serve-option",
        action="append",
        default=[],
        metavar="OPTION",
        help="one more option of `voucherd serve`, e.g. --serve-option=--backlog=4096",
    )
    args = command.parse_args(argv)
    extra = dict(args.env)
    shares: tuple[float, float, float] = args.mix
    runs: list[list[float]] = []
    origin = common.voucherd_origin()
    with (
        common.bench_database() as url,
        deliver.provider() as receiver,
        api_server(url, args.workers, extra, args.serve_option) as server,
        worker(url, extra) as worker_process,
    ):
        bench = setup(url, receiver.port)
        common.raise_rate_limits(server, bench.tenant.token)
        print(f"load: {common.machine_line(url)}; voucherd from {origin}")
        serve_options = ["--workers", str(args.workers), "--no-worker", *args.serve_option]
        print(
            f"voucherd serve {' '.join(serve_options)} + 1 voucherd worker; "
            f"{args.connections} connections; mix {shares[0]:.0%} validate, {shares[1]:.0%} "
            f"redeem, {shares[2]:.0%} issue; {args.seconds:g} s measured after "
            f"{args.warmup:g} s warm-up"
        )
        print(
            f"production defaults, tenant rate limits {common.BENCH_RATE_LIMIT:,} per window; "
            f"server environment: {' '.join(f'{k}={v}' for k, v in extra.items()) or '-'}"
        )
        for run in range(1, args.runs + 1):
            print(f"\nrun {run}:")
            working = seed(url, bench, args.vouchers)
            seeded = len(working.gift_codes) + len(working.discount_codes)
            print(
                f"  working set: {len(working.gift_codes):,} GIFT vouchers "
                f"({GIFT_VALUE:,} or {LOW_VALUE:,}), {len(working.discount_codes):,} "
                "single-use DISCOUNT codes"
            )
            hooks_before = deliver.provider_count(receiver.port)
            meter = common.CpuMeter(
                {
                    "api": server.pids,
                    "worker": lambda: [worker_process.pid],
                    "postgres": common.postgres_serving(url),
                    "webhook receiver": receiver.pids,
                    "load generator": common.this_process,
                }
            )
            tag = f"r{run}-{os.getpid()}"
            mix = Mix(server, bench, working, shares=shares, tag=tag, seed=run)
            result = drive(
                url,
                server,
                mix,
                connections=args.connections,
                warmup=args.warmup,
                seconds=args.seconds,
                meter=meter,
            )
            report(result, args.connections)
            drained, states = drain_outbox(url)
            hooks = deliver.provider_count(receiver.port) - hooks_before
            outbox_ok = not states.get("FAILED") and not any(
                states.get(s) for s in ("PENDING", "SENDING")
            )
            print(
                f"  outbox: {result.outbox_at_stop:,} waiting when the window closed, drained in "
                f"{drained:.1f} s; deliveries by state {states}; {hooks:,} webhooks received"
            )
            verdicts = check(url, result, seeded)
            verdicts.append((outbox_ok, "outbox drained, nothing FAILED"))
            for ok, verdict in verdicts:
                print(f"  {'ok ' if ok else 'BAD'} {verdict}")
            common.require(
                not result.server_errors() and not result.unexpected(),
                f"run {run}: {result.server_errors()} server errors, other answers "
                f"{dict(result.unexpected())}",
            )
            for ok, verdict in verdicts:
                common.require(ok, f"run {run}: {verdict}")
            runs.append(
                [
                    result.rate(),
                    result.rate("validate"),
                    result.rate("redeem"),
                    result.rate("issue"),
                    result.latency_ms(0.5),
                    result.latency_ms(0.99),
                    result.server_errors(),
                    result.cpu.others,
                ]
            )
    common.print_runs(
        ["req/s", "validate/s", "redeem/s", "issue/s", "p50 ms", "p99 ms", "5xx+drops", "others"],
        runs,
        key="load",
    )
    print("others = cores used by other processes during the window (a shared machine's noise)")
    return 0


if __name__ == "__main__":
    common.run(main)
