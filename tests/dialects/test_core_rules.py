"""Core rules the dialects asked for, through the native API (they are for everyone): a
campaign that delivers every voucher, an issuer's own message text on a delivery, and a value
given in major units of the campaign's currency."""

from __future__ import annotations

from email.message import EmailMessage

import pytest
from fastapi.testclient import TestClient

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.support.delivery import (
    Provider,
    SmtpServer,
    deliver_due,
    settings_for,
    with_all_channels,
)
from tests.support.rows import count_rows
from voucherd.config import Settings
from voucherd.db.engine import Database
from voucherd.vouchers.mint import mint_vouchers
from voucherd.vouchers.schemas import MintVouchers

VOUCHERS = "/api/v1/vouchers"


@pytest.fixture
def settings(provider: Provider, smtp: SmtpServer) -> Settings:
    return settings_for(provider, smtp_ca_file=smtp.ca_file)


@pytest.fixture
def tenant(tenant: Tenant, db: Database, provider: Provider, smtp: SmtpServer) -> Tenant:
    with_all_channels(db, tenant, provider, smtp=smtp)
    return tenant


def plain_text(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


class TestCampaignDeliveryChannel:
    def test_it_is_set_shown_changed_and_cleared(self, api: TestClient, tenant: Tenant) -> None:
        body = {"name": "Auto", "type": "GIFT", "currency": "GBP", "delivery_channel": "phone"}
        created = api.post("/api/v1/campaigns", headers=tenant.headers, json=body)
        assert created.status_code == 201, created.text
        assert created.json()["delivery_channel"] == "phone"

        changed = api.patch(
            "/api/v1/campaigns/Auto", headers=tenant.headers, json={"delivery_channel": "email"}
        )
        assert changed.json()["delivery_channel"] == "email"
        cleared = api.patch(
            "/api/v1/campaigns/Auto", headers=tenant.headers, json={"delivery_channel": None}
        )
        assert cleared.json()["delivery_channel"] is None

    def test_an_unknown_channel_is_refused_by_name(self, api: TestClient, tenant: Tenant) -> None:
        body = {"name": "Auto", "type": "GIFT", "currency": "GBP", "delivery_channel": "fax"}
        response = api.post("/api/v1/campaigns", headers=tenant.headers, json=body)
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "delivery_channel"

    def test_a_national_number_is_read_in_the_campaign_locales_country(
        self, api: TestClient, db: Database, tenant: Tenant, provider: Provider
    ) -> None:
        make_campaign(db, tenant, name="Auto", locale="en-GB", delivery_channel="phone")

        issued = api.post(
            VOUCHERS,
            headers=tenant.headers,
            json={"campaign": "Auto", "customer_ref": "07911 123456"},
        )

        assert issued.status_code == 201, issued.text
        assert issued.json()["delivery"]["channel"] == "sms"
        assert deliver_due(db) == 1
        [sms] = provider.of("sms")
        assert sms.form()["To"] == "+447911123456"
        assert issued.json()["code"] in sms.form()["Body"]

    def test_a_recipient_overrides_the_customer_ref(
        self, api: TestClient, db: Database, tenant: Tenant, smtp: SmtpServer
    ) -> None:
        make_campaign(db, tenant, name="Mail", delivery_channel="email")

        issued = api.post(
            VOUCHERS,
            headers=tenant.headers,
            json={"campaign": "Mail", "customer_ref": "crm-7", "recipient": "ada@example.com"},
        )

        assert issued.status_code == 201, issued.text
        assert deliver_due(db) == 1
        [(envelope, message)] = smtp.messages
        assert envelope.rcpt_tos == ["ada@example.com"]
        assert issued.json()["code"] in plain_text(message)

    @pytest.mark.parametrize(
        ("extra", "field", "code"),
        [
            ({}, "customer_ref", "recipient_required"),
            ({"customer_ref": "crm-7"}, "customer_ref", "invalid_recipient"),
            ({"customer_ref": "crm-7", "recipient": "nope"}, "recipient", "invalid_recipient"),
        ],
    )
    def test_a_voucher_it_cannot_reach_is_not_issued(
        self,
        api: TestClient,
        db: Database,
        tenant: Tenant,
        extra: dict[str, str],
        field: str,
        code: str,
    ) -> None:
        make_campaign(db, tenant, name="Auto", delivery_channel="phone")
        before = count_rows(db)

        response = api.post(VOUCHERS, headers=tenant.headers, json={"campaign": "Auto", **extra})

        assert response.status_code == 422, response.text
        assert (response.json()["code"], response.json()["errors"][0]["field"]) == (code, field)
        assert count_rows(db) == before

    def test_an_explicit_delivery_wins(
        self, api: TestClient, db: Database, tenant: Tenant, provider: Provider
    ) -> None:
        make_campaign(db, tenant, name="Auto", delivery_channel="phone")

        issued = api.post(
            VOUCHERS,
            headers=tenant.headers,
            json={"campaign": "Auto", "customer_ref": "crm-7", "delivery": {"channel": "none"}},
        )

        assert issued.status_code == 201, issued.text
        assert issued.json()["delivery"]["channel"] == "none"
        assert deliver_due(db) == 0

    def test_a_campaign_that_does_not_deliver_ignores_a_recipient(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        make_campaign(db, tenant, name="Plain")
        issued = api.post(
            VOUCHERS, headers=tenant.headers, json={"campaign": "Plain", "recipient": "x@y.example"}
        )
        assert issued.status_code == 201, issued.text
        assert issued.json().get("delivery") is None
        assert count_rows(db, tables=("delivery",)) == {"delivery": 0}

    def test_bulk_minting_delivers_nothing(self, db: Database, tenant: Tenant) -> None:
        campaign = make_campaign(db, tenant, name="Auto", delivery_channel="phone")
        mint_vouchers(db, tenant.caller, campaign.id, MintVouchers(count=3))
        assert count_rows(db, tables=("voucher", "delivery")) == {"voucher": 3, "delivery": 0}


class TestOwnMessage:
    def test_an_sms_carries_the_issuers_text_with_the_code_appended(
        self, api: TestClient, db: Database, tenant: Tenant, provider: Provider
    ) -> None:
        make_campaign(db, tenant, name="Gift")
        delivery = {"channel": "phone", "recipient": "+447911123456", "message": "Happy birthday!"}

        issued = api.post(
            VOUCHERS, headers=tenant.headers, json={"campaign": "Gift", "delivery": delivery}
        )

        assert issued.status_code == 201, issued.text
        assert deliver_due(db) == 1
        assert provider.of("sms")[0].form()["Body"] == f"Happy birthday! {issued.json()['code']}"

    def test_an_email_carries_it_above_the_code(
        self, api: TestClient, db: Database, tenant: Tenant, smtp: SmtpServer
    ) -> None:
        make_campaign(db, tenant, name="Gift")
        delivery = {"channel": "email", "recipient": "ada@example.com", "message": "With love"}

        issued = api.post(
            VOUCHERS, headers=tenant.headers, json={"campaign": "Gift", "delivery": delivery}
        )

        assert deliver_due(db) == 1
        text = plain_text(smtp.messages[0][1])
        assert text.index("With love") < text.index(issued.json()["code"])

    def test_a_resend_sends_the_same_text(
        self, api: TestClient, db: Database, tenant: Tenant, provider: Provider
    ) -> None:
        campaign = make_campaign(db, tenant, name="Gift")
        voucher = api.post(VOUCHERS, headers=tenant.headers, json={"campaign": campaign.id}).json()
        first = api.post(
            f"{VOUCHERS}/{voucher['id']}/deliveries",
            headers=tenant.headers,
            json={"channel": "phone", "recipient": "+447911123456", "message": "Again"},
        ).json()
        assert first["message"] == "Again"
        assert deliver_due(db) == 1

        again = api.post(f"/api/v1/deliveries/{first['id']}/resend", headers=tenant.headers)

        assert again.status_code == 201, again.text
        assert deliver_due(db) == 1
        bodies = [sms.form()["Body"] for sms in provider.of("sms")]
        assert bodies == [f"Again {voucher['code']}"] * 2

    @pytest.mark.parametrize(
        "delivery",
        [
            {"channel": "webhook", "message": "hi"},
            {"channel": "none", "message": "hi"},
            {"channel": "phone", "recipient": "+447911123456", "message": "   "},
            {"channel": "phone", "recipient": "+447911123456", "message": "x" * 1601},
        ],
    )
    def test_a_message_where_none_can_go_is_refused(
        self, api: TestClient, db: Database, tenant: Tenant, delivery: dict[str, str]
    ) -> None:
        make_campaign(db, tenant, name="Gift")
        response = api.post(
            VOUCHERS, headers=tenant.headers, json={"campaign": "Gift", "delivery": delivery}
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "delivery.message"


class TestMajorValue:
    @pytest.mark.parametrize(("given", "minor"), [("20.00", 2000), (20.5, 2050), ("7", 700)])
    def test_major_units_become_minor_units_of_the_campaigns_currency(
        self, api: TestClient, db: Database, tenant: Tenant, given: object, minor: int
    ) -> None:
        make_campaign(db, tenant, name="Cash", type="CASH", currency="GBP", max_value=5000)
        issued = api.post(
            VOUCHERS, headers=tenant.headers, json={"campaign": "Cash", "major_value": given}
        )
        assert issued.status_code == 201, issued.text
        assert issued.json()["value"] == minor

    def test_a_currency_without_decimals(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        make_campaign(db, tenant, name="Yen", currency="JPY")
        issued = api.post(
            VOUCHERS, headers=tenant.headers, json={"campaign": "Yen", "major_value": "500"}
        )
        assert issued.json()["value"] == 500

    @pytest.mark.parametrize(
        ("campaign", "body"),
        [
            ("Cash", {"major_value": "20.001"}),
            ("Cash", {"major_value": "0"}),
            ("Cash", {"major_value": "-1"}),
            ("Cash", {"major_value": "20", "value": 2000}),
            ("Points", {"major_value": "20"}),
        ],
    )
    def test_what_is_not_an_amount_of_this_currency_is_refused(
        self, api: TestClient, db: Database, tenant: Tenant, campaign: str, body: dict[str, object]
    ) -> None:
        make_campaign(db, tenant, name="Cash", type="CASH", currency="GBP")
        make_campaign(db, tenant, name="Points", type="LOYALTY", default_value=10)
        response = api.post(VOUCHERS, headers=tenant.headers, json={"campaign": campaign, **body})
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "major_value"
