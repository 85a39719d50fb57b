"""The short way through FastAPI (voucherd/api/hot.py): the hot routes take it, and every
request answers exactly as through FastAPI's own handler, refusals included."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from voucherd.db.engine import Database

# Ids, codes, tokens and times differ between two issues; everything else must not.
_VOLATILE = re.compile(
    r'"(id|code|public_token|url|page_url|created_at|updated_at|request_id|instance)":'
    r'\s*"[^"]*"'
)


@pytest.fixture
def tenant(db: Database) -> Tenant:
    return make_tenant(db)


@pytest.fixture
def campaign(db: Database, tenant: Tenant) -> str:
    return make_campaign(db, tenant, type="GIFT", currency="EUR", default_value=500).id


def _the_long_way(api: TestClient) -> Iterator[None]:
    """FastAPI's own handler answers while any dependency override is set."""
    app: Any = api.app
    app.dependency_overrides[_unused] = lambda: None
    try:
        yield
    finally:
        app.dependency_overrides.pop(_unused)


def _unused() -> None:  # pragma: no cover  (never a dependency of any route)
    pass


def _requests(tenant: Tenant, campaign: str) -> list[tuple[str, dict[str, Any]]]:
    auth = tenant.headers
    body = json.dumps({"campaign": campaign, "customer_ref": "c-1"})
    as_json = {"Content-Type": "application/json"}
    return [
        ("issued", {"content": body, "headers": {**auth, **as_json}}),
        ("no credentials", {"content": body, "headers": as_json}),
        (
            "another scheme",
            {"content": body, "headers": {"Authorization": "Basic eDp5", **as_json}},
        ),
        (
            "a wrong secret",
            {"content": body, "headers": {**as_json, "Authorization": "Bearer a.b"}},
        ),
        ("text/plain", {"content": body, "headers": {**auth, "Content-Type": "text/plain"}}),
        ("no content type", {"content": body, "headers": auth}),
        ("not JSON", {"content": b"{campaign", "headers": {**auth, **as_json}}),
        ("no body", {"headers": {**auth, **as_json}}),
        ("a missing field", {"content": b"{}", "headers": {**auth, **as_json}}),
        ("an unknown field", {"json": {"campaign": campaign, "colour": 1}, "headers": auth}),
        ("an unknown campaign", {"json": {"campaign": "nope"}, "headers": auth}),
        (
            "a query parameter",
            {"content": body, "headers": {**auth, **as_json}, "params": {"a": 1}},
        ),
        ("an empty key", {"content": body, "headers": {**auth, **as_json, "Idempotency-Key": ""}}),
        ("a key too long", {"content": body, "headers": {**auth, "Idempotency-Key": "k" * 256}}),
        ("a key", {"content": body, "headers": {**auth, **as_json, "Idempotency-Key": "k-1"}}),
        (
            "the key again",
            {"content": body, "headers": {**auth, **as_json, "Idempotency-Key": "k-1"}},
        ),
    ]


class TestShortWay:
    def test_the_hot_routes_take_it(self, api: TestClient) -> None:
        given = set(api.app.state.short_way)  # type: ignore[attr-defined]

        for route in (
            "POST /api/v1/vouchers",
            "POST /api/v1/validations",
            "POST /api/v1/redemptions",
            "POST /api/v1/publications",
        ):
            assert route in given

    def test_every_answer_is_fastapis_own(
        self, api: TestClient, tenant: Tenant, campaign: str
    ) -> None:
        short = [self._issue(api, what, kwargs) for what, kwargs in _requests(tenant, campaign)]
        # The same requests again, through FastAPI's handler; the idempotency key is another one
        # (the first one's answer is remembered), named the same in the answer.
        again = [(what, _other_key(kwargs)) for what, kwargs in _requests(tenant, campaign)]
        for _ in _the_long_way(api):
            long = [self._issue(api, what, kwargs) for what, kwargs in again]

        assert short == long
        assert short[0][1] == 201
        assert short[-1][1] == 201

    @staticmethod
    def _issue(api: TestClient, what: str, kwargs: dict[str, Any]) -> tuple[str, int, str]:
        response = api.post("/api/v1/vouchers", **kwargs)
        text = _VOLATILE.sub(r'"\1": "-"', response.text)
        return what, response.status_code, text.replace("k-2", "k-1")


def _other_key(kwargs: dict[str, Any]) -> dict[str, Any]:
    headers = kwargs.get("headers", {})
    if headers.get("Idempotency-Key") == "k-1":
        return {**kwargs, "headers": {**headers, "Idempotency-Key": "k-2"}}
    return kwargs
