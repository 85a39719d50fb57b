"""Publishing's hot statements, with their PostgreSQL and SQLite spellings side by side: the
pool claim, and linking freshly minted vouchers to the publication they were minted for.

How a code is never published twice: the pool of a campaign is its ACTIVE, unexpired vouchers
whose ``published_count`` is 0, and a claim is one ``UPDATE ... SET published_count = 1 WHERE id
IN (<head of the pool>) AND published_count = 0``. On PostgreSQL the head is read with ``FOR
UPDATE SKIP LOCKED``, so concurrent claimers take disjoint rows without waiting for each other; a
row another transaction published after our snapshot fails the re-checked condition and is simply
not returned. On SQLite every writer holds the database lock (``BEGIN IMMEDIATE``), so claims
are serialised already.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, insert, literal, or_, select, text, update
from sqlalchemy.orm import Session

from voucherd.db.dialect import is_postgresql
from voucherd.publications.models import PublicationVoucher
from voucherd.vouchers.models import Voucher

VOUCHER = cast(Table, Voucher.__table__)
LINK = cast(Table, PublicationVoucher.__table__)
_V, _K = VOUCHER.c, LINK.c
INSERT_LINK = insert(LINK)
# Spelled with literals, as in the partial index ix_voucher_pool: with bound parameters a
# prepared statement's generic plan could not prove it matches the index's predicate.
IN_POOL = text(
    f"{VOUCHER.name}.{_V.published_count.name} = 0 AND {VOUCHER.name}.{_V.state.name} = 'ACTIVE'"
)
_UNPUBLISHED = text(f"{VOUCHER.name}.{_V.published_count.name} = 0")
_LINK_COLUMNS = ", ".join(c.name for c in (_K.publication_id, _K.voucher_id, _K.tenant_id))
_LINK_MANY_ON_POSTGRESQL = text(
    f"INSERT INTO {LINK.name} ({_LINK_COLUMNS}) "
    "SELECT :publication_id, unnest(CAST(:ids AS varchar[])), :tenant_id"
)
_LINK_ON_SQLITE = text(
    f"INSERT INTO {LINK.name} ({_LINK_COLUMNS}) VALUES (:publication_id, :voucher_id, :tenant_id)"
)


def unexpired(now: datetime) -> ColumnElement[bool]:
    return or_(_V.expiration_date.is_(None), _V.expiration_date > now)


def claim_from_pool(
    session: Session,
    *,
    tenant_id: str,
    campaign_id: str,
    publication_id: str,
    count: int,
    now: datetime,
    holder_id: str | None,
) -> list[tuple[str, str]]:
    """Claim up to ``count`` codes from the head of the pool and link them to the publication;
    ``(voucher_id, code)`` pairs in id order."""
    head = (
        select(_V.id)
        .where(_V.campaign_id == campaign_id, IN_POOL, _V.tenant_id == tenant_id, unexpired(now))
        .order_by(_V.id)
        .limit(count)
    )
    values: dict[str, Any] = {"published_count": 1, "updated_at": now}
    if holder_id is not None:
        values["holder_id"] = holder_id
    claim = update(VOUCHER).values(values).returning(_V.id, _V.code)
    if is_postgresql(session):
        # The head goes in a CTE, which PostgreSQL runs exactly once: as an ``IN (subquery)``
        # the planner may rescan it, and every rescan skips to further rows (a claim of 25
        # returned 30 that way).
        head_cte = head.with_for_update(skip_locked=True).cte("head")
        claim = claim.where(_V.id == head_cte.c.id, _UNPUBLISHED)
        # One round trip: claim the codes and link them to the publication in one statement.
        claimed_cte = claim.cte("claimed")
        link = insert(LINK).from_select(
            [_K.publication_id.name, _K.voucher_id.name, _K.tenant_id.name],
            select(literal(publication_id), claimed_cte.c.id, literal(tenant_id)),
        )
        rows = session.execute(
            select(claimed_cte.c.id, claimed_cte.c.code)
            .add_cte(link.cte("linked"))
            .order_by(claimed_cte.c.id)
        ).all()
        return [(voucher_id, code) for voucher_id, code in rows]
    claim = claim.where(_V.id.in_(head.scalar_subquery()))
    claimed = sorted((voucher_id, code) for voucher_id, code in session.execute(claim).all())
    if claimed:
        session.execute(
            INSERT_LINK,
            [
                {"publication_id": publication_id, "voucher_id": v, "tenant_id": tenant_id}
                for v, _ in claimed
            ],
        )
    return claimed


def link_minted(session: Session, tenant_id: str, publication_id: str, ids: Sequence[str]) -> None:
    """Link vouchers minted for a publication (born published: they never entered the pool)."""
    if is_postgresql(session):
        # One statement and one array parameter for the whole batch, not a row per voucher.
        session.execute(
            _LINK_MANY_ON_POSTGRESQL,
            {"publication_id": publication_id, "ids": list(ids), "tenant_id": tenant_id},
        )
        return
    session.execute(
        _LINK_ON_SQLITE,
        [{"publication_id": publication_id, "voucher_id": v, "tenant_id": tenant_id} for v in ids],
    )
