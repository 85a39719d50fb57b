"""Every event type reaches a subscribed endpoint once per effect, signed, in order per voucher,
with the object as the native API showed it at the event."""

from __future__ import annotations

import threading
from collections import Counter

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.factories.campaigns import make_campaign
from tests.factories.redemptions import make_redemption
from tests.factories.tenants import make_tenant
from tests.factories.vouchers import issue
from tests.support.delivery import Answer, Provider, configure
from tests.support.operations import run_worker
from tests.support.webhooks import Receiver, drain, register
from voucherd.db.engine import Database
from voucherd.delivery.outbox import run_due_deliveries
from voucherd.delivery.settings import new_webhook_secret
from voucherd.operations.service import start_operation
from voucherd.orders.clients import create_client
from voucherd.orders.schemas import ClientCreate, OrderCreate
from voucherd.orders.service import place_order
from voucherd.redemptions.service import rollback
from voucherd.vouchers import service as vouchers
from voucherd.webhooks.models import WebhookMessage


class TestVoucherEvents:
    def test_each_effect_arrives_once_in_order_as_it_was(
        self, api: TestClient, db: Database, receiver: Receiver
    ) -> None:
        tenant = make_tenant(db)
        register(api, tenant.headers, receiver)
        campaign = make_campaign(db, tenant)  # GIFT, 5000
        code = issue(db, tenant, campaign).voucher.code
        published = api.post(
            "/api/v1/publications",
            headers=tenant.headers,
            json={"voucher": code, "customer": {"source_id": "c-1"}},
        )
        assert published.status_code == 201, published.text
        redemption = make_redemption(db, tenant, code=code, amount=1200).redemption
        rollback(db, tenant.caller, redemption.id, reason="till error")
        vouchers.disable_voucher(db, tenant.caller, code, reason="lost card")
        vouchers.enable_voucher(db, tenant.caller, code)
        vouchers.adjust_balance(db, tenant.caller, code, 500)
        vouchers.cancel_voucher(db, tenant.caller, code)

        drain(db)

        assert receiver.forged == 0
        assert receiver.types() == [
            "voucher.issued",
            "voucher.published",
            "voucher.redeemed",
            "redemption.rolled_back",
            "voucher.disabled",
            "voucher.enabled",
            "voucher.balance_adjusted",
            "voucher.cancelled",
        ]
        ids = [h.webhook_id for h in receiver.hooks]
        assert len(set(ids)) == len(ids)
        assert all(h.payload["id"] == h.webhook_id for h in receiver.hooks)
        by_type = {h.type: h.payload["data"] for h in receiver.hooks}
        # The voucher as it was at each event, not as it is now (cancelled, 5500).
        assert by_type["voucher.issued"]["object"]["balance"] == 5000
        assert by_type["voucher.issued"]["object"]["state"] == "ACTIVE"
        assert by_type["voucher.redeemed"]["object"]["balance"] == 3800
        assert by_type["voucher.redeemed"]["details"]["redemption_id"] == redemption.id
        assert by_type["voucher.redeemed"]["details"]["amount"] == 1200
        assert by_type["redemption.rolled_back"]["object"]["id"] == redemption.id
        assert by_type["redemption.rolled_back"]["details"]["reason"] == "till error"
        assert by_type["voucher.disabled"]["object"]["state"] == "DISABLED"
        assert by_type["voucher.balance_adjusted"]["object"]["balance"] == 5500
        assert by_type["voucher.cancelled"]["object"]["state"] == "CANCELLED"
        assert by_type["voucher.published"]["details"]["publication_id"]
        assert drain(db) == 0  # nothing is sent twice

    def test_only_the_subscribed_types_and_no_messages_without_endpoints(
        self, api: TestClient, db: Database, receiver: Receiver
    ) -> None:
        quiet = make_tenant(db)
        issue(db, quiet, make_campaign(db, quiet))
        with db.unit_of_work(write=False) as session:
            assert session.scalar(select(func.count()).select_from(WebhookMessage)) == 0

        tenant = make_tenant(db)
        register(api, tenant.headers, receiver, events=["voucher.redeemed"])
        campaign = make_campaign(db, tenant)
        codes = [issue(db, tenant, campaign).voucher.code for _ in range(3)]
        for code in codes:
            make_redemption(db, tenant, code=code, amount=100)
        drain(db)
        assert receiver.types() == ["voucher.redeemed"] * 3
        assert {h.payload["data"]["object"]["code"] for h in receiver.hooks} == set(codes)


class TestOtherEvents:
    def test_delivery_failed(
        self, api: TestClient, db: Database, receiver: Receiver, provider: Provider
    ) -> None:
        tenant = make_tenant(db)
        register(api, tenant.headers, receiver, events=["delivery.failed"])
        configure(
            db, tenant, webhook={"url": f"{provider.url}/hook", "secret": new_webhook_secret()}
        )
        provider.script("webhook", Answer(400, {"error": "unknown customer"}))
        issue(db, tenant, make_campaign(db, tenant), delivery={"channel": "webhook"})
        run_due_deliveries(db, "w1", threading.Event())

        drain(db)

        (hook,) = receiver.hooks
        assert hook.type == "delivery.failed"
        assert hook.payload["data"]["object"]["state"] == "FAILED"

    def test_operation_failed_and_order_completed(
        self, api: TestClient, db: Database, receiver: Receiver
    ) -> None:
        tenant = make_tenant(db)
        register(api, tenant.headers, receiver, events=["operation.failed", "order.completed"])
        with db.unit_of_work() as session:
            failing = start_operation(
                session,
                tenant_id=tenant.id,
                kind="no-such-kind",
                parameters={},
                actor=None,
                now=db.now(),
            ).id
            session.commit()
        make_campaign(db, tenant, name="GIFT50")
        create_client(db, tenant.caller, ClientCreate(code="C", name="C", voucher_types=["GIFT50"]))
        item = {"product": "GIFT50", "quantity": 3, "sale_price": 5000, "redeem_price": 5000}
        order = place_order(
            db, tenant.caller, OrderCreate.model_validate({"client": "C", "items": [item]})
        )
        run_worker(db)

        drain(db)

        assert Counter(receiver.types()) == {"operation.failed": 1, "order.completed": 1}
        shown = {h.type: h.payload["data"]["object"] for h in receiver.hooks}
        assert shown["operation.failed"]["id"] == failing
        assert shown["operation.failed"]["status"] == "Failed"
        assert shown["order.completed"]["id"] == order.order.id
        assert shown["order.completed"]["status"] == "Completed"
