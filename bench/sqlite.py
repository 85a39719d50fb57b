"""The embedded default: issuing and redeeming over HTTP on SQLite, against a raw sqlite3 floor.

voucherd as it runs out of the box: ``voucherd serve --workers 1`` on a SQLite file (WAL), its
in-process worker on, production defaults (the guard, metrics, JSON access logs), the tenant's
own rate limits raised (``PATCH /api/v1/tenant``) so the guard counts every request and refuses
none. Two paths, each over keep-alive connections:

* issue: ``POST /api/v1/vouchers`` of a GIFT campaign with a default value (a voucher, its
  opening ledger entry and its ``issued`` event);
* redeem: ``POST /api/v1/redemptions`` of 1 from a card drawn at random from ``--cards`` GIFT
  vouchers minted before the phase.

Floor, on the same file in the same run: ``--clients`` Python ``sqlite3`` client processes
(default 1: SQLite has one writer at a time, and a second process waiting for the lock sleeps
in SQLite's busy handler instead of queueing), with the pragmas voucherd's engine sets
(``journal_mode=WAL``, ``synchronous=NORMAL``, ``foreign_keys=ON``, ``busy_timeout``), each
transaction ``BEGIN IMMEDIATE`` as voucherd's writers begin:

* issue: the three INSERTs of bench.issue's floor (voucher, ledger entry, event;
  bench/issue_rows.py, in SQLite's spelling), then ``COMMIT``;
* redeem: the conditional ``UPDATE voucher SET balance = balance - 1 WHERE id = ? AND
  balance >= 1`` and the ledger INSERT of bench.redeem's floor on a random row, then ``COMMIT``.

Any answer but the expected one (a 429 included), a failed floor transaction, or rows that do not
match the answers stop the benchmark with exit status 1 and no ratio. Afterwards: every 201 issue
left one voucher, one ledger entry and one event; every balance equals its ledger's sum and every
201 redemption is one ledger entry.

    python -m bench.sqlite [--seconds 20] [--connections 16] [--cards 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as ``python bench/sqlite.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy.engine import make_url

from bench import common, issue_rows
from bench.issue import issued_voucher
from bench.redeem import redeemed_one
from voucherd.db.engine import make_engine
from voucherd.db.migrate import upgrade
from voucherd.vouchers.mint import mint_vouchers
from voucherd.vouchers.schemas import MintVouchers

TARGET = 0.5  # issue 13: issue and redeem over HTTP at half the raw sqlite3 floor
BALANCE = 10**12  # the redeem cards' balance: never runs out
BUSY_MS = 60_000  # voucherd's busy_timeout (voucherd/db/engine.py)
# What a phase writes, emptied before each phase (children first: foreign keys are on).
_TABLES = (
    "webhook_message",
    "voucher_event",
    "ledger_entry",
    "redemption",
    "idempotency_record",
    "delivery_event",
    "delivery",
    "publication_voucher",
    "voucher",
)


def _sqlite_spelling(statement: str) -> str:
    """bench/issue_rows.py's PostgreSQL statements as SQLite takes them: named ``:name``
    parameters, the time bound as ``:now`` (voucherd binds its own clock's time too), text
    for jsonb."""
    statement = re.sub(r"%\((\w+)\)s", r":\1", statement)
    return statement.replace("now()", ":now").replace("::jsonb", "")


INSERT_VOUCHER = _sqlite_spelling(issue_rows.INSERT_VOUCHER)
INSERT_LEDGER = _sqlite_spelling(issue_rows.INSERT_LEDGER)
INSERT_EVENT = _sqlite_spelling(issue_rows.INSERT_EVENT)
DEBIT = "UPDATE voucher SET balance = balance - 1 WHERE id = :voucher AND balance >= 1"
REDEMPTION_LEDGER = """
INSERT INTO ledger_entry (tenant_id, voucher_id, delta, kind, created_at)
VALUES (:tenant, :voucher, -1, 'REDEMPTION', :now)
"""


def _path(url: str) -> str:
    database = make_url(url).database
    assert database, url
    return database


def _now() -> str:
    """A timestamp as voucherd's columns hold them on SQLite (SQLAlchemy's DateTime)."""
    return datetime.now(UTC).replace(tzinfo=None).isoformat(" ")


def connect_sqlite(url: str) -> sqlite3.Connection:
    """A floor client's connection: the pragmas voucherd's engine sets on every connection, and
    no implicit transactions (the body writes ``BEGIN IMMEDIATE`` ... ``COMMIT``)."""
    conn = sqlite3.connect(_path(url), timeout=BUSY_MS / 1000, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={BUSY_MS}")
    return conn


@contextlib.contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def issue_floor(conn: sqlite3.Connection, client: common.FloorClient) -> None:
    """One issue: voucher, ledger entry, event, in one transaction (ids drawn outside it)."""
    row = issue_rows.next_voucher(client.state.setdefault("pending", []), client.params)
    row["now"] = _now()
    with _write(conn):
        conn.execute(INSERT_VOUCHER, row)
        conn.execute(INSERT_LEDGER, row)
        conn.execute(INSERT_EVENT, row)


def redeem_floor(conn: sqlite3.Connection, client: common.FloorClient) -> None:
    """One redemption of 1 from a row drawn at random (outside the transaction)."""
    draw = client.state.setdefault("random", random.Random(client.index))
    params = {
        "tenant": client.params["tenant"],
        "voucher": draw.choice(client.params["ids"]),
        "now": _now(),
    }
    with _write(conn):
        if conn.execute(DEBIT, params).rowcount != 1:
            raise sqlite3.IntegrityError("the balance ran out")
        conn.execute(REDEMPTION_LEDGER, params)


# --- the database file --------------------------------------------------------------------------


@contextlib.contextmanager
def sqlite_database() -> Iterator[str]:
    """A new SQLite file migrated to head, in a scratch directory removed on the way out."""
    with tempfile.TemporaryDirectory(prefix="voucherd_bench_sqlite_") as scratch:
        url = f"sqlite:///{Path(scratch, 'voucherd.db')}"
        engine = make_engine(url)
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        yield url


def _reset(url: str) -> None:
    """Empty what the phases write and fold the WAL back into the file, so that no phase
    inherits another's rows or its write-ahead log."""
    conn = connect_sqlite(url)
    try:
        with _write(conn):
            for table in _TABLES:
                conn.execute(f"DELETE FROM {table}")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("ANALYZE")
    finally:
        conn.close()


def _cards(
    url: str, tenant: common.BenchTenant, campaign: str, count: int
) -> list[tuple[str, str]]:
    """``count`` fresh GIFT vouchers on emptied tables: their ids and codes."""
    _reset(url)
    db = common.open_database(url)
    try:
        mint_vouchers(db, tenant.caller, campaign, MintVouchers(count=count))
    finally:
        db.dispose()
    conn = connect_sqlite(url)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("ANALYZE")
        return conn.execute("SELECT id, code FROM voucher ORDER BY id").fetchall()
    finally:
        conn.close()


def _one_row(url: str, statement: str) -> tuple[Any, ...]:
    conn = connect_sqlite(url)
    try:
        row = conn.execute(statement).fetchone()
    finally:
        conn.close()
    assert row is not None
    return tuple(row)


def _check_issued(url: str, issued: int | None) -> tuple[bool, str]:
    """Every issue left one voucher, one ledger entry and one event (and, when known, as many
    as were answered 201)."""
    row = _one_row(
        url,
        "SELECT (SELECT count(*) FROM voucher), (SELECT count(*) FROM ledger_entry),"
        " (SELECT count(*) FROM voucher_event WHERE kind = 'issued')",
    )
    expected = row[0] if issued is None else issued
    if row != (expected, expected, expected):
        return False, f"MISMATCH: {issued} answered 201 but vouchers/ledger/events = {row}"
    return True, f"{row[0]:,} vouchers, as many ledger entries and events"


def _check_ledger(url: str, redeemed: int | None) -> tuple[bool, str]:
    """Every balance is its ledger's sum, what the balances lost is the redemption entries,
    and (when known) every 201 took exactly 1."""
    cards, wrong, taken, entries = _one_row(
        url,
        "SELECT count(*), sum(v.balance IS NOT l.total), coalesce(sum(v.amount - v.balance), 0),"
        " (SELECT count(*) FROM ledger_entry WHERE kind = 'REDEMPTION')"
        " FROM voucher v LEFT JOIN (SELECT voucher_id, sum(delta) AS total"
        " FROM ledger_entry GROUP BY voucher_id) l ON l.voucher_id = v.id",
    )
    wrong = wrong or 0
    ok = wrong == 0 and taken == entries and (redeemed is None or entries == redeemed)
    verdict = "every ledger sums to its balance" if ok else "MISMATCH"
    return ok, (
        f"{verdict}: {cards:,} cards, {wrong:,} balances off their ledger, {taken:,} taken, "
        f"{entries:,} redemption entries"
        + (f", {redeemed:,} answered 201" if redeemed is not None else "")
    )


# --- the phases -----------------------------------------------------------------------------------


def _http_phase(
    url: str,
    server: common.Server,
    label: str,
    requests: common.Requests,
    check: common.BodyCheck,
    verify: Callable[[int], tuple[bool, str]],
    args: argparse.Namespace,
) -> common.HttpResult:
    result = common.drive_http(
        server,
        requests,
        expect=201,
        connections=args.connections,
        warmup=args.warmup,
        seconds=args.seconds,
        meter=common.CpuMeter({"voucherd": server.pids, "load generator": common.this_process}),
        check=check,
    )
    result.require_clean(201, f"voucherd, {label}")
    ok, verdict = verify(result.everything[201])
    done = result.count(201)
    print(f"  voucherd, {label}, {args.connections} connections: {done / args.seconds:,.0f} /s")
    print(f"    {result.cpu.describe(done, 'request')}")
    print(f"    p50 {result.latency_ms(0.5):.1f} ms, p99 {result.latency_ms(0.99):.1f} ms")
    print(f"    {verdict}")
    common.require(ok, f"voucherd, {label}: {verdict}")
    return result


def _floor_phase(
    url: str,
    body: common.FloorBody,
    label: str,
    params: dict[str, Any],
    verify: Callable[[], tuple[bool, str]],
    args: argparse.Namespace,
) -> common.FloorResult:
    result = common.run_floor(
        body,
        url,
        clients=args.clients,
        warmup=args.warmup,
        seconds=args.seconds,
        params=params,
        meter=common.CpuMeter(),
        connect=connect_sqlite,
        failures=(sqlite3.Error,),
    )
    common.require(not result.errors, f"floor, {label}: {dict(result.errors)}")
    ok, verdict = verify()
    print(f"  floor, {label}, {args.clients} sqlite3 client(s): {result.rate:,.0f} tx/s")
    print(f"    {result.cpu.describe(result.transactions, 'transaction')}")
    print(f"    {verdict}")
    common.require(ok, f"floor, {label}: {verdict}")
    return result


def _issue_run(
    url: str,
    server: common.Server,
    tenant: common.BenchTenant,
    campaign: str,
    args: argparse.Namespace,
) -> list[float]:
    """[HTTP /s, p99 ms, floor tx/s, ratio, others]"""
    body = json.dumps({"campaign": campaign}).encode()
    request = common.http_request(server, "POST", "/api/v1/vouchers", tenant.token, body)
    _reset(url)
    http = _http_phase(
        url,
        server,
        "issue",
        request,
        issued_voucher(campaign),
        lambda issued: _check_issued(url, issued),
        args,
    )
    _reset(url)
    params = {
        "tenant": tenant.id,
        "campaign": campaign,
        "actor": tenant.caller.key_id,
        "value": issue_rows.VALUE,
        "data": issue_rows.EVENT_DATA,
    }
    floor = _floor_phase(
        url,
        issue_floor,
        "3 INSERTs in a transaction",
        params,
        lambda: _check_issued(url, None),
        args,
    )
    rate = http.count(201) / args.seconds
    noise = max(http.cpu.others, floor.cpu.others)
    return [rate, http.latency_ms(0.99), floor.rate, rate / floor.rate, noise]


def _redeem_run(
    url: str,
    server: common.Server,
    tenant: common.BenchTenant,
    campaign: str,
    args: argparse.Namespace,
) -> list[float]:
    """[HTTP /s, p99 ms, floor tx/s, ratio, others]"""
    codes = [code for _, code in _cards(url, tenant, campaign, args.cards)]
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
    http = _http_phase(
        url,
        server,
        f"redeem, {args.cards:,} random cards",
        lambda: requests[draw.randrange(len(requests))],
        redeemed_one(),
        lambda redeemed: _check_ledger(url, redeemed),
        args,
    )
    ids = [voucher_id for voucher_id, _ in _cards(url, tenant, campaign, args.cards)]
    floor = _floor_phase(
        url,
        redeem_floor,
        f"UPDATE + INSERT on {args.cards:,} random rows",
        {"tenant": tenant.id, "ids": ids},
        lambda: _check_ledger(url, None),
        args,
    )
    rate = http.count(201) / args.seconds
    noise = max(http.cpu.others, floor.cpu.others)
    return [rate, http.latency_ms(0.99), floor.rate, rate / floor.rate, noise]


def main(argv: list[str] | None = None) -> int:
    command = common.parser(__doc__.split("\n\n")[0])
    command.add_argument("--connections", type=int, default=16, help="keep-alive HTTP connections")
    command.add_argument("--workers", type=int, default=1, help="voucherd server processes")
    command.add_argument(
        "--clients", type=int, default=1, help="floor sqlite3 client processes (one writer)"
    )
    command.add_argument("--cards", type=int, default=100_000, help="cards for the redeem path")
    command.add_argument(
        "--mode", choices=["issue", "redeem", "both"], default="both", help="which path(s)"
    )
    args = command.parse_args(argv)
    modes = ["issue", "redeem"] if args.mode == "both" else [args.mode]
    runs: dict[str, list[list[float]]] = {mode: [] for mode in modes}
    origin = common.voucherd_origin()
    with sqlite_database() as url:
        db = common.open_database(url)
        try:
            tenant = common.make_tenant(db)
            issue_campaign = common.make_gift_campaign(db, tenant, value=issue_rows.VALUE)
            redeem_campaign = common.make_gift_campaign(db, tenant, value=BALANCE)
        finally:
            db.dispose()
        print(
            f"sqlite: {os.cpu_count()} CPUs, SQLite {sqlite3.sqlite_version} at {_path(url)}, "
            f"Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d %H:%M %Z')}; "
            f"voucherd from {origin}"
        )
        print(
            f"voucherd serve --workers {args.workers} on SQLite (WAL; in-process worker; "
            f"production defaults, tenant rate limits {common.BENCH_RATE_LIMIT:,} per window), "
            f"{args.connections} connections; floor: {args.clients} sqlite3 client process(es) "
            f"with voucherd's pragmas; {args.seconds:g} s measured after {args.warmup:g} s warm-up"
        )
        with common.voucherd_server(url, workers=args.workers) as server:
            common.raise_rate_limits(server, tenant.token)
            for run in range(1, args.runs + 1):
                for mode in modes:
                    print(f"\nrun {run}, {mode}:")
                    if mode == "issue":
                        runs[mode].append(_issue_run(url, server, tenant, issue_campaign, args))
                    else:
                        runs[mode].append(_redeem_run(url, server, tenant, redeem_campaign, args))
    headers = ["HTTP /s", "p99 ms", "floor tx/s", "ratio", "others"]
    if "issue" in runs:
        print("\nissue on SQLite:")
        common.print_runs(headers, runs["issue"], key="sqlite.issue")
        print(f"ratio = HTTP issues/s / raw sqlite3 3-INSERT tx/s (target >= {TARGET})")
    if "redeem" in runs:
        print(f"\nredeem on SQLite ({args.cards:,} cards, drawn at random):")
        common.print_runs(headers, runs["redeem"], key="sqlite.redeem")
        print(f"ratio = HTTP redemptions/s / raw sqlite3 UPDATE + INSERT tx/s (target >= {TARGET})")
    print("others = most cores used by other processes during a phase (a shared machine's noise)")
    return 0


if __name__ == "__main__":
    common.run(main)
