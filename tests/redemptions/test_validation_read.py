"""A validation reads its voucher in one statement with no transaction of its own
(``Database.single_read``): the same answer as a read transaction gives, never a stale one, and
no transaction left open on the server.

These run on whole databases whose units of work really commit (``fresh_database``): the
``db`` fixture's connection, inside the test's transaction, takes the transactional way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, event, text

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import make_tenant
from tests.factories.vouchers import issue
from tests.support.wire import statements, statuses, transaction_open, wire
from voucherd.db.engine import Database
from voucherd.redemptions import service
from voucherd.redemptions.schemas import RedeemRequest, ValidateRequest, present_validation


@pytest.fixture
def database(fresh_database: Callable[..., Database]) -> Database:
    return fresh_database(pool_size=2)


def test_the_read_opens_no_transaction(database: Database, tmp_path: Path) -> None:
    tenant = make_tenant(database)
    voucher = issue(database, tenant, make_campaign(database, tenant, type="GIFT"), value=5000)
    body = ValidateRequest.model_validate({"code": voucher.voucher.code, "amount": 100})
    if database.is_postgresql:
        with wire(database, tmp_path / "trace") as seen:
            result = service.validate(database, tenant.caller, body)
        # One statement, no BEGIN before it, the connection idle after it.
        assert statements(seen) == ["SELECT 1"]
        assert statuses(seen) == {"I"}
    else:
        open_during: list[bool] = []

        def after(connection: Connection, *_: Any) -> None:
            open_during.append(transaction_open(connection))

        event.listen(database.engine, "after_cursor_execute", after)
        try:
            result = service.validate(database, tenant.caller, body)
        finally:
            event.remove(database.engine, "after_cursor_execute", after)
        assert open_during == [False]  # one statement, and no transaction around it
    assert result.valid


def test_a_committed_spend_is_seen_by_the_next_validation(database: Database) -> None:
    tenant = make_tenant(database)
    code = issue(
        database, tenant, make_campaign(database, tenant, type="GIFT"), value=5000
    ).voucher.code
    # The pool's connections are reused between the reads and the spends.
    for spent in range(1, 6):
        service.redeem(
            database, tenant.caller, RedeemRequest.model_validate({"code": code, "amount": 900})
        )
        result = service.validate(
            database,
            tenant.caller,
            ValidateRequest.model_validate({"code": code, "amount": 900}),
            show_record=False,
        )
        assert result.voucher is not None
        assert result.voucher["balance"] == 5000 - 900 * spent
        assert result.valid is (5000 - 900 * spent >= 900)


def test_the_pool_gives_units_of_work_their_transactions_back(database: Database) -> None:
    """A connection that served a read without a transaction serves the next unit of work
    inside one: its autocommit does not outlive the read."""
    tenant = make_tenant(database)
    code = issue(
        database, tenant, make_campaign(database, tenant, type="GIFT"), value=5000
    ).voucher.code
    for _ in range(3):  # more reads than the pool has connections
        service.validate(database, tenant.caller, ValidateRequest.model_validate({"code": code}))
    for _ in range(3):
        with database.unit_of_work(write=False) as session:
            session.execute(text("SELECT 1"))
            assert transaction_open(session.connection())


@pytest.mark.parametrize("show_record", [True, False])
@pytest.mark.parametrize(
    "body",
    [
        {"amount": 100},
        {"amount": 999_999},  # more than the balance
        {"order": {"amount": 1000}},
        {"code_suffix": "-nope"},  # no such voucher
    ],
)
def test_the_same_answer_as_a_read_transaction(
    database: Database, body: dict[str, Any], show_record: bool
) -> None:
    tenant = make_tenant(database)
    code = issue(
        database, tenant, make_campaign(database, tenant, type="GIFT"), value=5000
    ).voucher.code
    request = dict(body)
    code += request.pop("code_suffix", "")
    validate = ValidateRequest.model_validate({"code": code, **request})
    without = service.validate(database, tenant.caller, validate, show_record=show_record)
    with database.engine.connect() as connection:
        # Bound to a connection, single_read takes the transactional way (a read unit of work).
        bound = Database(
            database.engine, settings=database.settings, bind=connection, clock=database.clock
        )
        within = service.validate(bound, tenant.caller, validate, show_record=show_record)
    assert present_validation(without) == present_validation(within)
    if show_record and within.record is not None:
        assert without.record is not None
        assert without.record.voucher.code == within.record.voucher.code
        assert without.record.campaign.name == within.record.campaign.name
