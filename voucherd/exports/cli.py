"""``voucherd export``: a campaign's vouchers as CSV, streamed from the database to a file."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, BinaryIO

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from voucherd.auth.caller import Caller
from voucherd.db.commands import database
from voucherd.db.engine import Database
from voucherd.errors import DomainError
from voucherd.exports.schemas import ExportProgress, ExportRequest, ExportSummary
from voucherd.exports.service import export_csv
from voucherd.tenants.service import tenant_id_by_name


class StateName(StrEnum):
    ACTIVE = "ACTIVE"
    DISABLED = "DISABLED"
    REDEEMED = "REDEEMED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


def export(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option(help="Tenant name")],
    campaign: Annotated[str, typer.Option(help="Campaign id or name")],
    state: Annotated[
        list[StateName] | None,
        typer.Option(help="Only vouchers in this state; repeat for several"),
    ] = None,
    published: Annotated[
        bool, typer.Option("--published", help="Only vouchers published before")
    ] = False,
    unpublished: Annotated[
        bool,
        typer.Option(
            "--unpublished",
            help="Only unpublished codes, for distribution: they are taken from the pool and "
            "recorded as published with channel Export",
        ),
    ] = False,
    no_record: Annotated[
        bool,
        typer.Option("--no-record", help="With --unpublished: export without publishing them"),
    ] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many vouchers")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="CSV file to write (default: stdout)")
    ] = None,
) -> None:
    """Export a campaign's vouchers as CSV, streamed straight from the database."""
    console = Console(stderr=True)
    if published and unpublished:
        console.print("[red]error:[/red] choose --published or --unpublished, not both")
        raise typer.Exit(2)
    request = ExportRequest(
        state=[s.value for s in state] if state else None,
        published=True if published else (False if unpublished else None),
        record_publication=not no_record,
        limit=limit,
    )
    try:
        with database(ctx) as db, _open(output) as sink:
            summary = _run(db, tenant, campaign, request, sink, console)
    except DomainError as exc:
        console.print(f"[red]error:[/red] {exc.detail}" + (f" ({exc.field})" if exc.field else ""))
        raise typer.Exit(1) from None
    where = str(output) if output else "stdout"
    console.print(f"exported {summary.rows:,} vouchers of {summary.campaign_id} to {where}")
    if summary.publication_id:
        console.print(f"recorded as published (channel Export) in {summary.publication_id}")


@contextmanager
def _open(output: Path | None) -> Iterator[BinaryIO]:
    if output is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with output.open("wb") as sink:
        yield sink


def _run(
    db: Database,
    tenant: str,
    campaign: str,
    request: ExportRequest,
    sink: BinaryIO,
    console: Console,
) -> ExportSummary:
    caller = Caller(tenant_id_by_name(db, tenant), "cli", frozenset({"issue"}))
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("exporting", total=None)

        def advanced(progress: ExportProgress) -> None:
            total = max(progress.total or 0, progress.done)
            bar.update(task, completed=progress.done, total=total)

        return export_csv(db, caller, campaign, request, sink.write, advanced)
