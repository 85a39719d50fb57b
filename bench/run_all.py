"""All the benchmarks, short: a smoke run that the benchmarks work here, with rough figures.

    python -m bench.run_all [--seconds 5] [--count 100000]

Each benchmark runs as its own process, one after the other; the exit status is non-zero when
any of them failed (an error, an unexpected answer such as a 429, or a ledger that does not add
up).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    command = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    command.add_argument("--seconds", type=float, default=5.0, help="measured seconds per phase")
    command.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per phase")
    command.add_argument("--count", type=int, default=100_000, help="codes to mint")
    args = command.parse_args(argv)
    timing = ["--seconds", str(args.seconds), "--warmup", str(args.warmup)]
    benchmarks = [
        ["bench.issue", *timing],
        ["bench.redeem", *timing, "--cards", str(args.count)],
        ["bench.redeem_db", *timing, "--cards", str(min(args.count, 20_000))],
        ["bench.mint", "--count", str(args.count)],
        ["bench.claim", *timing, "--pool", str(args.count), "--after", str(args.count // 5)],
        ["bench.deliver", *timing],
        ["bench.export", "--count", str(args.count)],
        ["bench.order", "--count", str(args.count)],
        ["bench.load", *timing, "--vouchers", str(min(args.count, 20_000))],
        ["bench.sqlite", *timing, "--cards", str(min(args.count, 20_000))],
    ]
    root = Path(__file__).resolve().parent.parent
    failed = []
    for benchmark in benchmarks:
        print(f"\n$ python -m {' '.join(benchmark)}", flush=True)
        finished = subprocess.run([sys.executable, "-m", *benchmark], cwd=root, check=False)
        if finished.returncode != 0:
            failed.append(benchmark[0])
    print(f"\nfailed: {', '.join(failed)}" if failed else "\nall benchmarks ran cleanly")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
