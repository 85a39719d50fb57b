"""Redeeming over HTTP on one hot card and on many cards, against the raw database floor.

Hot card: many redeemers on one GIFT voucher with a huge balance, each taking 1. voucherd:
threads in this process calling ``voucherd.redemptions.service.redeem`` (as an API worker's
thread pool does; ``--threads 0`` skips them), then ``POST /api/v1/redemptions`` over keep-alive
connections to ``voucherd serve --workers 2``. Floor: psycopg client processes, each transaction
the conditional ``UPDATE voucher SET balance = balance - 1 WHERE id = $1 AND balance >= 1`` and
the ledger INSERT (BEGIN, UPDATE, INSERT, COMMIT), all on one row.

Many cards: a campaign of ``--cards`` (100,000) GIFT vouchers minted before each phase; every
request takes 1 from a card drawn at random. voucherd over HTTP; the bare FastAPI anchor
(bench/anchor.py) over HTTP under the same server, running the floor's transaction by code: the
framework's own ceiling; the floor runs the same transaction on a random row of the same vouchers.

voucherd runs with its production defaults (the guard, metrics, JSON access logs) and the
tenant's own rate limits raised, so the guard counts every request and refuses none. Any answer
but a 201 redeeming 1 from the card asked for (a 429 included), a failed floor transaction, or a
ledger that does not add up stops the benchmark with exit status 1 and no ratio. Afterwards every
voucher's balance must equal the sum of its ledger, and every 201 must be one ledger entry.

Each phase starts once nothing else works on the bench database (no autovacuum of the cards just
minted, no backend still busy); the HTTP phase prints how many database sessions it opened, since
a backend that starts and ends inside the window (a pool connection past the pool's size, closed
on return) is counted in no group but in ``others``.

    python -m bench.redeem [--mode both] [--seconds 20] [--threads 32] [--connections 32]
                           [--clients 32] [--cards 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.exc import SQLAlchemyError

if __package__ in (None, ""):  # run as ``python bench/redeem.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from bench.anchor import anchor_server
from voucherd.db.engine import Database
from voucherd.errors import DomainError
from voucherd.redemptions.schemas import RedeemRequest
from voucherd.redemptions.service import redeem
from voucherd.vouchers.issue import issue_voucher
from voucherd.vouchers.mint import mint_vouchers
from voucherd.vouchers.schemas import IssueVoucher, MintVouchers

BALANCE = 10**12  # never runs out: every attempt should succeed
TARGETS = {"hot": 0.6, "many": 0.5}  # issue 13, over HTTP

_DEBIT = "UPDATE voucher SET balance = balance - 1 WHERE id = %(voucher)s AND balance >= 1"
_LEDGER = """
INSERT INTO ledger_entry (tenant_id, voucher_id, delta, kind, created_at)
VALUES (%(tenant)s, %(voucher)s, -1, 'REDEMPTION', now())
"""


def redeem_one(conn: psycopg.Connection[Any], client: common.FloorClient) -> None:
    """The hot-card floor: the same row every time."""
    with conn.transaction():
        if conn.execute(_DEBIT, client.params).rowcount != 1:
            raise psycopg.errors.CheckViolation("the balance ran out")
        conn.execute(_LEDGER, client.params)


def redeem_random(conn: psycopg.Connection[Any], client: common.FloorClient) -> None:
    """The many-cards floor: a row drawn at random (outside the transaction) every time."""
    draw = client.state.setdefault("random", random.Random(client.index))
    params = {"tenant": client.params["tenant"], "voucher": draw.choice(client.params["ids"])}
    with conn.transaction():
        if conn.execute(_DEBIT, params).rowcount != 1:
            raise psycopg.errors.CheckViolation("the balance ran out")
        conn.execute(_LEDGER, params)


def redeemed_one() -> common.BodyCheck:
    """A 201 must be a redemption of 1 from the very code the request named."""

    def check(request: bytes, body: bytes) -> str | None:
        answer = json.loads(body)
        if answer.get("status") != "SUCCEEDED" or answer.get("amount") != 1:
            return "not a redemption of 1"
        code = answer.get("code")
        return None if code and f'"{code}"'.encode() in request else "another card's code"

    return check


@dataclass
class ThreadResult:
    redeemed: int  # inside the measured window
    everything: int  # warm-up included
    seconds: float
    cpu: common.CpuUsage
    errors: Counter[str]

    @property
    def rate(self) -> float:
        return self.redeemed / self.seconds


def redeem_in_threads(
    db: Database,
    tenant: common.BenchTenant,
    code: str,
    *,
    threads: int,
    warmup: float,
    seconds: float,
    meter: common.CpuMeter,
) -> ThreadResult:
    body = RedeemRequest(code=code, amount=1)
    measure_from = time.time() + warmup
    stop_at = measure_from + seconds
    inside = [0] * threads
    everything = [0] * threads
    errors = [Counter[str]() for _ in range(threads)]  # one each: no lost updates

    def redeemer(i: int) -> None:
        while True:
            try:
                redeem(db, tenant.caller, body)
                everything[i] += 1
                succeeded = True
            except (DomainError, SQLAlchemyError) as exc:
                errors[i][getattr(exc, "code", None) or type(exc).__name__] += 1
                succeeded = False
            now = time.time()
            if now >= stop_at:
                return
            if succeeded and now >= measure_from:
                inside[i] += 1

    workers = [threading.Thread(target=redeemer, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    time.sleep(max(0.0, measure_from - time.time()))
    start = meter.sample()
    time.sleep(max(0.0, stop_at - time.time()))
    end = meter.sample()
    for worker in workers:
        worker.join(60)
    return ThreadResult(
        sum(inside), sum(everything), seconds, end.since(start), sum(errors, Counter[str]())
    )


# --- the cards ------------------------------------------------------------------------------------


def _new_voucher(url: str, tenant: common.BenchTenant, campaign: str) -> tuple[str, str]:
    """The hot card: one fresh voucher, on emptied tables."""
    common.reset_tables(url)
    db = common.open_database(url)
    try:
        record = issue_voucher(db, tenant.caller, IssueVoucher(campaign=campaign))
    finally:
        db.dispose()
    return record.voucher.id, record.voucher.code


def _new_cards(
    url: str, tenant: common.BenchTenant, campaign: str, count: int
) -> tuple[list[str], list[str]]:
    """Many cards: ``count`` fresh vouchers on emptied tables, settled; their ids and codes."""
    common.reset_tables(url)
    db = common.open_database(url)
    try:
        mint_vouchers(db, tenant.caller, campaign, MintVouchers(count=count))
    finally:
        db.dispose()
    common.settle(url)
    with psycopg.connect(common.libpq_url(url)) as conn:
        rows = conn.execute("SELECT id, code FROM voucher ORDER BY id").fetchall()
    return [r[0] for r in rows], [r[1] for r in rows]


def _check_ledger(url: str, redeemed: int | None) -> tuple[bool, str]:
    """Every balance is its ledger's sum, what the balances lost is the redemption entries, and
    (when known) every success took exactly 1."""
    with psycopg.connect(common.libpq_url(url)) as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE v.balance IS DISTINCT FROM l.total),"
            " coalesce(sum(v.amount - v.balance), 0),"
            " (SELECT count(*) FROM ledger_entry WHERE kind = 'REDEMPTION')"
            " FROM voucher v LEFT JOIN (SELECT voucher_id, sum(delta) AS total"
            " FROM ledger_entry GROUP BY voucher_id) l ON l.voucher_id = v.id"
        ).fetchone()
    assert row is not None
    cards, wrong, taken, entries = row
    ok = wrong == 0 and taken == entries and (redeemed is None or entries == redeemed)
    verdict = "every ledger sums to its balance" if ok else "MISMATCH"
    return ok, (
        f"{verdict}: {cards:,} cards, {wrong:,} balances off their ledger, {taken:,} taken, "
        f"{entries:,} redemption entries"
        + (f", {redeemed:,} successes" if redeemed is not None else "")
    )


# --- the phases -----------------------------------------------------------------------------------


_BUSY_ELSEWHERE = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND (backend_type = 'autovacuum worker' OR state NOT IN ('idle'))
"""
_SESSIONS = "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"


def _wait_quiet(url: str, *, limit: float = 120.0) -> None:
    """Wait until nothing else works on the bench database (an autovacuum of the cards just
    minted, a backend still finishing): a phase measured beside it would count its CPU as
    PostgreSQL's or, once its backend exits inside the window, as another process's."""
    deadline = time.monotonic() + limit
    with psycopg.connect(common.libpq_url(url), autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(_BUSY_ELSEWHERE).fetchone()
            if row is None or row[0] == 0:
                return
            time.sleep(0.2)
    print(f"    (the bench database was still busy after {limit:g} s; measuring anyway)")


def _sessions(url: str) -> int:
    """Sessions PostgreSQL has opened on the bench database so far (PostgreSQL 14 and newer)."""
    with psycopg.connect(common.libpq_url(url), autocommit=True) as conn:
        row = conn.execute(_SESSIONS).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _service_phase(
    url: str, tenant: common.BenchTenant, campaign: str, args: argparse.Namespace
) -> tuple[float, float]:
    _, code = _new_voucher(url, tenant, campaign)
    db = common.open_database(url, pool_size=args.threads)  # a connection for every thread
    try:
        result = redeem_in_threads(
            db,
            tenant,
            code,
            threads=args.threads,
            warmup=args.warmup,
            seconds=args.seconds,
            meter=common.CpuMeter(
                {"voucherd": common.this_process, "postgres": common.postgres_serving(url)}
            ),
        )
    finally:
        db.dispose()
    common.require(not result.errors, f"redeem() in threads: {dict(result.errors)}")
    ok, verdict = _check_ledger(url, result.everything)
    print(f"  voucherd redeem(), {args.threads} threads: {result.rate:,.0f} redemptions/s")
    print(f"    {result.cpu.describe(result.redeemed, 'redemption')}")
    print(f"    {verdict}")
    common.require(ok, f"redeem() in threads: {verdict}")
    return result.rate, result.cpu.others


def _http_phase(
    url: str,
    server: common.Server,
    tenant: common.BenchTenant,
    codes: list[str],
    label: str,
    args: argparse.Namespace,
    *,
    who: str = "voucherd",
) -> common.HttpResult:
    """``POST /api/v1/redemptions`` of 1 from one of ``codes``, drawn at random each time, to
    voucherd or (``who``) the bare-framework anchor."""
    requests = [
        common.http_request(
            server,
            "POST",
            "/api/v1/redemptions",
            tenant.token,
            json.dumps({"code": code, "amount": 1}).encode(),
        )
        for code in codes
    ]
    draw = random.Random(len(codes))
    pick: Callable[[], bytes] = lambda: requests[draw.randrange(len(requests))]
    _wait_quiet(url)
    sessions = _sessions(url)
    result = common.drive_http(
        server,
        requests[0] if len(requests) == 1 else pick,
        expect=201,
        connections=args.connections,
        warmup=args.warmup,
        seconds=args.seconds,
        meter=common.CpuMeter(
            {
                who: server.pids,
                "postgres": common.postgres_serving(url),
                "load generator": common.this_process,
            }
        ),
        check=redeemed_one(),
    )
    opened = _sessions(url) - sessions - 1  # less the one that read the count
    result.require_clean(201, f"{label}: POST /api/v1/redemptions")
    ok, verdict = _check_ledger(url, result.everything[201])
    rate = result.count(201) / args.seconds
    print(f"  {who} over HTTP, {label}, {args.connections} connections: {rate:,.0f} /s")
    print(f"    {result.cpu.describe(result.count(201), 'redemption')}")
    print(f"    p50 {result.latency_ms(0.5):.1f} ms, p99 {result.latency_ms(0.99):.1f} ms")
    # A connection voucherd's pool opens past its size and closes on return is a backend forked
    # and ended inside the window: its CPU is in no group, so it shows as "others".
    print(f"    {opened:,} database sessions opened during the phase (warm-up included)")
    print(f"    {verdict}")
    common.require(ok, f"{who}, {label} over HTTP: {verdict}")
    return result


def _floor_phase(
    url: str, body: common.FloorBody, params: dict[str, Any], label: str, args: argparse.Namespace
) -> common.FloorResult:
    _wait_quiet(url)
    result = common.run_postgres_floor(body, url, args, params)
    common.require(not result.errors, f"floor, {label}: {dict(result.errors)}")
    ok, verdict = _check_ledger(url, None)
    print(f"  floor, UPDATE + INSERT, {label}: {result.rate:,.0f} tx/s")
    print(f"    {result.cpu.describe(result.transactions, 'transaction')}")
    print(f"    {verdict}")
    common.require(ok, f"floor, {label}: {verdict}")
    return result


def _hot_run(
    url: str,
    server: common.Server,
    tenant: common.BenchTenant,
    campaign: str,
    args: argparse.Namespace,
) -> list[float]:
    """[redeem() /s if threads, HTTP /s, p99 ms, floor tx/s, HTTP ratio, others]"""
    figures, noise = [], 0.0
    if args.threads:
        service, noise = _service_phase(url, tenant, campaign, args)
        figures.append(service)
    _, code = _new_voucher(url, tenant, campaign)
    http = _http_phase(url, server, tenant, [code], "one hot card", args)
    voucher_id, _ = _new_voucher(url, tenant, campaign)
    params = {"tenant": tenant.id, "voucher": voucher_id}
    floor = _floor_phase(url, redeem_one, params, "one hot row", args)
    rate = http.count(201) / args.seconds
    noise = max(noise, http.cpu.others, floor.cpu.others)
    return [*figures, rate, http.latency_ms(0.99), floor.rate, rate / floor.rate, noise]


def _many_run(
    url: str,
    server: common.Server,
    tenant: common.BenchTenant,
    campaign: str,
    args: argparse.Namespace,
) -> list[float]:
    """[HTTP /s, p99 ms, anchor /s, floor tx/s, HTTP ratio, vs anchor, anchor ratio, others]"""
    label = f"{args.cards:,} random cards"
    _, codes = _new_cards(url, tenant, campaign, args.cards)
    http = _http_phase(url, server, tenant, codes, label, args)
    _, codes = _new_cards(url, tenant, campaign, args.cards)
    # Started for its phase only: its pool's connections beside voucherd's and the floor's
    # 32 clients would pass PostgreSQL's 100.
    with anchor_server(url, tenant.id, tenant.caller.key_id, workers=args.workers) as anchor:
        bare = _http_phase(url, anchor, tenant, codes, label, args, who="anchor")
    ids, _ = _new_cards(url, tenant, campaign, args.cards)
    params = {"tenant": tenant.id, "ids": ids}
    floor = _floor_phase(url, redeem_random, params, f"{args.cards:,} random rows", args)
    rate = http.count(201) / args.seconds
    anchor_rate = bare.count(201) / args.seconds
    noise = max(http.cpu.others, bare.cpu.others, floor.cpu.others)
    return [
        rate,
        http.latency_ms(0.99),
        anchor_rate,
        floor.rate,
        rate / floor.rate,
        rate / anchor_rate,
        anchor_rate / floor.rate,
        noise,
    ]


def main(argv: list[str] | None = None) -> int:
    command = common.parser(__doc__.split("\n\n")[0])
    command.add_argument(
        "--mode",
        choices=["hot", "many", "both"],
        default="both",
        help="one hot card, many random cards, or both",
    )
    command.add_argument(
        "--threads", type=int, default=32, help="in-process redeem() threads on the hot card"
    )
    command.add_argument("--clients", type=int, default=32, help="floor client processes")
    command.add_argument("--connections", type=int, default=32, help="HTTP connections")
    command.add_argument("--cards", type=int, default=100_000, help="cards in the many mode")
    command.add_argument("--workers", type=int, default=2, help="voucherd worker processes")
    command.add_argument("--http", action="store_true", help="(always on; kept for old scripts)")
    common.add_env_option(
        command, "a setting for the voucherd processes, e.g. VOUCHERD_DB_POOL_SIZE=10"
    )
    args = command.parse_args(argv)
    modes = ["hot", "many"] if args.mode == "both" else [args.mode]
    runs: dict[str, list[list[float]]] = {mode: [] for mode in modes}
    origin = common.voucherd_origin()
    with common.bench_database() as url:
        tenant, campaign = common.make_gift_tenant(url, value=BALANCE)
        print(f"redeem: {common.machine_line(url)}; voucherd from {origin}")
        print(
            f"voucherd serve --workers {args.workers} (production defaults, tenant rate limits "
            f"{common.BENCH_RATE_LIMIT:,} per window), {args.connections} HTTP connections"
            + (f", {args.threads} redeem() threads on the hot card" if args.threads else "")
            + f"; floor: {args.clients} psycopg clients; modes: {', '.join(modes)}; "
            f"{args.seconds:g} s measured after {args.warmup:g} s warm-up"
        )
        if args.env:
            print(f"server environment: {' '.join(f'{k}={v}' for k, v in args.env)}")
        with common.voucherd_server(url, workers=args.workers, env=dict(args.env)) as server:
            common.raise_rate_limits(server, tenant.token)
            for run in range(1, args.runs + 1):
                for mode in modes:
                    print(f"\nrun {run}, {'one hot card' if mode == 'hot' else 'many cards'}:")
                    one_run = _hot_run if mode == "hot" else _many_run
                    runs[mode].append(one_run(url, server, tenant, campaign, args))
    if "hot" in runs:
        print("\none hot card:")
        headers = ["HTTP /s", "p99 ms", "floor tx/s", "ratio", "others"]
        common.print_runs(
            (["redeem() /s"] if args.threads else []) + headers, runs["hot"], key="redeem.hot"
        )
        print(f"ratio = HTTP redemptions/s / floor tx/s on one row (target >= {TARGETS['hot']})")
    if "many" in runs:
        print(f"\nmany cards ({args.cards:,}, drawn at random):")
        common.print_runs(
            ["HTTP /s", "p99 ms", "anchor /s", "floor tx/s", "ratio", "vs anchor"]
            + ["anchor ratio", "others"],
            runs["many"],
            key="redeem.many",
        )
        print(
            f"ratio = HTTP redemptions/s / floor tx/s on random rows (target >= {TARGETS['many']})"
        )
        print("vs anchor = voucherd / the bare FastAPI anchor doing the floor's SQL (same server)")
        print("anchor ratio = anchor / floor: the framework's own ceiling for this ratio")
    print("others = most cores used by other processes during a phase (a shared machine's noise)")
    return 0


if __name__ == "__main__":
    common.run(main)
