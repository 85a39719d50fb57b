"""Gauges read from the database when Prometheus scrapes: the outbox and running operations.

Read at scrape time rather than kept by the processes that change them because the truth is in
the database: any number of API and worker processes share it, a process that dies takes its
in-memory gauges with it, and every API process answers the same. Each reader is a few small
queries over partial or leading-column indexes of *unfinished* rows only, so they stay as cheap
as the backlog is small, however many finished rows the tables hold. The readers belong to the
features whose tables they read (``delivery/gauges.py``, ``operations/gauges.py``); the
composition module hands them in, so observability imports no feature.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from voucherd.db.engine import Database
from voucherd.observability.metrics import multiprocess_dir

log = logging.getLogger("voucherd.observability")

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Reads gauges inside the scrape's one read-only unit of work, at the Database's ``now``.
GaugeReader = Callable[[Session, datetime], Iterable[GaugeMetricFamily]]


class DatabaseCollector(Collector):
    def __init__(self, db: Database, readers: Sequence[GaugeReader]) -> None:
        self.db = db
        self.readers = tuple(readers)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "voucherd_metrics_database_up",
            "1 when the database answered this scrape's queries, 0 when it did not (the "
            "outbox and operation gauges are then missing).",
        )
        try:
            families = self._read()
        except SQLAlchemyError as exc:
            log.warning("metrics: the database did not answer (%s)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self) -> list[GaugeMetricFamily]:
        now = self.db.now()
        with self.db.unit_of_work(write=False) as session:
            return [family for read in self.readers for family in read(session, now)]


def exposition(db: Database, readers: Sequence[GaugeReader]) -> bytes:
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
    from_database.register(DatabaseCollector(db, readers))
    return counters + generate_latest(from_database)
