"""Issue 13's results table in one command: every row's benchmark, medians of N runs, markdown.

    python -m bench.table [--runs 3] [--seconds 10] [--count 1000000] [--only issue,claim]

Runs, one after the other, each as its own process with its full output shown as it goes:

* ``bench.issue``: issue over HTTP, 16 connections, 2 workers, beside the bare-framework anchor
  and the 3-INSERT floor;
* ``bench.redeem --threads 0``: redeem over HTTP on one hot card (32 connections) and on random
  cards of a 100,000-voucher campaign, each beside its raw conditional-UPDATE floor;
* ``bench.claim``: pool claims over HTTP from a ``--pool`` (1,000,000) code pool, each side
  measured first and again after ``--after`` (100,000) claims;
* ``bench.deliver``: two ``voucherd worker`` processes to a local provider, beside the raw
  claim + record floor;
* ``bench.mint --count N``: the CLI mint of N codes beside a COPY floor, and its peak RSS;
* ``bench.load``: the 70/20/10 mix against 2 API processes and 1 worker, ``--load-seconds``
  measured, every invariant checked afterwards;
* ``bench.sqlite``: the embedded default (SQLite, 1 worker) issuing and redeeming beside a raw
  sqlite3 floor.

Each benchmark records its runs (``BENCH_RESULTS``, see bench/common.py) once all its checks
passed. If any benchmark fails (an unexpected answer such as a 429, a ledger that does not add
up, a child that exited non-zero) this prints which, and **no table**, and exits 1. Otherwise it
prints a markdown table: the path, voucherd's figure, the floor's, the ratio, the target, and
``others`` (cores other processes used during the run: median and most of the runs), under a
header naming the machine, the commit and the command.

With the defaults (3 runs, 10 s phases, 1,000,000 codes) it takes about 25-30 minutes on a
2-core machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as ``python bench/table.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench import common

LOAD_BEFORE = 224.0  # requests/s of the 70/20/10 mix when issue 13 was filed
FLAT = 0.9  # a claim rate after 100,000 claims at least this share of the first counts as flat

Record = dict[str, Any]  # one benchmark's recorded runs: headers, runs, median


@dataclass(frozen=True)
class Benchmark:
    name: str  # --only uses it
    module: str
    arguments: Callable[[argparse.Namespace], list[str]]
    keys: tuple[str, ...]  # what it records (common.record_runs)


def _timing(args: argparse.Namespace) -> list[str]:
    return ["--seconds", f"{args.seconds:g}", "--warmup", f"{args.warmup:g}"]


BENCHMARKS = (
    Benchmark("issue", "bench.issue", lambda a: [*_timing(a), "--runs", str(a.runs)], ("issue",)),
    Benchmark(
        "redeem",
        "bench.redeem",
        lambda a: [*_timing(a), "--runs", str(a.runs), "--threads", "0", "--cards", str(a.cards)],
        ("redeem.hot", "redeem.many"),
    ),
    Benchmark(
        "claim",
        "bench.claim",
        lambda a: (
            [*_timing(a), "--runs", str(a.runs), "--pool", str(a.pool)] + ["--after", str(a.after)]
        ),
        ("claim",),
    ),
    Benchmark(
        "deliver", "bench.deliver", lambda a: [*_timing(a), "--runs", str(a.runs)], ("deliver",)
    ),
    Benchmark(
        "mint", "bench.mint", lambda a: ["--count", str(a.count), "--runs", str(a.runs)], ("mint",)
    ),
    Benchmark(
        "load",
        "bench.load",
        lambda a: ["--seconds", f"{a.load_seconds:g}", "--runs", str(a.runs)],
        ("load",),
    ),
    Benchmark(
        "sqlite",
        "bench.sqlite",
        lambda a: [*_timing(a), "--runs", str(a.runs), "--cards", str(a.cards)],
        ("sqlite.issue", "sqlite.redeem"),
    ),
)


# --- running them ---------------------------------------------------------------------------------


def _run(benchmark: Benchmark, args: argparse.Namespace, results: Path) -> tuple[bool, float]:
    command = [sys.executable, "-m", benchmark.module, *benchmark.arguments(args)]
    print(f"\n$ python -m {' '.join(command[2:])}", flush=True)
    env = {**os.environ, common.RESULTS_VARIABLE: str(results)}
    started = time.monotonic()
    finished = subprocess.run(command, cwd=common.REPO_ROOT, env=env, check=False)
    took = time.monotonic() - started
    print(f"[{benchmark.name}: exit {finished.returncode}, {took / 60:.1f} min]", flush=True)
    return finished.returncode == 0, took


def _records(results: Path) -> dict[str, Record]:
    if not results.exists():
        return {}
    found: dict[str, Record] = {}
    for line in results.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        found[record["key"]] = record
    return found


# --- the header -----------------------------------------------------------------------------------


def _git(*arguments: str) -> str:
    try:
        return subprocess.run(
            ["git", *arguments], cwd=common.REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _memory_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "?"


def header(args: argparse.Namespace, started: float, took: float) -> list[str]:
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = (
        " (with uncommitted changes)"
        if _git("status", "--porcelain", "--untracked-files=no")
        else ""
    )
    try:
        postgres = common.server_version(common.server_url())
    except (psycopg.Error, OSError) as exc:  # a header line; the benchmarks said what failed
        postgres = f"? ({type(exc).__name__})"
    import sqlite3

    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started))
    return [
        (
            f"**Machine**: {os.cpu_count()} CPUs ({_cpu_model()}), {_memory_gib()}, "
            f"{platform.system()} {platform.release()}; PostgreSQL {postgres} via "
            f"{common.where(common.server_url())}; SQLite {sqlite3.sqlite_version}; "
            f"Python {platform.python_version()}"
        ),
        f"**Commit**: `{commit}`{dirty}, voucherd from {common.REPO_ROOT / 'voucherd'}",
        f"**When**: {when}, {took / 60:.1f} min in all; medians of {args.runs} run(s); "
        f"`python -m bench.table {shlex.join(args.argv)}`".rstrip(),
    ]


# --- the rows -------------------------------------------------------------------------------------


def _n(value: float) -> str:
    if math.isnan(value):
        return "-"
    if abs(value) < 10:
        return f"{value:,.2f}"
    return f"{value:,.0f}"


def _others(record: Record) -> str:
    column = record["headers"].index("others")
    values = [run[column] for run in record["runs"]]
    return f"{_n(record['median']['others'])} (max {_n(max(values))})"


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def rows(records: dict[str, Record], args: argparse.Namespace) -> list[list[str]]:
    """[path, voucherd, floor, ratio, target, met, others] for every row recorded."""
    table: list[list[str]] = []
    if (r := records.get("issue")) is not None:
        m = r["median"]
        table.append(
            [
                "issue over HTTP, 16 connections, 2 workers",
                (
                    f"{_n(m['voucherd req/s'])} req/s, p99 {_n(m['p99 ms'])} ms; "
                    f"anchor {_n(m['anchor req/s'])} req/s (vs anchor {_n(m['vs anchor'])})"
                ),
                f"{_n(m['floor tx/s'])} tx/s (3 INSERTs)",
                _n(m["ratio"]),
                ">= 0.5 of the 3-INSERT floor, p99 < 50 ms",
                _met(m["ratio"] >= 0.5 and m["p99 ms"] < 50),
                _others(r),
            ]
        )
    if (r := records.get("redeem.many")) is not None:
        m = r["median"]
        table.append(
            [
                f"redeem over HTTP on many cards (random of {args.cards:,}), 32 connections",
                f"{_n(m['HTTP /s'])} /s, p99 {_n(m['p99 ms'])} ms"
                + (
                    f"; anchor {_n(m['anchor /s'])} /s (vs anchor {_n(m['vs anchor'])}, "
                    f"anchor ratio {_n(m['anchor ratio'])})"
                    if "anchor /s" in m
                    else ""
                ),
                f"{_n(m['floor tx/s'])} tx/s (UPDATE + INSERT, random rows)",
                _n(m["ratio"]),
                ">= 0.5",
                _met(m["ratio"] >= 0.5),
                _others(r),
            ]
        )
    if (r := records.get("redeem.hot")) is not None:
        m = r["median"]
        table.append(
            [
                "redeem over HTTP on one hot card, 32 connections",
                f"{_n(m['HTTP /s'])} /s, p99 {_n(m['p99 ms'])} ms; ledger checked, 0 overspend",
                f"{_n(m['floor tx/s'])} tx/s (UPDATE + INSERT, one row)",
                _n(m["ratio"]),
                ">= 0.6, 0 overspend",
                _met(m["ratio"] >= 0.6),
                _others(r),
            ]
        )
    if (r := records.get("claim")) is not None:
        m = r["median"]
        v_after, v_flat = m["HTTP after"], m["HTTP flat"]
        f_after, f_flat = m["floor after"], m["floor flat"]
        table.append(
            [
                f"pool claim over HTTP, 16 connections, {args.pool:,}-code pool",
                (
                    f"{_n(m['HTTP /s'])} /s first, {_n(v_after)} /s after {args.after:,} claims "
                    f"(flat {_n(v_flat)}); p99 {_n(m['p99 ms'])} ms"
                    + (
                        f"; anchor {_n(m['anchor /s'])} /s (vs anchor {_n(m['vs anchor'])}, "
                        f"anchor ratio {_n(m['anchor ratio'])})"
                        if "anchor /s" in m
                        else ""
                    )
                ),
                f"{_n(m['floor /s'])} /s first, {_n(f_after)} /s after (flat {_n(f_flat)})",
                f"{_n(m['ratio'])} (after: {_n(m['ratio after'])})",
                f">= 0.7, flat to the 100,000th claim (flat >= {FLAT})",
                _met(m["ratio"] >= 0.7 and v_flat >= FLAT and args.after >= 100_000),
                _others(r),
            ]
        )
    if (r := records.get("deliver")) is not None:
        m = r["median"]
        table.append(
            [
                "delivery, 2 workers to a local provider",
                f"{_n(m['voucherd msg/s'])} messages/s",
                f"{_n(m['floor msg/s'])} messages/s (raw claim + record)",
                _n(m["vs floor"]),
                ">= 0.7 and >= 1,500 messages/s",
                _met(m["vs floor"] >= 0.7 and m["voucherd msg/s"] >= 1500),
                _others(r),
            ]
        )
    if (r := records.get("mint")) is not None:
        m = r["median"]
        table.append(
            [
                f"mint {args.count:,} codes",
                f"{_n(m['mint s'])} s ({_n(m['codes/s'])} codes/s), peak RSS {_n(m['peak MB'])} MB",
                f"{_n(m['floor s'])} s (COPY)",
                _n(m["ratio"]),
                "<= 10 s and >= 0.8 of the COPY floor; RSS < 300 MB (for 1,000,000)",
                _met(
                    args.count >= 1_000_000
                    and m["mint s"] <= 10
                    and m["ratio"] >= 0.8
                    and m["peak MB"] < 300
                ),
                _others(r),
            ]
        )
    if (r := records.get("load")) is not None:
        m = r["median"]
        table.append(
            [
                "load mix 70/20/10, 2 API processes + 1 worker",
                (
                    f"{_n(m['req/s'])} req/s, p50 {_n(m['p50 ms'])} ms, p99 {_n(m['p99 ms'])} ms, "
                    f"{m['5xx+drops']:.0f} server errors, invariants held"
                ),
                f"(before: {LOAD_BEFORE:g} req/s, p99 262 ms)",
                f"{_n(m['req/s'] / LOAD_BEFORE)}x before",
                ">= 3x (672 req/s), p99 < 100 ms, 0 errors, invariants held",
                _met(m["req/s"] >= 3 * LOAD_BEFORE and m["p99 ms"] < 100),
                _others(r),
            ]
        )
    for key, what, floor in (
        ("sqlite.issue", "issue", "3 INSERTs"),
        (
            "sqlite.redeem",
            f"redeem (random of {args.cards:,} cards)",
            "UPDATE + INSERT, random rows",
        ),
    ):
        if (r := records.get(key)) is not None:
            m = r["median"]
            table.append(
                [
                    f"SQLite embedded default: {what} over HTTP, 1 worker",
                    f"{_n(m['HTTP /s'])} /s, p99 {_n(m['p99 ms'])} ms",
                    f"{_n(m['floor tx/s'])} tx/s (raw sqlite3, {floor})",
                    _n(m["ratio"]),
                    ">= 0.5",
                    _met(m["ratio"] >= 0.5),
                    _others(r),
                ]
            )
    return table


def markdown(lines: list[str], table: list[list[str]]) -> str:
    head = ["path", "voucherd", "raw floor", "ratio", "target", "met", "others"]
    out = [*(f"{line}  " for line in lines), ""]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    out += ["| " + " | ".join(cells) + " |" for cells in table]
    out.append("")
    out.append(
        "Medians of the runs; ratio = voucherd / the raw floor measured in the same run; "
        "`others` = cores used by other processes during the run's phases (median, and the "
        f"most in any run); claim's flat = rate after the claims / rate first (met at >= {FLAT})."
    )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    command = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    command.add_argument("--runs", type=int, default=3, help="runs per benchmark (medians)")
    command.add_argument("--seconds", type=float, default=10.0, help="measured seconds per phase")
    command.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per phase")
    command.add_argument("--count", type=int, default=1_000_000, help="codes bench.mint mints")
    command.add_argument(
        "--cards", type=int, default=100_000, help="cards of the many-cards redeem paths"
    )
    command.add_argument("--pool", type=int, default=1_000_000, help="bench.claim's pool")
    command.add_argument(
        "--after", type=int, default=100_000, help="bench.claim's second measurement"
    )
    command.add_argument(
        "--load-seconds", type=float, default=30.0, help="bench.load's measured seconds per run"
    )
    names = [b.name for b in BENCHMARKS]
    command.add_argument(
        "--only",
        default=",".join(names),
        help=f"comma-separated subset of: {', '.join(names)}",
    )
    command.add_argument("--output", type=Path, help="also write the markdown table to this file")
    command.add_argument(
        "--results",
        type=Path,
        help="keep the benchmarks' recorded runs (JSON lines) in this file (default: a scratch "
        "file, removed)",
    )
    args = command.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        command.error(f"--only: unknown {', '.join(unknown)} (known: {', '.join(names)})")
    started = time.time()
    failed: list[str] = []
    took: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="voucherd_bench_table_") as scratch:
        results = args.results or Path(scratch, "results.jsonl")
        if args.results is not None and results.exists():
            results.unlink()  # this run's records only
        for benchmark in BENCHMARKS:
            if benchmark.name not in chosen:
                continue
            ok, took[benchmark.name] = _run(benchmark, args, results)
            recorded = _records(results)
            missing = [key for key in benchmark.keys if key not in recorded]
            if not ok or missing:
                failed.append(benchmark.name)
        records = _records(results)
    total = time.time() - started
    print("\n" + ", ".join(f"{name} {seconds / 60:.1f} min" for name, seconds in took.items()))
    if failed:
        print(
            f"\nFAILED: {', '.join(failed)}; no table: a benchmark that failed measured "
            "something else (its output above says what)"
        )
        return 1
    text = markdown(header(args, started, total), rows(records, args))
    print("\n" + text)
    if args.output is not None:
        args.output.write_text(text + "\n", encoding="utf-8")
        print(f"\n(written to {args.output})")
    return 0


if __name__ == "__main__":
    common.run(main)
