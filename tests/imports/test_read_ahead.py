"""An import's next chunk is read and judged in a thread while the current one is written
(imports.tasks.ReadAhead): a hint that must never change what is imported.

These run on databases whose units of work really commit (``fresh_database``), the only kind a
second connection, the read-ahead's, can see into. Each file spans many chunks, so nearly every
step takes a chunk the thread prepared; and the checks are the import's own: every good row in
once with its ledger, every bad row named by its line, the campaign's terms as they are when
the chunk is written, not when it was read ahead.
"""

from __future__ import annotations

import csv
import io
import zlib
from collections.abc import Callable

import pytest
from sqlalchemy import func, select, update

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import make_tenant
from tests.support.imports import gift_rows, run_worker, to_csv
from voucherd.campaigns.models import Campaign
from voucherd.db.engine import Database
from voucherd.imports import service as imports
from voucherd.imports.reader import FileFormat
from voucherd.imports.tasks import READ_AHEAD, import_step
from voucherd.operations.models import COMPLETED, Operation, OperationResultChunk
from voucherd.operations.runner import claim_next
from voucherd.vouchers.models import LedgerEntry, Voucher


@pytest.fixture
def db(fresh_database: Callable[..., Database], monkeypatch: pytest.MonkeyPatch) -> Database:
    monkeypatch.setattr(imports, "IMPORT_BATCH", 10)  # a file of 100 rows is 10 chunks
    return fresh_database(pool_size=4)


def _result(db: Database, operation_id: str) -> tuple[str, dict[str, object], list[list[str]]]:
    with db.unit_of_work(write=False) as session:
        status, result = session.execute(
            select(Operation.status, Operation.result).where(Operation.id == operation_id)
        ).one()
        chunks = session.scalars(
            select(OperationResultChunk.data)
            .where(OperationResultChunk.operation_id == operation_id)
            .order_by(OperationResultChunk.seq)
        ).all()
    text = b"".join(zlib.decompress(chunk) for chunk in chunks).decode()
    return status, result, list(csv.reader(io.StringIO(text)))


def _unbalanced(db: Database, campaign_id: str) -> int:
    ledger = (
        select(LedgerEntry.voucher_id, func.sum(LedgerEntry.delta).label("total"))
        .group_by(LedgerEntry.voucher_id)
        .subquery()
    )
    with db.unit_of_work(write=False) as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(Voucher)
                .join(ledger, ledger.c.voucher_id == Voucher.id)
                .where(Voucher.campaign_id == campaign_id, Voucher.balance != ledger.c.total)
            )
            or 0
        )


class TestReadAhead:
    def test_every_chunk_after_the_first_is_prepared_and_nothing_changes(
        self, db: Database
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, max_value=10_000)
        rows = gift_rows(100)
        body = to_csv(rows).decode().splitlines()
        # Bad rows spread over the chunks: a value above the campaign's maximum, a bad date.
        body[15] = body[15].replace(",5000,", ",20000,", 1)
        body[57] = body[57].replace("2027-12-31", "2027-13-45")
        body[98] = body[98].replace(",5000,", ",-5,", 1)
        used = READ_AHEAD.used

        operation = imports.start_import(
            db, tenant.caller, campaign.id, io.BytesIO(("\n".join(body) + "\n").encode()),
            file_format=FileFormat.CSV,
        )  # fmt: skip
        run_worker(db)

        status, result, problems = _result(db, operation.id)
        assert status == COMPLETED
        assert (result["imported"], result["rejected"]) == (97, 3)
        # The file's lines 16, 58 and 99 (the header is line 1), in order, by column.
        assert [(p[0], p[1]) for p in problems[1:]] == [
            ("16", "value"), ("58", "expiration_date"), ("99", "value"),
        ]  # fmt: skip
        assert _unbalanced(db, campaign.id) == 0
        with db.unit_of_work(write=False) as session:
            stored = session.scalar(
                select(func.count()).select_from(Voucher).where(Voucher.campaign_id == campaign.id)
            )
        assert stored == 97
        # Ten chunks: the first is read by its step, the nine after it were prepared ahead.
        assert READ_AHEAD.used - used == 9

    def test_a_chunk_read_ahead_is_judged_again_when_the_campaign_changed_meanwhile(
        self, db: Database
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, max_value=10_000)
        operation = imports.start_import(
            db, tenant.caller, campaign.id, io.BytesIO(to_csv(gift_rows(30))),
            file_format=FileFormat.CSV,
        )  # fmt: skip
        run = claim_next(db, "worker")
        assert run is not None
        assert import_step(db, run) is False  # chunk 0 written, chunk 1 prepared meanwhile
        with db.unit_of_work() as session:  # every row's value (5000) is now above the maximum
            session.execute(
                update(Campaign).where(Campaign.id == campaign.id).values(max_value=100)
            )
            session.commit()
        used = READ_AHEAD.used
        while not import_step(db, run):
            pass

        status, result, problems = _result(db, operation.id)
        assert status == COMPLETED
        assert (result["imported"], result["rejected"]) == (10, 20)
        assert {p[1] for p in problems[1:]} == {"value"}
        assert [int(p[0]) for p in problems[1:]] == list(range(12, 32))
        # Chunk 1 was prepared against the old maximum and judged again; chunk 2 was prepared
        # against the new one and taken.
        assert READ_AHEAD.used - used == 1
