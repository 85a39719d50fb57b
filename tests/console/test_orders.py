"""Orders in the console: an order's items and progress (polled), its distributions."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant
from tests.support.console import browser, make_operator, sign_in
from voucherd.composition import run_due_operations
from voucherd.config import Settings
from voucherd.db.engine import Database
from voucherd.orders.distributions import list_order_distributions


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"order_mint_parallelism": 1})


def _order(api: TestClient, db: Database, tenant: Tenant, quantity: int) -> dict[str, object]:
    make_campaign(db, tenant, name="Cinema", currency="NZD", default_value=1500)
    client = {"code": "ACME", "name": "Acme", "voucher_types": ["Cinema"]}
    assert api.post("/api/v1/clients", headers=tenant.headers, json=client).status_code == 201
    body = {
        "client": "ACME",
        "reference": "PO-7",
        "items": [{"product": "Cinema", "quantity": quantity}],
    }
    placed = api.post("/api/v1/orders", headers=tenant.headers, json=body)
    assert placed.status_code in (201, 202), placed.text
    order: dict[str, object] = placed.json()
    return order


def _run(db: Database) -> None:
    while run_due_operations(db, "w", threading.Event()):
        pass


def _distribute(api: TestClient, tenant: Tenant, item: int, reference: str) -> str:
    created = api.post(
        "/api/v1/distributions",
        headers=tenant.headers,
        json={
            "channel": "email",
            "reference": reference,
            "externally_distributed": True,
            "items": [{"order_item": item, "quantity_per_recipient": 2}],
            "recipients": [{"name": "Ada", "email": "ada@example.com"}],
        },
    )
    assert created.status_code == 202, created.text
    return str(created.json()["id"])


class TestOrderPages:
    def test_items_progress_and_distributions(self, api: TestClient, db: Database) -> None:
        tenant = Tenant(db)
        order = _order(api, db, tenant, 5)
        manager = make_operator(db, tenant, "manager")
        with browser(db) as client:
            sign_in(client, manager.email)
            running = client.get(f"/console/orders/{order['id']}")
            assert running.status_code == 200
            assert 'hx-trigger="every 2s"' in running.text  # polls while it mints
            _run(db)
            polled = client.get(f"/console/orders/{order['id']}", headers={"HX-Request": "true"})
            assert "<html" not in polled.text  # only the progress card
            assert 'id="order-status">Completed<' in polled.text
            assert "hx-trigger" not in polled.text  # done: the poll stops
            item = int(order["items"][0]["id"])  # type: ignore[index]
            first = _distribute(api, tenant, item, "Christmas")
            _run(db)
            page = client.get(f"/console/orders/{order['id']}")
            listed = client.get(f"/console/orders/{order['id']}/distributions")
            detail = client.get(f"/console/distributions/{first}")
            orders_list = client.get("/console/orders")
        assert 'id="order-items"' in page.text
        assert "Cinema" in page.text
        assert "NZ$15.00" in page.text or "$15.00" in page.text
        assert "Christmas" in page.text
        assert f'href="/console/distributions/{first}"' in listed.text
        assert f'href="/console/orders/{order["id"]}"' in orders_list.text
        (record,) = list_order_distributions(db, tenant.caller, str(order["id"]))
        codes = [c for share in record.shares for c in share.codes]
        assert len(codes) == 2
        for code in codes:
            assert code not in detail.text  # masked
            assert code[:4] + "…" + code[-2:] in detail.text
        assert "ada@example.com" not in detail.text
        assert "Ada" in detail.text

    def test_another_tenants_order_is_404_and_a_support_agent_403(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = Tenant(db)
        order = _order(api, db, tenant, 2)
        stranger = make_operator(db, Tenant(db), "admin")
        support = make_operator(db, tenant, "support")
        with browser(db) as client:
            sign_in(client, stranger.email)
            assert client.get(f"/console/orders/{order['id']}").status_code == 404
            assert client.get(f"/console/orders/{order['id']}/distributions").status_code == 404
        with browser(db) as client:
            sign_in(client, support.email)
            assert client.get(f"/console/orders/{order['id']}").status_code == 403
