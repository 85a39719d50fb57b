"""Tenants with a key, made through the real services."""

from __future__ import annotations

import secrets

from voucherd.auth.caller import Caller
from voucherd.auth.service import authenticate_token, create_key
from voucherd.db.engine import Database
from voucherd.tenants.service import create_tenant


class Tenant:
    """A tenant with a full-scope key: ``caller`` for services, ``headers`` for HTTP."""

    def __init__(
        self,
        db: Database,
        *,
        name: str | None = None,
        scopes: list[str] | None = None,
        weekly_value_limit: int | None = None,
    ) -> None:
        self.name = name or f"tenant-{secrets.token_hex(4)}"
        self.view = create_tenant(db, self.name, weekly_value_limit=weekly_value_limit)
        self.id = self.view.id
        key = create_key(db, self.name, scopes=scopes)
        self.key = key
        self.caller: Caller = authenticate_token(db, key.token)
        self.headers = {"Authorization": f"Bearer {key.token}"}

    def key_with(self, db: Database, scopes: list[str]) -> dict[str, str]:
        key = create_key(db, self.name, scopes=scopes)
        return {"Authorization": f"Bearer {key.token}"}


def make_tenant(
    db: Database,
    *,
    name: str | None = None,
    scopes: list[str] | None = None,
    weekly_value_limit: int | None = None,
) -> Tenant:
    return Tenant(db, name=name, scopes=scopes, weekly_value_limit=weekly_value_limit)
