"""Retries with backoff on fake time, every attempt recorded, a day of failures disables the
endpoint, replay; and the endpoints' own API."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import make_tenant
from tests.factories.vouchers import issue
from tests.support.clock import FakeClock
from tests.support.webhooks import Receiver, drain, register
from voucherd.db.engine import Database


class TestRetries:
    def test_a_500_is_retried_with_backoff_and_each_attempt_recorded(
        self, api: TestClient, db: Database, receiver: Receiver, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        endpoint = register(api, tenant.headers, receiver)
        issue(db, tenant, make_campaign(db, tenant))
        receiver.statuses.extend([500, 500])
        base = f"/api/v1/webhook-endpoints/{endpoint['id']}/events"

        assert drain(db) == 1
        (message,) = api.get(base, headers=tenant.headers).json()["data"]
        assert (message["state"], message["failures"]) == ("PENDING", 1)
        first_wait = message["next_attempt_at"]
        assert drain(db) == 0  # not due yet: nothing is sent early

        clock.advance(seconds=db.settings.delivery_backoff_seconds)  # the first backoff at most
        assert drain(db) == 1
        second = api.get(f"{base}/{message['id']}", headers=tenant.headers).json()
        assert second["state"] == "PENDING"
        assert second["next_attempt_at"] > first_wait
        assert receiver.hooks == []

        clock.advance(seconds=2 * db.settings.delivery_backoff_seconds)
        assert drain(db) == 1
        done = api.get(f"{base}/{message['id']}", headers=tenant.headers).json()
        assert done["state"] == "DELIVERED"
        assert [a["outcome"] for a in done["attempts"]] == ["RETRY", "RETRY", "DELIVERED"]
        assert "HTTP 500" in done["attempts"][0]["detail"]
        (hook,) = receiver.hooks
        assert hook.webhook_id == message["id"]

    def test_a_day_of_failures_disables_the_endpoint_and_keeps_why(
        self, api: TestClient, db: Database, receiver: Receiver, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        endpoint = register(api, tenant.headers, receiver)
        issue(db, tenant, make_campaign(db, tenant))
        receiver.statuses.extend([503] * 100)
        url = f"/api/v1/webhook-endpoints/{endpoint['id']}"
        start = clock()
        while clock() - start < timedelta(days=1, hours=2):
            drain(db)
            clock.advance(hours=1)
        shown = api.get(url, headers=tenant.headers).json()
        assert shown["state"] == "DISABLED"
        assert "HTTP 503" in shown["disabled_reason"]

        # Disabled: its messages wait. Enabled again, they go out.
        receiver.statuses.clear()
        clock.advance(hours=2)
        assert drain(db) == 0
        revived = api.patch(url, headers=tenant.headers, json={"state": "ENABLED"})
        assert revived.json()["state"] == "ENABLED"
        assert revived.json()["disabled_reason"] is None
        drain(db)
        assert receiver.types() == ["voucher.issued"]


class TestReplay:
    def test_replay_sends_again_with_the_same_webhook_id(
        self, api: TestClient, db: Database, receiver: Receiver
    ) -> None:
        tenant = make_tenant(db)
        endpoint = register(api, tenant.headers, receiver)
        issue(db, tenant, make_campaign(db, tenant))
        drain(db)
        (first,) = receiver.hooks
        url = f"/api/v1/webhook-endpoints/{endpoint['id']}/events/{first.webhook_id}"

        replayed = api.post(f"{url}/replay", headers=tenant.headers)

        assert replayed.status_code == 202, replayed.text
        assert replayed.json()["state"] == "PENDING"
        drain(db)
        assert [h.webhook_id for h in receiver.hooks] == [first.webhook_id] * 2
        assert receiver.hooks[1].payload == first.payload
        outcomes = [a["outcome"] for a in api.get(url, headers=tenant.headers).json()["attempts"]]
        assert outcomes == ["DELIVERED", "REPLAY", "DELIVERED"]

    def test_an_unknown_event_is_404(
        self, api: TestClient, db: Database, receiver: Receiver
    ) -> None:
        tenant = make_tenant(db)
        endpoint = register(api, tenant.headers, receiver)
        url = f"/api/v1/webhook-endpoints/{endpoint['id']}/events/evt_v999/replay"
        assert api.post(url, headers=tenant.headers).status_code == 404


class TestEndpoints:
    def test_the_secret_is_shown_once_and_endpoints_are_the_tenants_own(
        self, api: TestClient, db: Database, receiver: Receiver
    ) -> None:
        tenant, other = make_tenant(db), make_tenant(db)
        created = register(api, tenant.headers, receiver, events=["voucher.issued"])
        assert created["secret"].startswith("whsec_")
        url = f"/api/v1/webhook-endpoints/{created['id']}"

        shown = api.get(url, headers=tenant.headers).json()
        assert "secret" not in shown
        assert shown["events"] == ["voucher.issued"]
        listed = api.get("/api/v1/webhook-endpoints", headers=tenant.headers).json()["data"]
        assert [e["id"] for e in listed] == [created["id"]]
        assert api.get(url, headers=other.headers).status_code == 404
        assert api.get("/api/v1/webhook-endpoints", headers=other.headers).json()["data"] == []

        changed = api.patch(
            url, headers=tenant.headers, json={"events": ["voucher.redeemed", "order.completed"]}
        )
        assert changed.json()["events"] == ["order.completed", "voucher.redeemed"]
        assert api.delete(url, headers=tenant.headers).status_code == 204
        assert api.get(url, headers=tenant.headers).status_code == 404

    def test_bad_input_names_the_field(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        for body, field in (
            ({"url": "https://hooks.example/x", "events": ["voucher.eaten"]}, "events"),
            ({"url": "https://hooks.example/x", "events": []}, "events"),
            ({"url": "ftp://hooks.example/x", "events": ["voucher.issued"]}, "url"),
            ({"url": "https://u:p@hooks.example/x", "events": ["voucher.issued"]}, "url"),
        ):
            response = api.post("/api/v1/webhook-endpoints", headers=tenant.headers, json=body)
            assert response.status_code in (400, 422), response.text
            assert field in response.text
