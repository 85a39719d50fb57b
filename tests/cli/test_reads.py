"""The commands that read (issue 15 point 7): each prints, with ``--json``, what the native API
answers for the same object, and otherwise a table that fits 80 columns with every id whole."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import Result
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.factories.campaigns import make_campaign
from tests.factories.redemptions import make_redemption
from tests.factories.tenants import Tenant, make_tenant
from voucherd.auth.service import authenticate_token
from voucherd.cli import app
from voucherd.composition import run_due_operations
from voucherd.config import Settings
from voucherd.db.engine import Database
from voucherd.delivery.schemas import mask_code
from voucherd.errors import Unauthorized

Run = Callable[..., Result]
ID = re.compile(r"\b(?:camp|v|r|cust|pub|ord|dlv|vk|ten)_[0-9a-z]{26}\b")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The `db` fixture is one connection: an order's batches take turns on it.
    return settings.model_copy(update={"order_mint_parallelism": 1})


@pytest.fixture
def run(db: Database) -> Run:
    """The CLI on the test's own database (handed over as the root command's opener), in a
    terminal of 80 columns."""

    @contextmanager
    def opener() -> Iterator[Database]:
        yield db

    runner = CliRunner()

    def invoke(*args: str, ok: bool = True) -> Result:
        result = runner.invoke(app, list(args), obj=opener, env={"COLUMNS": "80"})
        assert (result.exit_code == 0) is ok, result.output
        return result

    return invoke


@dataclass(frozen=True)
class World:
    tenant: Tenant
    campaign: dict[str, Any]
    voucher: dict[str, Any]
    customer: dict[str, Any]
    order: dict[str, Any]


def _created(response: Any) -> dict[str, Any]:
    assert response.status_code in (200, 201, 202), response.text
    return dict(response.json())


@pytest.fixture
def world(api: TestClient, db: Database, tenant: Tenant) -> World:
    headers = tenant.headers
    make_campaign(db, tenant, name="Gift", type="GIFT", currency="GBP", default_value=5000)
    campaign = _created(api.get("/api/v1/campaigns/Gift", headers=headers))
    customer = _created(
        api.post(
            "/api/v1/customers",
            headers=headers,
            json={"source_id": "crm-1", "name": "Ada Lovelace", "email": "ada@example.com"},
        )
    )
    voucher = _created(
        api.post("/api/v1/vouchers", headers=headers, json={"campaign": "Gift", "value": 5000})
    )
    _created(
        api.post(
            "/api/v1/publications",
            headers=headers,
            json={"voucher": voucher["id"], "customer": "crm-1"},
        )
    )
    _created(
        api.post(
            f"/api/v1/vouchers/{voucher['id']}/deliveries",
            headers=headers,
            json={"channel": "none"},
        )
    )
    make_redemption(db, tenant, code=voucher["code"], amount=1500)
    client = _created(
        api.post(
            "/api/v1/clients",
            headers=headers,
            json={"code": "ACME01", "name": "Acme", "voucher_types": ["Gift"]},
        )
    )
    order = _created(
        api.post(
            "/api/v1/orders",
            headers=headers,
            json={
                "client": client["code"],
                "reference": "PO-1",
                "items": [{"product": "Gift", "quantity": 2, "sale_price": 5000}],
            },
        )
    )
    while run_due_operations(db, "w1", threading.Event()):
        pass
    return World(tenant, campaign, voucher, customer, order)


def _json(result: Result) -> Any:
    return json.loads(result.stdout)


def _fits(result: Result) -> str:
    """The table's text, every line within 80 columns."""
    for line in result.stdout.splitlines():
        assert len(line) <= 80, line
    return result.stdout


class TestCampaigns:
    def test_list_and_show(self, run: Run, api: TestClient, world: World) -> None:
        tenant, campaign = world.tenant.name, world.campaign
        listed = _json(run("campaigns", "list", "--tenant", tenant, "--json"))
        assert listed == api.get("/api/v1/campaigns", headers=world.tenant.headers).json()
        shown = _json(run("campaigns", "show", "Gift", "--tenant", tenant, "--json"))
        assert shown == campaign

        table = _fits(run("campaigns", "list", "--tenant", tenant))
        assert campaign["id"] in table
        assert "£50.00" in table
        details = _fits(run("campaigns", "show", campaign["id"], "--tenant", tenant))
        assert campaign["id"] in details
        assert "GIFT" in details

    def test_an_unknown_campaign_fails_clearly(self, run: Run, world: World) -> None:
        failed = run("campaigns", "show", "Nope", "--tenant", world.tenant.name, ok=False)
        assert "error" in failed.output


class TestVoucherShow:
    def test_json_is_the_native_voucher_with_its_ledger_events_and_deliveries(
        self, run: Run, api: TestClient, world: World
    ) -> None:
        headers, voucher_id = world.tenant.headers, world.voucher["id"]
        shown = _json(
            run("vouchers", "show", world.voucher["code"], "--tenant", world.tenant.name, "--json")
        )

        native = api.get(f"/api/v1/vouchers/{voucher_id}", headers=headers).json()
        assert {k: v for k, v in shown.items() if k not in ("ledger", "events", "deliveries")} == (
            native
        )
        assert shown["balance"] == 3500
        assert (
            shown["ledger"]
            == api.get(f"/api/v1/vouchers/{voucher_id}/ledger", headers=headers).json()
        )
        assert [e["kind"] for e in shown["ledger"]["data"]] == ["ISSUE", "REDEMPTION"]
        assert [e["delta"] for e in shown["ledger"]["data"]] == [5000, -1500]
        assert (
            shown["events"]
            == api.get(f"/api/v1/vouchers/{voucher_id}/events", headers=headers).json()
        )
        deliveries = api.get(f"/api/v1/deliveries?voucher={voucher_id}", headers=headers).json()
        assert shown["deliveries"] == deliveries
        assert len(shown["deliveries"]["data"]) == 1

    def test_table_shows_state_balance_ledger_events_and_masked_deliveries(
        self, run: Run, world: World
    ) -> None:
        voucher = world.voucher
        table = _fits(run("vouchers", "show", voucher["code"], "--tenant", world.tenant.name))

        assert "ACTIVE" in table
        assert "£35.00" in table  # the balance
        assert "redeemed 1 of unlimited" in table
        head, _, deliveries = table.partition("deliveries")
        assert "REDEMPTION" in head
        assert "+£50.00" in head
        assert "-£15.00" in head
        assert "issued" in head
        # A delivery row names its voucher by id; the code appears only masked.
        assert voucher["id"] in deliveries
        assert mask_code(voucher["code"]) in deliveries
        assert voucher["code"] not in deliveries
        assert re.search(r"\bdlv_[0-9a-z]{26}\b", deliveries)

    def test_an_unknown_code_fails_clearly(self, run: Run, world: World) -> None:
        failed = run("vouchers", "show", "NOSUCHCODE", "--tenant", world.tenant.name, ok=False)
        assert "error" in failed.output


class TestRedemptions:
    def test_list(self, run: Run, api: TestClient, world: World) -> None:
        tenant = world.tenant
        listed = _json(run("redemptions", "list", "--tenant", tenant.name, "--json"))
        assert listed == api.get("/api/v1/redemptions", headers=tenant.headers).json()
        [redemption] = listed["data"]

        table = _fits(run("redemptions", "list", "--tenant", tenant.name))
        assert redemption["id"] in table
        assert world.voucher["id"] in table
        assert world.voucher["code"] not in table
        assert "£15.00" in table
        code = world.voucher["code"]
        by_voucher = _json(
            run("redemptions", "list", "--tenant", tenant.name, "--voucher", code, "--json")
        )
        assert [r["id"] for r in by_voucher["data"]] == [redemption["id"]]


class TestCustomers:
    def test_list_and_show(self, run: Run, api: TestClient, world: World) -> None:
        tenant, customer = world.tenant, world.customer
        listed = _json(run("customers", "list", "--tenant", tenant.name, "--json"))
        assert listed == api.get("/api/v1/customers", headers=tenant.headers).json()
        found = _json(run("customers", "list", "--tenant", tenant.name, "--q", "Ada", "--json"))
        assert [c["id"] for c in found["data"]] == [customer["id"]]
        shown = _json(run("customers", "show", "crm-1", "--tenant", tenant.name, "--json"))
        assert (
            shown == api.get(f"/api/v1/customers/{customer['id']}", headers=tenant.headers).json()
        )

        assert customer["id"] in _fits(run("customers", "list", "--tenant", tenant.name))
        details = _fits(run("customers", "show", customer["id"], "--tenant", tenant.name))
        assert "Ada Lovelace" in details


class TestPublications:
    def test_list(self, run: Run, api: TestClient, world: World) -> None:
        tenant = world.tenant
        listed = _json(run("publications", "list", "--tenant", tenant.name, "--json"))
        assert listed == api.get("/api/v1/publications", headers=tenant.headers).json()
        by_customer = _json(
            run("publications", "list", "--tenant", tenant.name, "--customer", "crm-1", "--json")
        )
        [publication] = by_customer["data"]
        assert publication["vouchers_id"] == [world.voucher["id"]]

        assert publication["id"] in _fits(run("publications", "list", "--tenant", tenant.name))


class TestOrders:
    def test_list_and_show(self, run: Run, api: TestClient, world: World) -> None:
        tenant, order = world.tenant, world.order
        listed = _json(run("orders", "list", "--tenant", tenant.name, "--json"))
        assert listed == api.get("/api/v1/orders", headers=tenant.headers).json()
        shown = _json(run("orders", "show", order["id"], "--tenant", tenant.name, "--json"))
        assert shown == api.get(f"/api/v1/orders/{order['id']}", headers=tenant.headers).json()
        assert shown["status"] == "Completed"

        table = _fits(run("orders", "list", "--tenant", tenant.name))
        assert order["id"] in table
        assert "2/2" in table
        details = _fits(run("orders", "show", order["id"], "--tenant", tenant.name))
        assert order["id"] in details
        assert shown["items"][0]["publication_id"] in details


class TestEightyColumns:
    @pytest.mark.parametrize(
        "command",
        [
            ("campaigns", "list"),
            ("vouchers", "show", "CODE"),
            ("redemptions", "list"),
            ("customers", "list"),
            ("publications", "list"),
            ("orders", "list"),
            ("deliveries", "list"),
            ("keys", "list"),
            ("tenants", "list"),
        ],
    )
    def test_every_id_is_whole(self, run: Run, world: World, command: tuple[str, ...]) -> None:
        args = [world.voucher["code"] if a == "CODE" else a for a in command]
        if command != ("tenants", "list"):
            args += ["--tenant", world.tenant.name]
        table = _fits(run(*args))
        as_json = run(*args, "--json").stdout

        printed = set(ID.findall(table))
        assert printed  # every one of these tables shows ids
        assert printed <= set(ID.findall(as_json))
        assert "…" not in table


class TestKeys:
    def test_the_listed_key_id_is_the_one_revoke_takes(self, run: Run, db: Database) -> None:
        tenant = make_tenant(db, name="acme")
        table = _fits(run("keys", "list", "--tenant", "acme"))
        [key_id] = re.findall(r"\bvk_[0-9a-z]{26}\b", table)
        assert key_id == tenant.key.key_id

        run("keys", "revoke", key_id)

        with pytest.raises(Unauthorized):
            authenticate_token(db, tenant.key.token)


class TestIssuingWithoutDelivery:
    def test_leaves_no_delivery_row(
        self, run: Run, api: TestClient, tenant: Tenant, db: Database
    ) -> None:
        make_campaign(db, tenant, name="Gift", type="GIFT", currency="GBP", default_value=500)
        native = _created(
            api.post("/api/v1/vouchers", headers=tenant.headers, json={"campaign": "Gift"})
        )
        yoyo = api.post(
            "/cvs-issuer/rest/coupons",
            headers={"apiId": tenant.key.key_id, "apiPassword": tenant.key.secret},
            json={"campaignId": "Gift", "userRef": "u-1"},
        )
        assert yoyo.status_code == 200, yoyo.text

        listed = _json(run("deliveries", "list", "--tenant", tenant.name, "--json"))
        assert listed == []
        for code in (native["code"], yoyo.json()["wiCode"]):
            shown = _json(run("vouchers", "show", code, "--tenant", tenant.name, "--json"))
            assert shown["deliveries"]["data"] == []
