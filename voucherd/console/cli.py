"""``voucherd operators``: the first admin of a tenant is made here; the rest in the console."""

from __future__ import annotations

import getpass
import os
from typing import Annotated

import typer
from rich.console import Console

from voucherd.auth.service import tenant_id_by_name
from voucherd.config import load_settings
from voucherd.console.models import ROLES
from voucherd.console.service import create_operator
from voucherd.db.engine import Database
from voucherd.db.migrate import upgrade
from voucherd.errors import DomainError

operators = typer.Typer(
    help="Console operators: who may sign in to /console.", no_args_is_help=True
)
_err = Console(stderr=True)
PASSWORD_ENV = "VOUCHERD_OPERATOR_PASSWORD"


@operators.command("create")
def create(
    tenant: Annotated[str, typer.Option(help="The tenant's name")],
    email: Annotated[str, typer.Option(help="The operator's e-mail (their sign-in name)")],
    role: Annotated[str, typer.Option(help=f"One of {', '.join(ROLES)}")] = "admin",
    name: Annotated[str | None, typer.Option(help="Shown beside their actions")] = None,
) -> None:
    """Create an operator. The password is asked for (never an argument, which would stay in
    the shell's history), or read from VOUCHERD_OPERATOR_PASSWORD for scripts."""
    password = os.environ.get(PASSWORD_ENV) or getpass.getpass("Password (10+ characters): ")
    db = Database.from_settings(load_settings())
    try:
        upgrade(db.engine)
        made = create_operator(
            db,
            tenant_id=tenant_id_by_name(db, tenant),
            email=email,
            password=password,
            role=role,
            name=name,
        )
    except DomainError as exc:
        _err.print(f"[red]error:[/red] {exc.detail}" + (f" ({exc.field})" if exc.field else ""))
        raise typer.Exit(1) from exc
    finally:
        db.dispose()
    settings = load_settings()
    _err.print(f"{made.role} {made.email} of {made.tenant_name} created")
    _err.print(f"sign in at {settings.public_base_url}/console")
