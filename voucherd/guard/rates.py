"""Request rates: count each request locally, share the counts every sync interval.

The design and its reasons (fixed windows, the bounded overshoot across processes) are in the
package docstring (``voucherd/guard/__init__.py``).
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError

from voucherd.config import Settings
from voucherd.db.engine import Database
from voucherd.guard.counters import Pruner, add_counts
from voucherd.guard.limits import RateLimited
from voucherd.guard.models import RATE
from voucherd.guard.visit import Visit

log = logging.getLogger("voucherd.guard")


@dataclass
class _Count:
    """One subject's requests in one window: the shared total last seen, plus ours since."""

    window: int
    shared: int = 0
    pending: int = 0


class RequestRates:
    """One per app (API process): the local counts and when they were last shared."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self._lock = threading.Lock()
        self._syncing = threading.Lock()
        self._counts: dict[str, _Count] = {}
        self._last_sync = -math.inf
        self._claimed: float | None = None  # when a request last claimed the due sync
        self._pruner = Pruner(RATE)

    def count(
        self, visit: Visit, subjects: list[tuple[str, int]], now: float, *, may_sync: bool = True
    ) -> None:
        """Count the request against each subject in turn, stopping at the first it exceeds.

        So a request refused by its key's limit is not counted against its tenant: one runaway
        key cannot starve its sibling keys. The subject with the least left speaks for the
        request (in the headers, in a refusal). ``now`` is wall-clock seconds (the guard's
        clock, which tests move). Without ``may_sync`` (on the event loop) it never shares the
        counts itself: a request that :meth:`claim_sync` sent off the loop does.
        """
        width = self.settings.rate_limit_window_seconds
        window = int(now // width)
        tightest: tuple[int, int] | None = None
        for subject, limit in subjects:
            with self._lock:
                count = self._counts.get(subject)
                if count is None or count.window != window:
                    count = self._counts[subject] = _Count(window)
                count.pending += 1
            if may_sync:
                self._maybe_sync(now, window)
            with self._lock:
                count = self._counts.get(subject)
                used = count.shared + count.pending if count and count.window == window else 1
            if tightest is None or limit - used < tightest[0]:
                tightest = (limit - used, limit)
            if used > limit:
                break
        assert tightest is not None
        remaining, limit = tightest
        visit.limit, visit.remaining = limit, max(0, remaining)
        if remaining < 0:
            window_end = (window + 1) * width
            visit.retry_after = max(1, math.ceil(window_end - now))
            visit.retry_at = window_end
            raise RateLimited(
                f"too many requests: at most {limit} every {width} seconds; retry in "
                f"{visit.retry_after} seconds",
                retry_after=visit.retry_after,
            )

    def claim_sync(self, now: float) -> bool:
        """For a request counted on the event loop: whether it must instead be counted where it
        may wait, because the counts are due to be shared (a database write). One request per
        interval claims the sync; the others carry on with their local counts meanwhile, as they
        do while a sync runs. A claim not honoured within an interval (its request failed before
        being counted) lapses, so the counts are shared all the same."""
        every = self.settings.rate_limit_sync_seconds
        if every <= 0:
            return True  # written through: every request waits for its exact total
        with self._lock:
            if self._last_sync == -math.inf:
                self._last_sync = now  # as _maybe_sync: the first request starts the interval
                return False
            if now - self._last_sync < every:
                return False
            if self._claimed is not None and now - self._claimed < every:
                return False
            self._claimed = now
            return True

    def _maybe_sync(self, now: float, window: int) -> None:
        every = self.settings.rate_limit_sync_seconds
        if every > 0 and self._last_sync == -math.inf:
            # The first request of a process starts the first interval rather than paying
            # for a sync: a process that served one request has nothing worth sharing yet.
            self._last_sync = now
            return
        if every > 0 and now - self._last_sync < every:
            return
        # Written through (every == 0), a request waits for the sync so its total is exact;
        # otherwise one request syncs and the rest carry on with their local counts.
        if not self._syncing.acquire(blocking=every == 0):
            return
        try:
            self._last_sync = now
            with self._lock:
                batch = [(s, c.window, c.pending) for s, c in self._counts.items() if c.pending]
                for count in self._counts.values():
                    count.shared += count.pending
                    count.pending = 0
                for stale in [s for s, c in self._counts.items() if c.window < window]:
                    del self._counts[stale]
            if not batch:
                return
            totals = self._add_rates(batch, now, window)
            with self._lock:
                for (subject, at), total in totals.items():
                    seen = self._counts.get(subject)
                    if seen is not None and seen.window == at:
                        seen.shared = max(seen.shared, total)
        except SQLAlchemyError as exc:
            # The limits fall back on this process's own counts until the database answers.
            log.warning("rate counters not shared: %s", type(exc).__name__)
        finally:
            self._syncing.release()

    def _add_rates(
        self, batch: list[tuple[str, int, int]], now: float, window: int
    ) -> dict[tuple[str, int], int]:
        width = self.settings.rate_limit_window_seconds
        moment = datetime.fromtimestamp(now, UTC)
        rows = [
            {"kind": RATE, "subject": s, "window_start": w * width, "hits": n, "last_at": moment}
            for s, w, n in sorted(batch)  # one order for every process: no deadlock
        ]
        with self.db.unit_of_work() as session:
            added = add_counts(session, rows)
            self._pruner.prune(session, (window - 1) * width)
            session.commit()
        return {(s, start // width): hits for s, start, hits in added}
