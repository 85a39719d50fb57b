"""No server-side request forgery: a webhook URL that is not https, or whose host resolves to a
loopback, private, link-local or otherwise non-public address, is refused when registered and
again when sent (a name may resolve elsewhere by then).

Names are resolved by the operating system's resolver; tests cannot reach DNS, so the names
used here are answered by replacing ``socket.getaddrinfo``, the boundary with the outside.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import make_tenant
from tests.factories.vouchers import issue
from tests.support.webhooks import Receiver, drain, register
from voucherd.config import Settings
from voucherd.db.engine import Database
from voucherd.webhooks.urls import Target, resolve

PUBLIC = "93.184.215.14"
_real_getaddrinfo = socket.getaddrinfo


def answer(monkeypatch: pytest.MonkeyPatch, names: dict[str, str]) -> None:
    """Make the resolver answer ``names`` (name -> address); other names resolve as usual."""

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in names:
            address = names[host]
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, port or 0, 0, 0) if ":" in address else (address, port or 0)
            return [(family, socket.SOCK_STREAM, 6, "", sockaddr)]
        return _real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Production's rules: https only, no loopback."""
    return settings.model_copy(
        update={"allow_http_webhooks": False, "allow_loopback_webhooks": False}
    )


class TestAtRegistration:
    @pytest.mark.parametrize(
        ("url", "why"),
        [
            ("http://hooks.example/in", "https"),
            ("https://127.0.0.1/in", "loopback"),
            ("https://127.1.2.3:8443/in", "loopback"),
            ("https://10.1.2.3/in", "private"),
            ("https://192.168.0.10/in", "private"),
            ("https://169.254.169.254/latest/meta-data", "link-local"),
            ("https://[::1]/in", "loopback"),
            ("https://[::ffff:10.0.0.1]/in", "private"),
            ("https://0.0.0.0/in", "not a unicast"),
            ("https://localhost/in", "loopback"),
            ("https://six.example/in", "loopback"),  # a name resolving to ::1
            ("https://mixed.example/in", "private"),  # one public and one private address
        ],
    )
    def test_refused(
        self, api: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch, url: str, why: str
    ) -> None:
        answer(monkeypatch, {"six.example": "::1"})  # localhost: the real resolver
        original = socket.getaddrinfo

        def mixed(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host == "mixed.example":
                return [
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC, port)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.9.9.9", port)),
                ]
            return original(host, port, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", mixed)
        tenant = make_tenant(db)
        body = {"url": url, "events": ["voucher.issued"]}

        response = api.post("/api/v1/webhook-endpoints", headers=tenant.headers, json=body)

        assert response.status_code == 422, response.text
        problem = response.json()
        assert "url" in response.text
        assert why in problem["detail"]

    def test_a_public_https_url_is_accepted(
        self, api: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        answer(monkeypatch, {"hooks.example": PUBLIC})
        tenant = make_tenant(db)
        body = {"url": "https://hooks.example/in", "events": ["voucher.issued"]}
        response = api.post("/api/v1/webhook-endpoints", headers=tenant.headers, json=body)
        assert response.status_code == 201, response.text


class TestAtSending:
    @pytest.mark.parametrize("address", ["::1", "127.0.0.1", "10.0.0.7"])
    def test_a_name_that_now_resolves_inwards_is_refused(
        self, api: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch, address: str
    ) -> None:
        answer(monkeypatch, {"hooks.example": PUBLIC})
        tenant = make_tenant(db)
        body = {"url": "https://hooks.example/in", "events": ["voucher.issued"]}
        created = api.post("/api/v1/webhook-endpoints", headers=tenant.headers, json=body).json()
        issue(db, tenant, make_campaign(db, tenant))
        answer(monkeypatch, {"hooks.example": address})  # DNS rebinding

        assert drain(db) == 1

        base = f"/api/v1/webhook-endpoints/{created['id']}/events"
        (message,) = api.get(base, headers=tenant.headers).json()["data"]
        shown = api.get(f"{base}/{message['id']}", headers=tenant.headers).json()
        assert shown["state"] == "PENDING"  # retried later, and counted towards disabling
        assert "refused" in shown["attempts"][0]["detail"]
        assert address.strip("[]") in shown["attempts"][0]["detail"]


class TestLoopbackSettingAtSending:
    def test_loopback_allowed_at_registration_is_refused_when_no_longer_allowed(
        self, api: TestClient, db: Database, receiver: Receiver, settings: Settings
    ) -> None:
        tenant = make_tenant(db)
        relaxed = settings.model_copy(
            update={"allow_http_webhooks": True, "allow_loopback_webhooks": True}
        )
        db.settings = relaxed
        register(api, tenant.headers, receiver)
        issue(db, tenant, make_campaign(db, tenant))
        db.settings = settings

        drain(db)

        assert receiver.hooks == []
        assert receiver.forged == 0


class TestTarget:
    def test_the_request_goes_to_the_checked_address_under_the_name(
        self, monkeypatch: pytest.MonkeyPatch, settings: Settings
    ) -> None:
        answer(monkeypatch, {"hooks.example": PUBLIC, "v6.example": "2606:4700::1"})

        plain = resolve("https://hooks.example/in?x=1", settings)
        other_port = resolve("https://v6.example:8443/in", settings)

        assert plain == Target(f"https://{PUBLIC}:443/in?x=1", "hooks.example", "hooks.example")
        assert other_port == Target(
            "https://[2606:4700::1]:8443/in", "v6.example:8443", "v6.example"
        )
