"""The bare-framework anchor: what FastAPI under voucherd's own server can do for issuing,
redeeming and claiming.

A minimal FastAPI app with one endpoint, ``POST /api/v1/vouchers`` taking ``{"campaign": ID}``,
that writes the three rows voucherd's issue writes for a GIFT voucher (bench/issue_rows.py:
``BEGIN``, three INSERTs, ``COMMIT``, on a pool of async psycopg connections, statements
prepared by psycopg after five uses) and answers 201 with the voucher's id, code, campaign and
balance. No authentication, idempotency, guard, event log, outbox, logging or metrics: the
framework and the database, nothing of ours. It runs under uvicorn with the settings
``voucherd serve`` gives it (the same worker count; uvloop and httptools picked the same way),
so bench.issue can say how close voucherd's whole path gets to this ceiling.

The same app answers ``POST /api/v1/redemptions`` (``{"code", "amount"}``: bench.redeem's floor
transaction, the conditional UPDATE by code and the ledger INSERT) and ``POST
/api/v1/publications`` (``{"campaign", "count": 1}``: bench.claim's floor statement, one code
claimed with SKIP LOCKED after the last this process claimed), so bench.redeem and bench.claim
can show the framework's own ceiling beside their floors too.

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
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from bench import common, issue_rows

POOL_SIZE = 10  # per process, as voucherd's db_pool_size


class IssueBody(BaseModel):
    campaign: str


class RedeemBody(BaseModel):
    code: str
    amount: int


class PublishBody(BaseModel):
    campaign: str
    count: int


# bench.redeem's floor transaction, by code (what a request names) rather than by id.
_DEBIT_BY_CODE = """
UPDATE voucher SET balance = balance - %(amount)s
WHERE code = %(code)s AND balance >= %(amount)s
RETURNING id
"""
_LEDGER = """
INSERT INTO ledger_entry (tenant_id, voucher_id, delta, kind, created_at)
VALUES (%(tenant)s, %(voucher)s, -%(amount)s, 'REDEMPTION', now())
"""


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

    @app.post("/api/v1/redemptions", status_code=201)
    async def redeem(body: RedeemBody) -> dict[str, Any]:
        async with pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(_DEBIT_BY_CODE, {"code": body.code, "amount": body.amount})
            row = await cursor.fetchone()
            if row is None:
                raise HTTPException(400, "the balance does not cover it")
            await conn.execute(
                _LEDGER, {"tenant": params["tenant"], "voucher": row[0], "amount": body.amount}
            )
        return {"object": "redemption", "status": "SUCCEEDED", "amount": body.amount,
                "code": body.code, "voucher_id": row[0]}  # fmt: skip

    # bench.claim's floor statement; imported here, in the app, since bench.claim imports
    # this module to start the anchor.
    from bench.claim import CLAIM_ONE

    last_claimed = {"after": ""}  # this process continues after its last claim, as voucherd's

    @app.post("/api/v1/publications", status_code=201)
    async def claim(body: PublishBody) -> dict[str, Any]:
        if body.count != 1:
            raise HTTPException(400, "the anchor claims one code at a time")
        async with pool.connection() as conn:
            after = last_claimed["after"]
            cursor = await conn.execute(CLAIM_ONE, {"campaign": body.campaign, "after": after})
            row = await cursor.fetchone()
            if row is None and after:  # nothing after the last: wrap round to the head once
                cursor = await conn.execute(CLAIM_ONE, {"campaign": body.campaign, "after": ""})
                row = await cursor.fetchone()
        if row is None:
            raise HTTPException(409, "the pool ran dry")
        last_claimed["after"] = row[0]
        return {"object": "publication", "campaign_id": body.campaign, "count": 1,
                "vouchers": [row[1]]}  # fmt: skip

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
