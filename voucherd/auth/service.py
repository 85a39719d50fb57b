"""Tenants, API keys and who is calling.

A key is one credential with two spellings: the pair ``key_id`` + ``secret`` (Yoyo's
``apiId``/``apiPassword``, Voucherify's ``X-App-Id``/``X-App-Token``) and the token
``key_id.secret`` (Bearer, i-movo's ``X-API-KEY``). Only a SHA-256 of the secret is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from voucherd.auth.models import ApiKey, Tenant
from voucherd.db.engine import Database
from voucherd.delivery.settings import DeliverySettingsPatch, masked, merged
from voucherd.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from voucherd.guard import service as guard
from voucherd.ids import new_id, new_secret
from voucherd.observability.context import note_tenant
from voucherd.vouchers.limits import recount_weekly_buckets

SCOPES = ("issue", "redeem", "manage")
_BAD_CREDENTIALS = "invalid or revoked API credentials"


@dataclass(frozen=True)
class Caller:
    tenant_id: str
    key_id: str
    scopes: frozenset[str] = field(default_factory=frozenset)

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"this API key lacks the '{scope}' scope")


@dataclass(frozen=True)
class TenantView:
    id: str
    name: str
    weekly_value_limit: int | None
    created_at: datetime
    # Delivery settings with every credential masked (delivery/settings.py): safe to show.
    delivery: dict[str, Any] = field(default_factory=dict)
    # The tenant's own rate limits (voucherd/guard); absent ones are the operator's defaults.
    rate_limits: dict[str, int] = field(default_factory=dict)


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


def _tenant_view(tenant: Tenant) -> TenantView:
    delivery = masked((tenant.settings or {}).get("delivery"))
    limits = (tenant.settings or {}).get(guard.TENANT_SETTING) or {}
    return TenantView(
        tenant.id, tenant.name, tenant.weekly_value_limit, tenant.created_at, delivery, limits
    )


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


def create_tenant(db: Database, name: str, *, weekly_value_limit: int | None = None) -> TenantView:
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidInput("a tenant name is 1 to 100 characters", field="name")
    if weekly_value_limit is not None and weekly_value_limit < 0:
        raise InvalidInput("must not be negative", field="weekly_value_limit")
    with db.unit_of_work() as session:
        tenant = Tenant(
            id=new_id("ten"),
            name=name,
            weekly_value_limit=weekly_value_limit,
            settings={},
            created_at=db.now(),
        )
        session.add(tenant)
        try:
            session.flush()
        except IntegrityError as exc:
            raise Conflict(f"a tenant named {name!r} exists", field="name") from exc
        session.commit()
        return _tenant_view(tenant)


def get_tenant(db: Database, tenant_id: str) -> TenantView:
    with db.unit_of_work(write=False) as session:
        tenant = session.get(Tenant, tenant_id)
        if tenant is None:
            raise NotFound("tenant not found")
        return _tenant_view(tenant)


def list_tenants(db: Database) -> list[TenantView]:
    with db.unit_of_work(write=False) as session:
        return [_tenant_view(t) for t in session.scalars(select(Tenant).order_by(Tenant.name))]


def set_weekly_value_limit(db: Database, tenant_id: str, limit: int | None) -> TenantView:
    """Set or clear the rolling weekly value limit. Switching it on counts the value issued in
    the last 7 days, so a limit set today already knows about yesterday."""
    if limit is not None and limit < 0:
        raise InvalidInput("must not be negative", field="weekly_value_limit")
    with db.unit_of_work() as session:
        tenant = session.get(Tenant, tenant_id, with_for_update=True)
        if tenant is None:
            raise NotFound("tenant not found")
        _apply_weekly_value_limit(session, tenant, limit, db.now())
        session.commit()
        return _tenant_view(tenant)


def _apply_weekly_value_limit(
    session: Session, tenant: Tenant, limit: int | None, now: datetime
) -> None:
    if tenant.weekly_value_limit is None and limit is not None:
        recount_weekly_buckets(session, tenant.id, now)
    tenant.weekly_value_limit = limit


def change_weekly_value_limit(db: Database, caller: Caller, limit: int | None) -> TenantView:
    caller.require("manage")
    return set_weekly_value_limit(db, caller.tenant_id, limit)


_UNCHANGED: Any = object()


def update_tenant(
    db: Database,
    caller: Caller,
    *,
    weekly_value_limit: int | None = _UNCHANGED,
    delivery: DeliverySettingsPatch | None = None,
    rate_limits: dict[str, int | None] | None = None,
) -> TenantView:
    """Change what the PATCH named, in one transaction: the weekly limit, delivery settings,
    rate limits."""
    caller.require("manage")
    if weekly_value_limit is _UNCHANGED and delivery is None and rate_limits is None:
        raise InvalidInput(
            "nothing to change: give weekly_value_limit, delivery or rate_limits",
            field="weekly_value_limit",
        )
    if isinstance(weekly_value_limit, int) and weekly_value_limit < 0:
        raise InvalidInput("must not be negative", field="weekly_value_limit")
    with db.unit_of_work() as session:
        tenant = session.get(Tenant, caller.tenant_id, with_for_update=True)
        if tenant is None:
            raise NotFound("tenant not found")
        if weekly_value_limit is not _UNCHANGED:
            _apply_weekly_value_limit(session, tenant, weekly_value_limit, db.now())
        if delivery is not None:
            _apply_delivery(tenant, delivery)
        if rate_limits is not None:
            current = dict(tenant.settings or {})
            stored = current.get(guard.TENANT_SETTING)
            limits = guard.patched_limits(stored, rate_limits, db.settings)
            tenant.settings = {**current, guard.TENANT_SETTING: limits}
        session.commit()
    guard.tenant_changed(caller.tenant_id)
    return _tenant_view(tenant)


def configure_delivery(db: Database, tenant_id: str, patch: DeliverySettingsPatch) -> TenantView:
    """The operator's way (``voucherd deliveries configure``) to the same settings."""
    with db.unit_of_work() as session:
        tenant = session.get(Tenant, tenant_id, with_for_update=True)
        if tenant is None:
            raise NotFound("tenant not found")
        _apply_delivery(tenant, patch)
        session.commit()
        return _tenant_view(tenant)


def _apply_delivery(tenant: Tenant, patch: DeliverySettingsPatch) -> None:
    current = dict(tenant.settings or {})
    # A new dict, so the JSON column is seen as changed.
    tenant.settings = {**current, "delivery": merged(current.get("delivery"), patch)}


def tenant_id_by_name(db: Database, name: str) -> str:
    with db.unit_of_work(write=False) as session:
        return _tenant_by_name(session, name).id


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
    _KEY_CACHE.forget(key_id)


class _KeyCache:
    """Verified keys for a few seconds, so a request does not pay a round trip to learn who it
    is. Revocation through this process is immediate; through another, within the TTL."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, str, Caller]] = {}
        self._lock = threading.Lock()

    def get(self, key_id: str) -> tuple[str, Caller] | None:
        entry = self._entries.get(key_id)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1], entry[2]

    def put(self, key_id: str, secret_hash: str, caller: Caller, ttl: float) -> None:
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[key_id] = (time.monotonic() + ttl, secret_hash, caller)

    def forget(self, key_id: str) -> None:
        with self._lock:
            self._entries.pop(key_id, None)


_KEY_CACHE = _KeyCache()


def authenticate(db: Database, key_id: str, secret: str) -> Caller:
    """The caller behind a key id and secret, or :class:`Unauthorized`."""
    if not key_id or not secret or len(key_id) > 40 or len(secret) > 200:
        raise Unauthorized(_BAD_CREDENTIALS)
    presented = _hash(secret)
    cached = _KEY_CACHE.get(key_id)
    if cached is not None:
        if hmac.compare_digest(cached[0], presented):
            note_tenant(cached[1].tenant_id)
            guard.admit_caller(cached[1].tenant_id, key_id)
            return cached[1]
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
        _KEY_CACHE.put(key_id, stored, caller, db.key_cache_seconds)
    note_tenant(caller.tenant_id)
    # Every face authenticates here, so every face is rate limited here (429 past a limit).
    guard.admit_caller(caller.tenant_id, key_id)
    return caller


def authenticate_token(db: Database, token: str) -> Caller:
    key_id, _, secret = token.strip().partition(".")
    return authenticate(db, key_id, secret)
