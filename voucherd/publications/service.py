"""Reading publications back: one by id, a page after a cursor, or a numbered page.

Publishing itself is ``voucherd.publications.publish``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from voucherd.auth.caller import Caller
from voucherd.campaigns.lookup import find_campaign
from voucherd.campaigns.models import Campaign
from voucherd.customers.models import Customer
from voucherd.customers.service import find_customer
from voucherd.db.engine import Database
from voucherd.errors import NotFound
from voucherd.pagination import Page, page_of
from voucherd.publications.models import Publication, PublicationVoucher
from voucherd.publications.pool import publication_entries
from voucherd.publications.schemas import SHOWN_CODES, PublicationFilters, PublicationRecord
from voucherd.vouchers.lookup import find_voucher
from voucherd.vouchers.models import Voucher
from voucherd.vouchers.schemas import VoucherRecord


def with_entries(session: Session, record: VoucherRecord) -> VoucherRecord:
    """The voucher with its latest publications (``publish.entries``)."""
    entries = publication_entries(session, record.voucher.id)
    return VoucherRecord(record.voucher, record.campaign_name, entries, campaign=record.campaign)


def get_publication(db: Database, caller: Caller, publication_id: str) -> PublicationRecord:
    with db.unit_of_work(write=False) as session:
        publication = session.scalar(
            select(Publication).where(
                Publication.tenant_id == caller.tenant_id, Publication.id == publication_id
            )
        )
        if publication is None:
            raise NotFound("no such publication", field="publication")
        return load_publication(session, publication, with_voucher=True)


def load_publication(
    session: Session, publication: Publication, *, with_voucher: bool
) -> PublicationRecord:
    return _load_many(session, [publication], with_voucher=with_voucher)[0]


def _load_many(
    session: Session, publications: list[Publication], *, with_voucher: bool = False
) -> list[PublicationRecord]:
    """Publications with their campaign names, customers' source_ids, counts and codes: four
    queries for a whole page, whatever its size."""
    if not publications:
        return []
    ids = [p.id for p in publications]
    campaign_ids = {p.campaign_id for p in publications if p.campaign_id}
    customer_ids = {p.customer_id for p in publications if p.customer_id}
    names = _pairs(session, select(Campaign.id, Campaign.name).where(Campaign.id.in_(campaign_ids)))
    sources = _pairs(
        session, select(Customer.id, Customer.source_id).where(Customer.id.in_(customer_ids))
    )
    counts = _pairs(
        session,
        select(PublicationVoucher.publication_id, func.count())
        .where(PublicationVoucher.publication_id.in_(ids))
        .group_by(PublicationVoucher.publication_id),
    )
    ranked = (
        select(
            PublicationVoucher.publication_id,
            Voucher.id,
            Voucher.code,
            func.row_number()
            .over(partition_by=PublicationVoucher.publication_id, order_by=Voucher.id)
            .label("n"),
        )
        .join(Voucher, Voucher.id == PublicationVoucher.voucher_id)
        .where(PublicationVoucher.publication_id.in_(ids))
        .subquery()
    )
    codes: dict[str, list[tuple[str, str]]] = {i: [] for i in ids}
    for publication_id, voucher_id, code in session.execute(
        select(ranked.c.publication_id, ranked.c.id, ranked.c.code)
        .where(ranked.c.n <= SHOWN_CODES)
        .order_by(ranked.c.publication_id, ranked.c.id)
    ):
        codes[publication_id].append((voucher_id, code))
    records = []
    for p in publications:
        voucher = None
        if with_voucher and counts.get(p.id, 0) == 1:
            found = find_voucher(session, p.tenant_id, codes[p.id][0][0])
            voucher = with_entries(session, found)
        records.append(
            PublicationRecord(
                publication=p,
                campaign_name=names.get(p.campaign_id) if p.campaign_id else None,
                customer_source_id=sources.get(p.customer_id) if p.customer_id else None,
                count=counts.get(p.id, 0),
                codes=codes[p.id],
                voucher=voucher,
            )
        )
    return records


def _pairs(session: Session, query: Select[Any, Any]) -> dict[Any, Any]:
    return {key: value for key, value in session.execute(query)}


def list_publications(
    db: Database, caller: Caller, filters: PublicationFilters, *, limit: int, cursor: str | None
) -> Page[PublicationRecord]:
    """Newest first; by campaign, voucher, customer (each by id or their other name), channel
    and creation time."""
    with db.unit_of_work(write=False) as session:
        query = _filtered(session, caller.tenant_id, filters)
        if cursor:
            query = query.where(Publication.id < cursor)
        rows = list(session.scalars(query.order_by(Publication.id.desc()).limit(limit + 1)))
        page = page_of(rows, limit, rows[limit - 1].id if len(rows) > limit else None)
        return Page(_load_many(session, page.items), page.next_cursor)


def number_publications(
    db: Database, caller: Caller, filters: PublicationFilters, *, page: int, limit: int
) -> tuple[list[PublicationRecord], int]:
    """Page ``page`` (from 1) of ``limit`` publications, newest first, and how many match in
    all: for faces that number their pages (Voucherify) rather than follow a cursor."""
    with db.unit_of_work(write=False) as session:
        query = _filtered(session, caller.tenant_id, filters)
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = list(
            session.scalars(
                query.order_by(Publication.id.desc()).offset((page - 1) * limit).limit(limit)
            )
        )
        return _load_many(session, rows), int(total)


def _filtered(session: Session, tenant_id: str, filters: PublicationFilters) -> Select[Publication]:
    """Publications by campaign, voucher, customer (each by id or their other name), channel
    and creation time."""
    query = select(Publication).where(Publication.tenant_id == tenant_id)
    if filters.campaign is not None:
        campaign = find_campaign(session, tenant_id, filters.campaign)
        query = query.where(Publication.campaign_id == campaign.id)
    if filters.voucher is not None:
        voucher = find_voucher(session, tenant_id, filters.voucher).voucher
        query = query.where(
            Publication.id.in_(
                select(PublicationVoucher.publication_id).where(
                    PublicationVoucher.voucher_id == voucher.id
                )
            )
        )
    if filters.customer is not None:
        customer = find_customer(session, tenant_id, filters.customer)
        query = query.where(Publication.customer_id == customer.id)
    if filters.channel is not None:
        query = query.where(Publication.channel == filters.channel)
    if filters.created_after is not None:
        query = query.where(Publication.created_at >= _utc(filters.created_after))
    if filters.created_before is not None:
        query = query.where(Publication.created_at < _utc(filters.created_before))
    return query


def _utc(moment: datetime) -> datetime:
    """A filter time without an offset is read as UTC, as in the voucher list."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
