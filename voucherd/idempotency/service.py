"""``Idempotency-Key``: a retry gets the first answer, never a second effect.

The key is claimed by the first statements of the use case's own transaction and stays only if
that transaction commits, so "the key exists" and "the effect happened" are one fact. On
PostgreSQL a transaction-scoped advisory lock on the key tells a concurrent duplicate that the
first is still in flight (409) instead of making it wait; on SQLite writers are already
serialised by ``BEGIN IMMEDIATE``. Only successful effects are remembered: a refused request
changed nothing, so its retry is simply tried again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session

from voucherd.db.dialect import is_postgresql, upsert
from voucherd.db.engine import Database
from voucherd.errors import IdempotencyKeyInFlight, IdempotencyKeyReused
from voucherd.idempotency.models import IdempotencyRecord

RETENTION = timedelta(hours=24)


@dataclass(frozen=True)
class IdempotencyClaim:
    key: str
    request_hash: str

    @classmethod
    def of(cls, key: str, method: str, path: str, body: bytes) -> IdempotencyClaim:
        digest = hashlib.sha256(f"{method} {path}\n".encode() + body).hexdigest()
        return cls(key, digest)


class Replay(Exception):
    """The key was used before with the same request: answer what was answered then."""

    def __init__(
        self,
        tenant_id: str,
        status: int | None,
        body: bytes | None,
        resource_type: str | None,
        resource_id: str | None,
    ) -> None:
        super().__init__("idempotent replay")
        self.tenant_id = tenant_id
        self.status = status
        self.body = body
        self.resource_type = resource_type
        self.resource_id = resource_id


def _lock_key(tenant_id: str, key: str) -> int:
    return int.from_bytes(
        hashlib.sha256(f"{tenant_id}\0{key}".encode()).digest()[:8], "big", signed=True
    )


def claim(session: Session, db: Database, tenant_id: str, request: IdempotencyClaim | None) -> None:
    """Claim the key inside the caller's transaction, or raise Replay / a 409 / a 422."""
    if request is None:
        return
    if is_postgresql(session):
        got = session.scalar(
            text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _lock_key(tenant_id, request.key)}
        )
        if not got:
            raise IdempotencyKeyInFlight(
                "a request with this Idempotency-Key is still being processed; retry shortly",
                field="Idempotency-Key",
            )
    now = db.now()
    session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.tenant_id == tenant_id,
            IdempotencyRecord.key == request.key,
            IdempotencyRecord.expires_at < now,
        )
    )
    inserted = session.execute(
        upsert(session, IdempotencyRecord)
        .values(
            tenant_id=tenant_id,
            key=request.key,
            request_hash=request.request_hash,
            created_at=now,
            expires_at=now + RETENTION,
        )
        .on_conflict_do_nothing()
        .returning(IdempotencyRecord.key)
    ).first()
    if inserted is not None:
        return
    row = session.execute(
        select(IdempotencyRecord).where(
            IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.key == request.key
        )
    ).scalar_one()
    if row.request_hash != request.request_hash:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used with a different request", field="Idempotency-Key"
        )
    raise Replay(
        tenant_id, row.response_status, row.response_body, row.resource_type, row.resource_id
    )


def bind_effect(
    session: Session,
    tenant_id: str,
    request: IdempotencyClaim | None,
    resource_type: str,
    resource_id: str,
) -> None:
    """Point the claimed key at what the use case produced (same transaction)."""
    if request is None:
        return
    session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.key == request.key)
        .values(resource_type=resource_type, resource_id=resource_id)
    )


def remember_response(
    db: Database, tenant_id: str, request: IdempotencyClaim, status: int, body: bytes
) -> None:
    """Keep the exact answer for replays (its own short transaction, after the effect)."""
    with db.unit_of_work() as session:
        session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.key == request.key)
            .values(response_status=status, response_body=body)
        )
        session.commit()


def purge_expired(db: Database) -> int:
    with db.unit_of_work() as session:
        result = session.execute(
            delete(IdempotencyRecord).where(IdempotencyRecord.expires_at < db.now())
        )
        session.commit()
        return int(result.rowcount)  # type: ignore[attr-defined]


# How to answer a replay whose response body was never stored (the process died between the
# commit and remember_response): each feature offers a renderer for the resources it creates, as
# a plain value (``REPLAY_RENDERERS`` in its routes); ``voucherd.composition`` collects them and
# the app keeps them (``app.state.renderers``). A renderer gets (db, tenant_id, resource_id,
# detail) where detail is what follows a colon in the resource type ("mint:500" -> "500").
Renderer = Callable[[Database, str, str, str], tuple[int, dict[str, Any]]]
Renderers = Mapping[str, Renderer]
