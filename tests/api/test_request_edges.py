"""Edges of the native API's requests (issue 15, point 5): bodies that are not JSON, cursors
that no list gave, webhook URLs of the wrong scheme."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.factories.vouchers import issue
from voucherd.db.engine import Database
from voucherd.delivery.settings import new_webhook_secret

CAMPAIGN = {"name": "Edges", "type": "GIFT", "currency": "EUR", "default_value": 1000}


@pytest.fixture
def tenant(db: Database) -> Tenant:
    return make_tenant(db)


class TestContentType:
    @pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
    def test_a_body_not_sent_as_json_is_refused_naming_content_type(
        self, api: TestClient, tenant: Tenant, content_type: str
    ) -> None:
        response = api.post(
            "/api/v1/campaigns",
            content=json.dumps(CAMPAIGN),
            headers={**tenant.headers, "Content-Type": content_type},
        )

        assert response.status_code == 415, response.text
        problem = response.json()
        assert problem["code"] == "unsupported_media_type"
        assert problem["errors"] == [{"field": "Content-Type", "reason": problem["detail"]}]
        assert content_type in problem["detail"]
        assert "application/json" in problem["detail"]

    def test_a_body_without_content_type_is_refused_naming_it(
        self, api: TestClient, tenant: Tenant
    ) -> None:
        response = api.post(
            "/api/v1/campaigns", content=json.dumps(CAMPAIGN), headers=tenant.headers
        )

        assert response.status_code == 415, response.text
        assert "no Content-Type was sent" in response.json()["detail"]

    @pytest.mark.parametrize(
        "content_type",
        ["application/json", "application/json; charset=utf-8", "application/merge-patch+json"],
    )
    def test_json_is_read_as_json(self, api: TestClient, tenant: Tenant, content_type: str) -> None:
        headers = {**tenant.headers, "Content-Type": content_type}
        response = api.post("/api/v1/campaigns", content=json.dumps(CAMPAIGN), headers=headers)

        assert response.status_code == 201, response.text

    def test_a_route_without_a_body_ignores_its_content_type(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        campaign = make_campaign(db, tenant)
        code = issue(db, tenant, campaign).voucher.code
        response = api.post(
            f"/api/v1/vouchers/{code}/disable",
            content="",
            headers={**tenant.headers, "Content-Type": "text/plain"},
        )

        assert response.status_code == 200, response.text


class TestCursor:
    @pytest.mark.parametrize(
        "path", ["/api/v1/vouchers", "/api/v1/customers", "/api/v1/redemptions"]
    )
    def test_a_cursor_no_list_gave_is_refused_naming_it(
        self, api: TestClient, tenant: Tenant, path: str
    ) -> None:
        response = api.get(f"{path}?cursor=garbage", headers=tenant.headers)

        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "cursor"

    def test_next_cursor_still_pages(self, api: TestClient, db: Database, tenant: Tenant) -> None:
        campaign = make_campaign(db, tenant)
        made = {issue(db, tenant, campaign).voucher.id for _ in range(3)}
        first = api.get("/api/v1/vouchers?limit=2", headers=tenant.headers).json()
        cursor = first["next_cursor"]
        second = api.get(f"/api/v1/vouchers?limit=2&cursor={cursor}", headers=tenant.headers)

        assert second.status_code == 200, second.text
        shown = [v["id"] for v in first["data"] + second.json()["data"]]
        assert sorted(shown) == sorted(made)

    def test_the_document_declares_what_a_cursor_is(self, api: TestClient) -> None:
        document = api.get("/openapi.json").json()
        parameters = document["paths"]["/api/v1/vouchers"]["get"]["parameters"]
        (cursor,) = [p for p in parameters if p["name"] == "cursor"]
        assert "pattern" in cursor["schema"]


class TestWebhookUrl:
    @pytest.mark.parametrize("url", ["ftp://x", "ftp://hooks.example/in", "hooks.example"])
    def test_a_url_not_https_says_it_must_be(
        self, api: TestClient, tenant: Tenant, url: str
    ) -> None:
        patch = {"delivery": {"webhook": {"url": url, "secret": new_webhook_secret()}}}
        response = api.patch("/api/v1/tenant", headers=tenant.headers, json=patch)

        assert response.status_code == 422, response.text
        (error,) = response.json()["errors"]
        assert error["field"] == "delivery.webhook.url"
        assert "must be an https URL" in error["reason"]

    def test_https_and_a_local_http_server_are_accepted(
        self, api: TestClient, tenant: Tenant
    ) -> None:
        for url in ("https://issuer.example/hooks", "http://127.0.0.1:8080/hook"):
            patch = {"delivery": {"webhook": {"url": url, "secret": new_webhook_secret()}}}
            response = api.patch("/api/v1/tenant", headers=tenant.headers, json=patch)
            assert response.status_code == 200, response.text
