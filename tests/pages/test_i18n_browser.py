"""Each language's voucher page in headless Chromium, on a desktop and a 390 px phone.

The screenshots land in build/screenshots/ for a person to look at (a test cannot judge whether
a translation fits its box); the test checks what the browser parsed and that it drew something.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.factories.campaigns import make_campaign
from tests.factories.redemptions import make_redemption
from tests.factories.tenants import Tenant
from tests.factories.vouchers import issue
from tests.support.browser import DESKTOP, PHONE, browse
from tests.support.languages import LABELS, LOCALE_OF
from tests.support.pages import ParsedPage, read_png
from tests.support.serving import serving
from voucherd.db.engine import Database
from voucherd.pages.i18n import LANGUAGES
from voucherd.vouchers import service as vouchers

SHOTS = Path(__file__).parent.parent.parent / "build" / "screenshots"


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


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_page_in_each_language_in_chromium(
    chromium: str, site: Site, tmp_path: Path, backend: str, language: str
) -> None:
    campaign = make_campaign(
        site.db,
        site.tenant,
        name=f"Spring {language}",
        type="GIFT",
        currency="EUR",
        default_value=5000,
        locale=LOCALE_OF[language],
        timezone="Europe/Amsterdam",
        expiration_date="2027-06-30T21:59:59Z",
        help_text="0800 310 0000",
        store_finder_url="https://shops.example/find",
    )
    record = issue(site.db, site.tenant, campaign, holder={"name": "Ada Lovelace"})
    make_redemption(site.db, site.tenant, code=record.voucher.code, amount=1250)
    url = f"{site.base_url}/v/{record.voucher.public_token}"

    # One page load gives the DOM and the phone's screenshot: one Chromium fewer per language.
    shots = {"desktop": tmp_path / "desktop.png", "phone": tmp_path / "phone.png"}
    # The two browsers side by side: most of a headless Chromium's start is waiting on itself.
    with ThreadPoolExecutor(max_workers=2) as pool:
        phone = pool.submit(
            browse,
            chromium,
            tmp_path / "profile-phone",
            url,
            "--dump-dom",
            f"--screenshot={shots['phone']}",
        )
        desktop = pool.submit(
            browse,
            chromium,
            tmp_path / "profile-desktop",
            url,
            f"--screenshot={shots['desktop']}",
            size=DESKTOP,
        )
        dump = phone.result()
        desktop.result()
    dom = ParsedPage(dump)

    assert dom.tags("html")[0].attrs["lang"] == LOCALE_OF[language]
    text = " ".join(e.content for e in dom.elements if e.tag in ("h1", "p", "li", "h2", "a"))
    for label in LABELS[language][:2] + LABELS[language][3:]:
        assert label in text, (language, label)
    for name, size in (("desktop", DESKTOP), ("phone", PHONE)):
        shot = shots[name]
        image = read_png(shot.read_bytes())
        assert (image.width, image.height) == size
        assert len({pixel for row in image.rows for pixel in row}) > 50
        SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, SHOTS / f"page-{language}-{name}-{backend}.png")


def test_a_cancelled_voucher_does_not_show_its_value_as_spendable(
    chromium: str, site: Site, tmp_path: Path, backend: str
) -> None:
    campaign = make_campaign(
        site.db, site.tenant, type="GIFT", currency="EUR", default_value=5000, locale="de-DE"
    )
    record = issue(site.db, site.tenant, campaign)
    vouchers.cancel_voucher(site.db, site.tenant.caller, record.voucher.id, "lost")
    url = f"{site.base_url}/v/{record.voucher.public_token}"

    shot = tmp_path / "cancelled.png"
    dom = ParsedPage(
        browse(
            chromium, tmp_path / "profile", url, "--dump-dom", f"--screenshot={shot}", size=PHONE
        )
    )

    assert dom.by_id["value"].attrs["class"] == "figure spent"
    assert "barcode" not in dom.by_id
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, SHOTS / f"page-de-cancelled-phone-{backend}.png")
