"""`voucherd demo` on a fresh database, then the seed documents' example requests against it.

Each face's examples are replayed as the documents write them (seeds/000-004), with only the host
and the credentials changed; the few the documents cannot run as written (README, "Try every
face") are replayed with exactly the change the README names.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.support.http import refuse_server_errors
from voucherd.app import create_app
from voucherd.cli import app
from voucherd.db.engine import Database


@dataclass
class Demo:
    db: Database
    key: dict[str, Any]
    first: dict[str, Any]
    again: dict[str, Any]
    api: TestClient

    @property
    def yoyo(self) -> dict[str, str]:
        return {"apiId": self.key["key_id"], "apiPassword": self.key["secret"]}

    @property
    def voucherify(self) -> dict[str, str]:
        return {"X-App-Id": self.key["key_id"], "X-App-Token": self.key["secret"]}

    @property
    def imovo(self) -> dict[str, str]:
        return {"X-API-KEY": self.key["token"]}

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key['token']}"}


@pytest.fixture
def demo(fresh_database: Callable[..., Database]) -> Iterator[Demo]:
    db = fresh_database(pool_size=4)
    runner = CliRunner()
    env = {"VOUCHERD_DATABASE_URL": db.settings.database_url}
    runs = []
    for _ in range(2):
        result = runner.invoke(app, ["demo", "--json"], env=env)
        assert result.exit_code == 0, result.output
        runs.append(json.loads(result.stdout))
    with TestClient(create_app(db.settings, db=db), raise_server_exceptions=False) as client:
        yield Demo(db, runs[1]["key"], runs[0], runs[1], refuse_server_errors(client))


class TestDemo:
    def test_a_second_run_makes_nothing_new_but_a_key(self, demo: Demo) -> None:
        assert demo.first["tenant"] == "demo"
        assert "campaign THINK" in demo.first["created"]
        assert demo.first["existing"] == []
        assert demo.again["created"] == []
        assert sorted(demo.again["existing"]) == sorted(demo.first["created"])
        assert demo.first["key"]["key_id"] != demo.again["key"]["key_id"]

    def test_the_human_output_names_each_faces_headers(
        self, fresh_database: Callable[..., Database]
    ) -> None:
        db = fresh_database(pool_size=2)
        env = {"VOUCHERD_DATABASE_URL": db.settings.database_url}
        result = CliRunner().invoke(app, ["demo"], env=env)
        assert result.exit_code == 0, result.output
        for header in ("Authorization: Bearer", "X-API-KEY", "X-App-Id", "apiPassword"):
            assert header in result.stdout


class TestYoyoSeed:
    def test_get_wicode_for_custom_distribution(self, demo: Demo) -> None:
        answer = demo.api.post(
            "/cvs-issuer/rest/coupons?issueWiCode=false",
            headers=demo.yoyo,
            json={"campaignId": "1234", "userRef": "your_customer_reference"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["stateId"] == "A"
        assert answer.json()["wiCode"]

    def test_send_sms_names_the_missing_provider(self, demo: Demo) -> None:
        answer = demo.api.post(
            "/cvs-issuer/rest/coupons?issueWiCode=true",
            headers=demo.yoyo,
            json={
                "campaignId": "1234",
                "userRef": "your_customer_ref",
                "mobileNumber": "+27821234567",
                "smsMessage": "Your voucher code is ready!",
                "sendSMS": True,
            },
        )
        assert answer.status_code == 422
        assert answer.json()["responseCode"] == "channel_not_configured"


class TestVoucherifySeed:
    def test_publish_a_specific_code_to_a_customer(self, demo: Demo) -> None:
        answer = demo.api.post(
            "/v1/publications",
            headers=demo.voucherify,
            json={
                "voucher": "ycs2AnLT",
                "customer": "cust_RZa0oS7qUT9giVISFVJhKlMq",
                "channel": "newsletter_October",
            },
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["voucher"]["code"] == "ycs2AnLT"
        assert body["voucher"]["discount"]["percent_off"] == 10
        assert body["channel"] == "newsletter_October"

    def test_publish_two_codes_from_a_pool_to_a_new_customer(self, demo: Demo) -> None:
        body = {
            "campaign": {"name": "100k-test", "count": 2},
            # The seed's address reads "[email protected]" as scraped: any real one.
            "customer": {"email": "erlich@example.com", "name": "Erlich Bachman"},
            "metadata": {"test": True, "provider": "Shop Admin"},
        }
        answer = demo.api.post("/v1/publications", headers=demo.voucherify, json=body)
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["vouchers"]) == 2

    def test_add_a_voucher_to_the_gift_card_campaign(self, demo: Demo) -> None:
        answer = demo.api.post(
            "/v1/campaigns/Gift Card Campaign/vouchers", headers=demo.voucherify, json={}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["campaign"] == "Gift Card Campaign"


class TestImovoSeed:
    def test_request_a_voucher(self, demo: Demo) -> None:
        answer = demo.api.post(
            "/VoucherRequest/Request?campaignCode=THINK&customerReference=07123456789&value=20.00",
            headers=demo.imovo,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["successfulRequest"] is True
        assert answer.json()["balance"] == 20.00

    def test_request_a_voucher_with_id_check(self, demo: Demo) -> None:
        body = {
            "CampaignCode": "CAMP01",
            "VoucherValue": 1.00,
            "CustomerReference": "09283-765748",
            "DeliveryRecipient": "Johnsmith@email.com",  # quoted: the seed's is not JSON
            "CustomerName": "John Smith",
            "Address": "19 Test Street, Welwyn Garden City",
            "Postcode": "AL1 0BS",
        }
        answer = demo.api.post(
            "/VoucherRequest/RequestVoucherWithId", headers=demo.imovo, json=body
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["balance"] == 1.00

    def test_cancel_a_voucher(self, demo: Demo) -> None:
        url = "/Voucher/CancelVoucher?voucherCode=2193785990"
        answer = demo.api.post(url, headers=demo.imovo)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"successfulRequest": True}
        again = demo.api.post(url, headers=demo.imovo)
        assert again.json()["errorMessages"] == ["Voucher is already cancelled or redeemed"]


# The seed's two examples, as written.
VISTA_CLIENT: dict[str, Any] = {
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
VISTA_ORDER: dict[str, Any] = {
    "clientCode": "ABC123",
    "reference": "My internal ref #1234",
    "electronicDistribution": True,
    "externalUserId": "User-123",
    "deliveryAddress": {},
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


class TestVistaSeed:
    def _resolve(self, demo: Demo, token: str) -> dict[str, Any]:
        answer = demo.api.post(
            "/api/v1/identity-resolution/from-operation-result-tokens",
            headers=demo.bearer,
            json=[token],
        )
        assert answer.status_code == 200, answer.text
        resolved: dict[str, Any] = answer.json()[0]
        return resolved

    def test_create_the_client_as_written(self, demo: Demo) -> None:
        answer = demo.api.post(
            "/api/v1/voucher-management/client", headers=demo.bearer, json=VISTA_CLIENT
        )
        assert answer.status_code == 200, answer.text
        token = answer.json()["responses"][0]["operationResultToken"]
        resolved = self._resolve(demo, token)
        assert (resolved["status"], resolved["entityType"]) == ("Completed", "VoucherClient")

    def test_order_with_the_two_changes_the_readme_names(self, demo: Demo) -> None:
        client = {**VISTA_CLIENT, "voucherTypeCodes": ["VOUCHERTYPE1", "VOUCHERTYPE2", "ABC12"]}
        made = demo.api.post("/api/v1/voucher-management/client", headers=demo.bearer, json=client)
        assert made.status_code == 200, made.text
        order = json.loads(json.dumps(VISTA_ORDER))
        order["vouchers"][0]["expiryDate"] = "2030-02-01T00:00:00Z"

        answer = demo.api.post(
            "/api/v1/voucher-management/client-order", headers=demo.bearer, json=order
        )

        assert answer.status_code == 200, answer.text
        token = answer.json()["responses"][0]["operationResultToken"]
        assert self._resolve(demo, token)["entityType"] == "VoucherClientOrder"
