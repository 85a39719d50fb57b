"""Reading a voucher by its page token: the one use case of the public voucher page.

The token is the only secret guarding the page, so this read is not scoped by tenant: whoever
holds the link sees that voucher and nothing else. A token of the wrong shape never reaches
the database, and an unknown one is answered exactly like it (see routes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from voucherd.auth.caller import Caller
from voucherd.campaigns.models import Campaign
from voucherd.db.engine import Database
from voucherd.errors import NotFound
from voucherd.guard import service as guard
from voucherd.vouchers.models import Voucher

# voucherd.ids.new_public_tokens makes 20 URL-safe base64 characters; the column holds 32.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,32}")


@dataclass(frozen=True)
class VoucherPageFacts:
    """What the holder's page shows: the voucher, and the campaign's words and conventions."""

    code: str
    type: str
    state: str  # as stored; EXPIRED is derived when the page is drawn
    currency: str | None
    amount: int | None
    balance: int | None
    start_date: datetime | None
    expiration_date: datetime | None
    holder_name: str | None
    holder_address: str | None
    holder_postcode: str | None
    campaign_name: str
    campaign_active: bool
    discount: dict[str, Any] | None
    help_text: str | None
    store_finder_url: str | None
    locale: str
    timezone: str


_COLUMNS = (
    Voucher.code,
    Voucher.type,
    Voucher.state,
    Voucher.currency,
    Voucher.amount,
    Voucher.balance,
    Voucher.start_date,
    Voucher.expiration_date,
    Voucher.holder_name,
    Voucher.holder_address,
    Voucher.holder_postcode,
    Campaign.name,
    Campaign.active,
    Campaign.discount,
    Campaign.help_text,
    Campaign.store_finder_url,
    Campaign.locale,
    Campaign.timezone,
)


def is_token_shaped(token: str) -> bool:
    return _TOKEN.fullmatch(token) is not None


def read_voucher_page(db: Database, token: str) -> VoucherPageFacts:
    """The voucher behind a page link, with its campaign, in one query.

    Raises NotFound alike for a token of the wrong shape and for an unknown one.
    """
    # Rate limited per client address; a token of the wrong shape is refused before the
    # guard or the database is asked and not counted, like a code's typo (voucherd/guard).
    guard.admit_page_visitor()
    if not is_token_shaped(token):
        raise NotFound("no such voucher page")
    guard.before_lookup()
    query = (
        select(*_COLUMNS)
        .join(Campaign, Campaign.id == Voucher.campaign_id)
        .where(Voucher.public_token == token)
    )
    with db.unit_of_work(write=False) as session:
        row = session.execute(query).first()
    if row is None:
        guard.failed_lookup()
        raise NotFound("no such voucher page")
    return VoucherPageFacts(*row)


def preview_voucher_page(db: Database, caller: Caller, voucher_id: str) -> VoucherPageFacts:
    """What the holder's page shows, for an operator of the voucher's tenant (the console's
    preview). Scoped by tenant, so it asks no token and counts nothing against the guard: the
    operator is signed in and already looking at this voucher."""
    query = (
        select(*_COLUMNS)
        .join(Campaign, Campaign.id == Voucher.campaign_id)
        .where(Voucher.tenant_id == caller.tenant_id, Voucher.id == voucher_id)
    )
    with db.unit_of_work(write=False) as session:
        row = session.execute(query).first()
    if row is None:
        raise NotFound("no such voucher", field="voucher")
    return VoucherPageFacts(*row)
