"""A redemption without an Idempotency-Key, on PostgreSQL, runs its lookup and its spend each as
their own transaction (``Database.single_write``): two statements, no ``BEGIN``/``COMMIT``, and
the same answers, rows and refusals as the transactional way, which SQLite, a request with an
Idempotency-Key and a Database bound to a connection still take.

These run on whole databases whose units of work really commit (``fresh_database``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import make_tenant
from tests.factories.vouchers import issue
from tests.support.wire import statements, statements_seen, statuses, wire
from voucherd.db.engine import Database
from voucherd.errors import NotRedeemable
from voucherd.idempotency.service import IdempotencyClaim
from voucherd.redemptions import service
from voucherd.redemptions.models import Redemption
from voucherd.redemptions.schemas import RedeemRequest, present_redemption
from voucherd.vouchers.models import LedgerEntry, Voucher, VoucherEvent


@pytest.fixture
def database(fresh_database: Callable[..., Database]) -> Database:
    return fresh_database(pool_size=2)


def _card(database: Database, value: int = 5000) -> tuple[Any, str]:
    tenant = make_tenant(database)
    voucher = issue(database, tenant, make_campaign(database, tenant, type="GIFT"), value=value)
    return tenant, voucher.voucher.code


def _rows(database: Database, code: str) -> tuple[int | None, int, int, int]:
    """The card's balance and its redemptions, redemption ledger entries and redeemed events."""
    with database.unit_of_work(write=False) as session:
        voucher_id, balance = session.execute(
            select(Voucher.id, Voucher.balance).where(Voucher.code == code)
        ).one()
        redemptions = session.scalar(
            select(func.count()).where(Redemption.voucher_id == voucher_id)
        )
        entries = session.scalar(
            select(func.count()).where(
                LedgerEntry.voucher_id == voucher_id, LedgerEntry.kind == "REDEMPTION"
            )
        )
        events = session.scalar(
            select(func.count()).where(
                VoucherEvent.voucher_id == voucher_id, VoucherEvent.kind == "redeemed"
            )
        )
    return balance, int(redemptions or 0), int(entries or 0), int(events or 0)


def test_two_statements_and_no_transaction_on_postgresql(
    database: Database, tmp_path: Path
) -> None:
    tenant, code = _card(database)
    body = RedeemRequest.model_validate({"code": code, "amount": 700})
    if database.is_postgresql:
        with wire(database, tmp_path / "trace") as seen_on_wire:
            record = service.redeem(database, tenant.caller, body)
        # The lookup, then the spend-and-record statement (a CTE: its tag is its SELECT's),
        # with no BEGIN or COMMIT and the connection idle, not in a transaction, after each.
        assert statements(seen_on_wire) == ["SELECT 1", "SELECT 1"]
        assert statuses(seen_on_wire) == {"I"}
    else:
        assert database.writes_single is False
        with statements_seen(database) as seen:
            record = service.redeem(database, tenant.caller, body)
        assert ("BEGIN", True) in seen
    assert record.voucher_balance == 4300
    assert _rows(database, code) == (4300, 1, 1, 1)


def test_a_refused_spend_writes_nothing_and_names_the_balance(database: Database) -> None:
    tenant, code = _card(database, value=500)
    with pytest.raises(NotRedeemable) as refused:
        service.redeem(
            database, tenant.caller, RedeemRequest.model_validate({"code": code, "amount": 501})
        )
    assert refused.value.field == "amount"
    assert _rows(database, code) == (500, 0, 0, 0)


def test_the_same_answer_as_the_transactional_way(database: Database) -> None:
    """Spend two cards alike, one per way: the answers and the rows agree."""
    tenant = make_tenant(database)
    campaign = make_campaign(database, tenant, type="GIFT")
    codes = [issue(database, tenant, campaign, value=5000).voucher.code for _ in range(2)]
    answers = []
    for way, code in zip(("single", "transaction"), codes, strict=True):
        body = RedeemRequest.model_validate(
            {"code": code, "order": {"amount": 1200, "reference": "o-1"}, "metadata": {"k": 1}}
        )
        if way == "single":
            record = service.redeem(database, tenant.caller, body)
        else:
            with database.engine.connect() as connection:
                bound = Database(
                    database.engine,
                    settings=database.settings,
                    bind=connection,
                    clock=database.clock,
                )
                assert bound.writes_single is False
                record = service.redeem(bound, tenant.caller, body)
                connection.commit()
        shown = present_redemption(record)
        for varying in ("id", "created_at", "voucher_id", "code"):
            shown.pop(varying, None)
        answers.append(shown)
    assert answers[0] == answers[1]
    assert [_rows(database, code) for code in codes] == [(3800, 1, 1, 1)] * 2


def test_an_idempotency_key_keeps_the_transaction(database: Database, tmp_path: Path) -> None:
    tenant, code = _card(database)
    body = RedeemRequest.model_validate({"code": code, "amount": 100})
    claim = IdempotencyClaim.of("key-1", "POST", "/api/v1/redemptions", b'{"amount":100}')
    if database.is_postgresql:
        with wire(database, tmp_path / "trace") as seen_on_wire:
            service.redeem(database, tenant.caller, body, idem=claim)
        assert seen_on_wire[0].startswith('query "BEGIN')
        assert "T" in statuses(seen_on_wire)
        assert seen_on_wire[-3:] == ['query "COMMIT"', "COMMIT", "ready I"]
    else:
        with statements_seen(database) as seen:
            service.redeem(database, tenant.caller, body, idem=claim)
        assert ("BEGIN", True) in seen
    assert _rows(database, code) == (4900, 1, 1, 1)
