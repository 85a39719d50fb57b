"""Corporate clients and client orders through the native API, and the order's mint as an
operation: batches, progress, a worker that dies mid-order, many orders at once."""

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
from tests.support.clock import FakeClock
from voucherd.composition import run_due_operations
from voucherd.config import Settings
from voucherd.db.engine import Database
from voucherd.errors import Conflict
from voucherd.operations.models import Operation
from voucherd.operations.runner import claim_next
from voucherd.orders import service as orders
from voucherd.orders.clients import create_client
from voucherd.orders.models import Client, ClientOrder, ClientOrderBatch, ClientOrderItem
from voucherd.orders.schemas import ClientCreate, OrderCreate
from voucherd.orders.service import place_order
from voucherd.orders.tasks import order_step, plan_batches
from voucherd.publications.models import Publication, PublicationVoucher
from voucherd.publications.publish import publish
from voucherd.publications.schemas import PublishRequest
from voucherd.vouchers.models import Voucher

FUTURE = "2027-02-01T00:00:00Z"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The `db` fixture is one connection: batches of one order take turns on it.
    return settings.model_copy(update={"order_mint_parallelism": 1})


def run_worker(db: Database, worker: str = "w1") -> int:
    handled = 0
    while taken := run_due_operations(db, worker, threading.Event()):
        handled += taken
    return handled


def new_client(
    api: TestClient, tenant: Tenant, products: list[str], code: str = "ABC123", **extra: Any
) -> dict[str, Any]:
    body = {"code": code, "name": "Vista", "voucher_types": products, **extra}
    response = api.post("/api/v1/clients", headers=tenant.headers, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def order_body(client: str, product: str, quantity: int = 5, **item: Any) -> dict[str, Any]:
    return {
        "client": client,
        "reference": "My internal ref #1234",
        "electronic_distribution": True,
        "external_user_id": "User-123",
        "delivery_address": {"line1": "1 Queen St", "city": "Auckland"},
        "external_data": "my additional free-text reference data",
        "items": [
            {
                "product": product,
                "quantity": quantity,
                "sale_price": 1234,
                "redeem_price": 1500,
                "expiry_date": FUTURE,
                **item,
            }
        ],
    }


def counts(db: Database) -> dict[str, int]:
    with db.unit_of_work(write=False) as session:
        return {
            model.__tablename__: int(session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (Client, ClientOrder, ClientOrderItem, Voucher, Publication, Operation)
        }


class TestClients:
    def test_create_get_and_its_operation_resolves_to_it(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        make_campaign(db, tenant, name="VOUCHERTYPE1")
        make_campaign(db, tenant, name="VOUCHERTYPE2")

        created = new_client(
            api,
            tenant,
            ["VOUCHERTYPE1", "VOUCHERTYPE2"],
            contact={"name": "John Smith", "email": "johnsmith@vista.co", "phone": "0211231234"},
            external_client_id="xyz123",
            external_data="my additional free-text reference data",
        )

        assert created["code"] == "ABC123"
        assert created["contact"] == {
            "name": "John Smith",
            "email": "johnsmith@vista.co",
            "phone": "0211231234",
            "fax": None,
        }
        assert [t["name"] for t in created["voucher_types"]] == ["VOUCHERTYPE1", "VOUCHERTYPE2"]
        for ref in (created["id"], "ABC123"):
            got = api.get(f"/api/v1/clients/{ref}", headers=tenant.headers).json()
            assert {k: v for k, v in got.items() if k != "operation_token"} == {
                k: v for k, v in created.items() if k != "operation_token"
            }
        operation = api.get(
            f"/api/v1/operations/{created['operation_token']}", headers=tenant.headers
        ).json()
        assert (operation["status"], operation["entity_type"], operation["entity_id"]) == (
            "Completed",
            "VoucherClient",
            created["id"],
        )

    def test_a_code_is_unique_per_tenant(self, api: TestClient, db: Database) -> None:
        one, two = make_tenant(db), make_tenant(db)
        new_client(api, one, [])

        again = api.post(
            "/api/v1/clients", headers=one.headers, json={"code": "ABC123", "name": "Other"}
        )

        assert again.status_code == 409
        assert (again.json()["code"], again.json()["errors"][0]["field"]) == (
            "duplicate_client_code",
            "code",
        )
        new_client(api, two, [])  # another tenant's code is no clash

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"code": "ABC", "name": "x", "voucher_types": ["NOPE"]}, "voucher_types.0"),
            ({"code": "", "name": "x"}, "code"),
            ({"code": "A B", "name": "x"}, "code"),
            ({"code": "ABC", "name": ""}, "name"),
            ({"code": "ABC", "name": "x", "contact": {"email": "nope"}}, "contact.email"),
            ({"code": "ABC", "name": "x", "colour": "red"}, "colour"),
        ],
    )
    def test_refuses_bad_input_and_writes_nothing(
        self, api: TestClient, db: Database, body: dict[str, Any], field: str
    ) -> None:
        tenant = make_tenant(db)
        before = counts(db)

        response = api.post("/api/v1/clients", headers=tenant.headers, json=body)

        assert response.status_code in (404, 422), response.text
        assert field in [e["field"] for e in response.json()["errors"]]
        assert counts(db) == before

    def test_update_list_and_search(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        make_campaign(db, tenant, name="T1")
        make_campaign(db, tenant, name="T2")
        first = new_client(api, tenant, ["T1"], code="C1", external_client_id="ext-1")
        new_client(api, tenant, [], code="C2", name="Cinema Two", external_client_id="ext-2")

        changed = api.patch(
            "/api/v1/clients/C1",
            headers=tenant.headers,
            json={"name": "Renamed", "voucher_types": ["T2", "T1"], "external_data": None},
        )

        assert changed.status_code == 200, changed.text
        assert changed.json()["name"] == "Renamed"
        assert [t["name"] for t in changed.json()["voucher_types"]] == ["T2", "T1"]
        by_external = api.get(
            "/api/v1/clients", headers=tenant.headers, params={"external_client_id": "ext-1"}
        ).json()["data"]
        assert [c["id"] for c in by_external] == [first["id"]]
        by_text = api.get("/api/v1/clients", headers=tenant.headers, params={"q": "two"}).json()
        assert [c["code"] for c in by_text["data"]] == ["C2"]
        page = api.get("/api/v1/clients", headers=tenant.headers, params={"limit": 1}).json()
        assert page["has_more"] is True
        rest = api.get(
            "/api/v1/clients",
            headers=tenant.headers,
            params={"limit": 1, "cursor": page["next_cursor"]},
        ).json()
        assert [c["code"] for c in page["data"] + rest["data"]] == ["C2", "C1"]
        refused = api.patch("/api/v1/clients/C1", headers=tenant.headers, json={"name": None})
        assert refused.status_code == 422


class TestPlaceOrder:
    def test_processing_then_completed_with_its_vouchers(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, name="ABC12", currency="NZD", default_value=1000)
        new_client(api, tenant, ["ABC12"])

        placed = api.post(
            "/api/v1/orders", headers=tenant.headers, json=order_body("ABC123", "ABC12")
        )

        assert placed.status_code == 202, placed.text
        order = placed.json()
        assert placed.headers["location"] == f"/api/v1/orders/{order['id']}"
        assert (order["status"], order["progress"]) == ("Processing", {"done": 0, "total": 5})
        assert order["client_code"] == "ABC123"
        item = order["items"][0]
        assert (item["product"], item["quantity"], item["sale_price"], item["redeem_price"]) == (
            "ABC12",
            5,
            1234,
            1500,
        )
        assert run_worker(db) == 1
        done = api.get(f"/api/v1/orders/{order['id']}", headers=tenant.headers).json()
        assert (done["status"], done["progress"], done["error"]) == (
            "Completed",
            {"done": 5, "total": 5},
            None,
        )
        vouchers = api.get(f"/api/v1/orders/{order['id']}/vouchers", headers=tenant.headers).json()[
            "data"
        ]
        assert len(vouchers) == 5
        assert {v["client_order_item_id"] for v in vouchers} == {item["id"]}
        assert {(v["value"], v["currency"], v["expiration_date"]) for v in vouchers} == {
            (1500, "NZD", "2027-02-01T00:00:00Z")
        }
        assert all(v["campaign_id"] == campaign.id for v in vouchers)
        operation = api.get(
            f"/api/v1/operations/{order['operation_token']}", headers=tenant.headers
        ).json()
        assert (operation["entity_type"], operation["entity_id"]) == (
            "VoucherClientOrder",
            order["id"],
        )

    def test_the_vouchers_stay_out_of_the_campaign_pool(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, name="ABC12")
        new_client(api, tenant, ["ABC12"])
        order = api.post(
            "/api/v1/orders", headers=tenant.headers, json=order_body("ABC123", "ABC12", 3)
        ).json()
        run_worker(db)

        with pytest.raises(Conflict) as refused:
            publish(db, tenant.caller, PublishRequest(campaign=campaign.id, count=3))

        # The client's vouchers are not anybody's to take: the pool is empty.
        assert (refused.value.code, refused.value.extra) == ("pool_exhausted", {"missing": 3})
        with db.unit_of_work(write=False) as session:
            counts_of = session.execute(
                select(Voucher.published_count, func.count())
                .join(PublicationVoucher, PublicationVoucher.voucher_id == Voucher.id)
                .where(PublicationVoucher.publication_id == order["items"][0]["publication_id"])
                .group_by(Voucher.published_count)
            ).all()
        assert counts_of == [(1, 3)]

    @pytest.mark.parametrize(
        ("change", "status", "field", "code"),
        [
            ({"client": "NOPE"}, 404, "client", "not_found"),
            ({"item": {"product": "NOPE"}}, 404, "items.0.product", "not_found"),
            ({"item": {"product": "OTHER"}}, 422, "items.0.product", "product_not_allowed"),
            ({"item": {"quantity": 0}}, 422, "items.0.quantity", "invalid_input"),
            ({"item": {"quantity": -1}}, 422, "items.0.quantity", "invalid_input"),
            ({"item": {"expiry_date": "2024-02-01T00:00:00Z"}}, 422, "items.0.expiry_date",
             "campaign_expired"),
            ({"item": {"redeem_price": 0}}, 422, "items.0.redeem_price", "invalid_input"),
            ({"item": {"sale_price": -5}}, 422, "items.0.sale_price", "invalid_input"),
            ({"item": {"redeem_price": 10**9}}, 422, "items.0.redeem_price",
             "value_above_maximum"),
            ({"items": []}, 422, "items", "invalid_input"),
        ],
    )  # fmt: skip
    def test_refuses_bad_orders_and_writes_nothing(
        self,
        api: TestClient,
        db: Database,
        change: dict[str, Any],
        status: int,
        field: str,
        code: str,
    ) -> None:
        tenant = make_tenant(db)
        make_campaign(db, tenant, name="ABC12", max_value=100_000)
        make_campaign(db, tenant, name="OTHER")
        new_client(api, tenant, ["ABC12"])
        body = order_body(change.get("client", "ABC123"), "ABC12")
        body["items"][0].update(change.get("item", {}))
        if "items" in change:
            body["items"] = change["items"]
        before = counts(db)

        response = api.post("/api/v1/orders", headers=tenant.headers, json=body)

        assert response.status_code == status, response.text
        assert response.json()["code"] == code
        assert field in [e["field"] for e in response.json()["errors"]]
        assert counts(db) == before

    def test_a_second_item_fails_the_whole_order(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        make_campaign(db, tenant, name="ABC12")
        new_client(api, tenant, ["ABC12"])
        body = order_body("ABC123", "ABC12")
        body["items"].append({**body["items"][0], "expiry_date": "2020-01-01T00:00:00Z"})
        before = counts(db)

        response = api.post("/api/v1/orders", headers=tenant.headers, json=body)

        assert response.json()["errors"][0]["field"] == "items.1.expiry_date"
        assert counts(db) == before

    def test_a_retry_with_the_same_key_places_one_order(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        make_campaign(db, tenant, name="ABC12")
        new_client(api, tenant, ["ABC12"])
        headers = {**tenant.headers, "Idempotency-Key": "order-1"}
        body = order_body("ABC123", "ABC12")

        first = api.post("/api/v1/orders", headers=headers, json=body)
        second = api.post("/api/v1/orders", headers=headers, json=body)

        assert (first.status_code, second.status_code) == (202, 202)
        assert second.headers["idempotent-replayed"] == "true"
        assert second.json()["id"] == first.json()["id"]
        assert counts(db)["client_order"] == 1

    def test_money_in_major_units_is_converted_in_the_products_currency(self, db: Database) -> None:
        tenant = make_tenant(db)
        make_campaign(db, tenant, name="YEN", currency="JPY", default_value=1000)
        create_client(db, tenant.caller, ClientCreate(code="C", name="C", voucher_types=["YEN"]))
        body = order_body("C", "YEN")
        item = body["items"][0]
        del item["sale_price"], item["redeem_price"]
        item.update(major_sale_price="1200", major_redeem_price="1500")

        record = place_order(db, tenant.caller, OrderCreate.model_validate(body))

        placed = record.items[0][0]
        assert (placed.sale_price, placed.redeem_price, placed.currency) == (1200, 1500, "JPY")


class TestOrderReads:
    def test_lists_by_client_and_external_user_and_exports_csv(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        make_campaign(db, tenant, name="ABC12")
        new_client(api, tenant, ["ABC12"], code="ONE")
        new_client(api, tenant, ["ABC12"], code="TWO")
        one = api.post("/api/v1/orders", headers=tenant.headers, json=order_body("ONE", "ABC12", 3))
        body = order_body("TWO", "ABC12", 2)
        body["external_user_id"] = "someone-else"
        two = api.post("/api/v1/orders", headers=tenant.headers, json=body)
        run_worker(db)
        h = tenant.headers

        by_client = api.get("/api/v1/orders", headers=h, params={"client": "ONE"}).json()["data"]
        by_user = api.get(
            "/api/v1/orders", headers=h, params={"external_user_id": "someone-else"}
        ).json()["data"]
        exported = api.get(f"/api/v1/orders/{one.json()['id']}/vouchers.csv", headers=h)

        assert [o["id"] for o in by_client] == [one.json()["id"]]
        assert [o["id"] for o in by_user] == [two.json()["id"]]
        assert exported.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        listed = api.get(f"/api/v1/orders/{one.json()['id']}/vouchers", headers=h).json()["data"]
        assert sorted(r["code"] for r in rows) == sorted(v["code"] for v in listed)
        assert len(rows) == 3
        assert {r["client_order_item_id"] for r in rows} == {str(one.json()["items"][0]["id"])}
        missing = api.get("/api/v1/orders/ord_nope", headers=h)
        assert (missing.status_code, missing.json()["errors"][0]["field"]) == (404, "order")


class TestResolve:
    def test_many_tokens_in_one_request(self, api: TestClient, db: Database) -> None:
        tenant, other = make_tenant(db), make_tenant(db)
        make_campaign(db, tenant, name="ABC12")
        client = new_client(api, tenant, ["ABC12"])
        order = api.post(
            "/api/v1/orders", headers=tenant.headers, json=order_body("ABC123", "ABC12")
        ).json()
        theirs = new_client(api, other, [], code="X")
        tokens = [order["operation_token"], client["operation_token"], "nope"]

        before = api.post(
            "/api/v1/operations/resolve",
            headers=tenant.headers,
            json={"tokens": [*tokens, theirs["operation_token"]]},
        ).json()["data"]
        run_worker(db)
        after = api.post(
            "/api/v1/operations/resolve", headers=tenant.headers, json={"tokens": tokens}
        ).json()["data"]

        assert [d["token"] for d in before] == [*tokens, theirs["operation_token"]]
        assert [d["operation"] and d["operation"]["status"] for d in before] == [
            "Processing",
            "Completed",
            None,
            None,
        ]
        assert [d["operation"] and d["operation"]["status"] for d in after[:2]] == [
            "Completed",
            "Completed",
        ]
        refused = api.post(
            "/api/v1/operations/resolve", headers=tenant.headers, json={"tokens": []}
        )
        assert refused.status_code == 422


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(orders, "MINT_BATCH", 3)
    return 3


class TestMintBatches:
    def test_plan(self) -> None:
        batches = plan_batches([(7, 5), (8, 3)], 2)
        assert [(b.seq, b.item_id, b.count) for b in batches] == [
            (0, 7, 2),
            (1, 7, 2),
            (2, 7, 1),
            (3, 8, 2),
            (4, 8, 1),
        ]

    def test_progress_is_visible_batch_by_batch(
        self, api: TestClient, db: Database, small_batches: int
    ) -> None:
        tenant = make_tenant(db)
        make_campaign(db, tenant, name="ABC12")
        new_client(api, tenant, ["ABC12"])
        order = api.post(
            "/api/v1/orders", headers=tenant.headers, json=order_body("ABC123", "ABC12", 10)
        ).json()
        run = claim_next(db, "w1")
        assert run is not None

        seen = []
        finished = False
        while not finished:
            finished = order_step(db, run)
            shown = api.get(f"/api/v1/orders/{order['id']}", headers=tenant.headers).json()
            seen.append((shown["status"], shown["progress"]["done"]))

        assert seen == [("Processing", 3), ("Processing", 6), ("Processing", 9), ("Completed", 10)]

    def test_a_worker_that_dies_mid_order_is_resumed_without_minting_twice(
        self, api: TestClient, db: Database, clock: FakeClock, small_batches: int
    ) -> None:
        tenant = make_tenant(db)
        make_campaign(db, tenant, name="ABC12")
        new_client(api, tenant, ["ABC12"])
        order = api.post(
            "/api/v1/orders", headers=tenant.headers, json=order_body("ABC123", "ABC12", 10)
        ).json()
        dead = claim_next(db, "dies")
        assert dead is not None
        order_step(db, dead)
        order_step(db, dead)  # two batches committed, then the worker is gone

        assert run_worker(db, "w2") == 0  # its lease still holds
        clock.advance(seconds=db.settings.operation_lease_seconds + 1)
        assert run_worker(db, "w2") == 1

        shown = api.get(f"/api/v1/orders/{order['id']}", headers=tenant.headers).json()
        assert (shown["status"], shown["progress"]["done"]) == ("Completed", 10)
        with db.unit_of_work(write=False) as session:
            codes = list(
                session.scalars(
                    select(Voucher.code)
                    .join(PublicationVoucher, PublicationVoucher.voucher_id == Voucher.id)
                    .where(PublicationVoucher.publication_id == shown["items"][0]["publication_id"])
                )
            )
            batches = list(
                session.scalars(
                    select(ClientOrderBatch.seq)
                    .where(ClientOrderBatch.order_id == order["id"])
                    .order_by(ClientOrderBatch.seq)
                )
            )
        assert len(codes) == len(set(codes)) == 10
        assert batches == [0, 1, 2, 3]
        # The dead worker waking up cannot write: its lease is gone.
        from voucherd.operations.steps import LeaseLost

        with pytest.raises(LeaseLost):
            order_step(db, dead)
