"""The voucher lifecycle as a Hypothesis state machine checked against a small reference model.

Rules issue GIFT (partial redemptions, optionally a redemption quantity), CASH (once), DISCOUNT
(AMOUNT off, up to its redemption quantity) and LOYALTY vouchers, publish them, validate and
then redeem (so what validate promised is compared with what redeem did), roll redemptions
back, disable, enable, cancel, adjust balances, replay an ``Idempotency-Key`` and move a fake
clock past expiry dates. After every step the database must agree with the model: each
voucher's stored and shown state, balance, redeemed and published counts, the sum of its ledger
entries (== its balance), and every redemption's status and amount.

Each Hypothesis example builds what the ``db`` fixture builds, for itself: a connection and a
transaction on the session's migrated database (``engine``), rolled back in ``teardown``, with
its own tenant and its own fake clock. The function-scoped ``db`` and ``clock`` fixtures are not
used: they are made once per test, so every example would share one database state and one
clock (what Hypothesis's function-scoped-fixture health check warns about). The machine is run
by ``run_state_machine_as_test`` inside a plain test, so fixtures and examples never mix.

CI runs a small size; for a long run by hand::

    VOUCHERD_LIFECYCLE_EXAMPLES=500 VOUCHERD_LIFECYCLE_STEPS=80 \\
        .venv/bin/pytest tests/properties/test_lifecycle_machine.py -q -p no:cacheprovider
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Engine, text

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.support.clock import FakeClock
from voucherd.config import Settings
from voucherd.db.engine import Database
from voucherd.errors import Conflict, DomainError
from voucherd.idempotency.service import IdempotencyClaim, Replay
from voucherd.publications import publish as publications
from voucherd.publications.schemas import PublishRequest
from voucherd.redemptions.schemas import RedeemRequest, ValidateRequest
from voucherd.redemptions.service import redeem, rollback, validate
from voucherd.vouchers.issue import issue_voucher
from voucherd.vouchers.schemas import IssueVoucher, VoucherFilters, present_voucher
from voucherd.vouchers.service import (
    adjust_balance,
    cancel_voucher,
    disable_voucher,
    enable_voucher,
    list_vouchers,
)

EXAMPLES = int(os.environ.get("VOUCHERD_LIFECYCLE_EXAMPLES", "15"))
STEPS = int(os.environ.get("VOUCHERD_LIFECYCLE_STEPS", "40"))
MAX_VOUCHERS = 6
DISCOUNT_OFF = 700  # the DISCOUNT campaign takes 700 off an order (AMOUNT), never more than it
START = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
T = TypeVar("T")


@dataclass
class ModelVoucher:
    """What the reference model believes about one voucher."""

    id: str
    code: str
    type: str
    state: str  # stored state: ACTIVE, DISABLED, REDEEMED, CANCELLED
    balance: int | None
    quantity: int | None
    redeemed: int
    expires: datetime | None
    published: int = 0
    holder: str | None = None  # the customer it was published to, who then holds it

    def shown_state(self, now: datetime) -> str:
        if self.state == "ACTIVE" and self.expires is not None and now > self.expires:
            return "EXPIRED"
        return self.state


@dataclass
class ModelRedemption:
    voucher_id: str
    amount: int | None
    spend: int  # what it took from the balance (0 for DISCOUNT)
    status: str = "SUCCEEDED"


@dataclass(frozen=True)
class Outcome:
    """What the model predicts for a redemption: a refusal code, or what it takes."""

    refused: str | None
    spend: int | None = None
    discount: int | None = None


def expected_redemption(
    v: ModelVoucher, amount: int | None, order_amount: int | None, now: datetime
) -> Outcome:
    """The reference rules, written independently of voucherd's code."""
    shown = v.shown_state(now)
    if shown != "ACTIVE":
        return Outcome(f"voucher_{shown.lower()}")
    if v.quantity is not None and v.redeemed >= v.quantity:
        return Outcome("quantity_exceeded")
    if v.type == "DISCOUNT":
        if amount is not None:
            return Outcome("invalid_input")
        off = DISCOUNT_OFF if order_amount is None else min(DISCOUNT_OFF, order_amount)
        return Outcome(None, None, off)
    assert v.balance is not None
    if v.type == "CASH":
        if amount is not None and amount != v.balance:
            return Outcome("invalid_input")
        return Outcome(None, v.balance)
    if amount is not None:
        spend = amount
    elif order_amount is not None:
        spend = min(v.balance, order_amount)
    else:
        return Outcome("invalid_input")
    if spend <= 0:
        return Outcome("invalid_input")
    if spend > v.balance:
        return Outcome("insufficient_balance")
    return Outcome(None, spend)


def _code(exc: DomainError | Replay) -> str:
    return exc.code if isinstance(exc, DomainError) else "replay"


def attempt(
    use_case: Callable[..., T], *args: Any, **kwargs: Any
) -> tuple[T | None, DomainError | Replay | None]:
    """Run a use case; its result, or the refusal it raised (for the model to judge)."""
    try:
        return use_case(*args, **kwargs), None
    except (DomainError, Replay) as exc:
        return None, exc


amounts = st.one_of(st.none(), st.just("all"), st.integers(min_value=1, max_value=6000))
order_amounts = st.one_of(st.none(), st.integers(min_value=0, max_value=6000))


class Lifecycle(RuleBasedStateMachine):
    """One tenant's vouchers, driven through the core services, checked against the model."""

    engine: Engine
    base_settings: Settings
    seen: Counter[str]  # what the examples exercised, shown with -s

    vouchers = Bundle("vouchers")
    redemptions = Bundle("redemptions")

    def __init__(self) -> None:
        super().__init__()
        self.connection = self.engine.connect()
        self.transaction = self.connection.begin()
        self.clock = FakeClock(START)
        self.db = Database(
            self.engine, settings=self.base_settings, bind=self.connection, clock=self.clock
        )
        try:
            self.tenant: Tenant = make_tenant(self.db)
            self.campaigns = self._campaigns()
        except BaseException:
            self.teardown()  # Hypothesis only tears down a machine whose __init__ returned
            raise
        self.model: dict[str, ModelVoucher] = {}
        self.redeemed: dict[str, ModelRedemption] = {}
        self.keys = 0

    def _campaigns(self) -> dict[str, str]:
        return {
            "GIFT": make_campaign(self.db, self.tenant, type="GIFT", default_value=5000).id,
            "CASH": make_campaign(self.db, self.tenant, type="CASH", default_value=2500).id,
            "DISCOUNT": make_campaign(
                self.db,
                self.tenant,
                type="DISCOUNT",
                currency="EUR",
                discount={"type": "AMOUNT", "amount_off": DISCOUNT_OFF},
            ).id,
            "LOYALTY": make_campaign(self.db, self.tenant, type="LOYALTY", default_value=300).id,
        }

    def teardown(self) -> None:
        self.transaction.rollback()
        self.connection.close()

    # --- issue and publish -------------------------------------------------------------

    @precondition(lambda self: len(self.model) < MAX_VOUCHERS)
    @rule(
        target=vouchers,
        kind=st.sampled_from(["GIFT", "GIFT", "CASH", "DISCOUNT", "LOYALTY"]),
        value=st.integers(min_value=1, max_value=5000),
        quantity=st.one_of(st.none(), st.integers(min_value=1, max_value=3)),
        lifetime_hours=st.one_of(st.none(), st.integers(min_value=1, max_value=72)),
    )
    def issue(self, kind: str, value: int, quantity: int | None, lifetime_hours: int | None) -> str:
        now = self.clock()
        body: dict[str, Any] = {"campaign": self.campaigns[kind]}
        if kind != "DISCOUNT":
            body["value"] = value
        if kind == "CASH":
            quantity = 1
        if kind == "DISCOUNT" and quantity is None:
            quantity = 2
        if quantity is not None:
            body["redemption_quantity"] = quantity
        expires = None
        if lifetime_hours is not None:
            expires = now + timedelta(hours=lifetime_hours)
            body["expiration_date"] = expires.isoformat()
        record = issue_voucher(self.db, self.tenant.caller, IssueVoucher.model_validate(body))
        v = record.voucher
        balance = None if kind == "DISCOUNT" else value
        assert v.type == kind
        assert v.state == "ACTIVE"
        assert v.balance == balance
        assert v.redemption_quantity == quantity
        self.model[v.id] = ModelVoucher(v.id, v.code, kind, "ACTIVE", balance, quantity, 0, expires)
        return v.id

    @rule(voucher=vouchers, customer=st.sampled_from([None, "alice", "bob"]))
    def publish(self, voucher: str, customer: str | None) -> None:
        v = self.model[voucher]
        body: dict[str, Any] = {"voucher": v.code}
        if customer is not None:
            body["customer"] = {"source_id": customer}
        shown = v.shown_state(self.clock())
        refused: Conflict | None = None
        try:
            published = publications.publish(
                self.db, self.tenant.caller, PublishRequest.model_validate(body)
            )
        except Conflict as exc:
            refused = exc
        if shown != "ACTIVE":
            assert refused is not None, f"a {shown} voucher was published"
            assert refused.code == f"voucher_{shown.lower()}"
            return
        if customer is not None and v.holder not in (None, customer):
            assert refused is not None, f"a voucher {v.holder} holds was published to {customer}"
            assert refused.code == "voucher_held_by_another_customer"
            return
        assert refused is None, f"publishing an ACTIVE voucher was refused: {refused}"
        assert published.record.codes == [(v.id, v.code)]
        v.published += 1
        v.holder = customer or v.holder

    # --- validate, redeem, roll back ---------------------------------------------------

    def _amount(self, v: ModelVoucher, amount: int | str | None) -> int | None:
        if amount == "all":
            return v.balance if v.balance else None
        assert amount is None or isinstance(amount, int)
        return amount

    @rule(
        target=redemptions,
        voucher=vouchers,
        amount=amounts,
        order_amount=order_amounts,
    )
    def validate_then_redeem(
        self, voucher: str, amount: int | str | None, order_amount: int | None
    ) -> MultipleResults[str] | str:
        v = self.model[voucher]
        now = self.clock()
        spend_asked = self._amount(v, amount)
        body: dict[str, Any] = {"code": v.code, "amount": spend_asked}
        if order_amount is not None:
            body["order"] = {"amount": order_amount}
        expected = expected_redemption(v, spend_asked, order_amount, now)

        self.seen[f"redeem {v.type}: {expected.refused or 'ok'}"] += 1
        judged = validate(self.db, self.tenant.caller, ValidateRequest.model_validate(body))
        assert judged.valid == (expected.refused is None), (expected, judged.reason)
        if expected.refused is not None:
            assert judged.reason == expected.refused, (expected, judged.detail)
        else:
            assert judged.plan is not None
            assert judged.plan.spend == expected.spend
            assert judged.plan.discount_amount == expected.discount

        record, refused = attempt(
            redeem, self.db, self.tenant.caller, RedeemRequest.model_validate(body)
        )
        if refused is not None:
            assert not judged.valid, f"validate said yes, redeem said {refused}"
            assert _code(refused) == expected.refused, (expected, refused)
            return multiple()  # nothing for the rollback rule to draw
        assert judged.valid, f"validate said {judged.reason}, redeem succeeded"
        assert record is not None
        return self._redeemed(v, expected, record.redemption.id, record.redemption.amount)

    @rule(target=redemptions, voucher=vouchers, amount=amounts, order_amount=order_amounts)
    def validate_then_redeem_again(
        self, voucher: str, amount: int | str | None, order_amount: int | None
    ) -> MultipleResults[str] | str:
        """The same step once more, so redemptions are drawn twice as often as other rules."""
        return self.validate_then_redeem(voucher, amount, order_amount)

    def _redeemed(
        self, v: ModelVoucher, expected: Outcome, redemption_id: str, amount: int | None
    ) -> str:
        spend = expected.spend or 0
        assert amount == (expected.spend if expected.spend is not None else expected.discount)
        if v.balance is not None:
            v.balance -= spend
        v.redeemed += 1
        used_up = (expected.spend is not None and v.balance == 0) or (
            v.quantity is not None and v.redeemed >= v.quantity
        )
        if used_up:
            v.state = "REDEEMED"
        self.redeemed[redemption_id] = ModelRedemption(v.id, amount, spend)
        return redemption_id

    @rule(voucher=vouchers, amount=st.integers(min_value=1, max_value=3000))
    def redeem_with_key_twice(self, voucher: str, amount: int) -> None:
        """A retry with the same key replays the first effect; another body is refused."""
        v = self.model[voucher]
        self.keys += 1
        body = RedeemRequest.model_validate(
            {"code": v.code, "order": {"amount": amount, "reference": f"o{self.keys}"}}
        )
        claim = IdempotencyClaim.of(f"k{self.keys}", "POST", "/redemptions", b"same")
        expected = expected_redemption(v, None, amount, self.clock())
        record, refused = attempt(redeem, self.db, self.tenant.caller, body, idem=claim)
        if refused is not None:
            assert _code(refused) == expected.refused, (expected, refused)
            return
        assert expected.refused is None, f"expected {expected.refused}, it redeemed"
        assert record is not None
        first = record.redemption.id
        self._redeemed(v, expected, first, record.redemption.amount)
        _, again = attempt(redeem, self.db, self.tenant.caller, body, idem=claim)
        assert isinstance(again, Replay), "a retry with the same Idempotency-Key redeemed again"
        assert again.resource_id == first
        other = IdempotencyClaim.of(claim.key, "POST", "/redemptions", b"other")
        _, reused = attempt(redeem, self.db, self.tenant.caller, body, idem=other)
        assert reused is not None, "a reused Idempotency-Key with another body redeemed"
        assert _code(reused) == "idempotency_key_reused"

    @rule(redemption=redemptions)
    def roll_back(self, redemption: str) -> None:
        r = self.redeemed[redemption]
        v = self.model[r.voucher_id]
        record, refused = attempt(rollback, self.db, self.tenant.caller, redemption, "test")
        if refused is not None:
            assert r.status == "ROLLED_BACK", f"rollback refused: {refused}"
            assert _code(refused) == "already_rolled_back"
            return
        assert r.status == "SUCCEEDED", "a rolled-back redemption was rolled back again"
        assert record is not None
        r.status = "ROLLED_BACK"
        self.seen[f"rollback on a {v.shown_state(self.clock())} {v.type}"] += 1
        if v.balance is not None:
            v.balance += r.spend
        v.redeemed -= 1
        if v.state == "REDEEMED":
            v.state = "ACTIVE"
        assert record.voucher_balance == v.balance
        assert record.voucher_state == v.state

    # --- state changes, balance, time --------------------------------------------------

    @rule(
        voucher=vouchers,
        action=st.sampled_from(["disable", "disable", "enable", "enable", "cancel"]),
    )
    def change_state(self, voucher: str, action: str) -> None:
        v = self.model[voucher]
        change = {"disable": disable_voucher, "enable": enable_voucher, "cancel": cancel_voucher}
        target = {"disable": "DISABLED", "enable": "ACTIVE", "cancel": "CANCELLED"}[action]
        allowed = v.state in ("ACTIVE", "DISABLED")
        _, refused = attempt(change[action], self.db, self.tenant.caller, v.code, "test")
        if refused is not None:
            assert not allowed, f"{action} of a {v.state} voucher refused: {refused}"
            assert _code(refused) == f"voucher_{v.state.lower()}"
            return
        assert allowed, f"a {v.state} voucher could be {action}d"
        v.state = target

    @rule(voucher=vouchers, amount=st.integers(min_value=-3000, max_value=3000).filter(bool))
    def adjust(self, voucher: str, amount: int) -> None:
        v = self.model[voucher]
        _, refused = attempt(adjust_balance, self.db, self.tenant.caller, v.code, amount, "x")
        if v.balance is None:  # CASH has a balance but no adjustable one
            assert refused is not None
            assert _code(refused) == "invalid_input"
            return
        if v.type == "CASH":
            assert refused is not None
            assert _code(refused) == "invalid_input"
            return
        if v.state == "CANCELLED" or v.balance + amount < 0:
            assert refused is not None, "a cancelled card or a negative balance was adjusted"
            assert _code(refused) == "insufficient_balance"
            return
        assert refused is None, f"adjusting by {amount} refused: {refused}"
        v.balance += amount
        if amount > 0 and v.state == "REDEEMED":
            v.state = "ACTIVE"
        elif amount < 0 and v.state == "ACTIVE" and v.balance == 0:
            v.state = "REDEEMED"

    @rule(hours=st.integers(min_value=1, max_value=48))
    def advance_clock(self, hours: int) -> None:
        self.clock.advance(hours=hours)

    # --- what must always hold ---------------------------------------------------------

    @invariant()
    def database_agrees_with_model(self) -> None:
        if not self.model:
            return
        with self.db.unit_of_work(write=False) as session:
            rows = session.execute(
                text(
                    "SELECT v.id, v.state, v.balance, v.redeemed_quantity, v.published_count, "
                    "(SELECT coalesce(sum(delta), 0) FROM ledger_entry l WHERE l.voucher_id = v.id),"
                    " (SELECT count(*) FROM ledger_entry l WHERE l.voucher_id = v.id) "
                    "FROM voucher v WHERE v.tenant_id = :t"
                ),
                {"t": self.tenant.id},
            ).all()
            redemptions = session.execute(
                text("SELECT id, voucher_id, status, amount FROM redemption WHERE tenant_id = :t"),
                {"t": self.tenant.id},
            ).all()
        assert {r[0] for r in rows} == set(self.model)
        for vid, state, balance, redeemed, published, ledger_sum, ledger_rows in rows:
            v = self.model[vid]
            seen = (state, balance, redeemed, published)
            assert seen == (v.state, v.balance, v.redeemed, v.published), (v, seen)
            if balance is None:
                assert ledger_rows == 0, f"a {v.type} voucher without a balance has ledger rows"
            else:
                assert int(ledger_sum) == balance, f"ledger sums to {ledger_sum}, balance {balance}"
        stored = {r[0]: (r[1], r[2], r[3]) for r in redemptions}
        wanted = {i: (r.voucher_id, r.status, r.amount) for i, r in self.redeemed.items()}
        assert stored == wanted
        for v in self.model.values():
            succeeded = sum(
                1
                for r in self.redeemed.values()
                if r.voucher_id == v.id and r.status == "SUCCEEDED"
            )
            assert succeeded == v.redeemed

    @invariant()
    def shown_state_agrees(self) -> None:
        """What the API shows (EXPIRED is derived from the clock, never stored)."""
        now = self.clock()
        page = list_vouchers(
            self.db, self.tenant.caller, VoucherFilters(), limit=MAX_VOUCHERS, cursor=None
        )
        for record in page.items:
            v = self.model[record.voucher.id]
            shown = present_voucher(record, now=now, base_url="https://vouchers.example")
            assert shown["state"] == v.shown_state(now), (v, shown["state"])
            assert shown["balance"] == v.balance
        assert len(page.items) == len(self.model)


def test_voucher_lifecycle_agrees_with_model(engine: Engine, settings: Settings) -> None:
    seen: Counter[str] = Counter()
    machine = type(
        "LifecycleOnThisDatabase",
        (Lifecycle,),
        {"engine": engine, "base_settings": settings, "seen": seen},
    )
    run_state_machine_as_test(machine, settings=settings_for_ci())
    print("\nlifecycle: " + ", ".join(f"{what} x{n}" for what, n in sorted(seen.items())))


def settings_for_ci() -> hypothesis_settings:
    return hypothesis_settings(
        max_examples=EXAMPLES,
        stateful_step_count=STEPS,
        deadline=None,
        database=None,  # no .hypothesis/ directory in the tree; a failure prints its steps
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
