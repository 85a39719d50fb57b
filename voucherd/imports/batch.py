"""Writing one batch of imported rows, inside the caller's transaction (it never commits).

A batch is a few thousand rows: each row is judged (schemas.read_row), its code checked against
the whole deployment, and the good rows written with one bulk insert per table
(PostgreSQL: ``COPY``; SQLite: ``executemany``): customers, vouchers, opening ledger entries and
the entries of what was spent before the move, publications, and one ``imported`` event for
the batch (as a bulk mint writes one ``minted`` event). A row is written whole or not at all:
nothing of a row that has a problem reaches any table. Each holder's count of the campaign's
vouchers (``campaign_holder``, and ``campaign_customer`` under a ``per_customer_limit``) grows by
what the batch gave it, one upsert each, so ``join_once`` and the limit see imported holders.

A code already stored in the same campaign is *already present* (a re-run of the same file, or
of a file that overlaps it) and is left as it is; a code stored anywhere else in the deployment
is refused, since codes are unique across it. On PostgreSQL a batch first goes straight in
under a savepoint, the unique index judging its codes (as the mint's batches do); only a batch
that meets a stored code rolls back to it and looks its codes up, in one query, to tell the
present from the refused and write the rest. Two imports racing for one code: the second's
insert fails on the unique index and its whole batch rolls back, to be retried by its operation.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

import psycopg
from sqlalchemy import Table, insert, select, text
from sqlalchemy.orm import Session

from voucherd.campaigns.models import Campaign, CampaignCustomer
from voucherd.customers.models import Customer
from voucherd.db.dialect import is_postgresql, upsert
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
    RowTerms,
    read_row,
)
from voucherd.publications.models import CampaignHolder, Publication, PublicationVoucher
from voucherd.vouchers.mint import copy_in, copy_text, spare_savepoint
from voucherd.vouchers.models import LedgerEntry, Voucher, VoucherEvent

T = TypeVar("T")

IMPORT_BATCH = 5_000  # rows per transaction: a few seconds of work, well inside a lease
_STORED_ON_POSTGRESQL = text(
    "SELECT code, tenant_id, campaign_id FROM voucher WHERE code = ANY(CAST(:codes AS varchar[]))"
)


@contextmanager
def cycles_uncollected() -> Iterator[None]:
    """Pause Python's cycle collector while one batch is read, judged or written.

    A batch builds tens of thousands of short-lived records, rows and lines, none of them in
    a reference cycle (reference counting frees them), yet every 700 of them set the collector
    scanning what survives, and the survivors of a batch in hand set off full collections over
    every object of the process: a third of judging a row went to that. Paused for one batch
    at a time (a fraction of a second), so the rest of the process loses nothing.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


_END = object()


def prepared_ahead(items: Iterator[T]) -> Iterator[T]:
    """``items`` in order, each computed in a thread while the caller works on the one before.

    For a file streamed into the database: reading and judging its next batch is Python's work
    and writing this one is the database's, so they can overlap rather than take turns. The
    thread is the only caller of ``items``; an exception it meets reaches the caller at that
    item, and a caller that stops early waits for the one item in hand, no more.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="import-read-ahead") as pool:
        future = pool.submit(_next_uncollected, items)
        while (item := future.result()) is not _END:
            future = pool.submit(_next_uncollected, items)
            yield cast(T, item)


def _next_uncollected(items: Iterator[T]) -> T | object:
    with cycles_uncollected():
        return next(items, _END)


@dataclass(frozen=True)
class Target:
    campaign: Campaign
    actor: str


@dataclass
class JudgedBatch:
    """A batch's rows read against the campaign's terms: what can be judged without the
    database, so a read-ahead thread can do it while the previous batch is being written."""

    terms: RowTerms
    rows: dict[str, ImportedRow]  # by code, in the file's order
    problems: list[Problem]  # in the file's order
    records: int  # the batch's records, good and bad


def judge_batch(records: Sequence[Record], terms: RowTerms) -> JudgedBatch:
    """Each record as a row in the campaign's terms, or the problem that refuses it."""
    rows: dict[str, ImportedRow] = {}
    problems: list[Problem] = []
    for record in records:
        if record.fields is None:
            assert record.problem is not None
            problems.append(record.problem)
            continue
        try:
            row = read_row(record.line, record.fields, terms)
        except RowError as exc:
            problems.append(Problem(record.line, exc.column, exc.code, exc.reason))
            continue
        rows[row.code] = row
    return JudgedBatch(terms, rows, problems, len(records))


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
    judged = judge_batch(records, RowTerms.of(target.campaign))
    store_batch(session, target, judged, summary, now=now, write=write)


def store_batch(
    session: Session,
    target: Target,
    judged: JudgedBatch,
    summary: ImportSummary,
    *,
    now: datetime,
    write: bool = True,
) -> None:
    """Count a judged batch's problems and (with ``write``) store its good rows, refusing those
    whose code is stored already; ``judged`` is consumed."""
    for problem in judged.problems:
        summary.refuse(problem)
    rows = judged.rows
    straight = write and rows and is_postgresql(session) and spare_savepoint(session)
    if straight and _write_straight(session, target, list(rows.values()), now):
        summary.imported += len(rows)
        return
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


def _write_straight(
    session: Session, target: Target, rows: list[ImportedRow], now: datetime
) -> bool:
    """Write the batch without looking its codes up first, under a savepoint (PostgreSQL), as
    the mint does: the unique index on ``code`` judges every code as the rows go in. False,
    having written nothing, if one of them is already stored: the caller then looks the
    batch's codes up and writes the rest. Nearly every batch of a first import goes straight
    in; a re-run meets a stored code on its first row, so its failed attempt costs little."""
    savepoint = session.begin_nested()
    try:
        _write(session, target, rows, now)
    except psycopg.errors.UniqueViolation:
        savepoint.rollback()
        return False
    savepoint.commit()
    return True


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
    if is_postgresql(session):
        ledger: list[str] = []
        pieces = _voucher_pieces(target, rows, ids, tokens, holders, now, ledger)
        copy_in(session, "voucher", _VOUCHER_COLUMNS, pieces)
        if ledger:
            copy_in(session, "ledger_entry", _LEDGER_COLUMNS, "".join(ledger).encode())
    else:
        _insert_vouchers(session, target, rows, ids, tokens, holders, now)
    publications: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    published = [
        (row, voucher_id) for row, voucher_id in zip(rows, ids, strict=True) if row.published
    ]
    publication_ids = new_ids("pub", len(published))
    for (row, voucher_id), publication_id in zip(published, publication_ids, strict=True):
        publications.append(
            {
                "id": publication_id,
                "tenant_id": tenant_id,
                "campaign_id": campaign.id,
                "customer_id": holders.get(row.line),
                "channel": row.channel or IMPORT_CHANNEL,
                "actor": target.actor,
                "created_at": row.published_at or now,
            }
        )
        links.append(
            {"publication_id": publication_id, "voucher_id": voucher_id, "tenant_id": tenant_id}
        )
    _bulk(session, Publication, publications)
    _bulk(session, PublicationVoucher, links)
    _count_holders(session, campaign, publications)
    _count_customer_refs(session, campaign, rows)
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


# The voucher columns an import writes, in the order its COPY lists them.
_VOUCHER_COLUMNS = (
    "id, code, public_token, state, amount, balance, redemption_quantity, redeemed_quantity, "
    "start_date, expiration_date, customer_ref, holder_name, category, additional_info, "
    "metadata, published_count, holder_id, tenant_id, campaign_id, type, currency, created_at, "
    "updated_at"
)
_LEDGER_COLUMNS = "tenant_id, voucher_id, delta, kind, created_at"


_COPY_PIECE = 500


def _voucher_pieces(
    target: Target,
    rows: list[ImportedRow],
    ids: list[str],
    tokens: list[str],
    holders: dict[int, str],
    now: datetime,
    ledger: list[str],
) -> Iterator[bytes]:
    """PostgreSQL: the vouchers' COPY text, :data:`_COPY_PIECE` rows at a time, each sent as
    soon as it is spelled so PostgreSQL stores one piece while Python spells the next; their
    ledger entries are appended to ``ledger`` on the way.

    The columns every row shares are spelled once; a row's own values are spelled by kind (an
    id or a token needs no escaping, a code only its backslashes, a date is spelled once per
    distinct date): a value-by-value formatter cost more than the database spent storing it.
    """
    campaign = target.campaign
    tenant_id = campaign.tenant_id
    now_text = now.isoformat()
    tail = "\t".join(
        ("", copy_text(tenant_id), copy_text(campaign.id), copy_text(campaign.type),
         copy_text(campaign.currency), now_text, now_text)
    ) + "\n"  # fmt: skip
    has_balance = campaign.type in BALANCE_TYPES
    dates: dict[datetime | None, str] = {None: NULL}
    ledger_head = f"{copy_text(tenant_id)}\t"
    ledger_tail = f"\t{now_text}\n"
    vouchers: list[str] = []
    for row, voucher_id, token in zip(rows, ids, tokens, strict=True):
        start, expiry = row.start_date, row.expiration_date
        start_text = dates.get(start) or dates.setdefault(start, copy_text(start))
        expiry_text = dates.get(expiry) or dates.setdefault(expiry, copy_text(expiry))
        code = row.code if "\\" not in row.code else row.code.replace("\\", "\\\\")
        balance = row.balance if has_balance else None
        holder = row.holder
        holder_id = holders.get(row.line) if holder is not None else None
        vouchers.append(
            f"{voucher_id}\t{code}\t{token}\t{row.state}\t{_number(row.value)}\t"
            f"{_number(balance)}\t{_number(row.redemption_quantity)}\t"
            f"{row.redeemed_quantity}\t{start_text}\t{expiry_text}\t"
            f"{copy_text(holder.source_id) if holder else NULL}\t"
            f"{copy_text(holder.name) if holder else NULL}\t"
            f"{NULL if row.category is None else copy_text(row.category)}\t"
            f"{NULL if row.additional_info is None else copy_text(row.additional_info)}\t"
            f"{NULL if row.metadata is None else copy_text(row.metadata)}\t"
            f"{1 if row.published else 0}\t{holder_id or NULL}{tail}"
        )
        if has_balance and row.value:
            ledger.append(f"{ledger_head}{voucher_id}\t{row.value}\tISSUE{ledger_tail}")
            spent = row.value - (row.balance or 0)
            if spent:  # spent on the platform it comes from, before the move
                ledger.append(f"{ledger_head}{voucher_id}\t{-spent}\tREDEMPTION{ledger_tail}")
        if len(vouchers) == _COPY_PIECE:
            yield "".join(vouchers).encode()
            vouchers.clear()
    if vouchers:
        yield "".join(vouchers).encode()


NULL = "\\N"


def _number(value: int | None) -> str:
    return NULL if value is None else str(value)


def _insert_vouchers(
    session: Session,
    target: Target,
    rows: list[ImportedRow],
    ids: list[str],
    tokens: list[str],
    holders: dict[int, str],
    now: datetime,
) -> None:
    """SQLite: the same rows as dicts, one ``executemany`` per table."""
    campaign = target.campaign
    tenant_id = campaign.tenant_id
    has_balance = campaign.type in BALANCE_TYPES
    vouchers: list[dict[str, Any]] = []
    ledger: list[dict[str, Any]] = []
    for row, voucher_id, token in zip(rows, ids, tokens, strict=True):
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
                "holder_id": holders.get(row.line),
            }
        )
        if has_balance and row.value:
            entry = {"tenant_id": tenant_id, "voucher_id": voucher_id, "created_at": now}
            ledger.append({**entry, "delta": row.value, "kind": "ISSUE"})
            spent = row.value - (row.balance or 0)
            if spent:  # spent on the platform it comes from, before the move
                ledger.append({**entry, "delta": -spent, "kind": "REDEMPTION"})
    _bulk(session, Voucher, vouchers)
    _bulk(session, LedgerEntry, ledger)


def _count_holders(
    session: Session, campaign: Campaign, publications: list[dict[str, Any]]
) -> None:
    """Count each holder's imported vouchers of the campaign, as every publication to a
    customer does (publications.publish): ``join_once`` and the holder counts see them.

    One upsert for the batch, its customers in id order (two imports into one campaign lock
    the same rows in the same order). A customer who already holds vouchers of the campaign
    keeps its first publication and has the new ones added to its count: the import brings
    vouchers issued elsewhere as they are, so no limit refuses them here.
    """
    counts: dict[str, list[Any]] = {}
    for publication in publications:
        customer_id = publication["customer_id"]
        if customer_id is None:
            continue
        if customer_id in counts:
            counts[customer_id][0] += 1
        else:
            counts[customer_id] = [1, publication["id"]]
    if not counts:
        return
    statement = upsert(session, CampaignHolder).values(
        [
            {
                "campaign_id": campaign.id,
                "customer_id": customer_id,
                "tenant_id": campaign.tenant_id,
                "voucher_count": count,
                "first_publication_id": first,
            }
            for customer_id, (count, first) in sorted(counts.items())
        ]
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["campaign_id", "customer_id"],
            set_={"voucher_count": CampaignHolder.voucher_count + statement.excluded.voucher_count},
        )
    )


def _count_customer_refs(session: Session, campaign: Campaign, rows: list[ImportedRow]) -> None:
    """Count the imported vouchers of each customer reference, as issuing one does
    (vouchers.limits.count_customer_issue, and under the same condition: the campaign has a
    ``per_customer_limit``), so the limit sees what a holder brought with the move."""
    if campaign.per_customer_limit is None:
        return
    counts: dict[str, int] = {}
    for row in rows:
        if row.holder is not None and row.holder.source_id:
            counts[row.holder.source_id] = counts.get(row.holder.source_id, 0) + 1
    if not counts:
        return
    statement = upsert(session, CampaignCustomer).values(
        [
            {
                "campaign_id": campaign.id,
                "customer_ref": ref,
                "tenant_id": campaign.tenant_id,
                "issued_count": count,
            }
            for ref, count in sorted(counts.items())
        ]
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["campaign_id", "customer_ref"],
            set_={"issued_count": CampaignCustomer.issued_count + statement.excluded.issued_count},
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
    columns = list(rows[0])
    lines = ["\t".join([copy_text(row[c]) for c in columns]) for row in rows]
    copy_in(session, table.name, ", ".join(columns), ("\n".join(lines) + "\n").encode())
