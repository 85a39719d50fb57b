"""Reading rows back, for tests that check nothing was half-written (redemptions, errors,
isolation, idempotency, the dialects)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text

from voucherd.db.engine import Database

COUNTED_TABLES = (
    "campaign",
    "voucher",
    "redemption",
    "ledger_entry",
    "voucher_event",
    "idempotency_record",
)

# Every table an issue may write to: the voucher, its ledger entry and event, a delivery and its
# event, a per-customer count, a weekly value bucket.
ISSUE_WRITES = (
    "voucher",
    "ledger_entry",
    "voucher_event",
    "delivery",
    "delivery_event",
    "campaign_customer",
    "issued_value_bucket",
)


def count_rows(db: Database, *, tables: Sequence[str] = COUNTED_TABLES) -> dict[str, int]:
    """Rows per table; each test runs in its own rolled-back transaction, so these are its own."""
    with db.unit_of_work(write=False) as session:
        return {t: int(session.scalar(text(f"SELECT count(*) FROM {t}")) or 0) for t in tables}


def ledger_and_balance(db: Database, *, voucher_id: str) -> tuple[int, int | None]:
    """The sum of a voucher's ledger rows and its cached balance column, read together."""
    with db.unit_of_work(write=False) as session:
        total = session.scalar(
            text("SELECT coalesce(sum(delta), 0) FROM ledger_entry WHERE voucher_id = :v"),
            {"v": voucher_id},
        )
        balance = session.scalar(
            text("SELECT balance FROM voucher WHERE id = :v"), {"v": voucher_id}
        )
    return int(total or 0), None if balance is None else int(balance)
