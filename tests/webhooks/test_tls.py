"""A message over real TLS: an https receiver with a certificate from a throwaway CA (trustme),
trusted the way an operator trusts a private CA, ``SSL_CERT_FILE`` (httpx reads it when the
worker's shared client is made; see the README's Webhooks section).

The receiver listens on 127.0.0.1 under the name ``hooks.test``. Names are resolved by the
operating system's resolver and tests cannot reach DNS, so that one name is answered by
replacing ``socket.getaddrinfo``, the boundary with the outside (as test_ssrf does). Production's
rules apply (https only), but for the test-only ``allow_loopback_webhooks``: the very same URL is
refused without it.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from fastapi.testclient import TestClient

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import make_tenant
from tests.factories.vouchers import issue
from tests.support.webhooks import Receiver, drain, register
from voucherd.config import Settings
from voucherd.db.engine import Database
from voucherd.delivery.channels.http import close_client
from voucherd.webhooks.urls import Refused, resolve

NAME = "hooks.test"
_real_getaddrinfo = socket.getaddrinfo


class TlsReceiver(Receiver):
    """The signature-checking receiver, behind TLS; it keeps the SNI each handshake offered."""

    def __init__(self, ca: trustme.CA, names: tuple[str, ...]) -> None:
        super().__init__()
        self.server_names: list[str | None] = []
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*names).configure_cert(context)

        def remember(_: Any, server_name: str | None, __: Any) -> None:
            self.server_names.append(server_name)

        context.sni_callback = remember
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://{NAME}:{self.server.server_address[1]}/hooks"


@pytest.fixture
def ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[trustme.CA]:
    """A CA the worker trusts, and ``hooks.test`` resolving to 127.0.0.1."""
    authority = trustme.CA()
    bundle = tmp_path / "webhook-ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == NAME:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port or 0))]
        return _real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    close_client()  # the worker's shared client is made again, reading SSL_CERT_FILE
    yield authority
    close_client()


def serving(ca: trustme.CA, *names: str) -> Any:
    class Running:
        def __enter__(self) -> TlsReceiver:
            self.receiver = TlsReceiver(ca, names)
            threading.Thread(target=self.receiver.server.serve_forever, daemon=True).start()
            return self.receiver

        def __exit__(self, *_: object) -> None:
            self.receiver.server.shutdown()
            self.receiver.server.server_close()

    return Running()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Production's https-only rule; loopback allowed, for this local receiver only."""
    return settings.model_copy(
        update={"allow_http_webhooks": False, "allow_loopback_webhooks": True}
    )


def test_a_message_arrives_over_tls_with_host_sni_and_signature(
    api: TestClient, db: Database, ca: trustme.CA
) -> None:
    tenant = make_tenant(db)
    with serving(ca, NAME) as receiver:
        endpoint = register(api, tenant.headers, receiver, events=["voucher.issued"])
        assert endpoint["url"].startswith("https://hooks.test:")
        voucher = issue(db, tenant, make_campaign(db, tenant))
        assert drain(db) == 1
    (hook,) = receiver.hooks  # accepted only with a valid Standard Webhooks signature
    assert receiver.forged == 0
    assert hook.type == "voucher.issued"
    assert hook.payload["data"]["object"]["id"] == voucher.voucher.id
    assert hook.host == f"{NAME}:{receiver.server.server_address[1]}"
    assert receiver.server_names == [NAME]  # SNI: the name, though 127.0.0.1 was dialled


def test_a_certificate_for_another_name_is_not_trusted(
    api: TestClient, db: Database, ca: trustme.CA
) -> None:
    tenant = make_tenant(db)
    with serving(ca, "elsewhere.test") as receiver:
        endpoint = register(api, tenant.headers, receiver, events=["voucher.issued"])
        issue(db, tenant, make_campaign(db, tenant))
        assert drain(db) == 1
    assert receiver.hooks == []
    base = f"/api/v1/webhook-endpoints/{endpoint['id']}/events"
    (message,) = api.get(base, headers=tenant.headers).json()["data"]
    assert message["state"] == "PENDING"  # retried later, like any connection failure
    assert message["last_error"].startswith("TLS: the server's certificate was refused: ")
    assert "hooks.test" in message["last_error"], message


def test_without_the_test_allowance_the_same_url_is_refused(
    ca: trustme.CA, settings: Settings
) -> None:
    """Production: the check made at registration and again at each send refuses it."""
    production = settings.model_copy(update={"allow_loopback_webhooks": False})
    with serving(ca, NAME) as receiver, pytest.raises(Refused, match="loopback"):
        resolve(receiver.url, production)
