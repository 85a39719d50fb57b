"""The worker: polls every job it was given (``voucherd.composition.JOBS``) until told to stop.

Two ways to run it, one loop: ``voucherd worker`` (a process; SIGTERM or Ctrl-C stop it) and the
thread ``voucherd serve`` starts inside the API process unless ``--no-worker`` is given. Jobs
claim their work with leases, so any number of workers can share one PostgreSQL. Stopping is
cooperative: the stop event is set, each job finishes what it is sending and releases what it
claimed but has not started, and the loop returns.

A job that found nothing is polled again after ``worker_poll_seconds``, as when the whole worker
is idle, not on every pass of a busy one: while deliveries stream, polling the other jobs after
each batch cost two claim transactions per 32 messages (about a tenth of the worker's CPU and
as many round trips of PostgreSQL's), to learn each time that there was nothing to do. The
wait for a job's new work is the idle worker's, at most one poll interval (and the batch in hand).
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Sequence
from types import FrameType

from voucherd.db.engine import Database
from voucherd.worker.jobs import Job

log = logging.getLogger("voucherd.worker")

_MAX_ERROR_PAUSE = 30.0


def new_worker_id() -> str:
    """Who holds a lease, as operators read it in delivery events: host, process, a nonce."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(3)}"


class Worker:
    def __init__(
        self,
        db: Database,
        jobs: Sequence[Job],
        *,
        stop: threading.Event | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.db = db
        self.stop = stop or threading.Event()
        self.worker_id = worker_id or new_worker_id()
        self.jobs = tuple(jobs)
        self._errors = 0
        # When each job is next polled (time.monotonic()); 0: on the next pass.
        self._next_poll = [0.0] * len(self.jobs)

    def run(self) -> None:
        """Poll until the stop event is set; busy while there is work, sleeping when not."""
        log.info("worker %s started", self.worker_id)
        while not self.stop.is_set():
            handled = self.run_once()
            if handled == 0 and not self.stop.is_set():
                self.stop.wait(self._pause())
        log.info("worker %s stopped", self.worker_id)

    def run_once(self) -> int:
        """One pass over every job due a poll; how many items they handled."""
        handled = 0
        for index, job in enumerate(self.jobs):
            if self.stop.is_set():
                break
            now = time.monotonic()
            if now < self._next_poll[index]:
                continue
            try:
                done = job(self.db, self.worker_id, self.stop)
            except Exception:
                # The database may be restarting: log, pause (longer each time), carry on. The
                # job's claimed rows come back to someone when their leases run out.
                self._errors += 1
                log.exception("worker %s: job %s failed", self.worker_id, _name(job))
                continue
            self._errors = 0
            handled += done
            self._next_poll[index] = 0.0 if done else now + self.db.settings.worker_poll_seconds
        return handled

    def _pause(self) -> float:
        """How long an idle pass sleeps: until the first job is due its next poll (at most
        ``worker_poll_seconds``), longer after errors."""
        poll = self.db.settings.worker_poll_seconds
        if self._errors:
            return min(poll * 2 ** min(self._errors, 10), _MAX_ERROR_PAUSE)
        soonest = min(self._next_poll, default=0.0) - time.monotonic()
        return min(max(soonest, 0.0), poll)


def _name(job: Job) -> str:
    return getattr(job, "__name__", repr(job))


class BackgroundWorker:
    """A worker on a daemon thread of the API process (``voucherd serve`` without --no-worker)."""

    def __init__(self, db: Database, jobs: Sequence[Job]) -> None:
        self.worker = Worker(db, jobs)
        self.thread = threading.Thread(target=self.worker.run, name="voucherd-worker", daemon=True)

    def start(self) -> BackgroundWorker:
        self.thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        self.worker.stop.set()
        wait = timeout if timeout is not None else self.worker.db.settings.delivery_timeout_seconds
        self.thread.join(wait + 5)


def run_until_signalled(db: Database, jobs: Sequence[Job]) -> None:
    """``voucherd worker``: run in this thread until SIGTERM or SIGINT; a second one exits."""
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            raise SystemExit(128 + signum)
        log.info("signal %d: finishing what is in hand, then stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    Worker(db, jobs, stop=stop).run()
