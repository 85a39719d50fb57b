"""Counting requests and failed code lookups, and refusing callers past their limits.

The design and its reasons are in the package docstring (``voucherd/guard/__init__.py``).
Callers in the core use the four module functions at the bottom (:func:`admit_caller`,
:func:`admit_page_visitor`, :func:`before_lookup`, :func:`failed_lookup`); each finds the
request being served through a context variable the middleware sets, and does nothing outside
a request (the CLI, workers, tests of services).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import threading
import time
from collections.abc import Callable, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from voucherd.auth.models import Tenant
from voucherd.config import Settings
from voucherd.db.dialect import upsert
from voucherd.db.engine import Database
from voucherd.errors import DomainError, InvalidInput
from voucherd.guard.models import GUESS, RATE, GuardCounter, GuardEvent

log = logging.getLogger("voucherd.guard")
_COUNTER = cast(Table, GuardCounter.__table__)
# The tenant settings key that holds a tenant's own numbers (see TenantLimits).
TENANT_SETTING = "rate_limits"


class RateLimited(DomainError):
    """Too many requests, or too many failed code lookups: come back after ``retry_after`` s."""

    status, code, title = 429, "rate_limited", "Too many requests"

    def __init__(self, detail: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(detail, code=code)
        self.retry_after = retry_after


@dataclass(frozen=True)
class TenantLimits:
    """The numbers a tenant may set for itself; the rest are the operator's (Settings)."""

    per_key: int
    per_tenant: int
    guess_slow_after: int
    guess_refuse_after: int

    @classmethod
    def defaults(cls, settings: Settings) -> TenantLimits:
        return cls(
            per_key=settings.rate_limit_per_key,
            per_tenant=settings.rate_limit_per_tenant,
            guess_slow_after=settings.guess_slow_after,
            guess_refuse_after=settings.guess_refuse_after,
        )

    def merged(self, overrides: dict[str, Any] | None) -> TenantLimits:
        known = {k: int(v) for k, v in (overrides or {}).items() if k in _FIELDS and v is not None}
        return TenantLimits(**{**self.__dict__, **known})

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


_FIELDS = frozenset(TenantLimits.__dataclass_fields__)


def patched_limits(
    stored: dict[str, Any] | None, patch: dict[str, int | None], settings: Settings
) -> dict[str, int]:
    """A tenant's stored overrides after a PATCH (null: back to the default), checked whole."""
    overrides = {k: v for k, v in {**(stored or {}), **patch}.items() if v is not None}
    effective = TenantLimits.defaults(settings).merged(overrides)
    if effective.guess_slow_after > effective.guess_refuse_after:
        raise InvalidInput(
            f"must not exceed guess_refuse_after ({effective.guess_refuse_after})",
            field="rate_limits.guess_slow_after",
        )
    return {k: int(v) for k, v in overrides.items()}


@dataclass
class _Count:
    """One subject's requests in one window: the shared total last seen, plus ours since."""

    window: int
    shared: int = 0
    pending: int = 0


@dataclass(frozen=True)
class _Failures:
    window_start: int
    failures: int
    last_at: float  # the Database clock's epoch seconds of the latest failure


@dataclass
class Visit:
    """What the guard learns about one request while it is served."""

    guard: Guard
    address: str
    tenant_id: str | None = None
    key_id: str | None = None
    # The tenant's numbers, read when the request was admitted (before any unit of work, so a
    # lookup never needs a second connection to learn them).
    limits: TenantLimits | None = None
    admitted: bool = False
    failures: int = 0
    limit: int | None = None
    remaining: int | None = None
    retry_after: int | None = None
    retry_at: int | None = None
    _address_subject: str | None = field(default=None, repr=False)

    @property
    def address_subject(self) -> str:
        if self._address_subject is None:
            digest = hashlib.sha256(self.address.encode()).hexdigest()[:32]
            self._address_subject = f"addr:{digest}"
        return self._address_subject

    def headers(self) -> list[tuple[str, str]]:
        """Voucherify's rate-limit headers, and Retry-After on a refusal."""
        headers: list[tuple[str, str]] = []
        if self.limit is not None and self.remaining is not None:
            headers += [
                ("X-Rate-Limit-Limit", str(self.limit)),
                ("X-Rate-Limit-Remaining", str(self.remaining)),
            ]
        if self.retry_after is not None:
            headers.append(("Retry-After", str(self.retry_after)))
            if self.retry_at is not None:
                headers.append(("X-Rate-Limit-Retry", str(self.retry_at)))
        return headers


class Guard:
    """One per app (API process): local counts, the tenants' limits, failure states.

    ``clock`` gives wall-clock seconds for the request windows; guessing windows use the
    Database's clock (``db.now()``), the one tests move. Tests of rate limits hand their own.
    """

    def __init__(
        self, db: Database, settings: Settings, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.enabled = settings.guard_enabled
        self.defaults = TenantLimits.defaults(settings)
        self._trusted = [ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies]
        self._lock = threading.Lock()
        self._syncing = threading.Lock()
        self._counts: dict[str, _Count] = {}
        self._last_sync = -math.inf
        self._pruned: dict[str, int] = {}
        self._failures: dict[str, _Failures] = {}
        self._limits: dict[str, tuple[float, TenantLimits]] = {}

    # --- who is calling ------------------------------------------------------------------------

    def client_address(self, scope: MutableMapping[str, Any]) -> str:
        """The connection's address; a trusted proxy's X-Forwarded-For only when it sent one."""
        client = scope.get("client")
        host = str(client[0]) if client else "unknown"
        if not self._trusted or not self._is_trusted(host):
            return host
        forwarded = [
            value.decode("latin-1")
            for name, value in scope.get("headers", [])
            if name == b"x-forwarded-for"
        ]
        hops = [h.strip() for line in forwarded for h in line.split(",") if h.strip()]
        # The right-most address no trusted proxy vouches for is the client; anything to its
        # left was written by the client itself and may be forged.
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                return hop[:64]
        return host

    def _is_trusted(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._trusted)

    def limits_for(self, tenant_id: str) -> TenantLimits:
        """The tenant's numbers, trusted for ``key_cache_seconds`` like a verified key."""
        cached = self._limits.get(tenant_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        with self.db.unit_of_work(write=False) as session:
            stored = session.scalar(select(Tenant.settings).where(Tenant.id == tenant_id))
        limits = self.defaults.merged((stored or {}).get(TENANT_SETTING))
        ttl = self.settings.key_cache_seconds
        if ttl > 0:
            if len(self._limits) > 10_000:
                self._limits.clear()
            self._limits[tenant_id] = (time.monotonic() + ttl, limits)
        return limits

    def forget_limits(self, tenant_id: str) -> None:
        self._limits.pop(tenant_id, None)

    # --- request rates -------------------------------------------------------------------------

    def admit(self, visit: Visit, tenant_id: str, key_id: str) -> None:
        """Count an authenticated request against its key and tenant; refuse it past either."""
        if visit.admitted:
            return
        visit.admitted = True
        visit.tenant_id, visit.key_id = tenant_id, key_id
        limits = visit.limits = self.limits_for(tenant_id)
        self._count(
            visit, [(f"key:{key_id}", limits.per_key), (f"tenant:{tenant_id}", limits.per_tenant)]
        )

    def admit_page(self, visit: Visit) -> None:
        """Count a voucher page request against the client's address."""
        if visit.admitted:
            return
        visit.admitted = True
        self._count(visit, [(visit.address_subject, self.settings.rate_limit_page_per_address)])

    def _count(self, visit: Visit, subjects: list[tuple[str, int]]) -> None:
        """Count the request against each subject in turn, stopping at the first it exceeds.

        So a request refused by its key's limit is not counted against its tenant: one runaway
        key cannot starve its sibling keys. The subject with the least left speaks for the
        request (in the headers, in a refusal).
        """
        width = self.settings.rate_limit_window_seconds
        now = self.clock()
        window = int(now // width)
        tightest: tuple[int, int] | None = None
        for subject, limit in subjects:
            with self._lock:
                count = self._counts.get(subject)
                if count is None or count.window != window:
                    count = self._counts[subject] = _Count(window)
                count.pending += 1
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
            added = _add(session, rows)
            self._prune(session, RATE, (window - 1) * width)
            session.commit()
        return {(s, start // width): hits for s, start, hits in added}

    def _prune(self, session: Session, kind: str, before: int) -> None:
        """Drop windows that ended, once per window and process."""
        if self._pruned.get(kind) == before:
            return
        self._pruned[kind] = before
        session.execute(
            delete(GuardCounter).where(
                GuardCounter.kind == kind, GuardCounter.window_start < before
            )
        )

    # --- guessing ------------------------------------------------------------------------------

    def _guess_subjects(self, visit: Visit) -> list[tuple[str, int, int]]:
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

    def _guess_window(self, now: float) -> int:
        width = self.settings.guess_window_seconds
        return int(now // width) * width

    def before_lookup(self, visit: Visit) -> None:
        """Refuse a code lookup by a caller slowed down or refused for guessing."""
        now = self.db.now().timestamp()
        window_start = self._guess_window(now)
        for subject, slow_after, refuse_after in self._guess_subjects(visit):
            state = self._failures.get(subject)
            if state is None or state.window_start != window_start:
                continue
            if state.failures >= refuse_after:
                end = window_start + self.settings.guess_window_seconds
                self._refuse_guesser(visit, max(1, math.ceil(end - now)), end)
            wait = state.last_at + self.settings.guess_slow_seconds - now
            if state.failures >= slow_after and wait > 0:
                self._refuse_guesser(visit, max(1, math.ceil(wait)), None)

    @staticmethod
    def _refuse_guesser(visit: Visit, retry_after: int, retry_at: int | None) -> None:
        visit.retry_after = retry_after
        visit.retry_at = retry_at
        raise RateLimited(
            f"too many failed voucher lookups; retry in {retry_after} seconds",
            retry_after=retry_after,
            code="too_many_failed_lookups",
        )

    def record_failures(self, visit: Visit) -> None:
        """Add the request's failed lookups to its key's and address's shared counts, and
        record an event when one crosses a threshold; in one transaction."""
        now = self.db.now()
        stamp = now.timestamp()
        window_start = self._guess_window(stamp)
        subjects = self._guess_subjects(visit)
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
            added, crossed = self._add_failures(visit, rows, subjects, now, window_start)
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

    def _add_failures(
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
            added = _add(session, rows)
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
            self._prune(session, GUESS, window_start - self.settings.guess_window_seconds)
            session.commit()
        return added, crossed


def _add(session: Session, rows: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
    """Add each row's hits to its counter; the shared totals after, as (subject, start, hits)."""
    statement = upsert(session, GuardCounter).values(rows)
    statement = statement.on_conflict_do_update(
        index_elements=[_COUNTER.c.kind, _COUNTER.c.subject, _COUNTER.c.window_start],
        set_={
            "hits": _COUNTER.c.hits + statement.excluded.hits,
            "last_at": statement.excluded.last_at,
        },
    ).returning(_COUNTER.c.subject, _COUNTER.c.window_start, _COUNTER.c.hits)
    return [(str(s), int(w), int(h)) for s, w, h in session.execute(statement)]


# --- the request being served ------------------------------------------------------------------

_CURRENT: ContextVar[Visit | None] = ContextVar("voucherd_guard_visit", default=None)


def enter(visit: Visit) -> object:
    return _CURRENT.set(visit)


def leave(token: object) -> None:
    _CURRENT.reset(token)  # type: ignore[arg-type]


def current() -> Visit | None:
    return _CURRENT.get()


def admit_caller(tenant_id: str, key_id: str) -> None:
    """Authentication's hook: count the request against its key and tenant (429 past them)."""
    visit = _CURRENT.get()
    if visit is not None:
        visit.guard.admit(visit, tenant_id, key_id)


def admit_page_visitor() -> None:
    """The voucher page's hook: count the request against the client's address."""
    visit = _CURRENT.get()
    if visit is not None:
        visit.guard.admit_page(visit)


def before_lookup() -> None:
    """Called by every lookup of a voucher by its code, before the database is asked."""
    visit = _CURRENT.get()
    if visit is not None:
        visit.guard.before_lookup(visit)


def failed_lookup() -> None:
    """Called when a lookup by code found nothing; counted when the answer goes out."""
    visit = _CURRENT.get()
    if visit is not None:
        visit.failures += 1


def tenant_changed(tenant_id: str) -> None:
    """A tenant's limits changed through this process: use the new ones from the next request."""
    visit = _CURRENT.get()
    if visit is not None:
        visit.guard.forget_limits(tenant_id)


def list_guard_events(
    db: Database, *, tenant_id: str | None = None, limit: int = 50
) -> list[GuardEvent]:
    """The newest callers slowed or refused for guessing, for an operator deciding whom to
    block. Events carry the client address on purpose; it is shown here and never logged."""
    query = select(GuardEvent).order_by(GuardEvent.created_at.desc(), GuardEvent.id.desc())
    if tenant_id is not None:
        query = query.where(GuardEvent.tenant_id == tenant_id)
    with db.unit_of_work(write=False) as session:
        return list(session.scalars(query.limit(limit)))
