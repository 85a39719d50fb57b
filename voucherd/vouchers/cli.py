"""``voucherd vouchers``: one voucher as an operator asks about it at a help desk."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from voucherd.api.responses import list_payload
from voucherd.api.terminal import (
    JsonFlag,
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
from voucherd.pagination import MAX_LIMIT

vouchers = typer.Typer(help="Vouchers: look one up.", no_args_is_help=True)

_FIELDS = (
    "id",
    "code",
    "campaign",
    "campaign_id",
    "type",
    "state",
    "currency",
    "value",
    "balance",
    "redemption",
    "customer_ref",
    "holder_id",
    "start_date",
    "expiration_date",
    "category",
    "page_url",
    "created_at",
    "updated_at",
)


@vouchers.command("show")
def show_command(
    ctx: typer.Context,
    voucher: Annotated[str, typer.Argument(help="The voucher's code or id")],
    tenant: TenantOption,
    as_json: JsonFlag = False,
) -> None:
    """A voucher: its state and balance, its ledger, its events and its deliveries.

    --json prints the voucher as GET /api/v1/vouchers/{voucher} answers it, with ``ledger``,
    ``events`` and ``deliveries`` added, each as that voucher's list route answers it.
    """
    from voucherd.auth.caller import Caller
    from voucherd.delivery.cli import delivery_table
    from voucherd.delivery.schemas import DeliveryFilters, present_delivery
    from voucherd.delivery.service import list_deliveries
    from voucherd.tenants.service import tenant_id_by_name
    from voucherd.vouchers.schemas import present_event, present_ledger_entry, present_voucher
    from voucherd.vouchers.service import get_voucher, list_events, list_ledger

    try:
        with database(ctx) as db:
            caller = Caller(tenant_id_by_name(db, tenant), "cli")
            record = get_voucher(db, caller, voucher)
            shown: dict[str, Any] = present_voucher(
                record, now=db.now(), base_url=db.settings.public_base_url
            )
            voucher_id = record.voucher.id
            ledger = list_ledger(db, caller, voucher_id)
            events = list_events(db, caller, voucher_id)
            filters = DeliveryFilters(voucher=voucher_id)
            deliveries = list_deliveries(db, caller, filters, limit=MAX_LIMIT, cursor=None)
    except DomainError as exc:
        fail(exc)
        return
    if as_json:
        shown["ledger"] = list_payload([present_ledger_entry(e) for e in ledger], None)
        shown["events"] = list_payload([present_event(e) for e in events], None)
        shown["deliveries"] = list_payload(
            [present_delivery(d) for d in deliveries.items], deliveries.next_cursor
        )
        print_json(shown)
        return
    show(
        details_table(shown, _FIELDS),
        rows_table(
            ("when", "kind", "delta", "redemption"),
            [(when(e.created_at), e.kind, f"{e.delta:+d}", e.redemption_id) for e in ledger],
            title="ledger",
        ),
        rows_table(
            ("when", "kind", "by", "reason"),
            [(when(e.created_at), e.kind, e.actor, e.reason) for e in events],
            fold=(3,),
            title="events",
        ),
        delivery_table(deliveries.items, title="deliveries"),
    )
