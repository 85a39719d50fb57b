"""The server layer alone: HTTP server CPU per request on a bare ASGI app, server by server.

A bare ASGI app (``bench/bare_asgi.py``: read the body, answer a small JSON) under each server
with ``--workers`` processes, 16 keep-alive connections from the load generator, interleaved
over ``--runs`` rounds so a noisy machine moves every server alike. What it prints is the
server's own CPU per request, the part of every voucherd request that the choice of server
decides (how voucherd chose uvicorn on uvloop + httptools: bench/README.md, "The server").
granian is measured when it is importable (``pip install granian``; not a dependency).

    python -m bench.servers [--seconds 8] [--runs 3] [--workers 2]
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from importlib.util import find_spec
from pathlib import Path

if __package__ in (None, ""):  # run as ``python bench/servers.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

APP = "bench.bare_asgi:app"
UVICORN = [sys.executable, "-m", "uvicorn", APP, "--no-access-log", "--log-level", "warning"]
GRANIAN = [sys.executable, "-m", "granian", "--interface", "asgi", APP, "--log-level", "warning"]
SERVERS = {
    "uvicorn, uvloop + httptools": [*UVICORN, "--loop", "uvloop", "--http", "httptools"],
    "uvicorn, asyncio + h11": [*UVICORN, "--loop", "asyncio", "--http", "h11"],
    "granian, ASGI": GRANIAN,
}


def _wait(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + common.READY_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise common.BenchFailed(f"{process.args!r} did not answer")


def measure(command: list[str], workers: int, seconds: float) -> tuple[float, float, float]:
    """Requests/s, the server's CPU per request (µs) and the p99 (ms) of one run."""
    port = common._free_port()
    process = subprocess.Popen(
        [*command, "--port", str(port), "--workers", str(workers)],
        cwd=common.REPO_ROOT,
        env=common.child_env("sqlite://"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait(port, process)
        server = common.Server("127.0.0.1", port, process.pid)
        body = json.dumps({"code": "ABCDEFGHJKLMN", "amount": 500}).encode()
        request = common.http_request(server, "POST", "/api/v1/validations", "t" * 60, body)
        meter = common.CpuMeter({"server": server.pids, "load generator": common.this_process})
        result = common.drive_http(
            server, request, expect=200, connections=16, warmup=2, seconds=seconds, meter=meter
        )
        result.require_clean(200, str(command[2:4]))
        served = sum(result.statuses.values())
        cpu = 1e6 * result.cpu.seconds("server") / served
        print(f"  {result.cpu.describe(served, 'request')}")
        return served / seconds, cpu, result.latency_ms(0.99)
    finally:
        common._stop_group(process)


def main() -> int:
    command = common.parser(__doc__.split("\n\n")[0], seconds=8.0)
    command.set_defaults(runs=3)
    command.add_argument("--workers", type=int, default=2, help="server processes")
    args = command.parse_args()
    servers = {k: v for k, v in SERVERS.items() if "granian" not in k or find_spec("granian")}
    cpu: dict[str, list[float]] = {name: [] for name in servers}
    for run in range(1, args.runs + 1):
        for name, server in servers.items():
            rate, per_request, p99 = measure(server, args.workers, args.seconds)
            cpu[name].append(per_request)
            print(
                f"run {run}, {name}: {rate:,.0f} requests/s, {per_request:,.0f} µs, p99 {p99:.0f} ms"
            )
    print()
    common.print_table(
        ["server", "CPU per request, µs (median)", "runs"],
        [[name, common.median(v), " ".join(f"{x:,.0f}" for x in v)] for name, v in cpu.items()],
    )
    return 0


if __name__ == "__main__":
    common.run(main)
