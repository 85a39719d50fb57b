"""Concurrency acceptance (issue 2): money never goes wrong when many threads race for it.

Every test runs on SQLite and on PostgreSQL against whole new migrated databases whose units of
work really commit (``fresh_database``), with threads released together by a barrier.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, distinct, func, select, update
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.factories.vouchers import issue
from tests.support.concurrency import (
    HOT_CARD_REFUSALS,
    Attempts,
    HotCard,
    attempt,
    hammer_hot_card,
    hot_card_violations,
    run_together,
)
from tests.support.serving import serving_app
from voucherd.app import create_app
from voucherd.campaigns.models import Campaign
from voucherd.config import Settings
from voucherd.db.engine import WRITE_OPTION, Database
from voucherd.idempotency.service import IdempotencyClaim
from voucherd.redemptions import sql as redemptions
from voucherd.redemptions.models import Redemption
from voucherd.redemptions.schemas import Plan
from voucherd.vouchers.issue import issue_voucher
from voucherd.vouchers.limits import IssuedValueBucket
from voucherd.vouchers.mint import mint_vouchers
from voucherd.vouchers.models import LedgerEntry, Voucher
from voucherd.vouchers.schemas import IssueVoucher, MintVouchers

FreshDatabase = Callable[..., Database]


def _hot_card(db: Database, tenant: Tenant, initial: int) -> HotCard:
    campaign = make_campaign(db, tenant, type="GIFT", default_value=initial)
    voucher = issue(db, tenant, campaign).voucher
    return HotCard(voucher.id, voucher.code, initial)


class TestHotCard:
    """32 tills redeem one GIFT voucher: 6,000 attempts of 1 to 9 against a balance of 5,000.
    The tills fight over it for the first ~1,000 and every later attempt must be refused
    cleanly; successes are kept few because each costs several times a refusal in CI time."""

    def test_no_overspend_and_the_ledger_is_the_balance(
        self, fresh_database: FreshDatabase
    ) -> None:
        db = fresh_database()
        tenant = make_tenant(db)
        card = _hot_card(db, tenant, 5_000)

        outcome = hammer_hot_card(db, tenant, card, threads=32, attempts=6_000, seed=2)

        assert hot_card_violations(db, card, outcome) == []
        assert len(outcome.succeeded) + sum(outcome.refused.values()) == 6_000
        assert outcome.succeeded, "no redemption succeeded"
        assert set(outcome.refused) <= HOT_CARD_REFUSALS
        assert outcome.refused["voucher_redeemed"] > 0, "the card never ran dry"

    def test_the_native_answer_keeps_them_too(self, fresh_database: FreshDatabase) -> None:
        """The same race through the native answer, which on PostgreSQL looks the card up,
        spends it and records it in one statement (``steps._Fold``): 1,500 attempts against
        a balance of 2,000."""
        db = fresh_database()
        tenant = make_tenant(db)
        card = _hot_card(db, tenant, 2_000)

        outcome = hammer_hot_card(db, tenant, card, threads=32, attempts=1_500, seed=4, native=True)

        assert hot_card_violations(db, card, outcome) == []
        assert len(outcome.succeeded) + sum(outcome.refused.values()) == 1_500
        assert outcome.succeeded, "no redemption succeeded"
        assert set(outcome.refused) <= HOT_CARD_REFUSALS
        assert outcome.refused["voucher_redeemed"] > 0, "the card never ran dry"


def _racy_debit(
    session: Session | Connection,
    redemption: Redemption,
    plan: Plan,
    *,
    campaign_id: str,
    actor: str,
) -> Row[int | None, int, str] | None:
    """Read the balance, decide in Python, write it back: the lost update STYLE.md forbids.

    The read is a short transaction of its own on a second connection and the write a plain
    UPDATE to the value computed from it, then the redemption is recorded as the real spend
    records it. redeem's transaction is ended first (it has only read so far: no
    Idempotency-Key here): on SQLite a unit of work holds the write lock from its
    ``BEGIN IMMEDIATE``, so a read inside it is always current and could not race; a redeem
    that reads in one unit of work and writes in the next can, on both databases.
    """
    spend = plan.spend or 0
    now = redemption.created_at
    session.commit()  # a no-op on a Database.single_write connection (PostgreSQL)
    engine = session.engine if isinstance(session, Connection) else session.get_bind().engine
    with engine.connect().execution_options(**{WRITE_OPTION: False}) as reader:
        balance = reader.scalar(select(Voucher.balance).where(Voucher.id == redemption.voucher_id))
    time.sleep(0.001)  # widen the window between the read and the write
    if balance is None or balance < spend:
        return None
    left = balance - spend
    row: Row[int | None, int, str] | None = session.execute(
        update(Voucher)
        .where(Voucher.id == redemption.voucher_id)
        .values(
            balance=left,
            redeemed_quantity=Voucher.redeemed_quantity + 1,
            state="REDEEMED" if left == 0 else Voucher.state,
            updated_at=now,
        )
        .returning(Voucher.balance, Voucher.redeemed_quantity, Voucher.state)
        .execution_options(synchronize_session=False)
    ).first()
    redemptions.record_redemption(
        session, redemption, spend=spend, campaign_id=campaign_id, actor=actor
    )
    return row


class TestHotCardHasTeeth:
    """The same scenario against a read-then-write spend must break the same invariants.

    Smaller (320 attempts for a balance of 640) because a lost update needs only two tills
    between one read and its write: each run loses hundreds of units on both databases.
    """

    def test_a_read_then_write_spend_is_caught(
        self, fresh_database: FreshDatabase, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        db = fresh_database()
        tenant = make_tenant(db)
        card = _hot_card(db, tenant, 640)
        monkeypatch.setattr(redemptions, "debit", _racy_debit)

        outcome = hammer_hot_card(db, tenant, card, threads=32, attempts=320, seed=3)

        violations = hot_card_violations(db, card, outcome)
        assert any(v.startswith("balance ") for v in violations), violations
        assert any(v.startswith("ledger ") for v in violations), violations


# 10 digits, 6 places: a space of 1,000,000 codes. With max_code_space_fill raised to 0.2 a
# campaign may hold 200,000 of them, and 100,000 draws from it collide thousands of times
# (about n²/2N = 5,000 birthday collisions before any redraw), across minters and campaigns.
SMALL_SPACE = {"charset": "0123456789", "length": 6}
MINTERS = 8
MINTED = 100_000


@pytest.fixture
def roomy_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_code_space_fill": 0.2})


def _mint_concurrently(
    db: Database, tenant: Tenant, campaign_ids: list[str], *, minters: int, each: int
) -> list[int]:
    """``minters`` threads, spread round-robin over the campaigns, each minting ``each`` codes."""

    def minter(index: int) -> Callable[[], int]:
        campaign_id = campaign_ids[index % len(campaign_ids)]
        return lambda: mint_vouchers(db, tenant.caller, campaign_id, MintVouchers(count=each)).count

    return run_together([minter(i) for i in range(minters)])


def _code_counts(db: Database, campaign_ids: list[str]) -> tuple[int, int, int, int]:
    """Vouchers, distinct codes, vouchers in the campaigns and their ISSUE ledger rows."""
    with db.unit_of_work(write=False) as session:
        total, unique = session.execute(
            select(func.count(), func.count(distinct(Voucher.code)))
        ).one()
        in_campaigns = session.scalar(
            select(func.count()).where(Voucher.campaign_id.in_(campaign_ids))
        )
        issued = session.scalar(
            select(func.count())
            .select_from(LedgerEntry)
            .join(Voucher, Voucher.id == LedgerEntry.voucher_id)
            .where(Voucher.campaign_id.in_(campaign_ids), LedgerEntry.kind == "ISSUE")
        )
    return int(total), int(unique), int(in_campaigns or 0), int(issued or 0)


class TestConcurrentMinting:
    """8 minters add 100,000 codes from a code space small enough that they collide."""

    @pytest.fixture
    def settings(self, roomy_settings: Settings) -> Settings:
        return roomy_settings

    def test_one_campaign_gets_every_code_once(self, fresh_database: FreshDatabase) -> None:
        db = fresh_database()
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, default_value=500, code_config=SMALL_SPACE)

        minted = _mint_concurrently(
            db, tenant, [campaign.id], minters=MINTERS, each=MINTED // MINTERS
        )

        assert minted == [MINTED // MINTERS] * MINTERS
        assert _code_counts(db, [campaign.id]) == (MINTED, MINTED, MINTED, MINTED)

    def test_two_campaigns_never_share_a_code(self, fresh_database: FreshDatabase) -> None:
        db = fresh_database()
        tenant = make_tenant(db)
        first, second = (
            make_campaign(db, tenant, default_value=500, code_config=SMALL_SPACE).id
            for _ in range(2)
        )

        each = MINTED // 2 // MINTERS  # 25,000 per campaign: ~600 collisions between them
        minted = _mint_concurrently(db, tenant, [first, second], minters=MINTERS, each=each)

        total, per_campaign = MINTERS * each, MINTERS * each // 2
        assert minted == [each] * MINTERS
        assert _code_counts(db, [first]) == (total, total, per_campaign, per_campaign)
        assert _code_counts(db, [second]) == (total, total, per_campaign, per_campaign)


REQUESTS = 32


def _post_at_once(
    base: str, path: str, headers: dict[str, str], body: dict[str, Any]
) -> list[httpx.Response]:
    """The same POST from 32 threads, each on a connection opened beforehand, sent together."""
    clients = [httpx.Client(base_url=base, timeout=60) for _ in range(REQUESTS)]
    try:
        for client in clients:
            client.get("/healthz").raise_for_status()
        return run_together([partial(c.post, path, headers=headers, json=body) for c in clients])
    finally:
        for client in clients:
            client.close()


def _one_effect_violations(responses: list[httpx.Response]) -> list[str]:
    """Exactly one effect: one original 201, every other answer a replay of it or a 409 saying
    it is still in flight, and no 5xx."""
    violations: list[str] = []
    created = [r for r in responses if r.status_code == 201]
    in_flight = [r for r in responses if r.status_code == 409]
    others = [r for r in responses if r.status_code not in (201, 409)]
    originals = [r for r in created if r.headers.get("Idempotent-Replayed") != "true"]
    if len(originals) != 1:
        violations.append(f"{len(originals)} answers were not replays, not exactly 1")
    ids = {r.json()["id"] for r in created}
    if len(ids) > 1:
        violations.append(f"201s name {len(ids)} different objects: {sorted(ids)}")
    bodies = {r.content for r in created}
    if len(bodies) > 1:
        violations.append(f"201s carry {len(bodies)} different bodies")
    codes = {r.json().get("code") for r in in_flight}
    if codes - {"idempotency_key_in_flight"}:
        violations.append(f"409s other than idempotency_key_in_flight: {codes}")
    if others:
        sample = others[0]
        violations.append(
            f"{len(others)} answers were neither 201 nor 409, e.g. {sample.status_code} "
            f"{sample.text[:300]}"
        )
    return violations


class TestIdempotencyUnderConcurrency:
    """32 identical requests with one Idempotency-Key, at once, to a real server."""

    def test_one_redemption(self, fresh_database: FreshDatabase, settings: Settings) -> None:
        db = fresh_database()
        tenant = make_tenant(db)
        card = _hot_card(db, tenant, 5_000)
        headers = {**tenant.headers, "Idempotency-Key": "till-7-receipt-1234"}

        with serving_app(create_app(settings, db=db)) as base:
            responses = _post_at_once(
                base, "/api/v1/redemptions", headers, {"code": card.code, "amount": 1_250}
            )

        assert _one_effect_violations(responses) == []
        with db.unit_of_work(write=False) as session:
            rows = session.scalar(
                select(func.count()).where(Redemption.voucher_id == card.voucher_id)
            )
        assert rows == 1
        outcome = Attempts(succeeded=[1_250])
        assert hot_card_violations(db, card, outcome) == []

    def test_one_voucher(self, fresh_database: FreshDatabase, settings: Settings) -> None:
        db = fresh_database()
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, default_value=2_000)
        headers = {**tenant.headers, "Idempotency-Key": "order-991"}

        with serving_app(create_app(settings, db=db)) as base:
            responses = _post_at_once(
                base,
                "/api/v1/vouchers",
                headers,
                {"campaign": campaign.name, "customer_ref": "cust-1"},
            )

        assert _one_effect_violations(responses) == []
        with db.unit_of_work(write=False) as session:
            vouchers = session.scalar(
                select(func.count()).where(Voucher.campaign_id == campaign.id)
            )
            ledger = session.scalar(select(func.coalesce(func.sum(LedgerEntry.delta), 0)))
        assert (vouchers, ledger) == (1, 2_000)


ISSUERS = 16
VALUE = 1_000


def _issue_concurrently(
    db: Database,
    tenant: Tenant,
    campaign_id: str,
    customers: list[str | None],
    *,
    each: int,
    keyed: bool = False,
) -> Attempts:
    """16 threads, each issuing ``each`` GIFT vouchers of 1,000 to every customer in turn;
    ``keyed``: each request with an Idempotency-Key of its own, as careful clients send."""

    def issuer() -> Attempts:
        outcome = Attempts()
        for _ in range(each):
            for customer in customers:
                body = IssueVoucher(campaign=campaign_id, customer_ref=customer, value=VALUE)
                idem = None
                if keyed:
                    raw = body.model_dump_json().encode()
                    idem = IdempotencyClaim.of(
                        secrets.token_hex(8), "POST", "/api/v1/vouchers", raw
                    )

                def one(body: IssueVoucher = body, idem: IdempotencyClaim | None = idem) -> int:
                    return issue_voucher(db, tenant.caller, body, idem=idem).voucher.amount or 0

                attempt(outcome, one)
        return outcome

    total = Attempts()
    for outcome in run_together([issuer for _ in range(ISSUERS)]):
        total.merge(outcome)
    return total


def _issued(db: Database, campaign_id: str) -> dict[str | None, int]:
    """Value issued from a campaign, per customer."""
    with db.unit_of_work(write=False) as session:
        rows = session.execute(
            select(Voucher.customer_ref, func.sum(Voucher.amount))
            .where(Voucher.campaign_id == campaign_id)
            .group_by(Voucher.customer_ref)
        ).all()
    return {customer: int(total or 0) for customer, total in rows}


class TestLimitsUnderConcurrency:
    """16 issuers race for the last of a limit: it is reached exactly, never passed."""

    @pytest.mark.parametrize("keyed", [False, True], ids=["plain", "idempotency-keys"])
    def test_weekly_value_limit(self, fresh_database: FreshDatabase, keyed: bool) -> None:
        db = fresh_database()
        tenant = make_tenant(db, weekly_value_limit=40 * VALUE)
        campaign = make_campaign(db, tenant)

        outcome = _issue_concurrently(db, tenant, campaign.id, [None], each=5, keyed=keyed)

        assert outcome.crashed == []
        assert set(outcome.refused) == {"weekly_value_limit_reached"}
        assert sum(outcome.succeeded) == 40 * VALUE
        assert _issued(db, campaign.id) == {None: 40 * VALUE}
        with db.unit_of_work(write=False) as session:
            counted = session.scalar(
                select(func.sum(IssuedValueBucket.value)).where(
                    IssuedValueBucket.tenant_id == tenant.id
                )
            )
        assert counted == 40 * VALUE

    def test_campaign_budget(self, fresh_database: FreshDatabase) -> None:
        db = fresh_database()
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, budget=40 * VALUE)

        outcome = _issue_concurrently(db, tenant, campaign.id, [None], each=5)

        assert outcome.crashed == []
        assert set(outcome.refused) == {"campaign_budget_exhausted"}
        assert sum(outcome.succeeded) == 40 * VALUE
        assert _issued(db, campaign.id) == {None: 40 * VALUE}
        with db.unit_of_work(write=False) as session:
            spent = session.scalar(select(Campaign.issued_value).where(Campaign.id == campaign.id))
        assert spent == 40 * VALUE

    def test_per_customer_limit(self, fresh_database: FreshDatabase) -> None:
        db = fresh_database()
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, per_customer_limit=3)
        customers: list[str | None] = ["ana", "ben", "chi", "dee"]

        outcome = _issue_concurrently(db, tenant, campaign.id, customers, each=1)

        assert outcome.crashed == []
        assert set(outcome.refused) == {"customer_limit_reached"}
        assert len(outcome.succeeded) == 3 * len(customers)
        assert _issued(db, campaign.id) == {c: 3 * VALUE for c in customers}

    def test_every_limit_at_once(self, fresh_database: FreshDatabase) -> None:
        """Per-customer, budget and weekly limits on the same issues: each counts or locks in
        its own way, and together they must neither deadlock nor leak. 20 customers may get 2
        each (40,000) within a budget of 35,000; the weekly 30,000 is the one that binds."""
        db = fresh_database()
        tenant = make_tenant(db, weekly_value_limit=30 * VALUE)
        campaign = make_campaign(db, tenant, budget=35 * VALUE, per_customer_limit=2)
        customers: list[str | None] = [f"customer-{i}" for i in range(20)]

        outcome = _issue_concurrently(db, tenant, campaign.id, customers, each=1)

        assert outcome.crashed == []
        assert set(outcome.refused) == {"weekly_value_limit_reached", "customer_limit_reached"}
        issued = _issued(db, campaign.id)
        assert sum(issued.values()) == sum(outcome.succeeded) == 30 * VALUE
        assert max(issued.values()) <= 2 * VALUE
