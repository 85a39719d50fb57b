"""The express lane (``db/express.py``) for publications: on PostgreSQL a publication from a
campaign's pool with nothing else to write or look up, without an Idempotency-Key, runs its
campaign read and its one claiming statement on the event loop, with the answers, rows and
refusals of the thread way; a pool short of the count, or a lane with no connection free, is
left to the thread way (which mints for an AUTO_UPDATE campaign or refuses).

On whole databases whose units of work really commit (``fresh_database``); on SQLite there is no
lane and the thread way answers everything.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.support.lanes import answer_shape
from voucherd.app import create_app
from voucherd.campaigns.models import Campaign
from voucherd.db.engine import Database
from voucherd.publications.models import PublicationVoucher
from voucherd.publications.publish import publish_on_loop
from voucherd.publications.schemas import PublishRequest
from voucherd.vouchers.mint import mint_vouchers
from voucherd.vouchers.models import Voucher, VoucherEvent
from voucherd.vouchers.schemas import MintVouchers


@pytest.fixture
def database(fresh_database: Callable[..., Database]) -> Database:
    return fresh_database(pool_size=4)


@pytest.fixture
def api(database: Database) -> Iterator[TestClient]:
    with TestClient(create_app(database.settings, db=database)) as client:
        yield client


def _pool(database: Database, tenant: Tenant, codes: int, **campaign: Any) -> Campaign:
    made = make_campaign(database, tenant, **campaign)
    mint_vouchers(database, tenant.caller, made.id, MintVouchers(count=codes))
    return made


def _published(database: Database, campaign: Campaign) -> tuple[int, int, int]:
    """Links, distinct codes linked, and ``published`` events of the campaign."""
    with database.unit_of_work(write=False) as session:
        links, codes = session.execute(
            select(func.count(), func.count(func.distinct(PublicationVoucher.voucher_id)))
            .select_from(PublicationVoucher)
            .join(Voucher, Voucher.id == PublicationVoucher.voucher_id)
            .where(Voucher.campaign_id == campaign.id)
        ).one()
        events = session.scalar(
            select(func.count()).where(
                VoucherEvent.campaign_id == campaign.id, VoucherEvent.kind == "published"
            )
        )
    return int(links), int(codes), int(events or 0)


def test_the_lane_answers_as_the_thread_way(database: Database, api: TestClient) -> None:
    tenant = make_tenant(database)
    lane = database.express
    assert (lane is not None) == database.is_postgresql
    answers = []
    for way in ("lane", "threads"):
        database.express = lane if way == "lane" else None
        pool = _pool(database, tenant, 5, name=f"pool-{way}")
        short = _pool(database, tenant, 1, name=f"short-{way}")  # STATIC: refuses what it lacks
        grows = _pool(database, tenant, 1, name=f"grows-{way}", mode="AUTO_UPDATE")
        closed = _pool(database, tenant, 2, name=f"closed-{way}")
        closing = api.patch(
            f"/api/v1/campaigns/{closed.id}", json={"active": False}, headers=tenant.headers
        )
        assert closing.status_code == 200, closing.text
        seen = []
        for body in (
            {"campaign": pool.id, "count": 1},
            {"campaign": pool.name, "count": 3},
            {"campaign": short.id, "count": 2},
            {"campaign": grows.id, "count": 2},  # one from the pool, one minted for it
            {"campaign": closed.id, "count": 1},
            {"campaign": f"no-such-{way}", "count": 1},
        ):
            answer = api.post("/api/v1/publications", json=body, headers=tenant.headers)
            seen.append((answer.status_code, answer_shape(answer.text, way)))
        answers.append(seen)
        assert _published(database, pool) == (4, 4, 2)
        assert _published(database, short) == (0, 0, 0)
        assert _published(database, grows) == (2, 2, 2)
    database.express = lane
    assert answers[0] == answers[1]
    assert [status for status, _ in answers[0]] == [201, 201, 409, 201, 409, 404]


def test_many_loops_share_out_a_pool_code_by_code(
    backend: str, fresh_database: Callable[..., Database]
) -> None:
    """Four threads, each with its own event loop and 40 one-code publications in flight, on a
    pool of 100, each waiting its turn on the lane: every code is published once, 100
    publications are made on the lane, and the rest find the pool empty (the thread way would
    refuse them)."""
    if backend != "postgresql":
        pytest.skip("the express lane is PostgreSQL's")
    database = fresh_database(pool_size=20)
    tenant = make_tenant(database)
    pool = _pool(database, tenant, 100)
    body = PublishRequest.model_validate({"campaign": pool.id, "count": 1})
    made: list[str] = []
    lock = threading.Lock()

    async def attempt() -> None:
        while True:
            published = await publish_on_loop(database, tenant.caller, body)
            if published is not None:
                assert published.created
                assert published.record.count == 1
                with lock:
                    made.append(published.record.codes[0][1])
                continue
            with lock:  # None: the lane was busy, or the pool is spent
                if len(made) >= 100:
                    return
            await asyncio.sleep(0.001)

    def loop_of_attempts() -> None:
        async def all_of_them() -> None:
            await asyncio.gather(*(attempt() for _ in range(40)))

        asyncio.run(all_of_them())

    threads = [threading.Thread(target=loop_of_attempts) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(made) == len(set(made)) == 100
    assert _published(database, pool) == (100, 100, 100)
