"""The admin's pages: campaigns with a code preview, mint, manual distribution with channel
Dashboard, the overview's figures checked against the database, settings."""

from __future__ import annotations

import re

from sqlalchemy import text

from tests.factories.campaigns import make_campaign
from tests.factories.redemptions import make_redemption
from tests.factories.tenants import Tenant
from tests.factories.vouchers import issue
from tests.support.clock import FakeClock
from tests.support.console import browser, make_operator, sign_in
from voucherd.campaigns import service as campaigns
from voucherd.console import overview
from voucherd.db.engine import Database
from voucherd.operations import service as operations
from voucherd.publications import service as publications
from voucherd.publications.schemas import PublicationFilters


class TestCampaigns:
    def test_preview_shows_a_sample_and_the_capacity(self, db: Database) -> None:
        admin = make_operator(db, Tenant(db))
        with browser(db) as client:
            csrf = sign_in(client, admin.email)
            good = client.post(
                "/console/campaigns/preview",
                data={"csrf": csrf, "pattern": "SUMMER-####", "charset": "0123456789"},
            )
            bad = client.post("/console/campaigns/preview", data={"csrf": csrf, "pattern": "X"})
        sample = re.search(r'id="sample-code">([^<]+)<', good.text)
        assert sample
        assert re.fullmatch(r"SUMMER-\d{4}", sample.group(1))
        assert 'id="capacity">' in good.text
        assert "needs at least one" in bad.text

    def test_create_with_bad_input_keeps_values_then_good_input_creates(self, db: Database) -> None:
        admin = make_operator(db, Tenant(db))
        form = {"name": "Summer", "type": "GIFT", "currency": "EUR", "default_value": "abc",
                "pattern": "SUM-####"}  # fmt: skip
        with browser(db) as client:
            csrf = sign_in(client, admin.email)
            bad = client.post("/console/campaigns/new", data={"csrf": csrf, **form})
            assert bad.status_code == 422
            assert 'id="e-default_value"' in bad.text
            assert 'value="SUM-####"' in bad.text
            good = client.post(
                "/console/campaigns/new",
                data={"csrf": csrf, **form, "default_value": "25.00"},
                follow_redirects=False,
            )
            assert good.status_code == 303
            page = client.get(good.headers["location"])
        assert "Summer" in page.text
        assert "€25.00" in page.text
        sms = re.search(r'id="sms-preview">([^<]+)<', page.text)
        assert sms
        assert "Ada Lovelace" in sms.group(1)
        assert re.search(r"SUM-[A-Za-z0-9]{4}", sms.group(1))

    def test_mint_starts_an_operation_with_a_progress_bar(self, db: Database) -> None:
        tenant = Tenant(db)
        campaign = make_campaign(db, tenant, type="GIFT", currency="EUR", default_value=1000)
        admin = make_operator(db, tenant)
        with browser(db) as client:
            csrf = sign_in(client, admin.email)
            started = client.post(
                f"/console/campaigns/{campaign.id}/mint",
                data={"csrf": csrf, "count": "25"},
                follow_redirects=False,
            )
            assert started.status_code == 303
            page = client.get(started.headers["location"])
            bad = client.post(
                f"/console/campaigns/{campaign.id}/mint", data={"csrf": csrf, "count": "lots"}
            )
        assert 'id="op-bar"' in page.text
        assert "Processing" in page.text
        assert 'id="e-count"' in bad.text
        assert operations.list_operations(db, tenant.caller, limit=5).items[0].kind == "mint"

    def test_distribute_publishes_with_channel_dashboard_once(self, db: Database) -> None:
        tenant = Tenant(db)
        campaign = make_campaign(db, tenant, type="GIFT", currency="EUR", default_value=1000)
        for _ in range(4):
            issue(db, tenant, campaign)
        admin = make_operator(db, tenant)
        people = "email, phone, name\nann@x.example,,Ann\nbob@x.example,,Bob\n,+447911123456,Cy"
        with browser(db) as client:
            csrf = sign_in(client, admin.email)
            form = {"csrf": csrf, "recipients": people, "batch": "b1"}
            done = client.post(f"/console/campaigns/{campaign.id}/distribute", data=form)
            again = client.post(f"/console/campaigns/{campaign.id}/distribute", data=form)
            bad = client.post(
                f"/console/campaigns/{campaign.id}/distribute",
                data={"csrf": csrf, "recipients": "ann@x.example\n,,no contact", "batch": "b2"},
            )
        assert "Published 3 codes" in done.text
        assert again.status_code == 200
        assert 'id="e-recipients"' in bad.text
        assert "line 2" in bad.text
        history = publications.list_publications(
            db, tenant.caller, PublicationFilters(campaign=campaign.id), limit=10, cursor=None
        ).items
        assert len(history) == 3
        assert {p.publication.channel for p in history} == {"Dashboard"}
        assert {p.publication.actor for p in history} == {admin.id}
        assert done.text.count('class="channel">Dashboard<') == 3

    def test_a_cashier_gets_403_on_campaign_pages(self, db: Database) -> None:
        tenant = Tenant(db)
        campaign = make_campaign(db, tenant, type="GIFT", currency="EUR", default_value=1000)
        cashier = make_operator(db, tenant, "cashier")
        with browser(db) as client:
            sign_in(client, cashier.email)
            for path in ("/console/campaigns", f"/console/campaigns/{campaign.id}",
                         "/console/campaigns/new", "/console/overview"):  # fmt: skip
                assert client.get(path).status_code == 403

    def test_another_tenants_campaign_is_404(self, db: Database) -> None:
        campaign = make_campaign(db, Tenant(db))
        admin = make_operator(db, Tenant(db))
        with browser(db) as client:
            sign_in(client, admin.email)
            assert client.get(f"/console/campaigns/{campaign.id}").status_code == 404


class TestOverview:
    def test_figures_match_the_database(self, db: Database) -> None:
        tenant = Tenant(db)
        gift = make_campaign(db, tenant, type="GIFT", currency="EUR", default_value=5000)
        cash = make_campaign(db, tenant, type="CASH", currency="GBP", default_value=1000)
        codes = [issue(db, tenant, gift).voucher.code for _ in range(3)]
        issue(db, tenant, cash)
        make_redemption(db, tenant, code=codes[0], amount=1250)
        make_redemption(db, tenant, code=codes[1], amount=5000)
        other = Tenant(db)
        issue(db, other, make_campaign(db, other, type="GIFT", currency="EUR", default_value=9))
        shown = overview.figures(db, tenant.caller)
        with db.unit_of_work(write=False) as session:
            issued = session.scalar(
                text("SELECT count(*) FROM voucher WHERE tenant_id = :t"), {"t": tenant.id}
            )
            redeemed = session.scalar(
                text(
                    "SELECT count(*) FROM redemption WHERE tenant_id = :t AND status = 'SUCCEEDED'"
                ),
                {"t": tenant.id},
            )
            owed = dict(
                session.execute(
                    text(
                        "SELECT currency, sum(coalesce(balance, amount)) FROM voucher "
                        "WHERE tenant_id = :t AND state IN ('ACTIVE', 'DISABLED') "
                        "GROUP BY currency"
                    ),
                    {"t": tenant.id},
                ).all()
            )
        assert shown.issued == issued == 4
        assert shown.redemptions == redeemed == 2
        assert shown.redeemed_vouchers == 1
        assert (
            shown.liability
            == {k: int(v) for k, v in owed.items()}
            == {
                "EUR": 3750 + 5000,
                "GBP": 1000,
            }
        )
        assert sum(n for _, n in shown.issued_per_day) == 4
        assert sum(n for _, n in shown.redeemed_per_day) == 2

    def test_the_page_draws_svg_and_shows_the_figures(self, db: Database) -> None:
        tenant = Tenant(db)
        gift = make_campaign(db, tenant, type="GIFT", currency="EUR", default_value=5000)
        issue(db, tenant, gift)
        admin = make_operator(db, tenant)
        with browser(db) as client:
            sign_in(client, admin.email)
            page = client.get("/console/overview?days=90")
            one = client.get(f"/console/overview?campaign={gift.id}")
        assert "<svg" in page.text
        assert 'data-series="issued"' in page.text
        assert 'id="fig-issued">1<' in page.text
        assert "€50.00" in one.text
        assert "<script>" not in page.text


class TestSettings:
    def test_a_key_secret_is_shown_once(self, db: Database) -> None:
        admin = make_operator(db, Tenant(db))
        with browser(db) as client:
            csrf = sign_in(client, admin.email)
            made = client.post(
                "/console/settings/keys", data={"csrf": csrf, "name": "till", "scope_redeem": "1"}
            )
            token = re.search(r'id="new-key">.*?<span class="code">([^<]+)<', made.text, re.DOTALL)
            assert token
            listed = client.get("/console/settings/keys")
            for path in ("/console/settings", "/console/settings/guard", "/console/deliveries",
                         "/console/orders", "/console/operations", "/console/redemptions"):  # fmt: skip
                assert client.get(path).status_code == 200, path
        assert token.group(1) not in listed.text
        assert token.group(1).split(".")[1] not in listed.text

    def test_limits_and_smtp_are_saved_and_the_password_never_shown(self, db: Database) -> None:
        admin = make_operator(db, Tenant(db))
        with browser(db) as client:
            csrf = sign_in(client, admin.email)
            bad = client.post(
                "/console/settings/email",
                data={"csrf": csrf, "host": "smtp.shop.example", "from_address": "nope"},
            )
            assert bad.status_code == 422
            assert 'id="e-from_address"' in bad.text
            assert 'value="smtp.shop.example"' in bad.text
            saved = client.post(
                "/console/settings/email",
                data={"csrf": csrf, "host": "smtp.shop.example", "port": "587",
                      "security": "starttls", "username": "u", "password": "s3cret-password-xyz",
                      "from_address": "v@shop.example"},
            )  # fmt: skip
            assert 'id="notice"' in saved.text
            assert "s3cret-password-xyz" not in saved.text
            assert "****-xyz" in saved.text
            limits = client.post(
                "/console/settings/limits",
                data={"csrf": csrf, "weekly_value_limit": "100000", "per_key": "50"},
            )
            assert 'value="50"' in limits.text
            assert 'value="100000"' in limits.text


class TestEditCampaign:
    def test_edit_saves_and_a_stale_form_is_refused(self, db: Database, clock: FakeClock) -> None:
        tenant = Tenant(db)
        campaign = make_campaign(db, tenant, type="GIFT", currency="EUR", default_value=1000)
        admin = make_operator(db, tenant)
        with browser(db) as client:
            csrf = sign_in(client, admin.email)
            form = client.get(f"/console/campaigns/{campaign.id}/edit")
            assert 'value="10.00"' in form.text
            seen = re.search(r'name="seen" value="([^"]+)"', form.text)
            assert seen
            fields = {"csrf": csrf, "seen": seen.group(1), "name": "Renamed",
                      "default_value": "12.50", "timezone": "UTC",
                      **{f"dow_{d}": "1" for d in (1, 2, 3, 4, 5)}}  # fmt: skip
            bad = client.post(
                f"/console/campaigns/{campaign.id}/edit", data={**fields, "budget": "x"}
            )
            assert bad.status_code == 422
            assert 'id="e-budget"' in bad.text
            assert 'value="Renamed"' in bad.text
            clock.advance(seconds=1)
            saved = client.post(f"/console/campaigns/{campaign.id}/edit", data=fields)
            assert "Saved." in saved.text
            assert "€12.50" in saved.text
            stale = client.post(
                f"/console/campaigns/{campaign.id}/edit", data={**fields, "name": "Again"}
            )
            assert stale.status_code == 409
        changed = campaigns.get_campaign(db, tenant.caller, campaign.id)
        assert changed.name == "Renamed"
        assert changed.default_value == 1250
        assert changed.validity_day_of_week == [1, 2, 3, 4, 5]
