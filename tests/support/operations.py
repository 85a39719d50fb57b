"""Driving long-running operations the way a worker does."""

from __future__ import annotations

import threading

from voucherd.composition import run_due_operations
from voucherd.db.engine import Database


def run_worker(db: Database, worker: str = "w1") -> int:
    """Let a worker run until nothing is due; how many operations it took up."""
    handled = 0
    while taken := run_due_operations(db, worker, threading.Event()):
        handled += taken
    return handled
