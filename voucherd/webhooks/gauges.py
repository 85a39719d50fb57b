"""The webhook outbox's gauges, read at Prometheus' scrape (observability/collector.py says why).

The same shape as the delivery outbox's (``voucherd.delivery.gauges``): the backlog by state and
the age of its most overdue message, plus how many endpoints are disabled, since a disabled
endpoint's messages wait rather than fail and would otherwise go unseen.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import cast

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import Table, and_, func, select
from sqlalchemy.orm import Session

from voucherd.webhooks.models import ENDPOINT_STATES, WebhookEndpoint, WebhookMessage

_M = cast(Table, WebhookMessage.__table__)
_E = cast(Table, WebhookEndpoint.__table__)
_UNFINISHED = ("PENDING", "SENDING")


def webhook_gauges(session: Session, now: datetime) -> Iterator[GaugeMetricFamily]:
    """Three small queries: the unfinished messages by state (over the partial index of
    unfinished rows, ``ix_webhook_message_due``), the most overdue one of an ENABLED endpoint
    (a disabled endpoint's messages wait on purpose: they are not overdue), and endpoints by
    state."""
    by_state: dict[str, int] = {
        state: int(count)
        for state, count in session.execute(
            select(_M.c.state, func.count()).where(_M.c.state.in_(_UNFINISHED)).group_by(_M.c.state)
        )
    }
    oldest_due = session.scalar(
        select(func.min(_M.c.due_at))
        .select_from(_M.join(_E, and_(_E.c.id == _M.c.endpoint_id, _E.c.state == "ENABLED")))
        .where(_M.c.state.in_(_UNFINISHED), _M.c.due_at <= now)
    )
    endpoints: dict[str, int] = {
        state: int(count)
        for state, count in session.execute(select(_E.c.state, func.count()).group_by(_E.c.state))
    }
    depth = GaugeMetricFamily(
        "voucherd_webhook_messages_unfinished",
        "Event webhook messages not finished yet: PENDING (waiting to be sent, retried, or "
        "for a disabled endpoint to be enabled) and SENDING (claimed by a worker).",
        labels=["state"],
    )
    for state in _UNFINISHED:
        depth.add_metric([state], by_state.get(state, 0))
    yield depth
    age = GaugeMetricFamily(
        "voucherd_webhook_oldest_due_age_seconds",
        "How long the most overdue message to an enabled endpoint has been due without being "
        "sent (a SENDING one counts once its lease ran out); 0 when none is due. A growing "
        "value means workers are down or cannot keep up.",
    )
    age.add_metric([], max(0.0, (now - oldest_due).total_seconds()) if oldest_due else 0.0)
    yield age
    states = GaugeMetricFamily(
        "voucherd_webhook_endpoints",
        "Event webhook endpoints, by state; a DISABLED one (a day of failures, or paused by "
        "its tenant) keeps its messages waiting.",
        labels=["state"],
    )
    for state in ENDPOINT_STATES:
        states.add_metric([state], endpoints.get(state, 0))
    yield states
