"""Pool claiming: publications per second from a 1,000,000-code pool, against the raw floor.

voucherd: ``POST /api/v1/publications`` with ``{"campaign": ..., "count": 1}`` over keep-alive
connections to ``voucherd serve --workers 2`` (``--threads N``: also N threads calling
``voucherd.publications.publish.publish`` in this process). Each answer is one publication of
one code claimed from the pool: the claim (``FOR UPDATE SKIP LOCKED``), the publication, its
voucher link and its event, in one transaction.

Floor: psycopg client processes, each transaction the bare claim of one code, the same
statement shape voucherd uses:
``UPDATE voucher SET published_count = 1 WHERE id = (SELECT id FROM voucher WHERE campaign_id
= $1 AND published_count = 0 AND state = 'ACTIVE' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)``.

All phases drain the same pool, one after the other; nothing is truncated between them (the pool
is the point), only vacuumed. Afterwards no code may be in two publications, and every
publication answered must hold exactly one code.

voucherd runs with its production defaults (the guard, metrics, JSON access logs) and the
tenant's own rate limits raised. Any answer but a 201 publishing one code of the campaign (a 429
included), a failed claim, or a publication that does not add up stops the benchmark with exit
status 1 and no ratio.

    python -m bench.claim [--seconds 20] [--connections 16] [--clients 16] [--pool 1000000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.exc import SQLAlchemyError

if __package__ in (None, ""):  # run as ``python bench/claim.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from voucherd.errors import DomainError
from voucherd.publications.publish import publish
from voucherd.publications.schemas import PublishRequest
from voucherd.vouchers.mint import mint_vouchers
from voucherd.vouchers.schemas import MintVouchers

_CLAIM = """
UPDATE voucher SET published_count = 1, updated_at = now()
WHERE id = (
    SELECT id FROM voucher
    WHERE campaign_id = %(campaign)s AND published_count = 0 AND state = 'ACTIVE'
    ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
) AND published_count = 0
"""


def claim_one(conn: psycopg.Connection[Any], client: common.FloorClient) -> None:
    with conn.transaction():
        if conn.execute(_CLAIM, client.params).rowcount != 1:
            raise psycopg.errors.NoDataFound("the pool ran dry")


def _vacuum(url: str) -> None:
    """Dead index entries of claimed codes are what a claim walks past; start each phase clean."""
    with psycopg.connect(common.libpq_url(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE voucher, publication, publication_voucher, voucher_event")
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute("CHECKPOINT")


def _fill_pool(url: str, tenant: common.BenchTenant, count: int) -> str:
    db = common.open_database(url)
    try:
        campaign = common.make_gift_campaign(db, tenant, value=1000)
        started = time.perf_counter()
        remaining = count
        while remaining:  # in parts: one request may mint at most max_bulk_count codes
            part = min(remaining, db.settings.max_bulk_count)
            mint_vouchers(db, tenant.caller, campaign, MintVouchers(count=part))
            remaining -= part
        print(f"pool: {count:,} codes minted in {time.perf_counter() - started:,.0f} s")
    finally:
        db.dispose()
    return campaign


def _check(url: str, campaign: str) -> tuple[bool, str, int]:
    with psycopg.connect(common.libpq_url(url)) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM publication_voucher),"
            " (SELECT count(DISTINCT voucher_id) FROM publication_voucher),"
            " (SELECT count(*) FROM publication),"
            " (SELECT count(*) FROM voucher WHERE campaign_id = %s AND published_count > 0),"
            " (SELECT count(*) FROM voucher WHERE campaign_id = %s AND published_count = 0)",
            (campaign, campaign),
        ).fetchone()
    assert row is not None
    links, distinct, publications, published, left = row
    ok = links == distinct == publications
    verdict = "every code in one publication" if ok else "MISMATCH"
    report = (
        f"{verdict}: {publications:,} publications, {links:,} links, {distinct:,} distinct "
        f"codes; {published:,} codes published in all phases, {left:,} left in the pool"
    )
    return ok, report, publications


def _published_one(campaign: str) -> common.BodyCheck:
    """A 201 must be a publication of exactly one code of ``campaign``."""

    def check(_request: bytes, body: bytes) -> str | None:
        publication = json.loads(body)
        if publication.get("campaign_id") != campaign or publication.get("count") != 1:
            return f"not a publication of one code of {campaign}"
        return None if len(publication.get("vouchers") or []) == 1 else "not one code"

    return check


def _service_phase(
    url: str, tenant: common.BenchTenant, campaign: str, args: argparse.Namespace
) -> float:
    db = common.open_database(url, pool_size=args.threads)
    body = PublishRequest(campaign=campaign, count=1)
    measure_from = time.time() + args.warmup
    stop_at = measure_from + args.seconds
    inside = [0] * args.threads
    errors = [Counter[str]() for _ in range(args.threads)]

    def publisher(i: int) -> None:
        while True:
            try:
                publish(db, tenant.caller, body)
                ok = True
            except (DomainError, SQLAlchemyError) as exc:
                errors[i][getattr(exc, "code", None) or type(exc).__name__] += 1
                ok = False
            now = time.time()
            if now >= stop_at:
                return
            if ok and now >= measure_from:
                inside[i] += 1

    meter = common.CpuMeter(
        {"voucherd": common.this_process, "postgres": common.postgres_serving(url)}
    )
    threads = [
        threading.Thread(target=publisher, args=(i,), daemon=True) for i in range(args.threads)
    ]
    try:
        for thread in threads:
            thread.start()
        time.sleep(max(0.0, measure_from - time.time()))
        start = meter.sample()
        time.sleep(max(0.0, stop_at - time.time()))
        end = meter.sample()
        for thread in threads:
            thread.join(60)
    finally:
        db.dispose()
    rate = sum(inside) / args.seconds
    failed = sum(errors, Counter[str]())
    common.require(not failed, f"publish() in threads: {dict(failed)}")
    print(f"  voucherd publish(), {args.threads} threads: {rate:,.0f} publications/s")
    print(f"    {end.since(start).describe(sum(inside), 'publication')}")
    return rate


def _http_phase(
    server: common.Server,
    url: str,
    tenant: common.BenchTenant,
    campaign: str,
    args: argparse.Namespace,
) -> tuple[float, float]:
    body = json.dumps({"campaign": campaign, "count": 1}).encode()
    result = common.drive_http(
        server,
        common.http_request(server, "POST", "/api/v1/publications", tenant.token, body),
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
        check=_published_one(campaign),
    )
    result.require_clean(201, "POST /api/v1/publications")
    rate = result.count(201) / args.seconds
    print(f"  voucherd over HTTP, {args.connections} connections: {rate:,.0f} publications/s")
    print(f"    {result.cpu.describe(result.count(201), 'publication')}")
    print(f"    p50 {result.latency_ms(0.5):.1f} ms, p99 {result.latency_ms(0.99):.1f} ms")
    return rate, result.cpu.others


def _floor_phase(
    url: str, tenant: common.BenchTenant, campaign: str, args: argparse.Namespace
) -> tuple[float, float]:
    result = common.run_floor(
        claim_one,
        url,
        clients=args.clients,
        warmup=args.warmup,
        seconds=args.seconds,
        params={"campaign": campaign},
        meter=common.CpuMeter({"postgres": common.postgres_serving(url)}),
    )
    common.require(not result.errors, f"floor, claim with SKIP LOCKED: {dict(result.errors)}")
    print(f"  floor, claim one code with SKIP LOCKED: {result.rate:,.0f} tx/s")
    print(f"    {result.cpu.describe(result.transactions, 'transaction')}")
    return result.rate, result.cpu.others


def main(argv: list[str] | None = None) -> int:
    command = common.parser(__doc__.split("\n\n")[0])
    command.add_argument("--pool", type=int, default=1_000_000, help="codes in the campaign")
    command.add_argument("--connections", type=int, default=16, help="HTTP connections")
    command.add_argument("--clients", type=int, default=16, help="floor client processes")
    command.add_argument(
        "--threads", type=int, default=0, help="also N in-process threads calling publish()"
    )
    command.add_argument("--workers", type=int, default=2, help="voucherd worker processes")
    args = command.parse_args(argv)
    runs: list[list[float]] = []
    origin = common.voucherd_origin()
    with common.bench_database() as url:
        db = common.open_database(url)
        try:
            tenant = common.make_tenant(db)
        finally:
            db.dispose()
        print(f"claim: {common.machine_line(url)}; voucherd from {origin}")
        campaign = _fill_pool(url, tenant, args.pool)
        print(
            f"one code per publication from one pool; voucherd (production defaults, tenant "
            f"rate limits {common.BENCH_RATE_LIMIT:,} per window): {args.connections} HTTP "
            f"connections{f', {args.threads} threads' if args.threads else ''}; floor: "
            f"{args.clients} psycopg clients; {args.seconds:g} s measured after "
            f"{args.warmup:g} s warm-up"
        )
        with common.voucherd_server(url, workers=args.workers) as server:
            common.raise_rate_limits(server, tenant.token)
            for run in range(1, args.runs + 1):
                print(f"\nrun {run}:")
                if args.threads:
                    _vacuum(url)
                    _service_phase(url, tenant, campaign, args)
                _vacuum(url)
                http, noise = _http_phase(server, url, tenant, campaign, args)
                _vacuum(url)
                floor, others = _floor_phase(url, tenant, campaign, args)
                runs.append([http, floor, http / floor, max(noise, others)])
        ok, verdict, _ = _check(url, campaign)
        print(f"\n{verdict}")
        common.require(ok, verdict)
    common.print_runs(["HTTP publications/s", "floor claims/s", "ratio", "others"], runs)
    print("ratio = voucherd publications/s over HTTP / raw claims/s, same pool, same run")
    print("others = most cores used by other processes during a phase (a shared machine's noise)")
    return 0


if __name__ == "__main__":
    common.run(main)
