"""A campaign by id or by name: every face addresses campaigns both ways (DESIGN.md, Paths).

The one place that spells the rule, so Yoyo's ``campaignId``, i-movo's ``campaignCode``,
Voucherify's ``{campaignId}``, Vista's ``productCode`` and the native API cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, or_, select
from sqlalchemy.orm import Session

from voucherd.campaigns.models import Campaign
from voucherd.errors import NotFound


def campaign_named(ref: str) -> ColumnElement[bool]:
    """The condition "this campaign is ``ref``", for queries that filter rather than look up
    (a list filtered by a campaign that does not exist is empty, not an error)."""
    return or_(Campaign.id == ref, Campaign.name == ref)


def find_campaign(
    session: Session, tenant_id: str, ref: str, *, field: str = "campaign", lock: bool = False
) -> Campaign:
    query = select(Campaign).where(Campaign.tenant_id == tenant_id, campaign_named(ref))
    if lock:
        query = query.with_for_update()
    found: Campaign = find_campaign_row(session, query, ref, field=field)
    return found


def find_campaign_row(
    session: Session, query: Select[Any], ref: str, *, field: str = "campaign"
) -> Any:
    """The first row of ``query`` (whose first column is the Campaign, already narrowed to the
    tenant and :func:`campaign_named`): for use cases that read more beside the campaign in the
    same round trip (the issue path reads the tenant's limits with it)."""
    rows: Sequence[Row[Any]] = session.execute(query).all()
    if not rows:
        raise NotFound(f"no campaign with id or name {ref!r}", field=field)
    # An id match wins over a campaign that happens to be named like another's id.
    row = next((r for r in rows if r[0].id == ref), rows[0])
    return row[0] if len(row) == 1 else row
