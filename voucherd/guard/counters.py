"""The shared counter rows both of the guard's counts (request rates, failed lookups) add to."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, delete
from sqlalchemy.orm import Session

from voucherd.db.dialect import upsert
from voucherd.guard.models import GuardCounter

_COUNTER = cast(Table, GuardCounter.__table__)


def add_counts(session: Session, rows: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
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


class Pruner:
    """Drops windows that ended, once per window and process."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._before: int | None = None

    def prune(self, session: Session, before: int) -> None:
        if self._before == before:
            return
        self._before = before
        session.execute(
            delete(GuardCounter).where(
                GuardCounter.kind == self.kind, GuardCounter.window_start < before
            )
        )
