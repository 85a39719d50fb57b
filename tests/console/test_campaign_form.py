"""The campaign form takes every field the native API takes, and previews the messages live."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from tests.factories.tenants import Tenant
from tests.support.clock import FakeClock
from tests.support.console import browser, make_operator, sign_in
from voucherd.campaigns import service as campaigns
from voucherd.db.engine import Database

BASE = {"type": "DISCOUNT", "timezone": "UTC", **{f"dow_{d}": "1" for d in range(7)}}


def _create(client: TestClient, csrf: str, **fields: str) -> Any:
    return client.post(
        "/console/campaigns/new", data={"csrf": csrf, **BASE, **fields}, follow_redirects=False
    )


def _made(db: Database, tenant: Tenant, name: str) -> Any:
    (found,) = [c for c in campaigns.list_campaigns(db, tenant.caller, limit=50).items
                if c.name == name]  # fmt: skip
    return found


class TestCreate:
    def test_every_field_reaches_the_campaign(self, db: Database) -> None:
        tenant = Tenant(db)
        admin = make_operator(db, tenant)
        with browser(db) as client:
            csrf = sign_in(client, admin.email)
            made = _create(
                client, csrf, name="Lunch", currency="EUR", discount_type="PERCENT",
                percent_off="12.5", amount_limit="20.00", duration="PT2H", interval="P1D",
                start_date="2026-01-05T11:00",
                start_time="11:30", expiration_time="14:00", delivery_channel="email",
                locale="de-DE", metadata='{"team": "north", "tier": 2}',
            )  # fmt: skip
            assert made.status_code == 303, made.text
            edit = client.get(made.headers["location"] + "/edit")
        lunch = _made(db, tenant, "Lunch")
        assert lunch.discount == {"type": "PERCENT", "percent_off": "12.5", "amount_limit": 2000}
        assert lunch.validity_timeframe == {"duration": "PT2H", "interval": "P1D"}
        assert lunch.validity_hours["daily"][0]["start_time"] == "11:30"
        assert lunch.validity_hours["daily"][0]["expiration_time"] == "14:00"
        assert lunch.delivery_channel == "email"
        assert lunch.locale == "de_DE"
        assert lunch.metadata_ == {"team": "north", "tier": 2}
        assert 'value="11:30"' in edit.text
        assert "&#34;team&#34;: &#34;north&#34;" in edit.text or '"team": "north"' in edit.text

    def test_each_discount_kind(self, db: Database) -> None:
        tenant = Tenant(db)
        admin = make_operator(db, tenant)
        with browser(db) as client:
            csrf = sign_in(client, admin.email)
            for name, fields in (
                ("Five off", {"discount_type": "AMOUNT", "amount_off": "5.00"}),
                ("Fixed", {"discount_type": "FIXED", "fixed_amount": "9.99"}),
                ("Free fries", {"discount_type": "UNIT", "unit_off": "1", "unit_type": "FRIES"}),
            ):
                made = _create(client, csrf, name=name, currency="GBP", **fields)
                assert made.status_code == 303, made.text
        assert _made(db, tenant, "Five off").discount == {"type": "AMOUNT", "amount_off": 500}
        assert _made(db, tenant, "Fixed").discount == {"type": "FIXED", "fixed_amount": 999}
        assert _made(db, tenant, "Free fries").discount == {
            "type": "UNIT", "unit_off": 1, "unit_type": "FRIES",
        }  # fmt: skip


class TestBadInput:
    def test_each_bad_field_is_named_and_values_kept(self, db: Database) -> None:
        tenant = Tenant(db)
        admin = make_operator(db, tenant)
        with browser(db) as client:
            csrf = sign_in(client, admin.email)
            no_percent = _create(client, csrf, name="A", discount_type="PERCENT")
            not_json = _create(client, csrf, name="B", metadata='{"team": north}')
            a_list = _create(client, csrf, name="C", metadata="[1, 2]")
            late = _create(client, csrf, name="D", start_time="25:00", expiration_time="26:00")
            too_long = _create(
                client,
                csrf,
                name="E",
                duration="P2D",
                interval="P1D",
                start_date="2026-01-05T11:00",
            )
        assert no_percent.status_code == 422
        assert 'id="e-discount"' in no_percent.text
        assert not_json.status_code == 422
        assert 'id="e-metadata"' in not_json.text
        assert "line 1, column 10" in not_json.text
        assert "north}</textarea>" in not_json.text  # kept as typed
        assert 'id="e-metadata"' in a_list.text
        assert 'id="e-start_time"' in late.text
        assert 'id="e-interval"' in too_long.text
        assert 'value="P2D"' in too_long.text
        assert campaigns.list_campaigns(db, tenant.caller, limit=5).items == []


class TestMessagePreview:
    def test_the_texts_render_as_typed(self, db: Database) -> None:
        admin = make_operator(db, Tenant(db))
        with browser(db) as client:
            csrf = sign_in(client, admin.email)
            page = client.get("/console/campaigns/new")
            assert 'hx-post="/console/campaigns/messages-preview"' in page.text
            shown = client.post(
                "/console/campaigns/messages-preview",
                data={"csrf": csrf, "name": "Spring", "type": "GIFT", "currency": "EUR",
                      "default_value": "25", "sms_text": "Hi {{ customer_name }}: {{ value }}",
                      "email_subject": "{{ campaign }} for you", "email_text": "Code {{ code }}"},
                headers={"HX-Request": "true"},
            )  # fmt: skip
            broken = client.post(
                "/console/campaigns/messages-preview",
                data={"csrf": csrf, "sms_text": "Hi {{ nobody }}"},
                headers={"HX-Request": "true"},
            )
        assert "<html" not in shown.text
        assert re.search(r'id="sms-preview">Hi Ada Lovelace: €25.00<', shown.text)
        assert 'id="email-subject">Spring for you<' in shown.text
        assert 'id="sms-preview-error"' in broken.text
        assert "nobody" in broken.text


class TestEdit:
    def test_the_extra_fields_are_shown_changed_and_cleared(
        self, db: Database, clock: FakeClock
    ) -> None:
        tenant = Tenant(db)
        admin = make_operator(db, tenant)
        with browser(db) as client:
            csrf = sign_in(client, admin.email)
            made = _create(
                client, csrf, name="Lunch", currency="EUR", discount_type="AMOUNT",
                amount_off="3.00", start_time="11:30", expiration_time="14:00",
                metadata='{"team": "north"}', delivery_channel="email",
            )  # fmt: skip
            form = client.get(made.headers["location"] + "/edit")
            values = dict(re.findall(r'name="([a-z_0-9]+)"[^>]*value="([^"]*)"', form.text))
            assert values["start_time"] == "11:30"
            assert 'id="f-discount_type"' not in form.text  # fixed since creation
            assert '<option value="email" selected>' in form.text
            clock.advance(seconds=1)
            saved = client.post(
                made.headers["location"] + "/edit",
                data={**values, "csrf": csrf, "name": "Lunch", "metadata": "",
                      "start_time": "12:00", "delivery_channel": "",
                      **{f"dow_{d}": "1" for d in range(7)}},
            )  # fmt: skip
            assert "Saved." in saved.text, saved.text
        lunch = _made(db, tenant, "Lunch")
        assert lunch.metadata_ is None
        assert lunch.delivery_channel is None
        assert lunch.validity_hours["daily"][0]["start_time"] == "12:00"
        assert lunch.discount == {"type": "AMOUNT", "amount_off": 300}
