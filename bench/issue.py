"""Issuing over HTTP, against the raw database floor for the same writes.

voucherd: ``voucherd serve --workers 2`` on a fresh migrated database; keep-alive connections
each keep one ``POST /api/v1/vouchers`` in flight (a GIFT campaign with a default value, so each
issue writes a voucher, its opening ledger entry and its ``issued`` event).

Floor: psycopg client processes writing the same three rows with the minimal SQL, first as a
transaction of three INSERTs (BEGIN, 3 x INSERT, COMMIT: five round trips), then as one
statement (a data-modifying CTE: one round trip).

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

from bench import common
from voucherd.codes.generator import DEFAULT_SPEC
from voucherd.ids import new_ids, new_public_tokens

VALUE = 5000  # the campaign's default value, minor units
TARGET = 0.5  # DESIGN.md: issuing over HTTP at half the raw transaction rate
_EVENT_DATA = json.dumps({"value": VALUE, "customer_ref": False})

_INSERT_VOUCHER = """
INSERT INTO voucher (id, tenant_id, campaign_id, code, public_token, type, state, currency,
                     amount, balance, redeemed_quantity, created_at, updated_at)
VALUES (%(id)s, %(tenant)s, %(campaign)s, %(code)s, %(token)s, 'GIFT', 'ACTIVE', 'EUR',
        %(value)s, %(value)s, 0, now(), now())
"""
_INSERT_LEDGER = """
INSERT INTO ledger_entry (tenant_id, voucher_id, delta, kind, created_at)
VALUES (%(tenant)s, %(id)s, %(value)s, 'ISSUE', now())
"""
_INSERT_EVENT = """
INSERT INTO voucher_event (tenant_id, voucher_id, campaign_id, kind, actor, data, created_at)
VALUES (%(tenant)s, %(id)s, %(campaign)s, 'issued', %(actor)s, %(data)s::jsonb, now())
"""
_ISSUE_IN_ONE_STATEMENT = f"""
WITH v AS ({_INSERT_VOUCHER} RETURNING id),
     l AS (INSERT INTO ledger_entry (tenant_id, voucher_id, delta, kind, created_at)
           SELECT %(tenant)s, id, %(value)s, 'ISSUE', now() FROM v)
INSERT INTO voucher_event (tenant_id, voucher_id, campaign_id, kind, actor, data, created_at)
SELECT %(tenant)s, id, %(campaign)s, 'issued', %(actor)s, %(data)s::jsonb, now() FROM v
"""


def _next_voucher(client: common.FloorClient) -> dict[str, Any]:
    """Ids, codes and page tokens of voucherd's own shapes (so the indexes see the same keys),
    drawn a thousand at a time outside the transactions."""
    pending: list[tuple[str, str, str]] = client.state.setdefault("pending", [])
    if not pending:
        pending.extend(
            zip(
                new_ids("v", 1000),
                DEFAULT_SPEC.generate(1000),
                new_public_tokens(1000),
                strict=True,
            )
        )
    voucher_id, code, token = pending.pop()
    return {**client.params, "id": voucher_id, "code": code, "token": token}


def issue_in_a_transaction(conn: psycopg.Connection[Any], client: common.FloorClient) -> None:
    row = _next_voucher(client)
    with conn.transaction():
        conn.execute(_INSERT_VOUCHER, row)
        conn.execute(_INSERT_LEDGER, row)
        conn.execute(_INSERT_EVENT, row)


def issue_in_one_statement(conn: psycopg.Connection[Any], client: common.FloorClient) -> None:
    conn.execute(_ISSUE_IN_ONE_STATEMENT, _next_voucher(client))


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
    url: str, server: common.Server, request: bytes, args: argparse.Namespace
) -> tuple[common.HttpResult, bool]:
    result = common.drive_http(
        server,
        request,
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
    issued = result.count(201)
    ok, verdict = _check_written(url, result.everything[201])
    print(f"  voucherd, {args.connections} connections: {issued / args.seconds:,.0f} requests/s")
    print(f"    {result.cpu.describe(issued, 'request')}")
    print(f"    {verdict}")
    unexpected = result.unexpected(201)
    if unexpected or result.reconnects:
        print(f"    NOT 201: {unexpected}, reconnects: {result.reconnects}")
        for sample in result.samples:
            print(f"      {sample!r}")
    return result, ok and not unexpected and not result.reconnects


def _floor_phase(
    url: str, body: common.FloorBody, label: str, params: dict[str, Any], args: argparse.Namespace
) -> tuple[common.FloorResult, bool]:
    result = common.run_floor(
        body,
        url,
        clients=args.clients,
        warmup=args.warmup,
        seconds=args.seconds,
        params=params,
        meter=common.CpuMeter({"postgres": common.postgres_serving(url)}),
    )
    print(f"  floor, {label}: {result.rate:,.0f} tx/s")
    print(f"    {result.cpu.describe(result.transactions, 'transaction')}")
    if result.errors:
        print(f"    ERRORS: {dict(result.errors)}")
    return result, not result.errors


def main(argv: list[str] | None = None) -> int:
    command = common.parser(__doc__.split("\n\n")[0])
    command.add_argument("--connections", type=int, default=16, help="keep-alive HTTP connections")
    command.add_argument("--workers", type=int, default=2, help="voucherd worker processes")
    command.add_argument("--clients", type=int, default=8, help="floor client processes")
    args = command.parse_args(argv)
    all_ok = True
    runs: list[list[float]] = []
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
            "data": _EVENT_DATA,
        }
        print(f"issue: {common.machine_line(url)}")
        print(
            f"voucherd serve --workers {args.workers}, {args.connections} connections; "
            f"floor: {args.clients} psycopg clients; {args.seconds:g} s measured after "
            f"{args.warmup:g} s warm-up"
        )
        with common.voucherd_server(url, workers=args.workers) as server:
            body = json.dumps({"campaign": campaign}).encode()
            request = common.http_request(server, "POST", "/api/v1/vouchers", tenant.token, body)
            for run in range(1, args.runs + 1):
                print(f"\nrun {run}:")
                common.reset_tables(url)
                http, ok = _http_phase(url, server, request, args)
                all_ok &= ok
                common.reset_tables(url)
                floor, ok = _floor_phase(
                    url, issue_in_a_transaction, "3 INSERTs in a transaction", params, args
                )
                all_ok &= ok
                common.reset_tables(url)
                cte, ok = _floor_phase(
                    url, issue_in_one_statement, "one CTE statement", params, args
                )
                all_ok &= ok
                rate = http.count(201) / args.seconds
                p50, p99 = http.latency_ms(0.5), http.latency_ms(0.99)
                noise = max(http.cpu.others, floor.cpu.others, cte.cpu.others)
                runs.append(
                    [
                        rate,
                        p50,
                        p99,
                        floor.rate,
                        cte.rate,
                        rate / floor.rate,
                        rate / cte.rate,
                        noise,
                    ]
                )
    common.print_runs(
        ["voucherd req/s", "p50 ms", "p99 ms", "floor tx/s", "floor CTE/s", "ratio", "vs CTE"]
        + ["others"],
        runs,
    )
    print(f"ratio = voucherd requests/s / floor transactions/s (target >= {TARGET})")
    print("others = most cores used by other processes during a phase (a shared machine's noise)")
    return 0 if all_ok else 1


if __name__ == "__main__":
    common.run(main)
