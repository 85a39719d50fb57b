"""Express lanes (voucherd/api/hot.py, api/front.py): the four hot POSTs are answered without
FastAPI's routing, and every answer, refusals included, is the one FastAPI's routing gives:
the same requests through an app built with ``express=False`` answer the same, header for
header. Run on whole databases whose units of work really commit, so that on PostgreSQL the
hot use cases take their production way (``Database.single_write``)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.factories.vouchers import issue
from voucherd.api.front import FrontDoor
from voucherd.app import create_app
from voucherd.config import Settings
from voucherd.db.engine import Database
from voucherd.vouchers.mint import mint_vouchers
from voucherd.vouchers.schemas import MintVouchers

HOT = {
    ("POST", "/api/v1/vouchers"),
    ("POST", "/api/v1/validations"),
    ("POST", "/api/v1/redemptions"),
    ("POST", "/api/v1/publications"),
}
# Ids, codes, tokens and times differ between the two worlds; everything else must not.
_VOLATILE = re.compile(
    r'"(code|public_token|url|page_url|created_at|updated_at|request_id|instance|redeem_url)":'
    r'\s*"[^"]*"'
)
_IDS = re.compile(r"\b[a-z]{1,4}_[0-9a-z]{26}\b")
_CODES = re.compile(r'"[0-9A-Z]{13}"')
_TIMES = re.compile(r'"\d{4}-\d\d-\d\dT[^"]*"')
# Headers that differ by request (the id, the time) or by process (each app's guard counts).
_PER_REQUEST = {"x-request-id", "date", "content-length"}


@pytest.fixture
def database(fresh_database: Callable[..., Database]) -> Database:
    return fresh_database(pool_size=4)


def _lanes(app: FastAPI) -> dict[tuple[str, str], Any]:
    stack = app.build_middleware_stack()
    app.middleware_stack = stack
    node: Any = stack
    while not isinstance(node, FrontDoor):
        node = node.app
    return dict(node.lanes)


@dataclass
class World:
    """One app and what its requests name: a tenant, a campaign with a pool, vouchers."""

    api: TestClient
    tenant: Tenant
    campaign: str
    gift: str  # a voucher's code, 500 on it
    spent: str  # a voucher's code, nothing left on it


@pytest.fixture
def worlds(database: Database, settings: Settings) -> Iterator[tuple[World, World]]:
    made = []
    with (
        TestClient(create_app(settings, db=database)) as express,
        TestClient(create_app(settings, db=database, express=False)) as routed,
    ):
        for api in (express, routed):
            tenant = make_tenant(database)
            campaign = make_campaign(
                database, tenant, name="hot", type="GIFT", default_value=500
            ).id
            mint_vouchers(database, tenant.caller, campaign, MintVouchers(count=5))
            gift = issue(database, tenant, campaign).voucher.code
            spent = issue(database, tenant, campaign, value=1).voucher.code
            made.append(World(api, tenant, campaign, gift, spent))
        yield made[0], made[1]


def _requests(world: World) -> list[tuple[str, str, dict[str, Any]]]:
    """(what, path, httpx arguments): the answers a till, a shop and a CRM can get."""
    auth = world.tenant.headers
    as_json = {**auth, "Content-Type": "application/json"}
    redeem = {"code": world.gift, "amount": 100}
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("issued", "/api/v1/vouchers", {"json": {"campaign": world.campaign}, "headers": auth}),
        ("valid", "/api/v1/validations", {"json": redeem, "headers": auth}),
        ("redeemed", "/api/v1/redemptions", {"json": redeem, "headers": auth}),
        (
            "published",
            "/api/v1/publications",
            {"json": {"campaign": world.campaign, "count": 1}, "headers": auth},
        ),
        (
            "over the balance",
            "/api/v1/redemptions",
            {"json": {"code": world.spent, "amount": 5}, "headers": auth},
        ),
        (
            "not valid: used up",
            "/api/v1/validations",
            {"json": {"code": world.spent, "amount": 5}, "headers": auth},
        ),
        (
            "an unknown code",
            "/api/v1/redemptions",
            {"json": {"code": "NO-SUCH-CODE", "amount": 1}, "headers": auth},
        ),
        (
            "an unknown campaign",
            "/api/v1/publications",
            {"json": {"campaign": "nope", "count": 1}, "headers": auth},
        ),
        (
            "a chunked body",
            "/api/v1/redemptions",
            {"content": iter([json.dumps(redeem).encode()]), "headers": as_json},
        ),
        (
            "a chunked body, not JSON",
            "/api/v1/redemptions",
            {"content": iter([b"{co", b"de"]), "headers": as_json},
        ),
        (
            "a chunked body, text/plain",
            "/api/v1/validations",
            {
                "content": iter([json.dumps(redeem).encode()]),
                "headers": {**auth, "Content-Type": "text/plain"},
            },
        ),
    ]
    for path in ("/api/v1/vouchers", "/api/v1/redemptions"):
        body = (
            {"campaign": world.campaign} if path.endswith("vouchers") else redeem
        )  # a valid body: only the thing named in the case is wrong
        raw = json.dumps(body)
        key = {**as_json, "Idempotency-Key": f"k-{path.rsplit('/', 1)[1]}"}
        cases += [
            (
                "no credentials",
                path,
                {"content": raw, "headers": {"Content-Type": "application/json"}},
            ),
            (
                "a wrong secret",
                path,
                {"content": raw, "headers": {**as_json, "Authorization": "Bearer a.b"}},
            ),
            (
                "another scheme",
                path,
                {
                    "content": raw,
                    "headers": {"Authorization": "Basic eDp5", "Content-Type": "application/json"},
                },
            ),
            (
                "text/plain",
                path,
                {"content": raw, "headers": {**auth, "Content-Type": "text/plain"}},
            ),
            ("no content type", path, {"content": raw, "headers": auth}),
            ("not JSON", path, {"content": b"{code", "headers": as_json}),
            ("no body", path, {"headers": as_json}),
            ("a missing field", path, {"content": b"{}", "headers": as_json}),
            ("an unknown field", path, {"json": {**body, "colour": 1}, "headers": auth}),
            ("a query parameter", path, {"content": raw, "headers": as_json, "params": {"a": 1}}),
            ("an empty key", path, {"content": raw, "headers": {**as_json, "Idempotency-Key": ""}}),
            ("a key", path, {"content": raw, "headers": key}),
            (
                "the key again",
                path,
                {"content": raw, "headers": key},
            ),
            (
                "a trailing slash",
                path + "/",
                {"content": raw, "headers": as_json, "follow_redirects": False},
            ),
        ]
    return cases


# The guard's counts: what is left of a window depends on when each app last shared its counts
# through the database (every 0.2 s), so it differs between two apps on one database.
_RATE_LIMIT = ("ratelimit", "x-rate-limit-remaining")


def _answer(
    world: World, path: str, kwargs: dict[str, Any]
) -> tuple[int, str, list[tuple[str, str]]]:
    response = world.api.post(path, **kwargs)
    text = _VOLATILE.sub(r'"\1": "-"', response.text)
    for volatile, stands_for in ((_IDS, "ID"), (_CODES, '"CODE"'), (_TIMES, '"TIME"')):
        text = volatile.sub(stands_for, text)
    # In order, repeated names kept; the values that differ by request or process blanked.
    headers = [
        (name, "-" if name in _PER_REQUEST or name.startswith(_RATE_LIMIT) else value)
        for name, value in response.headers.multi_items()
    ]
    return response.status_code, text, headers


class TestExpressLanes:
    def test_the_hot_routes_have_one(self, database: Database, settings: Settings) -> None:
        assert set(_lanes(create_app(settings, db=database))) == HOT
        assert _lanes(create_app(settings, db=database, express=False)) == {}

    def test_a_route_routing_would_choose_first_keeps_routing(
        self, database: Database, settings: Settings
    ) -> None:
        app = create_app(settings, db=database)

        async def shadow() -> dict[str, str]:  # pragma: no cover  (never called)
            return {}

        app.router.routes.insert(0, APIRoute("/api/v1/redemptions", shadow, methods=["POST"]))

        assert set(_lanes(app)) == HOT - {("POST", "/api/v1/redemptions")}

    def test_every_answer_is_the_routed_ones(self, worlds: tuple[World, World]) -> None:
        express, routed = worlds
        fast = [(what, *_answer(express, p, kw)) for what, p, kw in _requests(express)]
        slow = [(what, *_answer(routed, p, kw)) for what, p, kw in _requests(routed)]

        for one, other in zip(fast, slow, strict=True):
            assert one == other, one[0]
        answered: dict[str, set[int]] = {}
        for what, status, *_ in fast:
            answered.setdefault(what, set()).add(status)
        assert answered["issued"] == answered["redeemed"] == answered["published"] == {201}
        assert answered["valid"] == {200}
        assert answered["a chunked body"] == {201}
        assert answered["a chunked body, not JSON"] == {400}
        assert answered["a chunked body, text/plain"] == {415}
        assert answered["no credentials"] == answered["a wrong secret"] == {401}
        assert answered["text/plain"] == {415}
        assert answered["not JSON"] == {400}
        assert answered["an unknown field"] == {422}
        assert answered["a key"] == answered["the key again"] == {201}
        assert answered["a trailing slash"] == {307}  # to the path without it

    def test_a_lane_answers_without_routing(self, database: Database, settings: Settings) -> None:
        """FastAPI's exit-stack middleware, inside routing's way, marks every request it sees;
        a request a lane answered never got there, one it gave to FastAPI did."""
        tenant = make_tenant(database)
        campaign = make_campaign(database, tenant, type="GIFT", default_value=500).id
        code = issue(database, tenant, campaign).voucher.code
        for express, routed_body, refused_body in (
            (True, False, True),
            (False, True, True),
        ):
            seen: list[dict[str, Any]] = []
            app = create_app(settings, db=database, express=express)

            async def watched(
                scope: Any, receive: Any, send: Any, app: Any = app, seen: list[Any] = seen
            ) -> None:
                seen.append(scope)  # the scope every layer below is given and marks
                await app(scope, receive, send)

            with TestClient(watched) as api:
                good = api.post(
                    "/api/v1/redemptions", json={"code": code, "amount": 1}, headers=tenant.headers
                )
                bad = api.post(
                    "/api/v1/redemptions",
                    json={"code": code, "amount": "x"},
                    headers=tenant.headers,
                )
            assert (good.status_code, bad.status_code) == (201, 422)
            http = [scope for scope in seen if scope["type"] == "http"]
            assert ["fastapi_middleware_astack" in scope for scope in http] == [
                routed_body,
                refused_body,
            ]
            assert [scope["route"].path for scope in http] == ["/api/v1/redemptions"] * 2

    def test_the_access_line_names_the_route(
        self, worlds: tuple[World, World], caplog: pytest.LogCaptureFixture
    ) -> None:
        express, _ = worlds
        with caplog.at_level(logging.INFO, logger="voucherd"):
            answer = express.api.post(
                "/api/v1/redemptions",
                json={"code": express.gift, "amount": 1},
                headers=express.tenant.headers,
            )

        assert answer.status_code == 201
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("POST ")]
        assert lines == ["POST /api/v1/redemptions 201"]
        # never the code itself
        assert express.gift not in caplog.text
