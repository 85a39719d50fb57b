"""``voucherd webhooks``: a tenant's event webhook endpoints, their messages with every attempt,
and replaying one, from a terminal; ``--json`` prints what the native API answers
(``/api/v1/webhook-endpoints``) for the same object.

Reading takes any key, as on the API; ``replay`` acts as an operator with ``manage``. An
endpoint's secret is never printed: it is shown once, when the endpoint is registered.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console, Group, RenderableType
from rich.text import Text

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
from voucherd.errors import DomainError, InvalidInput
from voucherd.pagination import DEFAULT_LIMIT

if TYPE_CHECKING:
    from voucherd.webhooks.schemas import EndpointRecord, MessageRecord

webhooks = typer.Typer(
    help="Event webhooks: endpoints, the events sent to them with every attempt, replays.",
    no_args_is_help=True,
)
console = Console(stderr=True)
EndpointArgument = Annotated[str, typer.Argument(help="The endpoint's id (whe_...)")]
_MESSAGE_STATES = ("PENDING", "SENDING", "DELIVERED", "FAILED")
_ENDPOINT_FIELDS = (
    "id", "url", "description", "state", "disabled_reason", "failing_since", "events",
    "created_at", "updated_at",
)  # fmt: skip
_MESSAGE_FIELDS = (
    "id", "type", "endpoint_id", "subject_id", "occurred_at", "state", "attempts_made",
    "failures", "next_attempt_at", "last_error",
)  # fmt: skip


@webhooks.command("list")
def list_command(ctx: typer.Context, tenant: TenantOption, as_json: JsonFlag = False) -> None:
    """List a tenant's endpoints."""
    from voucherd.auth.caller import Caller
    from voucherd.tenants.service import tenant_id_by_name
    from voucherd.webhooks.schemas import present_endpoint
    from voucherd.webhooks.service import list_endpoints

    try:
        with database(ctx) as db:
            records = list_endpoints(db, Caller(tenant_id_by_name(db, tenant), "cli"))
    except DomainError as exc:
        fail(exc)
        return
    if as_json:
        print_json(list_payload([present_endpoint(r) for r in records], None))
        return
    show(endpoint_table(records))


def endpoint_table(records: Sequence[EndpointRecord]) -> RenderableType:
    """Endpoints in 80 columns: the id whole, the URL folded; why one is disabled follows."""
    rows = [
        (
            r.endpoint.id,
            r.endpoint.state,
            f"{len(r.events)} event" + ("s" if len(r.events) != 1 else ""),
            r.endpoint.url,
        )
        for r in records
    ]
    table = rows_table(("id", "state", "events", "url"), rows, fold=(3,))
    reasons = [
        Text(f"{r.endpoint.id}: {r.endpoint.disabled_reason[:300]}")
        for r in records
        if r.endpoint.disabled_reason
    ]
    return Group(table, *reasons)


@webhooks.command("show")
def show_command(
    ctx: typer.Context,
    endpoint: EndpointArgument,
    tenant: TenantOption,
    as_json: JsonFlag = False,
) -> None:
    """One endpoint: its URL, state (and why it is disabled), the event types it gets."""
    from voucherd.auth.caller import Caller
    from voucherd.tenants.service import tenant_id_by_name
    from voucherd.webhooks.schemas import present_endpoint
    from voucherd.webhooks.service import get_endpoint

    try:
        with database(ctx) as db:
            record = get_endpoint(db, Caller(tenant_id_by_name(db, tenant), "cli"), endpoint)
    except DomainError as exc:
        fail(exc)
        return
    shown = present_endpoint(record)
    if as_json:
        print_json(shown)
        return
    shown["events"] = "\n".join(record.events)
    show(details_table(shown, _ENDPOINT_FIELDS))


@webhooks.command("events")
def events_command(
    ctx: typer.Context,
    endpoint: EndpointArgument,
    tenant: TenantOption,
    event: Annotated[
        str | None, typer.Argument(help="One event's id (evt_...): it, with every attempt")
    ] = None,
    state: Annotated[str | None, typer.Option(help="PENDING, SENDING, DELIVERED or FAILED")] = None,
    limit: LimitOption = DEFAULT_LIMIT,
    cursor: CursorOption = None,
    as_json: JsonFlag = False,
) -> None:
    """The events sent (or to send) to an endpoint, newest first; or one with its attempts."""
    from voucherd.auth.caller import Caller
    from voucherd.tenants.service import tenant_id_by_name
    from voucherd.webhooks.schemas import present_message
    from voucherd.webhooks.service import get_message, list_messages

    chosen = state.upper() if state else None
    try:
        if chosen is not None and chosen not in _MESSAGE_STATES:
            raise InvalidInput(f"must be one of {', '.join(_MESSAGE_STATES)}", field="--state")
        with database(ctx) as db:
            caller = Caller(tenant_id_by_name(db, tenant), "cli")
            if event is not None:
                record = get_message(db, caller, endpoint, event)
            else:
                page = list_messages(db, caller, endpoint, state=chosen, limit=limit, cursor=cursor)
    except DomainError as exc:
        fail(exc)
        return
    if event is not None:
        if as_json:
            print_json(present_message(record))
        else:
            show(*message_details(record))
        return
    if as_json:
        print_json(list_payload([present_message(r) for r in page.items], page.next_cursor))
        return
    show(message_table(page.items))
    if page.next_cursor:
        console.print(f"more: --cursor {page.next_cursor}")


def message_table(records: Sequence[MessageRecord]) -> RenderableType:
    """Messages in 80 columns: the event id whole over its type (a publication's event id is
    64 characters), then state and tries over when it happened; last errors follow."""
    rows = [
        (
            f"{r.message.event_id}\n{r.message.event_type}",
            f"{r.message.state}\n{r.message.attempt} tries\n{when(r.message.occurred_at)}",
        )
        for r in records
    ]
    table = rows_table(("event / type", "state / when"), rows)
    errors = [
        Text(f"{r.message.event_id}: {r.message.last_error[:200]}")
        for r in records
        if r.message.last_error
    ]
    return Group(table, *errors)


def message_details(record: MessageRecord) -> list[RenderableType]:
    """One message as name/value lines, then its attempts, one line each."""
    from voucherd.webhooks.schemas import present_message

    shown: list[RenderableType] = [details_table(present_message(record), _MESSAGE_FIELDS)]
    for attempt in record.attempts or ():
        line = f"attempt {attempt.attempt} {attempt.outcome} {attempt.created_at.isoformat()}"
        if attempt.worker:
            line += f" by {attempt.worker}"
        if attempt.detail:
            line += f": {attempt.detail[:300]}"
        shown.append(Text(line))
    return shown


@webhooks.command("replay")
def replay_command(
    ctx: typer.Context,
    endpoint: EndpointArgument,
    event: Annotated[str, typer.Argument(help="The event's id (evt_...)")],
    tenant: TenantOption,
    as_json: JsonFlag = False,
) -> None:
    """Send an event to the endpoint again, now, with the same webhook-id (a worker sends it)."""
    from voucherd.auth.caller import Caller
    from voucherd.tenants.service import tenant_id_by_name
    from voucherd.webhooks.schemas import present_message
    from voucherd.webhooks.service import replay_message

    try:
        with database(ctx) as db:
            caller = Caller(tenant_id_by_name(db, tenant), "cli", frozenset({"manage"}))
            record = replay_message(db, caller, endpoint, event)
    except DomainError as exc:
        fail(exc)
        return
    if as_json:
        print_json(present_message(record))
    else:
        console.print(f"{event} to {endpoint}: {record.message.state}, due now")
