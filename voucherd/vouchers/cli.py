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
    currency = record.voucher.currency
    # Money as the holder reads it (the JSON keeps minor units, as the API does).
    readable = dict(shown, value=_money(shown["value"], currency))
    readable["balance"] = _money(shown["balance"], currency)
    redemption = shown["redemption"]
    readable["redemption"] = (
        f"redeemed {redemption['redeemed_quantity']} of {redemption['quantity'] or 'unlimited'}"
    )
    show(
        details_table(readable, _FIELDS),
        rows_table(
            ("when", "kind", "change", "redemption"),
            [
                (when(e.created_at), e.kind, _money(e.delta, currency, sign=True), e.redemption_id)
                for e in ledger
            ],
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


def _money(amount: int | None, currency: str | None, *, sign: bool = False) -> str | None:
    from voucherd.formatting import format_value

    shown = format_value(amount, currency)
    if sign and amount is not None and amount >= 0 and shown is not None:
        return f"+{shown}"
    return shown
