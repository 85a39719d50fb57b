"""A test message through each configured provider, against the local servers."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.factories.tenants import Tenant, make_tenant
from tests.support.delivery import (
    PHONE,
    Answer,
    Provider,
    SmtpServer,
    configure,
    settings_for,
    with_all_channels,
)
from voucherd.config import Settings
from voucherd.db.engine import Database
from voucherd.delivery.probe import EVENT_KIND, TEXT, send_test_message
from voucherd.errors import InvalidInput
from voucherd.vouchers.models import VoucherEvent


@pytest.fixture
def settings(provider: Provider, smtp: SmtpServer) -> Settings:
    return settings_for(provider, smtp_ca_file=smtp.ca_file)


def _recorded(db: Database, tenant: Tenant) -> list[VoucherEvent]:
    with db.unit_of_work(write=False) as session:
        return list(
            session.scalars(
                select(VoucherEvent)
                .where(VoucherEvent.tenant_id == tenant.id, VoucherEvent.kind == EVENT_KIND)
                .order_by(VoucherEvent.id)
            )
        )


class TestSendTestMessage:
    def test_each_provider_is_reached_and_each_attempt_recorded(
        self, db: Database, provider: Provider, smtp: SmtpServer
    ) -> None:
        tenant = make_tenant(db)
        with_all_channels(db, tenant, provider, smtp=smtp)

        sms = send_test_message(db, tenant.caller, "sms", "+44 7911 123456")
        whatsapp = send_test_message(db, tenant.caller, "whatsapp", PHONE)
        email = send_test_message(db, tenant.caller, "email", "ada@shop.example")
        webhook = send_test_message(db, tenant.caller, "webhook", None)

        assert [r.ok for r in (sms, whatsapp, email, webhook)] == [True] * 4
        assert provider.of("sms")[0].form()["Body"] == TEXT
        assert provider.of("sms")[0].form()["To"] == PHONE
        assert provider.of("whatsapp")[0].json()["template"]["name"] == "hello_world"
        assert provider.of("webhook")[0].json()["type"] == "voucherd.test"
        ((envelope, mail),) = smtp.messages
        assert envelope.rcpt_tos == ["ada@shop.example"]
        assert TEXT in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        recorded = _recorded(db, tenant)
        assert [(e.data or {}).get("channel") for e in recorded] == [
            "sms", "whatsapp", "email", "webhook",
        ]  # fmt: skip
        assert {e.actor for e in recorded} == {tenant.key.key_id}
        assert {e.voucher_id for e in recorded} == {None}
        assert PHONE not in str([e.data for e in recorded])  # recipients are masked

    def test_a_provider_refusal_is_the_answer_not_an_error(
        self, db: Database, provider: Provider
    ) -> None:
        tenant = make_tenant(db)
        with_all_channels(db, tenant, provider)
        provider.script("sms", Answer(400, {"code": 21211, "message": "Invalid 'To' number"}))

        result = send_test_message(db, tenant.caller, "sms", PHONE)

        assert not result.ok
        assert result.error is not None
        assert "21211" in result.error or "Invalid" in result.error
        assert (_recorded(db, tenant)[0].data or {})["outcome"] == "permanent"

    def test_an_unconfigured_provider_or_a_bad_recipient_is_named(self, db: Database) -> None:
        tenant = make_tenant(db)
        configure(db, tenant, webhook=None)
        with pytest.raises(InvalidInput) as unconfigured:
            send_test_message(db, tenant.caller, "email", "ada@shop.example")
        assert unconfigured.value.field == "channel"
        with pytest.raises(InvalidInput) as bad:
            send_test_message(db, tenant.caller, "email", "not an address")
        assert bad.value.field == "recipient"
        with pytest.raises(InvalidInput) as unknown:
            send_test_message(db, tenant.caller, "pigeon", None)
        assert unknown.value.field == "channel"
        assert _recorded(db, tenant) == []
