"""Distributions: hand an order item's vouchers out, so many to each recipient.

Creating one checks everything up front and promises the vouchers in the same transaction: each
item's ``distributed`` count grows by one conditional UPDATE (``distributed + n <= quantity``),
so asking for more than an item has left is refused at once (422 ``not_enough_vouchers``) and
two distributions can never be promised the same vouchers. Each distribution item then runs as
its own operation (Vista answers one token per item; orders/tasks.py): recipient by recipient it
takes the item's undistributed vouchers, publishes them to that recipient (channel
``Distribution``) and, for an internal distribution, writes one delivery carrying all of them.

An external distribution may name no recipients (Vista's clients send none: they hand the codes
out themselves). It then has one unnamed recipient, the client, stored with no name and an empty
address: each item's ``quantity_per_recipient`` vouchers are published to it and handed back as
a named recipient's are. An internal one must name its recipients, since voucherd sends to them.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.orm import Session

from voucherd.auth.caller import Caller
from voucherd.db.engine import Database
from voucherd.delivery.enqueue import plan_delivery, tenant_settings
from voucherd.delivery.schemas import DeliveryRequest
from voucherd.errors import Conflict, ErrorCode, InvalidInput, NotFound
from voucherd.idempotency import service as idempotency
from voucherd.ids import new_id
from voucherd.operations.models import COMPLETED, FAILED, Operation
from voucherd.operations.service import start_operation
from voucherd.orders.models import (
    ClientOrder,
    ClientOrderItem,
    Distribution,
    DistributionItem,
    DistributionRecipient,
    DistributionShare,
)
from voucherd.orders.schemas import DistributionCreate, DistributionRecord, Share
from voucherd.orders.service import find_order
from voucherd.publications.models import PublicationVoucher
from voucherd.vouchers.models import Voucher

DISTRIBUTION_KIND = "distribution"
DISTRIBUTION_ENTITY = "VoucherOrderDistribution"
DISTRIBUTION_CHANNEL = "Distribution"
ITEM_PREFIX = "ditem_"

_ITEM = cast(Table, ClientOrderItem.__table__)


def delivery_request(channel: str, address: str, name: str | None) -> DeliveryRequest:
    """How a recipient of an email or mobile distribution is sent its vouchers."""
    return DeliveryRequest(
        channel="email" if channel == "email" else "phone", recipient=address, name=name
    )


def _promise(
    session: Session, tenant_id: str, item_id: int, count: int, field: str, item_field: str
) -> None:
    """Take ``count`` of the item's vouchers for a distribution, or refuse: one statement."""
    item = session.execute(
        select(ClientOrderItem, ClientOrder.operation_id)
        .join(ClientOrder, ClientOrder.id == ClientOrderItem.order_id)
        .where(ClientOrderItem.tenant_id == tenant_id, ClientOrderItem.id == item_id)
    ).first()
    if item is None:
        raise NotFound(f"no client order item {item_id}", field=item_field)
    order_item, operation_id = item
    status = session.scalar(select(Operation.status).where(Operation.id == operation_id))
    if status != COMPLETED:
        raise Conflict(
            f"the order of item {item_id} is {status}: its vouchers can be distributed once "
            "it has Completed",
            field=item_field,
            code=ErrorCode.ORDER_NOT_COMPLETED if status != FAILED else "order_failed",
        )
    taken = session.execute(
        update(_ITEM)
        .where(_ITEM.c.id == item_id, _ITEM.c.distributed + count <= _ITEM.c.quantity)
        .values(distributed=_ITEM.c.distributed + count)
        .returning(_ITEM.c.distributed)
    ).first()
    if taken is None:
        left = order_item.quantity - order_item.distributed
        raise InvalidInput(
            f"item {item_id} has {left} of its {order_item.quantity} vouchers left to "
            f"distribute; this distribution asks for {count}",
            field=field,
            code=ErrorCode.NOT_ENOUGH_VOUCHERS,
        )


def create_distribution(
    db: Database,
    caller: Caller,
    body: DistributionCreate,
    *,
    idem: idempotency.IdempotencyClaim | None = None,
) -> DistributionRecord:
    caller.require("issue")
    now = db.now()
    if not body.externally_distributed and body.recipients is None:
        raise InvalidInput(
            "give at least one recipient: an internal distribution sends each recipient its "
            "codes; only an external one may name none (the codes are then handed back to you)",
            field="recipients",
        )
    shares_to = body.shares_to()
    recipients = len(shares_to)
    with db.unit_of_work() as session:
        idempotency.claim(session, db, caller.tenant_id, idem)
        if not body.externally_distributed:
            # Refuse now, not in the worker, when the tenant cannot send on this channel.
            first = shares_to[0]
            plan_delivery(
                delivery_request(body.channel, body.address_of(first), first.name),
                tenant_settings(session, caller.tenant_id),
                tenant_id=caller.tenant_id,
                voucher_id="",
                now=now,
                field="externally_distributed",
            )
        wanted: dict[int, int] = {}
        for index, item in enumerate(body.items):
            if item.order_item in wanted:
                raise InvalidInput(
                    f"item {item.order_item} is named twice", field=f"items.{index}.order_item"
                )
            wanted[item.order_item] = item.quantity_per_recipient * recipients
            _promise(
                session,
                caller.tenant_id,
                item.order_item,
                wanted[item.order_item],
                f"items.{index}.quantity_per_recipient",
                f"items.{index}.order_item",
            )
        distribution_id = new_id("dist")
        session.execute(
            insert(Distribution).values(
                id=distribution_id,
                tenant_id=caller.tenant_id,
                kind=body.channel,
                reference=body.reference,
                distribution_data=body.distribution_data,
                externally_distributed=body.externally_distributed,
                actor=caller.key_id,
                created_at=now,
            )
        )
        session.execute(
            insert(DistributionRecipient),
            [
                {
                    "distribution_id": distribution_id,
                    "position": position,
                    "tenant_id": caller.tenant_id,
                    "name": recipient.name,
                    "address": body.address_of(recipient),
                }
                for position, recipient in enumerate(shares_to)
            ],
        )
        for position, item in enumerate(body.items):
            item_id = new_id(ITEM_PREFIX.rstrip("_"))
            operation = start_operation(
                session,
                tenant_id=caller.tenant_id,
                kind=DISTRIBUTION_KIND,
                parameters={"distribution_item_id": item_id},
                actor=caller.key_id,
                now=now,
                total=wanted[item.order_item],
                entity_type=DISTRIBUTION_ENTITY,
                entity_id=item_id,
            )
            session.execute(
                insert(DistributionItem).values(
                    id=item_id,
                    tenant_id=caller.tenant_id,
                    distribution_id=distribution_id,
                    position=position,
                    order_item_id=item.order_item,
                    quantity_per_recipient=item.quantity_per_recipient,
                    operation_id=operation.id,
                )
            )
        idempotency.bind_effect(session, caller.tenant_id, idem, "distribution", distribution_id)
        record = distribution_record(session, caller.tenant_id, distribution_id)
        session.commit()
    return record


def distribution_record(session: Session, tenant_id: str, ref: str) -> DistributionRecord:
    """The distribution ``ref`` names: its id, or the id of one of its items. An item's operation
    token resolves to the item (each item has its own status), and whatever a token resolves to
    must be readable: the item is shown as the distribution that holds it, with every item."""
    if ref.startswith(ITEM_PREFIX):
        held_by = select(DistributionItem.distribution_id).where(
            DistributionItem.tenant_id == tenant_id, DistributionItem.id == ref
        )
        ref = session.scalar(held_by) or ref
    distribution = session.scalar(
        select(Distribution).where(Distribution.tenant_id == tenant_id, Distribution.id == ref)
    )
    if distribution is None:
        raise NotFound("no such distribution", field="distribution")
    items = session.execute(
        select(DistributionItem, Operation)
        .join(Operation, Operation.id == DistributionItem.operation_id)
        .where(DistributionItem.distribution_id == distribution.id)
        .order_by(DistributionItem.position)
    ).all()
    recipients = list(
        session.scalars(
            select(DistributionRecipient)
            .where(DistributionRecipient.distribution_id == distribution.id)
            .order_by(DistributionRecipient.position)
        )
    )
    return DistributionRecord(
        distribution=distribution,
        items=[(item, operation) for item, operation in items],
        recipients=recipients,
        shares=_shares(session, [item.id for item, _ in items]),
    )


def _shares(session: Session, item_ids: list[str]) -> list[Share]:
    rows = session.execute(
        select(
            DistributionShare.distribution_item_id,
            DistributionShare.recipient_position,
            DistributionShare.delivery_id,
            Voucher.code,
        )
        .join(
            PublicationVoucher,
            PublicationVoucher.publication_id == DistributionShare.publication_id,
        )
        .join(Voucher, Voucher.id == PublicationVoucher.voucher_id)
        .where(DistributionShare.distribution_item_id.in_(item_ids))
        .order_by(
            DistributionShare.recipient_position,
            DistributionShare.distribution_item_id,
            Voucher.id,
        )
    ).all()
    shares: dict[tuple[str, int], Share] = {}
    for item_id, position, delivery_id, code in rows:
        key = (item_id, position)
        if key not in shares:
            shares[key] = Share(item_id, position, [], delivery_id)
        shares[key].codes.append(code)
    return list(shares.values())


def get_distribution(db: Database, caller: Caller, ref: str) -> DistributionRecord:
    with db.unit_of_work(write=False) as session:
        return distribution_record(session, caller.tenant_id, ref)


def distribution_item_of(session: Session, tenant_id: str, item_id: str) -> dict[str, Any]:
    """What a distribution item's operation needs to run, in one read."""
    row = session.execute(
        select(DistributionItem, Distribution, ClientOrderItem)
        .join(Distribution, Distribution.id == DistributionItem.distribution_id)
        .join(ClientOrderItem, ClientOrderItem.id == DistributionItem.order_item_id)
        .where(DistributionItem.tenant_id == tenant_id, DistributionItem.id == item_id)
    ).first()
    if row is None:
        raise NotFound("the distribution item no longer exists", field="distribution")
    item, distribution, order_item = row
    return {"item": item, "distribution": distribution, "order_item": order_item}


def list_order_distributions(
    db: Database, caller: Caller, order_ref: str, *, limit: int = 100
) -> list[DistributionRecord]:
    """The distributions that handed out codes of ``order_ref``'s items, newest first."""
    with db.unit_of_work(write=False) as session:
        order = find_order(session, caller.tenant_id, order_ref)
        ids = session.scalars(
            select(Distribution.id)
            .where(
                Distribution.tenant_id == caller.tenant_id,
                Distribution.id.in_(
                    select(DistributionItem.distribution_id)
                    .join(ClientOrderItem, ClientOrderItem.id == DistributionItem.order_item_id)
                    .where(ClientOrderItem.order_id == order.id)
                ),
            )
            .order_by(Distribution.created_at.desc(), Distribution.id.desc())
            .limit(limit)
        ).all()
        return [distribution_record(session, caller.tenant_id, i) for i in ids]
