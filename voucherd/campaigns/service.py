"""Campaign use cases: read, change, list; and the steps that make a new campaign.

Creating one is ``vouchers.mint.create_campaign``, because a campaign may be created with its
first vouchers in the same transaction and campaigns sit below vouchers.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from voucherd.auth.caller import Caller
from voucherd.campaigns.lookup import find_campaign
from voucherd.campaigns.models import Campaign
from voucherd.campaigns.schemas import CampaignCreate, CampaignFields, CampaignUpdate
from voucherd.campaigns.validity import localise
from voucherd.db.engine import Database
from voucherd.errors import Conflict, ErrorCode, InvalidInput
from voucherd.ids import new_id
from voucherd.pagination import Page, page_of
from voucherd.vouchers.models import Voucher


def _apply(campaign: Campaign, fields: CampaignFields, present: set[str]) -> None:
    simple = {
        "description", "active", "default_value", "max_value", "lifetime_days",
        "redemption_quantity", "per_customer_limit", "budget", "category", "timezone",
        "help_text", "store_finder_url", "delivery_channel",
    }  # fmt: skip
    for name in simple & present:
        setattr(campaign, name, getattr(fields, name))
    if "metadata" in present:
        campaign.metadata_ = fields.metadata
    if "locale" in present:
        campaign.locale = fields.locale or "en"
    if "message_templates" in present:
        templates = fields.message_templates
        campaign.message_templates = (
            templates.model_dump(mode="json", exclude_none=True) if templates else None
        )
    if "validity_day_of_week" in present:
        campaign.validity_day_of_week = fields.validity_day_of_week
    for name in ("validity_timeframe", "validity_hours"):
        if name in present:
            value = getattr(fields, name)
            setattr(campaign, name, value.model_dump() if value is not None else None)
    for name in ("start_date", "expiration_date"):
        if name in present:
            setattr(campaign, name, localise(getattr(fields, name), campaign.timezone))


def _check_rules(campaign: Campaign) -> None:
    """Rules that span fields; each error names the field to change."""
    if campaign.type in ("GIFT", "CASH") and campaign.currency is None:
        raise InvalidInput(f"a {campaign.type} campaign needs a currency", field="currency")
    if campaign.type == "LOYALTY" and campaign.currency is not None:
        raise InvalidInput("loyalty points carry no currency", field="currency")
    if campaign.type == "DISCOUNT":
        if campaign.discount is None:
            raise InvalidInput("a DISCOUNT campaign needs a discount", field="discount")
        if campaign.discount["type"] in ("AMOUNT", "FIXED") and campaign.currency is None:
            raise InvalidInput("an AMOUNT or FIXED discount needs a currency", field="currency")
        if campaign.default_value is not None or campaign.max_value is not None:
            raise InvalidInput(
                "a DISCOUNT campaign's value is its discount definition", field="default_value"
            )
    elif campaign.discount is not None:
        raise InvalidInput("only DISCOUNT campaigns carry a discount", field="discount")
    if campaign.type == "CASH":
        if campaign.redemption_quantity not in (None, 1):
            raise InvalidInput("a CASH voucher is paid out once", field="redemption_quantity")
        campaign.redemption_quantity = 1
    if (
        campaign.default_value is not None
        and campaign.max_value is not None
        and campaign.default_value > campaign.max_value
    ):
        raise InvalidInput("default_value is above max_value", field="default_value")
    if (
        campaign.start_date is not None
        and campaign.expiration_date is not None
        and campaign.start_date >= campaign.expiration_date
    ):
        raise InvalidInput("expiration_date must be after start_date", field="expiration_date")
    if campaign.validity_timeframe is not None and campaign.start_date is None:
        raise InvalidInput(
            "a validity_timeframe repeats from start_date, which is missing", field="start_date"
        )


def new_campaign(caller: Caller, body: CampaignCreate, now: datetime) -> Campaign:
    """A new campaign checked against every campaign rule, not yet stored.

    The use case that creates one is ``vouchers.mint.create_campaign``: a campaign may be
    created with its first vouchers (``vouchers_count``), both or neither, and minting belongs
    to the feature above this one.
    """
    caller.require("manage")
    campaign = Campaign(
        id=new_id("camp"),
        tenant_id=caller.tenant_id,
        name=body.name,
        type=body.type,
        mode=body.mode,
        active=True,
        currency=body.currency,
        discount=body.discount.model_dump(mode="json", exclude_none=True)
        if body.discount
        else None,
        code_config=body.code_config.stored() if body.code_config else None,
        timezone="UTC",
        issued_value=0,
        created_at=now,
        updated_at=now,
    )
    present = body.model_fields_set
    if "timezone" in present and body.timezone is None:
        present = present - {"timezone"}
    if "active" in present and body.active is None:
        present = present - {"active"}
    _apply(campaign, body, present)
    _check_rules(campaign)
    return campaign


def add_campaign(session: Session, campaign: Campaign) -> None:
    """Store a :func:`new_campaign` inside the caller's transaction (flush only)."""
    session.add(campaign)
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(
            f"a campaign named {campaign.name!r} exists",
            field="name",
            code=ErrorCode.DUPLICATE_NAME,
        ) from exc


def get_campaign(db: Database, caller: Caller, ref: str) -> Campaign:
    with db.unit_of_work(write=False) as session:
        return find_campaign(session, caller.tenant_id, ref)


def update_campaign(db: Database, caller: Caller, ref: str, body: CampaignUpdate) -> Campaign:
    caller.require("manage")
    present = set(body.model_fields_set)
    for required in ("name", "timezone", "active"):
        if required in present and getattr(body, required) is None:
            raise InvalidInput("must not be null", field=required)
    with db.unit_of_work() as session:
        campaign = find_campaign(session, caller.tenant_id, ref, lock=True)
        if "name" in present:
            campaign.name = body.name.strip() if body.name else campaign.name
        budget_was_off = campaign.budget is None
        _apply(campaign, body, present)
        _check_rules(campaign)
        if campaign.budget is not None and budget_was_off:
            # issued_value is only kept while a budget exists; catch it up now.
            campaign.issued_value = _issued_value(session, campaign.id)
        # Checked here for a new or a lowered budget alike, before the CHECK constraint would
        # turn it into an IntegrityError (mistaken below for a duplicate name).
        if campaign.budget is not None and campaign.issued_value > campaign.budget:
            raise InvalidInput(
                f"{campaign.issued_value} has already been issued, above this budget",
                field="budget",
            )
        campaign.updated_at = db.now()
        try:
            session.flush()
        except IntegrityError as exc:
            raise Conflict(
                f"a campaign named {body.name!r} exists",
                field="name",
                code=ErrorCode.DUPLICATE_NAME,
            ) from exc
        session.commit()
        return campaign


def _issued_value(session: Session, campaign_id: str) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(Voucher.amount), 0)).where(Voucher.campaign_id == campaign_id)
    )
    return int(total or 0)


def number_campaigns(
    db: Database, caller: Caller, *, page: int, limit: int
) -> tuple[list[Campaign], int]:
    """Page ``page`` (from 1) of ``limit`` campaigns, newest first, and how many there are:
    for faces that number their pages (Voucherify) rather than follow a cursor."""
    query = select(Campaign).where(Campaign.tenant_id == caller.tenant_id)
    with db.unit_of_work(write=False) as session:
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = session.scalars(
            query.order_by(Campaign.id.desc()).offset((page - 1) * limit).limit(limit)
        )
        return list(rows), int(total)


def count_vouchers(db: Database, caller: Caller, ref: str) -> tuple[Campaign, int]:
    """A campaign and how many vouchers it has (Voucherify shows ``vouchers_count``)."""
    with db.unit_of_work(write=False) as session:
        campaign = find_campaign(session, caller.tenant_id, ref)
        count = session.scalar(select(func.count()).where(Voucher.campaign_id == campaign.id))
        return campaign, int(count or 0)


def list_campaigns(
    db: Database, caller: Caller, *, limit: int, cursor: str | None = None
) -> Page[Campaign]:
    query = select(Campaign).where(Campaign.tenant_id == caller.tenant_id)
    if cursor:
        query = query.where(Campaign.id < cursor)
    with db.unit_of_work(write=False) as session:
        rows = list(session.scalars(query.order_by(Campaign.id.desc()).limit(limit + 1)))
    return page_of(rows, limit, rows[limit - 1].id if len(rows) > limit else None)
