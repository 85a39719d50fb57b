"""Customers: create, find (by id or the issuer's ``source_id``), update, search, erase.

Nothing here logs a customer's personal data, and error messages never echo it: a reference
that is not found may itself be a phone number or an email address.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from voucherd.auth.caller import Caller
from voucherd.campaigns.models import CampaignCustomer
from voucherd.customers.models import Customer
from voucherd.customers.schemas import (
    PERSONAL_FIELDS,
    CustomerCreate,
    CustomerFilters,
    CustomerUpdate,
)
from voucherd.db.dialect import upsert
from voucherd.db.engine import Database
from voucherd.errors import Conflict, ErrorCode, NotFound
from voucherd.idempotency import service as idempotency
from voucherd.ids import new_id
from voucherd.pagination import Page, page_of
from voucherd.publications.models import Publication, PublicationVoucher
from voucherd.redemptions.models import Redemption
from voucherd.vouchers.models import Voucher, VoucherEvent

_CUSTOMER = cast(Table, Customer.__table__)
_DUPLICATE = "a customer with this source_id already exists"


def find_customer(
    session: Session, tenant_id: str, ref: str, *, field: str = "customer"
) -> Customer:
    """A customer by id or by ``source_id``, within the tenant (an id match wins)."""
    found = list(
        session.scalars(
            select(Customer).where(
                Customer.tenant_id == tenant_id, or_(Customer.id == ref, Customer.source_id == ref)
            )
        )
    )
    if not found:
        raise NotFound("no such customer", field=field)
    return next((c for c in found if c.id == ref), found[0])


def _row(tenant_id: str, body: CustomerCreate, now: datetime) -> dict[str, Any]:
    fields = {name: getattr(body, name) for name in CustomerCreate.model_fields}
    return {
        "id": new_id("cust"),
        "tenant_id": tenant_id,
        **fields,
        "created_at": now,
        "updated_at": now,
    }


def add_customer(
    session: Session, tenant_id: str, body: CustomerCreate, now: datetime
) -> Customer | None:
    """Insert a customer in the caller's transaction; None if its ``source_id`` is taken.

    ``ON CONFLICT DO NOTHING`` rather than catching the unique violation, which would abort
    the whole transaction on PostgreSQL.
    """
    row = _row(tenant_id, body, now)
    inserted = session.execute(
        upsert(session, _CUSTOMER)
        .values(row)
        .on_conflict_do_nothing(index_elements=["tenant_id", "source_id"])
        .returning(_CUSTOMER.c.id)
    ).first()
    if inserted is None:
        return None
    return session.get_one(Customer, row["id"])


def customer_for(session: Session, tenant_id: str, body: CustomerCreate, now: datetime) -> Customer:
    """The customer with the body's ``source_id``, created from the body if there is none yet
    (a customer given inline with a publication). An existing customer is used as it is."""
    if body.source_id is not None:
        existing = session.scalar(
            select(Customer).where(
                Customer.tenant_id == tenant_id, Customer.source_id == body.source_id
            )
        )
        if existing is not None:
            return existing
    created = add_customer(session, tenant_id, body, now)
    if created is None:  # created concurrently, after the look-up above
        return session.scalars(
            select(Customer).where(
                Customer.tenant_id == tenant_id, Customer.source_id == body.source_id
            )
        ).one()
    return created


def customer_for_ref(
    session: Session, tenant_id: str, customer_ref: str, now: datetime
) -> Customer:
    """The customer a voucher's ``customer_ref`` (Yoyo userRef, i-movo customerReference, Vista
    externalUserId) names, created on first sight: a customer_ref *is* a source_id."""
    return customer_for(session, tenant_id, CustomerCreate(source_id=customer_ref), now)


def create_customer(
    db: Database,
    caller: Caller,
    body: CustomerCreate,
    *,
    idem: idempotency.IdempotencyClaim | None = None,
) -> Customer:
    caller.require("issue")
    now = db.now()
    with db.unit_of_work() as session:
        idempotency.claim(session, db, caller.tenant_id, idem)
        customer = add_customer(session, caller.tenant_id, body, now)
        if customer is None:
            raise Conflict(_DUPLICATE, field="source_id", code=ErrorCode.DUPLICATE_SOURCE_ID)
        idempotency.bind_effect(session, caller.tenant_id, idem, "customer", customer.id)
        session.commit()
        return customer


def save_customer(
    db: Database,
    caller: Caller,
    body: CustomerCreate,
    *,
    idem: idempotency.IdempotencyClaim | None = None,
) -> tuple[Customer, bool]:
    """Create a customer, or update the one that has the body's ``source_id`` with the fields
    sent (an upsert, as Voucherify's create does); True when it was created.

    An erased customer has no ``source_id`` any more, so a source_id it once had makes a new
    customer.
    """
    caller.require("issue")
    now = db.now()
    changes = {name: getattr(body, name) for name in body.model_fields_set - {"source_id"}}
    with db.unit_of_work() as session:
        idempotency.claim(session, db, caller.tenant_id, idem)
        customer = add_customer(session, caller.tenant_id, body, now)
        created = customer is not None
        if customer is None:  # the source_id is taken: that customer gets the fields sent
            customer = session.scalars(
                select(Customer).where(
                    Customer.tenant_id == caller.tenant_id, Customer.source_id == body.source_id
                )
            ).one()
            if changes:
                session.execute(
                    update(_CUSTOMER)
                    .where(_CUSTOMER.c.id == customer.id)
                    .values(**changes, updated_at=now)
                )
                session.refresh(customer)
        idempotency.bind_effect(session, caller.tenant_id, idem, "customer", customer.id)
        session.commit()
        return customer, created


def get_customer(
    db: Database, caller: Caller, ref: str, *, include_erased: bool = True
) -> Customer:
    """One customer; with ``include_erased=False`` an erased one is not found (faces whose
    customers are deleted, not erased, like Voucherify's)."""
    with db.unit_of_work(write=False) as session:
        customer = find_customer(session, caller.tenant_id, ref)
        if customer.erased_at is not None and not include_erased:
            raise NotFound("no such customer", field="customer")
        return customer


def update_customer(db: Database, caller: Caller, ref: str, body: CustomerUpdate) -> Customer:
    """Change the fields sent (a field sent as null is cleared); an erased customer stays so."""
    caller.require("issue")
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    now = db.now()
    with db.unit_of_work() as session:
        customer = find_customer(session, caller.tenant_id, ref)
        if customer.erased_at is not None:
            raise Conflict(
                "this customer was erased", field="customer", code=ErrorCode.CUSTOMER_ERASED
            )
        if not changes:
            return customer
        if changes.get("source_id") is not None and changes["source_id"] != customer.source_id:
            taken = session.scalar(
                select(Customer.id).where(
                    Customer.tenant_id == caller.tenant_id,
                    Customer.source_id == changes["source_id"],
                )
            )
            if taken is not None:
                raise Conflict(_DUPLICATE, field="source_id", code=ErrorCode.DUPLICATE_SOURCE_ID)
        try:
            session.execute(
                update(_CUSTOMER)
                .where(_CUSTOMER.c.id == customer.id)
                .values(**changes, updated_at=now)
            )
        except IntegrityError as exc:  # the same source_id set concurrently
            raise Conflict(
                _DUPLICATE, field="source_id", code=ErrorCode.DUPLICATE_SOURCE_ID
            ) from exc
        session.commit()
        session.refresh(customer)
        return customer


def list_customers(
    db: Database, caller: Caller, filters: CustomerFilters, *, limit: int, cursor: str | None
) -> Page[Customer]:
    query = select(Customer).where(Customer.tenant_id == caller.tenant_id)
    if filters.q:
        pattern = "%" + _escape_like(filters.q.lower()) + "%"
        query = query.where(
            or_(
                Customer.name.ilike(pattern, escape="\\"),
                Customer.email.ilike(pattern, escape="\\"),
                Customer.phone.like(pattern, escape="\\"),
                Customer.source_id.like(pattern, escape="\\"),
            )
        )
    if filters.email is not None:
        query = query.where(Customer.email == filters.email)
    if filters.phone is not None:
        query = query.where(Customer.phone == filters.phone)
    if filters.source_id is not None:
        query = query.where(Customer.source_id == filters.source_id)
    if cursor:
        query = query.where(Customer.id < cursor)
    with db.unit_of_work(write=False) as session:
        rows = list(session.scalars(query.order_by(Customer.id.desc()).limit(limit + 1)))
    return page_of(rows, limit, rows[limit - 1].id if len(rows) > limit else None)


def number_customers(
    db: Database, caller: Caller, *, email: str | None = None, page: int, limit: int
) -> tuple[list[Customer], int]:
    """Page ``page`` (from 1) of ``limit`` customers, newest first, and how many match in all:
    for faces that number their pages (Voucherify) rather than follow a cursor. Erased
    customers are left out: these faces delete customers, and a deleted one is not found."""
    query = select(Customer).where(
        Customer.tenant_id == caller.tenant_id, Customer.erased_at.is_(None)
    )
    if email is not None:
        query = query.where(Customer.email == email)
    with db.unit_of_work(write=False) as session:
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = session.scalars(
            query.order_by(Customer.id.desc()).offset((page - 1) * limit).limit(limit)
        )
        return list(rows), int(total)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def erase_customer(db: Database, caller: Caller, ref: str, reason: str | None = None) -> Customer:
    """Wipe a customer's personal data everywhere it was copied; keep the history.

    The customer row stays (publications and vouchers point at it) with every personal field
    empty, ``source_id`` included: issuers often use a phone number or an email as their
    reference, so it is personal data too and an erased customer cannot be found by it again.
    The same data copied onto the customer's vouchers (holder name, address, post code, the
    customer_ref), onto redemptions (customer_ref) and into per-customer issue counts is wiped
    in the same transaction. Erasing an erased customer changes nothing.
    """
    caller.require("manage")
    now = db.now()
    with db.unit_of_work() as session:
        customer = find_customer(session, caller.tenant_id, ref)
        if customer.erased_at is not None:
            return customer
        old_ref = customer.source_id
        wiped = {("metadata" if f == "metadata_" else f): None for f in PERSONAL_FIELDS}
        session.execute(
            update(_CUSTOMER)
            .where(_CUSTOMER.c.id == customer.id)
            .values(**wiped, erased_at=now, updated_at=now)
        )
        vouchers = _wipe_vouchers(session, caller.tenant_id, customer.id, old_ref, now)
        if old_ref is not None:
            session.execute(
                update(Redemption)
                .where(Redemption.tenant_id == caller.tenant_id, Redemption.customer_ref == old_ref)
                .values(customer_ref=None)
                .execution_options(synchronize_session=False)
            )
            session.execute(
                delete(CampaignCustomer).where(
                    CampaignCustomer.tenant_id == caller.tenant_id,
                    CampaignCustomer.customer_ref == old_ref,
                )
            )
        session.execute(
            insert(VoucherEvent).values(
                tenant_id=caller.tenant_id,
                kind="customer_erased",
                actor=caller.key_id,
                reason=reason,
                data={"customer_id": customer.id, "vouchers": vouchers},
                created_at=now,
            )
        )
        session.commit()
        session.refresh(customer)
        return customer


def _wipe_vouchers(
    session: Session, tenant_id: str, customer_id: str, old_ref: str | None, now: datetime
) -> int:
    published_to = (
        select(PublicationVoucher.voucher_id)
        .join(Publication, Publication.id == PublicationVoucher.publication_id)
        .where(Publication.customer_id == customer_id)
    )
    mine: ColumnElement[bool] = Voucher.id.in_(published_to)
    if old_ref is not None:
        mine = or_(mine, Voucher.customer_ref == old_ref)
    result = session.execute(
        update(Voucher)
        .where(Voucher.tenant_id == tenant_id, mine)
        .values(
            customer_ref=None,
            holder_name=None,
            holder_address=None,
            holder_postcode=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
