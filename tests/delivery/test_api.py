"""Deliveries over the native API: asking for one with a voucher (same transaction), bad
recipients refused at request time, the tenant's delivery settings (masked), listing, resending,
and the providers' signed status callbacks."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.factories.vouchers import issue
from tests.support.delivery import (
    PHONE,
    TWILIO_SID,
    TWILIO_TOKEN,
    WHATSAPP_APP_SECRET,
    WHATSAPP_TOKEN,
    WHATSAPP_VERIFY_TOKEN,
    Answer,
    Provider,
    deliver_due,
    delivery_row,
    events_of,
    settings_for,
    sms_settings,
    whatsapp_settings,
    with_all_channels,
)
from tests.support.rows import count_rows
from voucherd.config import Settings
from voucherd.db.engine import Database
from voucherd.delivery.callbacks import twilio_signature
from voucherd.delivery.settings import new_webhook_secret

VOUCHERS = "/api/v1/vouchers"
DELIVERIES = "/api/v1/deliveries"
TABLES = ("voucher", "voucher_event", "ledger_entry", "delivery", "delivery_event")


@pytest.fixture
def settings(provider: Provider) -> Settings:
    return settings_for(provider)


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    return problem


def _issue(api: TestClient, tenant: Tenant, campaign: str, delivery: dict[str, Any]) -> Any:
    body = {"campaign": campaign, "delivery": delivery}
    return api.post(VOUCHERS, headers=tenant.headers, json=body)


class TestIssueWithDelivery:
    def test_the_voucher_and_its_delivery_are_written_together(
        self, api: TestClient, db: Database, provider: Provider
    ) -> None:
        tenant = make_tenant(db)
        with_all_channels(db, tenant, provider)
        campaign = make_campaign(db, tenant)

        issued = _issue(api, tenant, campaign.id, {"channel": "phone", "recipient": "07911 123456"})
        assert issued.status_code == 422  # national form: no country to read it in

        issued = _issue(api, tenant, campaign.id, {"channel": "phone", "recipient": PHONE})

        assert issued.status_code == 201, issued.text
        shown = issued.json()["delivery"]
        assert (shown["object"], shown["channel"], shown["state"]) == ("delivery", "sms", "PENDING")
        listed = api.get(
            DELIVERIES, headers=tenant.headers, params={"voucher": issued.json()["id"]}
        )
        (delivery,) = listed.json()["data"]
        assert delivery["id"] == shown["id"]
        assert delivery["recipient"] == PHONE
        assert delivery["origin"] == "issue"
        assert delivery["code"] == issued.json()["code"]

    @pytest.mark.parametrize(
        ("delivery", "field", "reason"),
        [
            ({"channel": "phone", "recipient": "+44 12"}, "delivery.recipient", "phone number"),
            ({"channel": "phone"}, "delivery.recipient", "needs a recipient"),
            ({"channel": "email", "recipient": "ada@"}, "delivery.recipient", "email address"),
            ({"channel": "webhook", "recipient": PHONE}, "delivery.recipient", "no recipient"),
            ({"channel": "fax", "recipient": PHONE}, "delivery.channel", "phone"),
            ({"channel": "none", "cc": "x"}, "delivery.cc", "Extra inputs"),
        ],
    )
    def test_a_bad_recipient_is_a_422_naming_the_field_and_nothing_is_written(
        self,
        api: TestClient,
        db: Database,
        provider: Provider,
        delivery: dict[str, Any],
        field: str,
        reason: str,
    ) -> None:
        tenant = make_tenant(db)
        with_all_channels(db, tenant, provider)
        campaign = make_campaign(db, tenant)
        before = count_rows(db, tables=TABLES)

        problem = _problem(_issue(api, tenant, campaign.id, delivery), 422)

        (error,) = problem["errors"]
        assert error["field"] == field
        assert reason in error["reason"]
        assert count_rows(db, tables=TABLES) == before

    @pytest.mark.parametrize("channel", ["phone", "email", "webhook"])
    def test_a_channel_the_tenant_has_not_configured_is_refused_at_once(
        self, api: TestClient, db: Database, channel: str
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant)
        recipient = {"phone": PHONE, "email": "ada@example.com"}.get(channel)
        before = count_rows(db, tables=TABLES)

        problem = _problem(
            _issue(api, tenant, campaign.id, {"channel": channel, "recipient": recipient}), 422
        )

        assert problem["code"] == "channel_not_configured"
        assert problem["errors"][0]["field"] == "delivery.channel"
        assert count_rows(db, tables=TABLES) == before

    def test_a_refused_issue_leaves_no_delivery(
        self, api: TestClient, db: Database, provider: Provider
    ) -> None:
        tenant = make_tenant(db)
        with_all_channels(db, tenant, provider)
        campaign = make_campaign(db, tenant, default_value=500, max_value=1000)
        before = count_rows(db, tables=TABLES)

        refused = api.post(
            VOUCHERS,
            headers=tenant.headers,
            json={"campaign": campaign.id, "value": 5000, "delivery": {"channel": "webhook"}},
        )

        assert _problem(refused, 422)["code"] == "value_above_maximum"
        assert count_rows(db, tables=TABLES) == before

    def test_on_postgresql_the_voucher_and_delivery_are_one_statement(
        self, db: Database, provider: Provider
    ) -> None:
        tenant = make_tenant(db)
        with_all_channels(db, tenant, provider)
        campaign = make_campaign(db, tenant)
        statements: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            statements.append(statement)

        event.listen(db.engine, "before_cursor_execute", seen)
        try:
            issue(db, tenant, campaign, delivery={"channel": "webhook"})
        finally:
            event.remove(db.engine, "before_cursor_execute", seen)

        writes = [s for s in statements if "INSERT" in s.upper()]
        if db.is_postgresql:
            (only,) = writes
            assert "INSERT INTO voucher " in only
            assert "INSERT INTO delivery " in only
            assert "INSERT INTO delivery_event " in only
        else:
            assert sum("INSERT INTO delivery " in s for s in writes) == 1

    def test_an_idempotent_retry_makes_one_delivery(
        self, api: TestClient, db: Database, provider: Provider
    ) -> None:
        tenant = make_tenant(db)
        with_all_channels(db, tenant, provider)
        campaign = make_campaign(db, tenant)
        headers = {**tenant.headers, "Idempotency-Key": "order-77"}
        body = {"campaign": campaign.id, "delivery": {"channel": "webhook"}}

        first = api.post(VOUCHERS, headers=headers, json=body)
        again = api.post(VOUCHERS, headers=headers, json=body)

        assert again.json() == first.json()
        assert count_rows(db, tables=("delivery",)) == {"delivery": 1}


class TestTenantSettings:
    def test_credentials_are_stored_and_shown_masked(
        self, api: TestClient, db: Database, provider: Provider
    ) -> None:
        tenant = make_tenant(db)
        secret = new_webhook_secret()
        patch = {
            "delivery": {
                "phone_channel": "whatsapp",
                "sms": sms_settings(),
                "whatsapp": whatsapp_settings(),
                "webhook": {"url": "https://issuer.example/hooks", "secret": secret},
            }
        }

        changed = api.patch("/api/v1/tenant", headers=tenant.headers, json=patch)
        shown = api.get("/api/v1/tenant", headers=tenant.headers)

        assert changed.status_code == 200, changed.text
        assert changed.json()["delivery"] == shown.json()["delivery"]
        delivery = shown.json()["delivery"]
        assert delivery["phone_channel"] == "whatsapp"
        assert delivery["sms"] == {
            "account_sid": TWILIO_SID,
            "auth_token": "****" + TWILIO_TOKEN[-4:],
            "from_number": "+15005550006",
        }
        assert delivery["whatsapp"]["access_token"] == "****" + WHATSAPP_TOKEN[-4:]
        assert delivery["webhook"] == {
            "url": "https://issuer.example/hooks",
            "secret": "****" + secret[-4:],
        }
        assert delivery["email"] is None
        text = shown.text + changed.text
        for credential in (TWILIO_TOKEN, WHATSAPP_TOKEN, WHATSAPP_APP_SECRET, secret):
            assert credential not in text
        # The weekly limit was not named, so it did not change.
        assert shown.json()["weekly_value_limit"] is None

    def test_a_block_is_replaced_or_removed_and_the_rest_kept(
        self, api: TestClient, db: Database, provider: Provider
    ) -> None:
        tenant = make_tenant(db)
        with_all_channels(db, tenant, provider)

        api.patch(
            "/api/v1/tenant",
            headers=tenant.headers,
            json={"delivery": {"webhook": None, "phone_channel": "whatsapp"}},
        )

        shown = api.get("/api/v1/tenant", headers=tenant.headers).json()["delivery"]
        assert (shown["webhook"], shown["phone_channel"]) == (None, "whatsapp")
        assert shown["sms"]["account_sid"] == TWILIO_SID

    @pytest.mark.parametrize(
        ("delivery", "field"),
        [
            ({"phone_channel": "sms"}, "delivery.phone_channel"),
            ({"phone_channel": "pigeon"}, "delivery.phone_channel"),
            ({"sms": {"account_sid": "AC1", "auth_token": "t"}}, "delivery.sms"),
            (
                {"webhook": {"url": "ftp://x.example", "secret": "whsec_AAAA"}},
                "delivery.webhook.url",
            ),
            (
                {"webhook": {"url": "https://x.example", "secret": "nope"}},
                "delivery.webhook.secret",
            ),
            (
                {"email": {"host": "smtp.example", "from_address": "x"}},
                "delivery.email.from_address",
            ),
        ],
    )
    def test_bad_settings_are_refused_naming_the_field(
        self, api: TestClient, db: Database, delivery: dict[str, Any], field: str
    ) -> None:
        tenant = make_tenant(db)

        problem = _problem(
            api.patch("/api/v1/tenant", headers=tenant.headers, json={"delivery": delivery}), 422
        )

        assert problem["errors"][0]["field"] == field
        shown = api.get("/api/v1/tenant", headers=tenant.headers).json()["delivery"]
        assert shown["phone_channel"] is None


class TestOperatorViews:
    def test_list_per_voucher_and_per_state_and_one_with_its_history(
        self, api: TestClient, db: Database, provider: Provider
    ) -> None:
        tenant = make_tenant(db)
        with_all_channels(db, tenant, provider)
        campaign = make_campaign(db, tenant)
        one = _issue(api, tenant, campaign.id, {"channel": "phone", "recipient": PHONE}).json()
        two = _issue(api, tenant, campaign.id, {"channel": "webhook"}).json()
        provider.script("sms", Answer(400, {"code": 21610, "message": "Unsubscribed recipient"}))
        deliver_due(db)

        def listed(**params: str) -> list[str]:
            response = api.get(DELIVERIES, headers=tenant.headers, params=params)
            assert response.status_code == 200, response.text
            return [d["id"] for d in response.json()["data"]]

        assert listed() == [two["delivery"]["id"], one["delivery"]["id"]]
        assert listed(state="FAILED") == [one["delivery"]["id"]]
        assert listed(state="DELIVERED") == [two["delivery"]["id"]]
        assert listed(voucher=one["code"]) == [one["delivery"]["id"]]
        assert listed(channel="webhook") == [two["delivery"]["id"]]
        assert listed(state="PENDING") == []
        page = api.get(DELIVERIES, headers=tenant.headers, params={"limit": 1}).json()
        assert page["has_more"] is True
        rest = api.get(
            DELIVERIES, headers=tenant.headers, params={"cursor": page["next_cursor"]}
        ).json()
        assert [d["id"] for d in rest["data"]] == [one["delivery"]["id"]]

        failed = api.get(f"{DELIVERIES}/{one['delivery']['id']}", headers=tenant.headers).json()
        assert failed["state"] == "FAILED"
        assert failed["last_error"] == "HTTP 400: Unsubscribed recipient (Twilio error 21610)"
        assert [(e["from_state"], e["to_state"]) for e in failed["events"]] == [
            (None, "PENDING"),
            ("PENDING", "SENDING"),
            ("SENDING", "FAILED"),
        ]
        assert failed["events"][1]["actor"] == "test-worker"

    def test_resend_a_failed_delivery(
        self, api: TestClient, db: Database, provider: Provider
    ) -> None:
        tenant = make_tenant(db)
        with_all_channels(db, tenant, provider)
        campaign = make_campaign(db, tenant)
        issued = _issue(api, tenant, campaign.id, {"channel": "phone", "recipient": PHONE}).json()
        first = issued["delivery"]["id"]
        url = f"{DELIVERIES}/{first}/resend"

        still_pending = api.post(url, headers=tenant.headers)
        assert _problem(still_pending, 409)["code"] == "delivery_in_progress"

        provider.script("sms", Answer(400, {"code": 21211, "message": "bad number"}))
        deliver_due(db)
        headers = {**tenant.headers, "Idempotency-Key": "resend-1"}
        resent = api.post(url, headers=headers)
        replayed = api.post(url, headers=headers)

        assert resent.status_code == 201, resent.text
        assert replayed.json() == resent.json()
        again = resent.json()
        assert (again["resend_of"], again["origin"], again["state"]) == (first, "resend", "PENDING")
        assert (again["channel"], again["recipient"]) == ("sms", PHONE)
        deliver_due(db)
        assert delivery_row(db, again["id"]).state == "SENT"
        assert delivery_row(db, first).state == "FAILED"
        assert len(provider.of("sms")) == 2

    def test_deliver_an_existing_voucher(
        self, api: TestClient, db: Database, provider: Provider
    ) -> None:
        tenant = make_tenant(db)
        with_all_channels(db, tenant, provider)
        campaign = make_campaign(db, tenant)
        voucher = api.post(VOUCHERS, headers=tenant.headers, json={"campaign": campaign.id}).json()

        asked = api.post(
            f"{VOUCHERS}/{voucher['code']}/deliveries",
            headers=tenant.headers,
            json={"channel": "phone", "recipient": PHONE, "name": "Ada"},
        )
        bad = api.post(
            f"{VOUCHERS}/{voucher['id']}/deliveries",
            headers=tenant.headers,
            json={"channel": "email", "recipient": "not-an-address"},
        )

        assert asked.status_code == 201, asked.text
        assert (asked.json()["origin"], asked.json()["recipient_name"]) == ("request", "Ada")
        assert _problem(bad, 422)["errors"][0]["field"] == "recipient"
        deliver_due(db)
        assert voucher["code"] in provider.of("sms")[0].form()["Body"]

    def test_another_tenants_voucher_in_a_filter_is_not_found(
        self, api: TestClient, db: Database
    ) -> None:
        owner, intruder = make_tenant(db), make_tenant(db)
        campaign = make_campaign(db, owner)
        theirs = api.post(VOUCHERS, headers=owner.headers, json={"campaign": campaign.id}).json()

        listed = api.get(DELIVERIES, headers=intruder.headers, params={"voucher": theirs["code"]})

        assert _problem(listed, 404)["errors"][0]["field"] == "voucher"


def _sent_sms(api: TestClient, db: Database, provider: Provider, tenant: Tenant) -> str:
    with_all_channels(db, tenant, provider)
    campaign = make_campaign(db, tenant)
    issued = _issue(api, tenant, campaign.id, {"channel": "phone", "recipient": PHONE}).json()
    deliver_due(db)
    delivery_id: str = issued["delivery"]["id"]
    assert delivery_row(db, delivery_id).state == "SENT"
    return delivery_id


def _twilio_callback(
    api: TestClient,
    provider: Provider,
    status: str,
    *,
    token: str | None = TWILIO_TOKEN,
    **extra: str,
) -> Any:
    """Post what Twilio posts to the StatusCallback URL our SMS carried, signed with ``token``."""
    request = provider.of("sms")[-1]
    callback = request.form()["StatusCallback"]
    params = {
        "AccountSid": TWILIO_SID,
        "MessageSid": extra.pop("sid", "SM" + "f" * 32),
        "MessageStatus": status,
        "To": PHONE,
        **extra,
    }
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if token is not None:
        headers["X-Twilio-Signature"] = twilio_signature(token, callback, list(params.items()))
    path = callback.removeprefix("https://vouchers.example")
    return api.post(path, content=urlencode(params), headers=headers)


class TestTwilioCallback:
    def test_delivered_moves_the_delivery_once(
        self, api: TestClient, db: Database, provider: Provider
    ) -> None:
        tenant = make_tenant(db)
        delivery_id = _sent_sms(api, db, provider, tenant)
        sid = delivery_row(db, delivery_id).provider_message_id
        assert sid is not None

        first = _twilio_callback(api, provider, "delivered", sid=sid)
        history = events_of(db, delivery_id)
        repeated = _twilio_callback(api, provider, "delivered", sid=sid)

        assert (first.status_code, repeated.status_code) == (204, 204)
        assert delivery_row(db, delivery_id).state == "DELIVERED"
        assert history[-1] == ("SENT", "DELIVERED", 1)
        assert events_of(db, delivery_id) == history

    def test_undelivered_fails_with_the_error_code(
        self, api: TestClient, db: Database, provider: Provider
    ) -> None:
        tenant = make_tenant(db)
        delivery_id = _sent_sms(api, db, provider, tenant)
        sid = delivery_row(db, delivery_id).provider_message_id
        assert sid is not None

        _twilio_callback(api, provider, "queued", sid=sid)
        assert delivery_row(db, delivery_id).state == "SENT"
        _twilio_callback(api, provider, "undelivered", sid=sid, ErrorCode="30003")

        row = delivery_row(db, delivery_id)
        assert (row.state, row.last_error) == ("FAILED", "Twilio: undelivered (error 30003)")

    def test_unsigned_or_wrongly_signed_is_refused(
        self, api: TestClient, db: Database, provider: Provider
    ) -> None:
        tenant = make_tenant(db)
        delivery_id = _sent_sms(api, db, provider, tenant)

        unsigned = _twilio_callback(api, provider, "delivered", token=None)
        forged = _twilio_callback(api, provider, "delivered", token="someone-elses-token")

        assert _problem(unsigned, 401)["code"] == "unauthorized"
        assert _problem(forged, 403)["code"] == "forbidden"
        assert delivery_row(db, delivery_id).state == "SENT"

    def test_a_tampered_parameter_breaks_the_signature(
        self, api: TestClient, db: Database, provider: Provider
    ) -> None:
        tenant = make_tenant(db)
        delivery_id = _sent_sms(api, db, provider, tenant)
        callback = provider.of("sms")[-1].form()["StatusCallback"]
        params = {"MessageSid": "SMx", "MessageStatus": "failed"}
        signature = twilio_signature(TWILIO_TOKEN, callback, list(params.items()))
        params["MessageStatus"] = "delivered"

        response = api.post(
            callback.removeprefix("https://vouchers.example"),
            content=urlencode(params),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
            },
        )

        assert response.status_code == 403
        assert delivery_row(db, delivery_id).state == "SENT"


def _whatsapp_status(status: str, wamid: str, delivery_id: str | None, **extra: Any) -> bytes:
    entry: dict[str, Any] = {"id": wamid, "status": status, "timestamp": "1760000000", **extra}
    if delivery_id:
        entry["biz_opaque_callback_data"] = delivery_id
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "WABA",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {"messaging_product": "whatsapp", "statuses": [entry]},
                        }
                    ],
                }
            ],
        }
    ).encode()


def _meta_signed(body: bytes, secret: str = WHATSAPP_APP_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"}


class TestWhatsAppCallback:
    def _sent(self, api: TestClient, db: Database, provider: Provider, tenant: Tenant) -> str:
        with_all_channels(db, tenant, provider, phone_channel="whatsapp")
        campaign = make_campaign(db, tenant)
        issued = _issue(api, tenant, campaign.id, {"channel": "phone", "recipient": PHONE}).json()
        deliver_due(db)
        delivery_id: str = issued["delivery"]["id"]
        return delivery_id

    def test_statuses_move_deliveries_and_a_repeat_changes_nothing(
        self, api: TestClient, db: Database, provider: Provider
    ) -> None:
        tenant = make_tenant(db)
        delivery_id = self._sent(api, db, provider, tenant)
        wamid = delivery_row(db, delivery_id).provider_message_id
        assert wamid is not None
        url = f"/callbacks/whatsapp/{tenant.id}"

        sent = _whatsapp_status("sent", wamid, None)
        delivered = _whatsapp_status("delivered", wamid, None)
        answers = [
            api.post(url, content=body, headers=_meta_signed(body))
            for body in (sent, delivered, delivered)
        ]

        assert [a.json()["changed"] for a in answers] == [0, 1, 0]
        assert delivery_row(db, delivery_id).state == "DELIVERED"

    def test_failed_carries_metas_reason(
        self, api: TestClient, db: Database, provider: Provider
    ) -> None:
        tenant = make_tenant(db)
        delivery_id = self._sent(api, db, provider, tenant)
        body = _whatsapp_status(
            "failed",
            "wamid.other",
            delivery_id,
            errors=[{"code": 131026, "title": "Message undeliverable"}],
        )

        api.post(f"/callbacks/whatsapp/{tenant.id}", content=body, headers=_meta_signed(body))

        row = delivery_row(db, delivery_id)
        assert row.state == "SENT"  # a failure report about another message id is not ours
        body = _whatsapp_status(
            "failed",
            row.provider_message_id or "",
            delivery_id,
            errors=[{"code": 131026, "title": "Message undeliverable"}],
        )
        api.post(f"/callbacks/whatsapp/{tenant.id}", content=body, headers=_meta_signed(body))
        row = delivery_row(db, delivery_id)
        assert (row.state, row.last_error) == (
            "FAILED",
            "WhatsApp: failed (Message undeliverable, Meta error 131026)",
        )

    def test_unsigned_wrongly_signed_or_another_tenants_is_refused(
        self, api: TestClient, db: Database, provider: Provider
    ) -> None:
        tenant, other = make_tenant(db), make_tenant(db)
        delivery_id = self._sent(api, db, provider, tenant)
        body = _whatsapp_status("delivered", "wamid.x", delivery_id)
        url = f"/callbacks/whatsapp/{tenant.id}"

        unsigned = api.post(url, content=body, headers={"Content-Type": "application/json"})
        forged = api.post(url, content=body, headers=_meta_signed(body, "not-the-secret"))
        elsewhere = api.post(
            f"/callbacks/whatsapp/{other.id}", content=body, headers=_meta_signed(body)
        )

        assert unsigned.status_code == 401
        assert forged.status_code == 403
        assert elsewhere.status_code == 403
        assert delivery_row(db, delivery_id).state == "SENT"

    def test_the_verification_handshake(
        self, api: TestClient, db: Database, provider: Provider
    ) -> None:
        tenant = make_tenant(db)
        with_all_channels(db, tenant, provider)
        url = f"/callbacks/whatsapp/{tenant.id}"

        ok = api.get(
            url,
            params={
                "hub.mode": "subscribe",
                "hub.verify_token": WHATSAPP_VERIFY_TOKEN,
                "hub.challenge": "1158201444",
            },
        )
        wrong = api.get(
            url,
            params={"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"},
        )

        assert (ok.status_code, ok.text) == (200, "1158201444")
        assert wrong.status_code == 403
