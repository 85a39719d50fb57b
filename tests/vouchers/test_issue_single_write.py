"""Issuing one voucher without an Idempotency-Key, on PostgreSQL, when it spends no limit, runs
its campaign read and its one writing statement each as their own transaction
(``Database.single_write``): two statements, no ``BEGIN``/``COMMIT``, and the same answers, rows
and refusals as the transactional way, which SQLite, a request with an Idempotency-Key, a
Database bound to a connection and every issue that spends a limit (per customer, budget,
weekly value, a small code space's count) still take.

These run on whole databases whose units of work really commit (``fresh_database``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Connection, text

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.factories.vouchers import issue
from tests.support.clock import FakeClock
from tests.support.rows import ISSUE_WRITES, count_rows
from tests.support.wire import statements_seen
from voucherd.codes import generator
from voucherd.db.engine import Database
from voucherd.errors import Conflict, ErrorCode, InvalidInput, LimitReached
from voucherd.idempotency.service import IdempotencyClaim
from voucherd.vouchers import service
from voucherd.vouchers.issue import issue_voucher
from voucherd.vouchers.schemas import IssueVoucher, VoucherRecord, present_voucher

WRITTEN = ISSUE_WRITES


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def database(fresh_database: Callable[..., Database], clock: FakeClock) -> Database:
    return fresh_database(pool_size=2, clock=clock)


def _written(database: Database) -> dict[str, int]:
    return count_rows(database, tables=WRITTEN)


def _in_a_transaction(seen: list[tuple[str, bool]]) -> bool:
    """psycopg sends its BEGIN itself (no cursor event); SQLite's is ours, a statement."""
    return ("BEGIN", True) in seen or any(opened for _, opened in seen)


def _bound(database: Database, connection: Connection) -> Database:
    """The same database through one connection: the transactional way (writes_single off)."""
    bound = Database(
        database.engine, settings=database.settings, bind=connection, clock=database.clock
    )
    assert bound.writes_single is False
    return bound


def _issue_body(campaign: str, **fields: Any) -> IssueVoucher:
    return IssueVoucher.model_validate({"campaign": campaign, **fields})


class TestSingleWrite:
    def test_two_statements_and_no_transaction_on_postgresql(self, database: Database) -> None:
        tenant = make_tenant(database)
        campaign = make_campaign(database, tenant, type="GIFT", default_value=2500)
        with statements_seen(database) as seen:
            record = issue(database, tenant, campaign)
        assert (record.voucher.balance, record.voucher.campaign_id) == (2500, campaign.id)
        if database.is_postgresql:
            # The campaign read and the voucher-ledger-event statement; nothing left open.
            assert seen == [("SELECT", False), ("WITH", False)]
        else:
            assert database.writes_single is False
            assert ("BEGIN", True) in seen
        assert _written(database) == dict.fromkeys(WRITTEN, 0) | {
            "voucher": 1,
            "ledger_entry": 1,
            "voucher_event": 1,
        }

    def test_a_delivery_rides_in_the_same_statement(self, database: Database) -> None:
        tenant = make_tenant(database)
        campaign = make_campaign(database, tenant, type="GIFT", default_value=2500)
        with statements_seen(database) as seen:
            record = issue(database, tenant, campaign, delivery={"channel": "none"})
        assert record.delivery is not None
        if database.is_postgresql:
            assert seen == [("SELECT", False), ("WITH", False)]
        assert _written(database) == dict.fromkeys(WRITTEN, 0) | {
            "voucher": 1,
            "ledger_entry": 1,
            "voucher_event": 1,
            "delivery": 1,
            "delivery_event": 1,
        }

    def test_a_refused_automatic_delivery_writes_nothing(self, database: Database) -> None:
        """The campaign asks for email, the tenant has no provider: the settings are a second
        single read (PostgreSQL), and the refusal comes before any write."""
        tenant = make_tenant(database)
        campaign = make_campaign(database, tenant, type="GIFT", delivery_channel="email")
        with statements_seen(database) as seen, pytest.raises(InvalidInput) as refused:
            issue(database, tenant, campaign, recipient="ann@example.com")
        assert refused.value.code == ErrorCode.CHANNEL_NOT_CONFIGURED
        if database.is_postgresql:
            assert seen == [("SELECT", False), ("SELECT", False)]
        assert _written(database) == dict.fromkeys(WRITTEN, 0)

    def test_a_taken_code_is_redrawn_and_the_failed_attempt_leaves_nothing(
        self, database: Database, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The OS's randomness (not ours) hands out zeros first: the second issue's first code
        is the first issue's, its statement inserts nothing, and the redraw succeeds."""
        tenant = make_tenant(database)
        campaign = make_campaign(database, tenant, type="GIFT", default_value=100)
        monkeypatch.setattr(generator, "os", _ZerosFirst(calls=1))
        first = issue(database, tenant, campaign)
        monkeypatch.setattr(generator, "os", _ZerosFirst(calls=1))
        with statements_seen(database) as seen:
            second = issue(database, tenant, campaign)
        assert first.voucher.code != second.voucher.code
        if database.is_postgresql:
            assert seen == [("SELECT", False), ("WITH", False), ("WITH", False)]
        assert _written(database) == dict.fromkeys(WRITTEN, 0) | {
            "voucher": 2,
            "ledger_entry": 2,
            "voucher_event": 2,
        }


class _ZerosFirst:
    """Stands in for the ``os`` module in the code generator: zero bytes for the first
    ``calls`` draws (always the same code), the OS's own randomness after."""

    def __init__(self, *, calls: int) -> None:
        self.left = calls

    def urandom(self, size: int) -> bytes:
        if self.left > 0:
            self.left -= 1
            return bytes(size)
        return os.urandom(size)


class TestExplicitCode:
    def test_a_duplicate_code_is_refused_with_nothing_written(self, database: Database) -> None:
        tenant = make_tenant(database)
        campaign = make_campaign(database, tenant, type="GIFT", default_value=100)
        issue(database, tenant, campaign, code="SUMMER-2026", delivery={"channel": "none"})
        before = _written(database)
        with statements_seen(database) as seen, pytest.raises(Conflict) as refused:
            issue(database, tenant, campaign, code="SUMMER-2026", delivery={"channel": "none"})
        assert (refused.value.code, refused.value.field) == (ErrorCode.DUPLICATE_CODE, "code")
        if database.is_postgresql:
            assert seen == [("SELECT", False), ("WITH", False)]
        assert _written(database) == before


class TestSameAnswer:
    def test_the_same_answer_and_rows_as_the_transactional_way(self, database: Database) -> None:
        """Issue alike, once per way: the answers, the vouchers read back and their rows agree."""
        tenant = make_tenant(database)
        campaign = make_campaign(database, tenant, type="GIFT", default_value=100, max_value=9000)
        fields = {
            "value": 4200,
            "customer_ref": "cust-1",
            "holder": {"name": "Ann", "address": "1 High St", "postcode": "AB1 2CD"},
            "category": "thanks",
            "additional_info": "note",
            "metadata": {"k": [1, 2]},
            "redemption_quantity": 3,
            "delivery": {"channel": "none"},
        }
        single = issue_voucher(database, tenant.caller, _issue_body(campaign.id, **fields))
        with database.engine.connect() as connection:
            transactional = issue_voucher(
                _bound(database, connection), tenant.caller, _issue_body(campaign.id, **fields)
            )
            connection.commit()
        answers = [_answer(database, record) for record in (single, transactional)]
        read_back = [
            _answer(database, service.get_voucher(database, tenant.caller, record.voucher.id))
            for record in (single, transactional)
        ]
        assert answers[0] == answers[1]
        assert read_back[0] == read_back[1]
        assert [_rows_of(database, r.voucher.id) for r in (single, transactional)] == [
            (1, 1, 1, 1)
        ] * 2


def _answer(database: Database, record: VoucherRecord) -> dict[str, Any]:
    shown = present_voucher(record, now=database.now(), base_url="https://v.example")
    for varying in ("id", "code", "page_url", "assets", "publish"):
        shown.pop(varying)
    return shown


def _rows_of(database: Database, voucher_id: str) -> tuple[int, int, int, int]:
    """The voucher's ISSUE ledger entries, issued events, deliveries and delivery events."""
    with database.unit_of_work(write=False) as session:
        row = session.execute(
            text(
                "SELECT (SELECT count(*) FROM ledger_entry WHERE voucher_id = :v AND kind = "
                "'ISSUE'), (SELECT count(*) FROM voucher_event WHERE voucher_id = :v AND kind = "
                "'issued'), (SELECT count(*) FROM delivery WHERE voucher_id = :v), "
                "(SELECT count(*) FROM delivery_event e JOIN delivery d ON d.id = e.delivery_id "
                "WHERE d.voucher_id = :v)"
            ),
            {"v": voucher_id},
        ).one()
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


TINY_CODE_SPACE = {"length": 2, "charset": "0123456789"}  # 100 codes, of which 1 may be used


class TestLimitsKeepTheTransaction:
    """Each limit is spent by a statement of its own: the issue stays one unit of work, and the
    refusal leaves nothing (not even the limit's own spend)."""

    def test_per_customer_limit(self, database: Database) -> None:
        tenant = make_tenant(database)
        campaign = make_campaign(database, tenant, type="GIFT", per_customer_limit=1)
        self._issued_in_a_transaction(database, tenant, campaign.id, customer_ref="bob")
        self._refused(database, tenant, campaign.id, ErrorCode.CUSTOMER_LIMIT_REACHED, "bob")

    def test_campaign_budget(self, database: Database) -> None:
        tenant = make_tenant(database)
        campaign = make_campaign(database, tenant, type="GIFT", default_value=600, budget=1000)
        self._issued_in_a_transaction(database, tenant, campaign.id)
        self._refused(database, tenant, campaign.id, ErrorCode.CAMPAIGN_BUDGET_EXHAUSTED)

    def test_weekly_value_limit(self, database: Database) -> None:
        tenant = make_tenant(database, weekly_value_limit=1000)
        campaign = make_campaign(database, tenant, type="GIFT", default_value=600)
        self._issued_in_a_transaction(database, tenant, campaign.id)
        self._refused(database, tenant, campaign.id, ErrorCode.WEEKLY_VALUE_LIMIT_REACHED)

    def test_small_code_space(self, database: Database) -> None:
        tenant = make_tenant(database)
        campaign = make_campaign(database, tenant, type="GIFT", code_config=TINY_CODE_SPACE)
        self._issued_in_a_transaction(database, tenant, campaign.id)
        self._refused(database, tenant, campaign.id, ErrorCode.CODE_SPACE_EXHAUSTED)

    def test_a_limit_refused_after_a_customer_count_leaves_the_count(
        self, database: Database
    ) -> None:
        """The customer is counted, then the budget refuses: the count rolls back with it."""
        tenant = make_tenant(database)
        campaign = make_campaign(
            database, tenant, type="GIFT", default_value=600, budget=1000, per_customer_limit=5
        )
        self._issued_in_a_transaction(database, tenant, campaign.id, customer_ref="bob")
        self._refused(database, tenant, campaign.id, ErrorCode.CAMPAIGN_BUDGET_EXHAUSTED, "bob")
        with database.unit_of_work(write=False) as session:
            counted = session.scalar(text("SELECT issued_count FROM campaign_customer"))
        assert counted == 1

    def test_an_idempotency_key_keeps_the_transaction(self, database: Database) -> None:
        tenant = make_tenant(database)
        campaign = make_campaign(database, tenant, type="GIFT", default_value=100)
        claim = IdempotencyClaim.of("key-1", "POST", "/api/v1/vouchers", b"{}")
        with statements_seen(database) as seen:
            issue_voucher(database, tenant.caller, _issue_body(campaign.id), idem=claim)
        assert _in_a_transaction(seen)
        assert count_rows(database, tables=("voucher", "idempotency_record")) == {
            "voucher": 1,
            "idempotency_record": 1,
        }

    @staticmethod
    def _issued_in_a_transaction(
        database: Database, tenant: Tenant, campaign: str, customer_ref: str | None = None
    ) -> None:
        with statements_seen(database) as seen:
            issue(database, tenant, campaign, customer_ref=customer_ref)
        assert _in_a_transaction(seen)

    @staticmethod
    def _refused(
        database: Database,
        tenant: Tenant,
        campaign: str,
        code: ErrorCode,
        customer_ref: str | None = None,
    ) -> None:
        before = _written(database)
        with pytest.raises(LimitReached) as refused:
            issue(database, tenant, campaign, customer_ref=customer_ref)
        assert refused.value.code == code
        assert _written(database) == before
