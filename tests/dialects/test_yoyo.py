"""The Yoyo / wiGroup dialect: the seed's requests replayed word for word, the SMS or WhatsApp
message each one sends checked at the local provider, and Yoyo's shape for every failure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from tests.factories.campaigns import make_campaign
from tests.factories.redemptions import make_redemption
from tests.factories.tenants import Tenant, make_tenant
from tests.support.clock import FakeClock
from tests.support.databases import pg_admin
from tests.support.delivery import (
    Provider,
    configure,
    deliver_due,
    settings_for,
    sms_settings,
    with_all_channels,
)
from tests.support.rows import count_rows
from voucherd.app import create_app
from voucherd.config import Settings
from voucherd.db.engine import Database
from voucherd.delivery.models import Delivery
from voucherd.vouchers.service import cancel_voucher, disable_voucher

URL = "/cvs-issuer/rest/coupons"

# The seed's two request bodies, byte for byte as its curl examples send them.
WITH_MESSAGE = """{
"campaignId": "1234",
"userRef": "your_customer_ref",
"mobileNumber": "+27821234567",
"smsMessage": "Your voucher code is ready!",
"sendSMS": true
}"""
OWN_CHANNEL = """{
"campaignId": "1234",
"userRef": "your_customer_reference"
}"""


@pytest.fixture
def settings(provider: Provider) -> Settings:
    return settings_for(provider)


@pytest.fixture
def tenant(tenant: Tenant, db: Database) -> Tenant:
    # The seed's campaignId "1234": campaigns are found by id or by name.
    make_campaign(db, tenant, name="1234", currency="ZAR", default_value=10000, lifetime_days=30)
    return tenant


def yoyo_headers(tenant: Tenant) -> dict[str, str]:
    return {
        "apiId": tenant.key.key_id,
        "apiPassword": tenant.key.secret,
        "Content-Type": "application/json",
    }


def issue(api: TestClient, tenant: Tenant, body: str, query: str = "?issueWiCode=true") -> Any:
    return api.post(URL + query, headers=yoyo_headers(tenant), content=body)


def deliveries(db: Database) -> list[Delivery]:
    with db.unit_of_work(write=False) as session:
        return list(session.query(Delivery).order_by(Delivery.created_at, Delivery.id))


class TestIssueWithMessageDelivery:
    """The seed's first example: issue, and send through the tenant's configured channel."""

    def test_the_seed_request_issues_and_sends_the_sms_with_the_code_appended(
        self, api: TestClient, db: Database, tenant: Tenant, provider: Provider
    ) -> None:
        configure(db, tenant, phone_channel="sms", sms=sms_settings())

        response = api.post(
            "/cvs-issuer/rest/coupons?issueWiCode=true",
            headers={
                "apiId": tenant.key.key_id,
                "apiPassword": tenant.key.secret,
                "Content-Type": "application/json",
            },
            content=WITH_MESSAGE,
        )

        assert response.status_code == 200, response.text
        coupon = response.json()
        assert coupon["stateId"] == "A"
        assert coupon["id"].startswith("v_")
        assert len(coupon["wiCode"]) >= 8
        assert coupon["userRef"] == "your_customer_ref"
        assert (coupon["value"], coupon["balance"]) == (10000, 10000)
        assert (coupon["responseCode"], coupon["responseDesc"]) == ("-1", "Success")
        assert deliver_due(db) == 1
        [sms] = provider.of("sms")
        assert sms.form()["To"] == "+27821234567"
        assert sms.form()["Body"] == f"Your voucher code is ready! {coupon['wiCode']}"
        [delivery] = deliveries(db)
        assert (delivery.channel, delivery.state, delivery.origin) == ("sms", "SENT", "issue")
        assert delivery.message == "Your voucher code is ready!"

    def test_a_campaign_template_that_places_the_message_decides_where_the_code_goes(
        self, api: TestClient, db: Database, provider: Provider
    ) -> None:
        tenant = make_tenant(db)
        make_campaign(
            db,
            tenant,
            name="1234",
            message_templates={"sms": {"text": "{{ message }} Code {{ code }}: {{ page_url }}"}},
        )
        configure(db, tenant, phone_channel="sms", sms=sms_settings())

        coupon = issue(api, tenant, WITH_MESSAGE).json()

        assert deliver_due(db) == 1
        body = provider.of("sms")[0].form()["Body"]
        assert body.startswith(f"Your voucher code is ready! Code {coupon['wiCode']}: ")
        assert "https://vouchers.example/v/" in body

    def test_without_sms_message_the_campaigns_own_message_is_sent(
        self, api: TestClient, db: Database, tenant: Tenant, provider: Provider
    ) -> None:
        configure(db, tenant, phone_channel="sms", sms=sms_settings())
        body = '{"campaignId": "1234", "userRef": "u-1", "mobileNumber": "+27821234567", "sendSMS": true}'

        coupon = issue(api, tenant, body).json()

        assert deliver_due(db) == 1
        text = provider.of("sms")[0].form()["Body"]
        assert text.startswith("Your 1234 voucher worth ZAR")
        assert coupon["wiCode"] in text

    def test_a_whatsapp_tenant_sends_the_same_request_by_whatsapp(
        self, api: TestClient, db: Database, tenant: Tenant, provider: Provider
    ) -> None:
        with_all_channels(db, tenant, provider, phone_channel="whatsapp")

        coupon = issue(api, tenant, WITH_MESSAGE).json()

        assert deliver_due(db) == 1
        assert provider.of("sms") == []
        [message] = provider.of("whatsapp")
        sent = message.json()
        assert sent["to"] == "+27821234567"
        parameters = [p["text"] for p in sent["template"]["components"][0]["parameters"]]
        assert coupon["wiCode"] in parameters

    def test_sendsms_as_a_string_is_read_as_jackson_reads_it(
        self, api: TestClient, db: Database, tenant: Tenant, provider: Provider
    ) -> None:
        configure(db, tenant, phone_channel="sms", sms=sms_settings())
        body = WITH_MESSAGE.replace('"sendSMS": true', '"sendSMS": "true"')

        assert issue(api, tenant, body).status_code == 200
        assert deliver_due(db) == 1


class TestIssueForOwnChannel:
    """The seed's second example: the wiCode comes back and nothing is sent."""

    def test_the_seed_request_returns_the_wicode_and_sends_nothing(
        self, api: TestClient, db: Database, tenant: Tenant, provider: Provider
    ) -> None:
        with_all_channels(db, tenant, provider)

        response = api.post(
            "/cvs-issuer/rest/coupons?issueWiCode=false",
            headers={
                "apiId": tenant.key.key_id,
                "apiPassword": tenant.key.secret,
                "Content-Type": "application/json",
            },
            content=OWN_CHANNEL,
        )

        assert response.status_code == 200, response.text
        coupon = response.json()
        assert coupon["stateId"] == "A"
        assert coupon["wiCode"]
        assert coupon["id"]
        assert coupon["userRef"] == "your_customer_reference"
        assert deliver_due(db) == 0
        assert provider.received == []
        # Issued without a delivery: no delivery row (issue 15 point 7), not a SENT one of
        # channel none that an operator would read as a message gone out.
        assert deliveries(db) == []

    def test_a_campaign_that_delivers_by_itself_does_not_when_yoyo_says_no_sms(
        self, api: TestClient, db: Database, tenant: Tenant, provider: Provider
    ) -> None:
        with_all_channels(db, tenant, provider)
        make_campaign(db, tenant, name="auto", delivery_channel="phone")

        response = issue(api, tenant, '{"campaignId": "auto", "userRef": "+447911123456"}')

        assert response.status_code == 200, response.text
        assert deliver_due(db) == 0
        assert deliveries(db) == []

    def test_issue_wicode_may_be_left_out_and_any_other_value_is_refused(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        assert issue(api, tenant, OWN_CHANNEL, query="").status_code == 200
        assert issue(api, tenant, OWN_CHANNEL, query="?issueWiCode=FALSE").status_code == 200
        refused = issue(api, tenant, OWN_CHANNEL, query="?issueWiCode=maybe")
        assert refused.status_code == 422
        assert refused.json() == {
            "responseCode": "invalid_input",
            "responseDesc": "issueWiCode: must be true or false",
        }

    def test_a_numeric_campaign_id_finds_the_campaign_named_so(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        response = issue(api, tenant, '{"campaignId": 1234, "userRef": "u-9"}')
        assert response.status_code == 200, response.text

    def test_unknown_fields_are_ignored(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        response = issue(api, tenant, '{"campaignId": "1234", "userRef": "u", "channel": "x"}')
        assert response.status_code == 200, response.text


class TestReadCoupon:
    def test_a_coupon_is_read_by_id_or_wicode_with_its_state_now(
        self, api: TestClient, db: Database, tenant: Tenant, clock: FakeClock
    ) -> None:
        coupon = issue(api, tenant, OWN_CHANNEL).json()
        headers = yoyo_headers(tenant)

        def state() -> str:
            read = api.get(f"{URL}/{coupon['id']}", headers=headers)
            assert read.status_code == 200, read.text
            return str(read.json()["stateId"])

        read = api.get(f"{URL}/{coupon['wiCode']}", headers=headers).json()
        assert read == coupon
        assert state() == "A"
        disable_voucher(db, tenant.caller, coupon["id"])
        assert state() == "D"
        cancel_voucher(db, tenant.caller, coupon["id"])
        assert state() == "C"

    def test_used_up_and_expired_coupons_read_r_and_e(
        self, api: TestClient, db: Database, tenant: Tenant, clock: FakeClock
    ) -> None:
        used = issue(api, tenant, OWN_CHANNEL).json()
        later = issue(api, tenant, OWN_CHANNEL).json()
        make_redemption(db, tenant, code=used["wiCode"], amount=10000)
        headers = yoyo_headers(tenant)

        assert api.get(f"{URL}/{used['id']}", headers=headers).json()["stateId"] == "R"
        clock.advance(days=31)
        assert api.get(f"{URL}/{later['id']}", headers=headers).json()["stateId"] == "E"

    def test_another_tenants_coupon_is_not_found(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        coupon = issue(api, tenant, OWN_CHANNEL).json()
        other = make_tenant(db)

        response = api.get(f"{URL}/{coupon['id']}", headers=yoyo_headers(other))

        assert response.status_code == 404
        assert response.json() == {"responseCode": "not_found", "responseDesc": "no such voucher"}


class TestErrors:
    @pytest.mark.parametrize(
        ("body", "description"),
        [
            ('{"campaignId": "1234"}', "userRef: is mandatory"),
            ('{"campaignId": "1234", "userRef": "  "}', "userRef: is mandatory"),
            ('{"userRef": "u-1"}', "campaignId: is mandatory"),
            ('{"campaignId": "1234", "userRef": ["u"]}', "userRef: must be a string"),
            (
                '{"campaignId": "1234", "userRef": "u-1", "sendSMS": true}',
                "mobileNumber: is mandatory when sendSMS is true",
            ),
            (
                '{"campaignId": "1234", "userRef": "u-1", "sendSMS": "yes"}',
                "sendSMS: must be true or false",
            ),
            (
                (
                    '{"campaignId": "1234", "userRef": "u-1", "sendSMS": true, '
                    '"mobileNumber": "0821234567"}'
                ),
                "mobileNumber: not a phone number in international form (e.g. +447911123456)",
            ),
            (
                '{"campaignId": "1234", "userRef": "' + "u" * 201 + '"}',
                "userRef: String should have at most 200 characters",
            ),
        ],
    )
    def test_bad_input_names_the_yoyo_field_and_writes_nothing(
        self, api: TestClient, db: Database, tenant: Tenant, body: str, description: str
    ) -> None:
        before = count_rows(db)

        response = issue(api, tenant, body)

        assert response.status_code == 422, response.text
        assert response.json() == {"responseCode": "invalid_input", "responseDesc": description}
        assert count_rows(db) == before

    def test_an_unknown_campaign_is_not_found(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        response = issue(api, tenant, '{"campaignId": "9999", "userRef": "u-1"}')

        assert response.status_code == 404
        assert response.json() == {
            "responseCode": "not_found",
            "responseDesc": "campaignId: no campaign with id or name '9999'",
        }

    def test_sending_without_a_phone_provider_is_refused_before_anything_is_written(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        before = count_rows(db)

        response = issue(api, tenant, WITH_MESSAGE)

        assert response.status_code == 422
        assert response.json()["responseCode"] == "channel_not_configured"
        assert response.json()["responseDesc"].startswith(
            "sendSMS: this tenant has no SMS or WhatsApp provider configured"
        )
        assert count_rows(db) == before

    @pytest.mark.parametrize(
        ("body", "description"),
        [
            ('{"campaignId": "1234",', "the body is not valid JSON"),
            ("", "the body is not valid JSON"),
            ('["1234"]', "the body must be a JSON object"),
        ],
    )
    def test_a_body_that_is_not_a_json_object_is_malformed(
        self, api: TestClient, tenant: Tenant, body: str, description: str
    ) -> None:
        response = issue(api, tenant, body)

        assert response.status_code == 400
        assert response.json() == {
            "responseCode": "malformed_json",
            "responseDesc": f"body: {description}",
        }

    def test_unknown_paths_and_methods_answer_in_yoyo_shape(
        self, api: TestClient, tenant: Tenant
    ) -> None:
        missing = api.get("/cvs-issuer/rest/campaigns", headers=yoyo_headers(tenant))
        assert missing.status_code == 404
        assert missing.json() == {"responseCode": "not_found", "responseDesc": "no such endpoint"}
        wrong = api.get(URL, headers=yoyo_headers(tenant))
        assert wrong.status_code == 405
        assert wrong.json()["responseCode"] == "method_not_allowed"


class TestCredentials:
    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"apiId": "vk_nobody"},
            {"apiId": "vk_nobody", "apiPassword": "wrong"},
        ],
    )
    def test_missing_or_wrong_credentials_get_yoyos_401(
        self, api: TestClient, db: Database, tenant: Tenant, headers: dict[str, str]
    ) -> None:
        response = api.post(URL, headers=headers, content=OWN_CHANNEL)

        assert response.status_code == 401
        assert response.json()["responseCode"] == "unauthorized"
        assert count_rows(db)["voucher"] == 0

    def test_a_wrong_password_for_a_real_key_is_refused(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        headers = {**yoyo_headers(tenant), "apiPassword": tenant.key.secret + "x"}
        response = api.post(URL, headers=headers, content=OWN_CHANNEL)
        assert response.status_code == 401
        assert response.json() == {
            "responseCode": "unauthorized",
            "responseDesc": "invalid or revoked API credentials",
        }

    def test_another_tenants_key_cannot_use_this_tenants_campaign(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        other = make_tenant(db)
        response = issue(api, other, OWN_CHANNEL)
        assert response.status_code == 404
        assert count_rows(db)["voucher"] == 0

    def test_a_key_without_the_issue_scope_is_forbidden(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        from voucherd.auth.service import create_key

        key = create_key(db, tenant.name, scopes=["redeem"])
        headers = {"apiId": key.key_id, "apiPassword": key.secret}

        response = api.post(URL, headers=headers, content=OWN_CHANNEL)

        assert response.status_code == 403
        assert response.json() == {
            "responseCode": "forbidden",
            "responseDesc": "this API key lacks the 'issue' scope",
        }


def test_a_database_outage_answers_503_in_yoyos_shape_then_recovers(
    backend: str, fresh_database: Callable[..., Database]
) -> None:
    if backend != "postgresql":
        pytest.skip("only a database server can drop connections under a live pool")
    db = fresh_database(pool_size=2)
    tenant = make_tenant(db)
    make_campaign(db, tenant, name="1234")
    with TestClient(create_app(db.settings, db=db), raise_server_exceptions=False) as client:
        assert issue(client, tenant, OWN_CHANNEL).status_code == 200
        terminate_connections(db)

        outage = issue(client, tenant, OWN_CHANNEL)

        assert outage.status_code == 503
        assert outage.json() == {
            "responseCode": "database_unavailable",
            "responseDesc": "the database is unavailable; retry shortly",
        }
        assert outage.headers["Retry-After"] == "1"
        assert issue(client, tenant, OWN_CHANNEL).status_code == 200


def terminate_connections(db: Database) -> None:
    with pg_admin() as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (make_url(db.settings.database_url).database,),
        )
