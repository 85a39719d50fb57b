from __future__ import annotations

import threading

from voucherd.db.engine import Database


def run_due_deliveries(db: Database, worker_id: str, stop: threading.Event) -> int:
    """Claim due deliveries, send them, record the outcomes; how many were handled."""
    return 0
