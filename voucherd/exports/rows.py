"""The CSV an export writes: its columns, and how each voucher becomes one row.

RFC 4180 (the csv module: quoted where needed, CRLF line ends), UTF-8, a header row. Money and
points stay integers in minor units beside their currency, as everywhere in the API; times are
ISO 8601 in UTC; metadata is its JSON.

**CSV injection.** A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (or a
tab or carriage return) as a formula, and export files are opened in spreadsheets. Every text
cell whose content an API caller chose (the code, which may be an explicit one, the campaign
name, customer_ref, category and metadata) is neutralised by a leading ``'`` when it starts with
one of those, as OWASP recommends: spreadsheets show the text and hide the quote. Our own values
(ids, states, numbers, times) never start with them and are written as they are.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from sqlalchemy import Table

from voucherd.vouchers.models import Voucher
from voucherd.vouchers.validity import effective_state

COLUMNS = (
    "code",
    "voucher_id",
    "campaign_id",
    "campaign",
    "type",
    "state",
    "currency",
    "amount",
    "balance",
    "redemption_quantity",
    "redeemed_quantity",
    "start_date",
    "expiration_date",
    "customer_ref",
    "customer_id",
    "published_count",
    "category",
    "created_at",
    "metadata",
)

# What a row is read from: the table's columns, so a batch runs as a Core statement and comes
# back as plain rows, without the ORM's per-row work (a million ORM rows would be slow).
_V = cast(Table, Voucher.__table__).c
SELECTED = (
    _V.id,
    _V.code,
    _V.campaign_id,
    _V.type,
    _V.state,
    _V.currency,
    _V.amount,
    _V.balance,
    _V.redemption_quantity,
    _V.redeemed_quantity,
    _V.start_date,
    _V.expiration_date,
    _V.customer_ref,
    _V.holder_id,
    _V.published_count,
    _V.category,
    _V.created_at,
    _V["metadata"].label("meta"),
)

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: str | None) -> str:
    if not text:
        return ""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


class _Moments(dict[datetime | None, str]):
    """ISO 8601 UTC text of each time, formatted once: a minted batch shares its timestamps."""

    def __missing__(self, value: datetime | None) -> str:
        text = "" if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")
        self[value] = text
        return text


def _metadata(value: dict[str, Any] | None) -> str:
    if value is None:
        return ""
    return neutralise(orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode())


def encode(rows: Sequence[Any], *, campaign_name: str, as_of: datetime, header: bool) -> bytes:
    """The CSV text of ``rows`` (read with :data:`SELECTED`), with the header row if asked.

    Written for a million rows: one tuple per row, few per-cell function calls (about 6 µs a
    row here, a quarter of the straightforward version).
    """
    out = io.StringIO()
    writer = csv.writer(out)
    if header:
        writer.writerow(COLUMNS)
    campaign = neutralise(campaign_name)
    moment = _Moments()
    formula = _FORMULA_STARTS
    writer.writerows(
        (
            "'" + code if code.startswith(formula) else code,
            voucher_id,
            campaign_id,
            campaign,
            type_,
            effective_state(state, expires, as_of),
            currency or "",
            "" if amount is None else amount,
            "" if balance is None else balance,
            "" if quantity is None else quantity,
            redeemed,
            moment[starts],
            moment[expires],
            neutralise(customer_ref) if customer_ref else "",
            holder_id or "",
            published,
            neutralise(category) if category else "",
            moment[created],
            "" if meta is None else _metadata(meta),
        )
        for (
            voucher_id,
            code,
            campaign_id,
            type_,
            state,
            currency,
            amount,
            balance,
            quantity,
            redeemed,
            starts,
            expires,
            customer_ref,
            holder_id,
            published,
            category,
            created,
            meta,
        ) in rows
    )
    return out.getvalue().encode()
