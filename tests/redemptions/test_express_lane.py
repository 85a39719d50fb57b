"""The express lane (``db/express.py``): on PostgreSQL a redemption without an Idempotency-Key
runs on the event loop, on an asyncio connection of psycopg's, with the answers, rows and
refusals the thread way gives; when the lane has no connection free, the thread way answers.

On whole databases whose units of work really commit (``fresh_database``): the lane exists only
on an engine. On SQLite there is no lane and the thread way answers everything.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.factories.vouchers import issue
from tests.support.lanes import while_busy
from voucherd.app import create_app
from voucherd.db.engine import Database
from voucherd.db.express import APPLICATION_NAME, ExpressLane
from voucherd.errors import NotRedeemable
from voucherd.redemptions import service
from voucherd.redemptions.schemas import RedeemRequest, ValidateRequest
from voucherd.vouchers.models import LedgerEntry, Voucher

_VARYING = re.compile(r'"(id|voucher_id|code|created_at)":"[^"]*"')


@pytest.fixture
def database(fresh_database: Callable[..., Database]) -> Database:
    return fresh_database(pool_size=4)


@pytest.fixture
def api(database: Database) -> Iterator[TestClient]:
    with TestClient(create_app(database.settings, db=database)) as client:
        yield client


def _lane(database: Database) -> ExpressLane:
    assert database.express is not None
    return database.express


def _balance_and_ledger(database: Database, code: str) -> tuple[int | None, int, int]:
    with database.unit_of_work(write=False) as session:
        voucher_id, balance = session.execute(
            select(Voucher.id, Voucher.balance).where(Voucher.code == code)
        ).one()
        total, entries = session.execute(
            select(func.coalesce(func.sum(LedgerEntry.delta), 0), func.count()).where(
                LedgerEntry.voucher_id == voucher_id
            )
        ).one()
    return balance, int(total), int(entries)


def _ask(api: TestClient, tenant: Tenant, body: dict[str, Any]) -> tuple[int, str]:
    answer = api.post("/api/v1/redemptions", json=body, headers=tenant.headers)
    return answer.status_code, _VARYING.sub(r'"\1":"-"', answer.text)


def test_the_lane_answers_as_the_thread_way(database: Database, api: TestClient) -> None:
    """The same requests on twin cards, once on the lane and once with no lane (the thread
    way, as on SQLite): the same statuses, bodies and rows, refusals included."""
    tenant = make_tenant(database)
    gift = make_campaign(database, tenant, type="GIFT")
    discount = make_campaign(database, tenant, type="DISCOUNT")
    lane = database.express
    if database.is_postgresql:
        assert lane is not None
    else:
        assert lane is None  # SQLite: the thread way answers both times
    requests: list[Callable[[str, str], dict[str, Any]]] = [
        lambda card, _: {"code": card, "amount": 1200, "metadata": {"till": 7}},
        lambda card, _: {"code": card, "order": {"amount": 900, "reference": "o-1"}},
        lambda card, _: {"code": card, "amount": 999_999},  # more than the balance
        lambda card, _: {"code": card.lower(), "amount": 1},  # as typed: found all the same
        lambda _, unknown: {"code": unknown, "amount": 1},
        lambda _, coupon: {"code": coupon, "order": {"amount": 2000}},  # a DISCOUNT: no spend
    ]
    answers: list[list[tuple[int, str]]] = []
    for way in ("lane", "threads"):
        database.express = lane if way == "lane" else None
        card = issue(database, tenant, gift, value=5000).voucher.code
        coupon = issue(database, tenant, discount).voucher.code
        seen = []
        for i, request in enumerate(requests):
            other = "NOSUCHCODE42" if i == 4 else coupon
            seen.append(_ask(api, tenant, request(card, other)))
        answers.append(seen)
        assert _balance_and_ledger(database, card) == (2899, 2899, 4)  # opening + 3 spends
    database.express = lane
    assert answers[0] == answers[1]
    assert [status for status, _ in answers[0]] == [201, 201, 409, 201, 404, 201]
    if lane is not None:
        assert lane.connections == 1  # every request of the lane's turn took it, one at a time


def test_a_busy_lane_leaves_the_redemption_to_the_thread_way(
    fresh_database: Callable[..., Database],
) -> None:
    database = fresh_database(pool_size=2)  # a lane of one connection
    tenant = make_tenant(database)
    card = issue(database, tenant, make_campaign(database, tenant), value=5000).voucher.code
    body = RedeemRequest.model_validate({"code": card, "amount": 100})
    if not database.is_postgresql:
        assert asyncio.run(service.redeem_on_loop(database, tenant.caller, body)) is None
        return
    busy = while_busy(
        _lane(database), lambda: service.redeem_on_loop(database, tenant.caller, body)
    )
    assert asyncio.run(busy) is None
    assert _balance_and_ledger(database, card) == (5000, 5000, 1)  # nothing done
    record = asyncio.run(service.redeem_on_loop(database, tenant.caller, body))
    assert record is not None
    assert record.voucher_balance == 4900
    assert _balance_and_ledger(database, card) == (4900, 4900, 2)


def test_one_card_is_never_overspent_from_many_loops_at_once(
    backend: str, fresh_database: Callable[..., Database]
) -> None:
    """Four threads, each with its own event loop and 60 redemptions in flight on one card of
    150: the lane's 10 connections are shared by all, a redemption finding none free waits its turn.
    Exactly 150 succeed, the rest are refused, and the ledger sums to the balance, 0."""
    if backend != "postgresql":
        pytest.skip("the express lane is PostgreSQL's")
    database = fresh_database(pool_size=20)
    tenant = make_tenant(database)
    card = issue(database, tenant, make_campaign(database, tenant), value=150).voucher.code
    body = RedeemRequest.model_validate({"code": card, "amount": 1})
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    async def attempt() -> str:
        while True:
            try:
                record = await service.redeem_on_loop(database, tenant.caller, body)
            except NotRedeemable as refused:
                return str(refused.code)
            if record is not None:
                assert record.voucher_balance is not None
                assert record.voucher_balance >= 0
                return "redeemed"
            await asyncio.sleep(0.001)  # the lane was busy: try again

    def loop_of_attempts() -> None:
        async def all_of_them() -> list[str]:
            return await asyncio.gather(*(attempt() for _ in range(60)))

        results = asyncio.run(all_of_them())
        with lock:
            outcomes.update(results)

    threads = [threading.Thread(target=loop_of_attempts) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    # Once the balance is spent the card is REDEEMED: the rest are refused as such.
    assert outcomes == Counter({"redeemed": 150, "voucher_redeemed": 90})
    assert _balance_and_ledger(database, card) == (0, 0, 151)
    assert _lane(database).connections <= 10


def test_a_lost_lane_connection_is_a_503_and_the_next_request_a_new_one(
    database: Database, api: TestClient
) -> None:
    if not database.is_postgresql:
        pytest.skip("only a database server can drop a connection")
    tenant = make_tenant(database)
    card = issue(database, tenant, make_campaign(database, tenant), value=5000).voucher.code
    assert _ask(api, tenant, {"code": card, "amount": 1})[0] == 201
    lane = _lane(database)
    assert lane.connections == 1
    url = database.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = %s",
            (APPLICATION_NAME,),
        ).fetchall()
    assert len(killed) == 1
    outage = api.post(
        "/api/v1/redemptions", json={"code": card, "amount": 1}, headers=tenant.headers
    )
    assert outage.status_code == 503, outage.text
    assert outage.json()["code"] == "database_unavailable"  # as the thread way answers it
    assert outage.headers["Retry-After"] == "1"
    assert lane.connections == 0  # the lost one was closed, not lent again
    assert _ask(api, tenant, {"code": card, "amount": 1})[0] == 201
    assert _balance_and_ledger(database, card) == (4998, 4998, 3)


def test_dispose_closes_the_lanes_connections(database: Database, api: TestClient) -> None:
    if not database.is_postgresql:
        pytest.skip("the express lane is PostgreSQL's")
    tenant = make_tenant(database)
    card = issue(database, tenant, make_campaign(database, tenant), value=5000).voucher.code
    assert _ask(api, tenant, {"code": card, "amount": 1})[0] == 201
    url = database.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def backends() -> int:
        with psycopg.connect(url) as admin:
            row = admin.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
        assert row is not None
        return int(row[0])

    assert backends() >= 1
    database.dispose()
    assert _lane(database).connections == 0
    assert backends() == 0


def test_a_lane_that_cannot_connect_raises_the_outage_and_keeps_no_slot(
    backend: str, database: Database
) -> None:
    if backend != "postgresql":
        pytest.skip("the express lane is PostgreSQL's")
    nowhere = database.engine.url.set(database="voucherd_no_such_database")
    lane = ExpressLane(nowhere, database.engine.dialect, size=1)

    async def take() -> None:
        async with lane.connection():
            pass

    for _ in range(2):  # the failed attempt gave its slot back: the second one tries too
        with pytest.raises(DBAPIError) as refused:
            asyncio.run(take())
        assert refused.value.connection_invalidated  # answered as an outage: 503
        assert lane.connections == 0


def test_a_process_holds_at_most_one_and_a_half_pools(database: Database) -> None:
    """README.md's promise (Operations, Connections): the pool and half as many again, which
    on PostgreSQL are the lane's, elsewhere the pool's overflow."""
    settings = database.settings.model_copy(update={"db_pool_size": 6})
    made = Database.from_settings(settings)
    try:
        pool: Any = made.engine.pool
        assert pool.size() == 6
        if made.is_postgresql:
            assert pool._max_overflow == 0
            assert _lane(made).size == 3
        else:
            assert pool._max_overflow == 3
            assert made.express is None
    finally:
        made.dispose()


def test_validations_on_the_lane_answer_as_on_the_thread_way(
    database: Database, api: TestClient
) -> None:
    """Validations (70% of a till's requests) on the lane and with no lane: the same verdicts
    and bodies, refusals included, and nothing spent either way."""
    tenant = make_tenant(database)
    card = issue(database, tenant, make_campaign(database, tenant, type="GIFT"), value=5000)
    coupon = issue(database, tenant, make_campaign(database, tenant, type="DISCOUNT"))
    code, coupon_code = card.voucher.code, coupon.voucher.code
    requests: list[dict[str, Any]] = [
        {"code": code, "amount": 1200},
        {"code": code, "amount": 999_999},  # more than the balance
        {"code": code.lower(), "order": {"amount": 900}},  # as typed: found all the same
        {"code": "NOSUCHCODE42", "amount": 1},
        {"code": coupon_code, "order": {"amount": 2000}},
        {"code": coupon_code},  # a DISCOUNT with no order
    ]
    lane = database.express
    answers: list[list[tuple[int, str]]] = []
    for way in ("lane", "threads"):
        database.express = lane if way == "lane" else None
        seen = []
        for body in requests:
            answer = api.post("/api/v1/validations", json=body, headers=tenant.headers)
            seen.append((answer.status_code, answer.text))
        answers.append(seen)
    database.express = lane
    assert answers[0] == answers[1]
    verdicts = [json.loads(text)["valid"] for _, text in answers[0]]
    assert verdicts == [True, False, True, False, True, True]
    assert _balance_and_ledger(database, code) == (5000, 5000, 1)  # nothing spent
    if database.is_postgresql:
        assert lane is not None
        assert lane.connections == 1


def test_a_busy_lane_leaves_the_validation_to_the_thread_way(database: Database) -> None:
    tenant = make_tenant(database)
    card = issue(database, tenant, make_campaign(database, tenant), value=5000).voucher.code
    body = ValidateRequest.model_validate({"code": card, "amount": 100})
    if not database.is_postgresql:
        assert asyncio.run(service.validate_on_loop(database, tenant.caller, body)) is None
        return
    lane = _lane(database)
    busy = while_busy(lane, lambda: service.validate_on_loop(database, tenant.caller, body))
    assert asyncio.run(busy) is None
    result = asyncio.run(service.validate_on_loop(database, tenant.caller, body))
    assert result is not None
    assert result.valid
