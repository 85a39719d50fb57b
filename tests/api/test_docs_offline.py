"""/docs and /redoc work without internet (issue 15): their assets come from the package."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.support.browser import DESKTOP, browse
from tests.support.pages import ParsedPage, read_png
from tests.support.serving import serving
from voucherd.db.engine import Database

ASSET = re.compile(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""")


def asset_urls(html: str) -> list[str]:
    return [url for url in ASSET.findall(html) if not url.startswith("#")]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_every_asset_is_same_origin_and_answers(api: TestClient, page: str) -> None:
    html = api.get(page)
    assert html.status_code == 200

    urls = asset_urls(html.text)

    assert len(urls) >= 2, urls
    for url in urls:
        assert url.startswith("/"), f"{page} loads {url} from elsewhere"
        assert not url.startswith("//"), url
        assert api.get(url).status_code == 200, url


def test_only_the_shipped_assets_are_served(api: TestClient) -> None:
    assert api.get("/docs/assets/swagger-ui.css").headers["content-type"].startswith("text/css")
    assert api.get("/docs/assets/METADATA").status_code == 404
    assert api.get("/docs/assets/..%2F__init__.py").status_code == 404


def test_the_docs_pages_are_not_in_the_openapi_document(api: TestClient) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    assert not [path for path in paths if path.startswith(("/docs", "/redoc"))]


@pytest.fixture
def site(fresh_database: Callable[..., Database]) -> Iterator[str]:
    with serving(fresh_database(pool_size=4)) as base_url:
        yield base_url


SHOTS = Path(__file__).parent.parent.parent / "build" / "screenshots"


def test_swagger_ui_renders_the_operations_offline(
    chromium: str, site: str, tmp_path: Path, backend: str
) -> None:
    url = f"{site}/docs"
    shot = tmp_path / "docs.png"
    # The DOM and the screenshot from two browsers side by side: each mostly waits for its
    # virtual-time budget, not for a core.
    load = partial(browse, chromium, size=DESKTOP, offline=True, wait_ms=15000)
    with ThreadPoolExecutor(max_workers=2) as pool:
        dumped = pool.submit(load, tmp_path / "dom", url, "--dump-dom")
        shown = pool.submit(load, tmp_path / "shot", url, f"--screenshot={shot}")
        dump = dumped.result()
        shown.result()
    dom = ParsedPage(dump)
    operations = [e for e in dom.elements if "opblock-summary-path" in e.attrs.get("class", "")]
    paths = {e.attrs.get("data-path") for e in operations}
    assert "/api/v1/vouchers" in paths
    assert len(operations) > 50

    image = read_png(shot.read_bytes())
    assert len({pixel for row in image.rows for pixel in row}) > 50
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, SHOTS / f"docs-offline-{backend}.png")


def test_the_browser_really_is_offline(chromium: str, site: str, tmp_path: Path) -> None:
    """The flags hold: a page on another host does not load (so the test above proves it)."""
    dump = browse(chromium, tmp_path / "dom", "http://example.com/", "--dump-dom", offline=True)
    assert "Example Domain" not in dump
    assert httpx.get(f"{site}/healthz").status_code == 200
