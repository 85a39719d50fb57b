"""Links follow the address served (issue 15): `serve --port N` must not print links to :8000."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import make_tenant
from voucherd.config import Settings
from voucherd.db.engine import Database

DEADLINE = 60.0


class TestPublicBaseUrl:
    @pytest.fixture(autouse=True)
    def _no_address_set(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("HOST", "PORT", "PUBLIC_BASE_URL"):
            monkeypatch.delenv(f"VOUCHERD_{name}", raising=False)

    def test_follows_the_port_and_host(self) -> None:
        assert Settings(port=18321).public_base_url == "http://127.0.0.1:18321"
        assert Settings(host="10.1.2.3", port=9000).public_base_url == "http://10.1.2.3:9000"

    def test_default_is_unchanged(self) -> None:
        assert Settings().public_base_url == "http://127.0.0.1:8000"

    def test_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("VOUCHERD_PORT", "18400")
        assert Settings().public_base_url == "http://127.0.0.1:18400"

    def test_an_explicit_base_url_wins(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("VOUCHERD_PORT", "18400")
        monkeypatch.setenv("VOUCHERD_PUBLIC_BASE_URL", "https://vouchers.example/")
        assert Settings().public_base_url == "https://vouchers.example"

    def test_a_wildcard_bind_links_to_loopback(self) -> None:
        assert Settings(host="0.0.0.0", port=8100).public_base_url == "http://127.0.0.1:8100"
        assert Settings(host="::", port=8100).public_base_url == "http://127.0.0.1:8100"
        assert Settings(host="::1", port=8100).public_base_url == "http://[::1]:8100"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(fresh_database: Callable[..., Database]) -> Iterator[Served]:
    """A real `voucherd serve --port <free port>` on a fresh database, no base URL set."""
    db = fresh_database(pool_size=4)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOUCHERD_")}
    env.update(
        VOUCHERD_DATABASE_URL=db.settings.database_url,
        VOUCHERD_LOG_LEVEL="WARNING",
        VOUCHERD_WORKER_POLL_SECONDS="0.2",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "voucherd", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    served = Served(db, port, process)
    try:
        deadline = time.monotonic() + DEADLINE
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                if httpx.get(f"{served.base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "voucherd serve did not answer"
            time.sleep(0.05)
        yield served
    finally:
        served.stop()


class Served:
    def __init__(self, db: Database, port: int, process: subprocess.Popen[str]) -> None:
        self.db, self.port, self.process = db, port, process
        self.base = f"http://127.0.0.1:{port}"

    def stop(self) -> str:
        """Stop the server; what it printed."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.communicate(timeout=DEADLINE)[0] or ""
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.communicate()[0] or ""


class TestServe:
    def test_page_link_of_an_issued_voucher_answers(self, served: Served) -> None:
        tenant = make_tenant(served.db)
        campaign = make_campaign(served.db, tenant)

        # A server's first answers on a loaded CI machine can take longer than httpx's 5 s.
        issued = httpx.post(
            f"{served.base}/api/v1/vouchers",
            headers=tenant.headers,
            json={"campaign": campaign.id},
            timeout=DEADLINE,
        )

        assert issued.status_code == 201, issued.text
        page_url = issued.json()["page_url"]
        assert page_url.startswith(f"{served.base}/v/")
        page = httpx.get(page_url, timeout=DEADLINE)
        assert page.status_code == 200
        assert "127.0.0.1:8000" not in page.text
        printed = served.stop()
        assert f"voucherd on {served.base}" in printed
        assert f"links in pages and messages use {served.base}" in printed
