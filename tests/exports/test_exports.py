"""CSV exports: columns, filters, publication for distribution, the API and the CLI.

The operation path runs through ``run_due_operations`` and the download route; the CLI path
through ``voucherd export`` itself (typer's runner) against a real migrated database.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from tests.factories.campaigns import make_campaign
from tests.factories.redemptions import make_redemption
from tests.factories.tenants import Tenant, make_tenant
from tests.factories.vouchers import issue
from tests.support.clock import FakeClock
from tests.support.concurrency import run_together
from tests.support.operations import run_worker
from voucherd.cli import app
from voucherd.db.engine import Database
from voucherd.exports import service as exports
from voucherd.exports.rows import COLUMNS
from voucherd.exports.schemas import ExportRequest
from voucherd.operations.service import get_operation, open_result
from voucherd.publications.models import Publication, PublicationVoucher
from voucherd.publications.pool import claim_pool, create_publication, publication_row
from voucherd.vouchers.mint import mint_vouchers
from voucherd.vouchers.models import Voucher
from voucherd.vouchers.schemas import MintVouchers
from voucherd.vouchers.service import cancel_voucher, disable_voucher

Rows = list[dict[str, str]]


def parse(body: bytes | str) -> Rows:
    text = body.decode() if isinstance(body, bytes) else body
    reader = csv.DictReader(io.StringIO(text, newline=""))
    assert tuple(reader.fieldnames or ()) == COLUMNS
    return list(reader)


def mint(db: Database, tenant: Tenant, campaign: str, count: int, **fields: Any) -> None:
    mint_vouchers(db, tenant.caller, campaign, MintVouchers(count=count, **fields))


def export_via_api(
    api: TestClient, db: Database, tenant: Tenant, campaign: str, body: dict[str, Any] | None
) -> tuple[dict[str, Any], Rows]:
    started = api.post(f"/api/v1/campaigns/{campaign}/exports", headers=tenant.headers, json=body)
    assert started.status_code == 202, started.text
    run_worker(db)
    operation = api.get(started.headers["location"], headers=tenant.headers).json()
    assert operation["status"] == "Completed", operation
    download = api.get(operation["result_url"], headers=tenant.headers)
    assert download.headers["content-type"] == "text/csv; charset=utf-8"
    return operation, parse(download.content)


def published_counts(db: Database, campaign: str) -> dict[str, int]:
    with db.unit_of_work(write=False) as session:
        rows = session.execute(
            select(Voucher.code, Voucher.published_count).where(Voucher.campaign_id == campaign)
        ).all()
    return {code: count for code, count in rows}


def publication_codes(db: Database, publication_id: str) -> tuple[str, set[str]]:
    with db.unit_of_work(write=False) as session:
        channel = session.scalar(
            select(Publication.channel).where(Publication.id == publication_id)
        )
        codes = session.scalars(
            select(Voucher.code)
            .join(PublicationVoucher, PublicationVoucher.voucher_id == Voucher.id)
            .where(PublicationVoucher.publication_id == publication_id)
        ).all()
    return str(channel), set(codes)


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(exports, "BATCH_SIZE", 4)
    return 4


class TestColumns:
    def test_every_voucher_once_with_its_columns(
        self, api: TestClient, db: Database, small_batches: int
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, name='Spring, "quoted"', default_value=2500)
        mint(db, tenant, campaign.id, 9)
        held = issue(
            db, tenant, campaign, customer_ref="alice", category="gold", metadata={"tier": 2}
        ).voucher
        make_redemption(db, tenant, code=held.code, amount=1000)

        operation, rows = export_via_api(api, db, tenant, campaign.id, None)

        assert len(rows) == 10
        assert len({r["code"] for r in rows}) == 10
        assert [r["voucher_id"] for r in rows] == sorted(r["voucher_id"] for r in rows)
        row = next(r for r in rows if r["voucher_id"] == held.id)
        assert row == {
            "code": held.code,
            "voucher_id": held.id,
            "campaign_id": campaign.id,
            "campaign": 'Spring, "quoted"',
            "type": "GIFT",
            "state": "ACTIVE",
            "currency": "EUR",
            "amount": "2500",
            "balance": "1500",
            "redemption_quantity": "",
            "redeemed_quantity": "1",
            "start_date": "",
            "expiration_date": "",
            "customer_ref": "alice",
            "customer_id": "",
            "published_count": "0",
            "category": "gold",
            "created_at": "2026-06-15T12:00:00Z",
            "metadata": '{"tier":2}',
        }
        assert operation["progress"] == {"done": 10, "total": 10}
        assert operation["result"]["rows"] == 10
        # A plain export publishes nothing.
        assert set(published_counts(db, campaign.id).values()) == {0}
        assert operation["result"]["publication_id"] is None

    def test_formula_like_values_are_neutralised(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, name="=HYPERLINK(1)")
        issue(db, tenant, campaign, code="-EVIL42", customer_ref="=cmd|' /C calc'!A0")
        issue(db, tenant, campaign, code="SAFE42", customer_ref="+1 555", category="@SUM(A1)")

        _, rows = export_via_api(api, db, tenant, campaign.id, None)

        by_code = {r["code"]: r for r in rows}
        assert set(by_code) == {"'-EVIL42", "SAFE42"}
        assert by_code["'-EVIL42"]["customer_ref"] == "'=cmd|' /C calc'!A0"
        assert by_code["SAFE42"]["customer_ref"] == "'+1 555"
        assert by_code["SAFE42"]["category"] == "'@SUM(A1)"
        assert {r["campaign"] for r in rows} == {"'=HYPERLINK(1)"}

    def test_an_empty_campaign_exports_the_header_only(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant)

        operation, rows = export_via_api(api, db, tenant, campaign.name, {"published": False})

        assert rows == []
        assert operation["progress"] == {"done": 0, "total": 0}
        assert operation["result"]["publication_id"] is None
        with db.unit_of_work(write=False) as session:  # no empty Export publication is left
            assert session.scalar(select(func.count()).select_from(Publication)) == 0


class TestFilters:
    @pytest.fixture
    def mixed(self, db: Database, clock: FakeClock) -> tuple[Tenant, str, dict[str, str]]:
        """One voucher in each state, named by its code."""
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant)
        states = {}
        for state in ("ACTIVE", "DISABLED", "REDEEMED", "CANCELLED", "EXPIRED"):
            expiry = clock() + timedelta(days=1) if state == "EXPIRED" else None
            voucher = issue(db, tenant, campaign, expiration_date=expiry).voucher
            states[voucher.code] = state
            if state == "DISABLED":
                disable_voucher(db, tenant.caller, voucher.id)
            elif state == "CANCELLED":
                cancel_voucher(db, tenant.caller, voucher.id)
            elif state == "REDEEMED":
                make_redemption(db, tenant, code=voucher.code, amount=5000)
        clock.advance(days=2)
        return tenant, campaign.id, states

    @pytest.mark.parametrize(
        ("state", "expected"),
        [
            (["ACTIVE"], {"ACTIVE"}),
            (["EXPIRED"], {"EXPIRED"}),
            (["REDEEMED", "CANCELLED"], {"REDEEMED", "CANCELLED"}),
            (None, {"ACTIVE", "DISABLED", "REDEEMED", "CANCELLED", "EXPIRED"}),
        ],
    )
    def test_by_effective_state(
        self,
        api: TestClient,
        db: Database,
        mixed: tuple[Tenant, str, dict[str, str]],
        state: list[str] | None,
        expected: set[str],
    ) -> None:
        tenant, campaign, states = mixed

        _, rows = export_via_api(api, db, tenant, campaign, {"state": state} if state else None)

        assert {r["state"] for r in rows} == expected
        assert all(states[r["code"]] == r["state"] for r in rows)

    def test_by_published_and_limit(
        self, api: TestClient, db: Database, small_batches: int
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant)
        mint(db, tenant, campaign.id, 10)
        with db.unit_of_work() as session:
            row = publication_row(
                tenant_id=tenant.id, channel="API", now=db.now(), campaign_id=campaign.id
            )
            publication = create_publication(session, row)
            assert publication is not None
            given = claim_pool(
                session,
                tenant_id=tenant.id,
                campaign_id=campaign.id,
                publication_id=publication,
                count=3,
                now=db.now(),
            )
            session.commit()

        _, published = export_via_api(api, db, tenant, campaign.id, {"published": True})
        _, peeked = export_via_api(
            api, db, tenant, campaign.id, {"published": False, "record_publication": False}
        )
        _, limited = export_via_api(api, db, tenant, campaign.id, {"limit": 6})

        assert {r["code"] for r in published} == {c.code for c in given}
        assert {r["published_count"] for r in published} == {"1"}
        assert len(peeked) == 7
        assert not {r["code"] for r in peeked} & {c.code for c in given}
        assert len(limited) == 6
        # Peeking took nothing: the seven are still unpublished.
        assert sorted(published_counts(db, campaign.id).values()) == [0] * 7 + [1] * 3


class TestForDistribution:
    def test_exported_codes_are_published_with_channel_export(
        self, api: TestClient, db: Database, small_batches: int
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant)
        mint(db, tenant, campaign.id, 10)

        operation, rows = export_via_api(api, db, tenant, campaign.id, {"published": False})

        publication = operation["result"]["publication_id"]
        assert (operation["entity_type"], operation["entity_id"]) == ("publication", publication)
        assert len(rows) == 10
        assert {r["published_count"] for r in rows} == {"1"}
        assert publication_codes(db, publication) == ("Export", {r["code"] for r in rows})
        assert set(published_counts(db, campaign.id).values()) == {1}
        # Nothing is left to distribute: a second export for distribution is empty.
        again, none = export_via_api(api, db, tenant, campaign.id, {"published": False})
        assert none == []
        assert again["result"]["publication_id"] is None

    def test_only_the_pool_and_up_to_the_limit(
        self, api: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant)
        mint(db, tenant, campaign.id, 5)
        mint(db, tenant, campaign.id, 2, expiration_date=clock() + timedelta(hours=1))
        disabled = issue(db, tenant, campaign).voucher
        disable_voucher(db, tenant.caller, disabled.id)
        clock.advance(hours=2)

        _, first = export_via_api(api, db, tenant, campaign.id, {"published": False, "limit": 3})
        _, rest = export_via_api(api, db, tenant, campaign.id, {"published": False})

        assert (len(first), len(rest)) == (3, 2)
        assert {r["state"] for r in first + rest} == {"ACTIVE"}
        assert not {r["code"] for r in first} & {r["code"] for r in rest}
        assert published_counts(db, campaign.id)[disabled.code] == 0

    def test_a_resumed_export_hands_out_each_code_once(
        self, api: TestClient, db: Database, clock: FakeClock, small_batches: int
    ) -> None:
        from voucherd.exports.tasks import export_step
        from voucherd.operations.runner import claim_next

        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant)
        mint(db, tenant, campaign.id, 10)
        operation = exports.start_export(
            db, tenant.caller, campaign.id, ExportRequest(published=False)
        )
        dying = claim_next(db, "w1")
        assert dying is not None
        assert export_step(db, dying) is False  # 4 codes taken and stored; then w1 dies
        clock.advance(seconds=db.settings.operation_lease_seconds + 1)

        run_worker(db, "w2")

        done = get_operation(db, tenant.caller, operation.id)
        rows = parse(b"".join(open_result(db, tenant.caller, operation.id).chunks))
        assert (done.status, done.done, done.attempts) == ("Completed", 10, 1)
        assert len(rows) == len({r["code"] for r in rows}) == 10
        assert publication_codes(db, done.result["publication_id"])[1] == {  # type: ignore[index]
            r["code"] for r in rows
        }
        assert set(published_counts(db, campaign.id).values()) == {1}

    def test_races_with_publications_never_share_a_code(
        self, fresh_database: Callable[..., Database], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """While an export for distribution runs, four clients publish from the same pool."""
        monkeypatch.setattr(exports, "BATCH_SIZE", 50)
        db = fresh_database(pool_size=8)
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant).id
        mint(db, tenant, campaign, 1500)
        operation = exports.start_export(
            db, tenant.caller, campaign, ExportRequest(published=False)
        )
        claimed: list[set[str]] = [set() for _ in range(4)]

        def publisher(mine: set[str]) -> None:
            # Start once the export has a batch in hand: on a loaded machine the worker thread
            # could otherwise start after the publishers had drained the pool, and there would
            # be no race to check.
            deadline = time.monotonic() + 60
            while get_operation(db, tenant.caller, operation.id).done == 0:
                assert time.monotonic() < deadline, "the export never started"
                time.sleep(0.005)
            while True:
                with db.unit_of_work() as session:
                    publication = create_publication(
                        session, publication_row(tenant_id=tenant.id, channel="API", now=db.now())
                    )
                    assert publication is not None
                    codes = claim_pool(
                        session,
                        tenant_id=tenant.id,
                        campaign_id=campaign,
                        publication_id=publication,
                        count=7,
                        now=db.now(),
                    )
                    session.commit()
                mine.update(c.code for c in codes)
                if not codes:
                    return

        run_together(
            [partial(run_worker, db, "exporter")] + [partial(publisher, m) for m in claimed]
        )

        exported = {
            r["code"] for r in parse(b"".join(open_result(db, tenant.caller, operation.id).chunks))
        }
        published_elsewhere = set().union(*claimed)
        assert exported, "the export took nothing"
        assert published_elsewhere, "the publishers took nothing: they did not race"
        assert exported.isdisjoint(published_elsewhere)
        assert sum(len(c) for c in claimed) == len(published_elsewhere)
        assert len(exported | published_elsewhere) == 1500
        assert set(published_counts(db, campaign).values()) == {1}


class TestRequests:
    def test_refusals_name_the_field(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant).id
        url = f"/api/v1/campaigns/{campaign}/exports"

        cases = [
            ({"published": False, "state": ["DISABLED"]}, 422, "state"),
            ({"state": ["LOST"]}, 422, "state.0"),
            ({"state": []}, 422, "state"),
            ({"limit": 0}, 422, "limit"),
            ({"published": "no"}, 422, "published"),
            ({"format": "xlsx"}, 422, "format"),
        ]
        for body, status, field in cases:
            answer = api.post(url, headers=tenant.headers, json=body)
            assert answer.status_code == status, (body, answer.text)
            assert answer.json()["errors"][0]["field"] == field, body
        missing = api.post("/api/v1/campaigns/nope/exports", headers=tenant.headers)
        assert (missing.status_code, missing.json()["errors"][0]["field"]) == (404, "campaign")
        assert api.get("/api/v1/operations", headers=tenant.headers).json()["data"] == []

    def test_idempotency_key_starts_one_operation(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant).id
        headers = {**tenant.headers, "Idempotency-Key": "export-1"}
        url = f"/api/v1/campaigns/{campaign}/exports"

        first = api.post(url, headers=headers, json={"published": False})
        again = api.post(url, headers=headers, json={"published": False})
        other = api.post(url, headers=headers, json={"published": True})

        assert (first.status_code, again.status_code) == (202, 202)
        assert again.json()["id"] == first.json()["id"]
        assert again.headers["idempotent-replayed"] == "true"
        assert other.status_code == 422
        assert len(api.get("/api/v1/operations", headers=tenant.headers).json()["data"]) == 1

    def test_needs_the_issue_scope(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant).id
        reader = tenant.key_with(db, ["redeem", "manage"])

        answer = api.post(f"/api/v1/campaigns/{campaign}/exports", headers=reader)

        assert (answer.status_code, answer.json()["code"]) == (403, "forbidden")


class TestCommandLine:
    @pytest.fixture
    def shared(self, fresh_database: Callable[..., Database]) -> Database:
        return fresh_database(pool_size=4)

    def run(self, db: Database, *args: str) -> Any:
        env = {"VOUCHERD_DATABASE_URL": db.settings.database_url}
        return CliRunner().invoke(app, ["export", *args], env=env)

    def test_exports_to_a_file_and_publishes_for_distribution(
        self, shared: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(exports, "BATCH_SIZE", 7)
        tenant = make_tenant(shared)
        campaign = make_campaign(shared, tenant, name="Autumn")
        mint(shared, tenant, campaign.id, 25)
        target = tmp_path / "codes.csv"

        done = self.run(
            shared,
            "--tenant",
            tenant.name,
            "--campaign",
            "Autumn",
            "--unpublished",
            "-o",
            str(target),
        )

        assert done.exit_code == 0, done.output
        rows = parse(target.read_bytes())
        assert len(rows) == len({r["code"] for r in rows}) == 25
        assert "exported 25 vouchers" in done.output
        assert "25/25" in done.output  # the progress bar's last state
        publication = done.output.split("published (channel Export) in ")[1].split()[0]
        assert publication_codes(shared, publication) == ("Export", {r["code"] for r in rows})
        assert set(published_counts(shared, campaign.id).values()) == {1}

    def test_filters_to_stdout(self, shared: Database) -> None:
        tenant = make_tenant(shared)
        campaign = make_campaign(shared, tenant)
        mint(shared, tenant, campaign.id, 3)
        disabled = issue(shared, tenant, campaign).voucher
        disable_voucher(shared, tenant.caller, disabled.id)

        done = self.run(
            shared, "--tenant", tenant.name, "--campaign", campaign.id, "--state", "DISABLED"
        )

        assert done.exit_code == 0, done.output
        assert [r["code"] for r in parse(done.stdout)] == [disabled.code]
        assert set(published_counts(shared, campaign.id).values()) == {0}

    def test_clear_errors(self, shared: Database, tmp_path: Path) -> None:
        tenant = make_tenant(shared)
        make_campaign(shared, tenant, name="Winter")

        unknown = self.run(shared, "--tenant", tenant.name, "--campaign", "Summer")
        both = self.run(
            shared, "--tenant", tenant.name, "--campaign", "Winter", "--published", "--unpublished"
        )
        bad_state = self.run(
            shared, "--tenant", tenant.name, "--campaign", "Winter", "--state", "LOST"
        )

        assert unknown.exit_code == 1
        assert "no campaign" in unknown.output
        assert both.exit_code == 2
        assert "not both" in both.output
        assert bad_state.exit_code == 2
