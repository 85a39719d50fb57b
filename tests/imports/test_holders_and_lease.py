"""What an import leaves for the rules that come after it, and an all-or-nothing import that
outlasts its worker's lease.

* Imported holders are counted as publishing and issuing count them: ``join_once`` refuses a
  customer who brought a voucher of the campaign with the move, and ``per_customer_limit`` sees
  what a customer reference already holds.
* An all-or-nothing import is one step in one transaction; the step renews the lease as it
  goes, so no other worker takes the operation over mid-step (PostgreSQL: each renewal commits
  on its own; SQLite: the step's write lock keeps any claim out until it ends).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import make_tenant
from tests.support.clock import FakeClock
from tests.support.imports import csv_of, gift_rows, run_worker, to_csv
from voucherd.campaigns.models import CampaignCustomer
from voucherd.db.engine import Database
from voucherd.imports import service as imports
from voucherd.imports.reader import FileFormat
from voucherd.imports.tasks import import_step
from voucherd.operations.models import COMPLETED, Operation
from voucherd.operations.runner import claim_next
from voucherd.operations.steps import Run
from voucherd.publications.models import CampaignHolder
from voucherd.vouchers.mint import mint_vouchers
from voucherd.vouchers.models import Voucher
from voucherd.vouchers.schemas import MintVouchers


def _import(
    api: TestClient, db: Database, headers: dict[str, str], campaign: str, body: bytes
) -> Any:
    response = api.post(
        f"/api/v1/campaigns/{campaign}/imports",
        headers={**headers, "Content-Type": "text/csv"},
        content=body,
    )
    assert response.status_code == 202, response.text
    run_worker(db)
    shown = api.get(f"/api/v1/operations/{response.json()['id']}", headers=headers).json()
    assert shown["status"] == "Completed", shown
    return shown["result"]


def _held(code: str, source_id: str) -> dict[str, str]:
    return {"code": code, "value": "500", "customer_source_id": source_id, "channel": "sms"}


class TestImportedHolders:
    def test_join_once_refuses_a_customer_who_brought_a_voucher(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, default_value=500)
        mint_vouchers(db, tenant.caller, campaign.id, MintVouchers(count=3))
        body = csv_of([_held("MOVED-1", "alice"), _held("MOVED-2", "alice"), {"code": "FREE-1"}])
        assert _import(api, db, tenant.headers, campaign.id, body)["imported"] == 3

        again = api.post(
            "/api/v1/publications",
            headers=tenant.headers,
            json={"campaign": campaign.id, "customer": {"source_id": "alice"}, "join_once": True},
        )

        assert again.status_code == 409, again.text
        assert again.json()["code"] == "already_joined"
        with db.unit_of_work(write=False) as session:
            holder = session.execute(
                select(CampaignHolder.voucher_count, CampaignHolder.first_publication_id).where(
                    CampaignHolder.campaign_id == campaign.id
                )
            ).one()
        assert holder.voucher_count == 2
        assert again.json()["publication_id"] == holder.first_publication_id
        other = api.post(
            "/api/v1/publications",
            headers=tenant.headers,
            json={"campaign": campaign.id, "customer": {"source_id": "bob"}, "join_once": True},
        )
        assert other.status_code == 201, other.text

    def test_a_second_import_adds_to_the_count(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, default_value=500)
        _import(api, db, tenant.headers, campaign.id, csv_of([_held("A-1", "carol")]))
        _import(api, db, tenant.headers, campaign.id, csv_of([_held("A-2", "carol")]))
        # A re-run of the first file imports nothing, so counts nothing.
        _import(api, db, tenant.headers, campaign.id, csv_of([_held("A-1", "carol")]))
        with db.unit_of_work(write=False) as session:
            count = session.scalar(
                select(CampaignHolder.voucher_count).where(
                    CampaignHolder.campaign_id == campaign.id
                )
            )
        assert count == 2

    def test_per_customer_limit_sees_imported_vouchers(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, default_value=500, per_customer_limit=2)
        body = csv_of([_held("B-1", "dave"), _held("B-2", "dave"), _held("B-3", "erin")])
        assert _import(api, db, tenant.headers, campaign.id, body)["imported"] == 3

        refused = api.post(
            "/api/v1/vouchers",
            headers=tenant.headers,
            json={"campaign": campaign.id, "customer_ref": "dave"},
        )

        assert refused.status_code in (409, 422, 429), refused.text
        assert refused.json()["code"] == "customer_limit_reached"
        allowed = api.post(
            "/api/v1/vouchers",
            headers=tenant.headers,
            json={"campaign": campaign.id, "customer_ref": "erin"},
        )
        assert allowed.status_code == 201, allowed.text
        with db.unit_of_work(write=False) as session:
            counts = dict(
                session.execute(
                    select(CampaignCustomer.customer_ref, CampaignCustomer.issued_count).where(
                        CampaignCustomer.campaign_id == campaign.id
                    )
                ).all()
            )
        assert counts == {"dave": 2, "erin": 2}


class RivalClock(FakeClock):
    """Time that moves ``tick`` at every reading and, once armed, lets a rival worker try to
    claim the operation at every reading: what another worker would do at that moment."""

    def __init__(self, tick: float) -> None:
        super().__init__()
        self.tick = tick
        self.rival: Callable[[], None] | None = None
        self._inside = False

    def __call__(self) -> datetime:
        if self._inside:  # the rival's own reading: the same moment
            return self.current
        self.advance(seconds=self.tick)
        if self.rival is not None:
            self._inside = True
            try:
                self.rival()
            finally:
                self._inside = False
        return self.current


class TestAllOrNothingOutlastingItsLease:
    def test_no_other_worker_takes_it_over_mid_step(
        self, fresh_database: Callable[..., Database], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        clock = RivalClock(tick=0)
        db = fresh_database(pool_size=4, clock=clock)
        monkeypatch.setattr(imports, "IMPORT_BATCH", 10)  # 300 rows: 30 chunks
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, max_value=10_000)
        rows = gift_rows(300)
        operation = imports.start_import(
            db,
            tenant.caller,
            campaign.id,
            io.BytesIO(to_csv(rows)),
            file_format=FileFormat.CSV,
            all_or_nothing=True,
        )
        run = claim_next(db, "long")
        assert run is not None
        lease = db.settings.operation_lease_seconds
        # Each chunk reads the clock; 30 chunks at a fifth of the lease each last six leases.
        clock.tick = lease / 5
        stolen: list[Run] = []
        postgres = db.engine.dialect.name == "postgresql"

        def rival() -> None:
            if postgres:  # on SQLite a claim would wait on the step's write lock
                taken = claim_next(db, "rival")
                if taken is not None:
                    stolen.append(taken)

        clock.rival = rival
        assert import_step(db, run) is True
        clock.rival = None

        assert stolen == []
        with db.unit_of_work(write=False) as session:
            status, result = session.execute(
                select(Operation.status, Operation.result).where(Operation.id == operation.id)
            ).one()
            imported = session.scalar(
                select(Voucher.id).where(Voucher.campaign_id == campaign.id).limit(1)
            )
        assert status == COMPLETED
        assert (result["imported"], result["rolled_back"]) == (300, False)
        assert imported is not None
