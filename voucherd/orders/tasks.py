"""The worker's side of orders and distributions: operation handlers (operations/runner.py).

**An order's mint.** The order is cut into batches when it is placed (item by item, at most
``batch_size`` vouchers each, numbered from 0). A batch is one transaction that writes, together:
its ``client_order_batch`` row (primary key ``(order, seq)``), its vouchers, minted straight into
the item's publication, and the operation's progress (``done + count``, fenced by the lease). So
a batch is either wholly committed or not at all, and a resumed run (after a crash, a SIGKILL,
a lost lease) mints exactly the batches that have no row yet: never one twice, never one lost.

On PostgreSQL a worker mints ``order_mint_parallelism`` batches at once, each on its own
connection: the mint is bound by PostgreSQL's CPU (index maintenance), and two backends use two
cores. The batches of one order touch one shared row, the operation's, and only in their last
statement, so they wait for each other only for the few milliseconds of a commit.

**A distribution item.** Recipient by recipient, in steps of :data:`SHARES_PER_STEP`: take the
item's undistributed vouchers (still in only their order's publication), publish them to the
recipient, write a delivery carrying all of them (internal distributions), and record the
recipient's share, whose primary key again makes it happen once. The vouchers were promised
when the distribution was created, so they are there unless someone cancelled or published them
elsewhere in between, which fails the operation and says so.
"""

from __future__ import annotations

import csv
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert, or_, select, text, update
from sqlalchemy.orm import Session

from voucherd.campaigns.models import Campaign
from voucherd.db.dialect import upsert
from voucherd.db.engine import Database
from voucherd.delivery.enqueue import request_bundle_delivery, tenant_settings
from voucherd.errors import Conflict, ErrorCode, NotFound
from voucherd.exports.rows import neutralise
from voucherd.operations import steps
from voucherd.operations.steps import Run
from voucherd.orders.distributions import (
    DISTRIBUTION_CHANNEL,
    delivery_request,
    distribution_item_of,
)
from voucherd.orders.models import (
    ClientOrder,
    ClientOrderBatch,
    ClientOrderItem,
    Distribution,
    DistributionRecipient,
    DistributionShare,
)
from voucherd.orders.service import ORDER_ENTITY
from voucherd.publications.models import PublicationVoucher
from voucherd.publications.pool import create_publication, publication_row, record_publications
from voucherd.vouchers.mint import mint_in_session
from voucherd.vouchers.models import Voucher
from voucherd.vouchers.schemas import VoucherOverrides

SHARES_PER_STEP = 50

_BATCH = cast(Table, ClientOrderBatch.__table__)
_executors: dict[int, ThreadPoolExecutor] = {}


@dataclass(frozen=True)
class Batch:
    seq: int
    item_id: int
    count: int


def plan_batches(items: list[tuple[int, int]], batch_size: int) -> list[Batch]:
    """Every batch of an order: its items ``(id, quantity)`` in order, cut into pieces."""
    batches: list[Batch] = []
    for item_id, quantity in items:
        for start in range(0, quantity, batch_size):
            batches.append(Batch(len(batches), item_id, min(batch_size, quantity - start)))
    return batches


def _parallelism(db: Database) -> int:
    # SQLite serialises writers anyway: one batch at a time there.
    return max(1, db.settings.order_mint_parallelism) if db.is_postgresql else 1


def _executor(size: int) -> ThreadPoolExecutor:
    if size not in _executors:
        _executors[size] = ThreadPoolExecutor(size, thread_name_prefix="voucherd-mint")
    return _executors[size]


def order_step(db: Database, run: Run) -> bool:
    """Mint the next batches of an order; True once every voucher of it exists."""
    order_id = str(run.parameters["order_id"])
    batch_size = int(run.parameters["batch_size"])
    with db.unit_of_work(write=False) as session:
        items = session.execute(
            select(ClientOrderItem.id, ClientOrderItem.quantity)
            .where(ClientOrderItem.order_id == order_id, ClientOrderItem.tenant_id == run.tenant_id)
            .order_by(ClientOrderItem.position)
        ).all()
        if not items:
            raise NotFound("the client order no longer exists", field="order")
        committed = set(session.scalars(select(_BATCH.c.seq).where(_BATCH.c.order_id == order_id)))
    pending = [
        b for b in plan_batches([(i, q) for i, q in items], batch_size) if b.seq not in committed
    ]
    now_running = pending[: _parallelism(db)]
    if len(now_running) == 1:
        _mint_batch(db, run, order_id, now_running[0])
    elif now_running:
        futures = [
            _executor(len(now_running)).submit(_mint_batch, db, run, order_id, batch)
            for batch in now_running
        ]
        errors = [f.exception() for f in futures]
        for error in errors:
            if error is not None:
                raise error
    if len(pending) > len(now_running):
        return False
    _finish_order(db, run, order_id)
    return True


def _mint_batch(db: Database, run: Run, order_id: str, batch: Batch) -> None:
    now = db.now()
    with db.unit_of_work() as session:
        claimed = session.execute(
            upsert(session, _BATCH)
            .values(
                order_id=order_id,
                seq=batch.seq,
                tenant_id=run.tenant_id,
                item_id=batch.item_id,
                count=batch.count,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["order_id", "seq"])
            .returning(_BATCH.c.seq)
        ).first()
        if claimed is None:
            return  # committed meanwhile by a run that still held the lease: nothing to do
        item = session.get_one(ClientOrderItem, batch.item_id)
        campaign = session.get_one(Campaign, item.campaign_id)
        mint_in_session(
            session,
            db,
            campaign,
            batch.count,
            actor=run.actor or "operation",
            now=now,
            overrides=VoucherOverrides(expiration_date=item.expiry_date),
            value=item.redeem_price,
            publication_id=item.publication_id,
        )
        steps.add_progress(session, run, now=now, count=batch.count)
        session.commit()


def _finish_order(db: Database, run: Run, order_id: str) -> None:
    now = db.now()
    with db.unit_of_work() as session:
        session.execute(
            update(ClientOrder).where(ClientOrder.id == order_id).values(updated_at=now)
        )
        steps.complete(
            session,
            run,
            now=now,
            done=int(run.total or 0),
            total=run.total,
            result={"order_id": order_id, "vouchers": run.total},
            entity_type=ORDER_ENTITY,
            entity_id=order_id,
        )
        session.commit()


# --- distributions ------------------------------------------------------------------------------


def _take(
    session: Session, tenant_id: str, publication_id: str, count: int, after: str, now: datetime
) -> list[str]:
    """Up to ``count`` of an item's vouchers nobody has been given yet, oldest first."""
    query = (
        select(PublicationVoucher.voucher_id)
        .join(Voucher, Voucher.id == PublicationVoucher.voucher_id)
        .where(
            PublicationVoucher.publication_id == publication_id,
            PublicationVoucher.voucher_id > after,
            Voucher.tenant_id == tenant_id,
            text("voucher.published_count = 1 AND voucher.state = 'ACTIVE'"),
            or_(Voucher.expiration_date.is_(None), Voucher.expiration_date > now),
        )
        .order_by(PublicationVoucher.voucher_id)
        .limit(count)
        # Two distributions of one item take disjoint vouchers without waiting on each other.
        .with_for_update(of=Voucher.__table__, skip_locked=True)
    )
    return list(session.scalars(query))


def distribution_step(db: Database, run: Run) -> bool:
    """Give the next recipients their share of one distribution item; True when all have it."""
    item_id = str(run.parameters["distribution_item_id"])
    now = db.now()
    checkpoint = run.checkpoint or {}
    with db.unit_of_work() as session:
        found = distribution_item_of(session, run.tenant_id, item_id)
        item, distribution, order_item = found["item"], found["distribution"], found["order_item"]
        served = set(
            session.scalars(
                select(DistributionShare.recipient_position).where(
                    DistributionShare.distribution_item_id == item_id
                )
            )
        )
        recipients = [
            r
            for r in session.scalars(
                select(DistributionRecipient)
                .where(DistributionRecipient.distribution_id == distribution.id)
                .order_by(DistributionRecipient.position)
            )
            if r.position not in served
        ]
        settings_of_tenant = (
            None if distribution.externally_distributed else tenant_settings(session, run.tenant_id)
        )
        after = str(checkpoint.get("after") or "")
        out = io.StringIO()
        writer = csv.writer(out)
        if not served and not checkpoint.get("header_written"):
            writer.writerow(("recipient", "name", "address", "client_order_item_id", "code"))
        for recipient in recipients[:SHARES_PER_STEP]:
            after = _give_share(
                session,
                run,
                now=now,
                order_item=order_item,
                item_id=item_id,
                distribution=distribution,
                recipient=recipient,
                count=item.quantity_per_recipient,
                after=after,
                settings_of_tenant=settings_of_tenant,
                writer=writer,
            )
        steps.append_output(session, run, out.getvalue().encode())
        done = (len(served) + len(recipients[:SHARES_PER_STEP])) * item.quantity_per_recipient
        finished = len(recipients) <= SHARES_PER_STEP
        if finished:
            steps.complete(
                session,
                run,
                now=now,
                done=done,
                result={
                    "media_type": "text/csv; charset=utf-8",
                    "filename": f"distribution-{distribution.id}-{item_id}.csv",
                    "distribution_id": distribution.id,
                    "recipients": len(served) + len(recipients),
                },
            )
        else:
            steps.advance(
                session,
                run,
                now=now,
                done=done,
                checkpoint={"after": after, "header_written": True},
            )
        session.commit()
    return finished


def _give_share(
    session: Session,
    run: Run,
    *,
    now: datetime,
    order_item: ClientOrderItem,
    item_id: str,
    distribution: Distribution,
    recipient: DistributionRecipient,
    count: int,
    after: str,
    settings_of_tenant: dict[str, Any] | None,
    writer: Any,
) -> str:
    voucher_ids = _take(session, run.tenant_id, order_item.publication_id, count, after, now)
    if len(voucher_ids) < count and after:
        # Vouchers skipped while another distribution held them come back if it rolled back.
        voucher_ids = _take(session, run.tenant_id, order_item.publication_id, count, "", now)
    if len(voucher_ids) < count:
        raise Conflict(
            f"item {order_item.id} has only {len(voucher_ids)} undistributed vouchers left for "
            f"a share of {count}: some were cancelled, expired or published elsewhere since "
            "the distribution was created",
            field="distribution",
            code=ErrorCode.NOT_ENOUGH_VOUCHERS,
        )
    publication_id = create_publication(
        session,
        publication_row(
            tenant_id=run.tenant_id,
            channel=DISTRIBUTION_CHANNEL,
            now=now,
            campaign_id=order_item.campaign_id,
            metadata={"distribution_id": distribution.id, "recipient": recipient.position},
            actor=run.actor,
        ),
    )
    assert publication_id is not None
    record_publications(
        session,
        tenant_id=run.tenant_id,
        publication_id=publication_id,
        voucher_ids=voucher_ids,
        now=now,
        campaign_id=order_item.campaign_id,
        actor=run.actor,
    )
    delivery_id = None
    if not distribution.externally_distributed:
        delivery_id = request_bundle_delivery(
            session,
            tenant_id=run.tenant_id,
            voucher_ids=voucher_ids,
            request=delivery_request(distribution.kind, recipient.address, recipient.name),
            now=now,
            actor=run.actor,
            settings_of_tenant=settings_of_tenant,
        ).id
    session.execute(
        insert(DistributionShare).values(
            distribution_item_id=item_id,
            recipient_position=recipient.position,
            tenant_id=run.tenant_id,
            publication_id=publication_id,
            delivery_id=delivery_id,
        )
    )
    codes = session.execute(
        select(Voucher.id, Voucher.code).where(Voucher.id.in_(voucher_ids))
    ).all()
    by_id = dict(codes)
    for voucher_id in voucher_ids:
        writer.writerow(
            (
                recipient.position,
                neutralise(recipient.name),
                neutralise(recipient.address),
                order_item.id,
                neutralise(by_id[voucher_id]),
            )
        )
    return max(voucher_ids[-1], after)
