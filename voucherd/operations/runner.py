from __future__ import annotations

import threading

from voucherd.db.engine import Database


def run_due_operations(db: Database, worker_id: str, stop: threading.Event) -> int:
    """Claim due operations, run them, record the outcomes; how many were handled."""
    return 0
