"""Vista's seed requests and the steps its tests share: the seed client and order, completed."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.support.clock import FakeClock
from voucherd.composition import run_due_operations
from voucherd.db.engine import Database
from voucherd.orders.models import ClientOrder

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
