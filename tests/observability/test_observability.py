"""Metrics, request ids, JSON logs and readiness, through the real app on both databases."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant
from tests.support.clock import FakeClock
from tests.support.delivery import (
    PHONE,
    TWILIO_SID,
    TWILIO_TOKEN,
    Provider,
    deliver_due,
    settings_for,
    with_all_channels,
)
from voucherd.app import create_app
from voucherd.config import Settings
from voucherd.db.engine import Database, make_engine
from voucherd.delivery.callbacks import twilio_signature
from voucherd.observability.logs import formatter

Lines = Callable[[], list[dict[str, Any]]]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient) -> Samples:
    answer = client.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return parse(answer.text)


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Every record at DEBUG, formatted as production formats it: when emitted, in its context."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter("json"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines() if line]
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def settings(provider: Provider) -> Settings:
    return settings_for(provider)


class TestMetrics:
    def test_core_counters_move_with_committed_use_cases(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        campaign = make_campaign(db, tenant)
        before = scrape(api)
        issued = api.post(
            "/api/v1/vouchers", headers=tenant.headers, json={"campaign": campaign.id}
        )
        assert issued.status_code == 201
        code = issued.json()["code"]
        minted = api.post(
            f"/api/v1/campaigns/{campaign.id}/vouchers", headers=tenant.headers, json={"count": 3}
        )
        assert minted.status_code == 201, minted.text
        redeemed = api.post(
            "/api/v1/redemptions", headers=tenant.headers, json={"code": code, "amount": 100}
        )
        assert redeemed.status_code == 201, redeemed.text
        rolled = api.post(
            f"/api/v1/redemptions/{redeemed.json()['id']}/rollback", headers=tenant.headers
        )
        assert rolled.status_code == 200, rolled.text
        refused = api.post(
            "/api/v1/redemptions", headers=tenant.headers, json={"code": code, "amount": 10**9}
        )
        assert refused.status_code >= 400
        after = scrape(api)

        def moved(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        assert moved("voucherd_vouchers_issued_total", how="issue") == 1
        assert moved("voucherd_vouchers_issued_total", how="mint") == 3
        # The refused redemption committed nothing and counts nothing.
        assert moved("voucherd_redemptions_total", action="redeem") == 1
        assert moved("voucherd_redemptions_total", action="rollback") == 1
        assert (
            moved(
                "voucherd_http_requests_total",
                method="POST",
                route="/api/v1/vouchers",
                status="201",
            )
            == 1
        )
        assert (
            moved(
                "voucherd_http_request_duration_seconds_count",
                method="POST",
                route="/api/v1/vouchers",
            )
            == 1
        )
        assert (
            moved(
                "voucherd_http_requests_total",
                method="POST",
                route="/api/v1/redemptions/{redemption_id}/rollback",
                status="200",
            )
            == 1
        )

    def test_vouchers_minted_inside_another_use_case_count_once_committed(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        campaign = make_campaign(db, tenant, mode="AUTO_UPDATE")
        before = scrape(api)
        published = api.post(
            "/api/v1/publications",
            headers=tenant.headers,
            json={"campaign": campaign.id, "count": 3, "customer": {"source_id": "c-1"}},
        )
        assert published.status_code == 201, published.text
        refused = api.post(
            "/api/v1/publications",
            headers=tenant.headers,
            json={"campaign": campaign.id, "count": 10**9, "customer": {"source_id": "c-2"}},
        )
        assert refused.status_code >= 400
        after = scrape(api)
        minted = value(after, "voucherd_vouchers_issued_total", how="mint") - value(
            before, "voucherd_vouchers_issued_total", how="mint"
        )
        assert minted == 3

    def test_routes_are_templates_never_paths(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        campaign = make_campaign(db, tenant)
        code = api.post(
            "/api/v1/vouchers", headers=tenant.headers, json={"campaign": campaign.id}
        ).json()["code"]
        assert api.get(f"/api/v1/vouchers/{code}", headers=tenant.headers).status_code == 200
        assert api.get("/api/v1/vouchers/NOSUCHCODE42", headers=tenant.headers).status_code == 404
        assert api.get("/nowhere/NOSUCHCODE42").status_code == 404
        text = api.get("/metrics").text
        assert code not in text
        assert "NOSUCHCODE42" not in text
        assert campaign.id not in text
        samples = parse(text)
        routes = {dict(labels).get("route") for _, labels in samples}
        assert "/api/v1/vouchers/{voucher}" in routes
        assert "<unmatched>" in routes
        assert all(r is None or r == "<unmatched>" or r.startswith("/") for r in routes)

    def test_outbox_depth_age_and_delivery_outcomes(
        self, api: TestClient, db: Database, tenant: Tenant, provider: Provider, clock: FakeClock
    ) -> None:
        with_all_channels(db, tenant, provider)
        campaign = make_campaign(db, tenant)
        before = scrape(api)
        for _ in range(2):
            issued = api.post(
                "/api/v1/vouchers",
                headers=tenant.headers,
                json={
                    "campaign": campaign.id,
                    "delivery": {"channel": "phone", "recipient": PHONE},
                },
            )
            assert issued.status_code == 201, issued.text
        clock.advance(seconds=90)
        waiting = scrape(api)
        assert value(waiting, "voucherd_metrics_database_up") == 1
        assert value(waiting, "voucherd_outbox_deliveries", state="PENDING") == 2
        assert value(waiting, "voucherd_outbox_deliveries", state="SENDING") == 0
        assert value(waiting, "voucherd_outbox_oldest_due_age_seconds") == 90

        provider.script("sms", *[])  # the default answer: accepted
        assert deliver_due(db) == 2
        after = scrape(api)
        assert value(after, "voucherd_outbox_deliveries", state="PENDING") == 0
        assert value(after, "voucherd_outbox_oldest_due_age_seconds") == 0
        sent = value(after, "voucherd_deliveries_total", channel="sms", outcome="SENT") - value(
            before, "voucherd_deliveries_total", channel="sms", outcome="SENT"
        )
        assert sent == 2

        # Twilio reports one delivered, through the status callback our SMS carried.
        callback = provider.of("sms")[-1].form()["StatusCallback"]
        params = {"AccountSid": TWILIO_SID, "MessageSid": "SM" + "f" * 32}
        params["MessageStatus"] = "delivered"
        signature = twilio_signature(TWILIO_TOKEN, callback, list(params.items()))
        answer = api.post(
            callback.removeprefix("https://vouchers.example"),
            content=urlencode(params),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
            },
        )
        assert answer.status_code < 300, answer.text
        receipts = scrape(api)
        labels = {"channel": "sms", "outcome": "DELIVERED"}
        delivered = value(receipts, "voucherd_deliveries_total", **labels)
        assert delivered - value(before, "voucherd_deliveries_total", **labels) == 1

    def test_operations_in_progress_with_done_and_total(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        campaign = make_campaign(db, tenant)
        api.post(
            f"/api/v1/campaigns/{campaign.id}/vouchers", headers=tenant.headers, json={"count": 5}
        )
        started = api.post(
            f"/api/v1/campaigns/{campaign.id}/exports", headers=tenant.headers, json={}
        )
        assert started.status_code == 202, started.text
        samples = scrape(api)
        assert value(samples, "voucherd_operations_in_progress", kind="export") == 1
        assert value(samples, "voucherd_operations_items_done", kind="export") == 0

    def test_a_scrape_while_the_database_is_down_says_so(
        self, tmp_path: Path, settings: Settings
    ) -> None:
        url = "postgresql://postgres@127.0.0.1:1/none"
        down = Database(
            make_engine(url), settings=settings.model_copy(update={"database_url": url})
        )
        with TestClient(create_app(down.settings, db=down)) as client:
            samples = scrape(client)
        down.dispose()
        assert value(samples, "voucherd_metrics_database_up") == 0
        assert ("voucherd_outbox_oldest_due_age_seconds", frozenset()) not in samples


class TestRequestId:
    def test_a_plain_id_is_echoed_and_a_missing_one_made(self, api: TestClient) -> None:
        given = api.get(
            "/healthz", headers={"X-Request-Id": "0f8fad5b-d9cb-469f-a165-70867728950e"}
        )
        assert given.headers["X-Request-Id"] == "0f8fad5b-d9cb-469f-a165-70867728950e"
        made = api.get("/healthz").headers["X-Request-Id"]
        assert len(made) == 32
        assert made != api.get("/healthz").headers["X-Request-Id"]

    @pytest.mark.parametrize(
        "unsafe",
        ["has spaces in it", "x" * 65, "short", "<script>alert(1)</script>", "a\tb-cdefgh"],
    )
    def test_an_unsafe_id_is_replaced(self, api: TestClient, unsafe: str) -> None:
        answer = api.get("/healthz", headers={"X-Request-Id": unsafe})
        assert answer.headers["X-Request-Id"] != unsafe
        assert len(answer.headers["X-Request-Id"]) == 32

    def test_every_face_and_every_refusal_carries_it(
        self, client: TestClient, tenant: Tenant
    ) -> None:
        cases = [
            client.get("/api/v1/campaigns"),  # 401
            client.get("/api/v1/vouchers/NOPE", headers=tenant.headers),  # 404
            client.post("/api/v1/vouchers", headers=tenant.headers, json={}),  # 422
            client.post(
                "/api/v1/vouchers",
                headers={**tenant.headers, "Content-Type": "application/json"},
                content=b"{",
            ),  # 400
            client.post(
                "/api/v1/vouchers", headers=tenant.headers, content=b"x" * (65 * 1024)
            ),  # 413 from the body limit
            client.get("/api/v1/vouchers/a%00b", headers=tenant.headers),  # 400 NUL in the URL
            client.get("/nowhere"),  # 404 unmatched
            client.delete("/healthz"),  # 405
            client.post("/cvs-issuer/rest/coupons", content=b"{}"),  # Yoyo, no credentials
            client.get("/v1/vouchers/NOPE"),  # Voucherify, no credentials
            client.post("/VoucherRequest/Request", content=b"<x/>"),  # i-movo
            client.get("/api/v1/voucher-management/vouchers/NOPE"),  # Vista
            client.get("/v/not-a-token"),  # voucher page
        ]
        statuses = {c.status_code for c in cases}
        assert {400, 401, 404, 405, 413, 422} <= statuses
        samples = scrape(client)
        # Refused before routing, still named by the route they were meant for.
        for method, route, status in [
            ("POST", "/api/v1/vouchers", "413"),
            ("GET", "/api/v1/vouchers/{voucher}", "400"),
            ("DELETE", "/healthz", "405"),
            ("GET", "<unmatched>", "404"),
        ]:
            labels = {"method": method, "route": route, "status": status}
            assert value(samples, "voucherd_http_requests_total", **labels) >= 1, labels
        for answer in cases:
            assert len(answer.headers.get("X-Request-Id", "")) == 32, (
                answer.request.url.path,
                answer.status_code,
            )

    def test_an_unhandled_error_is_a_500_problem_with_the_id_and_logged_with_it(
        self, db: Database, settings: Settings, log_lines: Lines
    ) -> None:
        app = create_app(settings, db=db)

        def explode() -> None:
            raise RuntimeError("boom")

        app.add_api_route("/test/explode/{thing}", explode)
        with TestClient(app, raise_server_exceptions=False) as client:
            answer = client.get(
                "/test/explode/SECRETPATH", headers={"X-Request-Id": "trace-12345678"}
            )
        assert answer.status_code == 500
        assert answer.headers["X-Request-Id"] == "trace-12345678"
        assert answer.json()["code"] == "internal_error"
        lines = [line for line in log_lines() if not line["logger"].startswith("httpx2")]
        access = [line for line in lines if line["logger"] == "voucherd.access"]
        assert access[-1]["status"] == 500
        assert access[-1]["route"] == "/test/explode/{thing}"
        errors = [line for line in lines if line["logger"] == "voucherd.api"]
        assert errors
        assert errors[0]["request_id"] == "trace-12345678"
        assert "RuntimeError: boom" in errors[0]["exception"]
        assert all("SECRETPATH" not in json.dumps(line) for line in lines)


class TestLogs:
    def test_one_access_line_per_request_as_json(
        self, api: TestClient, tenant: Tenant, log_lines: Lines
    ) -> None:
        api.get("/api/v1/campaigns", headers={**tenant.headers, "X-Request-Id": "req-abcdef01"})
        access = [line for line in log_lines() if line["logger"] == "voucherd.access"]
        assert len(access) == 1
        line = access[0]
        assert line["request_id"] == "req-abcdef01"
        assert line["method"] == "GET"
        assert line["route"] == "/api/v1/campaigns"
        assert line["status"] == 200
        assert line["tenant_id"] == tenant.id
        assert line["level"] == "info"
        assert isinstance(line["duration_ms"], float)
        assert "time" in line
        assert "message" in line
        assert tenant.key.secret not in json.dumps(line)

    def test_lines_logged_while_serving_carry_the_request_id(
        self, db: Database, settings: Settings, log_lines: Lines
    ) -> None:
        app = create_app(settings, db=db)

        def work() -> dict[str, str]:  # a sync route: it runs on a worker thread
            logging.getLogger("voucherd.test").warning("working")
            return {}

        app.add_api_route("/test/work", work)
        with TestClient(app) as client:
            client.get("/test/work", headers={"X-Request-Id": "req-work-0001"})
        line = next(line for line in log_lines() if line["logger"] == "voucherd.test")
        assert line["request_id"] == "req-work-0001"
        assert line["message"] == "working"

    def test_the_console_format_is_text(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO)
        logging.getLogger("voucherd.test").info("plain %s", "words")
        text = formatter("console").format(caplog.records[-1])
        assert "plain words" in text
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)


class TestReadiness:
    def test_ready_when_migrated(self, fresh_database: Callable[..., Database]) -> None:
        db = fresh_database(pool_size=2)
        with TestClient(create_app(db.settings, db=db)) as client:
            answer = client.get("/readyz")
        assert answer.status_code == 200
        assert answer.json() == {"status": "ready", "database": "ok", "migrations": "current"}

    def test_not_ready_when_not_migrated_or_unreachable(
        self, tmp_path: Path, settings: Settings
    ) -> None:
        empty = Database(make_engine(f"sqlite:///{tmp_path / 'empty.db'}"), settings=settings)
        url = "postgresql://postgres@127.0.0.1:1/none"
        down = Database(make_engine(url), settings=settings)
        try:
            for database, expected in ((empty, "behind"), (down, None)):
                with TestClient(create_app(settings, db=database)) as client:
                    answer = client.get("/readyz")
                assert answer.status_code == 503
                body = answer.json()
                assert body["status"] == "not ready"
                if expected:
                    assert body["migrations"] == expected
                else:
                    assert body["database"].startswith("unreachable")
        finally:
            empty.dispose()
            down.dispose()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_for(url: str, process: subprocess.Popen[bytes]) -> None:
    """Until ``url`` answers (or the process died): waiting, not timing anything."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args} exited: {process.communicate()[0].decode()}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"{url} never answered")


def _stop(process: subprocess.Popen[bytes]) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.communicate(timeout=60)[0].decode(errors="replace")
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()[0].decode(errors="replace")


class TestProcesses:
    def test_serve_workers_add_up_and_a_worker_serves_its_own_metrics(self, tmp_path: Path) -> None:
        env = {
            **{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
            "VOUCHERD_DATABASE_URL": f"sqlite:///{tmp_path / 'v.db'}",
            "VOUCHERD_WORKER_POLL_SECONDS": "0.2",
            "VOUCHERD_LOG_LEVEL": "INFO",
            "TMPDIR": str(tmp_path),  # where serve makes the processes' shared metrics directory
        }
        api_port, worker_port = _free_port(), _free_port()
        voucherd = [sys.executable, "-m", "voucherd"]
        serve = subprocess.Popen(
            [*voucherd, "serve", "--workers", "2", "--no-worker", "--port", str(api_port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        worker = None
        try:
            base = f"http://127.0.0.1:{api_port}"
            _wait_for(f"{base}/healthz", serve)
            requests = 40
            with httpx.Client() as client:  # a new connection each time spreads the processes
                for _ in range(requests):
                    client.get(f"{base}/healthz", headers={"Connection": "close"})
                scraped = parse(client.get(f"{base}/metrics").text)
                client.get(f"{base}/api/v1/campaigns")  # a 401: logged at INFO
            # Whichever process answered the scrape, it counted every process's requests.
            answered = value(
                scraped,
                "voucherd_http_requests_total",
                method="GET",
                route="/healthz",
                status="200",
            )
            assert answered >= requests
            assert value(scraped, "voucherd_metrics_database_up") == 1
            [shared] = tmp_path.glob("voucherd-metrics-*")
            assert list(shared.glob("counter_*.db"))

            worker = subprocess.Popen(
                [*voucherd, "worker", "--metrics-port", str(worker_port)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            _wait_for(f"http://127.0.0.1:{worker_port}/metrics", worker)
            own = httpx.get(f"http://127.0.0.1:{worker_port}/metrics").text
            assert "# TYPE voucherd_deliveries_total counter" in own
            assert "process_cpu_seconds_total" in own
        finally:
            out = _stop(serve)
            if worker is not None:
                out += _stop(worker)
        assert not list(tmp_path.glob("voucherd-metrics-*")), "serve leaves no directory behind"
        json_lines = [line for line in out.splitlines() if line.startswith("{")]
        access = [json.loads(line) for line in json_lines if '"voucherd.access"' in line]
        assert access, out  # JSON lines from the served processes, by default
        assert all(len(line["request_id"]) == 32 for line in access)
