"""Deliveries as use cases: deliver an existing voucher, and what an operator does with
deliveries (list, look at, resend). Asking for a delivery inside another use case's transaction
is enqueue.py's :func:`~voucherd.delivery.enqueue.request_delivery`."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from voucherd.auth.caller import Caller
from voucherd.db.engine import Database
from voucherd.delivery.enqueue import plan_delivery, tenant_settings
from voucherd.delivery.models import Delivery, DeliveryEvent
from voucherd.delivery.schemas import DeliveryFilters, DeliveryRecord, DeliveryRequest
from voucherd.delivery.sql import insert_planned
from voucherd.errors import Conflict, ErrorCode, NotFound
from voucherd.idempotency import service as idempotency
from voucherd.pagination import Page, page_of
from voucherd.vouchers.lookup import find_voucher
from voucherd.vouchers.models import Voucher

_RESENDABLE = ("SENT", "DELIVERED", "FAILED")


def _find(session: Session, tenant_id: str, delivery_id: str) -> tuple[Delivery, str]:
    row = session.execute(
        select(Delivery, Voucher.code)
        .join(Voucher, Voucher.id == Delivery.voucher_id)
        .where(Delivery.tenant_id == tenant_id, Delivery.id == delivery_id)
    ).first()
    if row is None:
        raise NotFound("no such delivery", field="delivery")
    return row[0], row[1]


def _events(session: Session, delivery_id: str) -> tuple[DeliveryEvent, ...]:
    return tuple(
        session.scalars(
            select(DeliveryEvent)
            .where(DeliveryEvent.delivery_id == delivery_id)
            .order_by(DeliveryEvent.id)
        )
    )


def deliver_voucher(
    db: Database,
    caller: Caller,
    voucher_ref: str,
    body: DeliveryRequest,
    *,
    idem: idempotency.IdempotencyClaim | None = None,
) -> DeliveryRecord:
    """Send an existing voucher (say, one of a bulk mint) to someone."""
    caller.require("issue")
    now = db.now()
    with db.unit_of_work() as session:
        idempotency.claim(session, db, caller.tenant_id, idem)
        voucher = find_voucher(session, caller.tenant_id, voucher_ref).voucher
        row = plan_delivery(
            body,
            tenant_settings(session, caller.tenant_id),
            tenant_id=caller.tenant_id,
            voucher_id=voucher.id,
            now=now,
            field="body",
        )
        insert_planned(session, row, actor=caller.key_id)
        idempotency.bind_effect(session, caller.tenant_id, idem, "delivery", row["id"])
        session.commit()
        return DeliveryRecord(Delivery(**row), voucher.code, _events(session, row["id"]))


def resend_delivery(
    db: Database,
    caller: Caller,
    delivery_id: str,
    *,
    idem: idempotency.IdempotencyClaim | None = None,
) -> DeliveryRecord:
    """Send a finished delivery again, as a new delivery pointing at the old one.

    Allowed once the first has finished (FAILED, and also SENT or DELIVERED: a holder who lost
    the message is a real reason). A phone delivery goes by the tenant's phone channel of today.
    """
    caller.require("manage")
    now = db.now()
    with db.unit_of_work() as session:
        idempotency.claim(session, db, caller.tenant_id, idem)
        original, code = _find(session, caller.tenant_id, delivery_id)
        if original.state not in _RESENDABLE:
            raise Conflict(
                f"the delivery is {original.state}: it is still on its way",
                field="delivery",
                code=ErrorCode.DELIVERY_IN_PROGRESS,
            )
        channel = "phone" if original.channel in ("sms", "whatsapp") else original.channel
        request = DeliveryRequest.model_validate(
            {
                "channel": channel,
                "recipient": original.recipient,
                "name": original.recipient_name,
                "message": original.message,
            }
        )
        row = plan_delivery(
            request,
            tenant_settings(session, caller.tenant_id),
            tenant_id=caller.tenant_id,
            voucher_id=original.voucher_id,
            now=now,
            origin="resend",
            resend_of=original.id,
        )
        insert_planned(session, row, actor=caller.key_id)
        idempotency.bind_effect(session, caller.tenant_id, idem, "delivery", row["id"])
        session.commit()
        return DeliveryRecord(Delivery(**row), code, _events(session, row["id"]))


def get_delivery(db: Database, caller: Caller, delivery_id: str) -> DeliveryRecord:
    with db.unit_of_work(write=False) as session:
        delivery, code = _find(session, caller.tenant_id, delivery_id)
        return DeliveryRecord(delivery, code, _events(session, delivery.id))


def list_deliveries(
    db: Database,
    caller: Caller,
    filters: DeliveryFilters,
    *,
    limit: int,
    cursor: str | None,
) -> Page[DeliveryRecord]:
    query = (
        select(Delivery, Voucher.code)
        .join(Voucher, Voucher.id == Delivery.voucher_id)
        .where(Delivery.tenant_id == caller.tenant_id)
    )
    with db.unit_of_work(write=False) as session:
        if filters.voucher is not None:
            voucher = find_voucher(session, caller.tenant_id, filters.voucher).voucher
            query = query.where(Delivery.voucher_id == voucher.id)
        if filters.state is not None:
            query = query.where(Delivery.state == filters.state)
        if filters.channel is not None:
            query = query.where(Delivery.channel == filters.channel)
        if cursor:
            query = query.where(Delivery.id < cursor)
        rows = session.execute(query.order_by(Delivery.id.desc()).limit(limit + 1)).all()
    records = [DeliveryRecord(d, code) for d, code in rows]
    return page_of(records, limit, records[limit - 1].delivery.id if len(records) > limit else None)


def list_voucher_deliveries(
    db: Database, caller: Caller, voucher_ref: str, *, limit: int = 50
) -> list[DeliveryRecord]:
    """A voucher's deliveries, newest first, each with its events: the first event's actor is
    who asked for it (a key, or an operator of the console), so a resend names its sender."""
    with db.unit_of_work(write=False) as session:
        voucher = find_voucher(session, caller.tenant_id, voucher_ref).voucher
        found = list(
            session.scalars(
                select(Delivery)
                .where(Delivery.tenant_id == caller.tenant_id, Delivery.voucher_id == voucher.id)
                .order_by(Delivery.id.desc())
                .limit(limit)
            )
        )
        events: dict[str, list[DeliveryEvent]] = {d.id: [] for d in found}
        if found:
            for event in session.scalars(
                select(DeliveryEvent)
                .where(DeliveryEvent.delivery_id.in_(list(events)))
                .order_by(DeliveryEvent.id)
            ):
                events[event.delivery_id].append(event)
        return [DeliveryRecord(d, voucher.code, tuple(events[d.id])) for d in found]
