"""API keys and who is calling.

A key is one credential with two spellings: the pair ``key_id`` + ``secret`` (Yoyo's
``apiId``/``apiPassword``, Voucherify's ``X-App-Id``/``X-App-Token``) and the token
``key_id.secret`` (Bearer, i-movo's ``X-API-KEY``). Only a SHA-256 of the secret is stored.
Tenants and their settings are :mod:`voucherd.tenants`.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from voucherd.auth.caller import SCOPES, Caller, identified, identified_without_waiting
from voucherd.auth.models import ApiKey, Tenant
from voucherd.db.engine import Database
from voucherd.errors import InvalidInput, NotFound, Unauthorized
from voucherd.ids import new_id, new_secret
from voucherd.observability.context import note_tenant

_BAD_CREDENTIALS = "invalid or revoked API credentials"


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    secret: str
    token: str
    tenant: str
    scopes: list[str]


@dataclass(frozen=True)
class KeyView:
    key_id: str
    tenant: str
    name: str | None
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _tenant_by_name(session: Session, name: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        raise NotFound(f"no tenant named {name!r}", field="tenant")
    return tenant


def parse_scopes(text: str) -> list[str]:
    scopes = sorted({s.strip() for s in text.split(",") if s.strip()})
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise InvalidInput(
            f"scopes must be a comma-separated subset of {', '.join(SCOPES)}", field="scopes"
        )
    return scopes


def create_key(
    db: Database, tenant_name: str, *, scopes: list[str] | None = None, name: str | None = None
) -> IssuedKey:
    # None means every scope; an empty or unknown list is a mistake, never "every scope".
    scopes = sorted(SCOPES) if scopes is None else parse_scopes(",".join(scopes))
    with db.unit_of_work() as session:
        tenant = _tenant_by_name(session, tenant_name)
        key_id = new_id("vk")
        secret = new_secret()
        session.add(
            ApiKey(
                id=key_id,
                tenant_id=tenant.id,
                name=name,
                secret_hash=_hash(secret),
                scopes=",".join(scopes),
                created_at=db.now(),
            )
        )
        session.commit()
    return IssuedKey(key_id, secret, f"{key_id}.{secret}", tenant_name, scopes)


def list_keys(db: Database, tenant_name: str) -> list[KeyView]:
    with db.unit_of_work(write=False) as session:
        tenant = _tenant_by_name(session, tenant_name)
        keys = session.scalars(
            select(ApiKey).where(ApiKey.tenant_id == tenant.id).order_by(ApiKey.id)
        )
        return [
            KeyView(k.id, tenant.name, k.name, k.scopes.split(","), k.created_at, k.revoked_at)
            for k in keys
        ]


def revoke_key(db: Database, key_id: str) -> None:
    with db.unit_of_work() as session:
        revoked = session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=db.now())
        )
        if revoked.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFound(f"no active key {key_id!r}", field="key_id")
        session.commit()
    db.key_cache.forget(key_id)


def _checked(key_id: str, secret: str) -> str:
    """The presented secret's hash, or :class:`Unauthorized` for credentials of no key's shape."""
    if not key_id or not secret or len(key_id) > 40 or len(secret) > 200:
        raise Unauthorized(_BAD_CREDENTIALS)
    return _hash(secret)


def authenticate_without_waiting(db: Database, key_id: str, secret: str) -> Caller | None:
    """:func:`authenticate` when it needs no I/O (the key cache knows the key, the guard can
    count the request from memory), for the event loop; None, having announced nothing, when
    only :func:`authenticate` can answer (in the threadpool). Refusals are the same."""
    presented = _checked(key_id, secret)
    cached = db.key_cache.get(key_id)
    if cached is None:
        return None
    if not hmac.compare_digest(cached[0], presented):
        raise Unauthorized(_BAD_CREDENTIALS)
    caller = cached[1]
    note_tenant(caller.tenant_id)
    return caller if identified_without_waiting(caller) else None


def authenticate(db: Database, key_id: str, secret: str) -> Caller:
    """The caller behind a key id and secret, or :class:`Unauthorized`."""
    presented = _checked(key_id, secret)
    cached = db.key_cache.get(key_id)
    if cached is not None:
        if hmac.compare_digest(cached[0], presented):
            return _identified(cached[1])
        raise Unauthorized(_BAD_CREDENTIALS)
    with db.unit_of_work(write=False) as session:
        key = session.get(ApiKey, key_id)
        if key is None or key.revoked_at is not None:
            raise Unauthorized(_BAD_CREDENTIALS)
        stored, caller = (
            key.secret_hash,
            Caller(key.tenant_id, key.id, frozenset(key.scopes.split(","))),
        )
    if not hmac.compare_digest(stored, presented):
        raise Unauthorized(_BAD_CREDENTIALS)
    if db.key_cache_seconds > 0:
        db.key_cache.put(key_id, stored, caller, db.key_cache_seconds)
    return _identified(caller)


def _identified(caller: Caller) -> Caller:
    note_tenant(caller.tenant_id)
    # Every face authenticates here, so every face is rate limited here (429 past a limit): the
    # guard watches the request being served (auth/caller.py, guard/middleware.py).
    identified(caller)
    return caller


def split_token(token: str) -> tuple[str, str]:
    """A token's key id and secret (``key_id.secret``)."""
    key_id, _, secret = token.strip().partition(".")
    return key_id, secret


def authenticate_token(db: Database, token: str) -> Caller:
    return authenticate(db, *split_token(token))
