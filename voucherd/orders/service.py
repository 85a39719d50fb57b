"""Client orders: place one (validated up front, minted in the background), read it back, list
its vouchers, export them.

Placing an order checks everything a batch of its mint would check (the client, each product
and whether the client may order it, quantities, prices, the expiry, the code space) before it
writes anything, and then writes the order, its items, one ``ClientOrder`` publication per item
and the operation that mints them, in one transaction. The mint itself runs in a worker
(orders/tasks.py), batch by batch, each batch committing its vouchers with its progress.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from voucherd.auth.caller import Caller
from voucherd.campaigns.lookup import find_campaign
from voucherd.campaigns.models import Campaign
from voucherd.campaigns.validity import localise
from voucherd.db.engine import Database
from voucherd.errors import DomainError, ErrorCode, InvalidInput, NotFound
from voucherd.exports.rows import neutralise
from voucherd.idempotency import service as idempotency
from voucherd.ids import new_id
from voucherd.money import MAX_MINOR_UNITS, to_minor
from voucherd.operations.models import Operation
from voucherd.operations.service import start_operation
from voucherd.orders.clients import allowed_campaigns, find_client, voucher_types_of
from voucherd.orders.models import Client, ClientOrder, ClientOrderItem
from voucherd.orders.schemas import OrderCreate, OrderItemCreate, OrderRecord
from voucherd.pages.urls import page_url
from voucherd.pagination import Page
from voucherd.publications.models import PublicationVoucher
from voucherd.publications.pool import create_publication, publication_row
from voucherd.vouchers.models import Voucher
from voucherd.vouchers.schemas import VoucherOverrides, VoucherRecord
from voucherd.vouchers.terms import check_capacity, issue_terms
from voucherd.vouchers.validity import effective_state

ORDER_KIND = "client_order"
ORDER_ENTITY = "VoucherClientOrder"
ORDER_CHANNEL = "ClientOrder"
# Vouchers per batch: each batch is one transaction of the mint (a second or two on
# PostgreSQL), so a crash repeats at most this much work and progress moves in these steps.
MINT_BATCH = 20_000
EXPORT_BATCH = 5_000

# The core's names for an item's fields, as the order body spells them.
_ITEM_FIELDS = {
    "value": "redeem_price",
    "major_value": "redeem_price",
    "expiration_date": "expiry_date",
    "start_date": "expiry_date",
    "campaign": "product",
    "count": "quantity",
}


def _money(
    minor: int | None,
    major: Decimal | None,
    campaign: Campaign,
    field: str,
    *,
    positive: bool,
) -> int | None:
    if major is None:
        return minor
    if minor is not None:
        raise InvalidInput(f"give {field} in minor or in major units, not both", field=field)
    if campaign.currency is None:
        raise InvalidInput(f"{campaign.name!r} has no currency to price it in", field=field)
    try:
        value = to_minor(major, campaign.currency)
    except ValueError as exc:
        raise InvalidInput(str(exc), field=field) from exc
    if value < 0 or (positive and value == 0) or value > MAX_MINOR_UNITS:
        raise InvalidInput(
            "must be a positive amount" if positive else "must not be negative", field=field
        )
    return value


def _not_allowed(session: Session, client: Client, product: str) -> str:
    """Why the client may not order the product, and the two ways to put it right."""
    names = [name for _, name in voucher_types_of(session, [client.id])[client.id]]
    may = ", ".join(repr(n) for n in names) if names else "none"
    return (
        f"client {client.code!r} may not order {product!r}: a client orders only its voucher "
        f"types ({may}); order one of those, or add {product!r} to the client's voucher types "
        f"(PATCH /api/v1/clients/{client.code} with voucher_types)"
    )


def _plan_item(
    session: Session,
    db: Database,
    client: Client,
    allowed: set[str],
    item: OrderItemCreate,
    index: int,
    now: datetime,
) -> dict[str, Any]:
    """The item's row, or the first reason it cannot be ordered, naming ``items.<index>.*``."""
    field = f"items.{index}"
    campaign = find_campaign(session, client.tenant_id, item.product, field=f"{field}.product")
    if campaign.id not in allowed:
        raise InvalidInput(
            _not_allowed(session, client, campaign.name),
            field=f"{field}.product",
            code=ErrorCode.PRODUCT_NOT_ALLOWED,
        )
    if item.quantity > db.settings.max_bulk_count:
        raise InvalidInput(
            f"at most {db.settings.max_bulk_count} vouchers per item", field=f"{field}.quantity"
        )
    redeem = _money(
        item.redeem_price, item.major_redeem_price, campaign, f"{field}.redeem_price", positive=True
    )
    sale = _money(
        item.sale_price, item.major_sale_price, campaign, f"{field}.sale_price", positive=False
    )
    overrides = VoucherOverrides(expiration_date=item.expiry_date)
    try:
        terms = issue_terms(campaign, redeem, overrides, now)
        check_capacity(session, db, campaign, terms.spec, item.quantity)
    except DomainError as exc:
        exc.field = f"{field}.{_ITEM_FIELDS.get(exc.field or '', exc.field or 'product')}"
        raise
    return {
        "tenant_id": client.tenant_id,
        "position": index,
        "campaign_id": campaign.id,
        "quantity": item.quantity,
        "currency": campaign.currency,
        "sale_price": sale,
        "redeem_price": terms.value,
        "expiry_date": localise(item.expiry_date, campaign.timezone),
        "distributed": 0,
    }


def place_order(
    db: Database,
    caller: Caller,
    body: OrderCreate,
    *,
    idem: idempotency.IdempotencyClaim | None = None,
) -> OrderRecord:
    """Accept an order and start minting its vouchers; refused now, with nothing written, when
    any part of it could not be minted."""
    caller.require("issue")
    now = db.now()
    with db.unit_of_work() as session:
        idempotency.claim(session, db, caller.tenant_id, idem)
        client = find_client(session, caller.tenant_id, body.client)
        allowed = allowed_campaigns(session, client.id)
        items = [
            _plan_item(session, db, client, allowed, item, index, now)
            for index, item in enumerate(body.items)
        ]
        total = sum(i["quantity"] for i in items)
        if total > db.settings.max_bulk_count:
            raise InvalidInput(
                f"at most {db.settings.max_bulk_count} vouchers per order", field="items"
            )
        order_id = new_id("ord")
        operation = start_operation(
            session,
            tenant_id=caller.tenant_id,
            kind=ORDER_KIND,
            # The batch size is fixed when the order is placed: a resumed run must cut the
            # order into the same batches as the run it takes over from.
            parameters={"order_id": order_id, "batch_size": MINT_BATCH},
            actor=caller.key_id,
            now=now,
            total=total,
            entity_type=ORDER_ENTITY,
            entity_id=order_id,
        )
        session.execute(
            insert(ClientOrder).values(
                id=order_id,
                tenant_id=caller.tenant_id,
                client_id=client.id,
                reference=body.reference,
                electronic_distribution=body.electronic_distribution,
                external_user_id=body.external_user_id,
                delivery_address=body.delivery_address,
                external_data=body.external_data,
                voucher_count=total,
                operation_id=operation.id,
                actor=caller.key_id,
                created_at=now,
                updated_at=now,
            )
        )
        for item in items:
            item["publication_id"] = create_publication(
                session,
                publication_row(
                    tenant_id=caller.tenant_id,
                    channel=ORDER_CHANNEL,
                    now=now,
                    campaign_id=item["campaign_id"],
                    metadata={"client_order_id": order_id, "client": client.code},
                    actor=caller.key_id,
                ),
            )
            item["order_id"] = order_id
        session.execute(insert(ClientOrderItem), items)
        idempotency.bind_effect(session, caller.tenant_id, idem, "client_order", order_id)
        record = order_record(session, caller.tenant_id, order_id)
        session.commit()
    return record


def find_order(session: Session, tenant_id: str, ref: str, *, field: str = "order") -> ClientOrder:
    order = session.scalar(
        select(ClientOrder).where(ClientOrder.tenant_id == tenant_id, ClientOrder.id == ref)
    )
    if order is None:
        raise NotFound("no such client order", field=field)
    return order


def order_record(session: Session, tenant_id: str, order_id: str) -> OrderRecord:
    order = find_order(session, tenant_id, order_id)
    client_code = session.scalar(select(Client.code).where(Client.id == order.client_id))
    items = session.execute(
        select(ClientOrderItem, Campaign.name)
        .join(Campaign, Campaign.id == ClientOrderItem.campaign_id)
        .where(ClientOrderItem.order_id == order.id)
        .order_by(ClientOrderItem.position)
    ).all()
    operation = session.get_one(Operation, order.operation_id)
    return OrderRecord(
        order=order,
        client_code=client_code or "",
        items=[(item, name) for item, name in items],
        operation=operation,
        minted=operation.done,
    )


def get_order(db: Database, caller: Caller, ref: str) -> OrderRecord:
    with db.unit_of_work(write=False) as session:
        return order_record(session, caller.tenant_id, ref)


def list_orders(
    db: Database,
    caller: Caller,
    *,
    client: str | None = None,
    external_user_id: str | None = None,
    limit: int,
    cursor: str | None = None,
) -> Page[OrderRecord]:
    query = select(ClientOrder.id).where(ClientOrder.tenant_id == caller.tenant_id)
    if external_user_id is not None:
        query = query.where(ClientOrder.external_user_id == external_user_id)
    if cursor:
        query = query.where(ClientOrder.id < cursor)
    with db.unit_of_work(write=False) as session:
        if client is not None:
            query = query.where(
                ClientOrder.client_id == find_client(session, caller.tenant_id, client).id
            )
        ids = list(session.scalars(query.order_by(ClientOrder.id.desc()).limit(limit + 1)))
        records = [order_record(session, caller.tenant_id, i) for i in ids[:limit]]
    return Page(records, ids[limit - 1] if len(ids) > limit else None)


def _order_vouchers(order_id: str) -> Any:
    return (
        select(Voucher, ClientOrderItem.id, Campaign)
        .join(PublicationVoucher, PublicationVoucher.voucher_id == Voucher.id)
        .join(ClientOrderItem, ClientOrderItem.publication_id == PublicationVoucher.publication_id)
        .join(Campaign, Campaign.id == Voucher.campaign_id)
        .where(ClientOrderItem.order_id == order_id)
    )


def list_order_vouchers(
    db: Database,
    caller: Caller,
    ref: str,
    *,
    item: int | None = None,
    limit: int,
    cursor: str | None = None,
) -> Page[tuple[VoucherRecord, int]]:
    """An order's vouchers, newest first, each with the id of its item."""
    with db.unit_of_work(write=False) as session:
        order = find_order(session, caller.tenant_id, ref)
        query = _order_vouchers(order.id)
        if item is not None:
            query = query.where(ClientOrderItem.id == item)
        if cursor:
            query = query.where(Voucher.id < cursor)
        rows = session.execute(query.order_by(Voucher.id.desc()).limit(limit + 1)).all()
    records = [(VoucherRecord(v, c.name, campaign=c), item_id) for v, item_id, c in rows[:limit]]
    return Page(records, rows[limit - 1][0].id if len(rows) > limit else None)


EXPORT_COLUMNS = (
    "client_order_item_id",
    "code",
    "voucher_id",
    "campaign",
    "state",
    "currency",
    "amount",
    "expiration_date",
    "page_url",
)


def export_order(db: Database, caller: Caller, ref: str) -> tuple[str, Iterator[bytes]]:
    """The order's vouchers as CSV (RFC 4180, UTF-8, a header), oldest first, streamed.

    Read in keyset batches of :data:`EXPORT_BATCH`, one short transaction each, so an order of
    a million vouchers is sent in constant memory without holding a transaction open.
    """
    with db.unit_of_work(write=False) as session:
        order = find_order(session, caller.tenant_id, ref)
    return f"order-{order.id}.csv", _export_rows(db, order.id)


def _export_rows(db: Database, order_id: str) -> Iterator[bytes]:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    yield out.getvalue().encode()
    base = db.settings.public_base_url
    after = ""
    while True:
        now = db.now()
        with db.unit_of_work(write=False) as session:
            rows = session.execute(
                _order_vouchers(order_id)
                .where(Voucher.id > after)
                .order_by(Voucher.id)
                .limit(EXPORT_BATCH)
            ).all()
        if not rows:
            return
        out = io.StringIO()
        writer = csv.writer(out)
        for voucher, item_id, campaign in rows:
            expires = voucher.expiration_date
            writer.writerow(
                (
                    item_id,
                    neutralise(voucher.code),
                    voucher.id,
                    neutralise(campaign.name),
                    effective_state(voucher.state, expires, now),
                    voucher.currency or "",
                    "" if voucher.amount is None else voucher.amount,
                    expires.astimezone(UTC).isoformat().replace("+00:00", "Z") if expires else "",
                    page_url(base, voucher.public_token),
                )
            )
        yield out.getvalue().encode()
        after = rows[-1][0].id
