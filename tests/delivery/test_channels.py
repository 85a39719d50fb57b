"""Each channel against a local server speaking its provider's real protocol, asserting on what
that server received: fields, auth, signature, the body with the code and the voucher page link."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.factories.vouchers import issue
from tests.support.delivery import (
    PHONE,
    SMTP_PASSWORD,
    SMTP_USER,
    TWILIO_SID,
    TWILIO_TOKEN,
    WHATSAPP_PHONE_ID,
    WHATSAPP_TOKEN,
    Provider,
    SmtpServer,
    deliver_due,
    delivery_row,
    events_of,
    settings_for,
    with_all_channels,
)
from voucherd.config import Settings
from voucherd.db.engine import Database
from voucherd.delivery.settings import webhook_secret_bytes
from voucherd.vouchers.schemas import VoucherRecord

PAGE = "https://vouchers.example/v/"


@pytest.fixture
def settings(provider: Provider, smtp: SmtpServer) -> Settings:
    return settings_for(provider, smtp_ca_file=smtp.ca_file)


def _issued(
    db: Database, tenant: Tenant, delivery: dict[str, object], **campaign: Any
) -> VoucherRecord:
    made = make_campaign(db, tenant, name="Spring Gift", default_value=2500, **campaign)
    record = issue(db, tenant, made, delivery=delivery, holder={"name": "Ada Lovelace"})
    assert record.delivery is not None
    return record


class TestSms:
    def test_twilio_gets_the_message_form_with_basic_auth(
        self, db: Database, provider: Provider, smtp: SmtpServer
    ) -> None:
        tenant = make_tenant(db)
        with_all_channels(db, tenant, provider, phone_channel="sms", smtp=smtp)
        record = _issued(db, tenant, {"channel": "phone", "recipient": "+44 7911 123456"})
        assert record.delivery is not None

        assert deliver_due(db) == 1

        (request,) = provider.of("sms")
        assert request.path == f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        assert request.basic_auth() == (TWILIO_SID, TWILIO_TOKEN)
        form = request.form()
        delivery_id = record.delivery.id
        assert form["To"] == PHONE
        assert form["From"] == "+15005550006"
        assert form["StatusCallback"] == (
            f"https://vouchers.example/callbacks/twilio/{tenant.id}?delivery={delivery_id}"
        )
        assert record.voucher.code in form["Body"]
        assert PAGE + record.voucher.public_token in form["Body"]
        assert "€25.00" in form["Body"]
        assert form["Body"].startswith("Ada Lovelace, your Spring Gift voucher")
        sent = delivery_row(db, delivery_id)
        assert sent.state == "SENT"
        assert sent.provider_message_id is not None
        assert sent.provider_message_id.startswith("SM")
        assert events_of(db, delivery_id) == [
            (None, "PENDING", 0),
            ("PENDING", "SENDING", 1),
            ("SENDING", "SENT", 1),
        ]

    def test_a_messaging_service_instead_of_a_number(
        self, db: Database, provider: Provider
    ) -> None:
        from tests.support.delivery import configure, sms_settings

        tenant = make_tenant(db)
        configure(
            db,
            tenant,
            phone_channel="sms",
            sms=sms_settings(from_number=None, messaging_service_sid="MG" + "a" * 32),
        )
        _issued(db, tenant, {"channel": "phone", "recipient": PHONE})

        deliver_due(db)

        form = provider.of("sms")[0].form()
        assert form["MessagingServiceSid"] == "MG" + "a" * 32
        assert "From" not in form

    def test_the_campaigns_own_template_in_its_locale(
        self, db: Database, provider: Provider, smtp: SmtpServer
    ) -> None:
        tenant = make_tenant(db)
        with_all_channels(db, tenant, provider, smtp=smtp)
        template = (
            "Hallo {{ customer_name }}! {{ value }} bis {{ expiry }}: {{ code }} {{ page_url }}"
        )
        record = _issued(
            db,
            tenant,
            {"channel": "phone", "recipient": PHONE, "name": "Grete"},
            locale="de-DE",
            timezone="Europe/Berlin",
            expiration_date="2026-12-31T23:59:00",
            message_templates={"sms": {"text": template}},
        )

        deliver_due(db)

        body = provider.of("sms")[0].form()["Body"]
        assert body.startswith("Hallo Grete! 25,00\xa0€ bis 31.12.2026, 23:59:00: ")
        assert body.endswith(f"{record.voucher.code} {PAGE}{record.voucher.public_token}")


class TestWhatsApp:
    def test_meta_gets_a_template_message_with_a_bearer_token(
        self, db: Database, provider: Provider, smtp: SmtpServer
    ) -> None:
        tenant = make_tenant(db)
        with_all_channels(db, tenant, provider, phone_channel="whatsapp", smtp=smtp)
        record = _issued(
            db,
            tenant,
            {"channel": "phone", "recipient": PHONE},
            message_templates={
                "whatsapp": {
                    "name": "spring_voucher",
                    "language": "en_GB",
                    "body_parameters": ["{{ customer_name }}", "{{ code }}", "{{ page_url }}"],
                }
            },
        )
        assert record.delivery is not None
        assert record.delivery.channel == "whatsapp"

        deliver_due(db)

        (request,) = provider.of("whatsapp")
        assert request.path == f"/v21.0/{WHATSAPP_PHONE_ID}/messages"
        assert request.headers["authorization"] == f"Bearer {WHATSAPP_TOKEN}"
        sent = request.json()
        assert sent["messaging_product"] == "whatsapp"
        assert sent["to"] == PHONE
        assert sent["type"] == "template"
        assert sent["biz_opaque_callback_data"] == record.delivery.id
        assert sent["template"]["name"] == "spring_voucher"
        assert sent["template"]["language"] == {"code": "en_GB"}
        assert sent["template"]["components"] == [
            {
                "type": "body",
                "parameters": [
                    {"type": "text", "text": "Ada Lovelace"},
                    {"type": "text", "text": record.voucher.code},
                    {"type": "text", "text": PAGE + record.voucher.public_token},
                ],
            }
        ]
        row = delivery_row(db, record.delivery.id)
        assert row.state == "SENT"
        assert row.provider_message_id is not None
        assert row.provider_message_id.startswith("wamid.")

    def test_the_default_template_carries_value_code_and_link(
        self, db: Database, provider: Provider
    ) -> None:
        from tests.support.delivery import configure, whatsapp_settings

        tenant = make_tenant(db)
        configure(db, tenant, phone_channel="whatsapp", whatsapp=whatsapp_settings())
        record = _issued(db, tenant, {"channel": "phone", "recipient": PHONE})

        deliver_due(db)

        template = provider.of("whatsapp")[0].json()["template"]
        assert template["name"] == "voucher_delivery"
        assert template["language"] == {"code": "en"}
        texts = [p["text"] for p in template["components"][0]["parameters"]]
        assert texts == ["€25.00", record.voucher.code, PAGE + record.voucher.public_token]


class TestEmail:
    def test_starttls_login_and_a_text_and_html_message(
        self, db: Database, provider: Provider, smtp: SmtpServer
    ) -> None:
        tenant = make_tenant(db)
        with_all_channels(db, tenant, provider, smtp=smtp)
        record = _issued(db, tenant, {"channel": "email", "recipient": "Ada@Example.com"})
        assert record.delivery is not None

        deliver_due(db)

        assert smtp.logins == [(SMTP_USER, SMTP_PASSWORD)]
        ((envelope, message),) = smtp.messages
        assert envelope.mail_from == "vouchers@shop.example"
        assert envelope.rcpt_tos == ["Ada@example.com"]
        assert message["To"] == "Ada@example.com"
        assert message["From"] == "Shop Vouchers <vouchers@shop.example>"
        assert message["Subject"] == "Your Spring Gift voucher"
        assert message["Message-ID"] == f"<{record.delivery.id}@shop.example>"
        text = message.get_body(("plain",))
        html = message.get_body(("html",))
        assert text is not None
        assert html is not None
        plain, markup = text.get_content(), html.get_content()
        link = PAGE + record.voucher.public_token
        assert f"Code: {record.voucher.code}" in plain
        assert link in plain
        assert "Hello Ada Lovelace," in plain
        assert f'<a href="{link}">' in markup
        assert f"<strong>{record.voucher.code}</strong>" in markup
        row = delivery_row(db, record.delivery.id)
        assert (row.state, row.provider_message_id) == ("SENT", message["Message-ID"])

    def test_html_in_values_is_escaped_in_the_html_part(
        self, db: Database, provider: Provider, smtp: SmtpServer
    ) -> None:
        tenant = make_tenant(db)
        with_all_channels(db, tenant, provider, smtp=smtp)
        _issued(
            db,
            tenant,
            {"channel": "email", "recipient": "ada@example.com", "name": "<script>x</script>"},
        )

        deliver_due(db)

        html = smtp.messages[0][1].get_body(("html",))
        assert html is not None
        assert "&lt;script&gt;x&lt;/script&gt;" in html.get_content()
        assert "<script>" not in html.get_content()

    def test_a_refused_recipient_fails_with_the_servers_reason(
        self, db: Database, provider: Provider, smtp: SmtpServer
    ) -> None:
        tenant = make_tenant(db)
        with_all_channels(db, tenant, provider, smtp=smtp)
        smtp.refuse_next.append((550, "5.1.1 no such mailbox"))
        record = _issued(db, tenant, {"channel": "email", "recipient": "nobody@example.com"})
        assert record.delivery is not None

        deliver_due(db)

        row = delivery_row(db, record.delivery.id)
        assert row.state == "FAILED"
        assert row.last_error == "SMTP 550: 5.1.1 no such mailbox"
        assert row.attempt == 1

    def test_a_server_we_cannot_trust_is_never_sent_the_password(
        self, db: Database, provider: Provider, smtp: SmtpServer, settings: Settings
    ) -> None:
        untrusting = Database(
            db.engine,
            settings=settings.model_copy(update={"smtp_ca_file": None}),
            bind=db._bind,
            clock=db.clock,
        )
        tenant = make_tenant(db)
        with_all_channels(db, tenant, provider, smtp=smtp)
        record = _issued(db, tenant, {"channel": "email", "recipient": "ada@example.com"})
        assert record.delivery is not None

        deliver_due(untrusting)

        assert smtp.logins == []
        assert smtp.messages == []
        row = delivery_row(db, record.delivery.id)
        assert row.state == "FAILED"
        assert row.last_error is not None
        assert "CERTIFICATE_VERIFY_FAILED" in row.last_error


class TestWebhook:
    def test_signed_as_standard_webhooks_and_delivered_on_2xx(
        self, db: Database, provider: Provider, smtp: SmtpServer
    ) -> None:
        tenant = make_tenant(db)
        secret = with_all_channels(db, tenant, provider, smtp=smtp)
        record = _issued(db, tenant, {"channel": "webhook"})
        assert record.delivery is not None

        deliver_due(db)

        (request,) = provider.of("webhook")
        assert request.path == "/hook"
        message_id = request.headers["webhook-id"]
        timestamp = request.headers["webhook-timestamp"]
        assert message_id == record.delivery.id
        signed = f"{message_id}.{timestamp}.".encode() + request.body
        expected = base64.b64encode(
            hmac.new(webhook_secret_bytes(secret), signed, hashlib.sha256).digest()
        ).decode()
        assert request.headers["webhook-signature"] == f"v1,{expected}"
        event = json.loads(request.body)
        assert event["type"] == "voucher.delivery"
        assert event["data"]["delivery_id"] == record.delivery.id
        voucher = event["data"]["voucher"]
        assert voucher["code"] == record.voucher.code
        assert voucher["page_url"] == PAGE + record.voucher.public_token
        assert voucher["value"] == 2500
        assert delivery_row(db, record.delivery.id).state == "DELIVERED"


class TestNone:
    def test_recorded_as_sent_and_nothing_goes_out(
        self, db: Database, provider: Provider, smtp: SmtpServer
    ) -> None:
        tenant = make_tenant(db)
        record = _issued(db, tenant, {"channel": "none"})
        assert record.delivery is not None

        assert deliver_due(db) == 0

        assert provider.received == []
        assert smtp.messages == []
        assert delivery_row(db, record.delivery.id).state == "SENT"
        assert events_of(db, record.delivery.id) == [(None, "SENT", 0)]
