from __future__ import annotations

import typer


def export() -> None:
    """Export a campaign's vouchers as CSV (being built)."""
    raise typer.Exit(2)
