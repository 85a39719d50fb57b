"""Failed code lookups: slow down, then refuse, a caller who guesses voucher codes.

Counted per API key and per client address, never per code (the package docstring says why).
Misses are rare, so they are written through before the answer leaves; a process learns a
subject's state from its own writes.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from voucherd.config import Settings
from voucherd.db.engine import Database
from voucherd.errors import ErrorCode
from voucherd.guard.counters import Pruner, add_counts
from voucherd.guard.limits import RateLimited, TenantLimits
from voucherd.guard.models import GUESS, GuardEvent
from voucherd.guard.visit import Visit

log = logging.getLogger("voucherd.guard")


@dataclass(frozen=True)
class _Failures:
    window_start: int
    failures: int
    last_at: float  # the Database clock's epoch seconds of the latest failure


class FailedLookups:
    """One per app (API process): each subject's failures as last written, by window.

    Guessing windows use the Database's clock (``db.now()``), the one tests move."""

    def __init__(self, db: Database, settings: Settings, defaults: TenantLimits) -> None:
        self.db = db
        self.settings = settings
        self.defaults = defaults
        self._failures: dict[str, _Failures] = {}
        self._pruner = Pruner(GUESS)

    def _subjects(self, visit: Visit) -> list[tuple[str, int, int]]:
        """(subject, slow after, refuse after) for the request's key and its address."""
        subjects = []
        if visit.key_id is not None:
            limits = visit.limits or self.defaults
            subjects.append(
                (f"key:{visit.key_id}", limits.guess_slow_after, limits.guess_refuse_after)
            )
        subjects.append(
            (
                visit.address_subject,
                self.settings.guess_slow_after,
                self.settings.guess_refuse_after,
            )
        )
        return subjects

    def _window(self, now: float) -> int:
        width = self.settings.guess_window_seconds
        return int(now // width) * width

    def before_lookup(self, visit: Visit) -> None:
        """Refuse a code lookup by a caller slowed down or refused for guessing."""
        now = self.db.now().timestamp()
        window_start = self._window(now)
        for subject, slow_after, refuse_after in self._subjects(visit):
            state = self._failures.get(subject)
            if state is None or state.window_start != window_start:
                continue
            if state.failures >= refuse_after:
                end = window_start + self.settings.guess_window_seconds
                _refuse(visit, max(1, math.ceil(end - now)), end)
            wait = state.last_at + self.settings.guess_slow_seconds - now
            if state.failures >= slow_after and wait > 0:
                _refuse(visit, max(1, math.ceil(wait)), None)

    def record(self, visit: Visit) -> None:
        """Add the request's failed lookups to its key's and address's shared counts, and
        record an event when one crosses a threshold; in one transaction."""
        now = self.db.now()
        stamp = now.timestamp()
        window_start = self._window(stamp)
        subjects = self._subjects(visit)
        rows = [
            {
                "kind": GUESS,
                "subject": subject,
                "window_start": window_start,
                "hits": visit.failures,
                "last_at": now,
            }
            for subject, _, _ in sorted(subjects)
        ]
        try:
            added, crossed = self._add(visit, rows, subjects, now, window_start)
        except SQLAlchemyError as exc:
            # The answer goes out anyway (the database is likely down and it is a 503).
            log.warning("failed lookups not counted: %s", type(exc).__name__)
            return
        for subject, _, hits in added:
            self._failures[subject] = _Failures(window_start, hits, stamp)
        if len(self._failures) > 100_000:
            self._failures = {
                s: f for s, f in self._failures.items() if f.window_start >= window_start
            }
        for kind, subject, hits in crossed:
            # The key id is no secret; the address is personal data and stays in the event row.
            who = subject if subject.startswith("key:") else "a client address"
            log.warning("%s: %s after %d failed voucher lookups", kind, who, hits)

    def _add(
        self,
        visit: Visit,
        rows: list[dict[str, Any]],
        subjects: list[tuple[str, int, int]],
        now: datetime,
        window_start: int,
    ) -> tuple[list[tuple[str, int, int]], list[tuple[str, str, int]]]:
        crossed: list[tuple[str, str, int]] = []
        thresholds = {s: (slow, refuse) for s, slow, refuse in subjects}
        with self.db.unit_of_work() as session:
            added = add_counts(session, rows)
            for subject, _, hits in added:
                before = hits - visit.failures
                slow_after, refuse_after = thresholds[subject]
                for kind, threshold in (
                    ("guessing_slowed", slow_after),
                    ("guessing_refused", refuse_after),
                ):
                    if before < threshold <= hits:
                        crossed.append((kind, subject, hits))
                        session.add(
                            GuardEvent(
                                kind=kind,
                                tenant_id=visit.tenant_id,
                                key_id=visit.key_id,
                                address=visit.address[:64],
                                subject=subject,
                                failures=hits,
                                created_at=now,
                            )
                        )
            self._pruner.prune(session, window_start - self.settings.guess_window_seconds)
            session.commit()
        return added, crossed


def _refuse(visit: Visit, retry_after: int, retry_at: int | None) -> None:
    visit.retry_after = retry_after
    visit.retry_at = retry_at
    raise RateLimited(
        f"too many failed voucher lookups; retry in {retry_after} seconds",
        retry_after=retry_after,
        code=ErrorCode.TOO_MANY_FAILED_LOOKUPS,
    )
