"""Limits that spend something: each is checked by the same statement that spends it, or under
a row lock held to the end of the issuing transaction — never read, decide, write."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import BigInteger, ForeignKey, delete, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from voucherd.auth.models import Tenant
from voucherd.campaigns.models import Campaign, CampaignCustomer
from voucherd.db.base import Base, UTCDateTime
from voucherd.db.dialect import upsert
from voucherd.errors import ErrorCode, LimitReached
from voucherd.vouchers.models import Voucher

WEEK = timedelta(days=7)


class IssuedValueBucket(Base):
    """Value issued per tenant per hour: the rolling weekly limit sums the last 168 buckets.

    Beside the functions that spend and recount it, the only ones that touch it."""

    __tablename__ = "issued_value_bucket"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"), primary_key=True)
    hour: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def spend_weekly_value(
    session: Session, tenant_id: str, value: int, now: datetime, *, limit_seen: int | None
) -> None:
    """Add ``value`` to the tenant's rolling 7-day issued value, or refuse past its limit.

    ``limit_seen`` is the limit as read with the campaign; tenants without one pay nothing here.
    Otherwise the tenant row is locked first (PostgreSQL; SQLite's writer lock already
    serialises) and the limit read again under the lock, so two issues cannot both see room for
    one. Hourly buckets keep the sum to at most 169 rows.
    """
    if limit_seen is None or value == 0:
        return
    # FOR NO KEY UPDATE, not FOR UPDATE: this transaction may already hold FOR KEY SHARE on the
    # tenant row (PostgreSQL takes it for the foreign key of every row inserted before this
    # point: the idempotency record, the per-customer count), and two issuers each holding
    # that and asking for FOR UPDATE deadlock. NO KEY UPDATE still queues issuers on the row.
    limit = session.scalar(
        select(Tenant.weekly_value_limit)
        .where(Tenant.id == tenant_id)
        .with_for_update(key_share=True)
    )
    if limit is None:
        return
    window_start = _hour(now - WEEK)
    used = session.scalar(
        select(func.coalesce(func.sum(IssuedValueBucket.value), 0)).where(
            IssuedValueBucket.tenant_id == tenant_id, IssuedValueBucket.hour > window_start
        )
    )
    if int(used or 0) + value > limit:
        raise LimitReached(
            f"issuing {value} would pass the weekly value limit of {limit} "
            f"({used} issued in the last 7 days)",
            field="value",
            code=ErrorCode.WEEKLY_VALUE_LIMIT_REACHED,
        )
    session.execute(
        upsert(session, IssuedValueBucket)
        .values(tenant_id=tenant_id, hour=_hour(now), value=value)
        .on_conflict_do_update(
            index_elements=["tenant_id", "hour"],
            set_={"value": IssuedValueBucket.value + value},
        )
    )


def spend_campaign_budget(session: Session, campaign: Campaign, value: int) -> None:
    if campaign.budget is None or value == 0:
        return
    spent = session.execute(
        update(Campaign)
        .where(Campaign.id == campaign.id, Campaign.issued_value + value <= Campaign.budget)
        .values(issued_value=Campaign.issued_value + value)
    )
    if spent.rowcount == 0:  # type: ignore[attr-defined]
        raise LimitReached(
            f"issuing {value} would pass the campaign budget of {campaign.budget}",
            field="value",
            code=ErrorCode.CAMPAIGN_BUDGET_EXHAUSTED,
        )


def counts_customer(campaign: Campaign, customer_ref: str | None) -> bool:
    """Whether :func:`count_customer_issue` writes a count: a campaign with a
    ``per_customer_limit``, issuing to a customer."""
    return campaign.per_customer_limit is not None and customer_ref is not None


def count_customer_issue(session: Session, campaign: Campaign, customer_ref: str | None) -> None:
    """One more voucher for this customer from this campaign, within ``per_customer_limit``."""
    if not counts_customer(campaign, customer_ref):
        return
    counted = session.execute(
        upsert(session, CampaignCustomer)
        .values(
            campaign_id=campaign.id,
            customer_ref=customer_ref,
            tenant_id=campaign.tenant_id,
            issued_count=1,
        )
        .on_conflict_do_update(
            index_elements=["campaign_id", "customer_ref"],
            set_={"issued_count": CampaignCustomer.issued_count + 1},
            where=CampaignCustomer.issued_count < campaign.per_customer_limit,
        )
        .returning(CampaignCustomer.issued_count)
    ).first()
    if counted is None:
        raise LimitReached(
            f"this customer already has {campaign.per_customer_limit} voucher(s) from this campaign",
            field="customer_ref",
            code=ErrorCode.CUSTOMER_LIMIT_REACHED,
        )


def recount_weekly_buckets(session: Session, tenant_id: str, now: datetime) -> None:
    """When a limit is switched on, count what was issued in the last 7 days, by hour."""
    session.execute(delete(IssuedValueBucket).where(IssuedValueBucket.tenant_id == tenant_id))
    buckets: dict[datetime, int] = {}
    rows = session.execute(
        select(Voucher.created_at, Voucher.amount).where(
            Voucher.tenant_id == tenant_id,
            Voucher.created_at > now - WEEK,
            Voucher.amount.is_not(None),
            Voucher.type != "LOYALTY",
        )
    )
    for created_at, amount in rows:
        buckets[_hour(created_at)] = buckets.get(_hour(created_at), 0) + (amount or 0)
    for hour, value in buckets.items():
        session.add(IssuedValueBucket(tenant_id=tenant_id, hour=hour, value=value))


def switch_weekly_value_limit(
    session: Session, tenant: Tenant, limit: int | None, now: datetime
) -> None:
    """Set or clear the tenant's limit (a step of the tenant's update). Switching it on counts
    the value issued in the last 7 days, so a limit set today already knows about yesterday."""
    if tenant.weekly_value_limit is None and limit is not None:
        recount_weekly_buckets(session, tenant.id, now)
    tenant.weekly_value_limit = limit
