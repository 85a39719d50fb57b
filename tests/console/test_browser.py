"""Each role's journey through the console in a real headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium), against uvicorn serving a fresh database with the
in-process worker on, so mints and e-mails really run. Screenshots of every main page at
1280 and 390 px go to a folder printed at the start of the run.

Without Chromium the tests skip, unless VOUCHERD_REQUIRE_CHROMIUM=1 makes that a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant
from tests.factories.vouchers import issue
from tests.support.console import PASSWORD, make_operator
from tests.support.databases import Template
from tests.support.delivery import SMTP_PASSWORD, SMTP_USER, SmtpServer, configure
from tests.support.serving import serving
from voucherd.config import Settings
from voucherd.console.schemas import OperatorView
from voucherd.db.engine import Database, make_engine
from voucherd.publications import service as publications
from voucherd.publications.schemas import PublicationFilters
from voucherd.vouchers import service as vouchers

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}
# A guard against a hung server, not a measurement: httpx's 5 s default is short for the first
# requests to a server whose worker is minting while a loaded CI machine runs other tests.
HTTP_TIMEOUT = 60


@pytest.fixture(scope="module")
def screens(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    folder = tmp_path_factory.mktemp("console-screenshots")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if capture is not None and reporter is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\nconsole screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """One Chromium for the module's journeys: starting one (and its chromedriver) costs more
    than most of a journey's pages. Each journey's site is a new origin (its own port), and
    ``driver`` clears cookies, the only state origins on 127.0.0.1 share."""
    if CHROMIUM is None or DRIVER is None:
        message = "chromium and chromium-driver are needed; browser tests skipped"
        if os.environ.get("VOUCHERD_REQUIRE_CHROMIUM") == "1":
            pytest.fail(message + ", but VOUCHERD_REQUIRE_CHROMIUM=1 forbids skipping them")
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--force-device-scale-factor=1", "--hide-scrollbars", "--no-first-run",
                 "--disable-extensions", "--disable-background-networking"):  # fmt: skip
        options.add_argument(flag)
    options.add_argument("--window-size=1280,900")
    chrome = webdriver.Chrome(options=options, service=Service(DRIVER))
    chrome.implicitly_wait(0)
    try:
        yield chrome
    finally:
        chrome.quit()


@pytest.fixture
def driver(browser: WebDriver) -> WebDriver:
    """The module's Chromium as a journey finds a new one: a blank page, no cookies (cookies are
    per host, not per port: another journey's session would reach this site), desktop width."""
    browser.get("about:blank")
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})
    browser.set_window_size(*WIDTHS["desktop"])
    return browser


@pytest.fixture
def settings(smtp: SmtpServer) -> Settings:
    return Settings(
        database_url="sqlite:///unused.db",
        public_base_url="http://127.0.0.1",
        key_cache_seconds=0,
        smtp_ca_file=smtp.ca_file,
        in_process_worker=True,
        worker_poll_seconds=0.2,
        delivery_timeout_seconds=5,
    )


@dataclass
class Site:
    url: str
    db: Database


@pytest.fixture
def site(template: Template, settings: Settings) -> Iterator[Site]:
    url = template.copy()
    db = Database(
        make_engine(url, pool_size=8),
        settings=settings.model_copy(update={"database_url": url}),
    )
    try:
        with serving(db, lifespan="auto") as base:
            yield Site(base, db)
    finally:
        db.dispose()
        template.drop(url)


def _wait(driver: WebDriver, check: Callable[[WebDriver], object], seconds: float = 30) -> None:
    # htmx swaps parts of the page while a check reads them: a stale element is "not yet".
    ignored = (NoSuchElementException, StaleElementReferenceException)
    WebDriverWait(driver, seconds, poll_frequency=0.1, ignored_exceptions=ignored).until(check)


def _text(driver: WebDriver, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


# Resolves once the page has drawn two frames: the first after a resize may still be at the old
# size, the second is at the new one.
_TWO_FRAMES = """
const done = arguments[arguments.length - 1];
requestAnimationFrame(() => requestAnimationFrame(() => done(window.innerWidth)));
"""


def _resize(driver: WebDriver, width: int, height: int) -> None:
    """Resize and wait until the page is laid out and drawn at ``width`` (not a fixed pause:
    quick on an idle machine, still right on a loaded one)."""
    driver.set_window_size(width, height)
    _wait(driver, lambda d: d.execute_async_script(_TWO_FRAMES) == width)


def _shoot(driver: WebDriver, screens: Path, name: str) -> None:
    """The whole page at desktop and phone width."""
    for label, (width, height) in WIDTHS.items():
        _resize(driver, width, height)
        tall = driver.execute_script("return document.documentElement.scrollHeight")
        _resize(driver, width, min(max(height, int(tall) + 140), 5000))
        driver.save_screenshot(str(screens / f"{name}-{label}-{width}.png"))
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 1, f"{name} at {width}px is wider than the screen by {overflow}px"
    driver.set_window_size(*WIDTHS["desktop"])


def _sign_in(driver: WebDriver, site: Site, operator: OperatorView) -> None:
    driver.get(f"{site.url}/console/sign-in")
    driver.find_element(By.ID, "f-email").send_keys(operator.email)
    driver.find_element(By.ID, "f-password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "#sign-in button").click()
    _wait(driver, lambda d: d.find_elements(By.ID, "me"))


def _fill(driver: WebDriver, field_id: str, value: str) -> None:
    box = driver.find_element(By.ID, field_id)
    box.clear()
    box.send_keys(value)


def test_an_admin_creates_mints_and_distributes(
    driver: WebDriver, site: Site, screens: Path, smtp: SmtpServer
) -> None:
    tenant = Tenant(site.db)
    admin = make_operator(site.db, tenant, "admin")
    _sign_in(driver, site, admin)
    assert "/console/overview" in driver.current_url
    _shoot(driver, screens, "overview")

    driver.get(f"{site.url}/console/campaigns/new")
    _fill(driver, "f-name", "Summer gift cards")
    _fill(driver, "f-default_value", "25.00")
    _fill(driver, "f-pattern", "SUMMER-####-####")
    _wait(driver, lambda d: _text(d, "#sample-code").startswith("SUMMER-"))
    _fill(driver, "f-sms", "Hi {{ customer_name }}, {{ value }}: {{ code }}")
    _wait(driver, lambda d: _text(d, "#sms-preview").startswith("Hi Ada Lovelace, €25.00: SUMMER-"))
    _shoot(driver, screens, "campaign-new")
    driver.find_element(By.ID, "create-campaign").click()
    _wait(driver, lambda d: d.find_elements(By.ID, "campaign-name"))
    campaign_url = driver.current_url

    _fill(driver, "f-count", "1000")
    driver.find_element(By.ID, "mint").click()
    _wait(driver, lambda d: d.find_elements(By.ID, "op-bar"))
    _wait(driver, lambda d: _text(d, "#op-status") == "Completed", seconds=120)
    bar = driver.find_element(By.ID, "op-bar")
    assert bar.get_attribute("value") == bar.get_attribute("max") == "1000"
    _shoot(driver, screens, "operation")

    driver.get(campaign_url)
    assert _text(driver, "#voucher-count") == "1,000"
    _fill(driver, "f-recipients", "ann@x.example,,Ann\nbob@x.example,,Bob\ncy@x.example,,Cy")
    driver.find_element(By.ID, "distribute").click()
    _wait(driver, lambda d: d.find_elements(By.ID, "notice"))
    channels = driver.find_elements(By.CSS_SELECTOR, "#publication-history td.channel")
    assert [c.text for c in channels] == ["Dashboard"] * 3
    codes = driver.find_elements(By.CSS_SELECTOR, "#publication-history a.code")
    assert all(c.text.startswith("SUMMER-") for c in codes)
    assert len({c.text for c in codes}) == 3
    upload = screens / "people.csv"
    upload.write_text('email,phone,name\ndee@x.example,,"Dee, D."\n', encoding="utf-8")
    driver.find_element(By.ID, "f-recipients_file").send_keys(str(upload))
    driver.find_element(By.ID, "distribute").click()
    _wait(driver, lambda d: "Published 1 codes" in _text(d, "#notice"))
    channels = driver.find_elements(By.CSS_SELECTOR, "#publication-history td.channel")
    assert [c.text for c in channels] == ["Dashboard"] * 4
    _shoot(driver, screens, "campaign")
    driver.find_element(By.ID, "export").click()
    _wait(driver, lambda d: _text(d, "#op-status") == "Completed", seconds=120)
    csv = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(document.getElementById('download').href).then(r => r.text()).then(done);"
    )
    assert len([line for line in csv.splitlines() if "SUMMER-" in line]) == 1000
    driver.get(f"{site.url}/console/campaigns")
    _shoot(driver, screens, "campaigns")
    driver.get(f"{site.url}/console/overview")
    assert _text(driver, "#fig-issued") == "1,000"
    assert _text(driver, "#fig-published") == "4"
    _shoot(driver, screens, "overview-after")
    configure(
        site.db,
        tenant,
        email={"host": smtp.host, "port": smtp.port, "security": "starttls",
               "username": SMTP_USER, "password": SMTP_PASSWORD,
               "from_address": "vouchers@shop.example"},
    )  # fmt: skip
    driver.get(f"{site.url}/console/settings")
    assert SMTP_PASSWORD not in driver.page_source
    _fill(driver, "f-test-email", "ops@x.example")
    driver.find_element(By.CSS_SELECTOR, "#test-email button").click()
    _wait(driver, lambda d: "Test email message sent" in _text(d, "#notice"))
    assert [envelope.rcpt_tos for envelope, _ in smtp.messages] == [["ops@x.example"]]
    for page in ("settings", "settings/operators", "settings/keys", "operations", "orders"):
        driver.get(f"{site.url}/console/{page}")
        _shoot(driver, screens, page.replace("/", "-"))
    history = publications.list_publications(
        site.db, tenant.caller, PublicationFilters(), limit=10, cursor=None
    ).items
    assert {p.publication.actor for p in history} == {admin.id}


def test_an_order_progresses_without_a_reload(driver: WebDriver, site: Site, screens: Path) -> None:
    tenant = Tenant(site.db)
    make_campaign(site.db, tenant, name="Cinema", type="GIFT", currency="NZD", default_value=1500)
    client = {"code": "ACME", "name": "Acme", "voucher_types": ["Cinema"]}
    api = f"{site.url}/api/v1"
    post = partial(httpx.post, headers=tenant.headers, timeout=HTTP_TIMEOUT)
    assert post(f"{api}/clients", json=client).status_code == 201
    body = {
        "client": "ACME",
        "reference": "PO-1",
        "items": [{"product": "Cinema", "quantity": 300}],
    }
    order = post(f"{api}/orders", json=body).json()
    manager = make_operator(site.db, tenant, "manager")
    _sign_in(driver, site, manager)
    driver.get(f"{site.url}/console/orders/{order['id']}")
    driver.execute_script("window.__same_page = true;")
    _wait(driver, lambda d: _text(d, "#order-status") == "Completed", seconds=120)
    assert driver.execute_script("return window.__same_page === true;")  # no reload
    assert _text(driver, "#order-minted") == "300"
    _shoot(driver, screens, "order")


def test_support_finds_a_voucher_and_resends_it(
    driver: WebDriver, site: Site, screens: Path, smtp: SmtpServer
) -> None:
    tenant = Tenant(site.db)
    configure(
        site.db,
        tenant,
        email={
            "host": smtp.host,
            "port": smtp.port,
            "security": "starttls",
            "username": SMTP_USER,
            "password": SMTP_PASSWORD,
            "from_address": "vouchers@shop.example",
        },
    )
    campaign = make_campaign(site.db, tenant, type="GIFT", currency="EUR", default_value=3000)
    record = issue(
        site.db, tenant, campaign, delivery={"channel": "email", "recipient": "ann@x.example"}
    )
    code = record.voucher.code
    support = make_operator(site.db, tenant, "support")
    _sign_in(driver, site, support)
    assert "/console/vouchers" in driver.current_url

    typo = code[:-1] + ("A" if code[-1] != "A" else "B")
    _fill(driver, "f-q", typo)
    driver.find_element(By.ID, "find").click()
    _wait(driver, lambda d: d.find_elements(By.ID, "e-q"))
    assert "typo" in _text(driver, "#e-q")
    _shoot(driver, screens, "vouchers-typo")
    _fill(driver, "f-q", code)
    driver.find_element(By.ID, "find").click()
    _wait(driver, lambda d: d.find_elements(By.ID, "voucher-code"))
    assert _text(driver, "#voucher-code") == code
    assert code not in driver.current_url

    page = driver.current_url

    def states(d: WebDriver) -> list[str]:
        d.get(page)
        return [b.text for b in d.find_elements(By.CSS_SELECTOR, "#deliveries [data-delivery]")]

    _wait(driver, lambda d: states(d) == ["SENT"])
    driver.find_element(By.CSS_SELECTOR, "#deliveries button.resend").click()
    _wait(driver, lambda d: d.find_elements(By.ID, "notice"))
    _wait(driver, lambda d: states(d) == ["SENT", "SENT"])
    assert len(smtp.messages) == 2
    assert support.email in _text(driver, "#deliveries tbody tr:first-child td.actor")
    assert _text(driver, "#ledger tbody tr:first-child td.num") == "€30.00"
    assert "Gift card" in _text(driver, "#page-preview")
    _shoot(driver, screens, "voucher")
    driver.get(f"{site.url}/console/deliveries")
    _shoot(driver, screens, "deliveries")
    driver.get(f"{site.url}/console/customers")
    _shoot(driver, screens, "customers")


def test_a_cashier_redeems_once_and_is_kept_out(
    driver: WebDriver, site: Site, screens: Path
) -> None:
    tenant = Tenant(site.db)
    campaign = make_campaign(site.db, tenant, type="GIFT", currency="GBP", default_value=5000)
    holder = {"name": "Ada Lovelace", "address": "12 St James's Square", "postcode": "SW1Y 4JH"}
    record = issue(site.db, tenant, campaign, holder=holder)
    code = record.voucher.code
    cashier = make_operator(site.db, tenant, "cashier")
    _sign_in(driver, site, cashier)
    assert "/console/till" in driver.current_url
    driver.set_window_size(*WIDTHS["phone"])
    _fill(driver, "f-code", code)
    driver.find_element(By.ID, "check").click()
    _wait(driver, lambda d: d.find_elements(By.ID, "worth"))
    assert _text(driver, "#worth") == "£50.00"
    assert "Ada Lovelace" in _text(driver, "#holder")
    _fill(driver, "f-amount", "12.50")
    _shoot(driver, screens, "till-check")
    # A double tap: the same sale submitted twice before the first answer lands.
    driver.execute_script(
        "const f = document.getElementById('redeem-form');"
        "const a = new FormData(f);"
        "const send = () => fetch(f.action, {method: 'POST', body: new URLSearchParams(a)});"
        "window.__both = Promise.all([send(), send()]).then(rs => rs.map(r => r.status));"
    )
    statuses = driver.execute_async_script(
        "const done = arguments[arguments.length - 1]; window.__both.then(done);"
    )
    assert statuses == [200, 200]
    driver.find_element(By.ID, "redeem").click()  # and a third time through the page itself
    _wait(driver, lambda d: d.find_elements(By.ID, "redeemed"))
    assert "already redeemed" in _text(driver, "#redeemed")
    assert "£37.50" in _text(driver, "#redeemed")
    _shoot(driver, screens, "till-redeemed")
    assert vouchers.get_voucher(site.db, tenant.caller, code).voucher.balance == 3750

    driver.get(f"{site.url}/console/campaigns")
    assert _text(driver, "#error-status").startswith("403")
    _shoot(driver, screens, "forbidden")

    stranger = make_operator(site.db, Tenant(site.db), "admin")
    driver.find_element(By.ID, "sign-out").click()
    _wait(driver, lambda d: d.find_elements(By.ID, "sign-in"))
    _shoot(driver, screens, "sign-in")
    _sign_in(driver, site, stranger)
    driver.get(f"{site.url}/console/vouchers/{record.voucher.id}")
    assert _text(driver, "#error-status").startswith("404")
    assert code not in driver.page_source
