"""``voucherd operators``: the first admin of a tenant is made here; the rest in the console."""

from __future__ import annotations

import getpass
import os
from typing import Annotated

import typer
from rich.console import Console

from voucherd.console.models import ROLES
from voucherd.console.service import create_operator
from voucherd.db.commands import database
from voucherd.errors import DomainError
from voucherd.tenants.service import tenant_id_by_name

operators = typer.Typer(
    help="Console operators: who may sign in to /console.", no_args_is_help=True
)
_err = Console(stderr=True)
PASSWORD_ENV = "VOUCHERD_OPERATOR_PASSWORD"


@operators.command("create")
def create(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option(help="The tenant's name")],
    email: Annotated[str, typer.Option(help="The operator's e-mail (their sign-in name)")],
    role: Annotated[str, typer.Option(help=f"One of {', '.join(ROLES)}")] = "admin",
    name: Annotated[str | None, typer.Option(help="Shown beside their actions")] = None,
) -> None:
    """Create an operator. The password is asked for (never an argument, which would stay in
    the shell's history), or read from VOUCHERD_OPERATOR_PASSWORD for scripts."""
    password = os.environ.get(PASSWORD_ENV) or getpass.getpass("Password (10+ characters): ")
    try:
        with database(ctx) as db:
            made = create_operator(
                db,
                tenant_id=tenant_id_by_name(db, tenant),
                email=email,
                password=password,
                role=role,
                name=name,
            )
            base_url = db.settings.public_base_url
    except DomainError as exc:
        _err.print(f"[red]error:[/red] {exc.detail}" + (f" ({exc.field})" if exc.field else ""))
        raise typer.Exit(1) from exc
    _err.print(f"{made.role} {made.email} of {made.tenant_name} created")
    _err.print(f"sign in at {base_url}/console")
