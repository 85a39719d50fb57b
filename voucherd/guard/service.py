"""Counting requests and failed code lookups, and refusing callers past their limits.

The design and its reasons are in the package docstring (``voucherd/guard/__init__.py``); the
counting itself is in :mod:`.rates` (requests) and :mod:`.guessing` (failed lookups). Callers in
the core use the module functions at the bottom (:func:`admit_page_visitor`,
:func:`before_lookup`, :func:`failed_lookup`, :func:`tenant_changed`); each finds the request
being served through a context variable the middleware sets, and does nothing outside a request
(the CLI, workers, tests of services). Authentication reaches the guard without importing it:
the middleware watches for the caller (:func:`voucherd.auth.caller.watch_callers`).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

from sqlalchemy import select

from voucherd.auth.models import Tenant
from voucherd.config import Settings
from voucherd.db.engine import Database
from voucherd.guard.guessing import FailedLookups
from voucherd.guard.limits import TENANT_SETTING, RateLimited, TenantLimits, patched_limits
from voucherd.guard.models import GuardEvent
from voucherd.guard.rates import RequestRates
from voucherd.guard.visit import Visit

__all__ = [
    "TENANT_SETTING",
    "Guard",
    "RateLimited",
    "TenantLimits",
    "Visit",
    "admit_page_visitor",
    "before_lookup",
    "failed_lookup",
    "list_guard_events",
    "patched_limits",
    "tenant_changed",
]


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
        self._limits: dict[str, tuple[float, TenantLimits]] = {}
        self.rates = RequestRates(db, settings)
        self.lookups = FailedLookups(db, settings, self.defaults)

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
        self._count(visit, tenant_id, key_id, self.limits_for(tenant_id), self.clock())

    def admit_without_waiting(self, visit: Visit, tenant_id: str, key_id: str) -> bool:
        """:meth:`admit` from memory, for the event loop: False, counting nothing, when it would
        read the tenant's limits or share the counts with the database (then :meth:`admit`, in
        the threadpool, does both)."""
        if visit.admitted:
            return True
        cached = self._limits.get(tenant_id)
        if cached is None or cached[0] <= time.monotonic():
            return False
        now = self.clock()
        if self.rates.claim_sync(now):
            return False
        self._count(visit, tenant_id, key_id, cached[1], now, may_sync=False)
        return True

    def _count(
        self,
        visit: Visit,
        tenant_id: str,
        key_id: str,
        limits: TenantLimits,
        now: float,
        *,
        may_sync: bool = True,
    ) -> None:
        visit.admitted = True
        visit.tenant_id, visit.key_id = tenant_id, key_id
        visit.limits = limits
        self.rates.count(
            visit,
            [("key:" + key_id, limits.per_key), ("tenant:" + tenant_id, limits.per_tenant)],
            now,
            may_sync=may_sync,
        )

    def admit_page(self, visit: Visit) -> None:
        """Count a voucher page request against the client's address."""
        if visit.admitted:
            return
        visit.admitted = True
        self.rates.count(
            visit,
            [(visit.address_subject, self.settings.rate_limit_page_per_address)],
            self.clock(),
        )

    # --- guessing ------------------------------------------------------------------------------

    def before_lookup(self, visit: Visit) -> None:
        """Refuse a code lookup by a caller slowed down or refused for guessing."""
        self.lookups.before_lookup(visit)

    def record_failures(self, visit: Visit) -> None:
        """Write the request's failed lookups through to the shared counts (the middleware
        calls it before the answer leaves)."""
        self.lookups.record(visit)


# --- the request being served ------------------------------------------------------------------

_CURRENT: ContextVar[tuple[Guard, Visit] | None] = ContextVar("voucherd_guard_visit", default=None)


def enter(guard: Guard, visit: Visit) -> object:
    return _CURRENT.set((guard, visit))


def leave(token: object) -> None:
    _CURRENT.reset(token)  # type: ignore[arg-type]


def current() -> Visit | None:
    served = _CURRENT.get()
    return served[1] if served is not None else None


def admit_page_visitor() -> None:
    """The voucher page's hook: count the request against the client's address."""
    served = _CURRENT.get()
    if served is not None:
        served[0].admit_page(served[1])


def before_lookup() -> None:
    """Called by every lookup of a voucher by its code, before the database is asked."""
    served = _CURRENT.get()
    if served is not None:
        served[0].before_lookup(served[1])


def failed_lookup() -> None:
    """Called when a lookup by code found nothing; counted when the answer goes out."""
    served = _CURRENT.get()
    if served is not None:
        served[1].failures += 1


def tenant_changed(tenant_id: str) -> None:
    """A tenant's limits changed through this process: use the new ones from the next request."""
    served = _CURRENT.get()
    if served is not None:
        served[0].forget_limits(tenant_id)


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
