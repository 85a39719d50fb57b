"""What every ``voucherd`` command that reads prints: the native API's JSON, or a table that fits
a terminal of 80 columns without ever cutting an id.

Here, beside the API's encoder, because ``--json`` must print what the native API answers for the
same object, encoded by the same function; the features' ``cli.py`` modules and the root command
share it rather than each keeping a copy.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console, RenderableType
from rich.table import Table

from voucherd.api.responses import dumps
from voucherd.errors import DomainError
from voucherd.pagination import MAX_LIMIT

errors = Console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the native API's JSON.")]
TenantOption = Annotated[str, typer.Option(help="Tenant name")]
LimitOption = Annotated[int, typer.Option(min=1, max=MAX_LIMIT, help="How many, newest first")]
CursorOption = Annotated[
    str | None, typer.Option(help="Continue a list after this id (next_cursor in --json)")
]


def print_json(payload: Any) -> None:
    sys.stdout.write(dumps(payload).decode() + "\n")


def fail(exc: DomainError) -> None:
    errors.print(f"[red]error:[/red] {exc.detail}" + (f" ({exc.field})" if exc.field else ""))
    raise typer.Exit(1)


def when(moment: datetime | None) -> str:
    """Date over time on two lines: a narrow column that still says the second."""
    return f"{moment:%Y-%m-%d}\n{moment:%H:%M:%S}" if moment is not None else ""


def rows_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[str | None]],
    *,
    fold: Sequence[int] = (),
    title: str | None = None,
) -> Table:
    """A table whose columns are printed whole (ids above all: an operator copies them into the
    next command), except those at the positions in ``fold``: free text (names, references),
    which rich folds to fit the terminal. Each table is laid out so its whole columns fit 80;
    a cell may hold two short values, one per line (an id over the id it belongs to)."""
    table = Table(
        box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, title=title, title_justify="left"
    )
    for position, name in enumerate(columns):
        if position in fold:
            table.add_column(name, overflow="fold")
        else:
            lines = [line for row in rows for line in (row[position] or "").splitlines()]
            table.add_column(name, no_wrap=True, min_width=max([len(name), *map(len, lines)]))
    for row in rows:
        table.add_row(*(cell or "" for cell in row))
    return table


def details_table(payload: Mapping[str, Any], fields: Sequence[str]) -> Table:
    """One object as name/value lines, those of ``fields`` it has a value for."""
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(no_wrap=True, style="bold")
    table.add_column(overflow="fold")
    for name in fields:
        value = payload.get(name)
        if value is None or value == {} or value == []:
            continue
        table.add_row(name, _text(value))
    return table


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping | list):
        return json.dumps(value, default=str, separators=(",", ":"))
    return str(value)


def show(*renderables: RenderableType) -> None:
    console = Console()
    for renderable in renderables:
        console.print(renderable)
