"""``voucherd orders``: corporate clients' orders, their items and how far minting got."""

from __future__ import annotations

from typing import Annotated

import typer

from voucherd.api.responses import list_payload
from voucherd.api.terminal import (
    CursorOption,
    JsonFlag,
    LimitOption,
    TenantOption,
    details_table,
    fail,
    print_json,
    rows_table,
    show,
    when,
)
from voucherd.db.commands import database
from voucherd.errors import DomainError
from voucherd.pagination import DEFAULT_LIMIT

orders = typer.Typer(help="Client orders: list them, show one.", no_args_is_help=True)

_FIELDS = (
    "id",
    "client_code",
    "client_id",
    "reference",
    "status",
    "progress",
    "error",
    "electronic_distribution",
    "external_user_id",
    "delivery_address",
    "operation_token",
    "created_at",
    "completed_at",
)


@orders.command("list")
def list_command(
    ctx: typer.Context,
    tenant: TenantOption,
    client: Annotated[str | None, typer.Option(help="A client id or code")] = None,
    external_user_id: Annotated[str | None, typer.Option(help="Who placed it")] = None,
    limit: LimitOption = DEFAULT_LIMIT,
    cursor: CursorOption = None,
    as_json: JsonFlag = False,
) -> None:
    """List a tenant's client orders, newest first."""
    from voucherd.auth.caller import Caller
    from voucherd.orders.schemas import present_order
    from voucherd.orders.service import list_orders
    from voucherd.tenants.service import tenant_id_by_name

    try:
        with database(ctx) as db:
            caller = Caller(tenant_id_by_name(db, tenant), "cli")
            page = list_orders(
                db,
                caller,
                client=client,
                external_user_id=external_user_id,
                limit=limit,
                cursor=cursor,
            )
    except DomainError as exc:
        fail(exc)
        return
    if as_json:
        print_json(list_payload([present_order(o) for o in page.items], page.next_cursor))
        return
    rows = [
        (
            o.order.id,
            o.client_code,
            o.order.reference,
            o.operation.status,
            f"{o.minted}/{o.order.voucher_count}",
            when(o.order.created_at),
        )
        for o in page.items
    ]
    columns = ("id", "client", "reference", "status", "minted", "created")
    show(rows_table(columns, rows, fold=(2,)))


@orders.command("show")
def show_command(
    ctx: typer.Context,
    order: Annotated[str, typer.Argument(help="The order's id")],
    tenant: TenantOption,
    as_json: JsonFlag = False,
) -> None:
    """A client order with its items, as GET /api/v1/orders/{order} answers it."""
    from voucherd.auth.caller import Caller
    from voucherd.formatting import format_value
    from voucherd.orders.schemas import present_order
    from voucherd.orders.service import get_order
    from voucherd.tenants.service import tenant_id_by_name

    try:
        with database(ctx) as db:
            record = get_order(db, Caller(tenant_id_by_name(db, tenant), "cli"), order)
    except DomainError as exc:
        fail(exc)
        return
    shown = present_order(record)
    if as_json:
        print_json(shown)
        return
    rows = [
        (
            str(item.id),
            product,
            str(item.quantity),
            str(item.quantity - item.distributed),
            format_value(item.sale_price, item.currency),
            item.publication_id,
        )
        for item, product in record.items
    ]
    columns = ("item", "product", "qty", "left", "price", "publication")
    show(details_table(shown, _FIELDS), rows_table(columns, rows, fold=(1,), title="items"))
