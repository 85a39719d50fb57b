"""``voucherd webhooks list|show|events|replay``: with ``--json``, what the native API answers
for the same object; otherwise tables that fit 80 columns with every id whole, and bad input
named, never a traceback."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.factories.vouchers import issue
from tests.support.webhooks import Receiver, drain, register, running_receiver
from voucherd.cli import app
from voucherd.config import Settings
from voucherd.db.engine import Database

Run = Callable[..., Result]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"delivery_concurrency": 1})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


@pytest.fixture
def run(db: Database) -> Run:
    @contextmanager
    def opener() -> Iterator[Database]:
        yield db

    runner = CliRunner()

    def invoke(*args: str, ok: bool = True) -> Result:
        result = runner.invoke(app, list(args), obj=opener, env={"COLUMNS": "80"})
        assert (result.exit_code == 0) is ok, result.output
        return result

    return invoke


def _fits(output: str) -> None:
    assert all(len(line) <= 80 for line in output.splitlines()), output


def _api(api: TestClient, tenant: Tenant, path: str) -> Any:
    answer = api.get(f"/api/v1/webhook-endpoints{path}", headers=tenant.headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_list_show_events_and_replay(
    api: TestClient, db: Database, receiver: Receiver, run: Run
) -> None:
    tenant = make_tenant(db)
    endpoint = register(api, tenant.headers, receiver)
    campaign = make_campaign(db, tenant)
    voucher = issue(db, tenant, campaign)
    issue(db, tenant, campaign)  # its message goes out; the first voucher's is answered 500
    publication = api.post(
        "/api/v1/publications",
        headers=tenant.headers,
        json={"voucher": voucher.voucher.code, "customer": {"source_id": "c-1"}, "channel": "API"},
    )
    assert publication.status_code in (200, 201), publication.text
    receiver.statuses.append(500)
    drain(db)
    name, eid = tenant.name, endpoint["id"]

    listed = run("webhooks", "list", "--tenant", name, "--json")
    assert json.loads(listed.stdout) == _api(api, tenant, "")
    table = run("webhooks", "list", "--tenant", name).stdout
    assert eid in table
    assert "ENABLED" in table
    _fits(table)

    shown = run("webhooks", "show", eid, "--tenant", name, "--json")
    assert json.loads(shown.stdout) == _api(api, tenant, f"/{eid}")
    assert "secret" not in json.loads(shown.stdout)
    details = run("webhooks", "show", eid, "--tenant", name).stdout
    assert "voucher.published" in details
    assert endpoint["secret"] not in details

    events = run("webhooks", "events", eid, "--tenant", name, "--json")
    assert json.loads(events.stdout) == _api(api, tenant, f"/{eid}/events")
    messages = json.loads(events.stdout)["data"]
    published = next(m for m in messages if m["type"] == "voucher.published")
    table = run("webhooks", "events", eid, "--tenant", name).stdout
    assert published["id"] in table  # 64 characters, whole
    _fits(table)
    pending = run("webhooks", "events", eid, "--tenant", name, "--state", "pending", "--json")
    # The first voucher's two: its issue to be retried, its publication waiting behind it.
    waiting = json.loads(pending.stdout)["data"]
    assert [(m["state"], m["attempts_made"]) for m in waiting] == [("PENDING", 0), ("PENDING", 1)]

    retried = waiting[1]
    one = run("webhooks", "events", eid, retried["id"], "--tenant", name, "--json")
    assert json.loads(one.stdout) == _api(api, tenant, f"/{eid}/events/{retried['id']}")
    attempts = run("webhooks", "events", eid, retried["id"], "--tenant", name).stdout
    assert "attempt 1 RETRY" in attempts
    assert "HTTP 500" in attempts

    delivered = next(m for m in messages if m["state"] == "DELIVERED")
    replayed = run("webhooks", "replay", eid, delivered["id"], "--tenant", name, "--json")
    assert json.loads(replayed.stdout)["state"] == "PENDING"
    assert json.loads(replayed.stdout)["attempts"][-1]["outcome"] == "REPLAY"
    before = [h.webhook_id for h in receiver.hooks]
    drain(db)
    assert [h.webhook_id for h in receiver.hooks][len(before) :] == [delivered["id"]]


def test_bad_input_is_named(db: Database, run: Run) -> None:
    tenant = make_tenant(db)
    missing = run("webhooks", "show", "whe_nope", "--tenant", tenant.name, ok=False)
    assert "no such webhook endpoint" in missing.output
    assert "Traceback" not in missing.output
    state = run(
        "webhooks", "events", "whe_nope", "--tenant", tenant.name, "--state", "LOST", ok=False
    )
    assert "--state" in state.output
    unknown = run("webhooks", "list", "--tenant", "nobody", ok=False)
    assert "error" in unknown.output
    replay = run("webhooks", "replay", "whe_nope", "evt_v1", "--tenant", tenant.name, ok=False)
    assert "no such webhook endpoint" in replay.output
