"""The i-movo dialect: every request of the seed replayed word for word (path, X-API-KEY,
query string or body, the seed's casing), every field and error string of its answers checked,
and the SMS or email each campaign sends checked at the local provider and SMTP server."""

from __future__ import annotations

import json
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from tests.factories.campaigns import make_campaign
from tests.factories.redemptions import make_redemption
from tests.factories.tenants import Tenant, make_tenant
from tests.support.databases import pg_admin
from tests.support.delivery import (
    Provider,
    SmtpServer,
    deliver_due,
    settings_for,
    with_all_channels,
)
from tests.support.rows import count_rows
from voucherd.app import create_app
from voucherd.auth.service import create_key
from voucherd.config import Settings
from voucherd.db.engine import Database
from voucherd.delivery.models import Delivery

BASE = "https://core-uat-api.azurewebsites.net"
REQUEST = "/VoucherRequest/Request?campaignCode=THINK&customerReference=07123456789&value=20.00"
WITH_ID = "/VoucherRequest/RequestVoucherWithId"
# The seed's RequestVoucherWithId body, with the email address quoted: the seed prints it bare,
# which is not JSON, and a client's JSON writer quotes it.
WITH_ID_BODY = """{
"CampaignCode":"CAMP01",
"VoucherValue": 1.00,
"CustomerReference": "09283-765748",
"DeliveryRecipient": "Johnsmith@email.com",
"CustomerName": "John Smith",
"Address": "19 Test Street, Welwyn Garden City",
"Postcode": "AL1 0BS"
}"""
FAILED = {"successfulRequest": False}


@pytest.fixture
def settings(provider: Provider, smtp: SmtpServer) -> Settings:
    return settings_for(provider, smtp_ca_file=smtp.ca_file)


@pytest.fixture
def tenant(tenant: Tenant, db: Database) -> Tenant:
    # The seed's THINK: £ cash vouchers up to an agreed maximum, expiring at the end of a day.
    make_campaign(
        db,
        tenant,
        name="THINK",
        type="CASH",
        currency="GBP",
        default_value=1000,
        max_value=5000,
        lifetime_days=8,
        timezone="Europe/London",
        locale="en-GB",
    )
    make_campaign(
        db,
        tenant,
        name="CAMP01",
        type="CASH",
        currency="GBP",
        default_value=500,
        lifetime_days=55,
        timezone="Europe/London",
        locale="en-GB",
    )
    return tenant


def key(tenant: Tenant) -> dict[str, str]:
    return {"X-API-KEY": tenant.key.token}


def failure(*messages: str) -> dict[str, Any]:
    return {"errorMessages": list(messages), **FAILED}


def plain_text(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def deliveries(db: Database) -> list[Delivery]:
    with db.unit_of_work(write=False) as session:
        return list(session.query(Delivery).order_by(Delivery.id))


def request_voucher(api: TestClient, tenant: Tenant, query: str) -> Any:
    return api.post(f"/VoucherRequest/Request?{query}", headers=key(tenant))


class TestRequestVoucher:
    def test_the_seed_request_answers_every_field_of_the_seed(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        response = api.post(BASE + REQUEST, headers={"X-API-KEY": tenant.key.token})

        assert response.status_code == 200, response.text
        answer = response.json()
        assert list(answer) == [
            "voucherCode",
            "balance",
            "expiryDate",
            "message",
            "successfulRequest",
        ]
        code = answer["voucherCode"]
        assert '"balance":20.00' in response.text  # the seed's number, with its decimals
        assert answer["balance"] == 20.00
        # The end of the 8th day in London, as .NET writes a local DateTime.
        assert answer["expiryDate"] == "2026-06-23T23:59:59.999999"
        assert answer["successfulRequest"] is True
        native = api.get(f"/api/v1/vouchers/{code}", headers=tenant.headers).json()
        assert (native["value"], native["customer_ref"]) == (2000, "07123456789")
        page = native["page_url"]
        assert answer["message"] == (
            f"Your THINK voucher worth £20.00: {code}, valid until 23 Jun 2026, 23:59:59. {page}"
        )

    def test_the_message_is_the_campaigns_own_template(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        template = (
            "{{ value }} CashOut voucher valid at any PayPoint to {{ expiry }}: {{ page_url }} "
            "OR shop: use CASHOUT > I-MOVO > {{ code }} > ENTER Help? 0800 310 0000"
        )
        make_campaign(
            db,
            tenant,
            name="PAYPOINT",
            type="CASH",
            currency="GBP",
            locale="en-GB",
            message_templates={"sms": {"text": template}},
        )

        answer = request_voucher(api, tenant, "campaignCode=PAYPOINT&customerReference=c-1").json()

        code = answer["voucherCode"]
        assert answer["message"].startswith("£50.00 CashOut voucher valid at any PayPoint to")
        assert answer["message"].endswith(
            f"use CASHOUT > I-MOVO > {code} > ENTER Help? 0800 310 0000"
        )
        assert "https://vouchers.example/v/" in answer["message"]

    def test_without_a_value_the_campaigns_default_is_issued(
        self, api: TestClient, tenant: Tenant
    ) -> None:
        response = request_voucher(api, tenant, "campaignCode=THINK&customerReference=c-1")
        assert '"balance":10.00' in response.text

    def test_a_campaign_that_delivers_sends_the_sms_to_the_customer_reference(
        self, api: TestClient, db: Database, tenant: Tenant, provider: Provider
    ) -> None:
        with_all_channels(db, tenant, provider)
        make_campaign(
            db, tenant, name="THINK-SMS", type="CASH", currency="GBP", locale="en-GB",
            delivery_channel="phone",
        )  # fmt: skip

        response = request_voucher(
            api, tenant, "campaignCode=THINK-SMS&customerReference=07123456789&value=20.00"
        )

        assert response.status_code == 200, response.text
        assert deliver_due(db) == 1
        [sms] = provider.of("sms")
        # A national number, read in the campaign locale's country.
        assert sms.form()["To"] == "+447123456789"
        assert sms.form()["Body"] == response.json()["message"]

    def test_a_campaign_that_does_not_deliver_sends_nothing(
        self, api: TestClient, db: Database, tenant: Tenant, provider: Provider
    ) -> None:
        with_all_channels(db, tenant, provider)
        assert api.post(REQUEST, headers=key(tenant)).status_code == 200
        assert deliveries(db) == []
        assert deliver_due(db) == 0

    def test_an_email_campaign_mails_the_customer_reference(
        self, api: TestClient, db: Database, tenant: Tenant, provider: Provider, smtp: SmtpServer
    ) -> None:
        with_all_channels(db, tenant, provider, smtp=smtp)
        make_campaign(
            db, tenant, name="MAIL", type="CASH", currency="GBP", delivery_channel="email"
        )

        answer = request_voucher(
            api, tenant, "campaignCode=MAIL&customerReference=jo@example.com"
        ).json()

        assert deliver_due(db) == 1
        [(envelope, message)] = smtp.messages
        assert envelope.rcpt_tos == ["jo@example.com"]
        assert answer["voucherCode"] in plain_text(message)

    def test_a_customer_reference_that_cannot_be_reached_is_refused_before_issuing(
        self, api: TestClient, db: Database, tenant: Tenant, provider: Provider
    ) -> None:
        with_all_channels(db, tenant, provider)
        make_campaign(db, tenant, name="SMS", type="CASH", currency="GBP", delivery_channel="phone")
        before = count_rows(db)

        response = request_voucher(api, tenant, "campaignCode=SMS&customerReference=cust-42")

        assert response.status_code == 400
        [message] = response.json()["errorMessages"]
        assert message.startswith(
            "Unable to create voucher: customer reference: this campaign delivers every "
            "voucher by phone: not a phone number"
        )
        assert count_rows(db) == before

    def test_parameters_may_come_as_a_json_body_or_a_form(
        self, api: TestClient, tenant: Tenant
    ) -> None:
        as_json = api.post(
            "/VoucherRequest/Request",
            headers=key(tenant),
            json={"campaignCode": "THINK", "customerReference": "07123456789", "value": 20.00},
        )
        as_form = api.post(
            "/VoucherRequest/Request",
            headers=key(tenant),
            data={"campaignCode": "THINK", "customerReference": "07123456789", "value": "20.00"},
        )
        mixed = api.post(
            "/VoucherRequest/Request?campaignCode=THINK",
            headers=key(tenant),
            json={"customerReference": 7123456789},
        )

        for response in (as_json, as_form, mixed):
            assert response.status_code == 200, response.text
            assert response.json()["successfulRequest"] is True
        assert '"balance":20.00' in as_json.text
        assert '"balance":20.00' in as_form.text

    def test_a_parameter_given_twice_is_refused(self, api: TestClient, tenant: Tenant) -> None:
        response = api.post(REQUEST, headers=key(tenant), json={"CampaignCode": "THINK"})
        assert response.status_code == 400
        assert response.json() == failure("CampaignCode is given more than once")


class TestRequestErrors:
    def test_the_seeds_unknown_campaign_error(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        response = request_voucher(api, tenant, "campaignCode=NOPE&customerReference=1&value=20.00")

        assert response.status_code == 400
        assert response.json() == {
            "errorMessages": [
                "Unable to create voucher: the campaign code submitted does not exist"
            ],
            "successfulRequest": False,
        }

    @pytest.mark.parametrize(
        "value", ["50.01", "0", "0.00", "-5.00", "abc", "20.001", "NaN", "Infinity", "1e400"]
    )
    def test_the_seeds_invalid_value_error(
        self, api: TestClient, db: Database, tenant: Tenant, value: str
    ) -> None:
        before = count_rows(db)

        response = request_voucher(
            api, tenant, f"campaignCode=THINK&customerReference=07123456789&value={value}"
        )

        assert response.status_code == 400
        assert response.json() == {
            "errorMessages": ["Unable to create voucher: the value entered is invalid"],
            "successfulRequest": False,
        }
        assert count_rows(db) == before

    def test_the_maximum_itself_is_allowed(self, api: TestClient, tenant: Tenant) -> None:
        response = request_voucher(api, tenant, "campaignCode=THINK&customerReference=1&value=50")
        assert '"balance":50.00' in response.text

    def test_the_weekly_value_limit(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db, weekly_value_limit=3000)
        make_campaign(db, tenant, name="THINK", type="CASH", currency="GBP")

        first = request_voucher(api, tenant, "campaignCode=THINK&customerReference=1&value=20.00")
        second = request_voucher(api, tenant, "campaignCode=THINK&customerReference=2&value=20.00")

        assert first.json()["successfulRequest"] is True
        assert second.status_code == 400
        assert second.json() == failure("ClientWeeklyValueLimitReached")

    def test_missing_parameters_are_all_named(self, api: TestClient, tenant: Tenant) -> None:
        response = api.post("/VoucherRequest/Request", headers=key(tenant))
        assert response.status_code == 400
        assert response.json() == failure(
            "campaign code is required", "customer reference is required"
        )

    def test_an_inactive_campaign_is_refused(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        make_campaign(db, tenant, name="OFF", type="CASH", currency="GBP", active=False)
        response = request_voucher(api, tenant, "campaignCode=OFF&customerReference=1")
        assert response.json() == failure("Unable to create voucher: the campaign is not active")

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            (b'{"campaignCode": "THINK",', "the request body is not valid JSON"),
            (b'["THINK"]', "the request body must be a JSON object"),
            (
                b'{"campaignCode": ["THINK"], "customerReference": "1"}',
                "campaign code must be text",
            ),
        ],
    )
    def test_a_body_that_is_not_a_json_object_of_text_is_refused(
        self, api: TestClient, tenant: Tenant, body: bytes, message: str
    ) -> None:
        response = api.post(
            "/VoucherRequest/Request",
            headers={**key(tenant), "Content-Type": "application/json"},
            content=body,
        )
        assert response.status_code == 400
        assert response.json() == failure(message)

    def test_a_customer_reference_too_long_to_store_is_named(
        self, api: TestClient, tenant: Tenant
    ) -> None:
        response = request_voucher(api, tenant, f"campaignCode=THINK&customerReference={'x' * 201}")
        assert response.status_code == 400
        assert response.json() == failure(
            "customer reference is invalid: String should have at most 200 characters"
        )


class TestRequestVoucherWithId:
    def test_the_seed_request_stores_and_shows_the_holder_and_mails_the_recipient(
        self, api: TestClient, db: Database, tenant: Tenant, provider: Provider, smtp: SmtpServer
    ) -> None:
        with_all_channels(db, tenant, provider, smtp=smtp)
        with db.unit_of_work() as session:  # CAMP01 delivers by email (core setting)
            from voucherd.campaigns.models import Campaign

            campaign = session.query(Campaign).filter_by(name="CAMP01").one()
            campaign.delivery_channel = "email"
            session.commit()

        response = api.post(
            BASE + WITH_ID,
            headers={"X-API-KEY": tenant.key.token, "Content-Type": "application/json"},
            content=WITH_ID_BODY,
        )

        assert response.status_code == 200, response.text
        answer = response.json()
        assert list(answer) == [
            "voucherCode",
            "balance",
            "expiryDate",
            "message",
            "successfulRequest",
        ]
        assert '"balance":1.00' in response.text
        assert answer["expiryDate"] == "2026-08-09T23:59:59.999999"
        assert answer["successfulRequest"] is True
        code = answer["voucherCode"]
        assert code in answer["message"]
        assert "https://vouchers.example/v/" in answer["message"]
        native = api.get(f"/api/v1/vouchers/{code}", headers=tenant.headers).json()
        assert native["customer_ref"] == "09283-765748"
        assert native["holder"] == {
            "name": "John Smith",
            "address": "19 Test Street, Welwyn Garden City",
            "postcode": "AL1 0BS",
        }
        page = api.get(native["page_url"].removeprefix("https://vouchers.example"))
        assert page.status_code == 200
        for shown in ("John Smith", "19 Test Street, Welwyn Garden City", "AL1 0BS"):
            assert shown in page.text
        assert deliver_due(db) == 1
        [(envelope, message)] = smtp.messages
        assert envelope.rcpt_tos == ["Johnsmith@email.com"]
        assert code in plain_text(message)

    def test_the_field_lists_spelling_works_too(self, api: TestClient, tenant: Tenant) -> None:
        body = json.loads(WITH_ID_BODY)
        listed = {
            "campaignCode": body["CampaignCode"],
            "customerReference": body["CustomerReference"],
            "VoucherValue": body["VoucherValue"],
            "CustomerName": body["CustomerName"],
            "Address": body["Address"],
            "PostCode": body["Postcode"],
        }
        response = api.post(WITH_ID, headers=key(tenant), json=listed)
        assert response.status_code == 200, response.text
        code = response.json()["voucherCode"]
        native = api.get(f"/api/v1/vouchers/{code}", headers=key_bearer(tenant)).json()
        assert native["holder"]["postcode"] == "AL1 0BS"

    def test_the_seeds_missing_holder_errors_all_at_once(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        body = {"CampaignCode": "CAMP01", "VoucherValue": 1.00, "CustomerReference": "09283-765748"}
        before = count_rows(db)

        response = api.post(WITH_ID, headers=key(tenant), json=body)

        assert response.status_code == 400
        assert response.json() == {
            "errorMessages": [
                "address is required",
                "post code is required",
                "customer name is required",
            ],
            "successfulRequest": False,
        }
        assert count_rows(db) == before

    def test_one_missing_holder_field_is_named_alone(self, api: TestClient, tenant: Tenant) -> None:
        body = json.loads(WITH_ID_BODY)
        body["Postcode"] = "  "
        response = api.post(WITH_ID, headers=key(tenant), json=body)
        assert response.json() == failure("post code is required")

    def test_the_seeds_invalid_campaign_error(self, api: TestClient, tenant: Tenant) -> None:
        body = json.loads(WITH_ID_BODY)
        body["CampaignCode"] = "NOPE"

        response = api.post(WITH_ID, headers=key(tenant), json=body)

        assert response.status_code == 400
        assert response.json() == {"errorMessages": ["InvalidCampaign"], "successfulRequest": False}

    def test_the_seeds_weekly_limit_error(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db, weekly_value_limit=150)
        make_campaign(db, tenant, name="CAMP01", type="CASH", currency="GBP")

        first = api.post(WITH_ID, headers=key(tenant), content=WITH_ID_BODY)
        second = api.post(WITH_ID, headers=key(tenant), content=WITH_ID_BODY)

        assert first.json()["successfulRequest"] is True
        assert second.status_code == 400
        assert second.json() == {
            "errorMessages": ["ClientWeeklyValueLimitReached"],
            "successfulRequest": False,
        }

    def test_a_holder_name_too_long_to_print_is_named(
        self, api: TestClient, tenant: Tenant
    ) -> None:
        body = json.loads(WITH_ID_BODY)
        body["CustomerName"] = "J" * 201
        response = api.post(WITH_ID, headers=key(tenant), json=body)
        assert response.json() == failure(
            "customer name is invalid: String should have at most 200 characters"
        )

    def test_the_seeds_unquoted_example_is_not_json_and_says_so(
        self, api: TestClient, tenant: Tenant
    ) -> None:
        as_printed = WITH_ID_BODY.replace('"Johnsmith@email.com"', "Johnsmith@email.com")
        response = api.post(
            WITH_ID, headers={**key(tenant), "Content-Type": "application/json"}, content=as_printed
        )
        assert response.status_code == 400
        assert response.json() == failure("the request body is not valid JSON")


class TestCancelVoucher:
    def test_the_seed_request_cancels_and_a_second_is_refused(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        code = api.post(REQUEST, headers=key(tenant)).json()["voucherCode"]

        response = api.post(
            f"{BASE}/Voucher/CancelVoucher?voucherCode={code}",
            headers={"X-API-KEY": tenant.key.token},
        )

        assert response.status_code == 200, response.text
        assert response.json() == {"successfulRequest": True}
        native = api.get(f"/api/v1/vouchers/{code}", headers=tenant.headers).json()
        assert native["state"] == "CANCELLED"
        again = api.post(f"/Voucher/CancelVoucher?voucherCode={code}", headers=key(tenant))
        assert again.status_code == 400
        assert again.json() == {
            "errorMessages": ["Voucher is already cancelled or redeemed"],
            "successfulRequest": False,
        }

    def test_the_seeds_not_found_error(self, api: TestClient, tenant: Tenant) -> None:
        response = api.post("/Voucher/CancelVoucher?voucherCode=2193785990", headers=key(tenant))

        assert response.status_code == 404
        assert response.json() == {
            "errorMessages": ["Voucher not found"],
            "successfulRequest": False,
        }

    def test_a_redeemed_voucher_is_refused(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        code = api.post(REQUEST, headers=key(tenant)).json()["voucherCode"]
        make_redemption(db, tenant, code=code)

        response = api.post(
            "/Voucher/CancelVoucher", headers=key(tenant), json={"voucherCode": code}
        )

        assert response.json() == failure("Voucher is already cancelled or redeemed")

    def test_a_missing_voucher_code_is_named(self, api: TestClient, tenant: Tenant) -> None:
        response = api.post("/Voucher/CancelVoucher", headers=key(tenant))
        assert response.json() == failure("voucher code is required")

    def test_cancelling_takes_the_manage_scope(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        code = api.post(REQUEST, headers=key(tenant)).json()["voucherCode"]
        issuer = create_key(db, tenant.name, scopes=["issue"])

        response = api.post(
            f"/Voucher/CancelVoucher?voucherCode={code}", headers={"X-API-KEY": issuer.token}
        )

        assert response.status_code == 403
        assert response.json() == failure("this API key lacks the 'manage' scope")


class TestCredentials:
    @pytest.mark.parametrize(
        "path", [REQUEST, WITH_ID, "/Voucher/CancelVoucher?voucherCode=2193785990"]
    )
    @pytest.mark.parametrize(
        ("headers", "message"),
        [
            ({}, "the X-API-KEY header is required"),
            ({"X-API-KEY": "vk_nobody.secret"}, "invalid or revoked API credentials"),
            ({"Authorization": "Bearer vk_nobody.secret"}, "the X-API-KEY header is required"),
        ],
    )
    def test_missing_or_wrong_keys_get_imovos_401(
        self, api: TestClient, db: Database, path: str, headers: dict[str, str], message: str
    ) -> None:
        response = api.post(path, headers=headers)
        assert response.status_code == 401
        assert response.json() == failure(message)

    def test_another_tenants_key_never_sees_the_voucher(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        code = api.post(REQUEST, headers=key(tenant)).json()["voucherCode"]
        other = make_tenant(db)

        cancel = api.post(f"/Voucher/CancelVoucher?voucherCode={code}", headers=key(other))
        issue = request_voucher(api, other, "campaignCode=THINK&customerReference=1")

        assert cancel.status_code == 404
        assert cancel.json() == failure("Voucher not found")
        assert issue.json() == failure(
            "Unable to create voucher: the campaign code submitted does not exist"
        )
        native = api.get(f"/api/v1/vouchers/{code}", headers=tenant.headers).json()
        assert native["state"] == "ACTIVE"

    def test_unknown_paths_and_methods_answer_in_the_envelope(
        self, api: TestClient, tenant: Tenant
    ) -> None:
        wrong_method = api.get("/VoucherRequest/Request", headers=key(tenant))
        assert wrong_method.status_code == 405
        assert wrong_method.json() == failure("use POST")
        unknown = api.post("/Voucher/Redeem", headers=key(tenant))
        assert unknown.status_code == 404
        assert unknown.json() == failure("no such endpoint")


def key_bearer(tenant: Tenant) -> dict[str, str]:
    return tenant.headers


class TestOneVoucherOnEveryFace:
    def test_issued_by_imovo_read_everywhere_redeemed_by_voucherify_then_not_cancellable(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        code = api.post(REQUEST, headers=key(tenant)).json()["voucherCode"]
        voucherify = {
            "X-App-Id": tenant.key.key_id,
            "X-App-Token": tenant.key.secret,
            "Content-Type": "application/json",
        }

        native = api.get(f"/api/v1/vouchers/{code}", headers=tenant.headers)
        assert native.status_code == 200, native.text
        assert (native.json()["state"], native.json()["balance"]) == ("ACTIVE", 2000)
        seen = api.get(f"/v1/vouchers/{code}", headers=voucherify)
        assert seen.status_code == 200, seen.text
        assert (seen.json()["id"], seen.json()["code"]) == (native.json()["id"], code)
        assert seen.json()["active"] is True
        assert seen.json()["gift"]["balance"] == 2000

        redeemed = api.post(
            "/v1/redemptions",
            headers=voucherify,
            json={"redeemables": [{"object": "voucher", "id": code}], "order": {"amount": 2000}},
        )
        assert redeemed.status_code == 200, redeemed.text
        after = api.get(f"/api/v1/vouchers/{code}", headers=tenant.headers).json()
        assert (after["state"], after["balance"]) == ("REDEEMED", 0)

        cancel = api.post(f"/Voucher/CancelVoucher?voucherCode={code}", headers=key(tenant))
        assert cancel.status_code == 400
        assert cancel.json() == failure("Voucher is already cancelled or redeemed")
        assert api.get(f"/api/v1/vouchers/{code}", headers=tenant.headers).json()["state"] == (
            "REDEEMED"
        )

    def test_another_tenants_keys_see_it_on_no_face(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        code = api.post(REQUEST, headers=key(tenant)).json()["voucherCode"]
        other = make_tenant(db)
        voucherify = {"X-App-Id": other.key.key_id, "X-App-Token": other.key.secret}

        assert api.get(f"/api/v1/vouchers/{code}", headers=other.headers).status_code == 404
        assert api.get(f"/v1/vouchers/{code}", headers=voucherify).status_code == 404
        yoyo = {"apiId": other.key.key_id, "apiPassword": other.key.secret}
        assert api.get(f"/cvs-issuer/rest/coupons/{code}", headers=yoyo).status_code == 404
        cancel = api.post(f"/Voucher/CancelVoucher?voucherCode={code}", headers=key(other))
        assert cancel.json() == failure("Voucher not found")


def test_a_database_outage_answers_503_in_the_envelope_then_recovers(
    backend: str, fresh_database: Callable[..., Database]
) -> None:
    if backend != "postgresql":
        pytest.skip("only a database server can drop connections under a live pool")
    db = fresh_database(pool_size=2)
    tenant = make_tenant(db)
    make_campaign(db, tenant, name="THINK", type="CASH", currency="GBP")
    with TestClient(create_app(db.settings, db=db), raise_server_exceptions=False) as client:
        assert client.post(REQUEST, headers=key(tenant)).status_code == 200
        terminate_connections(db)

        outage = client.post(REQUEST, headers=key(tenant))

        assert outage.status_code == 503
        assert outage.json() == failure("the service is unavailable; retry shortly")
        assert outage.headers["Retry-After"] == "1"
        assert client.post(REQUEST, headers=key(tenant)).json()["successfulRequest"] is True


def terminate_connections(db: Database) -> None:
    with pg_admin() as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (make_url(db.settings.database_url).database,),
        )
