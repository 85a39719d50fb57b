"""Distributions through the native API: internal ones delivered over real SMTP (and SMS to a
local Twilio-compatible server), external ones handing the codes back and sending nothing."""

from __future__ import annotations

import csv
import io
import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.support.delivery import (
    Provider,
    SmtpServer,
    deliver_due,
    settings_for,
    with_all_channels,
)
from voucherd.composition import run_due_operations
from voucherd.config import Settings
from voucherd.db.engine import Database
from voucherd.delivery.models import Delivery
from voucherd.orders import tasks
from voucherd.publications.models import Publication

ADA, GRACE, ALAN = "ada@example.com", "grace@example.com", "alan@example.com"


@pytest.fixture
def settings(provider: Provider, smtp: SmtpServer) -> Settings:
    return settings_for(provider, smtp_ca_file=smtp.ca_file, order_mint_parallelism=1)


def run_worker(db: Database) -> None:
    while run_due_operations(db, "w", threading.Event()):
        pass


def completed_order(api: TestClient, db: Database, tenant: Tenant, quantity: int) -> int:
    """A client, an order of ``quantity`` vouchers, minted; the order item's id."""
    make_campaign(db, tenant, name="Cinema", currency="NZD", default_value=1500)
    client = {"code": "ACME", "name": "Acme", "voucher_types": ["Cinema"]}
    assert api.post("/api/v1/clients", headers=tenant.headers, json=client).status_code == 201
    order = api.post(
        "/api/v1/orders",
        headers=tenant.headers,
        json={"client": "ACME", "items": [{"product": "Cinema", "quantity": quantity}]},
    ).json()
    run_worker(db)
    return int(order["items"][0]["id"])


def distribute(
    api: TestClient,
    tenant: Tenant,
    item: int,
    per_recipient: int,
    recipients: list[dict[str, Any]],
    *,
    channel: str = "email",
    external: bool,
) -> Any:
    return api.post(
        "/api/v1/distributions",
        headers=tenant.headers,
        json={
            "channel": channel,
            "reference": "Christmas",
            "distribution_data": "Merry Christmas from Acme",
            "externally_distributed": external,
            "items": [{"order_item": item, "quantity_per_recipient": per_recipient}],
            "recipients": recipients,
        },
    )


def deliveries(db: Database) -> int:
    with db.unit_of_work(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(Delivery)) or 0)


class TestInternal:
    def test_one_email_per_recipient_with_that_recipients_codes(
        self, api: TestClient, db: Database, provider: Provider, smtp: SmtpServer
    ) -> None:
        tenant = make_tenant(db)
        with_all_channels(db, tenant, provider, smtp=smtp)
        item = completed_order(api, db, tenant, 7)
        recipients = [{"name": "Ada", "email": ADA}, {"name": "Grace", "email": GRACE}]

        created = distribute(api, tenant, item, 3, recipients, external=False)
        assert created.status_code == 202, created.text
        run_worker(db)
        while deliver_due(db):
            pass

        shown = api.get(created.headers["location"], headers=tenant.headers).json()
        assert [i["status"] for i in shown["items"]] == ["Completed"]
        codes = {r["address"]: r["shares"][0]["codes"] for r in shown["recipients"]}
        assert [len(c) for c in codes.values()] == [3, 3]
        assert not set(codes[ADA]) & set(codes[GRACE])
        assert len(smtp.messages) == 2
        for envelope, message in smtp.messages:
            (to,) = envelope.rcpt_tos
            body = message.get_body(("plain",))
            assert body is not None
            text = body.get_content()
            for code in codes[to]:
                assert code in text
            other = GRACE if to == ADA else ADA
            assert not any(code in text for code in codes[other])
            assert message["Subject"] == "Your Cinema vouchers"
            assert "here are your 3 Cinema vouchers" in text
        assert deliveries(db) == 2
        order_item = api.get("/api/v1/orders", headers=tenant.headers).json()["data"][0]["items"][0]
        assert (order_item["distributed"], order_item["available"]) == (6, 1)

    def test_mobile_sends_one_sms_per_recipient_with_its_codes(
        self, api: TestClient, db: Database, provider: Provider
    ) -> None:
        tenant = make_tenant(db)
        with_all_channels(db, tenant, provider)
        item = completed_order(api, db, tenant, 4)
        recipients = [{"name": "Ada", "phone": "+447911123456"}, {"phone": "+447911123457"}]

        created = distribute(api, tenant, item, 2, recipients, channel="mobile", external=False)
        assert created.status_code == 202, created.text
        run_worker(db)
        while deliver_due(db):
            pass

        shown = api.get(created.headers["location"], headers=tenant.headers).json()
        sent = {r.form()["To"]: r.form()["Body"] for r in provider.of("sms")}
        assert set(sent) == {"+447911123456", "+447911123457"}
        for recipient in shown["recipients"]:
            for code in recipient["shares"][0]["codes"]:
                assert code in sent[recipient["address"]]


class TestExternal:
    def test_returns_the_codes_per_recipient_and_sends_nothing(
        self, api: TestClient, db: Database, provider: Provider, smtp: SmtpServer
    ) -> None:
        tenant = make_tenant(db)
        with_all_channels(db, tenant, provider, smtp=smtp)
        item = completed_order(api, db, tenant, 6)
        recipients = [{"name": "Ada", "email": ADA}, {"name": "=cmd", "email": GRACE}]

        created = distribute(api, tenant, item, 3, recipients, external=True).json()
        run_worker(db)
        while deliver_due(db):
            pass

        shown = api.get(f"/api/v1/distributions/{created['id']}", headers=tenant.headers).json()
        codes = [r["shares"][0]["codes"] for r in shown["recipients"]]
        assert [len(c) for c in codes] == [3, 3]
        assert smtp.messages == []
        assert provider.of("sms") == []
        assert deliveries(db) == 0
        assert all(r["shares"][0]["delivery_id"] is None for r in shown["recipients"])
        # The item operation's result is the same list as CSV.
        token = shown["items"][0]["operation_token"]
        result = api.get(f"/api/v1/operations/{token}/result", headers=tenant.headers)
        assert result.status_code == 200, result.text
        rows = list(csv.DictReader(io.StringIO(result.text)))
        assert [(r["recipient"], r["address"], r["code"]) for r in rows] == [
            (str(i), (ADA, GRACE)[i], code) for i in range(2) for code in codes[i]
        ]
        assert rows[3]["name"] == "'=cmd"  # a spreadsheet formula stays text
        with db.unit_of_work(write=False) as session:
            channels = sorted(session.scalars(select(Publication.channel)))
        assert channels == ["ClientOrder", "Distribution", "Distribution"]
        vouchers = api.get(
            f"/api/v1/orders/{api.get('/api/v1/orders', headers=tenant.headers).json()['data'][0]['id']}/vouchers",
            headers=tenant.headers,
            params={"limit": 100},
        ).json()["data"]
        assert sorted(v["publish"]["count"] for v in vouchers) == [2] * 6

    def test_without_recipients_the_codes_go_to_one_unnamed_recipient(
        self, api: TestClient, db: Database, provider: Provider, smtp: SmtpServer
    ) -> None:
        tenant = make_tenant(db)
        with_all_channels(db, tenant, provider, smtp=smtp)
        item = completed_order(api, db, tenant, 5)
        body = {
            "channel": "email",
            "externally_distributed": True,
            "items": [{"order_item": item, "quantity_per_recipient": 3}],
        }

        created = api.post("/api/v1/distributions", headers=tenant.headers, json=body)
        assert created.status_code == 202, created.text
        run_worker(db)
        while deliver_due(db):
            pass

        shown = api.get(created.headers["location"], headers=tenant.headers).json()
        assert [i["status"] for i in shown["items"]] == ["Completed"]
        (recipient,) = shown["recipients"]
        assert (recipient["position"], recipient["name"], recipient["address"]) == (0, None, None)
        codes = recipient["shares"][0]["codes"]
        assert len(codes) == len(set(codes)) == 3
        assert recipient["shares"][0]["delivery_id"] is None
        assert smtp.messages == []
        assert deliveries(db) == 0
        result = api.get(
            f"/api/v1/operations/{shown['items'][0]['operation_token']}/result",
            headers=tenant.headers,
        )
        rows = list(csv.DictReader(io.StringIO(result.text)))
        assert [(r["recipient"], r["name"], r["address"], r["code"]) for r in rows] == [
            ("0", "", "", code) for code in codes
        ]
        with db.unit_of_work(write=False) as session:
            channels = sorted(session.scalars(select(Publication.channel)))
        assert channels == ["ClientOrder", "Distribution"]
        order_item = api.get("/api/v1/orders", headers=tenant.headers).json()["data"][0]["items"][0]
        assert (order_item["distributed"], order_item["available"]) == (3, 2)

    def test_many_recipients_take_several_steps_and_resume(
        self, api: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(tasks, "SHARES_PER_STEP", 2)
        tenant = make_tenant(db)
        item = completed_order(api, db, tenant, 10)
        recipients = [{"email": f"r{i}@example.com"} for i in range(5)]

        created = distribute(api, tenant, item, 2, recipients, external=True).json()
        run_worker(db)

        shown = api.get(f"/api/v1/distributions/{created['id']}", headers=tenant.headers).json()
        codes = [c for r in shown["recipients"] for c in r["shares"][0]["codes"]]
        assert len(codes) == len(set(codes)) == 10
        operation = api.get(
            f"/api/v1/operations/{shown['items'][0]['operation_token']}", headers=tenant.headers
        ).json()
        assert operation["progress"] == {"done": 10, "total": 10}


class TestRefusals:
    def test_more_than_an_item_has_left(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        item = completed_order(api, db, tenant, 5)
        assert distribute(api, tenant, item, 2, [{"email": ADA}], external=True).status_code == 202

        refused = distribute(
            api, tenant, item, 2, [{"email": GRACE}, {"email": ALAN}], external=True
        )

        assert refused.status_code == 422
        problem = refused.json()
        assert problem["code"] == "not_enough_vouchers"
        assert problem["errors"][0]["field"] == "items.0.quantity_per_recipient"
        assert problem["detail"] == (
            f"item {item} has 3 of its 5 vouchers left to distribute; this distribution asks for 4"
        )
        assert (
            distribute(api, tenant, item, 3, [{"email": GRACE}], external=True).status_code == 202
        )

    def test_an_order_still_processing(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        make_campaign(db, tenant, name="Cinema")
        api.post(
            "/api/v1/clients",
            headers=tenant.headers,
            json={"code": "C", "name": "C", "voucher_types": ["Cinema"]},
        )
        order = api.post(
            "/api/v1/orders",
            headers=tenant.headers,
            json={"client": "C", "items": [{"product": "Cinema", "quantity": 2}]},
        ).json()

        refused = distribute(
            api, tenant, order["items"][0]["id"], 1, [{"email": ADA}], external=True
        )

        assert refused.status_code == 409
        assert refused.json()["code"] == "order_not_completed"

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"recipients": [{"phone": "+447911123456"}]}, "body"),
            ({"recipients": []}, "recipients"),
            ({"items": [{"order_item": 1, "quantity_per_recipient": 1001}]}, "items.0.quantity_per_recipient"),
            ({"channel": "fax"}, "channel"),
            ({"externally_distributed": "no"}, "externally_distributed"),
        ],
    )  # fmt: skip
    def test_bad_bodies(
        self, api: TestClient, db: Database, change: dict[str, Any], field: str
    ) -> None:
        tenant = make_tenant(db)
        body = {
            "channel": "email",
            "items": [{"order_item": 1, "quantity_per_recipient": 1}],
            "recipients": [{"email": ADA}],
            **change,
        }

        response = api.post("/api/v1/distributions", headers=tenant.headers, json=body)

        assert response.status_code == 422, response.text
        assert field in [e["field"] for e in response.json()["errors"]]

    def test_an_internal_distribution_needs_recipients(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        item = completed_order(api, db, tenant, 2)
        body = {
            "channel": "email",
            "externally_distributed": False,
            "items": [{"order_item": item, "quantity_per_recipient": 1}],
        }

        refused = api.post("/api/v1/distributions", headers=tenant.headers, json=body)

        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["field"] == "recipients"
        assert refused.json()["detail"].startswith("give at least one recipient")
        order_item = api.get("/api/v1/orders", headers=tenant.headers).json()["data"][0]["items"][0]
        assert order_item["distributed"] == 0

    def test_another_tenants_item_is_not_found(self, api: TestClient, db: Database) -> None:
        owner, intruder = make_tenant(db), make_tenant(db)
        item = completed_order(api, db, owner, 2)

        refused = distribute(api, intruder, item, 1, [{"email": ADA}], external=True)

        assert refused.status_code == 404
        assert refused.json()["errors"][0]["field"] == "items.0.order_item"
