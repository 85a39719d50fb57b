"""What a worker runs: jobs, polled in the order given.

A job claims what is due (with a lease), runs it outside the claiming transaction, records the
outcome, and returns how many items it handled; 0 tells the worker it may sleep. Which jobs
there are is the composition module's choice (``voucherd.composition.JOBS``), handed to the
worker by whoever starts it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from voucherd.db.engine import Database

Job = Callable[[Database, str, threading.Event], int]
