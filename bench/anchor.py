"""The bare-framework anchor for issuing: what FastAPI under voucherd's own server can do.

A minimal FastAPI app with one endpoint, ``POST /api/v1/vouchers`` taking ``{"campaign": ID}``,
that writes the three rows voucherd's issue writes for a GIFT voucher (bench/issue_rows.py:
``BEGIN``, three INSERTs, ``COMMIT``, on a pool of async psycopg connections, statements
prepared by psycopg after five uses) and answers 201 with the voucher's id, code, campaign and
balance. No authentication, idempotency, guard, event log, outbox, logging or metrics: the
framework and the database, nothing of ours. It runs under uvicorn with the settings
``voucherd serve`` gives it (the same worker count; uvloop and httptools picked the same way),
so bench.issue can say how close voucherd's whole path gets to this ceiling.

Started by ``python -m bench.issue`` in the same run; by hand:
``BENCH_ANCHOR_DATABASE_URL=postgresql://... BENCH_ANCHOR_TENANT=ten_... python -m bench.anchor
--port 8001 --workers 2``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as ``python bench/anchor.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from fastapi import FastAPI
from pydantic import BaseModel

from bench import common, issue_rows

POOL_SIZE = 10  # per process, as voucherd's db_pool_size


class IssueBody(BaseModel):
    campaign: str


class _Pool:
    """A fixed set of autocommit async connections, opened at start-up, lent one at a time."""

    def __init__(self, conninfo: str, size: int) -> None:
        self.conninfo = conninfo
        self.size = size
        self.idle: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()
        self.all: list[psycopg.AsyncConnection[Any]] = []

    async def open(self) -> None:
        for _ in range(self.size):
            conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
            self.all.append(conn)
            self.idle.put_nowait(conn)

    async def close(self) -> None:
        for conn in self.all:
            await conn.close()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        conn = await self.idle.get()
        try:
            yield conn
        finally:
            self.idle.put_nowait(conn)


def create_app() -> FastAPI:
    """The app, configured from ``BENCH_ANCHOR_*`` (uvicorn builds it in each worker)."""
    pool = _Pool(
        common.libpq_url(os.environ["BENCH_ANCHOR_DATABASE_URL"]),
        int(os.environ.get("BENCH_ANCHOR_POOL", POOL_SIZE)),
    )
    params = {
        "tenant": os.environ["BENCH_ANCHOR_TENANT"],
        "actor": os.environ.get("BENCH_ANCHOR_ACTOR", "anchor"),
        "value": issue_rows.VALUE,
        "data": issue_rows.EVENT_DATA,
    }
    pending: list[tuple[str, str, str]] = []

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await pool.open()
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan, openapi_url=None)

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/v1/vouchers", status_code=201)
    async def issue(body: IssueBody) -> dict[str, Any]:
        row = issue_rows.next_voucher(pending, {**params, "campaign": body.campaign})
        async with pool.connection() as conn, conn.transaction():
            await conn.execute(issue_rows.INSERT_VOUCHER, row)
            await conn.execute(issue_rows.INSERT_LEDGER, row)
            await conn.execute(issue_rows.INSERT_EVENT, row)
        return {
            "id": row["id"],
            "object": "voucher",
            "code": row["code"],
            "campaign_id": body.campaign,
            "type": "GIFT",
            "value": issue_rows.VALUE,
            "balance": issue_rows.VALUE,
        }

    return app


@contextlib.contextmanager
def anchor_server(
    database_url: str, tenant_id: str, actor: str, *, workers: int
) -> Iterator[common.Server]:
    """``python -m bench.anchor`` on a free port, stopped (its process group) on exit."""
    port = common._free_port()
    env = common.child_env(
        database_url,
        BENCH_ANCHOR_DATABASE_URL=database_url,
        BENCH_ANCHOR_TENANT=tenant_id,
        BENCH_ANCHOR_ACTOR=actor,
    )
    command = [sys.executable, "-m", "bench.anchor", "--port", str(port)]
    command += ["--workers", str(workers)]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=common.REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            common._wait_ready(process, port, log)
            yield common.Server("127.0.0.1", port, process.pid)
        finally:
            common._stop_group(process)


def main() -> None:
    import uvicorn

    command = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    command.add_argument("--port", type=int, default=8001)
    command.add_argument("--workers", type=int, default=2)
    args = command.parse_args()
    # As voucherd.cli.serve runs uvicorn, minus our own logging.
    uvicorn.run(
        "bench.anchor:create_app",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        log_level="warning",
        log_config=None,
        access_log=False,
        timeout_worker_healthcheck=30,
    )


if __name__ == "__main__":
    main()
