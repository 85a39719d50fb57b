"""``voucherd operators create``: the first admin of a tenant, then signing in with it."""

from __future__ import annotations

from collections.abc import Callable

from typer.testing import CliRunner

from voucherd.cli import app
from voucherd.console import service
from voucherd.db.engine import Database
from voucherd.tenants.service import create_tenant


def test_the_first_admin_is_created_and_signs_in(
    fresh_database: Callable[..., Database],
) -> None:
    db = fresh_database(pool_size=2)
    create_tenant(db, "acme")
    env = {
        "VOUCHERD_DATABASE_URL": db.settings.database_url,
        "VOUCHERD_OPERATOR_PASSWORD": "a long first password",
    }
    runner = CliRunner()
    made = runner.invoke(
        app,
        ["operators", "create", "--tenant", "acme", "--email", "Ops@Acme.example"],
        env=env,
    )
    assert made.exit_code == 0, made.output
    assert "admin ops@acme.example of acme created" in made.output
    assert "a long first password" not in made.output
    again = runner.invoke(
        app, ["operators", "create", "--tenant", "acme", "--email", "ops@acme.example"], env=env
    )
    assert again.exit_code == 1
    assert "exists" in again.output
    nobody = runner.invoke(
        app, ["operators", "create", "--tenant", "nope", "--email", "x@acme.example"], env=env
    )
    assert nobody.exit_code == 1
    signed = service.sign_in(db, "ops@acme.example", "a long first password", address="t")
    assert signed.signed_in.operator.role == "admin"
