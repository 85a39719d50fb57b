"""Operators and signed-in clients for the console's tests."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient

from tests.factories.tenants import Tenant
from voucherd.app import create_app
from voucherd.console.schemas import OperatorView
from voucherd.console.service import create_operator
from voucherd.db.engine import Database

PASSWORD = "correct horse battery"


def make_operator(db: Database, tenant: Tenant, role: str = "admin") -> OperatorView:
    return create_operator(
        db,
        tenant_id=tenant.id,
        email=f"{role}-{secrets.token_hex(3)}@shop.example",
        password=PASSWORD,
        role=role,
    )


@contextmanager
def browser(db: Database) -> Iterator[TestClient]:
    """A client on https (the settings' public base URL is https, so the cookie is Secure)."""
    app = create_app(db.settings, db=db)
    with TestClient(app, base_url="https://testserver", raise_server_exceptions=True) as client:
        yield client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def sign_in(client: TestClient, email: str, password: str = PASSWORD) -> str:
    """Sign in through the form; the CSRF token of the first page after it."""
    page = client.get("/console/sign-in")
    pre = re.search(r'name="pre" value="([^"]+)"', page.text)
    assert pre
    answer = client.post(
        "/console/sign-in",
        data={"pre": pre.group(1), "email": email, "password": password},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return csrf_of(client.get("/console/account").text)
