"""Importing live vouchers through the import operation, against the mint of the same count.

A CSV of N vouchers is generated first (its own codes, the four stored states in turn, every
REDEEMED one spent to 0 and every third of the others partly spent, so half of the rows carry a
second ledger entry; ``--nothing-spent``: none spent, so the import writes what the mint
writes; ``--holders`` gives every tenth a customer and a publication). Then, on a fresh migrated PostgreSQL database, in a child process
whose peak resident memory (``VmHWM``) is sampled: ``imports.service.start_import`` stores the
file as the API does, and the operation's handler runs it to the end as a worker would
(``composition.run_due_operations``). ``--way cli`` measures ``voucherd import``'s way instead
(``imports.service.import_file``: the file streamed straight in, nothing stored first), ``--way
both`` (the default) one after the other, each into a fresh campaign on emptied tables. Printed:
the seconds (and, for the API, of storing the file), the rows per second, the peak RSS, CPU by
side, and the ratio of the import's time to ``voucherd campaigns mint`` of the same count into
a GIFT campaign on the same database (bench/mint.py's run).

    python -m bench.imports [--count 1000000] [--holders] [--way api|cli|both]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg

if __package__ in (None, ""):  # run as ``python bench/imports.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from bench.mint import VALUE, cpu_seconds, mint_with_voucherd

TARGET_MB = 300.0


def write_file(path: Path, count: int, *, holders: bool, spent: bool = True) -> None:
    """``spent``: the four stored states in turn, every REDEEMED one spent to 0 and every third
    of the others partly spent (half of the rows carry a second ledger entry); otherwise three
    states, nothing spent, so the import writes what the mint writes: a voucher and its
    opening entry per row."""
    states = (
        ("ACTIVE", "DISABLED", "CANCELLED", "REDEEMED")
        if spent
        else ("ACTIVE", "DISABLED", "CANCELLED")
    )
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        columns = ["code", "value", "balance", "state", "expiration_date"]
        if holders:
            columns += ["customer_source_id", "customer_email", "published_at", "channel"]
        writer.writerow(columns)
        for i in range(count):
            state = states[i % len(states)]
            if not spent:
                balance = VALUE
            elif state == "REDEEMED":
                balance = 0
            else:
                balance = VALUE - 1234 if i % 3 == 0 else VALUE
            row: list[object] = [f"LEGACY-{i:09d}", VALUE, balance, state, "2030-12-31"]
            if holders:
                held = i % 10 == 0
                row += (
                    [f"cust-{i}", f"c{i}@example.com", "2026-01-02T03:04:05Z", "email"]
                    if held
                    else ["", "", "", ""]
                )
            writer.writerow(row)


def child(way: str, url: str, tenant_id: str, campaign: str, file: str) -> None:
    """The import itself, in this process: the API's way or the CLI's."""
    if way == "cli":
        _child_cli(url, tenant_id, campaign, file)
        return
    from voucherd.auth.caller import Caller
    from voucherd.composition import run_due_operations
    from voucherd.imports.reader import FileFormat
    from voucherd.imports.service import start_import
    from voucherd.operations.service import get_operation

    db = common.open_database(url, pool_size=2)
    caller = Caller(tenant_id, "bench", frozenset({"issue"}))
    started = time.perf_counter()
    with open(file, "rb") as source:
        operation = start_import(db, caller, campaign, source, file_format=FileFormat.CSV)
    stored = time.perf_counter() - started
    while run_due_operations(db, "bench", threading.Event()):
        pass
    seconds = time.perf_counter() - started
    done = get_operation(db, caller, operation.id)
    db.dispose()
    result = done.result or {}
    _report(done.status, stored, seconds, result.get("imported"), result.get("rejected"))


def _child_cli(url: str, tenant_id: str, campaign: str, file: str) -> None:
    """``voucherd import``'s way: the file streamed in, one transaction per batch."""
    from voucherd.auth.caller import Caller
    from voucherd.imports.reader import FileFormat
    from voucherd.imports.service import import_file

    db = common.open_database(url, pool_size=2)
    caller = Caller(tenant_id, "bench", frozenset({"issue"}))
    started = time.perf_counter()
    with open(file, "rb") as source:
        summary = import_file(db, caller, campaign, source, file_format=FileFormat.CSV)
    seconds = time.perf_counter() - started
    db.dispose()
    _report("Completed", None, seconds, summary.imported, summary.rejected)


def _report(
    status: str, stored: float | None, seconds: float, imported: object, rejected: object
) -> None:
    """The child's figures, one JSON line on its stdout for the parent."""
    report = {
        "status": status,
        "store_seconds": stored,
        "seconds": seconds,
        "imported": imported,
        "rejected": rejected,
    }
    sys.stdout.write(json.dumps(report) + "\n")


def _high_water_kb(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def run_child(
    way: str, url: str, tenant_id: str, campaign: str, file: Path
) -> tuple[dict[str, object], float, common.CpuUsage]:
    env = {**os.environ, "VOUCHERD_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "bench.imports", "--child", way, url, tenant_id, campaign]
    command.append(str(file))
    peak_kb = 0
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=log)
        meter = common.CpuMeter(
            {"voucherd": lambda: [process.pid], "postgres": common.postgres_serving(url)}
        )
        first = last = meter.sample()
        try:
            for tick in itertools.count():
                if process.poll() is not None:
                    break
                peak_kb = max(peak_kb, _high_water_kb(process.pid))
                if tick % 25 == 0:  # its PostgreSQL backend may end before it does
                    last = last.then(meter.sample())
                time.sleep(0.02)
        except BaseException:
            process.kill()
            process.wait()
            raise
        if process.returncode != 0:
            log.seek(0)
            raise RuntimeError(f"the import failed:\n{log.read().decode()[-4000:]}")
        out.seek(0)
        return json.loads(out.read()), peak_kb / 1024, last.since(first)


def _check(url: str, campaign: str) -> tuple[int, int]:
    with psycopg.connect(common.libpq_url(url)) as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE v.balance <> l.total) FROM voucher v "
            "JOIN (SELECT voucher_id, sum(delta) AS total FROM ledger_entry GROUP BY voucher_id)"
            " l ON l.voucher_id = v.id WHERE v.campaign_id = %s",
            (campaign,),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def main(argv: list[str] | None = None) -> int:
    command = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    command.add_argument("--count", type=int, default=1_000_000, help="rows to import")
    command.add_argument("--holders", action="store_true", help="every tenth row has a holder")
    command.add_argument("--way", choices=("api", "cli", "both"), default="both")
    command.add_argument(
        "--nothing-spent",
        action="store_true",
        help="no row partly spent: the import writes what the mint writes",
    )
    command.add_argument("--child", nargs=5, metavar=("WAY", "URL", "TENANT", "CAMPAIGN", "FILE"))
    args = command.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    print(f"imports: {common.machine_line(common.server_url())}")
    print(f"load average before: {os.getloadavg()}")
    ways = ("api", "cli") if args.way == "both" else (args.way,)
    peaks: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / "vouchers.csv"
        write_file(file, args.count, holders=args.holders, spent=not args.nothing_spent)
        size_mb = file.stat().st_size / 1e6
        print(f"{args.count:,} rows, {size_mb:,.0f} MB of CSV")
        with common.bench_database() as url:
            db = common.open_database(url)
            try:
                tenant = common.make_tenant(db)
                minted_into = common.make_gift_campaign(db, tenant, value=VALUE)
                targets = {way: common.make_gift_campaign(db, tenant, value=VALUE) for way in ways}
            finally:
                db.dispose()
            common.reset_tables(url)
            minted = mint_with_voucherd(url, tenant, minted_into, args.count)
            print(f"  mint: {minted.seconds:.2f} s, peak RSS {minted.peak_mb:,.0f} MB")
            print(f"    {cpu_seconds(minted.cpu)}")
            for way in ways:
                common.reset_tables(url)
                report, peak_mb, cpu = run_child(way, url, tenant.id, targets[way], file)
                peaks.append(peak_mb)
                seconds = float(report["seconds"])  # type: ignore[arg-type]
                stored = report["store_seconds"]
                storing = f" (storing the file {float(stored):.2f} s)" if stored else ""  # type: ignore[arg-type]
                print(
                    f"  import, {way}: {report['status']}, {report['imported']:,} imported, "
                    f"{report['rejected']} refused; {seconds:.2f} s{storing}, "
                    f"{args.count / seconds:,.0f} rows/s, peak RSS {peak_mb:,.0f} MB"
                )
                print(f"    {cpu_seconds(cpu)}")
                ledgered, differing = _check(url, targets[way])
                print(
                    f"    {ledgered:,} vouchers with a ledger; "
                    f"{differing:,} whose balance differs from it"
                )
                if report["imported"] != args.count or ledgered != args.count or differing:
                    print(f"  {way}: expected {args.count:,} imported and balanced; no ratio")
                    return 1
                print(f"  ratio import ({way}) s / mint s: {seconds / minted.seconds:.2f}")
    print(f"load average after: {os.getloadavg()}; target: under {TARGET_MB:g} MB")
    return 0 if max(peaks) < TARGET_MB else 1


if __name__ == "__main__":
    common.run(main)
