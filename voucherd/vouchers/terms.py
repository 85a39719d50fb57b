"""What an issuing request may issue: the campaign it names, the value, the dates and the code
shape its vouchers get, and the limits and code space they spend.

Shared by every path that makes vouchers (issue one, mint many, a background mint, a client
order), so each checks the same rules before it writes anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Table, and_, bindparam, func, inspect, null, or_, select, text
from sqlalchemy.orm import Session, class_mapper

from voucherd.auth.models import Tenant
from voucherd.campaigns.models import Campaign
from voucherd.campaigns.validity import localise
from voucherd.codes.generator import CodeSpec, capacity, spec_from_config
from voucherd.db import driver
from voucherd.db.dialect import is_postgresql
from voucherd.db.engine import Database
from voucherd.errors import Conflict, ErrorCode, InvalidInput, LimitReached, NotFound
from voucherd.money import MAX_MINOR_UNITS, to_minor
from voucherd.vouchers.limits import spend_campaign_budget, spend_weekly_value
from voucherd.vouchers.models import Voucher
from voucherd.vouchers.schemas import IssueVoucher, VoucherOverrides
from voucherd.vouchers.validity import expiry_at_issue

BALANCE_TYPES = ("GIFT", "CASH", "LOYALTY")
MONEY_TYPES = ("GIFT", "CASH")  # what counts towards budgets and the weekly value limit
# How often a colliding code is redrawn before the code space counts as full.
REDRAWS = 12
# Above this many codes of headroom, counting a campaign's codes before each issue is skipped.
_COUNT_CAPACITY_BELOW = 2**40


@dataclass(frozen=True)
class IssueTerms:
    """Everything shared by the vouchers made in one issuing request."""

    campaign: Campaign
    value: int | None
    start_date: datetime | None
    expiration_date: datetime | None
    category: str | None
    additional_info: str | None
    metadata: dict[str, Any] | None
    redemption_quantity: int | None
    spec: CodeSpec  # how this request's codes are drawn


def campaign_for_issue(session: Session, tenant_id: str, ref: str) -> tuple[Campaign, int | None]:
    """The campaign and its tenant's weekly value limit, in one read."""
    campaign, limit, _ = campaign_and_tenant(session, tenant_id, ref, with_settings=False)
    return campaign, limit


# The campaign an issuing request names, with its tenant's weekly limit (and, for a delivery,
# the tenant's settings), as statements built once with bind parameters: building the ORM query
# and loading the entity per request cost more CPU than the rest of an issue.
_CAMPAIGN_TABLE = cast(Table, Campaign.__table__)
_CAMPAIGN_ATTRIBUTES = tuple((prop.key, prop.columns[0]) for prop in inspect(Campaign).column_attrs)
_CAMPAIGN_MATCH = and_(
    _CAMPAIGN_TABLE.c.tenant_id == bindparam("tenant_id"),
    or_(_CAMPAIGN_TABLE.c.id == bindparam("ref"), _CAMPAIGN_TABLE.c.name == bindparam("ref")),
)
_CAMPAIGN_COLUMNS = [column for _, column in _CAMPAIGN_ATTRIBUTES]
_TENANT_TABLE = cast(Table, Tenant.__table__)
_CAMPAIGN_AND_LIMIT = (
    select(*_CAMPAIGN_COLUMNS, _TENANT_TABLE.c.weekly_value_limit, null())
    .join_from(_CAMPAIGN_TABLE, _TENANT_TABLE, _TENANT_TABLE.c.id == _CAMPAIGN_TABLE.c.tenant_id)
    .where(_CAMPAIGN_MATCH)
)
_CAMPAIGN_LIMIT_AND_SETTINGS = (
    select(*_CAMPAIGN_COLUMNS, _TENANT_TABLE.c.weekly_value_limit, _TENANT_TABLE.c.settings)
    .join_from(_CAMPAIGN_TABLE, _TENANT_TABLE, _TENANT_TABLE.c.id == _CAMPAIGN_TABLE.c.tenant_id)
    .where(_CAMPAIGN_MATCH)
)
_CAMPAIGN_KEYS = tuple(key for key, _ in _CAMPAIGN_ATTRIBUTES)
_Entity = TypeVar("_Entity")


def detached(cls: type[_Entity], values: Mapping[str, Any]) -> _Entity:
    """An instance of the mapped ``cls`` holding ``values`` (attribute names), outside any
    session, its attributes set as a load sets them: without the change events a constructor
    fires for each. For what a use case wrote with Core statements and hands back to be read
    (the issued voucher, the campaign it was issued from); never added to a session.

    ``class_mapper`` configures the mappers first if nothing has yet (a fresh process whose
    first use of an entity is this one): an attribute of an instance made before that has no
    implementation to read it through."""
    instance: _Entity = class_mapper(cls).class_manager.new_instance()
    instance.__dict__.update(values)
    return instance


def campaign_and_tenant(
    session: Session | Connection, tenant_id: str, ref: str, *, with_settings: bool
) -> tuple[Campaign, int | None, dict[str, Any] | None]:
    """The campaign, the tenant's weekly limit and (for deliveries) its settings, in one read.

    ``session`` may be a connection (``Database.single_write``'s: the read is one statement),
    on PostgreSQL read on psycopg's cursor (``db/driver.py``)."""
    statement = campaign_query(with_settings=with_settings)
    rows = driver.rows(session, statement, {"tenant_id": tenant_id, "ref": ref})
    return campaign_of_rows(rows, ref)


def campaign_query(*, with_settings: bool) -> Any:
    """:func:`campaign_and_tenant`'s statement (parameters ``tenant_id`` and ``ref``), for a
    caller that runs it its own way (the express lane); :func:`campaign_of_rows` reads its
    rows."""
    return _CAMPAIGN_LIMIT_AND_SETTINGS if with_settings else _CAMPAIGN_AND_LIMIT


def campaign_of_rows(
    rows: Sequence[Any], ref: str
) -> tuple[Campaign, int | None, dict[str, Any] | None]:
    if not rows:
        raise NotFound(f"no campaign with id or name {ref!r}", field="campaign")
    # An id match wins over a campaign that happens to be named like another's id.
    row = next((r for r in rows if r[0] == ref), rows[0])
    width = len(_CAMPAIGN_ATTRIBUTES)
    campaign = detached(Campaign, dict(zip(_CAMPAIGN_KEYS, row, strict=False)))
    return campaign, row[width], row[width + 1]


def requested_value(body: IssueVoucher, campaign: Campaign) -> int | None:
    """The value asked for, in minor units. ``major_value`` (i-movo's 20.00) is converted here,
    where the campaign's currency is known, so faces need no read of their own to convert."""
    if body.major_value is None:
        return body.value
    if body.value is not None:
        raise InvalidInput("give value or major_value, not both", field="major_value")
    if campaign.currency is None or campaign.type not in MONEY_TYPES:
        raise InvalidInput(
            f"a {campaign.type} voucher's value is not an amount of money", field="major_value"
        )
    try:
        minor = to_minor(body.major_value, campaign.currency)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="major_value") from exc
    if not 0 < minor <= MAX_MINOR_UNITS:
        raise InvalidInput("must be a positive amount", field="major_value")
    return minor


def issue_terms(
    campaign: Campaign, value: int | None, overrides: VoucherOverrides, now: datetime
) -> IssueTerms:
    """The terms of vouchers issued now from ``campaign``, or the first rule they break."""
    if not campaign.active:
        raise Conflict(
            "the campaign is not active", field="campaign", code=ErrorCode.CAMPAIGN_INACTIVE
        )
    if campaign.type == "DISCOUNT":
        if value is not None:
            raise InvalidInput(
                "a DISCOUNT voucher's value is its campaign's discount", field="value"
            )
    else:
        value = value if value is not None else campaign.default_value
        if value is None or (value == 0 and campaign.type != "LOYALTY"):
            raise InvalidInput(
                f"a {campaign.type} voucher needs a value and its campaign has no default_value",
                field="value",
            )
        if campaign.max_value is not None and value > campaign.max_value:
            raise InvalidInput(
                f"{value} is above this campaign's maximum value of {campaign.max_value}",
                field="value",
                code=ErrorCode.VALUE_ABOVE_MAXIMUM,
            )
    start = localise(overrides.start_date, campaign.timezone) or campaign.start_date
    expiry = localise(overrides.expiration_date, campaign.timezone) or expiry_at_issue(
        issued_at=now,
        expiration_date=campaign.expiration_date,
        lifetime_days=campaign.lifetime_days,
        timezone=campaign.timezone,
    )
    if start is not None and expiry is not None and start >= expiry:
        raise InvalidInput("expiration_date must be after start_date", field="expiration_date")
    if expiry is not None and expiry <= now:
        raise InvalidInput(
            "the voucher would already be expired",
            field="expiration_date",
            code=ErrorCode.CAMPAIGN_EXPIRED,
        )
    quantity = overrides.redemption_quantity or campaign.redemption_quantity
    if campaign.type == "CASH" and quantity != 1:
        raise InvalidInput("a CASH voucher is paid out once", field="redemption_quantity")
    code_config = overrides.code_config.stored() if overrides.code_config else campaign.code_config
    return IssueTerms(
        campaign=campaign,
        value=value,
        start_date=start,
        expiration_date=expiry,
        category=overrides.category or campaign.category,
        additional_info=overrides.additional_info,
        metadata=overrides.metadata,
        redemption_quantity=quantity,
        spec=spec_from_config(code_config),
    )


def spends_limits(terms: IssueTerms, weekly_limit: int | None) -> bool:
    """Whether :func:`spend_limits` writes anything for these terms: a money voucher with a
    value, from a campaign with a budget or a tenant with a weekly value limit (as read with the
    campaign). Without one, issuing spends no limit and needs no transaction for it."""
    campaign = terms.campaign
    return (
        campaign.type in MONEY_TYPES
        and bool(terms.value)
        and (campaign.budget is not None or weekly_limit is not None)
    )


def spend_limits(
    session: Session, terms: IssueTerms, count: int, weekly_limit: int | None, now: datetime
) -> None:
    """Spend the campaign's budget and the tenant's weekly value on ``count`` vouchers."""
    campaign = terms.campaign
    if terms.value and spends_limits(terms, weekly_limit):
        total = terms.value * count
        spend_campaign_budget(session, campaign, total)
        spend_weekly_value(session, campaign.tenant_id, total, now, limit_seen=weekly_limit)


def _take_turns_in_small_space(session: Session | Connection, spec: CodeSpec) -> None:
    """In a small code space, drawers of the same code shape take turns (PostgreSQL).

    Two transactions whose fresh codes overlap would each wait in ``INSERT ... ON CONFLICT``
    for the other's uncommitted row — a deadlock PostgreSQL breaks by aborting one — and
    concurrent capacity counts would each miss the other's codes. A transaction-scoped
    advisory lock on the shape makes them queue instead. Large spaces (the default 60-bit
    codes) never get here: collisions there are too rare to be worth a lock.
    """
    if not is_postgresql(session):
        return  # SQLite's writer lock already serialises every writer
    shape = repr((spec.charset, spec.random_length, spec.prefix, spec.postfix, spec.pattern))
    key = int.from_bytes(hashlib.sha256(shape.encode()).digest()[:8], "big", signed=True)
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def counts_capacity(db: Database, spec: CodeSpec) -> bool:
    """Whether :func:`check_capacity` counts codes for ``spec``: only in a small code space,
    where the count and the insert must share a transaction (and its advisory lock)."""
    return capacity(spec, db.settings.max_code_space_fill) < _COUNT_CAPACITY_BELOW


def check_capacity(
    session: Session | Connection, db: Database, campaign: Campaign, spec: CodeSpec, count: int
) -> None:
    """Refuse ``count`` more codes of ``spec`` when they would fill the code space past the
    deployment's ``max_code_space_fill``, so codes stay unguessable.

    A no-op where not :func:`counts_capacity`; where it is, ``session`` must be a unit of work's
    (the advisory lock and the count hold to its commit)."""
    if not counts_capacity(db, spec):
        return
    room = capacity(spec, db.settings.max_code_space_fill)
    _take_turns_in_small_space(session, spec)
    existing = session.scalar(select(func.count()).where(Voucher.campaign_id == campaign.id)) or 0
    if existing + count > room:
        raise LimitReached(
            f"the campaign's code_config allows {room} codes ({db.settings.max_code_space_fill:.0%} of "
            f"its {spec.space_size} possible codes, so codes stay unguessable); "
            f"{existing} exist, {max(room - existing, 0)} remain",
            field="count" if count > 1 else "campaign",
            code=ErrorCode.CODE_SPACE_EXHAUSTED,
        )


def voucher_row(terms: IssueTerms, *, now: datetime) -> dict[str, Any]:
    """The columns every voucher made under ``terms`` shares."""
    c = terms.campaign
    has_balance = c.type in BALANCE_TYPES
    return {
        "tenant_id": c.tenant_id,
        "campaign_id": c.id,
        "type": c.type,
        "state": "ACTIVE",
        "currency": c.currency,
        "amount": terms.value,
        "balance": terms.value if has_balance else None,
        "redemption_quantity": terms.redemption_quantity,
        "redeemed_quantity": 0,
        "start_date": terms.start_date,
        "expiration_date": terms.expiration_date,
        "category": terms.category,
        "additional_info": terms.additional_info,
        "metadata_": terms.metadata,
        "created_at": now,
        "updated_at": now,
    }
