"""Edges that differ by face (issue 15, point 5): a body over the size limit and a NUL in the
URL answered in each face's own shape, Content-Types each face accepts or refuses, the
Voucherify face's query parameters, and Vista's distribution item ids being readable."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.support.clock import FakeClock
from tests.support.vista import (
    EMAIL,
    SEED_DISTRIBUTION,
    client_with_order,
    resolve,
    run_worker,
    token_of,
)
from voucherd.db.engine import Database
from voucherd.orders.models import Distribution

# Over the test settings' 64 KiB limit.
TOO_LARGE = b'{"x": "' + b"a" * (65 * 1024) + b'"}'
LIMIT = "request bodies are limited to 65536 bytes"


@pytest.fixture
def tenant(db: Database) -> Tenant:
    tenant = make_tenant(db)
    make_campaign(db, tenant, name="CAMP01", currency="GBP", default_value=2000)
    return tenant


def pair(tenant: Tenant) -> dict[str, str]:
    return {"X-App-Id": tenant.key.key_id, "X-App-Token": tenant.key.secret}


def yoyo(tenant: Tenant) -> dict[str, str]:
    return {"apiId": tenant.key.key_id, "apiPassword": tenant.key.secret}


class TestAtTheDoor:
    def test_voucherify_answers_its_error_object(self, api: TestClient, tenant: Tenant) -> None:
        response = api.post("/v1/campaigns", content=TOO_LARGE, headers=pair(tenant))

        assert response.status_code == 413
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {
            "code": 413,
            "key": "invalid_payload",
            "message": "Invalid payload",
            "details": f"body: {LIMIT}",
            "request_id": response.headers["x-request-id"],
        }

    def test_a_streamed_body_is_counted_and_refused_in_the_face_shape_too(
        self, api: TestClient, tenant: Tenant
    ) -> None:
        """No Content-Length: the body is counted as it is read (the handler is already running)."""
        chunks = iter([TOO_LARGE[: 32 * 1024], TOO_LARGE[32 * 1024 :]])
        response = api.post(
            "/v1/campaigns",
            content=chunks,
            headers={**pair(tenant), "Content-Type": "application/json"},
        )

        assert response.status_code == 413
        assert response.json()["details"] == f"body: {LIMIT}"

    def test_yoyo_answers_its_pair(self, api: TestClient, tenant: Tenant) -> None:
        response = api.post("/cvs-issuer/rest/coupons", content=TOO_LARGE, headers=yoyo(tenant))

        assert response.status_code == 413
        assert response.json() == {
            "responseCode": "body_too_large",
            "responseDesc": f"body: {LIMIT}",
        }

    def test_imovo_answers_its_envelope(self, api: TestClient, tenant: Tenant) -> None:
        response = api.post("/VoucherRequest/Request", content=TOO_LARGE)

        assert response.status_code == 413
        assert response.json() == {"errorMessages": [LIMIT], "successfulRequest": False}

    def test_vista_answers_its_problem_with_its_headers(
        self, api: TestClient, tenant: Tenant
    ) -> None:
        response = api.post(
            "/api/v1/voucher-management/client",
            content=TOO_LARGE,
            headers={"correlationid": "till-7"},
        )

        assert response.status_code == 413
        body = response.json()
        assert (body["status"], body["title"], body["errors"]) == (
            413, "Payload Too Large", {"body": [LIMIT]},
        )  # fmt: skip
        assert body["traceId"] == response.headers["vista-trace-id"]
        assert response.headers["vista-correlation-id"] == "till-7"

    def test_the_native_api_keeps_problem_json(self, api: TestClient, tenant: Tenant) -> None:
        response = api.post("/api/v1/campaigns", content=TOO_LARGE, headers=tenant.headers)

        assert response.status_code == 413
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "body_too_large"

    def test_a_nul_in_the_url_is_refused_in_the_face_shape(
        self, api: TestClient, tenant: Tenant
    ) -> None:
        voucherify = api.get("/v1/vouchers/A%00B", headers=pair(tenant))
        imovo = api.post("/Voucher/CancelVoucher?voucherCode=A%00B")

        assert voucherify.status_code == 400
        assert voucherify.json()["details"] == "path: the path contains a NUL character"
        assert imovo.status_code == 400
        assert imovo.json() == {
            "errorMessages": ["the query contains a NUL character"],
            "successfulRequest": False,
        }

    def test_the_document_declares_the_face_shape(self, api: TestClient) -> None:
        document = api.get("/openapi.json").json()
        answers = document["paths"]["/v1/campaigns"]["post"]["responses"]["413"]["content"]
        assert answers == {
            "application/json": {"schema": {"$ref": "#/components/schemas/VoucherifyError"}}
        }


CAMPAIGN = {"name": "Typed", "campaign_type": "GIFT_VOUCHERS", "voucher": {"gift": {"amount": 1}}}


class TestContentType:
    @pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
    def test_voucherify_refuses_a_body_not_sent_as_json_naming_content_type(
        self, api: TestClient, tenant: Tenant, content_type: str
    ) -> None:
        response = api.post(
            "/v1/campaigns",
            content=json.dumps(CAMPAIGN),
            headers={**pair(tenant), "Content-Type": content_type},
        )

        assert response.status_code == 400, response.text
        assert response.json()["key"] == "invalid_payload"
        assert response.json()["details"].startswith("Content-Type: the body must be JSON")

    def test_yoyo_still_reads_json_sent_as_text(self, api: TestClient, tenant: Tenant) -> None:
        response = api.post(
            "/cvs-issuer/rest/coupons",
            content=json.dumps({"campaignId": "CAMP01", "userRef": "u-1"}),
            headers={**yoyo(tenant), "Content-Type": "text/plain"},
        )

        assert response.status_code == 200, response.text
        assert response.json()["responseCode"] == "-1"

    @pytest.mark.parametrize(
        ("content_type", "content"),
        [
            ("text/plain", json.dumps({"campaignCode": "CAMP01", "customerReference": "c-1"})),
            ("application/x-www-form-urlencoded", "campaignCode=CAMP01&customerReference=c-1"),
        ],
    )
    def test_imovo_still_reads_json_as_text_and_forms(
        self, api: TestClient, tenant: Tenant, content_type: str, content: str
    ) -> None:
        response = api.post(
            "/VoucherRequest/Request",
            content=content,
            headers={"X-API-KEY": tenant.key.token, "Content-Type": content_type},
        )

        assert response.status_code == 200, response.text
        assert response.json()["successfulRequest"] is True

    def test_vista_still_reads_json_sent_as_text(self, api: TestClient, tenant: Tenant) -> None:
        client = {"code": "C1", "name": "Cinema", "voucherTypeCodes": ["CAMP01"]}
        response = api.post(
            "/api/v1/voucher-management/client",
            content=json.dumps(client),
            headers={**tenant.headers, "Content-Type": "text/plain"},
        )

        assert response.status_code == 200, response.text
        assert response.json()["responses"][0]["operationResultToken"]


class TestVoucherifyQuery:
    def test_a_misspelled_parameter_is_refused_naming_it(
        self, api: TestClient, tenant: Tenant
    ) -> None:
        response = api.get("/v1/vouchers?campain=CAMP01", headers=pair(tenant))

        assert response.status_code == 400, response.text
        assert response.json()["details"] == "campain: is not a parameter of this endpoint"

    def test_a_voucherify_filter_voucherd_does_not_do_is_refused_saying_so(
        self, api: TestClient, tenant: Tenant
    ) -> None:
        response = api.get("/v1/campaigns?campaign_type=GIFT_VOUCHERS", headers=pair(tenant))

        assert response.status_code == 400, response.text
        details = response.json()["details"]
        assert details == "campaign_type: a Voucherify filter voucherd does not support"

    @pytest.mark.parametrize(
        "query",
        [
            "/v1/campaigns?page=1&limit=10&expand=category&order=-created_at",
            "/v1/vouchers?campaign=CAMP01&customer=c-1&category=x&campaign_id=CAMP01",
            "/v1/redemptions?voucher=X&campaign=CAMP01&customer=c&result=SUCCESS",
            "/v1/publications?campaign=CAMP01&page=1&limit=5",
            "/v1/customers?email=a@example.com",
        ],
    )
    def test_the_parameters_voucherify_clients_send_are_accepted(
        self, api: TestClient, tenant: Tenant, query: str
    ) -> None:
        response = api.get(query, headers=pair(tenant))

        assert response.status_code == 200, response.text

    def test_a_sort_voucherd_does_not_do_is_refused(self, api: TestClient, tenant: Tenant) -> None:
        response = api.get("/v1/customers?order=created_at", headers=pair(tenant))

        assert response.status_code == 400, response.text
        assert response.json()["details"] == "order: voucherd lists newest first: only -created_at"

    def test_an_unknown_path_is_still_not_found(self, api: TestClient, tenant: Tenant) -> None:
        response = api.get("/v1/nothing-here?x=1", headers=pair(tenant))

        assert response.status_code == 404, response.text


class TestVistaDistributionTokens:
    def test_what_an_item_token_resolves_to_is_readable(
        self, api: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant, item_id = client_with_order(api, db, clock, quantity=2)
        body: dict[str, Any] = {
            **SEED_DISTRIBUTION,
            "distributionItems": [{"clientOrderItemId": item_id, "quantityPerRecipient": 2}],
        }
        token = token_of(api.post(EMAIL, headers=tenant.headers, json=body))
        run_worker(db)
        (resolved,) = resolve(api, tenant, token)
        with db.unit_of_work(write=False) as session:
            distribution_id = session.scalars(select(Distribution.id)).one()

        by_item = api.get(f"/api/v1/distributions/{resolved['entityId']}", headers=tenant.headers)
        by_id = api.get(f"/api/v1/distributions/{distribution_id}", headers=tenant.headers)

        assert resolved["entityId"].startswith("ditem_")
        assert by_item.status_code == 200, by_item.text
        assert by_item.json() == by_id.json()
        assert by_item.json()["id"] == distribution_id

    def test_another_tenants_item_is_not_found(
        self, api: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant, item_id = client_with_order(api, db, clock, quantity=1)
        body = {
            **SEED_DISTRIBUTION,
            "distributionItems": [{"clientOrderItemId": item_id, "quantityPerRecipient": 1}],
        }
        token = token_of(api.post(EMAIL, headers=tenant.headers, json=body))
        (resolved,) = resolve(api, tenant, token)
        stranger = make_tenant(db)

        response = api.get(
            f"/api/v1/distributions/{resolved['entityId']}", headers=stranger.headers
        )

        assert response.status_code == 404, response.text
