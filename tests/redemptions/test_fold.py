"""A redemption's lookup and spend folded into one statement (``steps._Fold``,
``sql.find_and_debit_on_postgresql``): on PostgreSQL the native answer (no whole voucher) first
tries the statement that judges, spends and records at once, and falls back to judging the
row in Python when it spent nothing.

The fold is only worth having if it never answers differently: every kind of voucher, in every
state and window, for every shape of request, is redeemed on twin vouchers once through the
native answer and once through the whole-voucher answer (which never folds), and the answers
and the rows left must be the same. On SQLite nothing folds and both ways must agree all the
same.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.factories.vouchers import issue
from tests.support.clock import FakeClock
from tests.support.wire import statements, statuses, wire
from voucherd.campaigns.schemas import CampaignUpdate
from voucherd.campaigns.service import update_campaign
from voucherd.db.engine import Database
from voucherd.errors import DomainError
from voucherd.redemptions import service
from voucherd.redemptions.models import Redemption
from voucherd.redemptions.schemas import RedeemRequest
from voucherd.vouchers.models import LedgerEntry, Voucher, VoucherEvent
from voucherd.vouchers.service import cancel_voucher, disable_voucher

# The clock starts on Monday 2026-06-15 at 12:00 UTC (Sunday-first day 1).
MONDAY = 1


def _outcome(db: Database, tenant: Tenant, body: RedeemRequest, *, fold: bool) -> tuple[Any, ...]:
    """What redeeming answers: the record's figures, or the refusal's every part."""
    try:
        record = service.redeem(db, tenant.caller, body, show_voucher=not fold)
    except DomainError as refused:
        return ("refused", type(refused).__name__, refused.code, refused.field, refused.detail,
                refused.extra)  # fmt: skip
    redemption = record.redemption
    return (
        "redeemed",
        redemption.amount,
        redemption.order_amount,
        redemption.order_reference,
        redemption.store_ref,
        redemption.metadata_,
        record.code == body.code,
        record.voucher_state,
        record.voucher_balance,
        record.redeemed_quantity,
        record.currency,
        record.voucher_type,
    )


def _rows(db: Database, code: str) -> tuple[Any, ...]:
    """The voucher as it was left, its ledger, its redemptions and its events."""
    with db.unit_of_work(write=False) as session:
        voucher = session.execute(
            select(Voucher.id, Voucher.balance, Voucher.state, Voucher.redeemed_quantity).where(
                Voucher.code == code
            )
        ).one()
        ledger = session.execute(
            select(func.count(), func.coalesce(func.sum(LedgerEntry.delta), 0)).where(
                LedgerEntry.voucher_id == voucher.id
            )
        ).one()
        redemptions = session.execute(
            select(Redemption.amount, Redemption.status, Redemption.metadata_).where(
                Redemption.voucher_id == voucher.id
            )
        ).all()
        events = session.execute(
            select(VoucherEvent.kind, VoucherEvent.data).where(
                VoucherEvent.voucher_id == voucher.id
            )
        ).all()
    redemption_events = [
        {**data, "redemption_id": "-"} if kind == "redeemed" else data for kind, data in events
    ]
    return (
        tuple(voucher[1:]),
        tuple(ledger),
        sorted(map(tuple, redemptions), key=repr),
        sorted(zip((kind for kind, _ in events), map(repr, redemption_events), strict=True)),
    )


Setup = Callable[[Database, Tenant, str, FakeClock], None]


def _nothing(db: Database, tenant: Tenant, code: str, clock: FakeClock) -> None:
    pass


def _disable(db: Database, tenant: Tenant, code: str, clock: FakeClock) -> None:
    disable_voucher(db, tenant.caller, code)


def _cancel(db: Database, tenant: Tenant, code: str, clock: FakeClock) -> None:
    cancel_voucher(db, tenant.caller, code)


def _spend_once(db: Database, tenant: Tenant, code: str, clock: FakeClock) -> None:
    body = RedeemRequest.model_validate({"code": code, "order": {"amount": 4000}})
    service.redeem(db, tenant.caller, body)


def _past_expiry(db: Database, tenant: Tenant, code: str, clock: FakeClock) -> None:
    clock.advance(hours=2)


DAILY_HOUR = {"duration": "PT1H", "interval": "P1D"}

# name: (campaign fields, voucher fields relative to now, what happens after issuing)
SCENARIOS: dict[str, tuple[dict[str, Any], Callable[[Any], dict[str, Any]], Setup]] = {
    "plain": ({}, lambda now: {}, _nothing),
    "in its dates": (
        {},
        lambda now: {"start_date": now - timedelta(days=1), "expiration_date": now + timedelta(1)},
        _nothing,
    ),
    "not started": ({}, lambda now: {"start_date": now + timedelta(hours=1)}, _nothing),
    "expired": ({}, lambda now: {"expiration_date": now + timedelta(hours=1)}, _past_expiry),
    "disabled": ({}, lambda now: {}, _disable),
    "cancelled": ({}, lambda now: {}, _cancel),
    "partly spent": ({}, lambda now: {}, _spend_once),
    "one use, used": ({"redemption_quantity": 1}, lambda now: {}, _spend_once),
    "two uses, one used": ({"redemption_quantity": 2}, lambda now: {}, _spend_once),
    "on its day": ({"validity_day_of_week": [MONDAY]}, lambda now: {}, _nothing),
    "not its day": ({"validity_day_of_week": [MONDAY + 1]}, lambda now: {}, _nothing),
    "in its hours": (
        {"validity_hours": {"daily": [{"start_time": "11:00", "expiration_time": "13:00"}]}},
        lambda now: {},
        _nothing,
    ),
    "out of its hours": (
        {"validity_hours": {"daily": [{"start_time": "13:00", "expiration_time": "14:00"}]}},
        lambda now: {},
        _nothing,
    ),
    # Windows of an hour a day from the campaign's start, 11:30 and 10:00 (the clock: 12:00).
    "in its timeframe": (
        {"validity_timeframe": DAILY_HOUR, "start_date": "2026-06-01T11:30:00Z"},
        lambda now: {},
        _nothing,
    ),
    "out of its timeframe": (
        {"validity_timeframe": DAILY_HOUR, "start_date": "2026-06-01T10:00:00Z"},
        lambda now: {},
        _nothing,
    ),
}

REQUESTS: list[dict[str, Any]] = [
    {"amount": 700, "store_ref": "till-1", "metadata": {"till": 1}},
    {"amount": 5000},  # the whole opening value
    {"amount": 6000},  # more than it holds
    {"order": {"amount": 1200, "reference": "o-1"}},
    {"order": {"amount": 9000}},  # more than it holds: as much as is left
    {"amount": 300, "order": {"amount": 1200}},
    {},  # neither: a CASH voucher's whole value, an error for the others
]


@pytest.mark.parametrize(
    ("kind", "scenario"),
    [
        (kind, scenario)
        for kind in ("GIFT", "CASH", "LOYALTY", "DISCOUNT")
        for scenario in SCENARIOS
        # a CASH voucher is paid out once: no CASH campaign allows two uses
        if not (kind == "CASH" and scenario == "two uses, one used")
    ],
)
def test_the_folded_way_answers_as_the_judged_way(
    db: Database, clock: FakeClock, kind: str, scenario: str
) -> None:
    tenant = make_tenant(db)
    campaign_fields, voucher_fields, after_issue = SCENARIOS[scenario]
    value = {} if kind == "DISCOUNT" else {"default_value": 5000}
    campaign = make_campaign(db, tenant, type=kind, timezone="UTC", **value, **campaign_fields)
    redeemed_any = False
    for request in REQUESTS:
        twins = []
        for _ in range(2):
            code = issue(db, tenant, campaign, **voucher_fields(clock())).voucher.code
            twins.append(code)
        for code in twins:
            after_issue(db, tenant, code, clock)
        answers = [
            _outcome(db, tenant, RedeemRequest.model_validate({"code": code, **request}), fold=f)
            for code, f in zip(twins, (True, False), strict=True)
        ]
        assert answers[0] == answers[1], request
        assert _rows(db, twins[0]) == _rows(db, twins[1]), request
        redeemed_any = redeemed_any or answers[0][0] == "redeemed"
    usable = ["plain", "in its dates", "on its day", "in its hours", "in its timeframe"]
    if kind != "CASH":  # a CASH voucher is used up by its first redemption
        usable += ["partly spent", "two uses, one used"]
    assert redeemed_any is (scenario in usable)


def test_a_campaign_switched_off_after_issuing_refuses_alike(db: Database) -> None:
    tenant = make_tenant(db)
    campaign = make_campaign(db, tenant, type="GIFT")
    twins = [issue(db, tenant, campaign).voucher.code for _ in range(2)]
    update_campaign(db, tenant.caller, campaign.id, CampaignUpdate(active=False))
    answers = [
        _outcome(db, tenant, RedeemRequest(code=code, amount=100), fold=f)
        for code, f in zip(twins, (True, False), strict=True)
    ]
    assert answers[0] == answers[1]
    assert answers[0][2] == "campaign_inactive"


@pytest.fixture
def database(fresh_database: Callable[..., Database]) -> Database:
    return fresh_database(pool_size=2)


def test_one_statement_and_no_transaction_on_postgresql(database: Database, tmp_path: Path) -> None:
    """The native answer of a plain redemption is one round trip on PostgreSQL; so is a refusal
    the rules give (Python judges the row the statement answered) and an unknown code."""
    if not database.is_postgresql:
        pytest.skip("only PostgreSQL folds the lookup into the spend")
    tenant = make_tenant(database)
    code = issue(database, tenant, make_campaign(database, tenant), value=5000).voucher.code
    body = RedeemRequest(code=code, amount=700)
    with wire(database, tmp_path / "trace") as seen_on_wire:
        record = service.redeem(database, tenant.caller, body, show_voucher=False)
    assert statements(seen_on_wire) == ["SELECT 1"]
    assert statuses(seen_on_wire) == {"I"}
    assert (record.voucher_balance, record.redemption.amount) == (4300, 700)
    too_much = RedeemRequest(code=code, amount=6000)
    with wire(database, tmp_path / "trace-2") as seen_on_wire, pytest.raises(DomainError) as no:
        service.redeem(database, tenant.caller, too_much, show_voucher=False)
    assert no.value.code == "insufficient_balance"
    assert statements(seen_on_wire) == ["SELECT 1"]  # the row, judged in Python: no spend
    unknown = RedeemRequest(code="NOSUCHCODE42", amount=1)
    with wire(database, tmp_path / "trace-3") as seen_on_wire, pytest.raises(DomainError) as miss:
        service.redeem(database, tenant.caller, unknown, show_voucher=False)
    assert miss.value.code == "not_found"
    assert statements(seen_on_wire) == ["SELECT 0"]  # no row: no second statement
