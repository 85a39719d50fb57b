"""An API process's own instructions per request, counted by valgrind: a figure that the guest's
speed does not move.

On the shared guests these benchmarks run on, a process's CPU per request moves by a third
within the hour (bench/README.md), which buries a change worth a few per cent of a request.
Instructions do not move. Here the whole app, with its production defaults (the guard, metrics,
JSON access lines, to a scratch file), runs in one process under valgrind's callgrind; requests
go through its ASGI interface from ``--concurrency`` tasks on uvloop (the hot routes' trip to a
worker thread included), and only the measured requests are counted: ``callgrind_control``
turns counting on after a warm-up (statements prepared, caches full) and off after them. Runs of
the same code agree within about 2%; compare two commits by running this from each checkout in
turn, or name the other's with ``--checkout DIR`` (its ``voucherd`` package is measured, with
this program), and read the difference.

What it leaves out: the server's HTTP parsing (uvicorn with httptools: about 100 µs a request,
``bench.servers``), the kernel's share (socket writes, futexes, each round trip to the database)
and PostgreSQL's own work. It answers "did this change make voucherd's own code cheaper", not
"how fast is it"; the other benchmarks answer that.

Every answer must be the one expected (201 for redeem, issue and claim, 200 for validate), or it
exits 1 and prints no figure. Needs valgrind (``apt-get install valgrind``) and PostgreSQL
(``BENCH_DATABASE_URL``, as every benchmark here).

    python -m bench.instructions [--path redeem|validate|issue|claim] [--requests 200]
                                 [--concurrency 8] [--cards 5000] [--checkout DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as ``python bench/instructions.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

_INSIDE = "BENCH_INSTRUCTIONS_INSIDE"  # set for the copy of this program valgrind runs
_WARMUP = 200
# (method, path, expected status); the body is made per request by _bodies.
PATHS: dict[str, tuple[str, str, int]] = {
    "redeem": ("POST", "/api/v1/redemptions", 201),
    "validate": ("POST", "/api/v1/validations", 200),
    "issue": ("POST", "/api/v1/vouchers", 201),
    "claim": ("POST", "/api/v1/publications", 201),
}

Call = Callable[[str, str, bytes], Awaitable[tuple[int, bytes]]]


def _asgi_caller(app: Any, token: str) -> Call:
    """A request to ``app`` through its ASGI interface, as uvicorn hands one over."""

    async def call(method: str, path: str, body: bytes) -> tuple[int, bytes]:
        pending = [body]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": pending.pop() if pending else b""}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        headers = [
            (b"host", b"127.0.0.1:8000"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        await app(scope, receive, send)
        return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])

    return call


def _bodies(path: str, campaign: str, codes: list[str]) -> Callable[[], bytes]:
    draw = random.Random(len(codes))
    if path in ("redeem", "validate"):
        encoded = [json.dumps({"code": code, "amount": 1}).encode() for code in codes]
        return lambda: encoded[draw.randrange(len(encoded))]
    one = json.dumps(
        {"campaign": campaign, "count": 1} if path == "claim" else {"campaign": campaign}
    )
    return lambda: one.encode()


def _count_instructions(on: bool) -> None:
    switch = "on" if on else "off"
    subprocess.run(
        ["callgrind_control", "-i", switch, str(os.getpid())], check=True, capture_output=True
    )


async def _drive(
    app: Any, args: argparse.Namespace, token: str, body: Callable[[], bytes]
) -> Counter[int]:
    method, route, _ = PATHS[args.path]
    call = _asgi_caller(app, token)
    answers: Counter[int] = Counter()

    async def requests(count: int) -> None:
        for _ in range(count):
            status, _answer = await call(method, route, body())
            answers[status] += 1

    async def round_of(total: int) -> None:
        share, extra = divmod(total, args.concurrency)
        await asyncio.gather(*(requests(share + (i < extra)) for i in range(args.concurrency)))

    limits = {
        "rate_limits": {"per_key": common.BENCH_RATE_LIMIT, "per_tenant": common.BENCH_RATE_LIMIT}
    }
    status, shown = await call("PATCH", "/api/v1/tenant", json.dumps(limits).encode())
    common.require(status == 200, f"PATCH /api/v1/tenant answered {status}: {shown[:300]!r}")
    await round_of(_WARMUP)
    _count_instructions(True)
    await round_of(args.requests)
    _count_instructions(False)
    return answers


def _inside(args: argparse.Namespace) -> int:
    """Under valgrind: the app, its tenant and cards, the requests; the answers on stdout."""
    import uvloop
    from sqlalchemy import select

    from voucherd.app import create_app
    from voucherd.config import Settings
    from voucherd.observability.logs import configure_logging
    from voucherd.vouchers.mint import mint_vouchers
    from voucherd.vouchers.models import Voucher
    from voucherd.vouchers.schemas import MintVouchers

    for name in [n for n in os.environ if n.startswith("VOUCHERD_")]:
        del os.environ[name]  # production defaults, as bench.common.child_env gives a server
    with common.bench_database() as url, tempfile.TemporaryFile("w+") as log:
        configure_logging("json", stream=log)
        app = create_app(Settings(database_url=url))
        db = app.state.db
        try:
            tenant = common.make_tenant(db)
            campaign = common.make_gift_campaign(db, tenant, value=10**12)
            mint_vouchers(db, tenant.caller, campaign, MintVouchers(count=args.cards))
            with db.engine.connect() as connection:
                codes = list(
                    connection.scalars(select(Voucher.code).where(Voucher.campaign_id == campaign))
                )

            async def run() -> Counter[int]:
                async with app.router.lifespan_context(app):
                    return await _drive(
                        app, args, tenant.token, _bodies(args.path, campaign, codes)
                    )

            answers = uvloop.run(run())
        finally:
            db.dispose()
    import voucherd

    origin = str(Path(voucherd.__file__).resolve().parent)
    print(json.dumps({"answers": {str(k): v for k, v in answers.items()}, "voucherd": origin}))
    return 0


def _outside(args: argparse.Namespace) -> int:
    """Run this program again under callgrind, and read its count."""
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    if missing:
        print(f"instructions: needs {' and '.join(missing)} (apt-get install valgrind)")
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        # This program's bench package with the measured checkout's voucherd, and nothing else.
        packages = Path(scratch, "packages")
        packages.mkdir()
        Path(packages, "bench").symlink_to(Path(common.REPO_ROOT, "bench"))
        Path(packages, "voucherd").symlink_to(Path(args.checkout, "voucherd").resolve())
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={scratch}/callgrind.%p",
            sys.executable,
            "-m",
            "bench.instructions",
            *sys.argv[1:],
        ]
        child = subprocess.run(
            command,
            env={**os.environ, _INSIDE: "1", "PYTHONPATH": str(packages)},
            cwd=scratch,
            capture_output=True,
            text=True,
            check=False,
        )
    counted = re.search(r"Collected : (\d+)", child.stderr)
    lines = child.stdout.strip().splitlines()
    if child.returncode != 0 or counted is None or not lines:
        print(f"instructions: the measured process failed (exit {child.returncode})")
        print(child.stdout[-2000:], child.stderr[-3000:], sep="\n")
        return 1
    reported = json.loads(lines[-1])
    answers = {int(k): v for k, v in reported["answers"].items()}
    expected = PATHS[args.path][2]
    if set(answers) != {expected} or answers[expected] != _WARMUP + args.requests:
        print(f"instructions: unexpected answers {answers} (all {expected} expected): no figure")
        return 1
    method, route, _ = PATHS[args.path]
    per_request = int(counted.group(1)) / args.requests
    print(
        f"instructions: {method} {route}, {args.requests} requests from {args.concurrency} tasks "
        f"after {_WARMUP} unmeasured; voucherd from {reported['voucherd']}"
    )
    print(f"  {per_request:,.0f} instructions a request (API process, user space)")
    return 0


def main(argv: list[str] | None = None) -> int:
    command = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    command.add_argument("--path", choices=sorted(PATHS), default="redeem")
    command.add_argument("--requests", type=int, default=200, help="measured requests")
    command.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    command.add_argument("--cards", type=int, default=5000, help="GIFT vouchers minted first")
    command.add_argument(
        "--checkout", default=str(common.REPO_ROOT), help="whose voucherd package to measure"
    )
    args = command.parse_args(argv)
    if args.path == "claim" and args.cards < _WARMUP + args.requests:
        command.error("claim needs --cards of at least the warm-up and the measured requests")
    return _inside(args) if os.environ.get(_INSIDE) else _outside(args)


if __name__ == "__main__":
    common.run(main)
