"""Reading vouchers and changing their state: get, list, disable, enable, cancel, adjust."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, case, func, insert, or_, select, update
from sqlalchemy.orm import Session

from voucherd.auth.caller import Caller
from voucherd.campaigns.lookup import campaign_named, find_campaign
from voucherd.campaigns.models import Campaign
from voucherd.customers.models import Customer
from voucherd.db.engine import Database
from voucherd.errors import Conflict, ErrorCode, InvalidInput, voucher_state
from voucherd.pagination import Page, page_of
from voucherd.publications.pool import publication_entries
from voucherd.vouchers.lookup import find_voucher
from voucherd.vouchers.models import LedgerEntry, Voucher, VoucherEvent
from voucherd.vouchers.schemas import VoucherFilters, VoucherRecord


def get_voucher(db: Database, caller: Caller, ref: str) -> VoucherRecord:
    """One voucher, with its latest publications (``publish.entries``)."""
    with db.unit_of_work(write=False) as session:
        found = find_voucher(session, caller.tenant_id, ref)
        entries = publication_entries(session, found.voucher.id)
        return VoucherRecord(found.voucher, found.campaign_name, entries, campaign=found.campaign)


def list_vouchers(
    db: Database, caller: Caller, filters: VoucherFilters, *, limit: int, cursor: str | None
) -> Page[VoucherRecord]:
    query = (
        select(Voucher, Campaign.name)
        .join(Campaign, Campaign.id == Voucher.campaign_id)
        .where(Voucher.tenant_id == caller.tenant_id)
    )
    now = db.now()
    with db.unit_of_work(write=False) as session:
        if filters.campaign is not None:
            campaign = find_campaign(session, caller.tenant_id, filters.campaign)
            query = query.where(Voucher.campaign_id == campaign.id)
        if filters.state == "EXPIRED":
            query = query.where(Voucher.state == "ACTIVE", Voucher.expiration_date < now)
        elif filters.state == "ACTIVE":
            query = query.where(
                Voucher.state == "ACTIVE",
                or_(Voucher.expiration_date.is_(None), Voucher.expiration_date >= now),
            )
        elif filters.state is not None:
            query = query.where(Voucher.state == filters.state)
        if filters.customer_ref is not None:
            query = query.where(Voucher.customer_ref == filters.customer_ref)
        if filters.created_after is not None:
            query = query.where(Voucher.created_at >= _utc(filters.created_after))
        if filters.created_before is not None:
            query = query.where(Voucher.created_at < _utc(filters.created_before))
        if cursor:
            query = query.where(Voucher.id < cursor)
        rows = session.execute(query.order_by(Voucher.id.desc()).limit(limit + 1)).all()
    records = [VoucherRecord(v, name) for v, name in rows]
    return page_of(records, limit, records[limit - 1].voucher.id if len(records) > limit else None)


def number_vouchers(
    db: Database,
    caller: Caller,
    *,
    campaigns: tuple[str, ...] = (),
    customer: str | None = None,
    category: str | None = None,
    page: int,
    limit: int,
) -> tuple[list[VoucherRecord], int]:
    """Page ``page`` (from 1) of ``limit`` vouchers, newest first, and how many match in all:
    for faces that number their pages (Voucherify) rather than follow a cursor.

    Each of ``campaigns`` (an id or a name) narrows the list, as Voucherify's ``campaign`` and
    ``campaign_id`` do together; ``customer`` is the holder's id or source_id (or the
    reference the voucher was issued for). A filter naming nothing that exists matches no
    voucher rather than failing: a list is an answer to a question, and "none" is one.
    """
    query = (
        select(Voucher, Campaign.name)
        .join(Campaign, Campaign.id == Voucher.campaign_id)
        .where(Voucher.tenant_id == caller.tenant_id)
    )
    for campaign in campaigns:
        query = query.where(campaign_named(campaign))
    if customer is not None:
        holders = select(Customer.id).where(
            Customer.tenant_id == caller.tenant_id,
            or_(Customer.id == customer, Customer.source_id == customer),
        )
        sources = select(Customer.source_id).where(
            Customer.tenant_id == caller.tenant_id, Customer.id == customer
        )
        query = query.where(
            or_(
                Voucher.holder_id.in_(holders),
                Voucher.customer_ref == customer,
                Voucher.customer_ref.in_(sources),
            )
        )
    if category is not None:
        query = query.where(Voucher.category == category)
    with db.unit_of_work(write=False) as session:
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = session.execute(
            query.order_by(Voucher.id.desc()).offset((page - 1) * limit).limit(limit)
        ).all()
    return [VoucherRecord(v, name) for v, name in rows], int(total)


def _utc(moment: datetime) -> datetime:
    """A filter time without an offset is read as UTC (a list spans campaigns and their zones);
    handed on naive, it would fail in the UTCDateTime column type as a server error."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _event(
    session: Session,
    voucher: Voucher,
    caller: Caller,
    kind: str,
    now: datetime,
    *,
    reason: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    session.execute(
        insert(VoucherEvent).values(
            tenant_id=voucher.tenant_id,
            voucher_id=voucher.id,
            campaign_id=voucher.campaign_id,
            kind=kind,
            actor=caller.key_id,
            reason=reason,
            data=data,
            created_at=now,
        )
    )


def _transition(
    db: Database,
    caller: Caller,
    ref: str,
    *,
    allowed_from: tuple[str, ...],
    to: str,
    kind: str,
    reason: str | None,
) -> VoucherRecord:
    """Move a voucher between stored states with one conditional UPDATE."""
    caller.require("manage")
    now = db.now()
    with db.unit_of_work() as session:
        record = find_voucher(session, caller.tenant_id, ref)
        voucher = record.voucher
        # Read before the UPDATE: the ORM synchronises the loaded object with the new state.
        previous = voucher.state
        changed = session.execute(
            update(Voucher)
            .where(Voucher.id == voucher.id, Voucher.state.in_(allowed_from))
            .values(state=to, updated_at=now)
            .returning(Voucher.state)
        ).first()
        if changed is None:
            current = session.scalar(select(Voucher.state).where(Voucher.id == voucher.id))
            raise Conflict(
                f"the voucher is {current}; it cannot be {kind}",
                field="voucher",
                code=voucher_state(str(current)),
            )
        _event(session, voucher, caller, kind, now, reason=reason, data={"from": previous})
        session.commit()
        session.refresh(voucher)
        return record


def disable_voucher(
    db: Database, caller: Caller, ref: str, reason: str | None = None
) -> VoucherRecord:
    return _transition(
        db,
        caller,
        ref,
        allowed_from=("ACTIVE", "DISABLED"),
        to="DISABLED",
        kind="disabled",
        reason=reason,
    )


def enable_voucher(
    db: Database, caller: Caller, ref: str, reason: str | None = None
) -> VoucherRecord:
    return _transition(
        db,
        caller,
        ref,
        allowed_from=("ACTIVE", "DISABLED"),
        to="ACTIVE",
        kind="enabled",
        reason=reason,
    )


def cancel_voucher(
    db: Database, caller: Caller, ref: str, reason: str | None = None
) -> VoucherRecord:
    """Final: a cancelled or fully redeemed voucher cannot be cancelled (409, saying which)."""
    return _transition(
        db,
        caller,
        ref,
        allowed_from=("ACTIVE", "DISABLED"),
        to="CANCELLED",
        kind="cancelled",
        reason=reason,
    )


def adjust_balance(
    db: Database, caller: Caller, ref: str, amount: int, reason: str | None = None
) -> VoucherRecord:
    """Top a GIFT or LOYALTY balance up, or take some away, never below zero."""
    caller.require("manage")
    if amount == 0:
        raise InvalidInput("must not be zero", field="amount")
    now = db.now()
    with db.unit_of_work() as session:
        record = find_voucher(session, caller.tenant_id, ref)
        voucher = record.voucher
        if voucher.type not in ("GIFT", "LOYALTY"):
            raise InvalidInput(
                f"a {voucher.type} voucher has no adjustable balance", field="voucher"
            )
        changed = session.execute(
            update(Voucher)
            .where(
                Voucher.id == voucher.id,
                Voucher.state.in_(("ACTIVE", "DISABLED", "REDEEMED")),
                Voucher.balance + amount >= 0,
            )
            .values(
                balance=Voucher.balance + amount,
                amount=Voucher.amount + amount if amount > 0 else Voucher.amount,
                state=_state_after_balance_change(amount),
                updated_at=now,
            )
            .returning(Voucher.balance)
        ).first()
        if changed is None:
            raise Conflict(
                "the balance would go below zero, or the voucher is cancelled",
                field="amount",
                code=ErrorCode.INSUFFICIENT_BALANCE,
            )
        session.execute(
            insert(LedgerEntry).values(
                tenant_id=voucher.tenant_id,
                voucher_id=voucher.id,
                delta=amount,
                kind="ADJUSTMENT",
                created_at=now,
            )
        )
        _event(
            session,
            voucher,
            caller,
            "balance_adjusted",
            now,
            reason=reason,
            data={"amount": amount},
        )
        session.commit()
        session.refresh(voucher)
        return record


def _state_after_balance_change(amount: int) -> Any:
    """A top-up revives a used-up voucher; removing the rest of a balance uses it up."""
    if amount > 0:
        return case((Voucher.state == "REDEEMED", "ACTIVE"), else_=Voucher.state)
    return case(
        (and_(Voucher.state == "ACTIVE", Voucher.balance + amount == 0), "REDEEMED"),
        else_=Voucher.state,
    )


def list_events(db: Database, caller: Caller, ref: str) -> list[VoucherEvent]:
    with db.unit_of_work(write=False) as session:
        voucher = find_voucher(session, caller.tenant_id, ref).voucher
        return list(
            session.scalars(
                select(VoucherEvent)
                .where(VoucherEvent.voucher_id == voucher.id)
                .order_by(VoucherEvent.id)
            )
        )


def list_ledger(db: Database, caller: Caller, ref: str) -> list[LedgerEntry]:
    """Every change of the voucher's balance, oldest first: their sum is ``voucher.balance``,
    so an operator can see how a balance came to be (issued, spent, rolled back, adjusted)."""
    with db.unit_of_work(write=False) as session:
        voucher = find_voucher(session, caller.tenant_id, ref).voucher
        return list(
            session.scalars(
                select(LedgerEntry)
                .where(LedgerEntry.voucher_id == voucher.id)
                .order_by(LedgerEntry.id)
            )
        )
