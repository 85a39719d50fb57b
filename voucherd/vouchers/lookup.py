"""A voucher by id or by code, within the tenant: how every face and use case finds one.

One of the guard's choke points (voucherd/guard): the typed text becomes what to look up first
(codes/typed.py): a typo of a default code is refused as mistyped before the guard or the
database is asked, and not counted; a caller refused for guessing is refused here; a miss is
counted against the caller's key and address, once per code asked of the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    Select,
    Table,
    bindparam,
    inspect,
    or_,
    select,
)
from sqlalchemy.orm import Session

from voucherd.campaigns.models import Campaign
from voucherd.codes.typed import code_query
from voucherd.db import driver
from voucherd.guard import service as guard
from voucherd.vouchers.models import Voucher
from voucherd.vouchers.schemas import VoucherRecord

VOUCHER_ID_PREFIX = "v_"  # new_id("v")'s: every voucher's id starts so


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
        typed = query.exact
        by_id = may_be_voucher_id(typed)
        conditions.append(voucher_named(typed) if by_id else Voucher.code == typed)
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


# --- the redemption path's lookup: one prebuilt Core row, not two ORM entities ---------------
#
# Redeeming and validating read a voucher and its campaign on every request. Loading them as two
# ORM entities through a statement built per call cost a third of a redemption's CPU; the same
# columns as one row of a statement built once, with bind parameters, cost a fraction of it. The
# entities are made from the row only where a caller needs them (a face showing the whole
# voucher), by :func:`voucher_of` and :func:`campaign_of`.

_VOUCHER_ATTRS = tuple((p.key, p.columns[0]) for p in inspect(Voucher).column_attrs)
_CAMPAIGN_ATTRS = tuple((p.key, p.columns[0]) for p in inspect(Campaign).column_attrs)
# The campaign's columns are labelled with this prefix in the row (both tables have ``id``...).
CAMPAIGN_PREFIX = "c__"
_V = cast(Table, Voucher.__table__).c
_C = cast(Table, Campaign.__table__).c


# What judging a redemption and the native answer read (redemptions/rules.py): a narrow row is
# a quarter of the columns, and describing and converting columns is most of a lookup's CPU.
JUDGED_VOUCHER = (
    "id", "code", "campaign_id", "type", "state", "currency", "balance",
    "redemption_quantity", "redeemed_quantity", "start_date", "expiration_date",
)  # fmt: skip
JUDGED_CAMPAIGN = (
    "name", "code_config", "active", "timezone", "validity_timeframe",
    "validity_day_of_week", "validity_hours", "discount",
)  # fmt: skip


class Width(StrEnum):
    """How much of the voucher and its campaign a :func:`find_voucher_row` row carries."""

    # Every column of both: :func:`voucher_of` and :func:`campaign_of` can make the entities.
    WHOLE = "whole"
    # Every column of the voucher, the campaign's judged ones: enough to judge the voucher and
    # to show it (``present_voucher`` reads the row as it reads the entity), no campaign entity.
    SHOWN = "shown"
    # Only what judging a redemption and the native answer read (``JUDGED_*``).
    JUDGED = "judged"


def _target_query(condition: ColumnElement[bool], width: Width) -> Select[Any]:
    voucher = (
        _VOUCHER_ATTRS
        if width is not Width.JUDGED
        else [a for a in _VOUCHER_ATTRS if a[0] in JUDGED_VOUCHER]
    )
    campaign = (
        _CAMPAIGN_ATTRS
        if width is Width.WHOLE
        else [a for a in _CAMPAIGN_ATTRS if a[0] in JUDGED_CAMPAIGN]
    )
    return (
        select(
            *(column.label(key) for key, column in voucher),
            *(column.label(CAMPAIGN_PREFIX + key) for key, column in campaign),
        )
        .join_from(Voucher.__table__, Campaign.__table__, _C.id == _V.campaign_id)
        .where(_V.tenant_id == bindparam("tenant_id"), condition)
    )


_EXACT = or_(_V.id == bindparam("exact"), _V.code == bindparam("exact"))
_EXACT_CODE = _V.code == bindparam("exact")
_DRAWN = _V.code == bindparam("drawn")


def _statements(exact: ColumnElement[bool]) -> dict[Width, tuple[Select[Any], ...]]:
    """One statement per shape of CodeQuery and width of row, built once (compiled once per
    dialect): (exact only, drawn only, either) for each width."""
    return {
        width: (
            _target_query(exact, width),
            _target_query(_DRAWN, width),
            _target_query(or_(exact, _DRAWN), width),
        )
        for width in Width
    }


# For a reference that may be a voucher's id, and for one that can only be a code.
_BY = _statements(_EXACT)
_BY_CODE = _statements(_EXACT_CODE)


def may_be_voucher_id(ref: str) -> bool:
    """Whether ``ref`` could be a voucher's id: every one is ``new_id("v")``'s, starting
    ``v_``. Any other reference is looked up by code alone: one probe of the code's unique
    index where "id or code" made PostgreSQL combine two (a BitmapOr) on every validation and
    redemption."""
    return ref.startswith(VOUCHER_ID_PREFIX)


def find_voucher_row(
    session: Session | Connection,
    tenant_id: str,
    ref: str,
    *,
    field: str = "voucher",
    width: Width = Width.WHOLE,
) -> Any:
    """:func:`find_voucher`'s answer as one row: the voucher's attributes by their names, its
    campaign's prefixed with :data:`CAMPAIGN_PREFIX`. Same matching, same guard, same errors.

    ``width``: how many columns (:class:`Width`); the fewer, the less CPU the lookup costs.
    ``session`` may be a plain connection (a validation's read without a transaction, a
    redemption's autocommit): on PostgreSQL the statement then runs on psycopg's cursor
    (``db/driver.py``), its row a named tuple of the same names and values."""
    lookup = RowLookup(tenant_id, ref, field=field, width=width)
    # The hottest read there is (every validation and redemption): on a plain connection on
    # PostgreSQL, straight on psycopg's cursor.
    return lookup.pick(driver.rows(session, lookup.statement, lookup.params))


class RowLookup:
    """:func:`find_voucher_row` apart from its round trip, for a caller that runs the statement
    its own way (the express lane, ``db/express.py``, on the event loop): the statement and its
    parameters, then :meth:`pick` on the rows it returned. Made only just before the statement
    runs: the guard refuses a caller slowed down for guessing here, before the database is
    asked."""

    __slots__ = ("field", "params", "query", "single_code", "statement", "width")

    def __init__(self, tenant_id: str, ref: str, *, field: str, width: Width) -> None:
        query = code_query(ref, field=field)
        guard.before_lookup()
        exact, drawn = query.exact, query.drawn
        by = _BY if exact is not None and may_be_voucher_id(exact) else _BY_CODE
        by_exact, by_drawn, by_either = by[width]
        if drawn is None:
            self.statement = by_exact
        elif exact is None:
            self.statement = by_drawn
        else:
            self.statement = by_either
        self.params = {"tenant_id": tenant_id, "exact": exact, "drawn": drawn}
        self.query = query
        self.field = field
        self.width = width
        # The one code the lookup matches, exactly as typed, when that is all it asks: not
        # possibly an id, no loose form (what a statement folding the lookup in can match).
        self.single_code = exact if drawn is None and by is _BY_CODE else None

    def pick(self, rows: Sequence[Any]) -> Any:
        """The row the reference names; NotFound (and the misses counted by the guard) if
        none."""
        exact, drawn = self.query.exact, self.query.drawn
        for row in rows:  # the text as typed wins, as in find_voucher
            if exact is not None and exact in (row.id, row.code):
                return row
        for row in rows:
            if row.code == drawn and not row.c__code_config:
                return row
        for _ in self.query.candidates:
            guard.failed_lookup()
        raise self.query.miss(self.field)


def shown_record(row: Row[Any]) -> VoucherRecord:
    """A :class:`VoucherRecord` to present (``present_voucher``) straight from a row of width
    :attr:`Width.SHOWN` or :attr:`Width.WHOLE`, with no entity made: the row carries every
    attribute of the voucher under the entity's own names, which is all ``present_voucher``
    reads. Only for showing; a caller needing the entity itself uses :func:`voucher_of`."""
    return VoucherRecord(cast(Voucher, row), row.c__name)


def voucher_of(row: Row[Any], **changed: Any) -> Voucher:
    """The voucher of a :func:`find_voucher_row` row as a detached entity, with ``changed``
    attributes as a statement left them (never added to a session: it is only shown)."""
    values = {key: row[index] for index, (key, _) in enumerate(_VOUCHER_ATTRS)}
    values.update(changed)
    return Voucher(**values)


def campaign_of(row: Row[Any]) -> Campaign:
    """The campaign of a :func:`find_voucher_row` row as a detached entity (only shown)."""
    start = len(_VOUCHER_ATTRS)
    return Campaign(**{key: row[start + i] for i, (key, _) in enumerate(_CAMPAIGN_ATTRS)})
