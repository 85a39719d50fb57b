"""Writing one batch of imported rows, inside the caller's transaction (it never commits).

A batch is a few thousand rows: each row is judged (schemas.read_row), its code looked up in
the whole deployment in one query, and the good rows written with one bulk insert per table
(PostgreSQL: ``COPY``; SQLite: ``executemany``): customers, vouchers, opening ledger entries and
the entries of what was spent before the move, publications, and one ``imported`` event for
the batch (as a bulk mint writes one ``minted`` event). A row is written whole or not at all:
nothing of a row that has a problem reaches any table.

A code already stored in the same campaign is *already present* (a re-run of the same file, or
of a file that overlaps it) and is left as it is; a code stored anywhere else in the deployment
is refused, since codes are unique across it. Two imports racing for one code: the second's
insert fails on the unique index and its whole batch rolls back, to be retried by its operation.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert, select, text
from sqlalchemy.orm import Session

from voucherd.campaigns.models import Campaign
from voucherd.customers.models import Customer
from voucherd.db.dialect import is_postgresql
from voucherd.errors import ErrorCode
from voucherd.ids import new_ids, new_public_tokens
from voucherd.imports.reader import Record
from voucherd.imports.schemas import (
    BALANCE_TYPES,
    IMPORT_CHANNEL,
    ImportedRow,
    ImportSummary,
    Problem,
    RowError,
    read_row,
)
from voucherd.publications.models import Publication, PublicationVoucher
from voucherd.vouchers.models import LedgerEntry, Voucher, VoucherEvent

IMPORT_BATCH = 5_000  # rows per transaction: a few seconds of work, well inside a lease
_STORED_ON_POSTGRESQL = text(
    "SELECT code, tenant_id, campaign_id FROM voucher WHERE code = ANY(CAST(:codes AS varchar[]))"
)


@dataclass(frozen=True)
class Target:
    campaign: Campaign
    actor: str


def import_batch(
    session: Session,
    target: Target,
    records: Sequence[Record],
    summary: ImportSummary,
    *,
    now: datetime,
    write: bool = True,
) -> None:
    """Judge ``records`` and (with ``write``) store the good ones; ``summary`` counts both."""
    rows: dict[str, ImportedRow] = {}
    for record in records:
        if record.fields is None:
            assert record.problem is not None
            summary.refuse(record.problem)
            continue
        try:
            row = read_row(record.line, record.fields, target.campaign)
        except RowError as exc:
            summary.refuse(Problem(record.line, exc.column, exc.code, exc.reason))
            continue
        rows[row.code] = row
    for code, (tenant_id, campaign_id) in _stored(session, list(rows)).items():
        row = rows.pop(code)
        if tenant_id == target.campaign.tenant_id and campaign_id == target.campaign.id:
            summary.already_present += 1
        else:
            reason = "this code is already in use in this deployment"
            summary.refuse(Problem(row.line, "code", ErrorCode.DUPLICATE_CODE, reason))
    if write and rows:
        _write(session, target, list(rows.values()), now)
        summary.imported += len(rows)


def _stored(session: Session, codes: list[str]) -> dict[str, tuple[str, str]]:
    if not codes:
        return {}
    if is_postgresql(session):  # one array parameter, not thousands of bound values
        found = session.execute(_STORED_ON_POSTGRESQL, {"codes": codes})
    else:
        found = session.execute(
            select(Voucher.code, Voucher.tenant_id, Voucher.campaign_id).where(
                Voucher.code.in_(codes)
            )
        )
    return {code: (tenant, campaign) for code, tenant, campaign in found}


def _write(session: Session, target: Target, rows: list[ImportedRow], now: datetime) -> None:
    campaign = target.campaign
    tenant_id = campaign.tenant_id
    holders = _customers(session, tenant_id, rows, now)
    ids = new_ids("v", len(rows))
    tokens = new_public_tokens(len(rows))
    publication_ids = iter(new_ids("pub", sum(1 for r in rows if r.published)))
    vouchers: list[dict[str, Any]] = []
    ledger: list[dict[str, Any]] = []
    publications: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    has_balance = campaign.type in BALANCE_TYPES
    for row, voucher_id, token in zip(rows, ids, tokens, strict=True):
        customer_id = holders.get(row.line)
        vouchers.append(
            {
                "id": voucher_id,
                "tenant_id": tenant_id,
                "campaign_id": campaign.id,
                "code": row.code,
                "public_token": token,
                "type": campaign.type,
                "state": row.state,
                "currency": campaign.currency,
                "amount": row.value,
                "balance": row.balance if has_balance else None,
                "redemption_quantity": row.redemption_quantity,
                "redeemed_quantity": row.redeemed_quantity,
                "start_date": row.start_date,
                "expiration_date": row.expiration_date,
                "customer_ref": row.holder.source_id if row.holder else None,
                "holder_name": row.holder.name if row.holder else None,
                "category": row.category,
                "additional_info": row.additional_info,
                "metadata": row.metadata,
                "created_at": now,
                "updated_at": now,
                "published_count": 1 if row.published else 0,
                "holder_id": customer_id,
            }
        )
        if has_balance and row.value:
            entry = {"tenant_id": tenant_id, "voucher_id": voucher_id, "created_at": now}
            ledger.append({**entry, "delta": row.value, "kind": "ISSUE"})
            spent = row.value - (row.balance or 0)
            if spent:  # spent on the platform it comes from, before the move
                ledger.append({**entry, "delta": -spent, "kind": "REDEMPTION"})
        if row.published:
            publication_id = next(publication_ids)
            publications.append(
                {
                    "id": publication_id,
                    "tenant_id": tenant_id,
                    "campaign_id": campaign.id,
                    "customer_id": customer_id,
                    "channel": row.channel or IMPORT_CHANNEL,
                    "actor": target.actor,
                    "created_at": row.published_at or now,
                }
            )
            links.append(
                {"publication_id": publication_id, "voucher_id": voucher_id, "tenant_id": tenant_id}
            )
    _bulk(session, Voucher, vouchers)
    _bulk(session, LedgerEntry, ledger)
    _bulk(session, Publication, publications)
    _bulk(session, PublicationVoucher, links)
    session.execute(
        insert(VoucherEvent).values(
            tenant_id=tenant_id,
            campaign_id=campaign.id,
            kind="imported",
            actor=target.actor,
            data={"count": len(rows), "first_id": ids[0], "last_id": ids[-1]},
            created_at=now,
        )
    )


def _customers(
    session: Session, tenant_id: str, rows: list[ImportedRow], now: datetime
) -> dict[int, str]:
    """Each holder's customer id, by the row's line: an existing customer with the row's
    source_id is kept as it is; an unknown one is created with the row's name, email and phone;
    a holder without a source_id is a customer of its own."""
    with_holder = [r for r in rows if r.holder is not None]
    if not with_holder:
        return {}
    wanted = list({r.holder.source_id for r in with_holder if r.holder and r.holder.source_id})
    known: dict[str, str] = {}
    if wanted:
        found = session.execute(
            select(Customer.source_id, Customer.id).where(
                Customer.tenant_id == tenant_id, Customer.source_id.in_(wanted)
            )
        )
        known = {source_id: customer_id for source_id, customer_id in found if source_id}
    created: list[dict[str, Any]] = []
    by_line: dict[int, str] = {}
    for row in with_holder:
        holder = row.holder
        assert holder is not None
        customer_id = known.get(holder.source_id) if holder.source_id else None
        if customer_id is None:
            customer_id = new_ids("cust", 1)[0]
            created.append(
                {
                    "id": customer_id,
                    "tenant_id": tenant_id,
                    "source_id": holder.source_id,
                    "name": holder.name,
                    "email": holder.email,
                    "phone": holder.phone,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            if holder.source_id:
                known[holder.source_id] = customer_id
        by_line[row.line] = customer_id
    _bulk(session, Customer, created)
    return by_line


def _bulk(session: Session, model: type[Any], rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    table = cast(Table, model.__table__)
    if not is_postgresql(session):
        session.execute(insert(table), rows)
        return
    # COPY in its text format, each row formatted here in one pass: psycopg's write_row adapts
    # every value on its own, which cost more than the database spent storing the rows.
    columns = list(rows[0])
    raw: Any = session.connection().connection.dbapi_connection
    listed = ", ".join(columns)
    lines = ["\t".join([_copy_text(row[c]) for c in columns]) for row in rows]
    data = ("\n".join(lines) + "\n").encode()
    with raw.cursor() as cursor, cursor.copy(f"COPY {table.name} ({listed}) FROM STDIN") as copy:
        copy.write(data)


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: Any) -> str:
    """A value as COPY's text format spells it (``\\N`` is NULL)."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return json.dumps(value).translate(_COPY_ESCAPES)
