"""Long-running operations: lifecycle, leases, retries, result download, isolation.

The worker side is exercised through ``run_due_operations`` itself, the function the worker
loop calls. Handlers other than the export's are registered in ``HANDLERS`` the way a feature
registers its own: they are real handlers written here, not stand-ins for voucherd code.
"""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.support.clock import FakeClock
from tests.support.operations import run_worker
from voucherd.composition import HANDLERS, run_due_operations
from voucherd.db.engine import Database
from voucherd.errors import InvalidInput
from voucherd.exports import service as exports
from voucherd.exports.rows import COLUMNS
from voucherd.exports.schemas import ExportRequest
from voucherd.exports.tasks import export_step
from voucherd.operations import steps
from voucherd.operations.models import Operation, OperationResultChunk
from voucherd.operations.runner import MAX_ATTEMPTS, claim_next
from voucherd.operations.service import get_operation, open_result, start_operation
from voucherd.operations.steps import LeaseLost, Run
from voucherd.vouchers.mint import mint_vouchers
from voucherd.vouchers.schemas import MintVouchers


def start(db: Database, tenant: Tenant, kind: str, parameters: dict[str, object]) -> str:
    with db.unit_of_work() as session:
        operation = start_operation(
            session,
            tenant_id=tenant.id,
            kind=kind,
            parameters=parameters,
            actor=tenant.caller.key_id,
            now=db.now(),
        )
        session.commit()
    return operation.id


def campaign_with_codes(db: Database, tenant: Tenant, count: int) -> str:
    campaign = make_campaign(db, tenant)
    mint_vouchers(db, tenant.caller, campaign.id, MintVouchers(count=count))
    return campaign.id


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> int:
    """Exports of a few vouchers take several steps, as a million do with the real size."""
    monkeypatch.setattr(exports, "BATCH_SIZE", 4)
    return 4


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, Callable[..., bool]], None]:
    def register(kind: str, step: Callable[[Database, Run], bool]) -> None:
        monkeypatch.setitem(HANDLERS, kind, step)

    return register


def counting_step(
    calls: list[int], fail_first: int = 0, error: Exception | None = None
) -> Callable[[Database, Run], bool]:
    """A handler of three steps that fails its first ``fail_first`` calls with ``error``."""

    def step(db: Database, run: Run) -> bool:
        calls.append(run.done)
        if len(calls) <= fail_first:
            raise error or RuntimeError("the upstream said no\nDETAIL: secret-code-ABC")
        with db.unit_of_work() as session:
            done = run.done + 1
            if done == 3:
                steps.complete(session, run, now=db.now(), done=done, result={"answer": 42})
            else:
                steps.advance(session, run, now=db.now(), done=done, total=3, checkpoint={})
            session.commit()
        return done == 3

    return step


class TestLifecycle:
    def test_processing_then_completed_with_progress(
        self, api: TestClient, db: Database, clock: FakeClock, small_batches: int
    ) -> None:
        tenant = make_tenant(db)
        campaign = campaign_with_codes(db, tenant, 10)

        started = api.post(f"/api/v1/campaigns/{campaign}/exports", headers=tenant.headers)

        assert started.status_code == 202, started.text
        operation = started.json()
        assert started.headers["location"] == f"/api/v1/operations/{operation['id']}"
        assert (operation["object"], operation["kind"], operation["status"]) == (
            "operation",
            "export",
            "Processing",
        )
        assert operation["progress"] == {"done": 0, "total": None}
        assert operation["result_url"] is None

        # One worker takes one step (4 of 10) and stops there.
        run = claim_next(db, "w1")
        assert run is not None
        assert run.operation_id == operation["id"]
        assert export_step(db, run) is False
        midway = api.get(f"/api/v1/operations/{operation['id']}", headers=tenant.headers).json()
        assert (midway["status"], midway["progress"]) == ("Processing", {"done": 4, "total": 10})

        # Its lease runs out; another worker finishes.
        clock.advance(seconds=db.settings.operation_lease_seconds + 1)
        assert run_worker(db, "w2") == 1

        done = api.get(f"/api/v1/operations/{operation['token']}", headers=tenant.headers).json()
        assert done["status"] == "Completed"
        assert done["progress"] == {"done": 10, "total": 10}
        assert done["result"]["rows"] == 10
        assert done["finished_at"] is not None
        assert done["result_url"] == f"/api/v1/operations/{operation['id']}/result"
        table = list(
            csv.reader(io.StringIO(api.get(done["result_url"], headers=tenant.headers).text))
        )
        assert tuple(table[0]) == COLUMNS
        assert len(table) == 11
        assert len({row[0] for row in table[1:]}) == 10

    def test_failed_when_the_kind_has_no_handler(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        operation_id = start(db, tenant, "no-such-kind", {})

        assert run_worker(db) == 1

        shown = api.get(f"/api/v1/operations/{operation_id}", headers=tenant.headers).json()
        assert shown["status"] == "Failed"
        assert "no-such-kind" in shown["error"]
        assert shown["finished_at"] is not None
        assert run_worker(db) == 0  # a Failed operation is never taken up again

    def test_a_domain_error_fails_at_once_with_its_reason(
        self, api: TestClient, db: Database, handler: Callable[..., None]
    ) -> None:
        tenant = make_tenant(db)
        calls: list[int] = []
        handler("refused", counting_step(calls, 1, InvalidInput("the order is closed")))
        operation_id = start(db, tenant, "refused", {})

        run_worker(db)

        shown = api.get(f"/api/v1/operations/{operation_id}", headers=tenant.headers).json()
        assert (shown["status"], shown["error"]) == ("Failed", "the order is closed")
        assert calls == [0]

    def test_an_unexpected_error_is_retried_with_backoff(
        self, api: TestClient, db: Database, clock: FakeClock, handler: Callable[..., None]
    ) -> None:
        tenant = make_tenant(db)
        calls: list[int] = []
        handler("flaky", counting_step(calls, fail_first=2))
        operation_id = start(db, tenant, "flaky", {})

        assert run_worker(db) == 1
        shown = api.get(f"/api/v1/operations/{operation_id}", headers=tenant.headers).json()
        assert (shown["status"], shown["attempts"]) == ("Processing", 1)
        # Only the first line: database errors carry values (codes, names) in the lines below.
        assert shown["error"] == "RuntimeError: the upstream said no"
        assert run_worker(db) == 0  # not due until its backoff has passed

        clock.advance(seconds=10)
        assert run_worker(db) == 1
        assert get_operation(db, tenant.caller, operation_id).attempts == 2
        clock.advance(seconds=19)
        assert run_worker(db) == 0  # the second wait is twice the first
        clock.advance(seconds=1)
        assert run_worker(db) == 1

        final = get_operation(db, tenant.caller, operation_id)
        assert (final.status, final.done, final.result) == ("Completed", 3, {"answer": 42})
        assert calls == [0, 0, 0, 1, 2]

    def test_gives_up_after_max_attempts(
        self, db: Database, clock: FakeClock, handler: Callable[..., None]
    ) -> None:
        tenant = make_tenant(db)
        handler("doomed", counting_step([], fail_first=99))
        operation_id = start(db, tenant, "doomed", {})

        for _ in range(MAX_ATTEMPTS):
            run_worker(db)
            clock.advance(hours=1)

        final = get_operation(db, tenant.caller, operation_id)
        assert final.status == "Failed"
        assert final.attempts == MAX_ATTEMPTS - 1
        assert final.last_error == (
            f"gave up after {MAX_ATTEMPTS} attempts; the last: RuntimeError: the upstream said no"
        )
        assert run_worker(db) == 0


class TestLeases:
    def test_a_stale_worker_cannot_write_after_another_took_over(
        self, db: Database, clock: FakeClock, small_batches: int
    ) -> None:
        tenant = make_tenant(db)
        campaign = campaign_with_codes(db, tenant, 10)
        operation = exports.start_export(db, tenant.caller, campaign, ExportRequest())
        stale = claim_next(db, "w1")
        assert stale is not None
        assert claim_next(db, "w2") is None  # leased: nobody else may take it meanwhile

        clock.advance(seconds=db.settings.operation_lease_seconds + 1)
        fresh = claim_next(db, "w2")
        assert fresh is not None
        assert fresh.attempts == 1

        with pytest.raises(LeaseLost):
            export_step(db, stale)
        assert export_step(db, fresh) is False
        with db.unit_of_work(write=False) as session:
            chunks = session.scalar(
                select(func.count()).where(OperationResultChunk.operation_id == operation.id)
            )
        assert chunks == 1  # the stale step wrote nothing

    def test_an_operation_abandoned_too_often_fails(
        self, db: Database, clock: FakeClock, handler: Callable[..., None]
    ) -> None:
        tenant = make_tenant(db)
        handler("crashy", counting_step([]))
        operation_id = start(db, tenant, "crashy", {})

        for _ in range(MAX_ATTEMPTS):
            assert claim_next(db, "dies") is not None  # ... and the worker vanishes
            clock.advance(seconds=db.settings.operation_lease_seconds + 1)
        run_worker(db)

        final = get_operation(db, tenant.caller, operation_id)
        assert final.status == "Failed"
        assert "stopped before finishing" in (final.last_error or "")

    def test_stop_hands_the_operation_back_with_its_progress(
        self, db: Database, handler: Callable[..., None]
    ) -> None:
        tenant = make_tenant(db)
        stop = threading.Event()
        inner = counting_step([])

        def step_then_stop(db: Database, run: Run) -> bool:
            stop.set()  # the worker is asked to shut down during this step
            return inner(db, run)

        handler("stoppable", step_then_stop)
        operation_id = start(db, tenant, "stoppable", {})

        assert run_due_operations(db, "w1", stop) == 1
        released = get_operation(db, tenant.caller, operation_id)
        assert (released.status, released.done, released.leased_by) == ("Processing", 1, None)
        assert run_due_operations(db, "w1", stop) == 0  # a stopped worker takes nothing

        handler("stoppable", inner)
        assert run_worker(db, "w2") == 1  # due at once: no lease to wait out
        assert get_operation(db, tenant.caller, operation_id).status == "Completed"


class TestResult:
    def test_not_ready_while_processing_and_none_when_failed(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        campaign = campaign_with_codes(db, tenant, 2)
        operation = exports.start_export(db, tenant.caller, campaign, ExportRequest())
        failed = start(db, tenant, "no-such-kind", {})

        early = api.get(f"/api/v1/operations/{operation.id}/result", headers=tenant.headers)
        run_worker(db)
        late = api.get(f"/api/v1/operations/{failed}/result", headers=tenant.headers)

        assert (early.status_code, early.json()["code"]) == (409, "operation_processing")
        assert (late.status_code, late.json()["code"]) == (409, "operation_failed")
        assert "no-such-kind" in late.json()["detail"]

    def test_an_operation_without_output_has_nothing_to_download(
        self, api: TestClient, db: Database, handler: Callable[..., None]
    ) -> None:
        tenant = make_tenant(db)
        handler("quiet", counting_step([]))
        operation_id = start(db, tenant, "quiet", {})
        run_worker(db)

        shown = api.get(f"/api/v1/operations/{operation_id}", headers=tenant.headers).json()
        answer = api.get(f"/api/v1/operations/{operation_id}/result", headers=tenant.headers)

        assert (shown["status"], shown["result_url"]) == ("Completed", None)
        assert answer.status_code == 404

    def test_a_large_result_is_stored_compressed_and_served_whole(
        self, api: TestClient, db: Database, small_batches: int
    ) -> None:
        tenant = make_tenant(db)
        campaign = campaign_with_codes(db, tenant, 30)
        operation = exports.start_export(db, tenant.caller, campaign, ExportRequest())
        run_worker(db)

        done = get_operation(db, tenant.caller, operation.id)
        download = open_result(db, tenant.caller, operation.id)
        body = b"".join(download.chunks)
        with db.unit_of_work(write=False) as session:
            stored = session.scalar(
                select(func.sum(func.length(OperationResultChunk.data))).where(
                    OperationResultChunk.operation_id == operation.id
                )
            )

        assert done.result is not None
        assert done.result["chunks"] == 8
        assert len(body) == download.size == done.result["size"]
        assert stored is not None
        assert stored < len(body)
        served = api.get(f"/api/v1/operations/{operation.id}/result", headers=tenant.headers)
        assert served.content == body
        assert served.headers["content-length"] == str(len(body))
        assert served.headers["content-disposition"].startswith("attachment; filename=")
        assert body.count(b"\r\n") == 31


class TestIsolationAndListing:
    def test_another_tenants_operation_is_not_found(self, api: TestClient, db: Database) -> None:
        owner, intruder = make_tenant(db), make_tenant(db)
        campaign = campaign_with_codes(db, owner, 2)
        operation = exports.start_export(db, owner.caller, campaign, ExportRequest())
        run_worker(db)

        for ref in (operation.id, operation.token):
            for path in (f"/api/v1/operations/{ref}", f"/api/v1/operations/{ref}/result"):
                answer = api.get(path, headers=intruder.headers)
                assert answer.status_code == 404, path
                assert answer.json()["errors"][0]["field"] == "operation"
        assert api.get("/api/v1/operations", headers=intruder.headers).json()["data"] == []
        mine = api.get("/api/v1/operations", headers=owner.headers).json()["data"]
        assert [o["id"] for o in mine] == [operation.id]

    def test_list_filters_and_pages(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        ids = [start(db, tenant, "no-such-kind", {"n": n}) for n in range(3)]
        run_worker(db)
        pending = start(db, tenant, "later", {})

        first = api.get("/api/v1/operations?limit=2", headers=tenant.headers).json()
        second = api.get(
            f"/api/v1/operations?limit=2&cursor={first['next_cursor']}", headers=tenant.headers
        ).json()
        failed = api.get("/api/v1/operations?status=Failed", headers=tenant.headers).json()
        later = api.get("/api/v1/operations?kind=later", headers=tenant.headers).json()
        wrong = api.get("/api/v1/operations?status=Done", headers=tenant.headers)

        assert [o["id"] for o in first["data"] + second["data"]] == [pending, *reversed(ids)]
        assert (first["has_more"], second["has_more"]) == (True, False)
        assert {o["id"] for o in failed["data"]} == set(ids)
        assert [o["id"] for o in later["data"]] == [pending]
        assert (wrong.status_code, wrong.json()["errors"][0]["field"]) == (422, "status")


class TestManyWorkers:
    @pytest.fixture
    def shared(self, fresh_database: Callable[..., Database]) -> Database:
        return fresh_database(pool_size=12)

    def test_each_operation_runs_once_to_completion(
        self, shared: Database, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(exports, "BATCH_SIZE", 7)
        tenant = make_tenant(shared)
        campaigns = [campaign_with_codes(shared, tenant, 40 + n) for n in range(6)]
        operations = [
            exports.start_export(shared, tenant.caller, c, ExportRequest()).id for c in campaigns
        ]

        def worker(name: str) -> None:
            while run_due_operations(shared, name, threading.Event()):
                pass

        threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not any(thread.is_alive() for thread in threads)

        for n, operation_id in enumerate(operations):
            done = get_operation(shared, tenant.caller, operation_id)
            assert (done.status, done.done, done.attempts) == ("Completed", 40 + n, 0)
            body = b"".join(open_result(shared, tenant.caller, operation_id).chunks)
            rows = list(csv.reader(io.StringIO(body.decode())))
            assert len(rows) == 41 + n
            assert len({r[1] for r in rows[1:]}) == 40 + n
        with shared.unit_of_work(write=False) as session:
            assert session.scalar(select(func.count()).select_from(Operation)) == 6
