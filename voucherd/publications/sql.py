"""Publishing's hot statements, with their PostgreSQL and SQLite spellings side by side: the
pool claim, and linking freshly minted vouchers to the publication they were minted for.

How a code is never published twice: the pool of a campaign is its ACTIVE, unexpired vouchers
whose ``published_count`` is 0, and a claim is one ``UPDATE ... SET published_count = 1 WHERE id
IN (<head of the pool>) AND published_count = 0``. On PostgreSQL the head is read with ``FOR
UPDATE SKIP LOCKED``, so concurrent claimers take disjoint rows without waiting for each other; a
row another transaction published after our snapshot fails the re-checked condition and is simply
not returned. On SQLite every writer holds the database lock (``BEGIN IMMEDIATE``), so claims
are serialised already.

Where a claim starts: a claimed code leaves the pool's partial index (``ix_voucher_pool``) only
when vacuum gets to it, so a claim that always starts at the head of the pool walks over every
code claimed since the last vacuum, and each claim costs more than the one before (bench/README.md
"Pool claiming"). So a claim starts after the last code this process claimed from the campaign
(:class:`PoolCursor`), and wraps round to the head once when it finds nothing past it. The cursor
is a hint for where to look, never a decision: what is claimable is still decided by the row
itself (``published_count = 0``, ``SKIP LOCKED``), so a stale or lost cursor costs a longer walk,
never a code twice or a code missed.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    String,
    Table,
    bindparam,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import cast as cast_
from sqlalchemy import inspect as inspect_
from sqlalchemy.orm import Session

from voucherd.campaigns.models import Campaign
from voucherd.db import driver
from voucherd.db.dialect import is_postgresql
from voucherd.publications.models import Publication, PublicationVoucher
from voucherd.vouchers.models import Voucher, VoucherEvent

VOUCHER = cast(Table, Voucher.__table__)
LINK = cast(Table, PublicationVoucher.__table__)
PUBLICATION = cast(Table, Publication.__table__)
VOUCHER_EVENT = cast(Table, VoucherEvent.__table__)
CAMPAIGN = cast(Table, Campaign.__table__)
_V, _K, _P = VOUCHER.c, LINK.c, PUBLICATION.c
# A claimed voucher's attribute names (``metadata_``) beside its columns (``metadata``), in the
# order a whole-row claim returns them, so the answer's voucher is built from the claim's own
# row instead of being read back.
# Its id and code first, as every claim returns them.
_ATTRIBUTES = inspect_(Voucher).column_attrs
VOUCHER_KEYS = ("id", "code", *(p.key for p in _ATTRIBUTES if p.key not in ("id", "code")))
_VOUCHER_COLUMNS = tuple(_ATTRIBUTES[key].columns[0] for key in VOUCHER_KEYS)
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


class PoolCursor:
    """Where this process's last claim from each campaign's pool stopped (the largest voucher id
    it claimed), so the next claim starts there rather than at the head of the pool.

    Shared by every thread of the process; a hint only (module docstring): claims that race each
    other may move it back a little, which costs a few dead index entries walked, nothing more.
    Bounded: past ``limit`` campaigns it forgets them all and they start at the head again.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self._after: dict[str, str] = {}
        self._lock = threading.Lock()
        self._limit = limit

    def start(self, campaign_id: str) -> str | None:
        """The id after which the next claim from the campaign's pool should look first."""
        return self._after.get(campaign_id)

    def moved(self, campaign_id: str, last_id: str) -> None:
        """A claim from the campaign's pool stopped at ``last_id``."""
        with self._lock:
            if len(self._after) >= self._limit and campaign_id not in self._after:
                self._after.clear()
            self._after[campaign_id] = last_id


POOL_CURSOR = PoolCursor()


def claim_query(
    *,
    postgresql: bool,
    tenant_id: str,
    campaign_id: str,
    publication_id: str,
    count: int,
    now: datetime,
    holder_id: str | None,
    after: str | None,
    event: PublishedEvent | None,
    publication: Mapping[str, Any] | None,
    whole: bool,
    all_or_none: bool,
) -> tuple[Any, dict[str, Any]]:
    """:func:`claim_from_pool`'s statement and parameters, for a caller that runs it its own
    way (the express lane, on the event loop)."""
    statement = _claim_statement(
        postgresql=postgresql,
        after=after is not None,
        holder=holder_id is not None,
        event=event is not None and postgresql,
        publication=publication is not None,
        whole=whole,
        all_or_none=all_or_none,
        one=count == 1,
    )
    params: dict[str, Any] = {
        "c_tenant": tenant_id,
        "c_campaign": campaign_id,
        "c_now": now,
        "c_count": count,
        "c_after": after,
        "c_holder": holder_id,
        "c_publication": publication_id,
        "c_actor": event.actor if event is not None else None,
    }
    if publication is not None:
        params.update({f"p_{name}": value for name, value in publication.items()})
    return statement, params


def claim_from_pool(
    session: Session | Connection,
    *,
    tenant_id: str,
    campaign_id: str,
    publication_id: str,
    count: int,
    now: datetime,
    holder_id: str | None,
    after: str | None = None,
    event: PublishedEvent | None = None,
    publication: Mapping[str, Any] | None = None,
    whole: bool = False,
    all_or_none: bool = False,
) -> list[Sequence[Any]]:
    """Claim up to ``count`` codes of the pool (those after ``after`` when given) and link them
    to the publication; rows of ``(voucher_id, code)`` in id order, or with ``whole`` of every
    column of the claimed voucher (in :data:`VOUCHER_KEYS` order: id and code first).

    With ``event`` on PostgreSQL the same statement also writes the ``published`` event, if and
    only if it claimed all ``count`` codes (:func:`event_written` tells the caller): one round
    trip for the whole claim in the common case. Otherwise the caller writes the event itself,
    once, for all it claimed. With ``publication`` (PostgreSQL only: the publication's row, by
    column name) the same statement inserts the publication too.

    ``all_or_none`` (PostgreSQL, with ``publication`` and ``event``: a whole publication in one
    statement, :func:`voucherd.publications.pool.claim_publication`): the statement claims all
    ``count`` codes, with the publication, links and event, or writes nothing and returns no
    row; and it claims only while the campaign is still active, re-checked by the statement.
    """
    postgresql = is_postgresql(session)
    assert publication is None or postgresql, "on SQLite the publication is inserted first"
    assert not all_or_none or (postgresql and publication is not None and event is not None)
    statement, params = claim_query(
        postgresql=postgresql,
        tenant_id=tenant_id,
        campaign_id=campaign_id,
        publication_id=publication_id,
        count=count,
        now=now,
        holder_id=holder_id,
        after=after,
        event=event,
        publication=publication,
        whole=whole,
        all_or_none=all_or_none,
    )
    # On the session's connection, not through the session: a Core statement gains nothing
    # from the ORM's execution path but its cost.
    rows = driver.rows(session, statement, params)
    if postgresql:
        return list(rows)
    assert isinstance(session, Session), "on SQLite a claim runs in a unit of work"
    claimed = sorted(rows, key=lambda row: row[0])
    if claimed:
        session.execute(
            INSERT_LINK,
            [
                {"publication_id": publication_id, "voucher_id": row[0], "tenant_id": tenant_id}
                for row in claimed
            ],
        )
    return list(claimed)


@cache
def _claim_statement(
    *,
    postgresql: bool,
    after: bool,
    holder: bool,
    event: bool,
    publication: bool,
    whole: bool,
    all_or_none: bool = False,
    one: bool = False,
) -> Any:
    """The claim, built once per shape and run with parameters (``c_...``, ``p_...``): building
    it per publication cost more Python than the rest of the claim. ``all_or_none``: see
    :func:`claim_from_pool`.

    ``one``: a claim of one code (most publications) says ``LIMIT 1``, not ``LIMIT $n``. With
    the count a parameter PostgreSQL costs a generic plan for an unknown limit (a tenth of the
    rows) and so planned the statement afresh on every execution (0 generic plans in 300);
    with the literal it keeps the generic plan after five executions. Measured on one
    connection, 180 claims from a 100,000-code pool: 563-630 µs of PostgreSQL's CPU a claim
    with the parameter, 324-332 µs with the literal (bench/README.md, "Plans kept")."""
    now = bindparam("c_now", type_=_V.updated_at.type)
    head = select(_V.id).where(
        _V.campaign_id == bindparam("c_campaign", type_=String),
        IN_POOL,
        _V.tenant_id == bindparam("c_tenant", type_=String),
        or_(_V.expiration_date.is_(None), _V.expiration_date > now),
    )
    if after:
        head = head.where(_V.id > bindparam("c_after", type_=String))
    if all_or_none:
        # Read before the statement, outside it: re-checked here, so a campaign switched off
        # since claims nothing (and the transactional way then answers why).
        head = head.where(_still_active())
    limit = literal_column("1", Integer) if one else bindparam("c_count", type_=Integer)
    head = head.order_by(_V.id).limit(limit)
    values: dict[str, Any] = {"published_count": 1, "updated_at": now}
    if holder:
        values["holder_id"] = bindparam("c_holder", type_=String)
    # The one voucher of a one-code publication is in the answer: its columns come back from
    # the claim itself rather than from a second read.
    returned = _VOUCHER_COLUMNS if whole else _VOUCHER_COLUMNS[:2]
    claim = update(VOUCHER).values(values).returning(*returned)
    if not postgresql:
        return claim.where(_V.id.in_(head.scalar_subquery()))
    # The head goes in a CTE, which PostgreSQL runs exactly once: as an ``IN (subquery)`` the
    # planner may rescan it, and every rescan skips to further rows (a claim of 25 returned 30
    # that way).
    head_cte = head.with_for_update(skip_locked=True).cte("head")
    claim = claim.where(_V.id == head_cte.c.id, _UNPUBLISHED)
    if all_or_none:
        # All ``count`` rows locked, or none updated: the statement is the whole publication.
        got = select(func.count()).select_from(head_cte).scalar_subquery()
        claim = claim.where(got == bindparam("c_count", type_=Integer))
    claimed = claim.cte("claimed")
    # One round trip: claim the codes and link them to the publication in one statement. The
    # link's foreign key to a publication inserted by the same statement holds: PostgreSQL
    # checks it at the end of the statement, when every part of it has run.
    link = insert(LINK).from_select(
        [_K.publication_id.name, _K.voucher_id.name, _K.tenant_id.name],
        select(
            bindparam("c_publication", type_=String),
            claimed.c.id,
            bindparam("c_tenant", type_=String),
        ),
    )
    query = select(*(claimed.c[c.key] for c in returned)).add_cte(link.cte("linked"))
    if publication:
        query = query.add_cte(_publication_cte(claimed if all_or_none else None))
    if event:
        query = query.add_cte(_event_cte(claimed))
    return query.order_by(claimed.c.id)


def _publication_cte(claimed: Any = None) -> Any:
    """``INSERT INTO publication VALUES (:p_id, :p_tenant_id, ...)``, every column a parameter
    named after it; given ``claimed``, ``INSERT ... SELECT ... FROM claimed HAVING count(*) =
    :c_count``: only with every code asked for (the links' foreign key to it then makes a short
    claim fail whole rather than leave codes linked to no publication)."""
    values = {c.name: bindparam(f"p_{c.name}", type_=c.type) for c in PUBLICATION.c}
    if claimed is None:
        return insert(PUBLICATION).values(values).cte("new_publication")
    rows = (
        select(*values.values())
        .select_from(claimed)
        .having(func.count() == bindparam("c_count", type_=Integer))
    )
    return insert(PUBLICATION).from_select(list(values), rows).cte("new_publication")


def _still_active() -> ColumnElement[bool]:
    """The claimed campaign is (still) active: ``EXISTS (SELECT FROM campaign WHERE id =
    :c_campaign AND active)``."""
    c = CAMPAIGN.c
    return (
        select(literal(1))
        .where(c.id == bindparam("c_campaign", type_=String), c.active.is_(True))
        .exists()
    )


@dataclass(frozen=True, slots=True)
class PublishedEvent:
    """The ``published`` event of one claim (what ``pool._published_event`` writes)."""

    tenant_id: str
    campaign_id: str
    publication_id: str
    actor: str | None
    now: datetime


def event_written(session: Session, claimed: int, count: int) -> bool:
    """Whether :func:`claim_from_pool` with an ``event`` wrote it: on PostgreSQL, when it
    claimed every code asked for."""
    return claimed == count and is_postgresql(session)


def _event_cte(claimed: Any) -> Any:
    """``INSERT INTO voucher_event ... SELECT ... FROM claimed HAVING count(*) = :c_count``:
    the event of a claim that got all it asked for, with the count as
    ``pool._published_event`` writes it."""
    e = VOUCHER_EVENT.c
    data = func.jsonb_build_object(
        "publication_id", cast_(bindparam("c_publication", type_=String), String),
        "count", func.count(),
    )  # fmt: skip
    rows = (
        select(
            bindparam("c_tenant", type_=String),
            bindparam("c_campaign", type_=String),
            literal("published", String),
            bindparam("c_actor", type_=String),
            data,
            bindparam("c_now", type_=e.created_at.type),
        )
        .select_from(claimed)
        .having(func.count() == bindparam("c_count", type_=Integer))
    )
    columns = [e.tenant_id, e.campaign_id, e.kind, e.actor, e.data, e.created_at]
    return insert(VOUCHER_EVENT).from_select([c.name for c in columns], rows).cte("published")


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
