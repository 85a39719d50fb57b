"""Exports: a campaign's vouchers as CSV, in batches, so memory stays flat for any size.

An export walks the campaign in batches of :data:`BATCH_SIZE` vouchers, each batch one short
transaction: a keyset read (``id > last id``, on the ``(campaign_id, id)`` index) for a plain
export, or a claim from the campaign's pool for a distribution. Short transactions rather than
one long cursor: a million rows take minutes to write out, and a transaction held that long
would pin PostgreSQL's vacuum horizon (and, for a distribution, keep a million rows locked);
batches also let an operation resume from its last committed batch after a worker dies. The
price is that a long export is not one snapshot: a voucher redeemed while the export runs shows
the state it had when its batch was read.

**For distribution.** An export of unpublished codes (``published=false``) claims the codes
from the campaign's pool as voucherd.publications does (see :func:`_claim_after` for the one
difference) and records them in one publication with channel ``Export``, in the transaction
that reads the batch (for an operation, also the one that stores the batch's CSV). A code is
therefore never both exported for distribution and given out by a concurrent publication, and
an export that is re-run or resumed never hands out a code twice: what it took has left the pool.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, delete, func, insert, literal, or_, select, text, update
from sqlalchemy.orm import Session

from voucherd.auth.caller import Caller
from voucherd.campaigns.lookup import find_campaign
from voucherd.db.dialect import is_postgresql
from voucherd.db.engine import Database
from voucherd.errors import InvalidInput
from voucherd.exports import rows as csv_rows
from voucherd.exports.schemas import ExportProgress, ExportRequest, ExportSpec, ExportSummary
from voucherd.idempotency import service as idempotency
from voucherd.idempotency.service import IdempotencyClaim
from voucherd.operations.models import Operation
from voucherd.operations.service import start_operation
from voucherd.publications.models import Publication, PublicationVoucher
from voucherd.publications.pool import (
    EXPORT_CHANNEL,
    create_publication,
    pool_size,
    publication_row,
)
from voucherd.vouchers.models import Voucher, VoucherEvent

BATCH_SIZE = 5_000
EXPORT_KIND = "export"

_VOUCHER = cast(Table, Voucher.__table__)
_LINK = cast(Table, PublicationVoucher.__table__)
# The pool, spelled with literals as in the partial index ix_voucher_pool (publications.pool
# says why: a prepared statement's generic plan must still match the index's predicate).
_IN_POOL = text("voucher.published_count = 0 AND voucher.state = 'ACTIVE'")
_UNPUBLISHED = text("voucher.published_count = 0")


@dataclass(frozen=True)
class Batch:
    rows: list[Any]  # rows of exports.rows.SELECTED
    progress: ExportProgress  # after this batch
    finished: bool


def prepare_export(
    session: Session, caller: Caller, campaign_ref: str, request: ExportRequest, *, now: datetime
) -> ExportSpec:
    campaign = find_campaign(session, caller.tenant_id, campaign_ref)
    distribute = request.published is False and request.record_publication
    if distribute and request.state not in (None, ["ACTIVE"]):
        raise InvalidInput(
            "an export for distribution takes the campaign's pool (ACTIVE, unpublished codes); "
            "leave state out, or set record_publication to false to export without publishing",
            field="state",
        )
    return ExportSpec(
        tenant_id=caller.tenant_id,
        campaign_id=campaign.id,
        campaign_name=campaign.name,
        states=tuple(dict.fromkeys(request.state)) if request.state else None,
        published=request.published,
        distribute=distribute,
        limit=request.limit,
        as_of=now,
        actor=caller.key_id,
    )


def start_export(
    db: Database,
    caller: Caller,
    campaign_ref: str,
    request: ExportRequest,
    *,
    idem: IdempotencyClaim | None = None,
) -> Operation:
    """Start an export as an operation; a worker writes the CSV, any API process serves it."""
    caller.require("issue")
    now = db.now()
    with db.unit_of_work() as session:
        idempotency.claim(session, db, caller.tenant_id, idem)
        spec = prepare_export(session, caller, campaign_ref, request, now=now)
        operation = start_operation(
            session,
            tenant_id=caller.tenant_id,
            kind=EXPORT_KIND,
            parameters=spec.to_parameters(),
            actor=caller.key_id,
            now=now,
        )
        idempotency.bind_effect(session, caller.tenant_id, idem, "operation", operation.id)
        session.commit()
        return operation


def export_csv(
    db: Database,
    caller: Caller,
    campaign_ref: str,
    request: ExportRequest,
    write: Callable[[bytes], object],
    on_progress: Callable[[ExportProgress], object] | None = None,
) -> ExportSummary:
    """Stream an export straight from the database into ``write`` (the CLI's file).

    One transaction per batch (see the module docstring). Each batch is committed before its
    rows are written out: if the process dies in between, the codes of that batch are recorded
    as published (in the Export publication, findable) without reaching the file, which can
    lose codes to nobody but never hands one out twice.
    """
    caller.require("issue")
    with db.unit_of_work(write=False) as session:
        spec = prepare_export(session, caller, campaign_ref, request, now=db.now())
    progress = ExportProgress()
    while True:
        with db.unit_of_work(write=spec.distribute) as session:
            batch = next_batch(session, spec, progress, now=db.now())
            session.commit()
        write(encode(spec, batch, header=not progress.started))
        progress = batch.progress
        if on_progress is not None:
            on_progress(progress)
        if batch.finished:
            return ExportSummary(spec.campaign_id, progress.done, progress.publication_id)


def encode(spec: ExportSpec, batch: Batch, *, header: bool) -> bytes:
    return csv_rows.encode(
        batch.rows, campaign_name=spec.campaign_name, as_of=spec.as_of, header=header
    )


def next_batch(
    session: Session, spec: ExportSpec, progress: ExportProgress, *, now: datetime
) -> Batch:
    """The next batch of the export, inside the caller's transaction (it does not commit)."""
    _walk_in_index_order(session)
    if not progress.started:
        progress = replace(progress, total=_count(session, spec, now))
    want = BATCH_SIZE if spec.limit is None else min(BATCH_SIZE, spec.limit - progress.done)
    if want <= 0:
        return Batch([], progress, finished=True)
    if spec.distribute:
        rows, progress = _claim_batch(session, spec, progress, want, now)
    else:
        rows = _read_batch(session, spec, progress, want)
    if rows:
        progress = replace(progress, done=progress.done + len(rows), after=rows[-1].id)
    return Batch(rows, progress, finished=len(rows) < want)


def _walk_in_index_order(session: Session) -> None:
    """Keep each batch's cost bounded by the batch, whatever the table's statistics say.

    Right after a bulk mint, before autovacuum has analysed ``voucher``, PostgreSQL estimates
    a campaign's remaining rows at a handful and reads them all with a bitmap scan, then sorts
    them to take the first 5,000: every batch rereads the rest of the campaign, and a
    million-row export cost PostgreSQL 76 s of CPU instead of a few (bench/README.md). With
    sorting and bitmap scans discouraged for this transaction only, the batch (and the pool
    claim of a distribution) walks an index in id order and stops at its LIMIT.
    """
    if is_postgresql(session):
        session.execute(
            text(
                "SELECT set_config('enable_sort', 'off', true),"
                " set_config('enable_bitmapscan', 'off', true)"
            )
        )


def _conditions(spec: ExportSpec) -> list[Any]:
    conditions: list[Any] = [
        Voucher.tenant_id == spec.tenant_id,
        Voucher.campaign_id == spec.campaign_id,
    ]
    if spec.published is True:
        conditions.append(Voucher.published_count > 0)
    elif spec.published is False:
        conditions.append(Voucher.published_count == 0)
    if spec.states:
        conditions.append(or_(*(_in_state(state, spec.as_of) for state in spec.states)))
    return conditions


def _in_state(state: str, as_of: datetime) -> Any:
    """The stored condition for an effective state; EXPIRED is ACTIVE past its expiry."""
    if state == "EXPIRED":
        return (Voucher.state == "ACTIVE") & (Voucher.expiration_date < as_of)
    if state == "ACTIVE":
        return (Voucher.state == "ACTIVE") & or_(
            Voucher.expiration_date.is_(None), Voucher.expiration_date >= as_of
        )
    return Voucher.state == state


def _count(session: Session, spec: ExportSpec, now: datetime) -> int:
    if spec.distribute:
        total = pool_size(session, tenant_id=spec.tenant_id, campaign_id=spec.campaign_id, now=now)
    else:
        total = int(session.scalar(select(func.count()).where(*_conditions(spec))) or 0)
    return total if spec.limit is None else min(total, spec.limit)


def _read_batch(
    session: Session, spec: ExportSpec, progress: ExportProgress, want: int
) -> list[Any]:
    query = select(*csv_rows.SELECTED).where(*_conditions(spec))
    if progress.after is not None:
        query = query.where(Voucher.id > progress.after)
    return list(_core(session).execute(query.order_by(Voucher.id).limit(want)).all())


def _claim_batch(
    session: Session, spec: ExportSpec, progress: ExportProgress, want: int, now: datetime
) -> tuple[list[Any], ExportProgress]:
    publication_id = progress.publication_id
    if publication_id is None:
        publication_id = create_publication(
            session,
            publication_row(
                tenant_id=spec.tenant_id,
                channel=EXPORT_CHANNEL,
                now=now,
                campaign_id=spec.campaign_id,
                actor=spec.actor,
            ),
        )
        assert publication_id is not None  # only a source_id can make it None
    rows = _claim_after(session, spec, publication_id, progress.after, want, now)
    if not rows:
        if progress.publication_id is None:  # an empty pool leaves no empty publication
            session.execute(delete(Publication).where(Publication.id == publication_id))
        return [], progress
    session.execute(
        insert(VoucherEvent).values(
            tenant_id=spec.tenant_id,
            campaign_id=spec.campaign_id,
            kind="published",
            actor=spec.actor,
            data={"publication_id": publication_id, "count": len(rows)},
            created_at=now,
        )
    )
    return rows, replace(progress, publication_id=publication_id)


def _claim_after(
    session: Session,
    spec: ExportSpec,
    publication_id: str,
    after: str | None,
    want: int,
    now: datetime,
) -> list[Any]:
    """Claim the next ``want`` codes of the pool after ``after`` into the publication; their
    rows (as exports.rows.SELECTED reads them, published now), in id order.

    The pool claim of voucherd.publications (``claim_pool``) with one difference that a
    million-row export needs: it starts after the last code it took. A claimed code leaves the
    pool's partial index only when vacuum gets to it, so a claim that always starts at the head
    of the pool wades through every code claimed before it; on a million codes that made
    each batch slower than the last (bench/README.md). Concurrent publishers are handled as
    there: ``FOR UPDATE SKIP LOCKED`` and the re-checked ``published_count = 0`` on PostgreSQL,
    the database lock on SQLite. A code skipped because another transaction held it is either
    published by that transaction or back in the pool for a later export: never taken twice.
    """
    head = select(_VOUCHER.c.id).where(
        _VOUCHER.c.campaign_id == spec.campaign_id,
        _IN_POOL,
        _VOUCHER.c.tenant_id == spec.tenant_id,
        or_(_VOUCHER.c.expiration_date.is_(None), _VOUCHER.c.expiration_date > now),
    )
    if after is not None:
        head = head.where(_VOUCHER.c.id > after)
    head = head.order_by(_VOUCHER.c.id).limit(want)
    claim = update(_VOUCHER).values(published_count=1, updated_at=now)
    connection = _core(session)
    if is_postgresql(session):
        # One statement, one round trip: lock the head, claim it, link it, return its rows.
        locked = head.with_for_update(skip_locked=True).cte("head")
        claimed = (
            claim.where(_VOUCHER.c.id == locked.c.id, _UNPUBLISHED)
            .returning(*csv_rows.SELECTED)
            .cte("claimed")
        )
        link = insert(_LINK).from_select(
            ["publication_id", "voucher_id", "tenant_id"],
            select(literal(publication_id), claimed.c.id, literal(spec.tenant_id)),
        )
        statement = select(claimed).add_cte(link.cte("linked")).order_by(claimed.c.id)
        return list(connection.execute(statement).all())
    claim = claim.where(_VOUCHER.c.id.in_(head.scalar_subquery()), _UNPUBLISHED)
    rows = sorted(connection.execute(claim.returning(*csv_rows.SELECTED)).all(), key=_first)
    if rows:
        connection.execute(
            insert(_LINK),
            [
                {
                    "publication_id": publication_id,
                    "voucher_id": row[0],
                    "tenant_id": spec.tenant_id,
                }
                for row in rows
            ],
        )
    return rows


def _first(row: Any) -> Any:
    return row[0]


def _core(session: Session) -> Connection:
    """The session's connection, for reading rows without the ORM's per-row result work."""
    return session.connection()
