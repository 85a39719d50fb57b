"""Gauges of the operations in progress, read at Prometheus' scrape (see
observability/collector.py): one query over ``ix_operation_status_run_after``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import cast

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from voucherd.operations.models import PROCESSING, Operation

_OPERATION = cast(Table, Operation.__table__).c


def operation_gauges(session: Session, now: datetime) -> Iterator[GaugeMetricFamily]:
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
        "Items the unfinished operations of a kind have to do (their progress.total, where known).",
        labels=["kind"],
    )
    for kind, count, done_items, total_items in running:
        in_progress.add_metric([kind], int(count))
        done.add_metric([kind], int(done_items))
        total.add_metric([kind], int(total_items))
    yield in_progress
    yield done
    yield total
