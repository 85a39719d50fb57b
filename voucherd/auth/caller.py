"""Who is calling: the one value every use case receives, and the key scopes it may carry.

A leaf on purpose: every feature and face imports :class:`Caller`, so this module imports
nothing of the project but its errors (themselves a leaf). How a caller is found from a
credential is :mod:`voucherd.auth.service`'s business.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass, field

from voucherd.errors import Forbidden

SCOPES = ("issue", "redeem", "manage")


@dataclass(frozen=True)
class Caller:
    tenant_id: str
    key_id: str
    scopes: frozenset[str] = field(default_factory=frozenset)

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"this API key lacks the '{scope}' scope")


class KeyCache:
    """Verified keys for a few seconds, so a request does not pay a round trip to learn who it
    is. One per :class:`~voucherd.db.engine.Database` (not per process: tests build many apps
    and databases side by side). Revocation through the same Database is immediate; through
    another process, within the TTL."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, str, Caller]] = {}
        self._lock = threading.Lock()

    def get(self, key_id: str) -> tuple[str, Caller] | None:
        entry = self._entries.get(key_id)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1], entry[2]

    def put(self, key_id: str, secret_hash: str, caller: Caller, ttl: float) -> None:
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[key_id] = (time.monotonic() + ttl, secret_hash, caller)

    def forget(self, key_id: str) -> None:
        with self._lock:
            self._entries.pop(key_id, None)


# Whoever serves the current request and wants to know who is calling the moment it is known:
# the guard counts the request against the key and tenant there (429 past a limit). Set per
# request by the guard's middleware, so authentication needs no import of the guard.
CallerWatcher = Callable[[Caller], None]
# The same announcement when the watcher can take it without waiting on I/O (its counts and the
# tenant's limits in memory): True when taken, False (nothing counted) when only
# :func:`identified` can, off the event loop.
QuickWatcher = Callable[[Caller], bool]
_Watchers = tuple[CallerWatcher, QuickWatcher | None]
_WATCHER: ContextVar[_Watchers | None] = ContextVar("voucherd_caller_watcher", default=None)


def watch_callers(
    watcher: CallerWatcher, quick: QuickWatcher | None = None
) -> Token[_Watchers | None]:
    return _WATCHER.set((watcher, quick))


def stop_watching(token: Token[_Watchers | None]) -> None:
    _WATCHER.reset(token)


def identified(caller: Caller) -> None:
    """Authentication's announcement: this request acts as ``caller`` (may raise a 429)."""
    watchers = _WATCHER.get()
    if watchers is not None:
        watchers[0](caller)


def identified_without_waiting(caller: Caller) -> bool:
    """:func:`identified`, on the event loop: False, announcing nothing, when the watcher would
    have to wait (read the tenant's limits, share its counts); then call :func:`identified` in
    the threadpool. May raise a 429 like it."""
    watchers = _WATCHER.get()
    if watchers is None:
        return True
    quick = watchers[1]
    return quick is not None and quick(caller)
