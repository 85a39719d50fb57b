"""A database connection that dies under a request is a retryable 503, not a 500."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import make_tenant
from tests.support.databases import pg_admin
from voucherd.app import create_app
from voucherd.db.engine import Database


def test_killed_connections_answer_503_then_recover(
    backend: str, fresh_database: Callable[..., Database]
) -> None:
    if backend != "postgresql":
        pytest.skip("only a database server can drop connections under a live pool")
    db = fresh_database(pool_size=2)
    tenant = make_tenant(db)
    make_campaign(db, tenant, name="Gift")
    app = create_app(db.settings, db=db)
    with TestClient(app, raise_server_exceptions=False) as client:
        first = client.post("/api/v1/vouchers", headers=tenant.headers, json={"campaign": "Gift"})
        assert first.status_code == 201, first.text
        with pg_admin() as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (make_url(db.settings.database_url).database,),
            ).fetchone()
        assert killed is not None
        assert killed[0] >= 1
        outage = client.post(
            "/api/v1/vouchers",
            headers={**tenant.headers, "Idempotency-Key": "after-outage"},
            json={"campaign": "Gift"},
        )
        assert outage.status_code == 503, outage.text
        assert outage.json()["code"] == "database_unavailable"
        assert outage.headers["Retry-After"] == "1"
        retried = client.post(
            "/api/v1/vouchers",
            headers={**tenant.headers, "Idempotency-Key": "after-outage"},
            json={"campaign": "Gift"},
        )
        assert retried.status_code == 201, retried.text
        listed = client.get("/api/v1/vouchers", headers=tenant.headers)
        assert len(listed.json()["data"]) == 2
