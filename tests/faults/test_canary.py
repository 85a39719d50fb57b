"""The canary: every face driven with recognisable personal data and secrets, then every log
line, error body and metric searched for them. None may be found.

What is planted: a customer's name, email, phone (and its bare digits), street address and post
code; the API key's secret and token; every delivery provider credential, set through
``PATCH /api/v1/tenant`` like an operator would; a webhook URL with a token in it; a code that
does not exist and a wrong secret. What is collected on the way: every voucher code and voucher
page token the service hands out (success bodies may carry those, nothing else may).

What is searched:

* every record any logger emits at DEBUG, formatted by the production formatter
  (``configure_logging("json", "DEBUG")``: library loggers are held where production holds
  them) and captured as it is written, so request ids and ``extra`` fields are in it; records of
  the *test's own* servers and client (Starlette's TestClient, ``httpx2``; the SMTP server,
  ``mail.log``) are not voucherd's output and are left out;
* every answer with a status of 400 or more, body and headers;
* ``/metrics``.

Failing requests are part of the flows: bad input, unknown codes, wrong credentials, providers
that refuse (with the phone number, email address or token echoed in their own error text, as
Twilio, Meta and SMTP servers do).
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.support.delivery import Answer, Provider, SmtpServer, deliver_due, settings_for
from voucherd.app import create_app
from voucherd.config import Settings
from voucherd.db.engine import Database, make_engine
from voucherd.delivery.settings import new_webhook_secret
from voucherd.observability.logs import configure_logging

NAME = "Zebulon Quartzfeather"
EMAIL = "zebulon.quartzfeather@canary-leak.example"
PHONE = "+447723904461"
PHONE_DIGITS = "7723904461"
ADDRESS = "17 Quartzfeather Lane, Canarytown"
POSTCODE = "QX7 4LK"
TWILIO_SID = "AC" + "c0ffee00" * 4
TWILIO_TOKEN = "canary-twilio-auth-9f3e2d1c0b"
META_ACCESS = "canary-meta-access-7a6b5c4d3e"
META_APP_SECRET = "canary-meta-appsecret-1a2b3c"
META_VERIFY = "canary-meta-verify-4d5e6f"
SMTP_USER = "canary-smtp-user"
SMTP_PASSWORD = "canary-smtp-password-8h7g6f"
HOOK_TOKEN = "canary-hook-url-token-5e4d"
UNKNOWN_CODE = "CANARYQ7X9K2M"
GUESS = "CANARYQ7X9K"  # the prefix of every code guessed in a burst
WRONG_SECRET = "canary-wrong-secret-5x4y3z"
BAD_PHONE = "+44772390446199999"
BAD_EMAIL = "quartzfeather@@canary-leak"

# Searched case-insensitively; the name's and email's rare word covers their other spellings.
PLANTED = [
    "quartzfeather",
    PHONE_DIGITS,
    POSTCODE,
    POSTCODE.replace(" ", ""),
    TWILIO_TOKEN,
    META_ACCESS,
    META_APP_SECRET,
    META_VERIFY,
    SMTP_PASSWORD,
    HOOK_TOKEN,
    GUESS,
    WRONG_SECRET,
]
# Records of the test's own client and servers, not of voucherd.
NOT_VOUCHERD = ("httpx2", "mail.log")


@dataclass
class Canary:
    """The client, what it must never find, and everything it found to search."""

    client: TestClient
    secrets: list[str] = field(default_factory=lambda: list(PLANTED))
    errors: list[str] = field(default_factory=list)
    answers: int = 0

    def plant(self, *values: str) -> None:
        self.secrets.extend(v for v in values if v)

    def harvest(self, body: Any) -> None:
        """Codes and page tokens handed out in a success body: secrets from now on."""
        if isinstance(body, dict):
            for key, value in body.items():
                if key in ("code", "wiCode", "voucherCode") and isinstance(value, str):
                    self.plant(value)
                elif key == "page_url" and isinstance(value, str):
                    self.plant(value.rsplit("/", 1)[-1])
                else:
                    self.harvest(value)
        elif isinstance(body, list):
            for item in body:
                self.harvest(item)


@pytest.fixture
def settings(provider: Provider, smtp: SmtpServer) -> Settings:
    return settings_for(provider, smtp_ca_file=smtp.ca_file, delivery_timeout_seconds=1)


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    quieted = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    handler = configure_logging("json", "DEBUG", stream=stream)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)
    for name, was in quieted.items():
        logging.getLogger(name).setLevel(was)


@pytest.fixture
def canary(log_stream: io.StringIO, client: TestClient) -> Canary:
    """Logging is set up first, so the test's database connection logs as production's would."""
    found = Canary(client)
    send = client.request

    def request(*args: Any, **kwargs: Any) -> Any:
        response = send(*args, **kwargs)
        found.answers += 1
        assert response.status_code < 500, (response.request.url.path, response.text)
        if response.status_code >= 400:
            headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
            found.errors.append(f"{response.status_code} {headers}\n{response.text}")
        elif response.headers.get("content-type", "").startswith("application/json"):
            found.harvest(response.json())
        return response

    client.request = request  # type: ignore[method-assign]
    return found


def _not_voucherds(line: str) -> bool:
    """A line of the test's own servers and client (its ``logger``, however the JSON is
    spaced); every other line is searched."""
    try:
        logger = json.loads(line).get("logger", "")
    except ValueError:
        return False
    return isinstance(logger, str) and logger.startswith(NOT_VOUCHERD)


def assert_clean(canary: Canary, log_stream: io.StringIO, db: Database) -> None:
    deliver_due(db)  # whatever the flows left in the outbox is sent (and logged) too
    metrics = canary.client.get("/metrics").text
    lines = [line for line in log_stream.getvalue().splitlines() if not _not_voucherds(line)]
    if os.environ.get("VOUCHERD_CANARY_DUMP"):  # a file to read what was searched
        with open(os.environ["VOUCHERD_CANARY_DUMP"], "a") as dump:
            dump.write("\n".join([*lines, *canary.errors, metrics, *canary.secrets]) + "\n")
    assert lines, "nothing was logged: the capture is broken"
    assert canary.errors, "no error answer was seen: the flows are broken"
    places = [("log", line) for line in lines]
    places += [("error body", body) for body in canary.errors]
    places += [("metrics", metrics)]
    leaks = [
        f"{secret!r} in {where}: {text[:400]}"
        for where, text in places
        for secret in canary.secrets
        if secret.lower() in text.lower()
    ]
    assert not leaks, "\n".join(leaks[:20])


def provider_settings(provider: Provider, smtp: SmtpServer, webhook_secret: str) -> dict[str, Any]:
    return {
        "phone_channel": "sms",
        "sms": {
            "account_sid": TWILIO_SID,
            "auth_token": TWILIO_TOKEN,
            "from_number": "+15005550006",
        },
        "whatsapp": {
            "phone_number_id": "106540352242922",
            "access_token": META_ACCESS,
            "app_secret": META_APP_SECRET,
            "verify_token": META_VERIFY,
        },
        "email": {
            "host": smtp.host,
            "port": smtp.port,
            "security": "starttls",
            "username": SMTP_USER,
            "password": SMTP_PASSWORD,
            "from_address": "vouchers@shop.example",
            "from_name": "Shop Vouchers",
        },
        "webhook": {"url": f"{provider.url}/hook?token={HOOK_TOKEN}", "secret": webhook_secret},
    }


def configured_tenant(canary: Canary, db: Database, provider: Provider, smtp: SmtpServer) -> Tenant:
    tenant = make_tenant(db)
    canary.plant(tenant.key.secret, tenant.key.token)
    webhook_secret = new_webhook_secret()
    canary.plant(webhook_secret)
    patched = canary.client.patch(
        "/api/v1/tenant",
        headers=tenant.headers,
        json={"delivery": provider_settings(provider, smtp, webhook_secret)},
    )
    assert patched.status_code == 200, patched.text
    for bad in (
        {"sms": {"account_sid": "nope", "auth_token": TWILIO_TOKEN}},
        {"webhook": {"url": f"ftp://hooks.example/in?token={HOOK_TOKEN}", "secret": "x"}},
        {"webhook": {"url": f"{provider.url}/hook?token={HOOK_TOKEN}", "secret": HOOK_TOKEN}},
        {"email": {"host": smtp.host, "port": "smtp", "password": SMTP_PASSWORD}},
        {"whatsapp": {"access_token": META_ACCESS, "app_secret": 7}},
    ):
        refused = canary.client.patch(
            "/api/v1/tenant", headers=tenant.headers, json={"delivery": bad}
        )
        assert refused.status_code == 422, refused.text
    return tenant


class TestNativeApi:
    def test_customers_vouchers_redemptions_deliveries_and_pages(
        self,
        canary: Canary,
        log_stream: io.StringIO,
        db: Database,
        provider: Provider,
        smtp: SmtpServer,
    ) -> None:
        api = canary.client
        tenant = configured_tenant(canary, db, provider, smtp)
        headers = tenant.headers
        campaign = api.post(
            "/api/v1/campaigns",
            headers=headers,
            json={"name": "Canary gifts", "type": "GIFT", "currency": "EUR", "default_value": 5000},
        ).json()["id"]

        person = {"name": NAME, "email": EMAIL, "phone": PHONE, "address": ADDRESS}
        created = api.post(
            "/api/v1/customers",
            headers=headers,
            json={"source_id": "cust-canary-1", **person, "postcode": POSTCODE},
        )
        assert created.status_code == 201, created.text
        for bad in ({"email": BAD_EMAIL}, {"phone": BAD_PHONE}, {"name": NAME, "email": 42}):
            assert api.post("/api/v1/customers", headers=headers, json=bad).status_code == 422
        assert api.get(f"/api/v1/customers?email={EMAIL}", headers=headers).status_code == 200
        # Clients often use the email address as their own customer id.
        by_email = {"source_id": EMAIL, "name": NAME, "phone": PHONE}
        assert api.post("/api/v1/customers", headers=headers, json=by_email).status_code == 201
        again = api.post("/api/v1/customers", headers=headers, json=by_email)
        assert again.status_code in (200, 409), again.text
        api.post(f"/api/v1/campaigns/{campaign}/vouchers", headers=headers, json={"count": 2})
        published = api.post(
            "/api/v1/publications",
            headers=headers,
            json={"campaign": campaign, "count": 1, "customer": {"source_id": EMAIL}},
        )
        assert published.status_code in (200, 201), published.text
        unknown_customer = api.post(
            "/api/v1/publications",
            headers=headers,
            json={"campaign": campaign, "count": 1, "customer": f"nobody-{EMAIL}"},
        )
        assert unknown_customer.status_code >= 400, unknown_customer.text
        erase = api.post(f"/api/v1/customers/{EMAIL}/erase", headers=headers)
        assert erase.status_code < 300, erase.text
        assert api.get(f"/api/v1/customers/{EMAIL}", headers=headers).status_code in (200, 404)
        assert api.post(f"/api/v1/customers/{EMAIL}/erase", headers=headers).status_code < 500
        assert api.get(f"/api/v1/customers/{EMAIL}", headers=headers).status_code == 404

        issued = []
        for delivery in (
            {"channel": "phone", "recipient": PHONE},
            {"channel": "email", "recipient": EMAIL},
            {"channel": "webhook"},
        ):
            answer = api.post(
                "/api/v1/vouchers",
                headers=headers,
                json={
                    "campaign": campaign,
                    "customer_ref": "cust-canary-1",
                    "holder": {"name": NAME, "address": ADDRESS, "postcode": POSTCODE},
                    "delivery": {**delivery, "name": NAME} if "recipient" in delivery else delivery,
                },
            )
            assert answer.status_code == 201, answer.text
            issued.append(answer.json())
        code = issued[0]["code"]
        for bad_delivery in (
            {"channel": "phone", "recipient": BAD_PHONE},
            {"channel": "email", "recipient": BAD_EMAIL},
            {"channel": "carrier-pigeon", "recipient": PHONE},
        ):
            refused = api.post(
                "/api/v1/vouchers",
                headers=headers,
                json={"campaign": campaign, "delivery": bad_delivery},
            )
            assert refused.status_code == 422, refused.text
        taken = api.post(
            "/api/v1/vouchers", headers=headers, json={"campaign": campaign, "code": code}
        )
        assert taken.status_code == 409, taken.text

        assert api.get(f"/api/v1/vouchers/{code}", headers=headers).status_code == 200
        assert api.get(f"/api/v1/vouchers/{UNKNOWN_CODE}", headers=headers).status_code == 404
        typo = code[:-1] + ("A" if code[-1] != "A" else "B")
        for body in (
            {"code": code, "amount": 100},
            {"code": code, "amount": 10**9},
            {"code": UNKNOWN_CODE, "amount": 100},
            {"code": typo, "amount": 100},
            {"code": code, "amount": "lots"},
        ):
            api.post("/api/v1/redemptions", headers=headers, json=body)
            api.post("/api/v1/validations", headers=headers, json=body)
        redeemed = api.post(
            "/api/v1/redemptions", headers=headers, json={"code": code, "amount": 1}
        )
        rollback = f"/api/v1/redemptions/{redeemed.json()['id']}/rollback"
        assert api.post(rollback, headers=headers).status_code == 200
        assert api.post(rollback, headers=headers).status_code == 409

        for wrong in (
            {"Authorization": f"Bearer {tenant.key.key_id}.{WRONG_SECRET}"},
            {"Authorization": f"Bearer {WRONG_SECRET}"},
            {"Authorization": f"Basic {WRONG_SECRET}"},
        ):
            assert api.get(f"/api/v1/vouchers/{code}", headers=wrong).status_code == 401

        # Providers refuse, echoing what they were sent, as real ones do.
        provider.script(
            "sms",
            Answer(
                400,
                {
                    "code": 21211,
                    "message": f"The 'To' number {PHONE} is not a valid phone number.",
                    "status": 400,
                },
            ),
        )
        # The SMTP server refuses the canary credentials: an authentication failure (which the
        # local server answers by going quiet until the send times out).
        provider.script("webhook", Answer(500, {"error": f"token {HOOK_TOKEN} expired"}))
        assert deliver_due(db) == 3
        failed = api.get("/api/v1/deliveries?state=FAILED", headers=headers)
        assert failed.status_code == 200
        api.patch(
            "/api/v1/tenant", headers=headers, json={"delivery": {"phone_channel": "whatsapp"}}
        )
        api.post(
            f"/api/v1/vouchers/{issued[1]['id']}/deliveries",
            headers=headers,
            json={"channel": "phone", "recipient": PHONE},
        )
        provider.script(
            "whatsapp",
            Answer(
                401,
                {"error": {"message": f"Invalid OAuth access token {META_ACCESS}", "code": 190}},
            ),
        )
        deliver_due(db)

        page = issued[0]["page_url"].removeprefix("https://vouchers.example")
        assert api.get(page).status_code == 200
        assert api.get(f"{page}/qr.svg").status_code == 200
        assert api.get("/v/not-a-real-token-canary").status_code == 404
        assert api.post(
            f"/callbacks/twilio/{tenant.id}", data={"MessageStatus": "delivered", "To": PHONE}
        ).status_code in (400, 401, 403, 404)
        # Someone guessing codes; last, as the guard may refuse this client afterwards.
        for n in range(30):
            api.post("/api/v1/redemptions", headers=headers, json={"code": f"{GUESS}{n:02d}"})
            api.get(f"/v/{GUESS}{n:02d}")
        assert_clean(canary, log_stream, db)


class TestDialects:
    def test_yoyo_voucherify_imovo_and_vista(
        self,
        canary: Canary,
        log_stream: io.StringIO,
        db: Database,
        provider: Provider,
        smtp: SmtpServer,
    ) -> None:
        api = canary.client
        tenant = configured_tenant(canary, db, provider, smtp)
        make_campaign(db, tenant, name="1234", currency="ZAR", default_value=10000)
        make_campaign(db, tenant, name="THINK", type="CASH", currency="GBP", max_value=5000)
        make_campaign(
            db, tenant, name="CAMP01", type="CASH", currency="GBP", delivery_channel="email"
        )
        for name in ("VOUCHERTYPE1", "ABC12"):
            make_campaign(db, tenant, name=name, currency="NZD")

        # Yoyo / wiGroup.
        yoyo = {
            "apiId": tenant.key.key_id,
            "apiPassword": tenant.key.secret,
            "Content-Type": "application/json",
        }
        coupon = api.post(
            "/cvs-issuer/rest/coupons?issueWiCode=true",
            headers=yoyo,
            json={
                "campaignId": "1234",
                "userRef": "canary-user",
                "mobileNumber": PHONE,
                "smsMessage": f"Hello {NAME}, your voucher:",
                "sendSMS": True,
            },
        )
        assert coupon.status_code == 200, coupon.text
        wicode = coupon.json()["wiCode"]
        for body in (
            {"campaignId": "1234", "mobileNumber": BAD_PHONE, "sendSMS": True},
            {"campaignId": "nope", "mobileNumber": PHONE, "smsMessage": NAME, "sendSMS": True},
        ):
            refused = api.post("/cvs-issuer/rest/coupons", headers=yoyo, json=body)
            assert refused.status_code >= 400, refused.text
        assert api.get(f"/cvs-issuer/rest/coupons/{wicode}", headers=yoyo).status_code == 200
        assert api.get(f"/cvs-issuer/rest/coupons/{UNKNOWN_CODE}", headers=yoyo).status_code == 404
        wrong_yoyo = {**yoyo, "apiPassword": WRONG_SECRET}
        assert api.get(f"/cvs-issuer/rest/coupons/{wicode}", headers=wrong_yoyo).status_code == 401

        # Voucherify.
        pair = {"X-App-Id": tenant.key.key_id, "X-App-Token": tenant.key.secret}
        customer = api.post(
            "/v1/customers",
            headers=pair,
            json={
                "source_id": "canary-vf-1",
                "name": NAME,
                "email": EMAIL,
                "phone": PHONE,
                "address": {"line_1": ADDRESS, "postal_code": POSTCODE},
            },
        )
        assert customer.status_code == 200, customer.text
        assert api.post("/v1/customers", headers=pair, json={"email": BAD_EMAIL}).status_code == 400
        assert api.get(f"/v1/customers/{EMAIL}", headers=pair).status_code == 404
        assert api.get(f"/v1/vouchers/{UNKNOWN_CODE}", headers=pair).status_code == 404
        assert api.get(f"/v1/vouchers/{wicode}", headers=pair).status_code == 200
        for body in ({"order": {"amount": 10**9}}, {"order": {"amount": "x"}}, {}):
            for ref in (wicode, UNKNOWN_CODE):
                api.post(f"/v1/vouchers/{ref}/redemption", headers=pair, json=body)
        api.post(
            "/v1/validations",
            headers=pair,
            json={"redeemables": [{"object": "voucher", "id": UNKNOWN_CODE}]},
        )
        wrong_pair = {**pair, "X-App-Token": WRONG_SECRET}
        assert api.get(f"/v1/vouchers/{wicode}", headers=wrong_pair).status_code == 401

        # i-movo.
        imovo = {"X-API-KEY": tenant.key.token, "Content-Type": "application/json"}
        with_id = api.post(
            "/VoucherRequest/RequestVoucherWithId",
            headers=imovo,
            json={
                "CampaignCode": "CAMP01",
                "VoucherValue": 1.00,
                "CustomerReference": "canary-ref-1",
                "DeliveryRecipient": EMAIL,
                "CustomerName": NAME,
                "Address": ADDRESS,
                "Postcode": POSTCODE,
            },
        )
        assert with_id.status_code == 200, with_id.text
        for body in (
            {"CampaignCode": "CAMP01", "DeliveryRecipient": BAD_EMAIL, "CustomerName": NAME},
            {"CampaignCode": "NOPE", "DeliveryRecipient": EMAIL, "Postcode": POSTCODE},
            {"CampaignCode": "CAMP01", "VoucherValue": "lots", "Address": ADDRESS},
        ):
            refused = api.post("/VoucherRequest/RequestVoucherWithId", headers=imovo, json=body)
            assert refused.status_code >= 400, refused.text
        query = f"campaignCode=THINK&customerReference=0{PHONE_DIGITS}"
        assert api.post(f"/VoucherRequest/Request?{query}&value=20.00", headers=imovo).is_success
        assert api.post(f"/VoucherRequest/Request?{query}&value=lots", headers=imovo).status_code
        wrong_key = {"X-API-KEY": f"{tenant.key.key_id}.{WRONG_SECRET}"}
        assert api.post(f"/VoucherRequest/Request?{query}", headers=wrong_key).status_code == 401

        # Vista.
        client = {
            "code": "CANARY1",
            "name": "Canary client",
            "contact": {"name": NAME, "email": EMAIL, "phone": PHONE_DIGITS, "fax": ""},
            "externalClientId": "canary-ext",
            "voucherTypeCodes": ["VOUCHERTYPE1", "ABC12"],
        }
        made = api.post("/api/v1/voucher-management/client", headers=tenant.headers, json=client)
        assert made.status_code == 200, made.text
        bad_contact = {**client, "code": "CANARY2", "contact": {"name": NAME, "email": BAD_EMAIL}}
        refused = api.post(
            "/api/v1/voucher-management/client", headers=tenant.headers, json=bad_contact
        )
        assert refused.status_code == 400, refused.text
        distribution = {
            "reference": "canary",
            "distributionItems": [{"clientOrderItemId": 999999, "quantityPerRecipient": 1}],
            "externallyDistributed": False,
            "recipients": [{"name": NAME, "email": EMAIL, "mobileNumber": PHONE}],
        }
        for path in ("email-distribution", "mobile-distribution"):
            refused = api.post(
                f"/api/v1/voucher-management/{path}", headers=tenant.headers, json=distribution
            )
            assert refused.status_code == 400, refused.text
        assert api.post(
            "/api/v1/voucher-management/resolve-operation-result-tokens",
            headers=tenant.headers,
            json=[UNKNOWN_CODE],
        ).status_code in (200, 400, 404)
        wrong_bearer = {"Authorization": f"Bearer {tenant.key.key_id}.{WRONG_SECRET}"}
        assert (
            api.post(
                "/api/v1/voucher-management/client", headers=wrong_bearer, json=client
            ).status_code
            == 401
        )
        # Someone guessing codes; last, as the guard may refuse this client afterwards.
        for n in range(30):
            api.get(f"/v1/vouchers/{GUESS}{n:02d}", headers=pair)
            api.get(f"/cvs-issuer/rest/coupons/{GUESS}{n:02d}", headers=yoyo)
        assert_clean(canary, log_stream, db)


class TestDatabaseOutage:
    def test_answers_and_logs_name_no_code_while_the_database_is_down(
        self, log_stream: io.StringIO, settings: Settings
    ) -> None:
        """Every request fails at its first query: the 503 paths log, and must log templates."""
        url = "postgresql://postgres@127.0.0.1:1/none?connect_timeout=1"
        down = Database(make_engine(url), settings=settings)
        errors = []
        try:
            with TestClient(create_app(settings, db=down), raise_server_exceptions=False) as api:
                for method, path, headers in [
                    ("GET", f"/api/v1/vouchers/{UNKNOWN_CODE}", {"Authorization": "Bearer a.b"}),
                    ("GET", f"/v1/vouchers/{UNKNOWN_CODE}", {"X-App-Id": "a", "X-App-Token": "b"}),
                    (
                        "GET",
                        f"/cvs-issuer/rest/coupons/{UNKNOWN_CODE}",
                        {"apiId": "a", "apiPassword": "b"},
                    ),
                    ("GET", f"/v/{UNKNOWN_CODE}", {}),
                    ("GET", f"/v/{UNKNOWN_CODE}/qr.svg", {}),
                ]:
                    answer = api.request(method, path, headers=headers)
                    assert answer.status_code == 503, (path, answer.status_code, answer.text)
                    errors.append(answer.text)
        finally:
            down.dispose()
        logged = [line for line in log_stream.getvalue().splitlines() if not _not_voucherds(line)]
        assert any("unavailable" in line for line in logged)
        assert not [t for t in logged + errors if GUESS.lower() in t.lower()]
