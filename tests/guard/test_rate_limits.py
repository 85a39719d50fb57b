"""Rate limits (voucherd/guard): per key, per tenant, per page address; headers and 429s on
every face in its own shape; counts shared by API processes; per-tenant numbers.

The guard's windows run on its own clock; each test hands it a :class:`Ticks` that moves only
when told, so no assertion depends on how fast the machine is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.factories.vouchers import issue
from voucherd.app import create_app
from voucherd.config import Settings
from voucherd.db.engine import Database

WINDOW = 10
START = 1_800_000_000.0  # the start of a window (a multiple of WINDOW)


class Ticks:
    """Wall-clock seconds that move only when a test says so."""

    def __init__(self, now: float = START + 2.5) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def guarded_app(db: Database, settings: Settings, ticks: Ticks, **overrides: Any) -> Any:  # FastAPI
    limits = {"rate_limit_window_seconds": WINDOW, "rate_limit_sync_seconds": 0, **overrides}
    app = create_app(settings.model_copy(update=limits), db=db)
    app.state.guard.clock = ticks
    return app


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


@dataclass
class Face:
    """One platform's cheapest authenticated call and how it words a 429."""

    name: str
    call: Callable[[TestClient, Tenant, str], httpx.Response]
    check_refusal: Callable[[httpx.Response], None]


def _native(client: TestClient, tenant: Tenant, code: str) -> httpx.Response:
    return client.get("/api/v1/tenant", headers=tenant.headers)


def _native_refusal(response: httpx.Response) -> None:
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 429
    assert body["code"] == "rate_limited"
    assert "too many requests" in body["detail"]


def _voucherify(client: TestClient, tenant: Tenant, code: str) -> httpx.Response:
    headers = {"X-App-Id": tenant.key.key_id, "X-App-Token": tenant.key.secret}
    return client.get(f"/v1/vouchers/{code}", headers=headers)


def _voucherify_refusal(response: httpx.Response) -> None:
    body = response.json()
    assert set(body) == {"code", "key", "message", "details", "request_id"}
    assert body["code"] == 429
    assert body["key"] == "too_many_requests"
    assert "too many requests" in body["details"]


def _yoyo(client: TestClient, tenant: Tenant, code: str) -> httpx.Response:
    headers = {"apiId": tenant.key.key_id, "apiPassword": tenant.key.secret}
    return client.get(f"/cvs-issuer/rest/coupons/{code}", headers=headers)


def _yoyo_refusal(response: httpx.Response) -> None:
    body = response.json()
    assert body["responseCode"] == "rate_limited"
    assert "too many requests" in body["responseDesc"]


def _imovo(client: TestClient, tenant: Tenant, code: str) -> httpx.Response:
    # Cancels the voucher once; later calls are refused as not cancellable. All count.
    return client.post(
        "/Voucher/CancelVoucher",
        headers={"X-API-KEY": tenant.key.token},
        json={"voucherCode": code},
    )


def _imovo_refusal(response: httpx.Response) -> None:
    body = response.json()
    assert body["successfulRequest"] is False
    assert "too many requests" in body["errorMessages"][0]


def _vista(client: TestClient, tenant: Tenant, code: str) -> httpx.Response:
    return client.post(
        "/api/v1/identity-resolution/from-operation-result-tokens",
        headers=tenant.headers,
        json=["not-a-token"],
    )


def _vista_refusal(response: httpx.Response) -> None:
    body = response.json()
    assert body["status"] == 429
    assert body["title"] == "Too Many Requests"
    assert "too many requests" in body["errors"][""][0]
    assert body["traceId"]
    assert response.headers["vista-correlation-id"]


FACES = [
    Face("native", _native, _native_refusal),
    Face("voucherify", _voucherify, _voucherify_refusal),
    Face("yoyo", _yoyo, _yoyo_refusal),
    Face("imovo", _imovo, _imovo_refusal),
    Face("vista", _vista, _vista_refusal),
]


@pytest.fixture
def code_of(db: Database) -> Callable[[Tenant], str]:
    def make(tenant: Tenant) -> str:
        return issue(db, tenant, make_campaign(db, tenant)).voucher.code

    return make


class TestPerKey:
    @pytest.mark.parametrize("face", FACES, ids=lambda f: f.name)
    def test_headers_then_429_with_retry_after_in_the_face_shape(
        self,
        db: Database,
        settings: Settings,
        ticks: Ticks,
        code_of: Callable[[Tenant], str],
        face: Face,
    ) -> None:
        tenant = make_tenant(db)
        code = code_of(tenant)
        app = guarded_app(db, settings, ticks, rate_limit_per_key=3)
        with TestClient(app, raise_server_exceptions=False) as client:
            for remaining in (2, 1, 0):
                response = face.call(client, tenant, code)
                assert response.status_code < 500
                assert response.status_code != 429
                assert response.headers["X-Rate-Limit-Limit"] == "3"
                assert response.headers["X-Rate-Limit-Remaining"] == str(remaining)
                assert "Retry-After" not in response.headers
            ticks.advance(4)  # 6.5 s into the 10 s window
            refused = face.call(client, tenant, code)
            assert refused.status_code == 429
            assert refused.headers["Retry-After"] == "4"
            assert refused.headers["X-Rate-Limit-Retry"] == str(int(START) + WINDOW)
            assert refused.headers["X-Rate-Limit-Remaining"] == "0"
            face.check_refusal(refused)
            ticks.advance(4)  # the next window
            again = face.call(client, tenant, code)
            assert again.status_code != 429
            assert again.headers["X-Rate-Limit-Remaining"] == "2"

    def test_another_key_and_tenant_are_not_refused(
        self, db: Database, settings: Settings, ticks: Ticks
    ) -> None:
        busy, calm = make_tenant(db), make_tenant(db)
        other_key = busy.key_with(db, ["issue", "redeem", "manage"])
        app = guarded_app(db, settings, ticks, rate_limit_per_key=2)
        with TestClient(app) as client:
            for _ in range(2):
                client.get("/api/v1/tenant", headers=busy.headers)
            assert client.get("/api/v1/tenant", headers=busy.headers).status_code == 429
            assert client.get("/api/v1/tenant", headers=other_key).status_code == 200
            assert client.get("/api/v1/tenant", headers=calm.headers).status_code == 200

    def test_unauthenticated_answers_carry_no_rate_headers(
        self, db: Database, settings: Settings, ticks: Ticks
    ) -> None:
        with TestClient(guarded_app(db, settings, ticks)) as client:
            response = client.get("/api/v1/tenant")
        assert response.status_code == 401
        assert "X-Rate-Limit-Limit" not in response.headers

    def test_guard_disabled_counts_nothing(
        self, db: Database, settings: Settings, ticks: Ticks
    ) -> None:
        tenant = make_tenant(db)
        app = guarded_app(db, settings, ticks, rate_limit_per_key=1, guard_enabled=False)
        with TestClient(app) as client:
            answers = [client.get("/api/v1/tenant", headers=tenant.headers) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert "X-Rate-Limit-Limit" not in answers[0].headers


class TestPerTenant:
    def test_all_keys_of_a_tenant_share_its_limit(
        self, db: Database, settings: Settings, ticks: Ticks
    ) -> None:
        tenant, other = make_tenant(db), make_tenant(db)
        second = tenant.key_with(db, ["manage"])
        app = guarded_app(db, settings, ticks, rate_limit_per_key=100, rate_limit_per_tenant=4)
        with TestClient(app) as client:
            for headers in (tenant.headers, second, tenant.headers):
                assert client.get("/api/v1/tenant", headers=headers).status_code == 200
            last = client.get("/api/v1/tenant", headers=second)
            assert last.status_code == 200
            # The tenant's count is the one with the least left, so it speaks.
            assert last.headers["X-Rate-Limit-Limit"] == "4"
            assert last.headers["X-Rate-Limit-Remaining"] == "0"
            assert client.get("/api/v1/tenant", headers=tenant.headers).status_code == 429
            assert client.get("/api/v1/tenant", headers=other.headers).status_code == 200

    def test_a_runaway_key_does_not_starve_its_siblings(
        self, db: Database, settings: Settings, ticks: Ticks
    ) -> None:
        tenant = make_tenant(db)
        sibling = tenant.key_with(db, ["manage"])
        app = guarded_app(db, settings, ticks, rate_limit_per_key=2, rate_limit_per_tenant=4)
        with TestClient(app) as client:
            runaway = [client.get("/api/v1/tenant", headers=tenant.headers) for _ in range(10)]
            assert [r.status_code for r in runaway] == [200, 200] + [429] * 8
            # Its eight refusals counted against the key only: the tenant has two left.
            calm = [client.get("/api/v1/tenant", headers=sibling).status_code for _ in range(2)]
            assert calm == [200, 200]

    def test_a_tenant_sets_its_own_limits(
        self, db: Database, settings: Settings, ticks: Ticks
    ) -> None:
        tenant, other = make_tenant(db), make_tenant(db)
        with TestClient(guarded_app(db, settings, ticks)) as client:
            patched = client.patch(
                "/api/v1/tenant",
                headers=tenant.headers,
                json={"rate_limits": {"per_key": 3, "guess_refuse_after": 400}},
            )
            assert patched.status_code == 200
            assert patched.json()["rate_limits"] == {
                "per_key": 3,
                "per_tenant": settings.rate_limit_per_tenant,
                "guess_slow_after": settings.guess_slow_after,
                "guess_refuse_after": 400,
            }
            # The PATCH itself was the key's first request of the window.
            statuses = [
                client.get("/api/v1/tenant", headers=tenant.headers).status_code for _ in range(3)
            ]
            assert statuses == [200, 200, 429]
            assert client.get("/api/v1/tenant", headers=other.headers).headers[
                "X-Rate-Limit-Limit"
            ] == str(settings.rate_limit_per_key)
            ticks.advance(WINDOW)
            reset = client.patch(
                "/api/v1/tenant", headers=tenant.headers, json={"rate_limits": {"per_key": None}}
            )
            assert reset.status_code == 200
            assert reset.json()["rate_limits"]["per_key"] == settings.rate_limit_per_key
            assert reset.json()["rate_limits"]["guess_refuse_after"] == 400

    @pytest.mark.parametrize(
        ("limits", "field"),
        [
            ({"per_key": 0}, "rate_limits.per_key"),
            ({"per_tenant": "many"}, "rate_limits.per_tenant"),
            ({"per_second": 5}, "rate_limits.per_second"),
            ({"guess_slow_after": 10, "guess_refuse_after": 5}, "rate_limits.guess_slow_after"),
        ],
    )
    def test_bad_limits_are_refused_naming_the_field(
        self, api: TestClient, db: Database, limits: dict[str, Any], field: str
    ) -> None:
        tenant = make_tenant(db)
        response = api.patch("/api/v1/tenant", headers=tenant.headers, json={"rate_limits": limits})
        assert response.status_code == 422
        assert field in [e["field"] for e in response.json()["errors"]]


class TestVoucherPage:
    def _page_app(self, db: Database, settings: Settings, ticks: Ticks, **more: Any) -> Any:
        return guarded_app(db, settings, ticks, rate_limit_page_per_address=3, **more)

    def test_each_address_has_its_own_page_limit(
        self, db: Database, settings: Settings, ticks: Ticks
    ) -> None:
        tenant = make_tenant(db)
        token = issue(db, tenant, make_campaign(db, tenant)).voucher.public_token
        app = self._page_app(db, settings, ticks)
        with (
            TestClient(app, client=("203.0.113.10", 5000)) as first,
            TestClient(app, client=("203.0.113.11", 5000)) as second,
        ):
            for remaining in (2, 1, 0):
                page = first.get(f"/v/{token}")
                assert page.status_code == 200
                assert page.headers["X-Rate-Limit-Remaining"] == str(remaining)
            refused = first.get(f"/v/{token}/qr.svg")
            assert refused.status_code == 429
            assert refused.headers["content-type"].startswith("text/html")
            assert refused.headers["Retry-After"] == str(math.ceil(START + WINDOW - ticks.now))
            assert refused.headers["Cache-Control"] == "no-store"
            assert "try again" in refused.text
            assert token not in refused.text
            # A forwarded-for header from an untrusted client changes nothing.
            spoofed = first.get(f"/v/{token}", headers={"X-Forwarded-For": "198.51.100.1"})
            assert spoofed.status_code == 429
            assert second.get(f"/v/{token}").status_code == 200

    def test_a_trusted_proxy_names_the_client(
        self, db: Database, settings: Settings, ticks: Ticks
    ) -> None:
        tenant = make_tenant(db)
        token = issue(db, tenant, make_campaign(db, tenant)).voucher.public_token
        app = self._page_app(db, settings, ticks, trusted_proxies=["10.0.0.0/8"])
        with TestClient(app, client=("10.1.2.3", 5000)) as proxy:
            for _ in range(3):
                forwarded = {"X-Forwarded-For": "198.51.100.1, 10.9.9.9"}
                assert proxy.get(f"/v/{token}", headers=forwarded).status_code == 200
            forwarded = {"X-Forwarded-For": "198.51.100.1"}
            assert proxy.get(f"/v/{token}", headers=forwarded).status_code == 429
            # The left-most entry is the client's own word: only the right-most untrusted counts.
            other = {"X-Forwarded-For": "198.51.100.1, 198.51.100.2"}
            assert proxy.get(f"/v/{token}", headers=other).status_code == 200


class TestSharedCounts:
    """Two apps over one database are two API processes."""

    @pytest.fixture
    def two_apps(
        self, fresh_database: Callable[..., Database], settings: Settings
    ) -> Iterator[tuple[Database, list[Ticks], list[TestClient]]]:
        db = fresh_database(pool_size=4)
        clocks = [Ticks(), Ticks()]
        clients = []
        for ticks in clocks:
            # Each process has its own guard, hence its own local counts.
            app = guarded_app(db, settings, ticks, rate_limit_per_key=4, rate_limit_sync_seconds=0)
            clients.append(TestClient(app))
        yield db, clocks, clients
        for client in clients:
            client.close()

    def test_written_through_the_total_is_exact(
        self, two_apps: tuple[Database, list[Ticks], list[TestClient]]
    ) -> None:
        db, _, (first, second) = two_apps
        tenant = make_tenant(db)
        answers = [
            client.get("/api/v1/tenant", headers=tenant.headers)
            for client in (first, second, first, second, first, second)
        ]
        assert [a.status_code for a in answers] == [200, 200, 200, 200, 429, 429]
        assert [a.headers["X-Rate-Limit-Remaining"] for a in answers[:4]] == ["3", "2", "1", "0"]

    def test_synced_every_interval_the_overshoot_is_bounded(
        self, fresh_database: Callable[..., Database], settings: Settings
    ) -> None:
        db = fresh_database(pool_size=4)
        tenant = make_tenant(db)
        clocks = [Ticks(), Ticks()]
        apps = [
            guarded_app(db, settings, t, rate_limit_per_key=4, rate_limit_sync_seconds=1.0)
            for t in clocks
        ]
        with TestClient(apps[0]) as first, TestClient(apps[1]) as second:

            def statuses(client: TestClient, n: int) -> list[int]:
                return [
                    client.get("/api/v1/tenant", headers=tenant.headers).status_code
                    for _ in range(n)
                ]

            # Within a sync interval each process knows only its own count: together they
            # admit one process's worth of an interval past the limit, no more.
            assert statuses(first, 5) == [200, 200, 200, 200, 429]
            assert statuses(second, 5) == [200, 200, 200, 200, 429]
            # Within one sync interval both learn the shared total and refuse.
            for ticks in clocks:
                ticks.advance(1.0)
            assert statuses(first, 1) == [429]
            assert statuses(second, 1) == [429]


TOO_MANY = 10_000_001  # one more than the default max_bulk_count


class TestRequestLimits:
    """Page sizes, bulk counts and body sizes: each refused with a 4xx that names what is wrong,
    on every face that takes them."""

    @pytest.mark.parametrize(
        ("method", "path", "body", "status", "named"),
        [
            ("GET", "/api/v1/vouchers?limit=101", None, 422, "limit"),
            ("GET", "/api/v1/redemptions?limit=101", None, 422, "limit"),
            ("GET", "/api/v1/publications?limit=101", None, 422, "limit"),
            ("POST", "/api/v1/campaigns/{campaign}/vouchers", {"count": TOO_MANY}, 422, "count"),
            (
                "POST",
                "/api/v1/publications",
                {"campaign": "{campaign}", "count": 1001},
                422,
                "count",
            ),
            ("GET", "/v1/campaigns?limit=101", None, 400, "limit"),
            ("GET", "/v1/publications?limit=101", None, 400, "limit"),
            (
                "POST",
                f"/v1/campaigns/{{campaign}}/vouchers?vouchers_count={TOO_MANY}",
                {},
                400,
                "count",
            ),
            (
                "POST",
                "/api/v1/identity-resolution/from-operation-result-tokens",
                ["t"] * 101,
                400,
                "at most 100 tokens",
            ),
        ],
    )
    def test_too_many_is_a_clear_4xx(
        self,
        db: Database,
        settings: Settings,
        method: str,
        path: str,
        body: Any,
        status: int,
        named: str,
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant).id
        app = create_app(settings, db=db)
        headers = {
            **tenant.headers,
            "X-App-Id": tenant.key.key_id,
            "X-App-Token": tenant.key.secret,
        }
        if isinstance(body, dict):
            body = {
                k: v.format(campaign=campaign) if isinstance(v, str) else v for k, v in body.items()
            }
        with TestClient(app, raise_server_exceptions=False) as client:
            response = client.request(
                method, path.format(campaign=campaign), headers=headers, json=body
            )
        assert response.status_code == status, response.text
        assert named in response.text

    @pytest.mark.parametrize(
        "path", ["/api/v1/redemptions", "/v1/validations", "/cvs-issuer/rest/coupons"]
    )
    def test_a_body_over_the_limit_is_a_413(self, api: TestClient, path: str) -> None:
        response = api.post(path, content=b"{" + b" " * (64 * 1024) + b"}")
        assert response.status_code == 413
        assert "body" in response.text
