"""Importing live vouchers: the operation, what it stores, and every face answering for them."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.factories import Tenant, make_campaign, make_tenant
from tests.imports.support import gift_rows, run_worker, to_csv
from voucherd.db.engine import Database

COUNT = 10_000


def start(api: TestClient, tenant: Tenant, campaign: str, body: bytes, **query: Any) -> str:
    response = api.post(
        f"/api/v1/campaigns/{campaign}/imports",
        headers={**tenant.headers, "Content-Type": "text/csv"},
        content=body,
        params=query,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def finished(api: TestClient, db: Database, tenant: Tenant, operation: str) -> dict[str, Any]:
    run_worker(db)
    shown = api.get(f"/api/v1/operations/{operation}", headers=tenant.headers).json()
    assert shown["status"] == "Completed", shown
    return dict(shown)


def test_smoke(api: TestClient, db: Database) -> None:
    tenant = make_tenant(db)
    campaign = make_campaign(db, tenant, max_value=10_000)
    rows = gift_rows(50)
    op = start(api, tenant, campaign.id, to_csv(rows))
    shown = finished(api, db, tenant, op)
    assert shown["result"]["imported"] == 50, shown
    with db.unit_of_work(write=False) as session:
        bad = session.execute(
            text(
                "SELECT v.code FROM voucher v LEFT JOIN ledger_entry l ON l.voucher_id = v.id "
                "WHERE v.campaign_id = :c GROUP BY v.id, v.code, v.balance "
                "HAVING coalesce(sum(l.delta), 0) != v.balance"
            ),
            {"c": campaign.id},
        ).all()
    assert bad == []
