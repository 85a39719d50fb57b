"""Running an import operation: one stored chunk per step, its rows and its checkpoint together.

Each step reads the next chunk of the file (imports.models), writes its good rows, appends the
rows it refused to the operation's CSV of problems, records the counts so far in the checkpoint
and deletes the chunk, all in one transaction: a worker that dies mid-step leaves the chunk to
its successor, and no row is imported twice. The last step completes the operation with the
summary (and the first problems) as its result; the full CSV of problems is its download.

An all-or-nothing import is one step: every chunk in one transaction, rolled back whole if any
row is refused; a second transaction then records the refusals. A million rows take longer than
a lease, so that step renews its lease as it goes (:class:`_Heartbeat`), each renewal in a short
transaction of its own: otherwise another worker would take the operation over mid-step, and the
first worker's final write, fenced by its lapsed lease, would throw the whole import away.

While a step writes its chunk, the next one is read, decoded and judged in a thread
(:class:`ReadAhead`): the writing is PostgreSQL's work, in another process, and the reading and
judging is Python's, so the two overlap instead of taking turns (they did: a million rows took
Python's time plus PostgreSQL's). What the thread prepared is a hint, never a decision: the step
still finds its chunk in its own transaction, fenced by its lease, and uses the prepared rows
only if they are that chunk's (a stored chunk never changes) judged against the campaign's
terms as the step reads them now; otherwise it reads the chunk itself, as it always could.
"""

from __future__ import annotations

import csv
import io
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from voucherd.campaigns.models import Campaign
from voucherd.db.engine import WRITE_OPTION, Database
from voucherd.errors import NotFound
from voucherd.imports.batch import JudgedBatch, Target, cycles_uncollected, judge_batch, store_batch
from voucherd.imports.models import ImportChunk
from voucherd.imports.schemas import ImportSummary, Problem, RowTerms
from voucherd.imports.service import decode_chunk
from voucherd.operations import steps
from voucherd.operations.models import Operation
from voucherd.operations.steps import LeaseLost, Run

PROBLEM_COLUMNS = ("line", "column", "code", "reason")

log = logging.getLogger(__name__)


def import_step(db: Database, run: Run) -> bool:
    """Import the next chunk (or, all-or-nothing, every chunk); True once the file is done."""
    if run.parameters.get("all_or_nothing"):
        return _all_or_nothing(db, run)
    now = db.now()
    with db.unit_of_work() as session:
        target = _target(session, run)
        checkpoint = run.checkpoint or {}
        summary = _summary(target, checkpoint)
        seq = int(checkpoint.get("seq", 0))
        chunk = _judged_chunk(db, session, run, seq, RowTerms.of(target.campaign))
        done = run.done
        if chunk is not None:
            judged, records = chunk
            with cycles_uncollected():
                store_batch(session, target, judged, summary, now=now)
            done += records
            session.execute(_drop(run, seq))
        steps.append_output(session, run, _problems_csv(summary, header=seq == 0))
        if chunk is None or not _chunk_exists(session, run, seq + 1):
            _complete(session, run, summary, done=done, now=now)
            finished = True
        else:
            result = summary.to_result(all_or_nothing=False)
            steps.advance(session, run, now=now, done=done, checkpoint={**result, "seq": seq + 1})
            finished = False
        session.commit()
    if finished:
        READ_AHEAD.forget(run.operation_id)
    return finished


class ReadAhead:
    """The next chunk of each running import, read, decoded and judged in a thread of its own.

    One prepared chunk per operation, for a few operations at most (a worker runs one at a
    time; an operation resumed by another process leaves its entry to be pushed out). The
    thread reads through a connection of its own, so it sees only committed chunks; a
    Database bound to one connection (the suite's rolled-back transactions) gets no read-ahead,
    since nothing else can see what that connection wrote.
    """

    KEPT = 4

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._prepared: dict[str, tuple[int, RowTerms, Future[JudgedBatch | None]]] = {}
        self._executor: ThreadPoolExecutor | None = None
        self.used = 0  # prepared chunks a step took: how the suite sees the overlap happen

    def start(self, db: Database, operation_id: str, seq: int, terms: RowTerms) -> None:
        """Begin preparing chunk ``seq`` of the operation, if a thread can see it."""
        if not isinstance(db.bind, Engine):
            return
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="import-read-ahead")
            future = self._executor.submit(_read_and_judge, db.engine, operation_id, seq, terms)
            self._prepared.pop(operation_id, None)
            self._prepared[operation_id] = (seq, terms, future)
            while len(self._prepared) > self.KEPT:
                self._prepared.pop(next(iter(self._prepared)))

    def take(self, operation_id: str, seq: int, terms: RowTerms) -> JudgedBatch | None:
        """Chunk ``seq`` as prepared against ``terms``, or None (then the step reads it)."""
        with self._lock:
            entry = self._prepared.pop(operation_id, None)
        if entry is None or entry[0] != seq or entry[1] != terms:
            return None
        try:
            judged = entry[2].result()
        except Exception:  # noqa: BLE001  (a hint that failed: the step reads the chunk)
            log.warning("import %s: reading chunk %s ahead failed", operation_id, seq)
            return None
        if judged is not None:
            self.used += 1
        return judged

    def forget(self, operation_id: str) -> None:
        with self._lock:
            self._prepared.pop(operation_id, None)


READ_AHEAD = ReadAhead()


def _read_and_judge(
    engine: Engine, operation_id: str, seq: int, terms: RowTerms
) -> JudgedBatch | None:
    with engine.connect() as connection:
        # A reader: on SQLite, never in the queue for the write lock the step itself holds.
        connection.execution_options(**{WRITE_OPTION: False})
        data = connection.scalar(
            select(ImportChunk.data).where(
                ImportChunk.operation_id == operation_id, ImportChunk.seq == seq
            )
        )
    if data is None:
        return None
    with cycles_uncollected():
        return judge_batch(decode_chunk(data), terms)


def _judged_chunk(
    db: Database, session: Session, run: Run, seq: int, terms: RowTerms
) -> tuple[JudgedBatch, int] | None:
    """Chunk ``seq`` judged, with its record count, or None if it is not (or no longer)
    stored; the next chunk starts being prepared meanwhile."""
    records = session.scalar(
        select(ImportChunk.records).where(
            ImportChunk.operation_id == run.operation_id, ImportChunk.seq == seq
        )
    )
    if records is None:
        READ_AHEAD.forget(run.operation_id)
        return None
    judged = READ_AHEAD.take(run.operation_id, seq, terms)
    READ_AHEAD.start(db, run.operation_id, seq + 1, terms)
    if judged is None:
        data = session.scalar(
            select(ImportChunk.data).where(
                ImportChunk.operation_id == run.operation_id, ImportChunk.seq == seq
            )
        )
        if data is None:  # cannot be: the step's transaction saw the chunk a moment ago
            return None
        with cycles_uncollected():
            judged = judge_batch(decode_chunk(data), terms)
    return judged, records


class _Heartbeat:
    """Keeps a long step's lease: renewed once a third of it has passed, each time in a short
    transaction of its own (fenced by the lease token, as every write of a run is), so other
    workers see it while the step's own transaction is still open.

    PostgreSQL only. On SQLite the step's transaction holds the database's one write lock from
    its first batch on, so no other worker can claim the operation (a claim is a write) until
    it has committed or rolled back; and a renewal, being a write, would wait on that very lock.
    """

    def __init__(self, db: Database, run: Run, session: Session) -> None:
        self.db, self.run = db, run
        self.active = session.get_bind().dialect.name == "postgresql"
        self.every = run.lease / 3
        self.last = db.now()

    def beat(self) -> None:
        """Renew the lease if a third of it has passed; :class:`LeaseLost` if it is gone."""
        now = self.db.now()
        if not self.active or now - self.last < self.every:
            return
        _renew(self.db, self.run, now)
        self.last = now


def _renew(db: Database, run: Run, now: datetime) -> None:
    with db.unit_of_work() as session:
        renewed = session.execute(
            update(Operation)
            .where(run.fence())
            .values(lease_expires_at=now + run.lease, updated_at=now)
            .returning(Operation.id)
        ).first()
        session.commit()
    if renewed is None:
        raise LeaseLost(run.operation_id)


def _all_or_nothing(db: Database, run: Run) -> bool:
    now = db.now()
    with db.unit_of_work() as session:
        heartbeat = _Heartbeat(db, run, session)
        target = _target(session, run)
        summary = ImportSummary(target.campaign.id, target.campaign.name)
        terms = RowTerms.of(target.campaign)
        seq, done = 0, 0
        while (chunk := _judged_chunk(db, session, run, seq, terms)) is not None:
            judged, records = chunk
            with cycles_uncollected():
                write = not summary.rejected
                store_batch(session, target, judged, summary, now=now, write=write)
                del judged
            done += records
            seq += 1
            heartbeat.beat()
        if summary.rejected:
            session.rollback()
        else:
            session.execute(delete(ImportChunk).where(ImportChunk.operation_id == run.operation_id))
            steps.append_output(session, run, _problems_csv(summary, header=True))
            _complete(session, run, summary, done=done, now=now)
            session.commit()
            return True
    summary.rolled_back, summary.imported = True, 0
    with db.unit_of_work() as session:
        session.execute(delete(ImportChunk).where(ImportChunk.operation_id == run.operation_id))
        steps.append_output(session, run, _problems_csv(summary, header=True))
        _complete(session, run, summary, done=done, now=now)
        session.commit()
    return True


def _target(session: Session, run: Run) -> Target:
    campaign = session.get(Campaign, run.parameters["campaign_id"])
    if campaign is None or campaign.tenant_id != run.tenant_id:
        raise NotFound("the campaign no longer exists", field="campaign")
    return Target(campaign, run.actor or "operation")


def _summary(target: Target, checkpoint: dict[str, Any]) -> ImportSummary:
    if "imported" not in checkpoint:
        return ImportSummary(target.campaign.id, target.campaign.name)
    return ImportSummary.from_result(checkpoint)


def _chunk_exists(session: Session, run: Run, seq: int) -> bool:
    found = session.scalar(
        select(ImportChunk.seq).where(
            ImportChunk.operation_id == run.operation_id, ImportChunk.seq == seq
        )
    )
    return found is not None


def _drop(run: Run, seq: int) -> Any:
    return delete(ImportChunk).where(
        ImportChunk.operation_id == run.operation_id, ImportChunk.seq == seq
    )


def _complete(session: Session, run: Run, summary: ImportSummary, *, done: int, now: Any) -> None:
    result = summary.to_result(all_or_nothing=bool(run.parameters.get("all_or_nothing")))
    result.update(media_type="text/csv; charset=utf-8", filename=f"{run.operation_id}-problems.csv")
    steps.complete(
        session,
        run,
        now=now,
        done=done,
        total=run.total,
        result=result,
        entity_type="campaign",
        entity_id=summary.campaign_id,
    )


def _problems_csv(summary: ImportSummary, *, header: bool) -> bytes:
    """The problems found since the last step, as CSV rows (the first step writes the header)."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    if header:
        writer.writerow(PROBLEM_COLUMNS)
    for problem in summary.pending:
        writer.writerow(_cells(problem))
    summary.pending.clear()
    return out.getvalue().encode()


def _cells(problem: Problem) -> list[Any]:
    return [problem.line, problem.column or "", problem.code, problem.reason]
