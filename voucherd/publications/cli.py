"""``voucherd publications``: who got which vouchers, through which channel."""

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

publications = typer.Typer(help="Publications: list them.", no_args_is_help=True)


@publications.command("list")
def list_command(
    ctx: typer.Context,
    tenant: TenantOption,
    campaign: Annotated[str | None, typer.Option(help="A campaign id or name")] = None,
    voucher: Annotated[str | None, typer.Option(help="A voucher id or code")] = None,
    customer: Annotated[str | None, typer.Option(help="A customer id or source_id")] = None,
    channel: Annotated[str | None, typer.Option(help="The publication's channel")] = None,
    limit: LimitOption = DEFAULT_LIMIT,
    cursor: CursorOption = None,
    as_json: JsonFlag = False,
) -> None:
    """List a tenant's publications, newest first."""
    from voucherd.auth.caller import Caller
    from voucherd.publications.schemas import PublicationFilters, present_publication
    from voucherd.publications.service import list_publications
    from voucherd.tenants.service import tenant_id_by_name

    filters = PublicationFilters(campaign, voucher, customer, channel)
    try:
        with database(ctx) as db:
            caller = Caller(tenant_id_by_name(db, tenant), "cli")
            page = list_publications(db, caller, filters, limit=limit, cursor=cursor)
            now, base_url = db.now(), db.settings.public_base_url
    except DomainError as exc:
        fail(exc)
        return
    if as_json:
        shown = [present_publication(r, now=now, base_url=base_url) for r in page.items]
        print_json(list_payload(shown, page.next_cursor))
        return
    rows = [
        (
            r.publication.id,
            r.campaign_name,
            r.customer_source_id or r.publication.customer_id,
            r.publication.channel,
            str(r.count),
            when(r.publication.created_at),
        )
        for r in page.items
    ]
    columns = ("id", "campaign", "customer", "channel", "count", "created")
    show(rows_table(columns, rows, fold=(1, 2)))
