"""Claiming codes from a campaign's pool and recording publications, inside a caller's session.

These are the building blocks every publishing path shares (the publications API, CSV exports,
distributions). None of them commits: the use case that calls them owns the transaction, so the
claim, the publication rows and whatever else the use case writes (an export's operation, a
delivery's outbox row) become visible together or not at all.

How a code is never published twice: see the claim in ``publications/sql.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, func, insert, or_, select, update
from sqlalchemy.orm import Session

from voucherd.customers.models import Customer
from voucherd.db import driver
from voucherd.db.dialect import is_postgresql, upsert
from voucherd.errors import Conflict, ErrorCode
from voucherd.ids import new_id
from voucherd.publications.models import Publication, PublicationVoucher
from voucherd.publications.sql import (
    IN_POOL,
    INSERT_LINK,
    POOL_CURSOR,
    VOUCHER_KEYS,
    PublishedEvent,
    claim_from_pool,
    claim_query,
    event_written,
    unexpired,
)
from voucherd.vouchers.models import Voucher, VoucherEvent

DEFAULT_CHANNEL = "API"
EXPORT_CHANNEL = "Export"

_VOUCHER = cast(Table, Voucher.__table__)
_PUBLICATION = cast(Table, Publication.__table__)
_INSERT_PUBLICATION = insert(_PUBLICATION)


@dataclass(frozen=True, slots=True)
class ClaimedCode:
    voucher_id: str
    code: str
    # The claimed voucher's every column by attribute name, when the claim was asked for them
    # (``whole``): what the claim statement returned, so nobody reads the voucher back.
    columns: dict[str, Any] | None = None


def publication_row(
    *,
    tenant_id: str,
    channel: str,
    now: datetime,
    campaign_id: str | None = None,
    customer_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    actor: str | None = None,
    source_id: str | None = None,
    request_hash: str | None = None,
) -> dict[str, Any]:
    """A new publication's row, by column name, with a fresh id: for :func:`create_publication`,
    or for :func:`claim_pool` to insert with its claim."""
    return {
        "id": new_id("pub"),
        "tenant_id": tenant_id,
        "campaign_id": campaign_id,
        "customer_id": customer_id,
        "channel": channel,
        "source_id": source_id,
        "request_hash": request_hash,
        "metadata": metadata,
        "actor": actor,
        "created_at": now,
    }


def create_publication(session: Session, values: dict[str, Any]) -> str | None:
    """Insert a publication (still without vouchers) from its :func:`publication_row` and
    return its id.

    With a ``source_id`` already used in the tenant it inserts nothing and returns None (on
    PostgreSQL after waiting for a concurrent holder of that source_id to finish), so the caller
    can answer with the existing publication instead of failing.
    """
    publication_id: str = values["id"]
    if values["source_id"] is None:
        session.execute(_INSERT_PUBLICATION, values)  # prebuilt: no statement built per call
        return publication_id
    inserted = session.execute(
        upsert(session, _PUBLICATION)
        .values(values)
        .on_conflict_do_nothing(index_elements=["tenant_id", "source_id"])
        .returning(_PUBLICATION.c.id)
    ).first()
    return publication_id if inserted is not None else None


def claim_pool(
    session: Session,
    *,
    tenant_id: str,
    campaign_id: str,
    publication_id: str,
    count: int,
    now: datetime,
    holder_id: str | None = None,
    actor: str | None = None,
    publication: Mapping[str, Any] | None = None,
    whole: bool = False,
) -> list[ClaimedCode]:
    """Take up to ``count`` codes from the campaign's pool into the publication.

    Returns fewer than ``count`` only when the pool has fewer left (rows taken concurrently are
    skipped and the claim goes on past them). The claim starts after the last code this process
    claimed from the campaign and wraps round to the head of the pool once (``publications/sql.py``
    says why), so codes go out in id order from there, not necessarily oldest first. The claimed
    vouchers count as published (and belong to ``holder_id`` when given) as soon as the caller's
    transaction commits; if it rolls back they return to the pool. Writes one ``published``
    event per call, like bulk minting does, rather than one per code; on PostgreSQL, when the
    first statement claims them all, that statement writes it too.

    ``publication`` is the publication's row (:func:`publication_row`, no ``source_id``) when it
    is not inserted yet: on PostgreSQL the first claim statement inserts it, so a publication
    from the pool is one round trip; on SQLite it is inserted just before. With ``whole`` each
    code comes with its voucher's columns (``ClaimedCode.columns``).
    """
    if publication is not None and not is_postgresql(session):
        session.execute(_INSERT_PUBLICATION, publication)
        publication = None
    claimed: list[ClaimedCode] = []
    after = POOL_CURSOR.start(campaign_id)
    wrapped = after is None
    event: PublishedEvent | None = PublishedEvent(
        tenant_id=tenant_id,
        campaign_id=campaign_id,
        publication_id=publication_id,
        actor=actor,
        now=now,
    )
    first = True
    while len(claimed) < count:
        batch = claim_from_pool(
            session,
            tenant_id=tenant_id,
            campaign_id=campaign_id,
            publication_id=publication_id,
            count=count - len(claimed),
            now=now,
            holder_id=holder_id,
            after=after,
            event=event if first else None,
            publication=publication if first else None,
            whole=whole,
        )
        if first and event_written(session, len(batch), count):
            event = None
        first = False
        if batch:
            claimed.extend(_claimed(row, whole) for row in batch)
            after = batch[-1][0]
            POOL_CURSOR.moved(campaign_id, after)
        elif wrapped:
            break
        else:  # nothing past where the last claim stopped: once more from the head
            wrapped, after = True, None
    if claimed and event is not None:
        _published_event(session, tenant_id, campaign_id, publication_id, len(claimed), actor, now)
    return claimed


def claim_publication(
    connection: Connection, *, publication: Mapping[str, Any], count: int, whole: bool = False
) -> list[ClaimedCode]:
    """A whole publication from the pool as one statement per try (PostgreSQL, for
    ``Database.single_write``): ``count`` codes claimed, linked to ``publication`` (its
    :func:`publication_row`, with a ``campaign_id``, no ``source_id``), which the statement
    inserts, and its ``published`` event; or, when the pool has not ``count`` codes free (or the
    campaign is no longer active), an empty list and nothing written.

    Each statement commits on its own, so there is no second statement to finish a claim: a
    try claims all or nothing, after this process's cursor first and then from the head of the
    pool (:func:`claim_pool`'s order). The caller answers an empty list as :func:`claim_pool`'s
    transactional way would (it runs that way).
    """
    for statement, params in publication_tries(publication=publication, count=count, whole=whole):
        rows = driver.rows(connection, statement, params)
        if rows:
            return publication_claimed(publication, rows, whole)
    return []


def publication_tries(
    *, publication: Mapping[str, Any], count: int, whole: bool
) -> list[tuple[Any, dict[str, Any]]]:
    """:func:`claim_publication`'s statements, in the order to try them until one claims:
    after this process's cursor, then from the head of the pool (or the head alone)."""
    campaign_id: str = publication["campaign_id"]
    event = PublishedEvent(
        tenant_id=publication["tenant_id"],
        campaign_id=campaign_id,
        publication_id=publication["id"],
        actor=publication["actor"],
        now=publication["created_at"],
    )
    cursor = POOL_CURSOR.start(campaign_id)
    return [
        claim_query(
            postgresql=True,
            tenant_id=event.tenant_id,
            campaign_id=campaign_id,
            publication_id=event.publication_id,
            count=count,
            now=event.now,
            holder_id=None,
            after=after,
            event=event,
            publication=publication,
            whole=whole,
            all_or_none=True,
        )
        for after in ([cursor, None] if cursor is not None else [None])
    ]


def publication_claimed(
    publication: Mapping[str, Any], rows: Sequence[Sequence[Any]], whole: bool
) -> list[ClaimedCode]:
    """The codes a try of :func:`publication_tries` claimed; the pool's cursor moves past them."""
    POOL_CURSOR.moved(publication["campaign_id"], rows[-1][0])
    return [_claimed(row, whole) for row in rows]


def _claimed(row: Sequence[Any], whole: bool) -> ClaimedCode:
    columns = dict(zip(VOUCHER_KEYS, row, strict=True)) if whole else None
    return ClaimedCode(row[0], row[1], columns)


def record_publications(
    session: Session,
    *,
    tenant_id: str,
    publication_id: str,
    voucher_ids: Sequence[str],
    now: datetime,
    holder_id: str | None = None,
    campaign_id: str | None = None,
    actor: str | None = None,
) -> int:
    """Add given vouchers to a publication, counting one more publication on each.

    For vouchers chosen by the caller rather than claimed from the pool (a specific code given
    to a customer; an export of codes that were published before). To take unpublished codes
    so that nobody else can take them too, use :func:`claim_pool` instead.

    With a ``holder_id`` the vouchers become that customer's; a voucher that already belongs
    to another customer is refused (409 ``voucher_held_by_another_customer``), so a code is
    never given to two customers. The check is part of the UPDATE, so it holds under
    concurrency. Returns how many vouchers were added.
    """
    ids = list(dict.fromkeys(voucher_ids))
    if not ids:
        return 0
    values: dict[str, Any] = {"published_count": _VOUCHER.c.published_count + 1, "updated_at": now}
    mark = update(_VOUCHER).where(_VOUCHER.c.tenant_id == tenant_id, _VOUCHER.c.id.in_(ids))
    if holder_id is not None:
        values["holder_id"] = holder_id
        mark = mark.where(or_(_VOUCHER.c.holder_id.is_(None), _VOUCHER.c.holder_id == holder_id))
    marked = session.execute(mark.values(values).returning(_VOUCHER.c.id)).all()
    if len(marked) != len(ids):
        raise Conflict(
            "the voucher was already published to another customer"
            if len(ids) == 1
            else "a voucher is unknown or was already published to another customer",
            field="voucher",
            code=ErrorCode.VOUCHER_HELD_BY_ANOTHER_CUSTOMER,
        )
    session.execute(
        INSERT_LINK,
        [{"publication_id": publication_id, "voucher_id": v, "tenant_id": tenant_id} for v in ids],
    )
    single = ids[0] if len(ids) == 1 else None
    _published_event(session, tenant_id, campaign_id, publication_id, len(ids), actor, now, single)
    return len(ids)


def pool_size(session: Session, *, tenant_id: str, campaign_id: str, now: datetime) -> int:
    """How many codes the campaign's pool holds now (a count: for reports, not for claiming)."""
    return int(
        session.scalar(
            select(func.count()).where(
                _VOUCHER.c.campaign_id == campaign_id,
                IN_POOL,
                _VOUCHER.c.tenant_id == tenant_id,
                unexpired(now),
            )
        )
        or 0
    )


def _published_event(
    session: Session,
    tenant_id: str,
    campaign_id: str | None,
    publication_id: str,
    count: int,
    actor: str | None,
    now: datetime,
    voucher_id: str | None = None,
) -> None:
    session.execute(
        insert(VoucherEvent).values(
            tenant_id=tenant_id,
            voucher_id=voucher_id,
            campaign_id=campaign_id,
            kind="published",
            actor=actor,
            data={"publication_id": publication_id, "count": count},
            created_at=now,
        )
    )


ENTRIES_SHOWN = 10


def publication_entries(
    session: Session, voucher_id: str, *, limit: int = ENTRIES_SHOWN
) -> list[dict[str, Any]]:
    """A voucher's latest publications, shaped as the seed voucher object's ``publish.entries``.

    ``customer`` is the customer's ``source_id`` (the issuer's reference), as in the seed.
    """
    rows = session.execute(
        select(Publication, Customer.source_id)
        .join(PublicationVoucher, PublicationVoucher.publication_id == Publication.id)
        .outerjoin(Customer, Customer.id == Publication.customer_id)
        .where(PublicationVoucher.voucher_id == voucher_id)
        .order_by(Publication.id.desc())
        .limit(limit)
    ).all()
    return [entry_of(p, source_id) for p, source_id in rows]


def entry_of(publication: Publication, customer_source_id: str | None) -> dict[str, Any]:
    """One ``publish.entries`` item of the seed voucher object."""
    return {
        "id": publication.id,
        "object": "publication",
        "customer_id": publication.customer_id,
        "customer": customer_source_id,
        "channel": publication.channel,
        "published_at": publication.created_at,
        "metadata": publication.metadata_,
    }
