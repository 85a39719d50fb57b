"""Vista's Voucher Management face, replaying the seed's requests (seeds/004_...txt) word for
word where they are complete JSON; where the seed abbreviates (``...``), the smallest body
that fills the gap. Every field and string the seed shows is checked."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
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
from voucherd.delivery.models import Delivery
from voucherd.orders.models import Client, ClientOrder, Distribution
from voucherd.publications.models import Publication
from voucherd.vouchers.models import Voucher

CLIENT = "/api/v1/voucher-management/client"
ORDER = "/api/v1/voucher-management/client-order"
EMAIL = "/api/v1/voucher-management/email-distribution"
MOBILE = "/api/v1/voucher-management/mobile-distribution"
RESOLVE = "/api/v1/identity-resolution/from-operation-result-tokens"
RESOLVE_HERE = "/api/v1/voucher-management/resolve-operation-result-tokens"

SEED_CLIENT = {
    "code": "ABC123",
    "name": "Vista",
    "contact": {
        "name": "John Smith",
        "email": "johnsmith@vista.co",
        "phone": "0211231234",
        "fax": "",
    },
    "externalClientId": "xyz123",
    "externalData": "my additional free-text reference data",
    "voucherTypeCodes": ["VOUCHERTYPE1", "VOUCHERTYPE2"],
}
SEED_ORDER = {
    "clientCode": "ABC123",
    "reference": "My internal ref #1234",
    "electronicDistribution": True,
    "externalUserId": "User-123",
    # The seed abbreviates the address as {...}.
    "deliveryAddress": {"line1": "1 Queen Street", "city": "Auckland"},
    "externalData": "my additional free-text reference data",
    "vouchers": [
        {
            "productCode": "ABC12",
            "quantity": 5,
            "salePrice": 12.34,
            "redeemPrice": 12.34,
            "expiryDate": "2024-02-01T00:00:00Z",
        }
    ],
}
SEED_DISTRIBUTION = {
    "reference": "abc",
    "distributionData": "string",
    "distributionItems": [{"clientOrderItemId": 1234, "quantityPerRecipient": 123}],
    "externallyDistributed": True,
}
# Before the seed order's expiry, so its body is valid as written.
SEED_TIME = datetime(2024, 1, 10, 9, 0, tzinfo=UTC)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"order_mint_parallelism": 1})


def run_worker(db: Database) -> None:
    while run_due_operations(db, "vista-worker", threading.Event()):
        pass


def seeded(db: Database) -> Tenant:
    tenant = make_tenant(db)
    for name in ("VOUCHERTYPE1", "VOUCHERTYPE2"):
        make_campaign(db, tenant, name=name, currency="NZD")
    make_campaign(db, tenant, name="ABC12", currency="NZD", default_value=2000)
    return tenant


def token_of(response: Any) -> str:
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["responses"]
    assert len(body["responses"]) == 1
    assert list(body["responses"][0]) == ["operationResultToken"]
    return str(body["responses"][0]["operationResultToken"])


def resolve(api: TestClient, tenant: Tenant, *tokens: str) -> list[dict[str, Any]]:
    response = api.post(RESOLVE, headers=tenant.headers, json=list(tokens))
    assert response.status_code == 200, response.text
    return list(response.json())


def client_with_order(
    api: TestClient, db: Database, clock: FakeClock, quantity: int = 5
) -> tuple[Tenant, int]:
    """The seed's client and order (with ``quantity`` vouchers), completed; the item's id."""
    tenant = seeded(db)
    clock.set(SEED_TIME)
    client = {**SEED_CLIENT, "voucherTypeCodes": ["VOUCHERTYPE1", "VOUCHERTYPE2", "ABC12"]}
    token_of(api.post(CLIENT, headers=tenant.headers, json=client))
    body = {**SEED_ORDER, "vouchers": [{**SEED_ORDER["vouchers"][0], "quantity": quantity}]}
    token_of(api.post(ORDER, headers=tenant.headers, json=body))
    run_worker(db)
    with db.unit_of_work(write=False) as session:
        order_id = session.scalars(select(ClientOrder.id)).one()
    order = api.get(f"/api/v1/orders/{order_id}", headers=tenant.headers).json()
    assert order["status"] == "Completed"
    return tenant, int(order["items"][0]["id"])


def rows(db: Database) -> tuple[int, ...]:
    with db.unit_of_work(write=False) as session:
        return tuple(
            int(session.scalar(select(func.count()).select_from(m)) or 0)
            for m in (Client, ClientOrder, Voucher, Distribution, Publication, Delivery)
        )


class TestClient_:
    def test_the_seed_request_answers_a_token_that_resolves_to_the_client(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = seeded(db)

        token = token_of(api.post(CLIENT, headers=tenant.headers, json=SEED_CLIENT))

        client = api.get("/api/v1/clients/ABC123", headers=tenant.headers).json()
        assert resolve(api, tenant, token) == [
            {
                "operationResultToken": token,
                "entityId": client["id"],
                "status": "Completed",
                "entityType": "VoucherClient",
            }
        ]
        assert client["name"] == "Vista"
        assert client["contact"] == {
            "name": "John Smith",
            "email": "johnsmith@vista.co",
            "phone": "0211231234",
            "fax": None,
        }
        assert client["external_client_id"] == "xyz123"
        assert client["external_data"] == "my additional free-text reference data"
        assert [t["name"] for t in client["voucher_types"]] == ["VOUCHERTYPE1", "VOUCHERTYPE2"]
        by_external = api.get(
            "/api/v1/clients", headers=tenant.headers, params={"external_client_id": "xyz123"}
        ).json()["data"]
        assert [c["code"] for c in by_external] == ["ABC123"]

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"code": None}, "code"),
            ({"name": ""}, "name"),
            ({"contact": {**SEED_CLIENT["contact"], "email": "not-an-email"}}, "contact.email"),
            ({"voucherTypeCodes": ["VOUCHERTYPE1", "NOPE"]}, "voucherTypeCodes[1]"),
        ],
    )
    def test_refusals_name_vistas_field(
        self, api: TestClient, db: Database, change: dict[str, Any], field: str
    ) -> None:
        tenant = seeded(db)
        body = {k: v for k, v in {**SEED_CLIENT, **change}.items() if v is not None}
        before = rows(db)

        response = api.post(CLIENT, headers=tenant.headers, json=body)

        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == "application/json"
        problem = response.json()
        assert (problem["status"], problem["title"]) == (
            400,
            "One or more validation errors occurred.",
        )
        assert field in problem["errors"], problem
        assert rows(db) == before

    def test_a_duplicate_code_is_refused(self, api: TestClient, db: Database) -> None:
        tenant = seeded(db)
        token_of(api.post(CLIENT, headers=tenant.headers, json=SEED_CLIENT))

        again = api.post(CLIENT, headers=tenant.headers, json=SEED_CLIENT)

        assert again.status_code == 400
        assert again.json()["errors"] == {"code": ["a client with code 'ABC123' already exists"]}


class TestClientOrder:
    def test_the_seed_order_resolves_processing_then_completed(
        self, api: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = seeded(db)
        clock.set(SEED_TIME)
        token_of(api.post(CLIENT, headers=tenant.headers, json=SEED_CLIENT))
        # The seed's product must be one the client may order.
        api.patch(
            "/api/v1/clients/ABC123",
            headers=tenant.headers,
            json={"voucher_types": ["VOUCHERTYPE1", "VOUCHERTYPE2", "ABC12"]},
        )

        token = token_of(api.post(ORDER, headers=tenant.headers, json=SEED_ORDER))

        with db.unit_of_work(write=False) as session:
            order_id = session.scalars(select(ClientOrder.id)).one()
        assert resolve(api, tenant, token) == [
            {
                "operationResultToken": token,
                "entityId": order_id,
                "status": "Processing",
                "entityType": "VoucherClientOrder",
            }
        ]
        run_worker(db)
        assert resolve(api, tenant, token)[0]["status"] == "Completed"
        order = api.get(f"/api/v1/orders/{order_id}", headers=tenant.headers).json()
        assert (order["reference"], order["external_user_id"], order["external_data"]) == (
            "My internal ref #1234",
            "User-123",
            "my additional free-text reference data",
        )
        assert order["electronic_distribution"] is True
        assert order["delivery_address"] == SEED_ORDER["deliveryAddress"]
        item = order["items"][0]
        assert (item["quantity"], item["sale_price"], item["redeem_price"], item["currency"]) == (
            5,
            1234,
            1234,
            "NZD",
        )
        assert item["expiry_date"] == "2024-02-01T00:00:00Z"
        vouchers = api.get(f"/api/v1/orders/{order_id}/vouchers", headers=tenant.headers).json()
        assert [(v["value"], v["expiration_date"]) for v in vouchers["data"]] == [
            (1234, "2024-02-01T00:00:00Z")
        ] * 5

    @pytest.mark.parametrize(
        ("change", "item", "field", "reason"),
        [
            ({"clientCode": "NOPE"}, {}, "clientCode", "no client with id or code 'NOPE'"),
            ({}, {"productCode": "NOPE"}, "vouchers[0].productCode",
             "no campaign with id or name 'NOPE'"),
            ({}, {"productCode": "VOUCHERTYPE1", "quantity": 0}, "vouchers[0].quantity",
             "Input should be greater than or equal to 1"),
            ({}, {"productCode": "VOUCHERTYPE1", "redeemPrice": 12.345},
             "vouchers[0].redeemPrice", "more decimal places than NZD has"),
            ({}, {"productCode": "VOUCHERTYPE1", "expiryDate": "2024-01-01T00:00:00Z"},
             "vouchers[0].expiryDate", "the voucher would already be expired"),
            ({"electronicDistribution": "yes"}, {"productCode": "VOUCHERTYPE1"},
             "electronicDistribution", "Input should be a valid boolean"),
        ],
    )  # fmt: skip
    def test_refusals_name_vistas_field_and_write_nothing(
        self,
        api: TestClient,
        db: Database,
        clock: FakeClock,
        change: dict[str, Any],
        item: dict[str, Any],
        field: str,
        reason: str,
    ) -> None:
        tenant = seeded(db)
        clock.set(SEED_TIME)
        token_of(api.post(CLIENT, headers=tenant.headers, json=SEED_CLIENT))
        body = {**SEED_ORDER, **change, "vouchers": [{**SEED_ORDER["vouchers"][0], **item}]}
        before = rows(db)

        response = api.post(ORDER, headers=tenant.headers, json=body)

        assert response.status_code == 400, response.text
        assert response.json()["errors"] == {field: [reason]}
        assert rows(db) == before

    def test_a_product_the_client_may_not_order(
        self, api: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = seeded(db)
        clock.set(SEED_TIME)
        token_of(api.post(CLIENT, headers=tenant.headers, json=SEED_CLIENT))

        response = api.post(ORDER, headers=tenant.headers, json=SEED_ORDER)

        assert response.status_code == 400
        # The seed's own client lists VOUCHERTYPE1 and VOUCHERTYPE2 only: the message says
        # which types it may order and how to add ABC12.
        assert response.json()["errors"] == {
            "vouchers[0].productCode": [
                (
                    "client 'ABC123' may not order 'ABC12': a client orders only its voucher "
                    "types ('VOUCHERTYPE1', 'VOUCHERTYPE2'); order one of those, or add 'ABC12' "
                    "to the client's voucher types (PATCH /api/v1/clients/ABC123 with "
                    "voucher_types)"
                )
            ]
        }
        assert rows(db)[1] == 0
        patched = api.patch(
            "/api/v1/clients/ABC123",
            headers=tenant.headers,
            json={"voucher_types": ["VOUCHERTYPE1", "VOUCHERTYPE2", "ABC12"]},
        )
        assert patched.status_code == 200, patched.text
        token_of(api.post(ORDER, headers=tenant.headers, json=SEED_ORDER))

    def test_the_seed_order_today_is_refused_for_its_past_expiry(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = seeded(db)
        body = {**SEED_CLIENT, "voucherTypeCodes": ["ABC12"]}
        token_of(api.post(CLIENT, headers=tenant.headers, json=body))

        response = api.post(ORDER, headers=tenant.headers, json=SEED_ORDER)

        assert response.json()["errors"] == {
            "vouchers[0].expiryDate": ["the voucher would already be expired"]
        }


def _share_codes(api: TestClient, tenant: Tenant, distribution_id: str) -> list[list[str]]:
    shown = api.get(f"/api/v1/distributions/{distribution_id}", headers=tenant.headers).json()
    return [[code for share in r["shares"] for code in share["codes"]] for r in shown["recipients"]]


class TestDistributions:
    def test_the_seed_distribution_names_an_item_that_does_not_exist(
        self, api: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant, _ = client_with_order(api, db, clock)

        response = api.post(EMAIL, headers=tenant.headers, json=SEED_DISTRIBUTION)

        assert response.status_code == 400
        assert response.json()["errors"] == {
            "distributionItems[0].clientOrderItemId": ["no client order item 1234"]
        }

    @pytest.mark.parametrize("path", [EMAIL, MOBILE])
    def test_the_seed_body_without_recipients_hands_the_codes_to_the_client(
        self, api: TestClient, db: Database, clock: FakeClock, path: str
    ) -> None:
        tenant, item_id = client_with_order(api, db, clock, quantity=5)
        # The seed's body word for word, but for a real item and a quantity the order has.
        body = {
            "reference": "abc",
            "distributionData": "string",
            "distributionItems": [{"clientOrderItemId": item_id, "quantityPerRecipient": 2}],
            "externallyDistributed": True,
        }

        first = token_of(api.post(path, headers=tenant.headers, json=body))
        pending = resolve(api, tenant, first)[0]
        run_worker(db)
        done = resolve(api, tenant, first)[0]
        second = token_of(api.post(path, headers=tenant.headers, json=body))
        run_worker(db)

        assert (pending["status"], pending["entityType"]) == (
            "Processing",
            "VoucherOrderDistribution",
        )
        assert (done["status"], done["entityId"]) == ("Completed", pending["entityId"])
        assert resolve(api, tenant, second)[0]["status"] == "Completed"
        with db.unit_of_work(write=False) as session:
            distribution_ids = list(
                session.scalars(select(Distribution.id).order_by(Distribution.created_at))
            )
            channels = sorted(session.scalars(select(Publication.channel)))
            deliveries = session.scalar(select(func.count()).select_from(Delivery))
        shown = [
            api.get(f"/api/v1/distributions/{d}", headers=tenant.headers).json()
            for d in distribution_ids
        ]
        assert [[(r["name"], r["address"]) for r in d["recipients"]] for d in shown] == [
            [(None, None)],
            [(None, None)],
        ]
        codes = [c for d in shown for c in d["recipients"][0]["shares"][0]["codes"]]
        assert len(codes) == len(set(codes)) == 4  # two each, none handed out twice
        assert channels == ["ClientOrder", "Distribution", "Distribution"]
        assert deliveries == 0
        order = api.get("/api/v1/orders", headers=tenant.headers).json()["data"][0]
        assert (order["items"][0]["distributed"], order["items"][0]["available"]) == (4, 1)
        vouchers = api.get(f"/api/v1/orders/{order['id']}/vouchers", headers=tenant.headers).json()[
            "data"
        ]
        # Each code is published once more (to its distribution), and only the four are.
        published = {v["code"]: v["publish"]["count"] for v in vouchers}
        assert sorted(published.values()) == [1, 2, 2, 2, 2]
        assert all(published[code] == 2 for code in codes)

    def test_an_internal_distribution_without_recipients_is_refused(
        self, api: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant, item_id = client_with_order(api, db, clock)
        body = {
            **SEED_DISTRIBUTION,
            "distributionItems": [{"clientOrderItemId": item_id, "quantityPerRecipient": 1}],
            "externallyDistributed": False,
        }
        before = rows(db)

        response = api.post(EMAIL, headers=tenant.headers, json=body)

        assert response.status_code == 400
        assert response.json()["errors"] == {
            "recipients": [
                (
                    "give at least one recipient: an internal distribution sends each recipient "
                    "its codes; only an external one may name none (the codes are then handed "
                    "back to you)"
                )
            ]
        }
        assert rows(db) == before

    @pytest.mark.parametrize(
        ("item", "reason"),
        [
            ("1234", "Input should be a valid integer"),
            (12.5, "Input should be a valid integer"),
            (None, "Input should be a valid integer"),
            (2**63, "Input should be less than or equal to 9223372036854775807"),
            (2**63 - 1, "no client order item 9223372036854775807"),
        ],
    )
    def test_a_client_order_item_id_that_is_no_item_id(
        self, api: TestClient, db: Database, clock: FakeClock, item: Any, reason: str
    ) -> None:
        tenant, _ = client_with_order(api, db, clock)
        body = {
            **SEED_DISTRIBUTION,
            "distributionItems": [{"clientOrderItemId": item, "quantityPerRecipient": 1}],
        }
        before = rows(db)

        response = api.post(EMAIL, headers=tenant.headers, json=body)

        assert response.status_code == 400, response.text
        assert response.json()["errors"] == {"distributionItems[0].clientOrderItemId": [reason]}
        assert rows(db) == before

    def test_external_email_distribution_hands_the_codes_back_and_sends_nothing(
        self, api: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant, item_id = client_with_order(api, db, clock, quantity=246)
        body = {
            **SEED_DISTRIBUTION,
            "distributionItems": [{"clientOrderItemId": item_id, "quantityPerRecipient": 123}],
            "recipients": [
                {"name": "Ada", "email": "ada@example.com"},
                {"name": "Grace", "email": "grace@example.com"},
            ],
        }

        token = token_of(api.post(EMAIL, headers=tenant.headers, json=body))
        pending = resolve(api, tenant, token)[0]
        run_worker(db)
        done = resolve(api, tenant, token)[0]

        assert (pending["status"], pending["entityType"]) == (
            "Processing",
            "VoucherOrderDistribution",
        )
        assert (done["status"], done["entityId"]) == ("Completed", pending["entityId"])
        with db.unit_of_work(write=False) as session:
            distribution_id = session.scalars(select(Distribution.id)).one()
            deliveries = session.scalar(select(func.count()).select_from(Delivery))
        shares = _share_codes(api, tenant, distribution_id)
        assert [len(s) for s in shares] == [123, 123]
        assert len(set(shares[0]) | set(shares[1])) == 246
        assert deliveries == 0
        order_item = api.get("/api/v1/orders", headers=tenant.headers).json()["data"][0]["items"][0]
        assert (order_item["distributed"], order_item["available"]) == (246, 0)

    def test_one_token_per_distribution_item_and_mobile_recipients(
        self, api: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant, item_id = client_with_order(api, db, clock, quantity=3)
        # A second order, so a distribution can name two items.
        token_of(api.post(ORDER, headers=tenant.headers, json={
            **SEED_ORDER, "vouchers": [{**SEED_ORDER["vouchers"][0], "productCode": "VOUCHERTYPE1", "quantity": 2}],
        }))  # fmt: skip
        run_worker(db)
        orders = api.get("/api/v1/orders", headers=tenant.headers).json()["data"]
        second_item = orders[0]["items"][0]["id"]
        body = {
            "reference": "abc",
            "distributionData": "string",
            "distributionItems": [
                {"clientOrderItemId": item_id, "quantityPerRecipient": 1},
                {"clientOrderItemId": second_item, "quantityPerRecipient": 2},
            ],
            "externallyDistributed": True,
            "recipients": [{"name": "Ada", "mobileNumber": "+64211231234"}],
        }

        response = api.post(MOBILE, headers=tenant.headers, json=body)

        assert response.status_code == 200, response.text
        tokens = [r["operationResultToken"] for r in response.json()["responses"]]
        assert len(tokens) == len(set(tokens)) == 2
        run_worker(db)
        resolved = api.post(RESOLVE_HERE, headers=tenant.headers, json=tokens).json()
        assert [r["status"] for r in resolved] == ["Completed", "Completed"]
        assert [r["operationResultToken"] for r in resolved] == tokens

    @pytest.mark.parametrize(
        ("change", "field", "reason"),
        [
            ({"quantityPerRecipient": 6}, "distributionItems[0].quantityPerRecipient",
             "item {item} has 5 of its 5 vouchers left to distribute; this distribution asks for 6"),
            ({"quantityPerRecipient": 0}, "distributionItems[0].quantityPerRecipient",
             "Input should be greater than or equal to 1"),
        ],
    )  # fmt: skip
    def test_more_than_an_item_has_left_is_refused(
        self,
        api: TestClient,
        db: Database,
        clock: FakeClock,
        change: dict[str, Any],
        field: str,
        reason: str,
    ) -> None:
        tenant, item_id = client_with_order(api, db, clock, quantity=5)
        item = {"clientOrderItemId": item_id, "quantityPerRecipient": 1, **change}
        body = {
            **SEED_DISTRIBUTION,
            "distributionItems": [item],
            "recipients": [{"email": "ada@example.com"}],
        }
        before = rows(db)

        response = api.post(EMAIL, headers=tenant.headers, json=body)

        assert response.status_code == 400
        assert response.json()["errors"] == {field: [reason.format(item=item_id)]}
        assert rows(db) == before

    def test_internal_distribution_needs_an_email_provider(
        self, api: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant, item_id = client_with_order(api, db, clock)
        body = {
            **SEED_DISTRIBUTION,
            "distributionItems": [{"clientOrderItemId": item_id, "quantityPerRecipient": 1}],
            "externallyDistributed": False,
            "recipients": [{"email": "ada@example.com"}],
        }

        response = api.post(EMAIL, headers=tenant.headers, json=body)

        assert response.status_code == 400
        assert list(response.json()["errors"]) == ["externallyDistributed.channel"]

    def test_a_mobile_recipient_needs_a_mobile_number(
        self, api: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant, item_id = client_with_order(api, db, clock)
        body = {
            **SEED_DISTRIBUTION,
            "distributionItems": [{"clientOrderItemId": item_id, "quantityPerRecipient": 1}],
            "recipients": [{"name": "Ada", "mobileNumber": "12"}],
        }

        response = api.post(MOBILE, headers=tenant.headers, json=body)

        assert response.status_code == 400
        assert list(response.json()["errors"]) == ["recipients[0].mobileNumber"]


class TestResolve:
    def test_unknown_and_other_tenants_tokens_resolve_to_nulls(
        self, api: TestClient, db: Database
    ) -> None:
        tenant, other = seeded(db), seeded(db)
        mine = token_of(api.post(CLIENT, headers=tenant.headers, json=SEED_CLIENT))
        theirs = token_of(api.post(CLIENT, headers=other.headers, json=SEED_CLIENT))

        resolved = resolve(api, tenant, mine, theirs, "aGVsbG8gd...")

        assert resolved[0]["status"] == "Completed"
        nothing = {"entityId": None, "status": None, "entityType": None}
        assert resolved[1:] == [
            {"operationResultToken": theirs, **nothing},
            {"operationResultToken": "aGVsbG8gd...", **nothing},
        ]

    @pytest.mark.parametrize("body", [{"tokens": ["x"]}, [], [1, 2], "x"])
    def test_refuses_a_body_that_is_not_a_list_of_tokens(
        self, api: TestClient, db: Database, body: Any
    ) -> None:
        tenant = seeded(db)

        response = api.post(RESOLVE, headers=tenant.headers, json=body)

        assert response.status_code == 400
        assert response.json()["status"] == 400


class TestFace:
    @pytest.mark.parametrize("path", [CLIENT, ORDER, EMAIL, MOBILE, RESOLVE, RESOLVE_HERE])
    def test_every_endpoint_wants_a_bearer_token(
        self, api: TestClient, db: Database, path: str
    ) -> None:
        seeded(db)
        for headers in ({}, {"Authorization": "Bearer nope.nope"}, {"Authorization": "Basic x"}):
            response = api.post(path, headers=headers, json={})
            assert response.status_code == 401, (path, headers, response.text)
            assert response.headers["content-type"] == "application/json"
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["title"] == "Unauthorized"

    def test_scopes(self, api: TestClient, db: Database) -> None:
        tenant = seeded(db)
        reader = tenant.key_with(db, ["redeem"])

        refused = api.post(CLIENT, headers=reader, json=SEED_CLIENT)
        resolved = api.post(RESOLVE, headers=reader, json=["x"])

        assert refused.status_code == 403
        assert "manage" in refused.json()["errors"][""][0]
        assert resolved.status_code == 200

    def test_correlation_ids_and_malformed_json(self, api: TestClient, db: Database) -> None:
        tenant = seeded(db)
        headers = {**tenant.headers, "correlationid": "corr-42", "Content-Type": "application/json"}

        broken = api.post(CLIENT, headers=headers, content=b'{"code": ')

        assert broken.status_code == 400
        assert broken.json()["errors"] == {"": ["the request body is not valid JSON"]}
        assert broken.headers["vista-correlation-id"] == "corr-42"
        assert len(broken.headers["vista-trace-id"]) == 32
        assert broken.json()["traceId"] == broken.headers["vista-trace-id"]
        fresh = api.post(CLIENT, headers=tenant.headers, json=SEED_CLIENT)
        assert len(fresh.headers["vista-correlation-id"]) == 32

    def test_a_retry_with_an_idempotency_key_places_one_order(
        self, api: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = seeded(db)
        clock.set(SEED_TIME)
        body = {**SEED_CLIENT, "voucherTypeCodes": ["ABC12"]}
        token_of(api.post(CLIENT, headers=tenant.headers, json=body))
        headers = {**tenant.headers, "Idempotency-Key": "vista-1"}

        first = api.post(ORDER, headers=headers, json=SEED_ORDER)
        again = api.post(ORDER, headers=headers, json=SEED_ORDER)

        assert token_of(first) == token_of(again)
        assert again.headers["idempotent-replayed"] == "true"
        assert rows(db)[1] == 1


class TestIsolation:
    def test_another_tenants_client_and_order_items_are_unknown(
        self, api: TestClient, db: Database, clock: FakeClock
    ) -> None:
        _, item_id = client_with_order(api, db, clock)
        intruder = seeded(db)
        before = rows(db)

        order = api.post(ORDER, headers=intruder.headers, json=SEED_ORDER)
        body = {
            **SEED_DISTRIBUTION,
            "distributionItems": [{"clientOrderItemId": item_id, "quantityPerRecipient": 1}],
            "recipients": [{"email": "ada@example.com"}],
        }
        distribution = api.post(EMAIL, headers=intruder.headers, json=body)

        assert order.json()["errors"] == {"clientCode": ["no client with id or code 'ABC123'"]}
        assert distribution.json()["errors"] == {
            "distributionItems[0].clientOrderItemId": [f"no client order item {item_id}"]
        }
        assert rows(db) == before
        assert api.get("/api/v1/clients", headers=intruder.headers).json()["data"] == []
