"""Issuing over HTTP, against the bare framework and the raw database floor for the same writes.

voucherd: ``voucherd serve --workers 2`` on a fresh migrated database, production defaults (the
guard, metrics, JSON access logs), the tenant's own rate limits raised so the guard counts every
request and refuses none; keep-alive connections each keep one ``POST /api/v1/vouchers`` in
flight (a GIFT campaign with a default value, so each issue writes a voucher, its opening ledger
entry and its ``issued`` event).

Anchor: the same requests to a bare FastAPI app under the same server and worker count, writing
the same three rows (bench/anchor.py): the framework's own ceiling for this endpoint.

Floor: psycopg client processes writing the same three rows with the minimal SQL, first as a
transaction of three INSERTs (BEGIN, 3 x INSERT, COMMIT: five round trips), then as one
statement (a data-modifying CTE: one round trip).

Any answer but a 201 carrying a voucher of the campaign (a 429 included), or rows that do not
match the answers, stops the benchmark with exit status 1 and no ratio.

    python -m bench.issue [--seconds 20] [--connections 16] [--clients 8] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import psycopg

if __package__ in (None, ""):  # run as ``python bench/issue.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common, issue_rows
from bench.anchor import anchor_server

VALUE = issue_rows.VALUE
TARGET = 0.5  # issue 13: issuing over HTTP at half the raw three-INSERT transaction rate


def issue_in_a_transaction(conn: psycopg.Connection[Any], client: common.FloorClient) -> None:
    row = issue_rows.next_voucher(client.state.setdefault("pending", []), client.params)
    with conn.transaction():
        conn.execute(issue_rows.INSERT_VOUCHER, row)
        conn.execute(issue_rows.INSERT_LEDGER, row)
        conn.execute(issue_rows.INSERT_EVENT, row)


def issue_in_one_statement(conn: psycopg.Connection[Any], client: common.FloorClient) -> None:
    row = issue_rows.next_voucher(client.state.setdefault("pending", []), client.params)
    conn.execute(issue_rows.ISSUE_IN_ONE_STATEMENT, row)


def issued_voucher(campaign: str) -> common.BodyCheck:
    """A 201 must carry a voucher of ``campaign`` with the campaign's value as its balance."""

    def check(_request: bytes, body: bytes) -> str | None:
        voucher = json.loads(body)
        if voucher.get("campaign_id") != campaign or voucher.get("balance") != VALUE:
            return f"not a voucher of {campaign} with balance {VALUE}"
        return None if voucher.get("code") else "no code"

    return check


def _check_written(url: str, issued: int) -> tuple[bool, str]:
    """Every 201 left exactly one voucher, one ledger entry and one event: nothing half-written."""
    with psycopg.connect(common.libpq_url(url)) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM voucher), (SELECT count(*) FROM ledger_entry),"
            " (SELECT count(*) FROM voucher_event WHERE kind = 'issued')"
        ).fetchone()
    assert row is not None
    if tuple(row) != (issued, issued, issued):
        return False, f"MISMATCH: {issued:,} answered 201 but vouchers/ledger/events = {row}"
    return True, f"{issued:,} answered 201: as many vouchers, ledger entries and events"


def _http_phase(
    url: str,
    server: common.Server,
    label: str,
    request: bytes,
    campaign: str,
    args: argparse.Namespace,
) -> common.HttpResult:
    result = common.drive_http(
        server,
        request,
        expect=201,
        connections=args.connections,
        warmup=args.warmup,
        seconds=args.seconds,
        meter=common.CpuMeter(
            {
                label: server.pids,
                "postgres": common.postgres_serving(url),
                "load generator": common.this_process,
            }
        ),
        check=issued_voucher(campaign),
    )
    result.require_clean(201, f"{label}: POST /api/v1/vouchers")
    ok, verdict = _check_written(url, result.everything[201])
    issued = result.count(201)
    print(f"  {label}, {args.connections} connections: {issued / args.seconds:,.0f} requests/s")
    print(f"    {result.cpu.describe(issued, 'request')}")
    print(f"    {verdict}")
    common.require(ok, f"{label}: {verdict}")
    return result


def _floor_phase(
    url: str, body: common.FloorBody, label: str, params: dict[str, Any], args: argparse.Namespace
) -> common.FloorResult:
    result = common.run_postgres_floor(body, url, args, params)
    common.require(not result.errors, f"floor, {label}: {dict(result.errors)}")
    print(f"  floor, {label}: {result.rate:,.0f} tx/s")
    print(f"    {result.cpu.describe(result.transactions, 'transaction')}")
    return result


def main(argv: list[str] | None = None) -> int:
    command = common.parser(__doc__.split("\n\n")[0])
    command.add_argument("--connections", type=int, default=16, help="keep-alive HTTP connections")
    command.add_argument(
        "--workers", type=int, default=2, help="server processes (voucherd and the anchor)"
    )
    command.add_argument("--clients", type=int, default=8, help="floor client processes")
    args = command.parse_args(argv)
    runs: list[list[float]] = []
    origin = common.voucherd_origin()
    with common.bench_database() as url:
        db = common.open_database(url)
        try:
            tenant = common.make_tenant(db)
            campaign = common.make_gift_campaign(db, tenant, value=VALUE)
        finally:
            db.dispose()
        params = {
            "tenant": tenant.id,
            "campaign": campaign,
            "actor": tenant.caller.key_id,
            "value": VALUE,
            "data": issue_rows.EVENT_DATA,
        }
        print(f"issue: {common.machine_line(url)}; voucherd from {origin}")
        print(
            f"voucherd serve --workers {args.workers} (production defaults, tenant rate limits "
            f"{common.BENCH_RATE_LIMIT:,} per window) and the bare FastAPI anchor under the same "
            f"server, {args.connections} connections; floor: {args.clients} psycopg clients; "
            f"{args.seconds:g} s measured after {args.warmup:g} s warm-up"
        )
        with (
            common.voucherd_server(url, workers=args.workers) as server,
            anchor_server(url, tenant.id, tenant.caller.key_id, workers=args.workers) as anchor,
        ):
            common.raise_rate_limits(server, tenant.token)
            body = json.dumps({"campaign": campaign}).encode()
            request = common.http_request(server, "POST", "/api/v1/vouchers", tenant.token, body)
            anchor_request = common.http_request(anchor, "POST", "/api/v1/vouchers", "-", body)
            for run in range(1, args.runs + 1):
                print(f"\nrun {run}:")
                common.reset_tables(url)
                http = _http_phase(url, server, "voucherd", request, campaign, args)
                common.reset_tables(url)
                bare = _http_phase(url, anchor, "anchor", anchor_request, campaign, args)
                common.reset_tables(url)
                floor = _floor_phase(
                    url, issue_in_a_transaction, "3 INSERTs in a transaction", params, args
                )
                common.reset_tables(url)
                cte = _floor_phase(url, issue_in_one_statement, "one CTE statement", params, args)
                rate = http.count(201) / args.seconds
                anchor_rate = bare.count(201) / args.seconds
                noise = max(p.cpu.others for p in (http, bare, floor, cte))
                runs.append(
                    [
                        rate,
                        http.latency_ms(0.5),
                        http.latency_ms(0.99),
                        anchor_rate,
                        bare.latency_ms(0.99),
                        floor.rate,
                        cte.rate,
                        rate / floor.rate,
                        rate / anchor_rate,
                        anchor_rate / floor.rate,
                        rate / cte.rate,
                        noise,
                    ]
                )
    common.print_runs(
        ["voucherd req/s", "p50 ms", "p99 ms", "anchor req/s", "anchor p99", "floor tx/s"]
        + ["floor CTE/s", "ratio", "vs anchor", "anchor ratio", "vs CTE", "others"],
        runs,
        key="issue",
    )
    print(f"ratio = voucherd requests/s / floor (3 INSERTs) transactions/s (target >= {TARGET})")
    print("vs anchor = voucherd requests/s / the bare FastAPI anchor's requests/s (same server)")
    print("anchor ratio = the anchor's requests/s / floor transactions/s: the framework's ceiling")
    print("others = most cores used by other processes during a phase (a shared machine's noise)")
    return 0


if __name__ == "__main__":
    common.run(main)
