"""A publication that asks for delivery: the codes and their messages are written together, and
the worker sends each code to the customer through the tenant's real channel."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.support.delivery import (
    PHONE,
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

URL = "/api/v1/publications"


@pytest.fixture
def settings(provider: Provider, smtp: SmtpServer) -> Settings:
    return settings_for(provider, smtp_ca_file=smtp.ca_file)


def _pool(db: Database, count: int = 5) -> tuple[Tenant, str]:
    tenant = make_tenant(db)
    campaign = make_campaign(db, tenant)
    mint_vouchers(db, tenant.caller, campaign.id, MintVouchers(count=count))
    return tenant, campaign.name


class TestPublicationDelivery:
    def test_each_code_is_emailed_to_the_customer_on_record(
        self, api: TestClient, db: Database, provider: Provider, smtp: SmtpServer
    ) -> None:
        tenant, campaign = _pool(db)
        with_all_channels(db, tenant, provider, smtp=smtp)
        body = {
            "campaign": campaign,
            "count": 2,
            "customer": {"source_id": "u-1", "name": "Ada", "email": "ada@example.com"},
            "delivery": {"channel": "email"},
        }
        response = api.post(URL, headers=tenant.headers, json=body)
        assert response.status_code == 201, response.text
        published = response.json()
        assert [d["state"] for d in published["deliveries"]] == ["PENDING", "PENDING"]
        assert {d["channel"] for d in published["deliveries"]} == {"email"}

        assert deliver_due(db) == 2
        assert [message["To"] for _, message in smtp.messages] == ["ada@example.com"] * 2
        texts = [message.get_body(("plain",)).get_content() for _, message in smtp.messages]
        for code in published["vouchers"]:
            assert sum(code in text for text in texts) == 1, (code, texts)
        assert all("Ada" in text for text in texts)

    def test_an_explicit_phone_recipient_goes_by_the_tenants_phone_channel(
        self, api: TestClient, db: Database, provider: Provider, smtp: SmtpServer
    ) -> None:
        tenant, campaign = _pool(db)
        with_all_channels(db, tenant, provider, phone_channel="sms", smtp=smtp)
        body = {"campaign": campaign, "delivery": {"channel": "phone", "recipient": PHONE}}
        response = api.post(URL, headers=tenant.headers, json=body)
        assert response.status_code == 201, response.text
        [delivery] = response.json()["deliveries"]
        assert delivery["channel"] == "sms"
        assert deliver_due(db) == 1
        [sent] = provider.of("sms")
        assert sent.form()["To"] == PHONE
        assert response.json()["vouchers"][0] in sent.form()["Body"]

    def test_a_customer_without_the_contact_is_422_and_nothing_is_published(
        self, api: TestClient, db: Database, provider: Provider, smtp: SmtpServer
    ) -> None:
        tenant, campaign = _pool(db)
        with_all_channels(db, tenant, provider, smtp=smtp)
        before = count_rows(db, tables=("publication", "delivery"))
        body = {
            "campaign": campaign,
            "customer": {"source_id": "u-2", "name": "No Phone"},
            "delivery": {"channel": "phone"},
        }
        response = api.post(URL, headers=tenant.headers, json=body)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "delivery.recipient"
        assert count_rows(db, tables=("publication", "delivery")) == before

    def test_a_bad_recipient_names_the_field(
        self, api: TestClient, db: Database, provider: Provider, smtp: SmtpServer
    ) -> None:
        tenant, campaign = _pool(db)
        with_all_channels(db, tenant, provider, smtp=smtp)
        body = {"campaign": campaign, "delivery": {"channel": "email", "recipient": "nope"}}
        response = api.post(URL, headers=tenant.headers, json=body)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "delivery.recipient"

    def test_an_unconfigured_channel_is_422_before_anything_is_claimed(
        self, api: TestClient, db: Database
    ) -> None:
        tenant, campaign = _pool(db, count=1)
        body = {"campaign": campaign, "delivery": {"channel": "email", "recipient": "a@b.example"}}
        response = api.post(URL, headers=tenant.headers, json=body)
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "channel_not_configured"
        again = api.post(URL, headers=tenant.headers, json={"campaign": campaign})
        assert again.status_code == 201, "the code went back to the pool"
