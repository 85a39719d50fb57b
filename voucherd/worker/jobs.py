"""Every kind of background work a worker runs, polled in this order.

A job claims what is due (with a lease), runs it outside the claiming transaction, records the
outcome, and returns how many items it handled; 0 tells the worker it may sleep.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from voucherd.db.engine import Database
from voucherd.delivery.outbox import run_due_deliveries
from voucherd.operations.runner import run_due_operations

Job = Callable[[Database, str, threading.Event], int]

JOBS: tuple[Job, ...] = (run_due_deliveries, run_due_operations)
