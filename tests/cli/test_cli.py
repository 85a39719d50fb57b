"""The ``voucherd`` command against a real migrated database, as an operator runs it."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from click.testing import Result
from typer.testing import CliRunner

from voucherd.auth.service import authenticate_token
from voucherd.cli import app
from voucherd.db.engine import Database
from voucherd.errors import Unauthorized


@pytest.fixture
def cli(fresh_database: Callable[..., Database]) -> tuple[Callable[..., Result], Database]:
    db = fresh_database(pool_size=2)
    runner = CliRunner()
    env = {"VOUCHERD_DATABASE_URL": db.settings.database_url, "VOUCHERD_KEY_CACHE_SECONDS": "0"}

    def run(*args: str, ok: bool = True) -> Result:
        result = runner.invoke(app, list(args), env=env)
        if ok:
            assert result.exit_code == 0, result.output
        else:
            assert result.exit_code != 0, result.output
        return result

    return run, db


class TestTenantsAndKeys:
    def test_create_tenant_and_key_json(self, cli: tuple[Callable[..., Result], Database]) -> None:
        run, db = cli
        tenant = json.loads(run("tenants", "create", "acme", "--json").stdout)
        assert tenant["name"] == "acme"
        key = json.loads(run("keys", "create", "--tenant", "acme", "--json").stdout)
        assert set(key) >= {"key_id", "secret", "token"}
        assert key["token"] == f"{key['key_id']}.{key['secret']}"
        caller = authenticate_token(db, key["token"])
        assert caller.tenant_id == tenant["id"]
        assert caller.scopes == frozenset({"issue", "redeem", "manage"})

    def test_scoped_key(self, cli: tuple[Callable[..., Result], Database]) -> None:
        run, db = cli
        run("tenants", "create", "acme")
        out = run("keys", "create", "--tenant", "acme", "--scopes", "redeem", "--json")
        key = json.loads(out.stdout)
        assert authenticate_token(db, key["token"]).scopes == frozenset({"redeem"})
        bad = run("keys", "create", "--tenant", "acme", "--scopes", "root", ok=False)
        assert "scopes" in bad.output

    def test_revoke(self, cli: tuple[Callable[..., Result], Database]) -> None:
        run, db = cli
        run("tenants", "create", "acme")
        key = json.loads(run("keys", "create", "--tenant", "acme", "--json").stdout)
        run("keys", "revoke", key["key_id"])
        with pytest.raises(Unauthorized):
            authenticate_token(db, key["token"])
        listed = json.loads(run("keys", "list", "--tenant", "acme", "--json").stdout)
        assert listed[0]["revoked_at"] is not None
        assert "secret" not in listed[0]

    def test_duplicate_tenant_and_unknown_tenant_fail_clearly(
        self, cli: tuple[Callable[..., Result], Database]
    ) -> None:
        run, _ = cli
        run("tenants", "create", "acme")
        duplicate = run("tenants", "create", "acme", ok=False)
        assert "exists" in duplicate.output
        missing = run("keys", "create", "--tenant", "nobody", ok=False)
        assert "no tenant" in missing.output
