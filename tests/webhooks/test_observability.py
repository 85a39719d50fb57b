"""The webhook outbox on /metrics: attempts counted by event type and outcome once recorded, the
backlog by state, the most overdue message of an enabled endpoint, endpoints by state."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import make_tenant
from tests.factories.vouchers import issue
from tests.support.clock import FakeClock
from tests.support.webhooks import Receiver, drain, register
from voucherd.db.engine import Database

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(api: TestClient) -> Samples:
    answer = api.get("/metrics")
    assert answer.status_code == 200, answer.text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def counted(before: Samples, after: Samples, outcome: str) -> float:
    labels = {"event_type": "voucher.issued", "outcome": outcome}
    name = "voucherd_webhook_messages_total"
    return value(after, name, **labels) - value(before, name, **labels)


def test_attempts_backlog_age_and_endpoints(
    api: TestClient, db: Database, receiver: Receiver, clock: FakeClock
) -> None:
    tenant = make_tenant(db)
    endpoint = register(api, tenant.headers, receiver, events=["voucher.issued"])
    campaign = make_campaign(db, tenant)
    before = scrape(api)
    issue(db, tenant, campaign)
    clock.advance(seconds=90)
    waiting = scrape(api)
    assert value(waiting, "voucherd_webhook_messages_unfinished", state="PENDING") == 1
    assert value(waiting, "voucherd_webhook_messages_unfinished", state="SENDING") == 0
    assert value(waiting, "voucherd_webhook_oldest_due_age_seconds") == 90
    assert value(waiting, "voucherd_webhook_endpoints", state="ENABLED") == 1

    receiver.statuses.append(500)
    assert drain(db) == 1
    retried = scrape(api)
    assert counted(before, retried, "RETRY") == 1
    assert counted(before, retried, "DELIVERED") == 0
    assert value(retried, "voucherd_webhook_messages_unfinished", state="PENDING") == 1
    assert value(retried, "voucherd_webhook_oldest_due_age_seconds") == 0  # not due yet

    clock.advance(seconds=db.settings.delivery_backoff_seconds)
    assert drain(db) == 1
    done = scrape(api)
    assert counted(before, done, "DELIVERED") == 1
    assert value(done, "voucherd_webhook_messages_unfinished", state="PENDING") == 0

    # A paused endpoint's messages wait on purpose: counted as PENDING, never as overdue.
    issue(db, tenant, campaign)
    url = f"/api/v1/webhook-endpoints/{endpoint['id']}"
    assert api.patch(url, headers=tenant.headers, json={"state": "DISABLED"}).status_code == 200
    clock.advance(seconds=600)
    paused = scrape(api)
    assert value(paused, "voucherd_webhook_messages_unfinished", state="PENDING") == 1
    assert value(paused, "voucherd_webhook_oldest_due_age_seconds") == 0
    assert value(paused, "voucherd_webhook_endpoints", state="DISABLED") == 1
    assert value(paused, "voucherd_webhook_endpoints", state="ENABLED") == 0


def test_a_permanent_refusal_counts_as_failed(
    api: TestClient, db: Database, receiver: Receiver
) -> None:
    tenant = make_tenant(db)
    register(api, tenant.headers, receiver, events=["voucher.issued"])
    before = scrape(api)
    issue(db, tenant, make_campaign(db, tenant))
    receiver.statuses.append(410)
    assert drain(db) == 1
    assert counted(before, scrape(api), "FAILED") == 1
