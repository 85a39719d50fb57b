"""``voucherd customers``: find a tenant's customers and look at one."""

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

customers = typer.Typer(help="Customers: list or search them, show one.", no_args_is_help=True)

_FIELDS = (
    "id",
    "source_id",
    "name",
    "email",
    "phone",
    "address",
    "postcode",
    "city",
    "region",
    "country",
    "description",
    "birthdate",
    "metadata",
    "erased_at",
    "created_at",
    "updated_at",
)


@customers.command("list")
def list_command(
    ctx: typer.Context,
    tenant: TenantOption,
    q: Annotated[str | None, typer.Option(help="Part of a name, email, phone or source_id")] = None,
    source_id: Annotated[str | None, typer.Option(help="The issuer's own reference")] = None,
    limit: LimitOption = DEFAULT_LIMIT,
    cursor: CursorOption = None,
    as_json: JsonFlag = False,
) -> None:
    """List or search a tenant's customers, newest first."""
    from voucherd.auth.caller import Caller
    from voucherd.customers.schemas import CustomerFilters, present_customer
    from voucherd.customers.service import list_customers
    from voucherd.tenants.service import tenant_id_by_name

    filters = CustomerFilters(q=q, source_id=source_id)
    try:
        with database(ctx) as db:
            caller = Caller(tenant_id_by_name(db, tenant), "cli")
            page = list_customers(db, caller, filters, limit=limit, cursor=cursor)
    except DomainError as exc:
        fail(exc)
        return
    if as_json:
        print_json(list_payload([present_customer(c) for c in page.items], page.next_cursor))
        return
    rows = [
        (
            c.id,
            c.source_id,
            c.name if c.erased_at is None else "(erased)",
            c.email,
            when(c.created_at),
        )
        for c in page.items
    ]
    show(rows_table(("id", "source id", "name", "email", "created"), rows, fold=(1, 2, 3)))


@customers.command("show")
def show_command(
    ctx: typer.Context,
    customer: Annotated[str, typer.Argument(help="The customer's id or source_id")],
    tenant: TenantOption,
    as_json: JsonFlag = False,
) -> None:
    """A customer, as GET /api/v1/customers/{customer} answers it."""
    from voucherd.auth.caller import Caller
    from voucherd.customers.schemas import present_customer
    from voucherd.customers.service import get_customer
    from voucherd.tenants.service import tenant_id_by_name

    try:
        with database(ctx) as db:
            found = get_customer(db, Caller(tenant_id_by_name(db, tenant), "cli"), customer)
    except DomainError as exc:
        fail(exc)
        return
    shown = present_customer(found)
    if as_json:
        print_json(shown)
    else:
        show(details_table(shown, _FIELDS))
