"""Voucherify's official SDK against a voucherd served by uvicorn in a thread.

The same as ``tests/test_voucherify_sdk.py``'s helpers (copied rather than imported from that
test module); once merged, that module can import them from here.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
import voucherify

from tests.factories.tenants import Tenant
from voucherd.app import create_app
from voucherd.db.engine import Database


@contextmanager
def serving(db: Database) -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    config = uvicorn.Config(
        create_app(db.settings, db=db), log_level="warning", lifespan="off", ws="none"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("uvicorn stopped before it started serving")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


class Sdk:
    def __init__(self, host: str, tenant: Tenant) -> None:
        configuration = voucherify.Configuration(
            host=host,
            api_key={"X-App-Id": tenant.key.key_id, "X-App-Token": tenant.key.secret},
        )
        self.client = voucherify.ApiClient(configuration)
        self.campaigns = voucherify.CampaignsApi(self.client)
        self.async_actions = voucherify.AsyncActionsApi(self.client)
        self.publications = voucherify.PublicationsApi(self.client)
        self.validations = voucherify.ValidationsApi(self.client)
        self.redemptions = voucherify.RedemptionsApi(self.client)
        self.customers = voucherify.CustomersApi(self.client)
        self.vouchers = voucherify.VouchersApi(self.client)
