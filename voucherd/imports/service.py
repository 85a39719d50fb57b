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

import csv
import io
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
from voucherd.imports.reader import FileFormat, Record, read_records
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


def encode_chunk(batch: list[Record], file_format: FileFormat = FileFormat.JSONL) -> bytes:
    """A batch as a stored chunk: zlib-compressed, as CSV when its file was CSV, else JSON.

    A CSV file's fields are all text, so its chunk is CSV again (the batch's columns on the
    first line, then each record's line, its problem if it has one, and its values): Python's
    C reader and writer take a fifth of the time JSON objects do, on the way in and again when
    a worker reads the chunk back. JSON lines keep their types (numbers, objects) as JSON.
    """
    if file_format is FileFormat.CSV:
        return zlib.compress(_csv_chunk(batch), 1)
    data = [
        [r.line, r.fields] if r.problem is None else [r.line, None, r.problem.to_json()]
        for r in batch
    ]
    return zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 1)


def _csv_chunk(batch: list[Record]) -> bytes:
    # Any order of the columns will do: the chunk names them on its first line.
    columns = list(set().union(*[r.fields for r in batch if r.fields]))
    blanks = [""] * len(columns)
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(["line", "problem", *columns])
    rows: list[list[Any]] = []
    for record in batch:
        fields = record.fields
        if fields is None:
            assert record.problem is not None
            rows.append([record.line, json.dumps(record.problem.to_json())])
        else:
            rows.append([record.line, "", *map(fields.get, columns, blanks)])
    writer.writerows(rows)
    return out.getvalue().encode()


def decode_chunk(data: bytes) -> list[Record]:
    text = zlib.decompress(data)
    if text[:1] != b"[":
        return _csv_records(text.decode())
    records = []
    for item in json.loads(text):
        problem = Problem.from_json(item[2]) if len(item) > 2 else None
        records.append(Record(item[0], item[1], problem))
    return records


def _csv_records(text: str) -> list[Record]:
    reader = csv.reader(io.StringIO(text, newline=""))
    columns = next(reader)[2:]
    records = []
    for line, problem, *values in reader:
        if problem:
            records.append(Record(int(line), None, Problem.from_json(json.loads(problem))))
        else:
            fields = {name: v for name, v in zip(columns, values, strict=True) if v != ""}
            records.append(Record(int(line), fields))
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
        total = _store(session, operation, read_records(source, file_format), file_format)
        session.execute(update(Operation).where(Operation.id == operation.id).values(total=total))
        operation.total = total
        idempotency.bind_effect(session, caller.tenant_id, idem, "operation", operation.id)
        session.commit()
    return operation


def _store(
    session: Session, operation: Operation, records: Iterator[Record], file_format: FileFormat
) -> int:
    total, seq = 0, 0
    chunks = batches(records)
    while True:
        with cycles_uncollected():  # reading and encoding one batch
            batch = next(chunks, None)
            if batch is None:
                return total
            data = encode_chunk(batch, file_format)
        session.execute(
            insert(ImportChunk).values(
                operation_id=operation.id,
                seq=seq,
                tenant_id=operation.tenant_id,
                records=len(batch),
                data=data,
            )
        )
        total += len(batch)
        seq += 1


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
