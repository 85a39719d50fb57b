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

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import select, text

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
from voucherd.redemptions.schemas import RedeemRequest, RedemptionRecord
from voucherd.vouchers.models import Voucher
from voucherd.vouchers.service import cancel_voucher, disable_voucher

# The clock starts on Monday 2026-06-15 at 12:00 UTC (Sunday-first day 1).
MONDAY = 1


def _outcome(db: Database, tenant: Tenant, body: RedeemRequest, *, fold: bool) -> tuple[Any, ...]:
    """What redeeming answers: the record's figures, or the refusal's every part."""
    try:
        record = service.redeem(db, tenant.caller, body, show_voucher=not fold)
    except DomainError as refused:
        return _refusal(refused)
    return _answer(body, record)


def _outcome_on_loop(db: Database, tenant: Tenant, body: RedeemRequest) -> tuple[Any, ...]:
    """What the express lane answers (``redeem_on_loop``: folds on PostgreSQL)."""
    try:
        record = asyncio.run(service.redeem_on_loop(db, tenant.caller, body))
    except DomainError as refused:
        return _refusal(refused)
    assert record is not None, "the lane had no connection free"
    return _answer(body, record)


def _refusal(refused: DomainError) -> tuple[Any, ...]:
    return ("refused", type(refused).__name__, refused.code, refused.field, refused.detail,
            refused.extra)  # fmt: skip


def _answer(body: RedeemRequest, record: RedemptionRecord) -> tuple[Any, ...]:
    r = record.redemption
    return (
        "redeemed", r.amount, r.order_amount, r.order_reference, r.merchant_ref, r.store_ref,
        r.customer_ref, r.metadata_, r.status, r.created_at, r.tenant_id,
        record.code == body.code, record.voucher_state, record.voucher_balance,
        record.redeemed_quantity, record.currency, record.voucher_type,
    )  # fmt: skip


def _rows(db: Database, code: str) -> tuple[Any, ...]:
    """The voucher as it was left, and every column of its ledger entries, redemptions and
    events but their ids (a redemption's id is named as ``R`` wherever it appears)."""
    with db.unit_of_work(write=False) as session:
        voucher = session.execute(
            text(
                "SELECT id, balance, state, redeemed_quantity, updated_at FROM voucher"
                " WHERE code = :code"
            ),
            {"code": code},
        ).one()
        found = {"voucher": voucher.id}
        ids = session.scalars(
            text("SELECT id FROM redemption WHERE voucher_id = :voucher"), found
        ).all()
        ledger = session.execute(
            text(
                "SELECT tenant_id, delta, kind, created_at, redemption_id FROM ledger_entry"
                " WHERE voucher_id = :voucher ORDER BY id"
            ),
            found,
        ).all()
        redemptions = session.execute(
            text(
                "SELECT id, tenant_id, status, amount, order_amount, order_reference,"
                " merchant_ref, store_ref, customer_ref, CAST(metadata AS text), created_at,"
                " rollback_id, rolled_back_at FROM redemption WHERE voucher_id = :voucher"
                " ORDER BY created_at, id"
            ),
            found,
        ).all()
        events = session.execute(
            text(
                "SELECT tenant_id, campaign_id, kind, actor, reason, CAST(data AS text),"
                " created_at FROM voucher_event WHERE voucher_id = :voucher ORDER BY id"
            ),
            found,
        ).all()

    def named(value: Any) -> Any:
        for redemption_id in ids:
            if isinstance(value, str):
                value = value.replace(redemption_id, "R")
        return value

    return (
        tuple(voucher[1:]),
        [tuple(named(v) for v in row) for row in ledger],
        [tuple(named(v) for v in row) for row in redemptions],
        [tuple(named(v) for v in row) for row in events],
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


def _to_its_end(db: Database, tenant: Tenant, code: str, clock: FakeClock) -> None:
    """The clock at the voucher's expiry: still usable at that very moment."""
    with db.unit_of_work(write=False) as session:
        end = session.scalar(select(Voucher.expiration_date).where(Voucher.code == code))
    assert end is not None
    clock.set(end)


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
    "starts now": ({}, lambda now: {"start_date": now}, _nothing),
    "ends now": ({}, lambda now: {"expiration_date": now + timedelta(hours=1)}, _to_its_end),
    "not started": ({}, lambda now: {"start_date": now + timedelta(hours=1)}, _nothing),
    "expired": ({}, lambda now: {"expiration_date": now + timedelta(hours=1)}, _past_expiry),
    "disabled": ({}, lambda now: {}, _disable),
    "cancelled": ({}, lambda now: {}, _cancel),
    "partly spent": ({}, lambda now: {}, _spend_once),
    "one use, used": ({"redemption_quantity": 1}, lambda now: {}, _spend_once),
    "two uses, one used": ({"redemption_quantity": 2}, lambda now: {}, _spend_once),
    "its own one use, used": ({}, lambda now: {"redemption_quantity": 1}, _spend_once),
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
    {
        "amount": 700,
        "store_ref": "till-1",
        "merchant_ref": "m-1",
        "customer_ref": "c-1",
        "metadata": {"till": 1, "note": ["ü", None]},
        "order": {"amount": 5, "reference": "o-9"},
    },
    {"amount": 5000},  # the whole opening value
    {"amount": 6000},  # more than it holds
    {"order": {"amount": 1200, "reference": "o-1"}},
    {"order": {"amount": 9000}},  # more than it holds: as much as is left
    {"amount": 300, "order": {"amount": 1200}},
    {"amount": 10**13},
    {"order": {"amount": 0}},
    {"order": {"reference": "no amount"}},
    {},  # neither: a CASH voucher's whole value, an error for the others
]


@pytest.mark.parametrize(
    ("kind", "scenario"),
    [
        (kind, scenario)
        for kind in ("GIFT", "CASH", "LOYALTY", "DISCOUNT")
        for scenario in SCENARIOS
        # a CASH voucher is paid out once: no CASH campaign or voucher counts uses
        if not (kind == "CASH" and scenario in ("two uses, one used", "its own one use, used"))
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
    usable = ["plain", "in its dates", "starts now", "ends now", "on its day", "in its hours",
              "in its timeframe"]  # fmt: skip
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


@pytest.mark.parametrize("kind", ["GIFT", "CASH", "LOYALTY", "DISCOUNT"])
def test_the_ways_production_takes_answer_alike(
    fresh_database: Callable[..., Database], kind: str
) -> None:
    """The matrix above runs in a transaction; production's native redemption runs on a
    ``single_write`` connection (prepared statements on psycopg's cursor) and on the express
    lane. Both, for every request shape, twice over (a prepared statement per parameter
    types), against the way that never folds."""
    clock = FakeClock()
    database = fresh_database(pool_size=4, clock=clock)
    if not database.is_postgresql:
        pytest.skip("only PostgreSQL folds the lookup into the spend")
    tenant = make_tenant(database)
    value = {} if kind == "DISCOUNT" else {"default_value": 5000}
    campaign = make_campaign(database, tenant, type=kind, timezone="UTC", **value)
    ways: dict[str, Callable[[RedeemRequest], tuple[Any, ...]]] = {
        "single_write": lambda body: _outcome(database, tenant, body, fold=True),
        "lane": lambda body: _outcome_on_loop(database, tenant, body),
    }
    for way, folded in [*ways.items(), *ways.items()]:
        for request in REQUESTS:
            twins = [issue(database, tenant, campaign).voucher.code for _ in range(2)]
            bodies = [RedeemRequest.model_validate({"code": c, **request}) for c in twins]
            answers = [folded(bodies[0]), _outcome(database, tenant, bodies[1], fold=False)]
            assert answers[0] == answers[1], (way, request)
            assert _rows(database, twins[0]) == _rows(database, twins[1]), (way, request)


# What another transaction does to the card while a redemption waits for its row lock.
INTERLEAVINGS = {
    "a spend of 4,000 commits": ("UPDATE voucher SET balance = balance - 4000", "commit"),
    "a spend of 4,000 rolls back": ("UPDATE voucher SET balance = balance - 4000", "rollback"),
    "a top-up commits": ("UPDATE voucher SET balance = balance + 10000", "commit"),
    "a disable commits": ("UPDATE voucher SET state = 'DISABLED'", "commit"),
    "its last use commits": (
        "UPDATE voucher SET redemption_quantity = 1, redeemed_quantity = 1",
        "commit",
    ),
}


def _redeem_into(
    answers: list[tuple[Any, ...]], db: Database, tenant: Tenant, body: RedeemRequest, fold: bool
) -> None:
    answers.append(_outcome(db, tenant, body, fold=fold))


def _waiting_for_a_lock(
    admin: psycopg.Connection[Any], redeeming: threading.Thread, deadline: float
) -> None:
    """Return once some session of this database waits for a row lock (the redemption), or
    the redemption ended without needing the row (refused on what it read)."""
    while time.monotonic() < deadline and redeeming.is_alive():
        waiting = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock'"
        ).fetchone()
        if waiting and waiting[0]:
            return
        time.sleep(0.01)
    assert not redeeming.is_alive(), "the redemption neither waited for the row nor ended"


@pytest.mark.parametrize("interleaving", list(INTERLEAVINGS))
@pytest.mark.parametrize(
    "request_", [{"amount": 4500}, {"order": {"amount": 4500}}, {"amount": 6000}]
)
def test_a_change_made_while_it_waits_for_the_row_is_seen_alike(
    fresh_database: Callable[..., Database], interleaving: str, request_: dict[str, Any]
) -> None:
    """The folded statement reads the card in its snapshot, then waits for the row another
    transaction holds; once that ends, the UPDATE re-checks the row as it stands. The answer
    and the rows must be what the two-statement way gives in the same race."""
    database = fresh_database(pool_size=4, clock=FakeClock())
    if not database.is_postgresql:
        pytest.skip("only PostgreSQL folds the lookup into the spend")
    tenant = make_tenant(database)
    campaign = make_campaign(database, tenant, type="GIFT", timezone="UTC")
    change, ending = INTERLEAVINGS[interleaving]
    url = database.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    seen = []
    for fold in (True, False):
        code = issue(database, tenant, campaign, value=5000).voucher.code
        answer: list[tuple[Any, ...]] = []
        body = RedeemRequest.model_validate({"code": code, **request_})
        with psycopg.connect(url) as other, psycopg.connect(url, autocommit=True) as admin:
            other.execute(change + " WHERE code = %s", (code,))
            redeeming = threading.Thread(
                target=_redeem_into, args=(answer, database, tenant, body, fold)
            )
            redeeming.start()
            _waiting_for_a_lock(admin, redeeming, time.monotonic() + 30)
            other.commit() if ending == "commit" else other.rollback()
            redeeming.join(30)
        seen.append((answer, _rows(database, code)))
    assert seen[0] == seen[1]
