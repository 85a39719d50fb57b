"""The outbox's gauges, read at Prometheus' scrape (observability/collector.py says why)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import cast

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from voucherd.delivery.models import Delivery

_DELIVERY = cast(Table, Delivery.__table__).c
_UNFINISHED = ("PENDING", "SENDING")


def outbox_gauges(session: Session, now: datetime) -> Iterator[GaugeMetricFamily]:
    """The backlog, by state, and the age of its most overdue delivery: two small queries over
    the partial index of unfinished rows (``ix_delivery_due``)."""
    by_state: dict[str, int] = {
        state: int(count)
        for state, count in session.execute(
            select(_DELIVERY.state, func.count())
            .where(_DELIVERY.state.in_(_UNFINISHED))
            .group_by(_DELIVERY.state)
        )
    }
    oldest_due = session.scalar(
        select(func.min(_DELIVERY.due_at)).where(
            _DELIVERY.state.in_(_UNFINISHED), _DELIVERY.due_at <= now
        )
    )
    depth = GaugeMetricFamily(
        "voucherd_outbox_deliveries",
        "Deliveries not finished yet: PENDING (waiting to be sent or retried) and SENDING "
        "(claimed by a worker).",
        labels=["state"],
    )
    for state in _UNFINISHED:
        depth.add_metric([state], int(by_state.get(state, 0)))
    yield depth
    age = GaugeMetricFamily(
        "voucherd_outbox_oldest_due_age_seconds",
        "How long the most overdue delivery has been due without being sent (a SENDING one "
        "counts once its lease ran out); 0 when none is due. A growing value means workers "
        "are down or cannot keep up.",
    )
    age.add_metric([], max(0.0, (now - oldest_due).total_seconds()) if oldest_due else 0.0)
    yield age
