"""Exporting a campaign of 1,000,000 vouchers as CSV: time and peak resident memory.

Setup: a fresh migrated database, a GIFT campaign, N vouchers minted in-process with
``voucherd.vouchers.mint.mint_vouchers`` (as ``bench.mint`` does, one transaction).

Three measured phases, each in its own child process whose peak resident memory (``VmHWM``,
sampled every 20 ms; see bench/mint.py for why not ``ru_maxrss``) is the figure:

1. **CLI, plain export**: ``voucherd export --tenant T --campaign C --output FILE``, reading
   every voucher (nothing is published).
2. **Operation, for distribution**: an export of the unpublished codes is started as an
   operation (``exports.service.start_export``, what ``POST /api/v1/campaigns/{c}/exports``
   calls); a worker process runs it with ``run_due_operations``, the worker loop's own call:
   every code is claimed from the pool, recorded in one ``Export`` publication and stored as
   compressed CSV chunks in ``operation_result_chunk``.
3. **Download**: ``voucherd serve --workers 1`` streams that result from
   ``GET /api/v1/operations/{id}/result`` into a file.

Checks (the exit status is non-zero if one fails): both files hold N rows under the header with
N distinct codes; after phase 2 every voucher of the campaign is published exactly once, all in
the one Export publication.

    python -m bench.export [--count 1000000]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

if __package__ in (None, ""):  # run as ``python bench/export.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from bench.mint import _high_water_kb
from voucherd.exports.schemas import ExportRequest
from voucherd.exports.service import start_export
from voucherd.vouchers.mint import mint_vouchers
from voucherd.vouchers.schemas import MintVouchers

TARGET_MB = 300.0  # issue 4: a million rows exported in under 300 MB of resident memory

_WORKER = """
import threading
from voucherd.config import load_settings
from voucherd.db.engine import Database
from voucherd.composition import run_due_operations

db = Database.from_settings(load_settings())
while run_due_operations(db, "bench-worker", threading.Event()):
    pass
db.dispose()
"""


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    peak_mb: float
    rows: int
    cpu: common.CpuUsage

    def line(self) -> list[object]:
        return [
            self.name,
            self.seconds,
            self.rows / self.seconds,
            self.peak_mb,
            self.cpu.seconds("voucherd"),
            self.cpu.seconds("postgres"),
            self.cpu.others,
        ]


def watch(
    pids: Callable[[], list[int]], done: Callable[[], bool], url: str
) -> tuple[float, common.CpuUsage]:
    """Until ``done()``: the peak resident memory of ``pids()`` in MB, sampled every 20 ms,
    and the CPU time they and the database's PostgreSQL processes spent."""
    meter = common.CpuMeter({"voucherd": pids, "postgres": common.postgres_serving(url)})
    first = last = meter.sample()
    peak_kb = 0
    for tick in itertools.count():
        if done():
            break
        peak_kb = max([peak_kb, *(_high_water_kb(pid) for pid in pids())])
        if tick % 25 == 0:  # a process that ends keeps the CPU time last seen
            last = last.then(meter.sample())
        time.sleep(0.02)
    return peak_kb / 1024, last.since(first)


def child(command: list[str], url: str, name: str, rows: int) -> Phase:
    env = common.child_env(url)
    started = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        try:
            peak, cpu = watch(lambda: [process.pid], lambda: process.poll() is not None, url)
        except BaseException:
            process.kill()
            process.wait()
            raise
        seconds = time.perf_counter() - started
        if process.returncode != 0:
            print(common._tail(log))
            raise common.BenchFailed(f"{name} exited {process.returncode}")
    return Phase(name, seconds, peak, rows, cpu)


def check_file(path: Path, count: int) -> tuple[bool, str]:
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        codes = {row[0] for row in reader}
    size = path.stat().st_size / 1e6
    if header[0] != "code" or len(codes) != count:
        return False, f"MISMATCH: {len(codes):,} distinct codes in {path.name}, wanted {count:,}"
    return True, f"{path.name}: {count:,} rows, {count:,} distinct codes, {size:,.0f} MB"


def check_published(url: str, campaign: str, count: int) -> tuple[bool, str]:
    with psycopg.connect(common.libpq_url(url)) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE v.published_count = 1),"
            " count(DISTINCT pv.publication_id), count(pv.voucher_id)"
            " FROM voucher v LEFT JOIN publication_voucher pv ON pv.voucher_id = v.id"
            " WHERE v.campaign_id = %s",
            (campaign,),
        ).fetchone()
        channel = conn.execute(
            "SELECT string_agg(DISTINCT channel, ',') FROM publication"
        ).fetchone()
    assert row is not None
    assert channel is not None
    if tuple(row) != (count, 1, count) or channel[0] != "Export":
        return False, f"MISMATCH: published once, publications, links = {tuple(row)}; {channel[0]}"
    return True, f"{count:,} vouchers published once each, all in one Export publication"


def download(url: str, token: str, operation_id: str, target: Path, count: int) -> Phase:
    with common.voucherd_server(url, workers=1) as server:
        request = urllib.request.Request(
            f"http://{server.host}:{server.port}/api/v1/operations/{operation_id}/result",
            headers={"Authorization": f"Bearer {token}"},
        )
        finished = False
        measured: list[tuple[float, common.CpuUsage]] = []
        started = time.perf_counter()

        def sample() -> None:
            measured.append(watch(server.pids, lambda: finished, url))

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            with urllib.request.urlopen(request, timeout=600) as answer, target.open("wb") as out:
                while block := answer.read(1 << 20):
                    out.write(block)
        except urllib.error.HTTPError as refused:
            raise common.BenchFailed(f"the download answered {refused.code}") from None
        finally:
            finished = True
            sampler.join()
        seconds = time.perf_counter() - started
    peak, cpu = measured[0]
    return Phase("download (voucherd serve)", seconds, peak, count, cpu)


def main(argv: list[str] | None = None) -> int:
    command = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    command.add_argument("--count", type=int, default=1_000_000, help="vouchers to export")
    args = command.parse_args(argv)
    count = args.count
    origin = common.voucherd_origin()
    print(f"export: {common.machine_line(common.server_url())}; voucherd from {origin}")
    checks: list[tuple[bool, str]] = []
    phases: list[Phase] = []
    with common.bench_database() as url, tempfile.TemporaryDirectory() as scratch:
        db = common.open_database(url)
        try:
            tenant = common.make_tenant(db)
            campaign = common.make_gift_campaign(db, tenant, value=5000)
            started = time.perf_counter()
            mint_vouchers(db, tenant.caller, campaign, MintVouchers(count=count))
            print(f"minted {count:,} vouchers in {time.perf_counter() - started:.1f} s")
        finally:
            db.dispose()

        cli_file = Path(scratch, "cli.csv")
        voucherd = [sys.executable, "-m", "voucherd", "export", "--tenant", tenant.name]
        voucherd += ["--campaign", campaign, "--output", str(cli_file)]
        phases.append(child(voucherd, url, "CLI plain export to a file", count))
        checks.append(check_file(cli_file, count))
        cli_file.unlink()

        db = common.open_database(url)
        try:
            operation = start_export(db, tenant.caller, campaign, ExportRequest(published=False)).id
        finally:
            db.dispose()
        worker = [sys.executable, "-c", _WORKER]
        phases.append(child(worker, url, "operation: worker, for distribution", count))
        checks.append(check_published(url, campaign, count))

        served = Path(scratch, "served.csv")
        phases.append(download(url, tenant.token, operation, served, count))
        checks.append(check_file(served, count))

    for ok, verdict in checks:
        print(("  ok  " if ok else "  FAIL ") + verdict)
        common.require(ok, verdict)
    headers = ["phase", "seconds", "rows/s", "peak RSS MB", "CPU s", "postgres CPU s", "others"]
    common.print_table(headers, [p.line() for p in phases])
    print("CPU s: the measured process; others: cores busy with unrelated processes (noise)")
    over = [p.name for p in phases if p.peak_mb >= TARGET_MB]
    print(
        f"target: under {TARGET_MB:g} MB resident for {count:,} rows: "
        + ("MISSED by " + ", ".join(over) if over else "met")
    )
    return 0 if not over else 1


if __name__ == "__main__":
    common.run(main)
