"""The voucher page in a real browser: Debian's headless Chromium against the app under uvicorn.

The app runs in a thread on a free 127.0.0.1 port over a fresh database (so the vouchers the test
makes are committed and visible to the server), Chromium loads the page in a phone-sized window,
and the test reads what it rendered: the DOM after parsing, and a screenshot in which it finds
the barcode and decodes it as a till's scanner would.

Without Chromium the tests skip, unless VOUCHERD_REQUIRE_CHROMIUM=1 (CI) makes that a failure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.factories.campaigns import make_campaign
from tests.factories.redemptions import make_redemption
from tests.factories.tenants import Tenant
from tests.factories.vouchers import issue
from tests.support.browser import browse
from tests.support.pages import Image, NotCode128, ParsedPage, decode_code128, read_png, runs_of
from tests.support.serving import serving
from voucherd.db.engine import Database
from voucherd.vouchers import service as vouchers
from voucherd.vouchers.schemas import VoucherRecord

PHONE = (412, 915)  # CSS pixels of a common Android phone


@dataclass
class Site:
    base_url: str
    db: Database
    tenant: Tenant


@pytest.fixture
def site(fresh_database: Callable[..., Database]) -> Iterator[Site]:
    db = fresh_database(pool_size=4)
    tenant = Tenant(db)
    with serving(db) as base_url:
        yield Site(base_url, db, tenant)


def _browse(chromium: str, profile: Path, url: str, *action: str) -> str:
    return browse(chromium, profile, url, *action, size=PHONE, strict_csp=True)


def _dom_and_screenshot(
    chromium: str, tmp_path: Path, url: str, name: str
) -> tuple[ParsedPage, Image]:
    """The DOM after parsing and a screenshot, of one page load: one Chromium, not two."""
    path = tmp_path / f"{name}.png"
    dom = _browse(chromium, tmp_path / f"profile-{name}", url, "--dump-dom", f"--screenshot={path}")
    return ParsedPage(dom), read_png(path.read_bytes())


def _barcodes_in(image: Image) -> set[str]:
    """Every Code 128 symbol a scan line across some row of the screenshot reads."""
    found = set()
    for row in image.rows:
        dark = [(r * 299 + g * 587 + b * 114) < 128_000 for r, g, b in row]
        try:
            found.add(decode_code128(runs_of(dark)))
        except NotCode128:
            continue
    return found


def _assert_not_blank(image: Image) -> None:
    pixels = [pixel for row in image.rows for pixel in row]
    colours = set(pixels)
    not_white = sum(1 for pixel in pixels if pixel != (255, 255, 255))
    assert len(colours) > 50, f"only {len(colours)} colours: a blank or broken page"
    assert not_white > len(pixels) // 20, f"only {not_white} of {len(pixels)} pixels not white"


def _gift_card(site: Site) -> VoucherRecord:
    campaign = make_campaign(
        site.db,
        site.tenant,
        type="GIFT",
        currency="GBP",
        default_value=5000,
        locale="en-GB",
        timezone="Europe/London",
        expiration_date="2027-06-30T22:59:59Z",
        help_text="Show this voucher at the till.\nHelp? 0800 310 0000",
        store_finder_url="https://shops.example/find",
    )
    holder = {
        "name": "Ada Lovelace",
        "address": "12 St James's Square, London",
        "postcode": "SW1Y 4JH",
    }
    record = issue(site.db, site.tenant, campaign, holder=holder)
    make_redemption(site.db, site.tenant, code=record.voucher.code, amount=1250)
    return record


def test_an_active_voucher_in_chromium_shows_code_value_and_a_scannable_barcode(
    chromium: str, site: Site, tmp_path: Path
) -> None:
    record = _gift_card(site)
    url = f"{site.base_url}/v/{record.voucher.public_token}"

    dom, image = _dom_and_screenshot(chromium, tmp_path, url, "active")
    assert "".join(dom.text_of("code").split()) == record.voucher.code
    assert dom.text_of("value") == "Balance £37.50 of £50.00"
    assert "svg" in dom.by_id["barcode"].children
    assert "svg" in dom.by_id["qr"].children
    assert "banner" not in dom.by_id
    assert dom.text_of("holder").startswith("Voucher holder")
    assert dom.by_id["store-finder"].attrs["href"] == "https://shops.example/find"

    assert (image.width, image.height) == PHONE
    _assert_not_blank(image)
    # What the browser drew is a barcode a scanner reads as the voucher's code.
    assert _barcodes_in(image) == {record.voucher.code}


def test_a_cancelled_voucher_in_chromium_shows_the_banner_and_no_barcode(
    chromium: str, site: Site, tmp_path: Path
) -> None:
    record = _gift_card(site)
    vouchers.cancel_voucher(site.db, site.tenant.caller, record.voucher.id, "reported stolen")
    url = f"{site.base_url}/v/{record.voucher.public_token}"

    dom, image = _dom_and_screenshot(chromium, tmp_path, url, "cancelled")
    assert dom.by_id["banner"].attrs["data-state"] == "CANCELLED"
    assert dom.text_of("banner") == "This voucher has been cancelled and can no longer be used."
    assert "".join(dom.text_of("code").split()) == record.voucher.code
    assert "barcode" not in dom.by_id

    _assert_not_blank(image)
    assert _barcodes_in(image) == set()
