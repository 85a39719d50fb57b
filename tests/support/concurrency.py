"""Helpers of the concurrency acceptance tests: threads that start together, the hot-card
scenario and its invariants, and a real uvicorn server on a background thread."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import func, select

from tests.factories.tenants import Tenant
from voucherd.db.engine import Database
from voucherd.errors import DomainError
from voucherd.redemptions.models import Redemption
from voucherd.redemptions.schemas import RedeemRequest
from voucherd.redemptions.service import redeem
from voucherd.vouchers.models import LedgerEntry, Voucher

T = TypeVar("T")

# A thread that has not finished by then is stuck (a deadlock, a lost wake-up): fail, don't hang.
# A guard, not a measurement: the hot card's 6,000 SQLite redemptions took over 120 s beside
# another xdist worker on a loaded machine, and a stuck thread is just as stuck after 600 s.
JOIN_TIMEOUT = 600.0


def run_together(workers: Sequence[Callable[[], T]]) -> list[T]:
    """Run each worker on its own thread, all released at once by a barrier; their results in
    order. The first exception a worker raised is raised here, after every thread has ended."""
    barrier = threading.Barrier(len(workers))
    results: list[T | None] = [None] * len(workers)
    errors: list[BaseException] = []

    def run(index: int, worker: Callable[[], T]) -> None:
        try:
            barrier.wait()
            results[index] = worker()
        except BaseException as exc:  # noqa: BLE001  (handed to the test's thread below)
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(i, w), name=f"worker-{i}", daemon=True)
        for i, w in enumerate(workers)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + JOIN_TIMEOUT
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0))
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck:
        raise AssertionError(f"threads still running after {JOIN_TIMEOUT}s: {stuck}")
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]  # every slot was filled: no worker failed


@dataclass
class Attempts:
    """What concurrent attempts at one use case got back."""

    succeeded: list[int] = field(default_factory=list)  # amounts, for spends
    refused: Counter[str] = field(default_factory=Counter)  # domain error codes
    crashed: list[str] = field(default_factory=list)  # anything else, as "Type: message"

    def merge(self, other: Attempts) -> None:
        self.succeeded += other.succeeded
        self.refused.update(other.refused)
        self.crashed += other.crashed


def attempt(outcome: Attempts, action: Callable[[], int]) -> None:
    """Run one attempt and file its result: the amount it spent, a refusal, or a crash."""
    try:
        outcome.succeeded.append(action())
    except DomainError as exc:
        outcome.refused[exc.code] += 1
    except Exception as exc:  # noqa: BLE001  (a crash is an outcome the invariants judge)
        outcome.crashed.append(f"{type(exc).__name__}: {exc}"[:500])


@dataclass(frozen=True)
class HotCard:
    """One GIFT voucher that many tills redeem at once."""

    voucher_id: str
    code: str
    initial: int


HOT_CARD_REFUSALS = frozenset({"insufficient_balance", "voucher_redeemed"})


def hammer_hot_card(
    db: Database,
    tenant: Tenant,
    card: HotCard,
    *,
    threads: int,
    attempts: int,
    seed: int,
    native: bool = False,
) -> Attempts:
    """``attempts`` redemptions of 1 to 9 units, spread over ``threads`` threads started at once,
    each through the real service with real commits. ``native``: as the native answer asks
    (no whole voucher: on PostgreSQL the lookup and the spend are then one statement)."""

    def till(index: int) -> Callable[[], Attempts]:
        rng = random.Random(seed * 1_000 + index)
        count = attempts // threads + (1 if index < attempts % threads else 0)
        amounts = [rng.randint(1, 9) for _ in range(count)]

        def work() -> Attempts:
            outcome = Attempts()
            for amount in amounts:
                body = RedeemRequest(code=card.code, amount=amount, store_ref=f"till-{index}")

                def spend(body: RedeemRequest = body) -> int:
                    record = redeem(db, tenant.caller, body, show_voucher=not native)
                    return record.redemption.amount or 0

                attempt(outcome, spend)
            return outcome

        return work

    total = Attempts()
    for outcome in run_together([till(i) for i in range(threads)]):
        total.merge(outcome)
    return total


def hot_card_violations(db: Database, card: HotCard, outcome: Attempts) -> list[str]:
    """Every money invariant the hot card breaks after ``outcome``; empty when it keeps them."""
    with db.unit_of_work(write=False) as session:
        balance = session.scalar(select(Voucher.balance).where(Voucher.id == card.voucher_id))
        ledger = session.scalar(
            select(func.coalesce(func.sum(LedgerEntry.delta), 0)).where(
                LedgerEntry.voucher_id == card.voucher_id
            )
        )
        rows, row_total = session.execute(
            select(func.count(), func.coalesce(func.sum(Redemption.amount), 0)).where(
                Redemption.voucher_id == card.voucher_id, Redemption.status == "SUCCEEDED"
            )
        ).one()
    spent = sum(outcome.succeeded)
    violations: list[str] = []
    if spent > card.initial:
        violations.append(f"overspend: {spent} redeemed from an initial balance of {card.initial}")
    if balance is None or balance < 0:
        violations.append(f"balance is {balance}, not a non-negative amount")
    if balance != card.initial - spent:
        violations.append(
            f"balance {balance} != initial {card.initial} - redeemed {spent} "
            f"(= {card.initial - spent})"
        )
    if ledger != balance:
        violations.append(f"ledger sums to {ledger}, balance is {balance}")
    if rows != len(outcome.succeeded):
        violations.append(f"{rows} redemption rows for {len(outcome.succeeded)} successes")
    if row_total != spent:
        violations.append(f"redemption rows sum to {row_total}, successes to {spent}")
    unexpected = {code: n for code, n in outcome.refused.items() if code not in HOT_CARD_REFUSALS}
    if unexpected:
        violations.append(f"refusals other than {sorted(HOT_CARD_REFUSALS)}: {unexpected}")
    if outcome.crashed:
        violations.append(
            f"{len(outcome.crashed)} attempts failed with a non-domain error, first: "
            f"{outcome.crashed[0]}"
        )
    return violations
