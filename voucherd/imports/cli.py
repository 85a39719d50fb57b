"""``voucherd import``: a file of live vouchers from another platform, streamed into a campaign."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from voucherd.auth.caller import Caller
from voucherd.db.commands import database
from voucherd.errors import DomainError
from voucherd.imports.reader import FileFormat, detect_format
from voucherd.imports.schemas import ImportSummary
from voucherd.imports.service import import_file
from voucherd.tenants.service import tenant_id_by_name

_SHOWN = 20  # refused rows printed; --json prints the first 1,000


def import_vouchers(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(help="CSV or JSON-lines file", exists=True, dir_okay=False)
    ],
    tenant: Annotated[str, typer.Option(help="Tenant name")],
    campaign: Annotated[str, typer.Option(help="Campaign id or name")],
    all_or_nothing: Annotated[
        bool,
        typer.Option("--all-or-nothing", help="Import nothing unless every row can be imported"),
    ] = False,
    file_format: Annotated[
        FileFormat | None,
        typer.Option("--format", help="csv or jsonl (default: from the name, else the content)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON")] = False,
) -> None:
    """Import existing vouchers (codes kept as they are, balances, states, holders) into a
    campaign. Exit status 1 when any row was refused; re-running imports nothing twice."""
    console = Console(stderr=True)
    try:
        with database(ctx) as db, file.open("rb") as source:
            chosen = file_format or detect_format(source.peek(64)[:64], hint=file.name)
            caller = Caller(tenant_id_by_name(db, tenant), "cli", frozenset({"issue"}))

            def advanced(done: int, summary: ImportSummary) -> None:
                if not as_json:
                    console.print(f"read {done:,} rows", highlight=False)

            summary = import_file(
                db,
                caller,
                campaign,
                source,
                file_format=chosen,
                all_or_nothing=all_or_nothing,
                on_progress=advanced,
            )
    except DomainError as exc:
        console.print(f"[red]error:[/red] {exc.detail}" + (f" ({exc.field})" if exc.field else ""))
        raise typer.Exit(1) from None
    if as_json:
        sys.stdout.write(json.dumps(summary.to_result(all_or_nothing=all_or_nothing)) + "\n")
    else:
        verb = "would have imported nothing: rolled back" if summary.rolled_back else "imported"
        console.print(
            f"{verb} {summary.imported:,}; already present {summary.already_present:,}; "
            f"refused {summary.rejected:,}",
            highlight=False,
        )
        for problem in summary.problems[:_SHOWN]:
            where = f"line {problem.line}" + (
                f", column {problem.column}" if problem.column else ""
            )
            console.print(f"  {where}: {problem.reason}", highlight=False, markup=False)
    if summary.rejected:
        raise typer.Exit(1)
