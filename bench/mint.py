"""Minting codes into a campaign, against the raw database floor for the same rows.

voucherd: ``voucherd campaigns mint CAMPAIGN --tenant T --count N --json`` in a child process, on
a fresh migrated database with a GIFT campaign (so every voucher also gets its opening ledger
entry). Printed: the seconds the command reports for ``mint_vouchers`` (one transaction), the
child's whole wall time (interpreter, imports and migration check included), and the child's
peak resident memory (its ``VmHWM``).

Floor: the same rows voucherd writes (N vouchers and their N opening ledger entries), generated
beforehand (voucherd's id, code and page-token shapes plus the constant columns), written by
``COPY`` into empty copies of ``voucher`` and ``ledger_entry`` in one transaction, twice:

* **same schema** (the ratio's floor, issue 13's "a COPY floor into the same schema"): the copies
  have the tables' indexes, checks *and foreign keys* (voucher to tenant, campaign and customer;
  ledger entry to tenant and to the voucher copy), so every row pays what voucherd's rows pay;
* **without foreign keys** (``LIKE ... INCLUDING ALL`` alone, the floor this bench measured until
  2026-12-07): printed alongside so older figures stay comparable.

    python -m bench.mint [--count 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

if __package__ in (None, ""):  # run as ``python bench/mint.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from voucherd.codes.generator import DEFAULT_SPEC
from voucherd.ids import new_ids, new_public_tokens

VALUE = 5000
TARGET_SECONDS = 10.0  # issue 2: a million codes in under 10 s ...
TARGET_MB = 300.0  # ... in under 300 MB of resident memory
_CHUNK = 1 << 20  # bytes per COPY write

_VOUCHER_COLUMNS = (
    "id, tenant_id, campaign_id, code, public_token, type, state, currency, amount, balance, "
    "redemption_quantity, redeemed_quantity, start_date, expiration_date, category, "
    "additional_info, metadata, created_at, updated_at"
)
_LEDGER_COLUMNS = "tenant_id, voucher_id, delta, kind, created_at"


@dataclass(frozen=True)
class MintRun:
    seconds: float  # mint_vouchers, as the command reports it
    wall: float  # the whole child process
    peak_mb: float
    minted: int
    cpu: common.CpuUsage


def mint_with_voucherd(url: str, tenant: common.BenchTenant, campaign: str, count: int) -> MintRun:
    """Run the CLI in a child process, sampling its peak resident memory as it goes.

    The peak is the child's ``VmHWM`` (``/proc/PID/status``), read every 20 ms. Not the
    ``ru_maxrss`` of ``wait4``: the kernel carries the parent's high-water mark across the
    fork and exec into the child's, so that would report this (bigger) benchmark process.
    """
    env = common.child_env(url)
    command = [sys.executable, "-m", "voucherd", "campaigns", "mint", campaign]
    command += ["--tenant", tenant.name, "--count", str(count), "--json"]
    started = time.perf_counter()
    peak_kb = 0
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as log:
        child = subprocess.Popen(command, env=env, stdout=out, stderr=log)
        meter = common.CpuMeter(
            {"voucherd": lambda: [child.pid], "postgres": common.postgres_serving(url)}
        )
        first = last = meter.sample()
        try:
            for tick in itertools.count():
                if child.poll() is not None:
                    break
                peak_kb = max(peak_kb, _high_water_kb(child.pid))
                if tick % 25 == 0:  # its PostgreSQL backend may end before it does
                    last = last.then(meter.sample())
                time.sleep(0.02)
        except BaseException:
            child.kill()
            child.wait()
            raise
        wall = time.perf_counter() - started
        if child.returncode != 0:
            print(common._tail(log))
            raise common.BenchFailed(f"voucherd campaigns mint exited {child.returncode}")
        out.seek(0)
        report = json.loads(out.read())
    return MintRun(report["seconds"], wall, peak_kb / 1024, report["count"], last.since(first))


def _high_water_kb(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0  # a zombie: its memory is already gone


def _check_minted(url: str, campaign: str, count: int) -> tuple[bool, str]:
    with psycopg.connect(common.libpq_url(url)) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT v.code), count(l.id) FROM voucher v"
            " LEFT JOIN ledger_entry l ON l.voucher_id = v.id AND l.kind = 'ISSUE'"
            " WHERE v.campaign_id = %s",
            (campaign,),
        ).fetchone()
    assert row is not None
    if tuple(row) != (count, count, count):
        return False, f"MISMATCH: vouchers, distinct codes, ledger entries = {tuple(row)}"
    return True, f"{count:,} vouchers with distinct codes and {count:,} opening ledger entries"


@dataclass(frozen=True)
class FloorRun:
    voucher_seconds: float  # COPY into the voucher copy
    seconds: float  # both COPYs and the COMMIT
    cpu: common.CpuUsage


_FOREIGN_KEYS = (
    (
        "ALTER TABLE voucher_floor ADD FOREIGN KEY (tenant_id) REFERENCES tenant (id), "
        "ADD FOREIGN KEY (campaign_id) REFERENCES campaign (id), "
        "ADD FOREIGN KEY (holder_id) REFERENCES customer (id)"
    ),
    (
        "ALTER TABLE ledger_floor ADD FOREIGN KEY (tenant_id) REFERENCES tenant (id), "
        "ADD FOREIGN KEY (voucher_id) REFERENCES voucher_floor (id)"
    ),
)


def copy_floor(
    url: str, tenant: common.BenchTenant, campaign: str, count: int, *, foreign_keys: bool = True
) -> FloorRun:
    """COPY ``count`` ready-made rows into empty copies of the two tables, timed to COMMIT;
    with ``foreign_keys`` the copies carry the tables' foreign keys too (the same schema)."""
    now = datetime.now(UTC).isoformat()
    constants = (
        f"GIFT\tACTIVE\tEUR\t{VALUE}\t{VALUE}\t\\N\t0\t\\N\t\\N\t\\N\t\\N\t\\N\t{now}\t{now}"
    )
    ids = new_ids("v", count)
    codes = DEFAULT_SPEC.generate(count)
    tokens = new_public_tokens(count)
    vouchers = "".join(
        f"{i}\t{tenant.id}\t{campaign}\t{c}\t{t}\t{constants}\n"
        for i, c, t in zip(ids, codes, tokens, strict=True)
    ).encode()
    ledger = "".join(f"{tenant.id}\t{i}\t{VALUE}\tISSUE\t{now}\n" for i in ids).encode()
    del ids, codes, tokens
    with psycopg.connect(common.libpq_url(url), autocommit=True) as conn:
        conn.execute("CREATE TABLE voucher_floor (LIKE voucher INCLUDING ALL)")
        conn.execute("CREATE TABLE ledger_floor (LIKE ledger_entry INCLUDING ALL)")
        for statement in _FOREIGN_KEYS if foreign_keys else ():
            conn.execute(statement)
        conn.execute("CHECKPOINT")  # do not pay for the pages voucherd's run left dirty
        meter = common.CpuMeter(
            {"client": common.this_process, "postgres": common.postgres_serving(url)}
        )
        first = meter.sample()
        started = time.perf_counter()
        with conn.transaction():
            _copy(conn, f"COPY voucher_floor ({_VOUCHER_COLUMNS}) FROM STDIN", vouchers)
            voucher_seconds = time.perf_counter() - started
            _copy(conn, f"COPY ledger_floor ({_LEDGER_COLUMNS}) FROM STDIN", ledger)
        seconds = time.perf_counter() - started
        cpu = meter.sample().since(first)
        conn.execute("DROP TABLE voucher_floor, ledger_floor")
    return FloorRun(voucher_seconds, seconds, cpu)


def _copy(conn: psycopg.Connection[object], statement: str, data: bytes) -> None:
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        view = memoryview(data)
        for offset in range(0, len(view), _CHUNK):
            copy.write(view[offset : offset + _CHUNK])


def cpu_seconds(cpu: common.CpuUsage) -> str:
    spent = ", ".join(f"{group} {cpu.seconds(group):.1f} s" for group in cpu.per_pid)
    return f"CPU: {spent}; {cpu.others:.2f} cores busy with other processes"


def _one_run(count: int) -> list[float]:
    with common.bench_database() as url:
        db = common.open_database(url)
        try:
            tenant = common.make_tenant(db)
            campaign = common.make_gift_campaign(db, tenant, value=VALUE)
        finally:
            db.dispose()
        common.reset_tables(url)
        minted = mint_with_voucherd(url, tenant, campaign, count)
        ok, verdict = _check_minted(url, campaign, count)
        common.require(ok, verdict)
        rate = count / minted.seconds
        print(
            f"  voucherd: {minted.seconds:.2f} s in mint_vouchers ({rate:,.0f} codes/s), "
            f"{minted.wall:.2f} s for the whole command, peak RSS {minted.peak_mb:,.0f} MB"
        )
        print(f"    {cpu_seconds(minted.cpu)}")
        print(f"    {verdict}")
        floor = copy_floor(url, tenant, campaign, count)
        floor_rate = count / floor.seconds
        print(
            f"  floor, same schema: {floor.seconds:.2f} s ({floor_rate:,.0f} codes/s): COPY "
            f"vouchers {floor.voucher_seconds:.2f} s + COPY ledger "
            f"{floor.seconds - floor.voucher_seconds:.2f} s"
        )
        print(f"    {cpu_seconds(floor.cpu)}")
        bare = copy_floor(url, tenant, campaign, count, foreign_keys=False)
        print(
            f"  floor without foreign keys (the figure before 2026-12-07): {bare.seconds:.2f} s "
            f"({count / bare.seconds:,.0f} codes/s); {cpu_seconds(bare.cpu)}"
        )
    noise = max(minted.cpu.others, floor.cpu.others, bare.cpu.others)
    return [
        minted.seconds,
        rate,
        minted.wall,
        minted.peak_mb,
        floor.seconds,
        bare.seconds,
        rate / floor_rate,
        noise,
    ]


def main(argv: list[str] | None = None) -> int:
    command = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    command.add_argument("--count", type=int, default=1_000_000, help="codes to mint")
    command.add_argument("--runs", type=int, default=1, help="repeat on fresh databases")
    args = command.parse_args(argv)
    origin = common.voucherd_origin()
    print(f"mint: {common.machine_line(common.server_url())}; voucherd from {origin}")
    print(f"{args.count:,} codes into a GIFT campaign, a fresh database per run")
    runs = []
    for run in range(1, args.runs + 1):
        print(f"\nrun {run}:")
        runs.append(_one_run(args.count))
    common.print_runs(
        ["mint s", "codes/s", "command s", "peak MB", "floor s", "no-FK s", "ratio", "others"],
        runs,
        key="mint",
    )
    print(
        f"ratio = voucherd codes/s / same-schema floor codes/s; targets: under {TARGET_SECONDS:g} s "
        f"and {TARGET_MB:g} MB for 1,000,000 codes"
    )
    return 0


if __name__ == "__main__":
    common.run(main)
