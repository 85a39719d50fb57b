"""``voucherd redemptions``: what was spent, on which voucher, for which order."""

from __future__ import annotations

from typing import Annotated

import typer

from voucherd.api.responses import list_payload
from voucherd.api.terminal import (
    CursorOption,
    JsonFlag,
    LimitOption,
    TenantOption,
    fail,
    print_json,
    rows_table,
    show,
    when,
)
from voucherd.db.commands import database
from voucherd.errors import DomainError
from voucherd.pagination import DEFAULT_LIMIT

redemptions = typer.Typer(help="Redemptions: list them.", no_args_is_help=True)


@redemptions.command("list")
def list_command(
    ctx: typer.Context,
    tenant: TenantOption,
    voucher: Annotated[str | None, typer.Option(help="A voucher id or code")] = None,
    limit: LimitOption = DEFAULT_LIMIT,
    cursor: CursorOption = None,
    as_json: JsonFlag = False,
) -> None:
    """List a tenant's redemptions, newest first."""
    from voucherd.auth.caller import Caller
    from voucherd.formatting import format_value
    from voucherd.redemptions.schemas import present_redemption
    from voucherd.redemptions.service import list_redemptions
    from voucherd.tenants.service import tenant_id_by_name

    try:
        with database(ctx) as db:
            caller = Caller(tenant_id_by_name(db, tenant), "cli")
            page = list_redemptions(db, caller, voucher=voucher, limit=limit, cursor=cursor)
    except DomainError as exc:
        fail(exc)
        return
    if as_json:
        print_json(list_payload([present_redemption(r) for r in page.items], page.next_cursor))
        return
    rows = [
        (
            # The redemption and its voucher by id, one above the other: both whole in 80
            # columns, and the code (which spends the voucher) is not printed.
            f"{r.redemption.id}\n{r.redemption.voucher_id}",
            r.redemption.status,
            format_value(r.redemption.amount, r.currency),
            r.redemption.order_reference,
            when(r.redemption.created_at),
        )
        for r in page.items
    ]
    show(rows_table(("id / voucher", "status", "amount", "order", "when"), rows, fold=(3,)))
