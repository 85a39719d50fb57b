"""The public voucher page and its images, over HTTP, on SQLite and PostgreSQL.

The page is read back with an HTML parser and the barcode is decoded from the SVG with an
independent Code 128 decoder (tests/support/pages.py), so these tests see what a holder's phone
and a till's scanner would.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from tests.factories.campaigns import make_campaign
from tests.factories.redemptions import make_redemption
from tests.factories.tenants import Tenant
from tests.factories.vouchers import issue
from tests.support.clock import FakeClock
from tests.support.pages import ParsedPage, decode_code128, modules_of_svg_path
from voucherd.app import create_app
from voucherd.config import Settings
from voucherd.db.engine import Database, make_engine
from voucherd.vouchers import service as vouchers
from voucherd.vouchers.schemas import VoucherRecord

SVG_NS = "{http://www.w3.org/2000/svg}"


def _url(record: VoucherRecord, suffix: str = "") -> str:
    return f"/v/{record.voucher.public_token}{suffix}"


def _page(client: TestClient, record: VoucherRecord) -> ParsedPage:
    response = client.get(_url(record))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    return ParsedPage(response.text)


def _gift(db: Database, tenant: Tenant, **campaign: Any) -> VoucherRecord:
    made = make_campaign(db, tenant, type="GIFT", currency="EUR", default_value=5000, **campaign)
    return issue(db, tenant, made)


def _assert_scannable(page: ParsedPage, code: str) -> None:
    assert "svg" in page.by_id["barcode"].children
    assert "svg" in page.by_id["qr"].children
    assert "".join(page.text_of("code").split()) == code  # shown in groups (issue 15)
    assert "banner" not in page.by_id


def _assert_not_scannable(page: ParsedPage, code: str) -> None:
    """A voucher that cannot be used shows its code (for the helpdesk) but nothing to scan."""
    assert "".join(page.text_of("code").split()) == code  # shown in groups (issue 15)
    assert "barcode" not in page.by_id
    assert "qr" not in page.by_id
    assert not page.tags("svg")


class TestValues:
    def test_an_active_gift_card_shows_code_balance_expiry_and_both_symbols(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        record = _gift(
            db,
            tenant,
            locale="en-GB",
            timezone="Europe/London",
            expiration_date="2026-06-20T22:59:59Z",
        )
        page = _page(api, record)
        _assert_scannable(page, record.voucher.code)
        assert page.text_of("value") == "Balance €50.00"
        assert page.text_of("validity") == "Expires 20 Jun 2026"
        assert page.tags("h1")[0].content == "Gift card"

    def test_a_partly_redeemed_gift_card_shows_what_is_left_of_what(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        record = _gift(db, tenant)
        make_redemption(db, tenant, code=record.voucher.code, amount=1250)
        page = _page(api, record)
        assert page.text_of("value") == "Balance €37.50 of €50.00"
        _assert_scannable(page, record.voucher.code)

    def test_money_and_dates_follow_the_campaigns_locale_and_time_zone(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        record = _gift(
            db,
            tenant,
            locale="de-DE",
            timezone="Europe/Berlin",
            expiration_date="2026-06-20T22:59:59Z",
        )
        page = _page(api, record)
        assert page.text_of("value") == "Guthaben 50,00\xa0€"
        assert page.text_of("validity") == "Gültig bis 21.06.2026, 00:59"

    def test_a_cash_voucher_shows_its_value(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        campaign = make_campaign(
            db, tenant, type="CASH", currency="GBP", default_value=2000, locale="en-GB"
        )
        page = _page(api, issue(db, tenant, campaign))
        assert page.text_of("value") == "Value £20.00"
        assert page.tags("h1")[0].content == "Cash voucher"

    def test_a_loyalty_card_shows_points_in_the_locales_digits(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        campaign = make_campaign(db, tenant, type="LOYALTY", default_value=1200, locale="de-DE")
        page = _page(api, issue(db, tenant, campaign))
        assert page.text_of("value") == "Punkte 1.200"

    @pytest.mark.parametrize(
        ("discount", "currency", "shown"),
        [
            ({"type": "PERCENT", "percent_off": 12.5}, None, "12.5% off"),
            (
                {"type": "PERCENT", "percent_off": 10, "amount_limit": 500},
                "EUR",
                "10% off, up to €5.00",
            ),
            ({"type": "AMOUNT", "amount_off": 750}, "GBP", "£7.50 off"),
            ({"type": "FIXED", "fixed_amount": 999}, "USD", "Pay only $9.99"),
            ({"type": "UNIT", "unit_off": 2, "unit_type": "Coffee"}, None, "2 × Coffee free"),
        ],
    )
    def test_a_discount_voucher_says_what_it_takes_off(
        self,
        api: TestClient,
        db: Database,
        tenant: Tenant,
        discount: dict[str, Any],
        currency: str | None,
        shown: str,
    ) -> None:
        campaign = make_campaign(db, tenant, type="DISCOUNT", discount=discount, currency=currency)
        record = issue(db, tenant, campaign)
        page = _page(api, record)
        assert page.text_of("value") == f"Discount {shown}"
        _assert_scannable(page, record.voucher.code)

    def test_a_voucher_without_expiry_says_so(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        assert _page(api, _gift(db, tenant)).text_of("validity") == "No expiry date"

    def test_a_voucher_not_valid_yet_says_from_when(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        record = _gift(db, tenant, start_date="2026-07-01T09:00:00Z", timezone="UTC")
        page = _page(api, record)
        assert page.text_of("validity") == "Valid from Jul 1, 2026, 9:00\u202fAM No expiry date"
        _assert_scannable(page, record.voucher.code)


class TestBanners:
    def test_a_cancelled_voucher_says_so_and_offers_nothing_to_scan(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        record = _gift(db, tenant)
        vouchers.cancel_voucher(db, tenant.caller, record.voucher.id, "lost")
        page = _page(api, record)
        banner = page.by_id["banner"]
        assert banner.attrs["data-state"] == "CANCELLED"
        assert banner.attrs["role"] == "alert"
        assert banner.content == "This voucher has been cancelled and can no longer be used."
        assert "validity" not in page.by_id  # its dates no longer matter
        _assert_not_scannable(page, record.voucher.code)

    def test_a_used_up_voucher_says_so(self, api: TestClient, db: Database, tenant: Tenant) -> None:
        record = _gift(db, tenant)
        make_redemption(db, tenant, code=record.voucher.code, amount=5000)
        page = _page(api, record)
        assert page.by_id["banner"].attrs["data-state"] == "REDEEMED"
        assert page.text_of("banner") == "This voucher has been used up."
        assert page.text_of("value") == "Balance €0.00 of €50.00"
        _assert_not_scannable(page, record.voucher.code)

    def test_an_expired_voucher_says_when_it_expired(
        self, api: TestClient, db: Database, tenant: Tenant, clock: FakeClock
    ) -> None:
        record = _gift(db, tenant, timezone="UTC", expiration_date="2026-06-20T23:59:59Z")
        assert "banner" not in _page(api, record).by_id
        clock.advance(days=6)
        page = _page(api, record)
        assert page.by_id["banner"].attrs["data-state"] == "EXPIRED"
        assert page.text_of("banner") == "This voucher expired on Jun 20, 2026."
        assert "validity" not in page.by_id  # the banner already says when
        _assert_not_scannable(page, record.voucher.code)

    def test_a_disabled_voucher_is_on_hold_and_comes_back(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        record = _gift(db, tenant)
        vouchers.disable_voucher(db, tenant.caller, record.voucher.id)
        page = _page(api, record)
        assert page.by_id["banner"].attrs["data-state"] == "DISABLED"
        assert "Please keep it" in page.text_of("banner")
        _assert_not_scannable(page, record.voucher.code)
        vouchers.enable_voucher(db, tenant.caller, record.voucher.id)
        _assert_scannable(_page(api, record), record.voucher.code)

    def test_a_voucher_of_a_switched_off_campaign_is_on_hold(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        campaign = make_campaign(db, tenant, type="GIFT")
        record = issue(db, tenant, campaign)
        response = api.patch(
            f"/api/v1/campaigns/{campaign.id}", headers=tenant.headers, json={"active": False}
        )
        assert response.status_code == 200, response.text
        assert _page(api, record).by_id["banner"].attrs["data-state"] == "DISABLED"


class TestHolderAndCampaignContent:
    def test_an_id_checked_voucher_shows_the_holders_details(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        campaign = make_campaign(db, tenant, type="CASH", currency="GBP", default_value=2000)
        holder = {
            "name": "Ada Lovelace",
            "address": "12 St James's Square\nLondon",
            "postcode": "SW1Y 4JH",
        }
        record = issue(db, tenant, campaign, holder=holder)
        page = _page(api, record)
        block = page.by_id["holder"]
        assert [e.content for e in page.tags("dt")] == ["Name", "Address", "Post code"]
        assert [e.content for e in page.tags("dd")] == [
            "Ada Lovelace",
            "12 St James's Square London",
            "SW1Y 4JH",
        ]
        assert "check these details against the holder's ID" in block.content
        assert "12 St James's Square\nLondon" in page.tags("dd")[1].text

    def test_a_voucher_without_an_id_check_shows_no_holder(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        assert "holder" not in _page(api, _gift(db, tenant)).by_id

    def test_help_text_and_store_finder_are_shown(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        record = _gift(
            db,
            tenant,
            help_text="Show this at any till.\nHelp? 0800 310 0000",
            store_finder_url="https://shops.example/find?brand=acme",
        )
        page = _page(api, record)
        assert page.text_of("help") == "Help Show this at any till. Help? 0800 310 0000"
        link = page.by_id["store-finder"]
        assert link.tag == "a"
        assert link.attrs["href"] == "https://shops.example/find?brand=acme"
        assert set(link.attrs["rel"].split()) == {"noreferrer", "noopener"}
        assert link.content == "Find a store"

    def test_no_help_and_no_store_finder_when_the_campaign_has_none(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        page = _page(api, _gift(db, tenant))
        assert "help" not in page.by_id
        assert "store-finder" not in page.by_id
        assert not page.tags("a")


class TestEscaping:
    def test_markup_in_any_shown_text_is_text_not_markup(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        script = "<script>alert(1)</script>"
        campaign = make_campaign(
            db,
            tenant,
            name='Spring "><script>alert(2)</script>',
            type="CASH",
            currency="EUR",
            default_value=1000,
            help_text=f"Call us {script} & <b>now</b>",
            store_finder_url='https://shops.example/?q="><script>alert(3)</script>',
        )
        record = issue(
            db,
            tenant,
            campaign,
            code="<i>X</i>&amp;",
            holder={
                "name": "<img src=x onerror=alert(4)>",
                "address": "</dd><script>alert(5)</script>",
                "postcode": "' onmouseover='x",
            },
        )
        response = api.get(_url(record))
        page = ParsedPage(response.text)
        assert not page.tags("script")
        assert not page.tags("img")
        assert not page.tags("b")
        assert not page.tags("i")
        assert [e.tag for e in page.elements if any(a.startswith("on") for a in e.attrs)] == []
        assert page.text_of("help") == f"Help Call us {script} & <b>now</b>"
        assert page.text_of("code") == "<i>X</i>&amp;"
        assert [e.content for e in page.tags("dd")] == [
            "<img src=x onerror=alert(4)>",
            "</dd><script>alert(5)</script>",
            "' onmouseover='x",
        ]
        assert page.by_id["store-finder"].attrs["href"] == (
            'https://shops.example/?q="><script>alert(3)</script>'
        )
        assert 'Spring "><script>alert(2)</script>' in page.tags("title")[0].content
        assert "<script" not in response.text


class TestImages:
    def test_the_barcode_is_an_svg_a_scanner_reads_as_the_code(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        record = _gift(db, tenant)
        response = api.get(_url(record, "/barcode.svg"))
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/svg+xml"
        root = ET.fromstring(response.content)
        assert root.tag == f"{SVG_NS}svg"
        _, _, width, height = (int(n) for n in root.attrib["viewBox"].split())
        path = root.find(f"{SVG_NS}path")
        assert path is not None
        runs = modules_of_svg_path(path.attrib["d"])
        assert decode_code128(runs) == record.voucher.code
        # Ten modules of white each side (ISO/IEC 15417), and bars as tall as a third of it.
        first_bar = int(path.attrib["d"][1:].split(" ")[0])
        assert first_bar == 10
        assert width - (first_bar + sum(runs)) == 10
        assert height >= width / 4
        # Sized in whole pixels per module, scaled as a whole (no squashing).
        assert int(root.attrib["width"]) == 2 * width
        assert int(root.attrib["height"]) == 2 * height

    @pytest.mark.parametrize("code", ["ABC-123", "0123456789", "x~y!z{1}", "20260615AB"])
    def test_codes_of_every_printable_shape_survive_the_barcode(
        self, api: TestClient, db: Database, tenant: Tenant, code: str
    ) -> None:
        campaign = make_campaign(db, tenant, type="GIFT")
        record = issue(db, tenant, campaign, code=code)
        root = ET.fromstring(api.get(_url(record, "/barcode.svg")).content)
        path = root.find(f"{SVG_NS}path")
        assert path is not None
        assert decode_code128(modules_of_svg_path(path.attrib["d"])) == code

    def test_the_qr_code_is_an_svg_of_the_code(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        record = _gift(db, tenant)
        response = api.get(_url(record, "/qr.svg"))
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/svg+xml"
        root = ET.fromstring(response.content)
        assert root.tag == f"{SVG_NS}svg"
        _, _, width, height = (int(n) for n in root.attrib["viewBox"].split())
        assert width == height == int(root.attrib["width"])
        # A version 1 symbol (21 modules) holds 13 characters; 4 modules of quiet zone each side.
        assert width == 5 * (21 + 8)
        assert root.findall(f".//{SVG_NS}path")

    def test_the_images_on_the_page_are_the_ones_served(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        record = _gift(db, tenant)
        html = api.get(_url(record)).text
        barcode = api.get(_url(record, "/barcode.svg")).text
        qr = api.get(_url(record, "/qr.svg")).text
        assert barcode in html
        assert qr in html

    def test_the_voucher_object_links_its_page_and_images_like_voucherify(
        self, api: TestClient, db: Database, tenant: Tenant, settings: Settings
    ) -> None:
        record = _gift(db, tenant)
        shown = api.get(f"/api/v1/vouchers/{record.voucher.id}", headers=tenant.headers).json()
        base = settings.public_base_url
        assert shown["page_url"] == f"{base}{_url(record)}"
        assert shown["assets"] == {
            "qr": {"url": f"{base}{_url(record, '/qr.svg')}"},
            "barcode": {"url": f"{base}{_url(record, '/barcode.svg')}"},
        }
        for asset in shown["assets"].values():
            response = api.get(asset["url"].removeprefix(base))
            assert response.status_code == 200
            assert response.headers["content-type"] == "image/svg+xml"


WRONG_LINKS = [
    "/v/AAAAAAAAAAAAAAAAAAAA",  # the right shape, nobody's
    "/v/" + "A" * 33,  # longer than any token
    "/v/" + "A" * 500,
    "/v/abc%20def",
    "/v/%C3%A9t%C3%A9",
    "/v/'%3B--",
    "/v/..%2F..%2Fetc",
    "/v/",
    "/v/AAAAAAAAAAAAAAAAAAAA/",
    "/v/AAAAAAAAAAAAAAAAAAAA/barcode.svg",
    "/v/AAAAAAAAAAAAAAAAAAAA/qr.svg",
    "/v/AAAAAAAAAAAAAAAAAAAA/other",
    "/v/a/b/c",
]


class TestWrongLinks:
    def test_every_wrong_link_is_the_same_plain_404(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        record = _gift(db, tenant)
        token = record.voucher.public_token
        links = [
            *WRONG_LINKS,
            f"/v/{token[:-1]}",  # one character short of a real token
            f"/v/{token.swapcase()}",  # tokens are case-sensitive
            f"/v/{token}x",
            f"/v/{token}/extra",
        ]
        answers = [api.get(link) for link in links]
        assert {a.status_code for a in answers} == {404}
        assert len({a.content for a in answers}) == 1, "the 404 must not differ by link"
        assert len({a.headers["content-type"] for a in answers}) == 1
        body = answers[0].text
        assert "This voucher link is not valid" in body
        assert token not in body
        assert answers[0].headers["cache-control"] == "no-store"
        assert answers[0].headers["referrer-policy"] == "no-referrer"

    def test_a_token_is_not_a_code_nor_an_id(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        record = _gift(db, tenant)
        for other in (record.voucher.code, record.voucher.id):
            assert api.get(f"/v/{other}").status_code == 404


class TestHeadersAndPrivacy:
    def test_the_page_keeps_its_token_to_itself_and_runs_no_script(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        record = _gift(db, tenant, store_finder_url="https://shops.example/")
        response = api.get(_url(record))
        headers = response.headers
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cache-control"] == "no-store"
        assert headers["x-robots-tag"] == "noindex, nofollow"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        policy = dict(
            directive.strip().split(" ", 1)
            for directive in headers["content-security-policy"].split(";")
        )
        assert policy["default-src"] == "'none'"
        assert "script-src" not in policy  # so default-src 'none' forbids every script
        assert policy["frame-ancestors"] == "'none'"
        # The inline stylesheet is allowed by its hash, and nothing else is.
        style = re.search(r"<style>(.*?)</style>", response.text, re.DOTALL)
        assert style is not None
        digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
        assert policy["style-src"] == f"'sha256-{digest}'"
        page = ParsedPage(response.text)
        assert not page.tags("script")
        viewport = [m for m in page.tags("meta") if m.attrs.get("name") == "viewport"]
        assert viewport[0].attrs["content"] == "width=device-width, initial-scale=1"

    def test_images_are_private_and_cannot_run_anything(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        record = _gift(db, tenant)
        for suffix in ("/barcode.svg", "/qr.svg"):
            headers = api.get(_url(record, suffix)).headers
            assert headers["cache-control"] == "private, max-age=300"
            assert headers["content-security-policy"] == "default-src 'none'; sandbox"
            assert headers["referrer-policy"] == "no-referrer"
            assert headers["x-content-type-options"] == "nosniff"

    def test_the_page_is_one_query(self, api: TestClient, db: Database, tenant: Tenant) -> None:
        record = _gift(db, tenant)
        with _statements(db) as seen:
            _page(api, record)
        assert [
            s.split()[0].upper()
            for s in seen
            if not s.upper().startswith(("SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN"))
        ] == ["SELECT"]

    def test_nothing_about_the_voucher_is_logged(
        self, api: TestClient, db: Database, tenant: Tenant, caplog: pytest.LogCaptureFixture
    ) -> None:
        record = _gift(db, tenant, help_text="help")
        caplog.set_level(logging.DEBUG)
        for suffix in ("", "/barcode.svg", "/qr.svg"):
            api.get(_url(record, suffix))
        api.get(f"/v/{record.voucher.public_token[:-1]}")
        logged = _server_log(caplog)
        assert record.voucher.public_token not in logged
        assert record.voucher.public_token[:-1] not in logged
        assert record.voucher.code not in logged


def test_an_unreachable_database_is_a_503_page_that_logs_no_token(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Not a storage test: no database answers at all (port 9 is discard, nothing listens)."""
    url = "postgresql://postgres@127.0.0.1:9/voucherd?connect_timeout=2"
    broken = Database(make_engine(url), settings=settings)
    token = "AAAAAAAAAAAAAAAAAAAA"
    try:
        with TestClient(create_app(settings, db=broken), raise_server_exceptions=False) as client:
            caplog.set_level(logging.DEBUG)
            response = client.get(f"/v/{token}")
    finally:
        broken.dispose()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "Please try again" in response.text
    assert token not in _server_log(caplog)
    assert "database unavailable" in _server_log(caplog)


def _server_log(caplog: pytest.LogCaptureFixture) -> str:
    """What the app logged; the test's own HTTP client logs each URL it requests."""
    return "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''}"
        for r in caplog.records
        if not r.name.startswith("httpx")
    )


@contextmanager
def _statements(db: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(str(args[2]).strip())

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
