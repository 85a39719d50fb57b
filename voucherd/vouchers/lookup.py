"""A voucher by id or by code, within the tenant: how every face and use case finds one.

One of the guard's choke points (voucherd/guard): the typed text becomes what to look up first
(codes/typed.py): a typo of a default code is refused as mistyped before the guard or the
database is asked, and not counted; a caller refused for guessing is refused here; a miss is
counted against the caller's key and address, once per code asked of the database.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from voucherd.campaigns.models import Campaign
from voucherd.codes.typed import code_query
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
    ``field``; CodeMistyped when the typed code fails voucherd's check character)."""
    query = code_query(ref, field=field)
    guard.before_lookup()
    conditions = []
    if query.exact is not None:
        conditions.append(voucher_named(query.exact))
    if query.drawn is not None:
        conditions.append(Voucher.code == query.drawn)
    rows = session.execute(
        select(Voucher, Campaign)
        .join(Campaign, Campaign.id == Voucher.campaign_id)
        .where(Voucher.tenant_id == tenant_id, or_(*conditions))
    ).all()
    # The text as typed wins; its canonical form finds only a code voucherd drew, so a
    # code_config code is matched exactly (its lower case is not it).
    exact = [r for r in rows if query.exact in (r[0].id, r[0].code)]
    drawn = [r for r in rows if r[0].code == query.drawn and not r[1].code_config]
    found = exact or drawn
    if not found:
        for _ in query.candidates:
            guard.failed_lookup()
        raise query.miss(field)
    voucher, campaign = found[0]
    return VoucherRecord(voucher, campaign.name, campaign=campaign)
