"""Imports: bringing a platform's live vouchers in, as they are, from CSV or JSON lines.

Two ways in, one way of writing (batch.py):

* :func:`start_import` (the API): the request reads the file once, stores it in the database as
  one compressed chunk per batch (imports.models) and starts an operation, all in one
  transaction; any worker then imports it chunk by chunk (tasks.py), one transaction per chunk
  with its checkpoint, and the operation's result names every row it refused, by line and
  column.
* :func:`import_file` (the CLI): the file is streamed straight into the database, one
  transaction per batch, with nothing stored beforehand; the next batch is read and judged in a
  thread while this one is written (batch.prepared_ahead).

``all_or_nothing``: the whole file is one transaction, and a single refused row rolls it all
back (every problem is still named). Otherwise a bad row never stops the good ones.

Imported vouchers were issued elsewhere: they do not spend the campaign's budget or the
tenant's weekly issue limit, and they get no delivery (their holders have them already).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from typing import IO, Any

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from voucherd.auth.caller import Caller
from voucherd.campaigns.lookup import find_campaign
from voucherd.campaigns.schemas import CampaignCreate
from voucherd.db.engine import Database
from voucherd.errors import Conflict, ErrorCode, InvalidInput, NotFound
from voucherd.idempotency import service as idempotency
from voucherd.imports.batch import (
    IMPORT_BATCH,
    Target,
    cycles_uncollected,
    import_batch,
    judge_batch,
    prepared_ahead,
    store_batch,
)
from voucherd.imports.models import ImportChunk
from voucherd.imports.reader import (
    CsvBatch,
    FileFormat,
    Record,
    csv_batch_records,
    read_csv_batches,
    read_records,
)
from voucherd.imports.schemas import ImportSummary, Problem, RowTerms
from voucherd.operations.models import Operation
from voucherd.operations.service import start_operation
from voucherd.vouchers.mint import create_campaign
from voucherd.vouchers.schemas import VoucherRecord
from voucherd.vouchers.service import get_voucher

IMPORT_KIND = "import"


def batches(records: Iterator[Record]) -> Iterator[list[Record]]:
    while batch := list(islice(records, IMPORT_BATCH)):
        yield batch


def encode_chunk(batch: list[Record]) -> bytes:
    """A JSON-lines file's batch as a stored chunk: its records as JSON, zlib-compressed (JSON
    lines keep their types, numbers and objects, as JSON)."""
    data = [
        [r.line, r.fields] if r.problem is None else [r.line, None, r.problem.to_json()]
        for r in batch
    ]
    return zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 1)


def encode_csv_chunk(batch: CsvBatch) -> bytes:
    """A CSV file's batch as a stored chunk: a first line saying where the batch begins, the
    file's columns and the problems its reading found (as JSON), then the batch's text exactly
    as the file spells it, zlib-compressed."""
    head = {
        "first_line": batch.first_line,
        "header": batch.header,
        "problems": [[line, problem.to_json()] for line, problem in batch.problems.items()],
        "records": batch.records,
    }
    text = json.dumps(head, separators=(",", ":")) + "\n" + batch.text
    return zlib.compress(text.encode(), 1)


def decode_chunk(data: bytes) -> list[Record]:
    text = zlib.decompress(data)
    if text[:1] == b"{":
        end = text.index(b"\n")
        head = json.loads(text[:end])
        problems = {line: Problem.from_json(problem) for line, problem in head["problems"]}
        batch = CsvBatch(
            head["first_line"], head["header"], text[end + 1 :].decode(), problems,
            head["records"],
        )  # fmt: skip
        return csv_batch_records(batch)
    records = []
    for item in json.loads(text):
        problem = Problem.from_json(item[2]) if len(item) > 2 else None
        records.append(Record(item[0], item[1], problem))
    return records


def start_import(
    db: Database,
    caller: Caller,
    campaign_ref: str,
    source: IO[bytes],
    *,
    file_format: FileFormat,
    all_or_nothing: bool = False,
    idem: idempotency.IdempotencyClaim | None = None,
) -> Operation:
    """Store the file and start the operation that imports it; a worker does the rest."""
    caller.require("issue")
    now = db.now()
    with db.unit_of_work() as session:
        idempotency.claim(session, db, caller.tenant_id, idem)
        campaign = find_campaign(session, caller.tenant_id, campaign_ref)
        operation = start_operation(
            session,
            tenant_id=caller.tenant_id,
            kind=IMPORT_KIND,
            parameters={
                "campaign_id": campaign.id,
                "campaign": campaign.name,
                "format": file_format.value,
                "all_or_nothing": all_or_nothing,
            },
            actor=caller.key_id,
            now=now,
        )
        total = _store(session, operation, source, file_format)
        session.execute(update(Operation).where(Operation.id == operation.id).values(total=total))
        operation.total = total
        idempotency.bind_effect(session, caller.tenant_id, idem, "operation", operation.id)
        session.commit()
    return operation


def _store(
    session: Session, operation: Operation, source: IO[bytes], file_format: FileFormat
) -> int:
    total = 0
    for seq, (records, data) in enumerate(_chunks(source, file_format)):
        session.execute(
            insert(ImportChunk).values(
                operation_id=operation.id,
                seq=seq,
                tenant_id=operation.tenant_id,
                records=records,
                data=data,
            )
        )
        total += records
    return total


def _chunks(source: IO[bytes], file_format: FileFormat) -> Iterator[tuple[int, bytes]]:
    """The file's stored chunks, with how many records each holds."""
    if file_format is FileFormat.CSV:
        csv_batches = read_csv_batches(source, IMPORT_BATCH)
        while True:
            with cycles_uncollected():  # reading and encoding one batch
                batch = next(csv_batches, None)
                if batch is None:
                    return
                data = encode_csv_chunk(batch)
            yield batch.records, data
    json_batches = batches(read_records(source, file_format))
    while True:
        with cycles_uncollected():
            records = next(json_batches, None)
            if records is None:
                return
            data = encode_chunk(records)
        yield len(records), data


def import_file(
    db: Database,
    caller: Caller,
    campaign_ref: str,
    source: IO[bytes],
    *,
    file_format: FileFormat,
    all_or_nothing: bool = False,
    on_progress: Callable[[int, ImportSummary], object] | None = None,
) -> ImportSummary:
    """Stream a file into the campaign (the CLI): one transaction per batch, or one for all."""
    caller.require("issue")
    with db.unit_of_work(write=False) as session:
        campaign = find_campaign(session, caller.tenant_id, campaign_ref)
    target = Target(campaign, caller.key_id)
    summary = ImportSummary(campaign.id, campaign.name)
    done = 0
    terms = RowTerms.of(campaign)
    judged = prepared_ahead(
        judge_batch(batch, terms) for batch in batches(read_records(source, file_format))
    )
    if all_or_nothing:
        with db.unit_of_work() as session:
            for batch in judged:
                store_batch(
                    session, target, batch, summary, now=db.now(), write=not summary.rejected
                )
                done += batch.records
                if on_progress is not None:
                    on_progress(done, summary)
            if summary.rejected:
                summary.rolled_back, summary.imported = True, 0
                session.rollback()
            else:
                session.commit()
        return summary
    for batch in judged:
        with db.unit_of_work() as session, cycles_uncollected():
            store_batch(session, target, batch, summary, now=db.now())
            session.commit()
        done += batch.records
        if on_progress is not None:
            on_progress(done, summary)
    return summary


def import_one(
    db: Database, caller: Caller, campaign_ref: str, fields: dict[str, Any]
) -> VoucherRecord:
    """One voucher with a code of its own and its state as another platform had it (Voucherify's
    Create Voucher): the rules of a row of an import, answered at once."""
    caller.require("issue")
    with db.unit_of_work() as session:
        campaign = find_campaign(session, caller.tenant_id, campaign_ref)
        summary = ImportSummary(campaign.id, campaign.name)
        records = [Record(1, fields)]
        import_batch(session, Target(campaign, caller.key_id), records, summary, now=db.now())
        if summary.already_present or any(
            p.code == ErrorCode.DUPLICATE_CODE for p in summary.problems
        ):
            raise Conflict(
                "this code is already in use", field="code", code=ErrorCode.DUPLICATE_CODE
            )
        if summary.problems:
            problem = summary.problems[0]
            raise InvalidInput(problem.reason, field=problem.column, code=problem.code)
        session.commit()
    return get_voucher(db, caller, str(fields["code"]))


STANDALONE_DESCRIPTION = (
    "Vouchers imported or created without a campaign (Voucherify's standalone vouchers)"
)
STANDALONE_TYPES = ("GIFT", "CASH", "LOYALTY")


def _type_field(_: int) -> str:
    return "type"


def standalone_campaign(
    db: Database,
    caller: Caller,
    voucher_types: Sequence[str],
    currency: str,
    *,
    field: Callable[[int], str] = _type_field,
) -> str:
    """The tenant's campaign for vouchers that come without one, created on first use.

    Every voucherd voucher belongs to a campaign (its rules, its time zone, its page). Vouchers
    another platform calls standalone go into ``standalone-<type>``; creating it takes the
    ``manage`` scope, as creating any campaign does.

    ``voucher_types`` holds each voucher's type, in order; ``field(i)`` names the type of the
    i-th in an error, in the caller's terms. The rules live here, not in a face, so every way
    in says the same:

    * one standalone campaign holds one type, so vouchers of several types are refused, naming
      the first of another type (import each type on its own);
    * a DISCOUNT voucher is refused: voucherd keeps a discount on its campaign (what it takes
      off, on what, its limits), and a campaign made up for standalone vouchers would have no
      discount to give. Voucherify lets a standalone discount voucher carry its own discount;
      voucherd would need one campaign per distinct discount to follow, so it asks for the
      campaign that carries it instead.
    """
    if not voucher_types:
        raise InvalidInput("there are no vouchers to place", field=field(0))
    voucher_type = voucher_types[0]
    for index, other in enumerate(voucher_types):
        if other != voucher_type:
            raise InvalidInput(
                f"vouchers without a campaign are placed one type at a time: this one is "
                f"{other}, the first is {voucher_type}; import each type on its own",
                field=field(index),
            )
    if voucher_type not in (*STANDALONE_TYPES, "DISCOUNT"):
        raise InvalidInput(
            f"{voucher_type} is not a voucher type: GIFT, LOYALTY or DISCOUNT", field=field(0)
        )
    if voucher_type not in STANDALONE_TYPES:
        raise InvalidInput(
            f"a {voucher_type} voucher needs a campaign: voucherd keeps a discount on its "
            "campaign, so name a campaign that carries it (or import discount codes with "
            "POST /api/v1/campaigns/{campaign}/imports)",
            field=field(0),
        )
    name = f"standalone-{voucher_type.lower()}"
    for _ in range(2):
        try:
            with db.unit_of_work(write=False) as session:
                return find_campaign(session, caller.tenant_id, name).id
        except NotFound:
            pass
        body = {"name": name, "type": voucher_type, "description": STANDALONE_DESCRIPTION}
        if voucher_type in ("GIFT", "CASH"):
            body["currency"] = currency
        try:
            return create_campaign(db, caller, CampaignCreate.model_validate(body)).id
        except Conflict:  # created meanwhile by a concurrent request: use that one
            continue
    raise Conflict("the standalone campaign could not be created", field="campaign")
