"""The process's counters, and the text ``/metrics`` answers.

The core calls :func:`vouchers_issued`, :func:`redemption`, :func:`delivery_recorded` and
:func:`webhook_recorded` once, right after the use case committed: a refused or rolled-back
attempt counts nothing. Labels are small closed sets (method, route template, status, channel,
event type, outcome); no tenant, endpoint, customer or code ever becomes a label, which would
leak data and grow the series without bound.

This module imports nothing of voucherd's, so any service can import it.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import Counter, Histogram
from sqlalchemy import event
from sqlalchemy.orm import Session

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

HTTP_REQUESTS = Counter(
    "voucherd_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "voucherd_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by route template and method.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
VOUCHERS_ISSUED = Counter(
    "voucherd_vouchers_issued",
    "Vouchers created and committed: one at a time (issue) or in bulk (mint).",
    ["how"],
)
REDEMPTIONS = Counter(
    "voucherd_redemptions",
    "Redemptions committed (action=redeem) and rolled back (action=rollback).",
    ["action"],
)
DELIVERIES = Counter(
    "voucherd_deliveries",
    "Delivery state changes committed, by channel and the state entered: by workers after an "
    "attempt (SENT, DELIVERED, FAILED; PENDING means it will be retried) and by providers' "
    "status callbacks (DELIVERED, FAILED).",
    ["channel", "outcome"],
)

WEBHOOK_MESSAGES = Counter(
    "voucherd_webhook_messages",
    "Event webhook attempts recorded by workers, by event type and outcome: DELIVERED, RETRY "
    "(failed, to be tried again after a backoff), FAILED (given up: a permanent refusal or too "
    "many attempts) and RELEASED (the worker stopped before sending).",
    ["event_type", "outcome"],
)


def vouchers_issued(how: str, count: int = 1) -> None:
    VOUCHERS_ISSUED.labels(how).inc(count)


def vouchers_issued_when_committed(session: Session, how: str, count: int) -> None:
    """For vouchers minted inside another use case's transaction (a client order's batch, an
    AUTO_UPDATE pool topped up): counted if and when that transaction commits."""
    event.listen(session, "after_commit", lambda _: vouchers_issued(how, count), once=True)


def redemption(action: str) -> None:
    REDEMPTIONS.labels(action).inc()


def delivery_recorded(channel: str, outcome: str) -> None:
    DELIVERIES.labels(channel, outcome).inc()


def webhook_recorded(event_type: str, outcome: str) -> None:
    WEBHOOK_MESSAGES.labels(event_type, outcome).inc()


# The labelled series of each (method, route, status) met so far: ``labels()`` takes a lock and
# builds its key on every call, a measurable part of a request's bookkeeping. Bounded: routes
# are templates (or "<unmatched>"), never paths, and statuses are few.
_REQUEST_SERIES: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    series = _REQUEST_SERIES.get((method, route, status))
    if series is None:
        series = (
            HTTP_REQUESTS.labels(method, route, str(status)),
            HTTP_DURATION.labels(method, route),
        )
        if len(_REQUEST_SERIES) > 10_000:  # a client inventing methods: stay small
            _REQUEST_SERIES.clear()
        _REQUEST_SERIES[(method, route, status)] = series
    series[0].inc()
    series[1].observe(seconds)


def multiprocess_dir() -> str | None:
    """The directory processes share their counters through, when running several."""
    return os.environ.get(MULTIPROC_ENV) or None
