"""The express lane (``db/express.py``) for issuing: on PostgreSQL an issue without an
Idempotency-Key that spends no limit runs its campaign read (the tenant's settings too, when
only the campaign asks for a delivery) and its one writing statement on the event loop, with
the answers, rows and refusals of the thread way. An issue spending a limit, or finding the lane
busy, is left to the thread way with nothing written.

On whole databases whose units of work really commit (``fresh_database``); on SQLite there is no
lane and the thread way answers everything.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import make_tenant
from tests.support.lanes import answer_shape, while_busy
from tests.support.rows import ISSUE_WRITES, count_rows
from voucherd.app import create_app
from voucherd.db.engine import Database
from voucherd.errors import Conflict
from voucherd.vouchers.issue import issue_on_loop
from voucherd.vouchers.schemas import IssueVoucher

WRITTEN = ISSUE_WRITES


@pytest.fixture
def database(fresh_database: Callable[..., Database]) -> Database:
    return fresh_database(pool_size=4)


@pytest.fixture
def api(database: Database) -> Iterator[TestClient]:
    with TestClient(create_app(database.settings, db=database)) as client:
        yield client


def test_the_lane_answers_as_the_thread_way(database: Database, api: TestClient) -> None:
    """The same requests, once on the lane and once with no lane: the same statuses, bodies
    (all but ids, codes, tokens and times) and rows written, refusals included."""
    tenant = make_tenant(database)
    lane = database.express
    assert (lane is not None) == database.is_postgresql
    answers = []
    written = []
    for way in ("lane", "threads"):
        database.express = lane if way == "lane" else None
        gift = make_campaign(
            database, tenant, name=f"gift-{way}", type="GIFT", default_value=100, max_value=9000
        )
        emails = make_campaign(database, tenant, name=f"emails-{way}", delivery_channel="email")
        budgeted = make_campaign(database, tenant, name=f"budget-{way}", budget=10_000)
        before = count_rows(database, tables=WRITTEN)
        seen = []
        for body in (
            {
                "campaign": gift.id,
                "value": 4200,
                "customer_ref": "cust-1",
                "holder": {"name": "Ann", "address": "1 High St", "postcode": "AB1 2CD"},
                "metadata": {"k": [1, 2]},
                "redemption_quantity": 3,
                "delivery": {"channel": "none"},
            },
            {"campaign": gift.name},
            {"campaign": gift.id, "code": f"SUMMER-{way}"},
            {"campaign": gift.id, "code": f"SUMMER-{way}"},  # taken: 409, nothing written
            {"campaign": gift.id, "value": 9001},  # over the campaign's max_value
            {"campaign": f"no-such-{way}"},
            # The campaign asks for email; the tenant has no provider (read on its own).
            {"campaign": emails.id, "recipient": "ann@example.com"},
            {"campaign": budgeted.id, "value": 2500},  # spends the budget: the thread way
        ):
            answer = api.post("/api/v1/vouchers", json=body, headers=tenant.headers)
            seen.append((answer.status_code, answer_shape(answer.text, way)))
        answers.append(seen)
        after = count_rows(database, tables=WRITTEN)
        written.append({table: after[table] - before[table] for table in WRITTEN})
    database.express = lane
    assert answers[0] == answers[1]
    assert [status for status, _ in answers[0]] == [201, 201, 201, 409, 422, 404, 422, 201]
    assert written[0] == written[1]
    assert written[0]["voucher"] == 4
    assert written[0]["delivery"] == 1
    if lane is not None:
        assert lane.connections == 1  # every request of the lane's turn took it, one at a time


def test_a_limit_or_a_busy_lane_leaves_the_issue_to_the_thread_way(database: Database) -> None:
    tenant = make_tenant(database)
    plain = make_campaign(database, tenant, type="GIFT", default_value=100)
    limited = make_campaign(database, tenant, type="GIFT", default_value=100, per_customer_limit=1)
    body = IssueVoucher.model_validate({"campaign": plain.id})
    if not database.is_postgresql:
        assert asyncio.run(issue_on_loop(database, tenant.caller, body)) is None
        return
    lane = database.express
    assert lane is not None
    nothing = count_rows(database, tables=WRITTEN)
    counted = IssueVoucher.model_validate({"campaign": limited.id, "customer_ref": "cust-1"})
    assert asyncio.run(issue_on_loop(database, tenant.caller, counted)) is None
    busy = while_busy(lane, lambda: issue_on_loop(database, tenant.caller, body))
    assert asyncio.run(busy) is None
    assert count_rows(database, tables=WRITTEN) == nothing
    record = asyncio.run(issue_on_loop(database, tenant.caller, body))
    assert record is not None
    assert record.voucher.balance == 100
    assert count_rows(database, tables=WRITTEN)["voucher"] == 1


def test_a_code_is_issued_once_from_many_loops_at_once(
    backend: str, fresh_database: Callable[..., Database]
) -> None:
    """Four threads, each with its own event loop and 30 issues in flight: half ask for the
    same code, half draw their own. The code is issued once (the rest refused as taken), every
    drawn code is distinct, and each voucher has its one ledger entry and event."""
    if backend != "postgresql":
        pytest.skip("the express lane is PostgreSQL's")
    database = fresh_database(pool_size=20)
    tenant = make_tenant(database)
    campaign = make_campaign(database, tenant, type="GIFT", default_value=100)
    same = IssueVoucher.model_validate({"campaign": campaign.id, "code": "ONLY-ONCE"})
    drawn = IssueVoucher.model_validate({"campaign": campaign.id})
    outcomes: Counter[str] = Counter()
    codes: list[str] = []
    lock = threading.Lock()

    async def attempt(body: IssueVoucher) -> None:
        while True:
            try:
                record = await issue_on_loop(database, tenant.caller, body)
            except Conflict as refused:
                with lock:
                    outcomes[str(refused.code)] += 1
                return
            if record is not None:
                with lock:
                    outcomes["issued"] += 1
                    codes.append(record.voucher.code)
                return
            await asyncio.sleep(0.001)  # the lane was busy: try again

    def loop_of_attempts() -> None:
        async def all_of_them() -> None:
            await asyncio.gather(*(attempt(same if i % 2 else drawn) for i in range(30)))

        asyncio.run(all_of_them())

    threads = [threading.Thread(target=loop_of_attempts) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert outcomes == Counter({"issued": 61, "duplicate_code": 59})
    assert len(set(codes)) == 61
    assert codes.count("ONLY-ONCE") == 1
    assert count_rows(database, tables=WRITTEN) == dict.fromkeys(WRITTEN, 0) | {
        "voucher": 61,
        "ledger_entry": 61,
        "voucher_event": 61,
    }
