"""Hot-card redemption: many redeemers on one GIFT voucher, against the raw database floor.

voucherd: threads in this process calling ``voucherd.redemptions.service.redeem`` (as an API
worker's thread pool does), each taking 1 from one voucher with a huge balance; with ``--http``
also ``POST /api/v1/redemptions`` over keep-alive connections to ``voucherd serve --workers 2``.

Floor: psycopg client processes, each transaction the conditional
``UPDATE voucher SET balance = balance - 1 WHERE id = $1 AND balance >= 1`` and the ledger
INSERT (BEGIN, UPDATE, INSERT, COMMIT), all on one row.

Afterwards every voucher's balance must equal the sum of its ledger.

    python -m bench.redeem [--seconds 20] [--threads 32] [--clients 32] [--http] [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.exc import SQLAlchemyError

if __package__ in (None, ""):  # run as ``python bench/redeem.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from voucherd.db.engine import Database
from voucherd.errors import DomainError
from voucherd.redemptions.schemas import RedeemRequest
from voucherd.redemptions.service import redeem
from voucherd.vouchers.issue import issue_voucher
from voucherd.vouchers.schemas import IssueVoucher

BALANCE = 10**12  # never runs out: every attempt should succeed

_DEBIT = "UPDATE voucher SET balance = balance - 1 WHERE id = %(voucher)s AND balance >= 1"
_LEDGER = """
INSERT INTO ledger_entry (tenant_id, voucher_id, delta, kind, created_at)
VALUES (%(tenant)s, %(voucher)s, -1, 'REDEMPTION', now())
"""


def redeem_one(conn: psycopg.Connection[Any], client: common.FloorClient) -> None:
    with conn.transaction():
        if conn.execute(_DEBIT, client.params).rowcount != 1:
            raise psycopg.errors.CheckViolation("the balance ran out")
        conn.execute(_LEDGER, client.params)


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


def _new_voucher(url: str, tenant: common.BenchTenant, campaign: str) -> tuple[str, str]:
    db = common.open_database(url)
    try:
        record = issue_voucher(db, tenant.caller, IssueVoucher(campaign=campaign))
    finally:
        db.dispose()
    return record.voucher.id, record.voucher.code


def _check_ledger(url: str, voucher_id: str, redeemed: int | None) -> tuple[bool, str]:
    """The balance is the ledger's sum, and (when known) every success took exactly 1."""
    with psycopg.connect(common.libpq_url(url)) as conn:
        row = conn.execute(
            "SELECT v.amount, v.balance, sum(l.delta), count(*) FILTER (WHERE l.kind = 'REDEMPTION')"
            " FROM voucher v JOIN ledger_entry l ON l.voucher_id = v.id WHERE v.id = %s"
            " GROUP BY v.id",
            (voucher_id,),
        ).fetchone()
    assert row is not None
    amount, balance, ledger_sum, entries = row
    ok = balance == ledger_sum and amount - balance == entries
    if redeemed is not None:
        ok = ok and entries == redeemed
    verdict = "ledger sums to the balance" if ok else "MISMATCH"
    return ok, (
        f"{verdict}: balance {balance:,}, ledger sum {ledger_sum:,}, {entries:,} redemption "
        f"entries" + (f", {redeemed:,} successes" if redeemed is not None else "")
    )


def _service_phase(
    url: str, tenant: common.BenchTenant, campaign: str, args: argparse.Namespace
) -> tuple[float, float, bool]:
    voucher_id, code = _new_voucher(url, tenant, campaign)
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
    ok, verdict = _check_ledger(url, voucher_id, result.everything)
    print(f"  voucherd redeem(), {args.threads} threads: {result.rate:,.0f} redemptions/s")
    print(f"    {result.cpu.describe(result.redeemed, 'redemption')}")
    print(f"    {verdict}")
    if result.errors:
        print(f"    ERRORS: {dict(result.errors)}")
    return result.rate, result.cpu.others, ok and not result.errors


def _http_phase(
    url: str,
    server: common.Server,
    tenant: common.BenchTenant,
    campaign: str,
    args: argparse.Namespace,
) -> tuple[float, float, bool]:
    voucher_id, code = _new_voucher(url, tenant, campaign)
    body = json.dumps({"code": code, "amount": 1}).encode()
    result = common.drive_http(
        server,
        common.http_request(server, "POST", "/api/v1/redemptions", tenant.token, body),
        expect=201,
        connections=args.connections,
        warmup=args.warmup,
        seconds=args.seconds,
        meter=common.CpuMeter(
            {
                "voucherd": server.pids,
                "postgres": common.postgres_serving(url),
                "load generator": common.this_process,
            }
        ),
    )
    ok, verdict = _check_ledger(url, voucher_id, result.everything[201])
    rate = result.count(201) / args.seconds
    print(f"  voucherd over HTTP, {args.connections} connections: {rate:,.0f} redemptions/s")
    print(f"    {result.cpu.describe(result.count(201), 'redemption')}")
    print(f"    {verdict}")
    unexpected = result.unexpected(201)
    if unexpected or result.reconnects:
        print(f"    NOT 201: {unexpected}, reconnects: {result.reconnects}")
        for sample in result.samples:
            print(f"      {sample!r}")
    return rate, result.cpu.others, ok and not unexpected and not result.reconnects


def _floor_phase(
    url: str, tenant: common.BenchTenant, campaign: str, args: argparse.Namespace
) -> tuple[float, float, bool]:
    voucher_id, _ = _new_voucher(url, tenant, campaign)
    result = common.run_floor(
        redeem_one,
        url,
        clients=args.clients,
        warmup=args.warmup,
        seconds=args.seconds,
        params={"tenant": tenant.id, "voucher": voucher_id},
        meter=common.CpuMeter({"postgres": common.postgres_serving(url)}),
    )
    ok, verdict = _check_ledger(url, voucher_id, None)
    print(f"  floor, UPDATE + INSERT on one row: {result.rate:,.0f} tx/s")
    print(f"    {result.cpu.describe(result.transactions, 'transaction')}")
    print(f"    {verdict}")
    if result.errors:
        print(f"    ERRORS: {dict(result.errors)}")
    return result.rate, result.cpu.others, ok and not result.errors


def main(argv: list[str] | None = None) -> int:
    command = common.parser(__doc__.split("\n\n")[0])
    command.add_argument("--threads", type=int, default=32, help="in-process redeemer threads")
    command.add_argument("--clients", type=int, default=32, help="floor client processes")
    command.add_argument("--http", action="store_true", help="also redeem over HTTP")
    command.add_argument("--connections", type=int, default=32, help="HTTP connections")
    command.add_argument("--workers", type=int, default=2, help="voucherd worker processes")
    args = command.parse_args(argv)
    all_ok = True
    runs: list[list[float]] = []
    with common.bench_database() as url:
        db = common.open_database(url)
        try:
            tenant = common.make_tenant(db)
            campaign = common.make_gift_campaign(db, tenant, value=BALANCE)
        finally:
            db.dispose()
        print(f"redeem: {common.machine_line(url)}")
        print(
            f"a fresh GIFT voucher per phase; voucherd: {args.threads} threads calling redeem()"
            + (f", then {args.connections} HTTP connections" if args.http else "")
            + f"; floor: {args.clients} psycopg clients; {args.seconds:g} s measured after "
            f"{args.warmup:g} s warm-up"
        )
        server_running = (
            common.voucherd_server(url, workers=args.workers)
            if args.http
            else contextlib.nullcontext()
        )
        with server_running as server:
            for run in range(1, args.runs + 1):
                print(f"\nrun {run}:")
                common.reset_tables(url)
                service, noise, ok = _service_phase(url, tenant, campaign, args)
                all_ok &= ok
                figures = [service]
                if server is not None:
                    common.reset_tables(url)
                    http, others, ok = _http_phase(url, server, tenant, campaign, args)
                    all_ok &= ok
                    figures.append(http)
                    noise = max(noise, others)
                common.reset_tables(url)
                floor, others, ok = _floor_phase(url, tenant, campaign, args)
                all_ok &= ok
                noise = max(noise, others)
                runs.append([*figures, floor, *(f / floor for f in figures), noise])
    headers = ["redeem() /s", *(["HTTP /s"] if args.http else []), "floor tx/s", "ratio"]
    common.print_runs(headers + (["HTTP ratio"] if args.http else []) + ["others"], runs)
    print("ratio = voucherd redemptions/s / floor transactions/s, both on one hot row")
    print("others = most cores used by other processes during a phase (a shared machine's noise)")
    return 0 if all_ok else 1


if __name__ == "__main__":
    common.run(main)
