"""The admin's delivery settings: provider forms (secrets masked, an empty secret kept), the
phone channel, and a test message through each provider to the local servers."""

from __future__ import annotations

import pytest

from tests.factories.tenants import Tenant
from tests.support.console import browser, make_operator, sign_in
from tests.support.delivery import (
    PHONE,
    SMTP_PASSWORD,
    SMTP_USER,
    TWILIO_SID,
    TWILIO_TOKEN,
    Answer,
    Provider,
    SmtpServer,
    settings_for,
)
from voucherd.config import Settings
from voucherd.db.engine import Database
from voucherd.delivery.probe import TEXT
from voucherd.tenants import service as tenants


@pytest.fixture
def settings(provider: Provider, smtp: SmtpServer) -> Settings:
    return settings_for(provider, smtp_ca_file=smtp.ca_file)


def _stored(db: Database, tenant: Tenant, name: str) -> dict[str, object]:
    from voucherd.auth.models import Tenant as TenantRow

    with db.unit_of_work(write=False) as session:
        row = session.get(TenantRow, tenant.id)
        assert row is not None
        return dict(((row.settings or {}).get("delivery") or {}).get(name) or {})


class TestProviderForms:
    def test_sms_saved_masked_kept_when_empty_and_the_phone_channel_named(
        self, db: Database
    ) -> None:
        tenant = Tenant(db)
        admin = make_operator(db, tenant)
        sms = {"account_sid": TWILIO_SID, "from_number": "+15005550006"}
        with browser(db) as client:
            csrf = sign_in(client, admin.email)
            no_whatsapp = client.post(
                "/console/settings/phone-channel", data={"csrf": csrf, "phone_channel": "whatsapp"}
            )
            assert no_whatsapp.status_code == 422
            assert 'id="e-phone_channel"' in no_whatsapp.text
            missing = client.post("/console/settings/providers/sms", data={"csrf": csrf, **sms})
            assert missing.status_code == 422
            assert 'id="e-auth_token"' in missing.text
            assert f'value="{TWILIO_SID}"' in missing.text
            saved = client.post(
                "/console/settings/providers/sms",
                data={"csrf": csrf, **sms, "auth_token": TWILIO_TOKEN},
            )
            assert 'id="notice"' in saved.text
            assert TWILIO_TOKEN not in saved.text
            assert "****" + TWILIO_TOKEN[-4:] in saved.text
            again = client.post(
                "/console/settings/providers/sms",
                data={"csrf": csrf, **sms, "from_number": "+15005550007", "auth_token": ""},
            )
            assert 'id="notice"' in again.text
            chosen = client.post(
                "/console/settings/phone-channel", data={"csrf": csrf, "phone_channel": "sms"}
            )
            assert 'id="notice"' in chosen.text
        stored = _stored(db, tenant, "sms")
        assert stored["auth_token"] == TWILIO_TOKEN
        assert stored["from_number"] == "+15005550007"
        assert tenants.get_tenant(db, tenant.id).delivery["phone_channel"] == "sms"


class TestTestMessage:
    def test_sms_and_email_reach_the_local_servers(
        self, db: Database, provider: Provider, smtp: SmtpServer
    ) -> None:
        tenant = Tenant(db)
        admin = make_operator(db, tenant)
        with browser(db) as client:
            csrf = sign_in(client, admin.email)
            client.post(
                "/console/settings/providers/sms",
                data={"csrf": csrf, "account_sid": TWILIO_SID, "auth_token": TWILIO_TOKEN,
                      "from_number": "+15005550006"},
            )  # fmt: skip
            client.post(
                "/console/settings/providers/email",
                data={"csrf": csrf, "host": smtp.host, "port": str(smtp.port),
                      "security": "starttls", "username": SMTP_USER, "password": SMTP_PASSWORD,
                      "from_address": "v@shop.example"},
            )  # fmt: skip
            page = client.get("/console/settings")
            assert 'id="test-sms"' in page.text
            assert 'id="test-whatsapp"' not in page.text  # not configured, nothing to test
            sent = client.post(
                "/console/settings/test/sms", data={"csrf": csrf, "recipient": PHONE}
            )
            assert "Test sms message sent" in sent.text
            assert PHONE not in sent.text  # masked
            mailed = client.post(
                "/console/settings/test/email", data={"csrf": csrf, "recipient": "ada@x.example"}
            )
            assert "Test email message sent" in mailed.text
            bad = client.post("/console/settings/test/email", data={"csrf": csrf, "recipient": "x"})
            assert bad.status_code == 422
            assert 'id="e-test-email"' in bad.text
            provider.script("sms", Answer(400, {"code": 21211, "message": "Invalid 'To' number"}))
            refused = client.post(
                "/console/settings/test/sms", data={"csrf": csrf, "recipient": PHONE}
            )
            assert 'id="e-test-sms"' in refused.text
            assert "refused" in refused.text
        assert provider.of("sms")[0].form()["Body"] == TEXT
        assert [envelope.rcpt_tos for envelope, _ in smtp.messages] == [["ada@x.example"]]

    def test_a_manager_cannot_send_one(self, db: Database) -> None:
        manager = make_operator(db, Tenant(db), "manager")
        with browser(db) as client:
            csrf = sign_in(client, manager.email)
            answer = client.post("/console/settings/test/sms", data={"csrf": csrf})
        assert answer.status_code == 403
