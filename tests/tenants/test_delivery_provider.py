"""Saving one provider block from a form that never shows its secrets back."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.factories.tenants import make_tenant
from tests.support.delivery import (
    SMTP_PASSWORD,
    TWILIO_TOKEN,
    configure,
    sms_settings,
)
from voucherd.db.engine import Database
from voucherd.errors import InvalidInput
from voucherd.tenants import service as tenants


def _stored(db: Database, tenant_id: str) -> dict[str, object]:
    from voucherd.auth.models import Tenant as TenantRow

    with db.unit_of_work(write=False) as session:
        row = session.get(TenantRow, tenant_id)
        assert row is not None
        return dict((row.settings or {}).get("delivery") or {})


class TestSaveDeliveryProvider:
    def test_an_empty_secret_keeps_the_stored_one(self, db: Database) -> None:
        tenant = make_tenant(db)
        configure(db, tenant, phone_channel="sms", sms=sms_settings())

        shown = tenants.save_delivery_provider(
            db,
            tenant.caller,
            "sms",
            {"account_sid": sms_settings()["account_sid"], "auth_token": "", "from_number": "+1"},
        )

        stored = _stored(db, tenant.id)["sms"]
        assert isinstance(stored, dict)
        assert stored["auth_token"] == TWILIO_TOKEN
        assert stored["from_number"] == "+1"
        assert shown.delivery["sms"]["auth_token"] != TWILIO_TOKEN  # masked

    def test_a_new_secret_replaces_it_and_an_email_without_login_drops_it(
        self, db: Database
    ) -> None:
        tenant = make_tenant(db)
        email = {"host": "mail.example", "from_address": "v@shop.example"}
        tenants.save_delivery_provider(
            db, tenant.caller, "email", {**email, "username": "u", "password": SMTP_PASSWORD}
        )
        tenants.save_delivery_provider(db, tenant.caller, "email", {**email, "username": "u"})
        kept = _stored(db, tenant.id)["email"]
        assert isinstance(kept, dict)
        assert kept["password"] == SMTP_PASSWORD
        tenants.save_delivery_provider(db, tenant.caller, "email", {**email, "password": ""})
        dropped = _stored(db, tenant.id)["email"]
        assert isinstance(dropped, dict)
        assert "password" not in dropped
        assert "username" not in dropped

    def test_a_missing_secret_with_nothing_stored_is_named(self, db: Database) -> None:
        tenant = make_tenant(db)
        with pytest.raises(ValidationError) as missing:
            tenants.save_delivery_provider(
                db, tenant.caller, "whatsapp", {"phone_number_id": "1", "access_token": "t"}
            )
        assert {e["loc"][-1] for e in missing.value.errors()} == {"app_secret", "verify_token"}
        with pytest.raises(InvalidInput):
            tenants.save_delivery_provider(db, tenant.caller, "phone_channel", {})
