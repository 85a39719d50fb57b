"""Files to import, generated: every state, partly spent balances, holders and publications."""

from __future__ import annotations

import csv
import io
import json
import threading
from dataclasses import dataclass
from typing import Any

from voucherd.composition import run_due_operations
from voucherd.db.engine import Database

HEADER = (
    "code", "type", "value", "balance", "state", "start_date", "expiration_date",
    "customer_source_id", "customer_name", "customer_email", "customer_phone", "published_at",
    "channel", "metadata",
)  # fmt: skip
STATES = ("ACTIVE", "DISABLED", "CANCELLED", "REDEEMED")


@dataclass(frozen=True)
class Row:
    code: str
    value: int
    balance: int
    state: str
    holder: str | None

    def as_csv(self) -> list[str]:
        holder = self.holder
        return [
            self.code,
            "GIFT",
            str(self.value),
            str(self.balance),
            self.state,
            "2026-01-01T00:00:00Z",
            "2027-12-31",
            holder or "",
            f"Holder {holder}" if holder else "",
            f"{holder}@example.com" if holder else "",
            "+447700900123" if holder else "",
            "2026-02-01T10:00:00+00:00" if holder else "",
            "sms" if holder else "",
            json.dumps({"legacy_id": self.code}),
        ]


def gift_rows(count: int, *, prefix: str = "OLD-") -> list[Row]:
    """``count`` GIFT vouchers: the states in turn, every third one partly spent, every other
    one held by a customer (a few customers hold several)."""
    rows = []
    for i in range(count):
        state = STATES[i % 4]
        value = 5000
        balance = 0 if state == "REDEEMED" else (value - 1234 if i % 3 == 0 else value)
        holder = f"cust-{i % 997}" if i % 2 == 0 else None
        rows.append(Row(f"{prefix}{i:07d}-x", value, balance, state, holder))
    return rows


def to_csv(rows: list[Row], *, header: tuple[str, ...] = HEADER) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        writer.writerow(row.as_csv())
    return out.getvalue().encode()


def csv_of(lines: list[dict[str, Any]]) -> bytes:
    columns = list(dict.fromkeys(k for line in lines for k in line))
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, columns)
    writer.writeheader()
    writer.writerows(lines)
    return out.getvalue().encode()


def run_worker(db: Database) -> None:
    while run_due_operations(db, "import-test-worker", threading.Event()):
        pass
