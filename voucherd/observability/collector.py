"""Gauges read from the database when Prometheus scrapes: the outbox and running operations.

Read at scrape time rather than kept by the processes that change them because the truth is in
the database: any number of API and worker processes share it, a process that dies takes its
in-memory gauges with it, and every API process answers the same. Each scrape costs two small
queries, both served by partial or leading-column indexes over *unfinished* rows only
(``ix_delivery_due``, ``ix_operation_status_run_after``), so they stay as cheap as the backlog
is small, however many finished deliveries and operations the tables hold.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import cast

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Table, func, select
from sqlalchemy.exc import SQLAlchemyError

from voucherd.db.engine import Database
from voucherd.delivery.models import Delivery
from voucherd.observability.metrics import multiprocess_dir
from voucherd.operations.models import PROCESSING, Operation

log = logging.getLogger("voucherd.observability")

_DELIVERY = cast(Table, Delivery.__table__).c
_OPERATION = cast(Table, Operation.__table__).c
_UNFINISHED = ("PENDING", "SENDING")
CONTENT_TYPE = CONTENT_TYPE_LATEST


class DatabaseCollector(Collector):
    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "voucherd_metrics_database_up",
            "1 when the database answered this scrape's queries, 0 when it did not (the "
            "outbox and operation gauges are then missing).",
        )
        try:
            families = list(self._read())
        except SQLAlchemyError as exc:
            log.warning("metrics: the database did not answer (%s)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self) -> Iterator[GaugeMetricFamily]:
        now = self.db.now()
        with self.db.unit_of_work(write=False) as session:
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
            running = session.execute(
                select(
                    _OPERATION.kind,
                    func.count(),
                    func.coalesce(func.sum(_OPERATION.done), 0),
                    func.coalesce(func.sum(_OPERATION.total), 0),
                )
                .where(_OPERATION.status == PROCESSING)
                .group_by(_OPERATION.kind)
            ).all()
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
        in_progress = GaugeMetricFamily(
            "voucherd_operations_in_progress",
            "Long operations (exports, order mints) not finished yet, by kind.",
            labels=["kind"],
        )
        done = GaugeMetricFamily(
            "voucherd_operations_items_done",
            "Items the unfinished operations of a kind have done so far (their progress.done).",
            labels=["kind"],
        )
        total = GaugeMetricFamily(
            "voucherd_operations_items_total",
            "Items the unfinished operations of a kind have to do (their progress.total, where "
            "known).",
            labels=["kind"],
        )
        for kind, count, done_items, total_items in running:
            in_progress.add_metric([kind], int(count))
            done.add_metric([kind], int(done_items))
            total.add_metric([kind], int(total_items))
        yield in_progress
        yield done
        yield total


def exposition(db: Database) -> bytes:
    """This process's (or, in multiprocess mode, all processes') counters, then the database's
    gauges: two registries rendered one after the other, which the text format allows as long as
    no metric name appears in both."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        counters = generate_latest(registry)
    else:
        counters = generate_latest(REGISTRY)
    from_database = CollectorRegistry(auto_describe=False)
    from_database.register(DatabaseCollector(db))
    return counters + generate_latest(from_database)
