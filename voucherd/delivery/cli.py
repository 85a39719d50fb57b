"""``voucherd deliveries``: what an operator does with deliveries from a terminal."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError
from rich.console import Console, Group, RenderableType
from rich.text import Text

from voucherd.api.terminal import fail, print_json, rows_table, show, when
from voucherd.db.commands import database
from voucherd.errors import DomainError

if TYPE_CHECKING:
    from voucherd.delivery.schemas import DeliveryRecord

deliveries = typer.Typer(
    help="Deliveries: list them, resend failed ones, set a tenant's providers.",
    no_args_is_help=True,
)
console = Console(stderr=True)
TenantOption = Annotated[str, typer.Option(help="Tenant name")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


@deliveries.command("list")
def list_command(
    ctx: typer.Context,
    tenant: TenantOption,
    voucher: Annotated[str | None, typer.Option(help="A voucher id or code")] = None,
    state: Annotated[
        str | None, typer.Option(help="PENDING, SENDING, SENT, DELIVERED or FAILED")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 50,
    as_json: JsonFlag = False,
) -> None:
    """List a tenant's deliveries, newest first."""
    from voucherd.auth.caller import Caller
    from voucherd.delivery.schemas import DeliveryFilters, present_delivery
    from voucherd.delivery.service import list_deliveries
    from voucherd.tenants.service import tenant_id_by_name

    states = ("PENDING", "SENDING", "SENT", "DELIVERED", "FAILED")
    if state is not None and state.upper() not in states:
        _fail(f"--state must be one of {', '.join(states)}")
    filters = DeliveryFilters(voucher, state.upper() if state else None)  # type: ignore[arg-type]
    try:
        with database(ctx) as db:
            caller = Caller(tenant_id_by_name(db, tenant), "cli")
            page = list_deliveries(db, caller, filters, limit=limit, cursor=None)
    except DomainError as exc:
        fail(exc)
        return
    if as_json:
        print_json([present_delivery(r) for r in page.items])
        return
    show(delivery_table(page.items))


def delivery_table(
    records: Sequence[DeliveryRecord], *, title: str | None = None
) -> RenderableType:
    """Deliveries in 80 columns: each row names its delivery and its voucher by id (whole, one
    above the other), the code masked as in every list an operator reads. Last errors follow
    the table, one line each, rather than a column too narrow to read them in."""
    from voucherd.delivery.schemas import mask_code

    rows = [
        (
            f"{r.delivery.id}\n{r.delivery.voucher_id}",
            mask_code(r.voucher_code),
            r.delivery.channel,
            r.delivery.state + (f"\n{r.delivery.attempt} tries" if r.delivery.attempt else ""),
            when(r.delivery.updated_at),
        )
        for r in records
    ]
    columns = ("id / voucher", "code", "channel", "state", "updated")
    table = rows_table(columns, rows, fold=(1,), title=title)
    failures = [
        Text(f"{r.delivery.id}: {r.delivery.last_error[:200]}")
        for r in records
        if r.delivery.last_error
    ]
    return Group(table, *failures)


@deliveries.command("resend")
def resend_command(
    ctx: typer.Context, delivery_id: str, tenant: TenantOption, as_json: JsonFlag = False
) -> None:
    """Send a finished (typically FAILED) delivery again, as a new delivery."""
    from voucherd.auth.caller import Caller
    from voucherd.delivery.schemas import present_delivery
    from voucherd.delivery.service import resend_delivery
    from voucherd.tenants.service import tenant_id_by_name

    try:
        with database(ctx) as db:
            caller = Caller(tenant_id_by_name(db, tenant), "cli", frozenset({"manage"}))
            record = resend_delivery(db, caller, delivery_id)
    except DomainError as exc:
        fail(exc)
        return
    if as_json:
        print_json(present_delivery(record))
    else:
        console.print(f"resending {delivery_id} as {record.delivery.id} ({record.delivery.state})")


@deliveries.command("configure")
def configure_command(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Argument(help="Tenant name")],
    settings_file: Annotated[
        Path,
        typer.Argument(
            help="JSON as PATCH /api/v1/tenant takes under 'delivery'; - reads standard input"
        ),
    ],
) -> None:
    """Set a tenant's delivery settings (phone channel, providers, webhook) from JSON."""
    from voucherd.delivery.settings import DeliverySettingsPatch
    from voucherd.tenants.service import configure_delivery, tenant_id_by_name

    raw = sys.stdin.read() if str(settings_file) == "-" else settings_file.read_text()
    try:
        patch = DeliverySettingsPatch.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        _fail(f"{where}: {first['msg']}")
        return
    try:
        with database(ctx) as db:
            view = configure_delivery(db, tenant_id_by_name(db, tenant), patch)
    except DomainError as exc:
        fail(exc)
        return
    print_json(view.delivery)


@deliveries.command("settings")
def settings_command(
    ctx: typer.Context, tenant: Annotated[str, typer.Argument(help="Tenant name")]
) -> None:
    """Show a tenant's delivery settings, credentials masked."""
    from voucherd.tenants.service import get_tenant, tenant_id_by_name

    try:
        with database(ctx) as db:
            view = get_tenant(db, tenant_id_by_name(db, tenant))
    except DomainError as exc:
        fail(exc)
        return
    print_json(view.delivery)


@deliveries.command("new-webhook-secret")
def new_webhook_secret_command() -> None:
    """Print a fresh Standard Webhooks secret (whsec_...) to configure on both sides."""
    from voucherd.delivery.settings import new_webhook_secret

    sys.stdout.write(json.dumps({"secret": new_webhook_secret()}) + "\n")
