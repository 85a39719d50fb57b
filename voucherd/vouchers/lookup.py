"""A voucher by id or by code, within the tenant: how every face and use case finds one.

One of the guard's choke points (voucherd/guard): a typo of a default code is refused before
the database is asked and not counted; a caller refused for guessing is refused here; a miss is
counted against the caller's key and address.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from voucherd.campaigns.models import Campaign
from voucherd.codes.generator import is_mistyped
from voucherd.errors import NotFound
from voucherd.guard import service as guard
from voucherd.vouchers.models import Voucher
from voucherd.vouchers.schemas import VoucherRecord


def voucher_named(ref: str) -> ColumnElement[bool]:
    """The condition "this voucher is ``ref``", for filters that must not count as a lookup
    (no guard: a filter naming nothing matches nothing)."""
    return or_(Voucher.id == ref, Voucher.code == ref)


def find_voucher(
    session: Session, tenant_id: str, ref: str, *, field: str = "voucher"
) -> VoucherRecord:
    """The voucher with its campaign; another tenant's voucher is not found (NotFound naming
    ``field``)."""
    if is_mistyped(ref):
        raise NotFound("no such voucher", field=field)
    guard.before_lookup()
    row = session.execute(
        select(Voucher, Campaign)
        .join(Campaign, Campaign.id == Voucher.campaign_id)
        .where(Voucher.tenant_id == tenant_id, voucher_named(ref))
    ).first()
    if row is None:
        guard.failed_lookup()
        raise NotFound("no such voucher", field=field)
    return VoucherRecord(row[0], row[1].name, campaign=row[1])
