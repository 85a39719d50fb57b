"""The support agent's pages: find a voucher, act on it, customers; tenants stay apart."""

from __future__ import annotations

import re

from tests.factories.campaigns import make_campaign
from tests.factories.redemptions import make_redemption
from tests.factories.tenants import Tenant
from tests.factories.vouchers import issue
from tests.support.console import browser, make_operator, sign_in
from tests.support.delivery import configure
from voucherd.db.engine import Database
from voucherd.delivery import service as delivery
from voucherd.delivery.schemas import DeliveryRequest
from voucherd.publications import publish
from voucherd.publications.schemas import PublishRequest
from voucherd.vouchers import service as vouchers


def _voucher(db: Database, tenant: Tenant, **fields: object) -> tuple[str, str]:
    campaign = make_campaign(db, tenant, type="GIFT", currency="EUR", default_value=2000)
    record = issue(db, tenant, campaign, **fields)
    return record.voucher.id, record.voucher.code


class TestFind:
    def test_a_mistyped_code_is_told_then_the_right_one_opens_the_page(self, db: Database) -> None:
        tenant = Tenant(db)
        voucher_id, code = _voucher(db, tenant)
        typo = code[:-1] + ("A" if code[-1] != "A" else "B")
        support = make_operator(db, tenant, "support")
        with browser(db) as client:
            csrf = sign_in(client, support.email)
            wrong = client.post("/console/vouchers/find", data={"csrf": csrf, "q": typo})
            assert 'id="e-q"' in wrong.text
            assert "typo" in wrong.text
            right = client.post(
                "/console/vouchers/find", data={"csrf": csrf, "q": code}, follow_redirects=False
            )
            assert right.headers["location"] == f"/console/vouchers/{voucher_id}"
            page = client.get(right.headers["location"])
        assert code in page.text
        assert "€20.00" in page.text

    def test_by_customer_reference_and_lists_mask_codes(self, db: Database) -> None:
        tenant = Tenant(db)
        _, code = _voucher(db, tenant, customer_ref="cust-42")
        support = make_operator(db, tenant, "support")
        with browser(db) as client:
            csrf = sign_in(client, support.email)
            found = client.post("/console/vouchers/find", data={"csrf": csrf, "q": "cust-42"})
            listed = client.get("/console/vouchers")
            disabled_only = client.get("/console/vouchers?state=DISABLED")
            assert code[:4] + "…" not in disabled_only.text
        assert 'id="found-vouchers"' in found.text
        for answer in (found, listed):
            assert code not in answer.text
            assert code[:4] + "…" + code[-2:] in answer.text


class TestActions:
    def test_disable_and_adjust_name_the_operator_in_the_events(self, db: Database) -> None:
        tenant = Tenant(db)
        voucher_id, code = _voucher(db, tenant)
        support = make_operator(db, tenant, "support")
        with browser(db) as client:
            csrf = sign_in(client, support.email)
            page = client.get(f"/console/vouchers/{voucher_id}")
            seen = re.search(r'name="seen" value="([^"]+)"', page.text)
            assert seen
            done = client.post(
                f"/console/vouchers/{voucher_id}/disable",
                data={"csrf": csrf, "seen": seen.group(1), "reason": "lost card"},
            )
            assert 'id="notice"' in done.text
            stale = client.post(
                f"/console/vouchers/{voucher_id}/enable",
                data={"csrf": csrf, "seen": seen.group(1)},
            )
            assert stale.status_code == 409
            assert "changed since" in stale.text
            no_reason = client.post(
                f"/console/vouchers/{voucher_id}/adjust", data={"csrf": csrf, "amount": "5"}
            )
            assert no_reason.status_code == 422
            assert 'id="e-reason"' in no_reason.text
            assert 'value="5"' in no_reason.text
            adjusted = client.post(
                f"/console/vouchers/{voucher_id}/adjust",
                data={"csrf": csrf, "amount": "5", "reason": "goodwill"},
            )
            assert "€25.00" in adjusted.text
            assert support.email in adjusted.text  # the events name who did it
        events = vouchers.list_events(db, tenant.caller, code)
        assert [(e.kind, e.actor, e.reason) for e in events[-2:]] == [
            ("disabled", support.id, "lost card"),
            ("balance_adjusted", support.id, "goodwill"),
        ]

    def test_no_csrf_no_change(self, db: Database) -> None:
        tenant = Tenant(db)
        voucher_id, code = _voucher(db, tenant)
        support = make_operator(db, tenant, "support")
        with browser(db) as client:
            sign_in(client, support.email)
            answer = client.post(f"/console/vouchers/{voucher_id}/disable", data={})
        assert answer.status_code == 403
        assert vouchers.get_voucher(db, tenant.caller, code).voucher.state == "ACTIVE"


class TestBoundaries:
    def test_another_tenants_voucher_is_a_plain_404(self, db: Database) -> None:
        voucher_id, code = _voucher(db, Tenant(db))
        stranger = make_operator(db, Tenant(db), "admin")
        with browser(db) as client:
            csrf = sign_in(client, stranger.email)
            page = client.get(f"/console/vouchers/{voucher_id}")
            acted = client.post(f"/console/vouchers/{voucher_id}/disable", data={"csrf": csrf})
            found = client.post("/console/vouchers/find", data={"csrf": csrf, "q": code})
        assert page.status_code == 404
        assert acted.status_code == 404
        assert "no voucher with this code" in found.text

    def test_a_code_in_the_url_is_not_looked_up(self, db: Database) -> None:
        tenant = Tenant(db)
        _, code = _voucher(db, tenant)
        admin = make_operator(db, tenant)
        with browser(db) as client:
            sign_in(client, admin.email)
            assert client.get(f"/console/vouchers/{code}").status_code == 404

    def test_a_cashier_gets_403_on_lookup_pages(self, db: Database) -> None:
        cashier = make_operator(db, Tenant(db), "cashier")
        with browser(db) as client:
            sign_in(client, cashier.email)
            assert client.get("/console/vouchers").status_code == 403
            assert client.get("/console/customers").status_code == 403


class TestRedemptions:
    def test_a_redemption_is_rolled_back_with_a_reason(self, db: Database) -> None:
        tenant = Tenant(db)
        _, code = _voucher(db, tenant)
        redeemed = make_redemption(db, tenant, code=code, amount=500)
        support = make_operator(db, tenant, "support")
        with browser(db) as client:
            csrf = sign_in(client, support.email)
            listed = client.get("/console/redemptions")
            assert code not in listed.text
            assert "€5.00" in listed.text
            client.post(
                f"/console/redemptions/{redeemed.redemption.id}/rollback",
                data={"csrf": csrf, "reason": "wrong till"},
            )
        assert vouchers.get_voucher(db, tenant.caller, code).voucher.balance == 2000
        events = vouchers.list_events(db, tenant.caller, code)
        assert events[-1].actor == support.id


class TestCustomers:
    def test_find_and_erase_a_customer(self, db: Database) -> None:
        tenant = Tenant(db)
        _, code = _voucher(db, tenant)
        body = PublishRequest.model_validate(
            {"voucher": code, "customer": {"source_id": "c-9", "email": "zoe@x.example"}}
        )
        publish.publish(db, tenant.caller, body)
        manager = make_operator(db, tenant, "manager")
        with browser(db) as client:
            csrf = sign_in(client, manager.email)
            listed = client.get("/console/customers?q=zoe")
            link = re.search(r'href="/console/customers/([^"]+)"', listed.text)
            assert link
            page = client.get(f"/console/customers/{link.group(1)}")
            assert "zoe@x.example" in page.text
            assert code not in page.text
            erased = client.post(
                f"/console/customers/{link.group(1)}/erase", data={"csrf": csrf, "reason": "asked"}
            )
        assert "Erased." in erased.text
        assert "zoe@x.example" not in erased.text


class TestHeaders:
    def test_pages_are_not_cached_framed_or_scripted_from_elsewhere(self, db: Database) -> None:
        with browser(db) as client:
            page = client.get("/console/sign-in")
            script = client.get("/console/static/htmx.min.js")
        assert page.headers["cache-control"] == "no-store"
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert script.status_code == 200
        assert script.text.startswith("var htmx")


class TestVoucherPage:
    def test_ledger_preview_and_a_resend_naming_the_operator(self, db: Database) -> None:
        tenant = Tenant(db)
        voucher_id, code = _voucher(db, tenant)
        make_redemption(db, tenant, code=code, amount=500)
        configure(db, tenant, email={"host": "mail.example", "from_address": "v@shop.example"})
        asked = delivery.deliver_voucher(
            db,
            tenant.caller,
            voucher_id,
            DeliveryRequest.model_validate({"channel": "email", "recipient": "zoe@x.example"}),
        )
        _finish(db, asked.delivery.id)
        support = make_operator(db, tenant, "support")
        with browser(db) as client:
            csrf = sign_in(client, support.email)
            client.post(
                f"/console/vouchers/{voucher_id}/resend",
                data={"csrf": csrf, "delivery": asked.delivery.id},
            )
            page = client.get(f"/console/vouchers/{voucher_id}")
        assert page.status_code == 200
        ledger = page.text[page.text.index('id="ledger"') :]
        ledger = ledger[: ledger.index("</table>")]
        assert "issue" in ledger
        assert "redemption" in ledger
        assert "-€5.00" in ledger
        assert "€15.00" in ledger  # the balance after the redemption
        preview = page.text[page.text.index('id="page-preview"') :]
        assert "Gift card" in preview[: preview.index("</section>")]
        rows = page.text[page.text.index('id="deliveries"') :]
        rows = rows[: rows.index("</table>")]
        assert ">resend<" in rows
        assert support.email in rows  # who asked for the resend
        resent = delivery.list_voucher_deliveries(db, tenant.caller, voucher_id)[0]
        assert resent.delivery.origin == "resend"
        assert resent.events[0].actor == support.id

    def test_an_unknown_campaign_in_the_filter_is_named_on_the_form(self, db: Database) -> None:
        tenant = Tenant(db)
        _voucher(db, tenant)
        support = make_operator(db, tenant, "support")
        with browser(db) as client:
            sign_in(client, support.email)
            page = client.get("/console/vouchers?campaign=No+Such+Campaign")
        assert page.status_code == 422
        assert 'id="e-campaign"' in page.text
        assert 'value="No Such Campaign"' in page.text


def _finish(db: Database, delivery_id: str) -> None:
    """The delivery sent, as a worker would leave it (the resend needs a finished one)."""
    from sqlalchemy import update

    from voucherd.delivery.models import Delivery

    with db.unit_of_work() as session:
        session.execute(update(Delivery).where(Delivery.id == delivery_id).values(state="SENT"))
        session.commit()
