"""Publishing: a given voucher, or codes from a campaign's pool, to a customer, in one
transaction with its deliveries.

The in-session primitives other features build on (exports, distributions) live in
``voucherd.publications.pool``: ``create_publication``, ``claim_pool``,
``record_publications``, ``pool_size``.

A publication's ``source_id`` makes the request idempotent for as long as the publication
exists (not only the 24 hours of an ``Idempotency-Key``): the same source_id and body return the
same publication and codes; the same source_id with another body is refused (409).
"""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from voucherd.auth.caller import Caller
from voucherd.campaigns.models import Campaign
from voucherd.customers.models import Customer
from voucherd.customers.schemas import CustomerCreate
from voucherd.customers.service import customer_for, find_customer
from voucherd.db.dialect import upsert
from voucherd.db.engine import Database
from voucherd.db.express import LaneBusy
from voucherd.delivery.enqueue import request_delivery, tenant_settings
from voucherd.delivery.schemas import DeliveryRequest
from voucherd.errors import Conflict, ErrorCode, InvalidInput, voucher_state
from voucherd.idempotency import service as idempotency
from voucherd.publications.models import CampaignHolder, Publication
from voucherd.publications.pool import (
    ClaimedCode,
    claim_pool,
    claim_publication,
    create_publication,
    entry_of,
    publication_claimed,
    publication_row,
    publication_tries,
    record_publications,
)
from voucherd.publications.schemas import (
    SHOWN_CODES,
    PublicationDelivery,
    PublicationRecord,
    Published,
    PublishRequest,
)
from voucherd.publications.service import load_publication, with_entries
from voucherd.vouchers.lookup import find_voucher
from voucherd.vouchers.mint import mint_in_session
from voucherd.vouchers.models import Voucher
from voucherd.vouchers.schemas import VoucherRecord
from voucherd.vouchers.terms import (
    campaign_and_tenant,
    campaign_of_rows,
    campaign_query,
    detached,
)
from voucherd.vouchers.validity import effective_state


class _SourceIdTaken(Exception):
    """A concurrent request committed a publication with this source_id first."""


def publish(
    db: Database,
    caller: Caller,
    body: PublishRequest,
    *,
    idem: idempotency.IdempotencyClaim | None = None,
) -> Published:
    """Publish a given voucher, or ``count`` codes of a campaign's pool, in one transaction."""
    caller.require("issue")
    _check_shape(body)
    request_hash = _request_hash(body) if body.source_id is not None else None
    try:
        return _publish(db, caller, body, request_hash, idem)
    except _SourceIdTaken:
        assert body.source_id is not None
        assert request_hash is not None
        with db.unit_of_work(write=False) as session:
            existing = _by_source_id(session, caller.tenant_id, body.source_id)
            assert existing is not None  # it committed before our insert gave way
            return _replay(session, existing, request_hash)


def _check_shape(body: PublishRequest) -> None:
    """Which form of publication the body asks for; refused with the field at fault."""
    if (body.voucher is None) == (body.campaign is None):
        raise InvalidInput(
            "give either a voucher (a given code) or a campaign (codes from its pool)",
            field="campaign" if body.campaign is not None else "voucher",
        )
    if body.voucher is not None and body.count is not None:
        raise InvalidInput("count goes with campaign, not with voucher", field="count")
    if body.join_once and body.customer is None:
        raise InvalidInput("join_once needs a customer", field="join_once")
    if body.join_once and (body.count or 1) > 1:
        raise InvalidInput("join_once gives a customer one voucher; count must be 1", field="count")


def _request_hash(body: PublishRequest) -> str:
    canonical = orjson.dumps(body.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def _publish(
    db: Database,
    caller: Caller,
    body: PublishRequest,
    request_hash: str | None,
    idem: idempotency.IdempotencyClaim | None,
) -> Published:
    now = db.now()
    if idem is None and db.writes_single and _whole_in_one_statement(body):
        record = _publish_from_pool_single(db, caller, body, body.campaign, now)
        if record is not None:
            return Published(record, created=True)
        # The pool lacked codes (or the campaign changed): nothing was written; the
        # transactional way answers, as it always has (mints, or refuses with what is missing).
    with db.unit_of_work() as session:
        idempotency.claim(session, db, caller.tenant_id, idem)
        if body.source_id is not None and request_hash is not None:
            existing = _by_source_id(session, caller.tenant_id, body.source_id)
            if existing is not None:
                replayed = _replay(session, existing, request_hash)
                idempotency.bind_effect(session, caller.tenant_id, idem, "publication", existing.id)
                session.commit()
                return replayed
        customer = _customer(session, caller.tenant_id, body.customer, now)
        if body.voucher is not None:
            record = _publish_voucher(
                session, caller, body, body.voucher, customer, request_hash, now
            )
            if body.delivery is not None:
                record = _deliver(session, caller, record, body.delivery, customer, now)
        else:
            assert body.campaign is not None
            record = _publish_from_pool(
                session, db, caller, body, body.campaign, customer, request_hash, now
            )
        idempotency.bind_effect(
            session, caller.tenant_id, idem, "publication", record.publication.id
        )
        session.commit()
    return Published(record, created=True)


def _deliver(
    session: Session,
    caller: Caller,
    record: PublicationRecord,
    asked: PublicationDelivery,
    customer: Customer | None,
    now: datetime,
    settings_of_tenant: dict[str, Any] | None = None,
) -> PublicationRecord:
    """One delivery per published code, in the publication's transaction: both or neither.
    ``settings_of_tenant`` when the caller read them already (else they are read here)."""
    if record.count > len(record.codes):
        raise InvalidInput(
            f"delivery sends one message per code, at most {SHOWN_CODES} per publication",
            field="delivery",
        )
    request = _delivery_request(asked, customer)
    if settings_of_tenant is None:
        settings_of_tenant = tenant_settings(session, caller.tenant_id)
    deliveries = [
        request_delivery(
            session,
            tenant_id=caller.tenant_id,
            voucher_id=voucher_id,
            request=request,
            now=now,
            actor=caller.key_id,
            origin="publication",
            settings_of_tenant=settings_of_tenant,
        )
        for voucher_id, _ in record.codes
    ]
    return dataclasses.replace(record, deliveries=deliveries)


def _delivery_request(asked: PublicationDelivery, customer: Customer | None) -> DeliveryRequest:
    """The request as given, or with the customer's own contact for the channel filled in."""
    recipient = asked.recipient
    if recipient is None and customer is not None and asked.channel in ("phone", "email"):
        recipient = customer.phone if asked.channel == "phone" else customer.email
        if recipient is None:
            raise InvalidInput(
                f"the customer has no {asked.channel} on record; give delivery.recipient",
                field="delivery.recipient",
            )
    name = asked.name or (customer.name if customer is not None else None)
    try:
        return DeliveryRequest(channel=asked.channel, recipient=recipient, name=name)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "recipient"
        raise InvalidInput(str(error["msg"]), field=f"delivery.{where}") from exc


def _customer(
    session: Session, tenant_id: str, given: str | CustomerCreate | None, now: datetime
) -> Customer | None:
    if given is None:
        return None
    if isinstance(given, str):
        customer = find_customer(session, tenant_id, given)
        if customer.erased_at is not None:
            raise Conflict(
                "this customer was erased", field="customer", code=ErrorCode.CUSTOMER_ERASED
            )
        return customer
    return customer_for(session, tenant_id, given, now)


def _publish_voucher(
    session: Session,
    caller: Caller,
    body: PublishRequest,
    ref: str,
    customer: Customer | None,
    request_hash: str | None,
    now: datetime,
) -> PublicationRecord:
    voucher_record = find_voucher(session, caller.tenant_id, ref)
    voucher = voucher_record.voucher
    state = effective_state(voucher.state, voucher.expiration_date, now)
    if state != "ACTIVE":
        raise Conflict(
            f"the voucher is {state}; only an ACTIVE voucher can be published",
            field="voucher",
            code=voucher_state(state),
        )
    publication = _new_publication(
        session, caller, body, voucher.campaign_id, customer, request_hash, now
    )
    publication_id = publication.id
    customer_id = customer.id if customer is not None else None
    if customer_id is not None:
        _count_holding(
            session,
            caller.tenant_id,
            voucher.campaign_id,
            customer_id,
            1,
            publication_id,
            body.join_once,
        )
    record_publications(
        session,
        tenant_id=caller.tenant_id,
        publication_id=publication_id,
        voucher_ids=[voucher.id],
        now=now,
        holder_id=customer_id,
        campaign_id=voucher.campaign_id,
        actor=caller.key_id,
    )
    session.refresh(voucher)  # its publish count and holder changed in a Core UPDATE
    return _record(
        publication,
        campaign_name=voucher_record.campaign_name,
        customer=customer,
        codes=[(voucher.id, voucher.code)],
        voucher=with_entries(session, voucher_record),
    )


def _publish_from_pool(
    session: Session,
    db: Database,
    caller: Caller,
    body: PublishRequest,
    ref: str,
    customer: Customer | None,
    request_hash: str | None,
    now: datetime,
) -> PublicationRecord:
    # The campaign as one prebuilt Core row, not an ORM query and entity (3 of a publication's
    # 8 ms went there); with the tenant's settings when a delivery will need them.
    campaign, _, settings_of_tenant = campaign_and_tenant(
        session, caller.tenant_id, ref, with_settings=body.delivery is not None
    )
    if not campaign.active:
        raise Conflict(
            "the campaign is not active", field="campaign", code=ErrorCode.CAMPAIGN_INACTIVE
        )
    count = body.count or 1
    customer_id = customer.id if customer is not None else None
    if body.source_id is None:
        # Inserted by the claim's own statement (PostgreSQL): one round trip for it all.
        row = publication_row(now=now, **_publication_fields(caller, body, campaign.id, customer))
        publication = _publication_of(row)
    else:
        row = None
        publication = _new_publication(
            session, caller, body, campaign.id, customer, request_hash, now
        )
    publication_id = publication.id
    if customer_id is not None:
        _count_holding(
            session,
            caller.tenant_id,
            campaign.id,
            customer_id,
            count,
            publication_id,
            body.join_once,
        )
    claimed = claim_pool(
        session,
        tenant_id=caller.tenant_id,
        campaign_id=campaign.id,
        publication_id=publication_id,
        count=count,
        now=now,
        holder_id=customer_id,
        actor=caller.key_id,
        publication=row,
        whole=count == 1,
    )
    codes = [(c.voucher_id, c.code) for c in claimed]
    missing = count - len(claimed)
    if missing:
        codes += _mint_missing(
            session, db, caller, campaign, missing, publication_id, customer_id, now
        )
    voucher = None
    if len(codes) == 1:
        # Its columns came back from the claim (a minted one is read).
        columns = claimed[0].columns if claimed else None
        found = (
            detached(Voucher, columns)
            if columns is not None
            else session.get_one(Voucher, codes[0][0])
        )
        voucher = _fresh_voucher(publication, campaign, customer, found)
    record = _record(
        publication,
        campaign_name=campaign.name,
        customer=customer,
        codes=codes,
        voucher=voucher,
    )
    if body.delivery is not None:
        record = _deliver(session, caller, record, body.delivery, customer, now, settings_of_tenant)
    return record


def _whole_in_one_statement(body: PublishRequest) -> bool:
    """Whether the publication can be one statement (:func:`_publish_from_pool_single`): codes
    from a pool, and nothing else to write or to look up first. A ``source_id`` is looked up
    for a replay first, a customer is resolved (perhaps created) and counted, a delivery writes
    its outbox rows: each a write or read that must agree with the claim, so a transaction."""
    return (
        body.campaign is not None
        and body.source_id is None
        and body.customer is None
        and body.delivery is None
    )


def _publish_from_pool_single(
    db: Database, caller: Caller, body: PublishRequest, ref: str | None, now: datetime
) -> PublicationRecord | None:
    """The campaign's read, then the publication, its codes, their links and its event as one
    statement (``sql.claim_from_pool``'s ``all_or_none``), each its own transaction
    (``Database.single_write``): two round trips, no ``BEGIN``/``COMMIT``, and the claimed rows
    locked only while that statement runs.

    Under READ COMMITTED the transactional way's claim never saw its campaign read's snapshot
    either; what could change in between is re-checked by the statement: each code still in the
    pool (``SKIP LOCKED``, ``published_count = 0``), the campaign still active. None, with
    nothing written, when the pool has not ``count`` codes free: the caller goes the
    transactional way, which answers that case (an AUTO_UPDATE campaign mints what is missing,
    a STATIC one refuses with how many)."""
    assert ref is not None
    count = body.count or 1
    with db.single_write() as connection:
        campaign, _, _ = campaign_and_tenant(connection, caller.tenant_id, ref, with_settings=False)
        row = _publication_to_claim(caller, body, campaign, now)
        claimed = claim_publication(connection, publication=row, count=count, whole=count == 1)
    return _claimed_record(row, campaign, claimed) if claimed else None


async def publish_on_loop(db: Database, caller: Caller, body: PublishRequest) -> Published | None:
    """:func:`publish` of codes from a pool with nothing else to write or look up first, without
    an Idempotency-Key, on the event loop: :func:`_publish_from_pool_single`'s two statements
    on a connection of the express lane (``db/express.py``), as the redemption does. Same
    statements, rules and refusals.

    None, with nothing written, when the lane cannot take it (SQLite, a Database bound to one
    connection, every lane connection lent, another form of publication) or the pool had not
    the codes free: the caller then runs :func:`publish` on a worker thread, which answers those
    cases (it mints what an AUTO_UPDATE campaign lacks, or refuses)."""
    lane = db.express
    if lane is None or not _whole_in_one_statement(body):
        return None
    caller.require("issue")
    _check_shape(body)
    assert body.campaign is not None
    now = db.now()
    count = body.count or 1
    try:
        async with lane.connection() as connection:
            found = await lane.rows(
                connection,
                campaign_query(with_settings=False),
                {"tenant_id": caller.tenant_id, "ref": body.campaign},
            )
            campaign, _, _ = campaign_of_rows(found, body.campaign)
            row = _publication_to_claim(caller, body, campaign, now)
            claimed: list[ClaimedCode] = []
            for statement, params in publication_tries(
                publication=row, count=count, whole=count == 1
            ):
                rows = await lane.rows(connection, statement, params)
                if rows:
                    claimed = publication_claimed(row, rows, count == 1)
                    break
    except LaneBusy:
        return None
    return Published(_claimed_record(row, campaign, claimed), created=True) if claimed else None


def _publication_to_claim(
    caller: Caller, body: PublishRequest, campaign: Campaign, now: datetime
) -> dict[str, Any]:
    """The publication's row for a claim in one statement; refused while the campaign is not
    active (the statement re-checks that too)."""
    if not campaign.active:
        raise Conflict(
            "the campaign is not active", field="campaign", code=ErrorCode.CAMPAIGN_INACTIVE
        )
    return publication_row(now=now, **_publication_fields(caller, body, campaign.id, None))


def _claimed_record(
    row: dict[str, Any], campaign: Campaign, claimed: list[ClaimedCode]
) -> PublicationRecord:
    """The publication the one statement wrote, with its codes (and its one voucher, whole)."""
    count = len(claimed)
    publication = _publication_of(row)
    voucher = None
    if count == 1:
        assert claimed[0].columns is not None
        voucher = _fresh_voucher(publication, campaign, None, detached(Voucher, claimed[0].columns))
    return _record(
        publication,
        campaign_name=campaign.name,
        customer=None,
        codes=[(c.voucher_id, c.code) for c in claimed],
        voucher=voucher,
    )


def _fresh_voucher(
    publication: Publication, campaign: Campaign, customer: Customer | None, voucher: Voucher
) -> VoucherRecord:
    """The one voucher of a publication, fresh from the pool (or minted for it): this
    publication is its only one, so its entries need no query."""
    entry = entry_of(publication, customer.source_id if customer is not None else None)
    return VoucherRecord(voucher, campaign.name, [entry], campaign=campaign)


def _mint_missing(
    session: Session,
    db: Database,
    caller: Caller,
    campaign: Campaign,
    missing: int,
    publication_id: str,
    customer_id: str | None,
    now: datetime,
) -> list[tuple[str, str]]:
    """An AUTO_UPDATE campaign grows by what its pool lacked; a STATIC one refuses, and the
    transaction's rollback returns the codes already claimed to the pool."""
    if campaign.mode != "AUTO_UPDATE":
        raise Conflict(
            f"this STATIC campaign's pool is {missing} code(s) short of the count asked for; "
            "nothing was published",
            field="count",
            code=ErrorCode.POOL_EXHAUSTED,
            extra={"missing": missing},
        )
    ids = mint_in_session(session, db, campaign, missing, actor=caller.key_id, now=now)
    record_publications(
        session,
        tenant_id=caller.tenant_id,
        publication_id=publication_id,
        voucher_ids=ids,
        now=now,
        holder_id=customer_id,
        campaign_id=campaign.id,
        actor=caller.key_id,
    )
    rows = session.execute(
        select(Voucher.id, Voucher.code).where(Voucher.id.in_(ids)).order_by(Voucher.id)
    ).all()
    return [(voucher_id, code) for voucher_id, code in rows]


def _new_publication(
    session: Session,
    caller: Caller,
    body: PublishRequest,
    campaign_id: str,
    customer: Customer | None,
    request_hash: str | None,
    now: datetime,
) -> Publication:
    """Insert the publication; the object returned is built here, not read back (a round trip
    saved on every request)."""
    fields = _publication_fields(caller, body, campaign_id, customer)
    publication_id = create_publication(
        session,
        publication_row(now=now, source_id=body.source_id, request_hash=request_hash, **fields),
    )
    if publication_id is None:
        raise _SourceIdTaken
    return _publication_of(
        {
            **fields,
            "id": publication_id,
            "created_at": now,
            "source_id": body.source_id,
            "request_hash": request_hash,
        }
    )


def _publication_fields(
    caller: Caller, body: PublishRequest, campaign_id: str, customer: Customer | None
) -> dict[str, Any]:
    """What a publication of this request holds, besides its id, time and source_id."""
    return {
        "tenant_id": caller.tenant_id,
        "channel": body.channel,
        "campaign_id": campaign_id,
        "customer_id": customer.id if customer is not None else None,
        "actor": caller.key_id,
        "metadata": body.metadata,
    }


def _publication_of(row: dict[str, Any]) -> Publication:
    """The publication object of a row inserted with Core (column ``metadata`` is attribute
    ``metadata_``): detached, never added to the session."""
    values = {("metadata_" if name == "metadata" else name): value for name, value in row.items()}
    return detached(Publication, values)


def _count_holding(
    session: Session,
    tenant_id: str,
    campaign_id: str,
    customer_id: str,
    count: int,
    publication_id: str,
    join_once: bool,
) -> None:
    """Count the customer's vouchers of the campaign; with ``join_once``, refuse a second one.

    One upsert: on PostgreSQL its row lock queues concurrent publications for the same
    customer and campaign, so two of them cannot both be the first.
    """
    held, first = session.execute(
        upsert(session, CampaignHolder)
        .values(
            campaign_id=campaign_id,
            customer_id=customer_id,
            tenant_id=tenant_id,
            voucher_count=count,
            first_publication_id=publication_id,
        )
        .on_conflict_do_update(
            index_elements=["campaign_id", "customer_id"],
            set_={"voucher_count": CampaignHolder.voucher_count + count},
        )
        .returning(CampaignHolder.voucher_count, CampaignHolder.first_publication_id)
    ).one()
    if join_once and held > count:
        raise Conflict(
            "this customer already has a voucher of this campaign (join_once)",
            field="customer",
            code=ErrorCode.ALREADY_JOINED,
            extra={"publication_id": first},
        )


def _by_source_id(session: Session, tenant_id: str, source_id: str) -> Publication | None:
    return session.scalar(
        select(Publication).where(
            Publication.tenant_id == tenant_id, Publication.source_id == source_id
        )
    )


def _replay(session: Session, existing: Publication, request_hash: str) -> Published:
    if existing.request_hash != request_hash:
        raise Conflict(
            "this source_id was used for a different publication",
            field="source_id",
            code=ErrorCode.DUPLICATE_SOURCE_ID,
            extra={"publication_id": existing.id},
        )
    return Published(load_publication(session, existing, with_voucher=True), created=False)


def _record(
    publication: Publication,
    *,
    campaign_name: str | None,
    customer: Customer | None,
    codes: list[tuple[str, str]],
    voucher: VoucherRecord | None,
) -> PublicationRecord:
    return PublicationRecord(
        publication=publication,
        campaign_name=campaign_name,
        customer_source_id=customer.source_id if customer is not None else None,
        count=len(codes),
        codes=codes[:SHOWN_CODES],
        voucher=voucher,
    )
