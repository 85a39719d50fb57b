"""``voucherd campaigns``: list them, look at one, fill one with vouchers."""

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
    errors,
    fail,
    print_json,
    rows_table,
    show,
)
from voucherd.db.commands import database
from voucherd.errors import DomainError
from voucherd.pagination import DEFAULT_LIMIT

campaigns = typer.Typer(help="Campaigns: list, show, mint.", no_args_is_help=True)
CampaignArgument = Annotated[str, typer.Argument(help="Campaign id or name")]

_FIELDS = (
    "id",
    "name",
    "description",
    "type",
    "mode",
    "active",
    "currency",
    "default_value",
    "max_value",
    "discount",
    "code_config",
    "start_date",
    "expiration_date",
    "lifetime_days",
    "validity_timeframe",
    "validity_day_of_week",
    "validity_hours",
    "timezone",
    "redemption_quantity",
    "per_customer_limit",
    "budget",
    "issued_value",
    "category",
    "locale",
    "delivery_channel",
    "created_at",
    "updated_at",
)


@campaigns.command("list")
def list_command(
    ctx: typer.Context,
    tenant: TenantOption,
    limit: LimitOption = DEFAULT_LIMIT,
    cursor: CursorOption = None,
    as_json: JsonFlag = False,
) -> None:
    """List a tenant's campaigns, newest first."""
    from voucherd.auth.caller import Caller
    from voucherd.campaigns.schemas import present_campaign
    from voucherd.campaigns.service import list_campaigns
    from voucherd.formatting import format_value
    from voucherd.tenants.service import tenant_id_by_name

    try:
        with database(ctx) as db:
            caller = Caller(tenant_id_by_name(db, tenant), "cli")
            page = list_campaigns(db, caller, limit=limit, cursor=cursor)
    except DomainError as exc:
        fail(exc)
        return
    if as_json:
        print_json(list_payload([present_campaign(c) for c in page.items], page.next_cursor))
        return
    rows = [
        (
            c.id,
            c.name,
            c.type,
            format_value(c.default_value, c.currency),
            "yes" if c.active else "no",
        )
        for c in page.items
    ]
    show(rows_table(("id", "name", "type", "value", "active"), rows, fold=(1,)))


@campaigns.command("show")
def show_command(
    ctx: typer.Context, campaign: CampaignArgument, tenant: TenantOption, as_json: JsonFlag = False
) -> None:
    """A campaign, as GET /api/v1/campaigns/{campaign} answers it."""
    from voucherd.auth.caller import Caller
    from voucherd.campaigns.schemas import present_campaign
    from voucherd.campaigns.service import get_campaign
    from voucherd.tenants.service import tenant_id_by_name

    try:
        with database(ctx) as db:
            found = get_campaign(db, Caller(tenant_id_by_name(db, tenant), "cli"), campaign)
    except DomainError as exc:
        fail(exc)
        return
    shown = present_campaign(found)
    if as_json:
        print_json(shown)
    else:
        show(details_table(shown, _FIELDS))


@campaigns.command("mint")
def mint_command(
    ctx: typer.Context,
    campaign: CampaignArgument,
    tenant: TenantOption,
    count: Annotated[int, typer.Option(min=1, help="How many vouchers")],
    as_json: JsonFlag = False,
) -> None:
    """Add COUNT vouchers to a campaign, all in one transaction."""
    import time

    from voucherd.auth.caller import Caller
    from voucherd.tenants.service import tenant_id_by_name
    from voucherd.vouchers.mint import mint_vouchers
    from voucherd.vouchers.schemas import MintVouchers

    try:
        with database(ctx) as db:
            caller = Caller(tenant_id_by_name(db, tenant), "cli", frozenset({"issue"}))
            started = time.perf_counter()
            result = mint_vouchers(db, caller, campaign, MintVouchers(count=count))
    except DomainError as exc:
        fail(exc)
        return
    seconds = time.perf_counter() - started
    if as_json:
        print_json({"campaign_id": result.campaign_id, "count": result.count, "seconds": seconds})
    else:
        errors.print(f"minted {result.count} vouchers into {result.campaign_id} in {seconds:.1f}s")
