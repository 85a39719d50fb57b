"""Pool claiming: publications per second from a 1,000,000-code pool, against the raw floor.

voucherd: ``POST /api/v1/publications`` with ``{"campaign": ..., "count": 1}`` over keep-alive
connections to ``voucherd serve --workers 2`` (``--threads N``: also N threads calling
``voucherd.publications.publish.publish`` in this process). Each answer is one publication of
one code claimed from the pool: the claim (``FOR UPDATE SKIP LOCKED``), the publication, its
voucher link and its event, in one transaction (on PostgreSQL one statement after the campaign's
read: ``publications/sql.py``).

Floor: psycopg client processes, each transaction the bare claim of one code, the same
statement shape voucherd uses, each client continuing after the last code it claimed (as each
voucherd process does) and wrapping round once:
``UPDATE voucher SET published_count = 1 WHERE id = (SELECT id FROM voucher WHERE campaign_id
= $1 AND published_count = 0 AND state = 'ACTIVE' AND id > $2 ORDER BY id LIMIT 1 FOR UPDATE
SKIP LOCKED) RETURNING id, code``.

Anchor: the bare FastAPI app of bench/anchor.py under the same server, claiming one code with
the floor's statement per ``POST /api/v1/publications``, measured once per run right after a
vacuum: the framework's own ceiling for this ratio (its claims write no publication).

All phases drain the same pool, one after the other; nothing is truncated between them (the pool
is the point), only vacuumed. Afterwards no code may be in two publications, and every
publication answered must hold exactly the codes it said.

Flatness (issue 13: "flat from the first claim to the 100,000th, no walk over dead index
entries"). Each side is measured twice per run: right after a vacuum (the pool's index clean),
then again once ``--after`` (100,000) codes have been claimed since that vacuum, with no vacuum
in between, so every claimed code's entry is still dead in the pool's partial index (autovacuum
leaves a 1,000,000-row table alone until about 200,000 dead rows). voucherd gets there through
its own claim: ``POST /api/v1/publications`` of 1,000 codes at a time (the same ``claim_pool``
as a one-code publication); the floor through its own statement with ``LIMIT 1000``. ``flat`` =
the rate after / the rate first: 1.0 is flat; a claim that walks over the dead entries from the
head of the index slows down as they pile up. ``--after 0`` measures only the first.

voucherd runs with its production defaults (the guard, metrics, JSON access logs) and the
tenant's own rate limits raised. Any answer but a 201 publishing one code of the campaign (a 429
included), a failed claim, or a publication that does not add up stops the benchmark with exit
status 1 and no ratio.

    python -m bench.claim [--seconds 20] [--connections 16] [--clients 16] [--pool 1000000]
                          [--after 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.exc import SQLAlchemyError

if __package__ in (None, ""):  # run as ``python bench/claim.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from bench.anchor import anchor_server
from voucherd.errors import DomainError
from voucherd.publications.publish import publish
from voucherd.publications.schemas import PublishRequest
from voucherd.vouchers.mint import mint_vouchers
from voucherd.vouchers.schemas import MintVouchers

# Each floor client continues after the last code it claimed, as each voucherd process does
# (publications/pool.py): a floor that always starts at the head of the pool walks the dead index
# entries of every code claimed since the last vacuum, and measured 8-39 claims/s on a
# 1,000,000-code pool, which no ratio can be taken against.
# The anchor (bench/anchor.py) claims with this statement too, answering with the code.
CLAIM_ONE = """
UPDATE voucher SET published_count = 1, updated_at = now()
WHERE id = (
    SELECT id FROM voucher
    WHERE campaign_id = %(campaign)s AND published_count = 0 AND state = 'ACTIVE'
      AND id > %(after)s
    ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
) AND published_count = 0
RETURNING id, code
"""


ADVANCE_BATCH = 1000  # codes per publication while advancing (the API's most per request)
_CLAIM_MANY = """
UPDATE voucher SET published_count = 1, updated_at = now()
WHERE id IN (
    SELECT id FROM voucher
    WHERE campaign_id = %(campaign)s AND published_count = 0 AND state = 'ACTIVE'
    ORDER BY id LIMIT %(count)s FOR UPDATE SKIP LOCKED
) AND published_count = 0
"""


def claim_one(conn: psycopg.Connection[Any], client: common.FloorClient) -> None:
    after = client.state.get("after", "")
    with conn.transaction():
        row = conn.execute(CLAIM_ONE, {**client.params, "after": after}).fetchone()
        if row is None and after:  # nothing after the last: wrap round to the head once
            row = conn.execute(CLAIM_ONE, {**client.params, "after": ""}).fetchone()
        if row is None:
            raise psycopg.errors.NoDataFound("the pool ran dry")
    client.state["after"] = row[0]


def _advance_floor(url: str, campaign: str, codes: int) -> None:
    """Claim ``codes`` more with the floor's own statement, ``ADVANCE_BATCH`` per transaction,
    from the head of the pool as the floor claims: the dead entries pile up as they would."""
    with psycopg.connect(common.libpq_url(url), autocommit=True) as conn:
        while codes > 0:
            count = min(codes, ADVANCE_BATCH)
            with conn.transaction():
                done = conn.execute(_CLAIM_MANY, {"campaign": campaign, "count": count}).rowcount
            common.require(done == count, f"the pool ran dry while advancing ({done} of {count})")
            codes -= count


def _advance_voucherd(
    server: common.Server, token: str, campaign: str, codes: int
) -> tuple[int, int]:
    """Publish ``codes`` more through voucherd's own API, ``ADVANCE_BATCH`` per publication,
    on two connections; (publications, codes) answered. Any answer but a 201 publishing
    exactly the count asked for fails the benchmark."""
    counts = [ADVANCE_BATCH] * (codes // ADVANCE_BATCH)
    counts += [codes % ADVANCE_BATCH] if codes % ADVANCE_BATCH else []

    def publish(count: int) -> int:
        request = urllib.request.Request(
            f"http://{server.host}:{server.port}/api/v1/publications",
            data=json.dumps({"campaign": campaign, "count": count}).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as answer:
                status, body = answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as refused:
            raise common.BenchFailed(
                f"advancing: POST /api/v1/publications answered {refused.code}: "
                f"{refused.read()[:300]!r}"
            ) from None
        published = len(body.get("vouchers") or [])
        common.require(
            status == 201 and body.get("count") == count and published == count,
            f"advancing: a publication of {count} answered {status} with {published} codes",
        )
        return published

    with ThreadPoolExecutor(2) as pool:
        done = sum(pool.map(publish, counts))
    return len(counts), done


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


def _published(url: str, campaign: str) -> int:
    """Codes of the campaign claimed so far, by any phase."""
    with psycopg.connect(common.libpq_url(url)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM voucher WHERE campaign_id = %s AND published_count > 0",
            (campaign,),
        ).fetchone()
    return int(row[0]) if row else 0


def _check(url: str, campaign: str, publications: int, links: int) -> tuple[bool, str]:
    """No code in two publications, and the database holds the publications and links that
    voucherd answered 201 for (``publications`` of them, ``links`` codes in all)."""
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
    stored_links, distinct, stored, published, left = row
    ok = stored_links == distinct == links and stored == publications and left > 0
    verdict = "every code in one publication" if ok else "MISMATCH"
    report = (
        f"{verdict}: {stored:,} publications ({publications:,} answered 201), "
        f"{stored_links:,} links ({links:,} codes answered), {distinct:,} distinct codes; "
        f"{published:,} codes published in all phases, {left:,} left in the pool"
    )
    return ok, report


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
    label: str,
    args: argparse.Namespace,
    *,
    who: str = "voucherd",
) -> common.HttpResult:
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
                who: server.pids,
                "postgres": common.postgres_serving(url),
                "load generator": common.this_process,
            }
        ),
        check=_published_one(campaign),
    )
    result.require_clean(201, f"{who}: POST /api/v1/publications")
    rate = result.count(201) / args.seconds
    print(f"  {who} over HTTP, {label}, {args.connections} connections: {rate:,.0f} publications/s")
    print(f"    {result.cpu.describe(result.count(201), 'publication')}")
    print(f"    p50 {result.latency_ms(0.5):.1f} ms, p99 {result.latency_ms(0.99):.1f} ms")
    return result


def _floor_phase(
    url: str, campaign: str, label: str, args: argparse.Namespace
) -> common.FloorResult:
    result = common.run_postgres_floor(claim_one, url, args, {"campaign": campaign})
    common.require(not result.errors, f"floor, claim with SKIP LOCKED: {dict(result.errors)}")
    print(f"  floor, claim one code with SKIP LOCKED, {label}: {result.rate:,.0f} tx/s")
    print(f"    {result.cpu.describe(result.transactions, 'transaction')}")
    return result


class _Sides:
    """The two sides' phases for :func:`_phase_pair`, keeping what the final check needs (the
    publications and codes voucherd answered 201 for) and the run's noise and latency."""

    def __init__(
        self,
        server: common.Server,
        url: str,
        tenant: common.BenchTenant,
        campaign: str,
        args: argparse.Namespace,
    ) -> None:
        self.server, self.url, self.tenant, self.campaign, self.args = (
            server,
            url,
            tenant,
            campaign,
            args,
        )
        self.publications = self.links = 0
        self.counted = True
        self.noise = 0.0
        self.p99: list[float] = []

    def voucherd(self, label: str) -> float:
        result = _http_phase(self.server, self.url, self.tenant, self.campaign, label, self.args)
        self.publications += result.everything[201]
        self.links += result.everything[201]
        self.noise = max(self.noise, result.cpu.others)
        self.p99.append(result.latency_ms(0.99))
        return result.count(201) / self.args.seconds

    def advance_voucherd(self, codes: int) -> None:
        made, published = _advance_voucherd(self.server, self.tenant.token, self.campaign, codes)
        self.publications += made
        self.links += published

    def floor(self, label: str) -> float:
        result = _floor_phase(self.url, self.campaign, label, self.args)
        self.noise = max(self.noise, result.cpu.others)
        return result.rate

    def advance_floor(self, codes: int) -> None:
        _advance_floor(self.url, self.campaign, codes)

    def anchor(self) -> float:
        """The bare FastAPI anchor (bench/anchor.py) claiming with the floor's statement over
        HTTP, right after a vacuum: the framework's own ceiling. Started for its phase only
        (its pool's connections beside voucherd's and the floor's would pass PostgreSQL's 100);
        its claims write no publication, so the final check is not theirs."""
        _vacuum(self.url)
        tenant = self.tenant
        with anchor_server(
            self.url, tenant.id, tenant.caller.key_id, workers=self.args.workers
        ) as bare:
            result = _http_phase(
                bare, self.url, tenant, self.campaign, "first claims", self.args, who="anchor"
            )
        self.noise = max(self.noise, result.cpu.others)
        return result.count(201) / self.args.seconds


def _phase_pair(
    args: argparse.Namespace,
    url: str,
    campaign: str,
    first: Callable[[str], float],
    advance: Callable[[int], None],
) -> tuple[float, float]:
    """The rate right after a vacuum, then (``--after``) the rate once that many codes have
    been claimed since it, with no vacuum between."""
    _vacuum(url)
    before = _published(url, campaign)
    rate_first = first("first claims")
    if not args.after:
        return rate_first, float("nan")
    remaining = args.after - (_published(url, campaign) - before)
    started = time.perf_counter()
    if remaining > 0:
        advance(remaining)
    claimed = _published(url, campaign) - before
    print(
        f"    advanced to {claimed:,} codes claimed since the vacuum "
        f"({time.perf_counter() - started:,.0f} s, no vacuum)"
    )
    return rate_first, first(f"after {claimed:,} claims")


def main(argv: list[str] | None = None) -> int:
    command = common.parser(__doc__.split("\n\n")[0])
    command.add_argument("--pool", type=int, default=1_000_000, help="codes in the campaign")
    command.add_argument("--connections", type=int, default=16, help="HTTP connections")
    command.add_argument("--clients", type=int, default=16, help="floor client processes")
    command.add_argument(
        "--after",
        type=int,
        default=100_000,
        help="measure each side again once this many codes were claimed since its vacuum "
        "(0: only the first measurement)",
    )
    command.add_argument(
        "--threads", type=int, default=0, help="also N in-process threads calling publish()"
    )
    command.add_argument("--workers", type=int, default=2, help="voucherd worker processes")
    args = command.parse_args(argv)
    # Each side of each run claims --after codes plus what its last phase takes; the check at
    # the end says whether the pool lasted (a pool run dry measures minting, not claiming).
    needed = int(args.runs * 2 * args.after * 1.2)
    common.require(
        args.pool >= needed or not args.after,
        f"--pool {args.pool:,} is too small for {args.runs} run(s) of --after {args.after:,}: "
        f"give at least {needed:,}, or a smaller --after",
    )
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
            + (
                f"; each side measured first and again after {args.after:,} claims"
                if args.after
                else ""
            )
        )
        with common.voucherd_server(url, workers=args.workers) as server:
            common.raise_rate_limits(server, tenant.token)
            sides = _Sides(server, url, tenant, campaign, args)
            for run in range(1, args.runs + 1):
                print(f"\nrun {run}:")
                if args.threads:
                    _vacuum(url)
                    _service_phase(url, tenant, campaign, args)
                    sides.counted = False  # publish() in threads: its publications are not
                sides.noise, sides.p99 = 0.0, []
                v_first, v_after = _phase_pair(
                    args, url, campaign, sides.voucherd, sides.advance_voucherd
                )
                f_first, f_after = _phase_pair(
                    args, url, campaign, sides.floor, sides.advance_floor
                )
                a_first = sides.anchor()
                runs.append(
                    [
                        v_first,
                        v_after,
                        v_after / v_first,
                        sides.p99[0],
                        f_first,
                        f_after,
                        f_after / f_first,
                        v_first / f_first,
                        v_after / f_after,
                        a_first,
                        v_first / a_first,
                        a_first / f_first,
                        sides.noise,
                    ]
                )
        publications, links = sides.publications, sides.links
        if sides.counted:
            ok, verdict = _check(url, campaign, publications, links)
            print(f"\n{verdict}")
            common.require(ok, verdict)
    common.print_runs(
        ["HTTP /s", "HTTP after", "HTTP flat", "p99 ms", "floor /s", "floor after"]
        + ["floor flat", "ratio", "ratio after", "anchor /s", "vs anchor", "anchor ratio"]
        + ["others"],
        runs,
        key="claim",
    )
    print("HTTP /s = voucherd publications of one code per second over HTTP, after a vacuum;")
    print(f"after = the same once {args.after:,} codes were claimed since the vacuum;")
    print("flat = after / first (1.0: flat; a claim walking over dead index entries falls)")
    print("floor /s = raw claims per second (FOR UPDATE SKIP LOCKED from the head of the pool)")
    print("ratio = voucherd / floor, first measurements (target >= 0.7); ratio after: the second")
    print("anchor /s = the bare FastAPI anchor claiming with the floor's statement over HTTP")
    print("vs anchor = voucherd / anchor; anchor ratio = anchor / floor: the framework's ceiling")
    print("others = most cores used by other processes during a phase (a shared machine's noise)")
    return 0


if __name__ == "__main__":
    common.run(main)
