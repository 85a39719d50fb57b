from __future__ import annotations

from fastapi.testclient import TestClient

from tests.factories.tenants import make_tenant
from voucherd.db.engine import Database


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_issue_and_redeem_over_http(client: TestClient, db: Database) -> None:
    tenant = make_tenant(db)
    created = client.post(
        "/api/v1/campaigns",
        headers=tenant.headers,
        json={"name": "Gift", "type": "GIFT", "currency": "EUR", "default_value": 5000},
    )
    assert created.status_code == 201, created.text
    voucher = client.post("/api/v1/vouchers", headers=tenant.headers, json={"campaign": "Gift"})
    assert voucher.status_code == 201, voucher.text
    code = voucher.json()["code"]
    redeemed = client.post(
        "/api/v1/redemptions", headers=tenant.headers, json={"code": code, "amount": 1500}
    )
    assert redeemed.status_code == 201, redeemed.text
    assert redeemed.json()["voucher"]["balance"] == 3500
