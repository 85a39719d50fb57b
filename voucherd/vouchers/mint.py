"""Minting: many vouchers into a campaign at once, with the campaign's defaults.

All or nothing per transaction. On PostgreSQL a batch is ``COPY``-ed straight into ``voucher``
(and its opening ledger entries into ``ledger_entry``) under a savepoint: the database's unique
index still judges every code, and a batch that meets a code already stored rolls back to its
savepoint and goes the staging way instead (``vouchers/sql.py``: ``COPY`` into a temporary table,
then ``INSERT ... SELECT ... ON CONFLICT (code) DO NOTHING`` and a redraw of what collided).
Straight in skips the staging table's write and read and the speculative insertion of
``ON CONFLICT``; collisions are rare (a campaign refuses a pool that would fill more than a
small fraction of its code space), so nearly every batch goes straight in. Three use cases mint: a bulk request (:func:`mint_vouchers`), a campaign
created with vouchers (:func:`create_campaign`), and, inside their own transactions, a pool
that grows on demand, a background mint and a client order (:func:`mint_in_session`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import insert
from sqlalchemy.orm import Session

from voucherd.auth.caller import Caller
from voucherd.campaigns.models import Campaign
from voucherd.campaigns.schemas import CampaignCreate
from voucherd.campaigns.service import add_campaign, new_campaign
from voucherd.codes.generator import CodeSpec
from voucherd.db.dialect import is_postgresql
from voucherd.db.engine import Database
from voucherd.errors import ErrorCode, InvalidInput, LimitReached
from voucherd.idempotency import service as idempotency
from voucherd.ids import new_ids, new_public_tokens
from voucherd.observability import metrics
from voucherd.publications.sql import link_minted
from voucherd.vouchers import sql
from voucherd.vouchers.models import Voucher, VoucherEvent
from voucherd.vouchers.schemas import MintResult, MintVouchers, VoucherOverrides, VoucherRecord
from voucherd.vouchers.terms import (
    REDRAWS,
    campaign_for_issue,
    check_capacity,
    issue_terms,
    spend_limits,
    voucher_row,
)

MINT_BATCH = 20_000
# Savepoints one transaction spends on straight COPYs; past them the staging way carries on.
# PostgreSQL keeps 64 subtransaction ids per backend in shared memory: beyond that, every other
# backend's visibility check of this transaction's rows goes to pg_subtrans on disk.
DIRECT_SAVEPOINTS = 48
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(value: Any) -> str:
    """A value as ``COPY``'s text format spells it (``\\N`` is NULL); JSON for a dict or list."""
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


def copy_in(session: Session, table: str, columns: str, data: bytes | Iterable[bytes]) -> None:
    """``COPY`` ready text-format rows into ``table`` on the session's connection (PostgreSQL).

    ``data`` may come in pieces, each sent as soon as it is made: PostgreSQL stores the rows
    of one piece while the caller makes the next, instead of waiting for the whole text.
    """
    raw: Any = session.connection().connection.dbapi_connection
    with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        if isinstance(data, bytes):
            copy.write(data)
            return
        for piece in data:
            copy.write(piece)


def spare_savepoint(session: Session) -> bool:
    """Whether the session's transaction may spend one more savepoint on a straight ``COPY``
    (and, if so, count it spent): every straight writer of the transaction shares the count."""
    used = session.info.get(_SAVEPOINTS_USED, 0)
    if used >= DIRECT_SAVEPOINTS:
        return False
    session.info[_SAVEPOINTS_USED] = used + 1
    return True


def _check_bulk_count(db: Database, count: int, field: str) -> None:
    if count > db.settings.max_bulk_count:
        raise InvalidInput(
            f"at most {db.settings.max_bulk_count} vouchers per request", field=field
        )


def mint_vouchers(
    db: Database,
    caller: Caller,
    campaign_ref: str,
    body: MintVouchers,
    *,
    idem: idempotency.IdempotencyClaim | None = None,
    batch_size: int = MINT_BATCH,
) -> MintResult:
    """Add ``count`` vouchers with the campaign's defaults, all or nothing."""
    caller.require("issue")
    _check_bulk_count(db, body.count, "count")
    now = db.now()
    with db.unit_of_work() as session:
        idempotency.claim(session, db, caller.tenant_id, idem)
        campaign, weekly_limit = campaign_for_issue(session, caller.tenant_id, campaign_ref)
        terms = issue_terms(campaign, body.value, body, now)
        spec = terms.spec
        check_capacity(session, db, campaign, spec, body.count)
        spend_limits(session, terms, body.count, weekly_limit, now)
        template = voucher_row(terms, now=now)
        minter = BulkMinter(session, template, spec)
        remaining = body.count
        first_id: str | None = None
        while remaining:
            size = min(batch_size, remaining)
            ids = minter.mint(size)
            first_id = first_id or ids[0]
            session.execute(
                insert(VoucherEvent).values(
                    tenant_id=caller.tenant_id,
                    campaign_id=campaign.id,
                    kind="minted",
                    actor=caller.key_id,
                    data={"count": size, "first_id": ids[0], "last_id": ids[-1]},
                    created_at=now,
                )
            )
            remaining -= size
        first = None
        if body.count == 1 and first_id is not None:
            voucher = session.get(Voucher, first_id)
            assert voucher is not None
            first = VoucherRecord(voucher, campaign.name)
        if first is not None:
            idempotency.bind_effect(session, caller.tenant_id, idem, "voucher", first.voucher.id)
        else:
            idempotency.bind_effect(
                session, caller.tenant_id, idem, f"mint:{body.count}", campaign.id
            )
        session.commit()
    metrics.vouchers_issued("mint", body.count)
    return MintResult(campaign.id, body.count, first)


def create_campaign(
    db: Database,
    caller: Caller,
    body: CampaignCreate,
    *,
    idem: idempotency.IdempotencyClaim | None = None,
) -> Campaign:
    """Create a campaign and, with ``vouchers_count`` (Voucherify's), its first vouchers: both
    or neither. Here rather than in campaigns/, which sits below vouchers and cannot mint."""
    now = db.now()
    campaign = new_campaign(caller, body, now)
    with db.unit_of_work() as session:
        idempotency.claim(session, db, caller.tenant_id, idem)
        add_campaign(session, campaign)
        if body.vouchers_count:
            caller.require("issue")
            _check_bulk_count(db, body.vouchers_count, "vouchers_count")
            mint_in_session(
                session, db, campaign, body.vouchers_count, actor=caller.key_id, now=now
            )
        idempotency.bind_effect(session, caller.tenant_id, idem, "campaign", campaign.id)
        session.commit()
    return campaign


class BulkMinter:
    """Moves batches of freshly drawn codes into ``voucher``: straight in by ``COPY`` while no
    code collides (PostgreSQL), else through a staging table that redraws what collided."""

    def __init__(self, session: Session, template: dict[str, Any], spec: CodeSpec) -> None:
        self.session = session
        self.spec = spec
        self.with_ledger = bool(template["balance"])
        # Bind the constant columns once, through the mapped types (dates, JSON).
        table = sql.VOUCHER
        dialect = session.get_bind().dialect
        self.params: dict[str, Any] = {}
        for key, value in template.items():
            if key == "metadata_":
                self.params["p_metadata"] = None if value is None else json.dumps(value)
                continue
            column = table.c[key]
            processor = column.type.bind_processor(dialect)
            self.params[f"p_{column.name}"] = processor(value) if processor else value
        self.params.setdefault("p_published_count", 0)
        self.staging = False
        self.direct = is_postgresql(session)
        if self.direct:
            self._prepare_direct()

    def _prepare_direct(self) -> None:
        """The ``COPY`` text of every constant column, once: a row is then its id, code and
        token plus this tail."""
        constants = [c for c in sql.MINT_COLUMNS if c not in _DRAWN]
        self.voucher_columns = ", ".join((*_DRAWN, *constants))
        self.voucher_tail = "".join(f"\t{copy_text(self.params[f'p_{c}'])}" for c in constants)
        self.voucher_tail += "\n"
        p = self.params
        self.ledger_head = f"{copy_text(p['p_tenant_id'])}\t"
        self.ledger_tail = f"\t{p['p_balance']}\tISSUE\t{copy_text(p['p_created_at'])}\n"
        # A charset of one's own may hold a character COPY's text format escapes.
        drawn = (self.spec.charset, self.spec.prefix, self.spec.postfix, self.spec.pattern or "")
        self.escape_codes = any(ch in text for text in drawn for ch in "\\\t\n\r")

    def mint(self, count: int) -> list[str]:
        ids = new_ids("v", count)
        public_tokens = new_public_tokens(count)
        codes = self.spec.generate(count)
        # Counted on the session, which every minter of the transaction shares (an order's
        # several line items, a pool that grows more than once).
        straight = self.direct and spare_savepoint(self.session)
        if straight and self._copy_straight(ids, codes, public_tokens):
            return ids
        tokens = dict(zip(ids, public_tokens, strict=True))
        if not self.staging:
            sql.create_staging(self.session)
            self.staging = True
        pending = ids
        for _ in range(REDRAWS):
            rows = [(i, c, tokens[i]) for i, c in zip(pending, codes, strict=True)]
            sql.stage(self.session, rows)
            moved = sql.move_staged(self.session, self.params, with_ledger=self.with_ledger)
            if moved == len(pending):
                return ids
            pending = sql.not_moved(self.session)
            codes = self.spec.generate(len(pending))
        raise LimitReached(
            "no free codes could be drawn; the code space is nearly full",
            code=ErrorCode.CODE_SPACE_EXHAUSTED,
        )

    def _copy_straight(self, ids: Sequence[str], codes: list[str], tokens: Sequence[str]) -> bool:
        """``COPY`` the batch into ``voucher`` (and the ledger) under a savepoint; False, having
        written nothing, if one of its codes is already stored."""
        if self.escape_codes:
            codes = [copy_text(code) for code in codes]
        tail = self.voucher_tail
        vouchers = "".join(
            [f"{i}\t{c}\t{t}{tail}" for i, c, t in zip(ids, codes, tokens, strict=True)]
        )
        savepoint = self.session.begin_nested()
        try:
            copy_in(self.session, sql.VOUCHER.name, self.voucher_columns, vouchers.encode())
        except psycopg.errors.UniqueViolation:
            savepoint.rollback()
            return False
        del vouchers
        if self.with_ledger:
            head, tail = self.ledger_head, self.ledger_tail
            ledger = "".join([f"{head}{i}{tail}" for i in ids]).encode()
            copy_in(self.session, sql.LEDGER.name, _LEDGER_COLUMNS, ledger)
        savepoint.commit()
        return True


_DRAWN = (sql.VOUCHER.c.id.name, sql.VOUCHER.c.code.name, sql.VOUCHER.c.public_token.name)
_LEDGER_COLUMNS = "tenant_id, voucher_id, delta, kind, created_at"
_SAVEPOINTS_USED = "mint_savepoints_used"


def mint_in_session(
    session: Session,
    db: Database,
    campaign: Campaign,
    count: int,
    *,
    actor: str,
    now: datetime,
    overrides: VoucherOverrides | None = None,
    value: int | None = None,
    publication_id: str | None = None,
) -> list[str]:
    """Mint ``count`` vouchers with the campaign's defaults inside the caller's transaction.

    For pools that grow on demand (an AUTO_UPDATE campaign publishing more codes than it has
    left): the same terms, limits, capacity check and minting as :func:`mint_vouchers`, but the
    caller's use case owns the transaction and decides what happens to the new vouchers.

    With ``publication_id`` the vouchers are born published in that publication (a client
    order's line item): they never enter the campaign's pool, so no concurrent claim can take
    them, and it costs no second write of each voucher.
    """
    campaign, weekly_limit = campaign_for_issue(session, campaign.tenant_id, campaign.id)
    terms = issue_terms(campaign, value, overrides or VoucherOverrides(), now)
    spec = terms.spec
    check_capacity(session, db, campaign, spec, count)
    spend_limits(session, terms, count, weekly_limit, now)
    template = voucher_row(terms, now=now)
    if publication_id is not None:
        template["published_count"] = 1
    ids = BulkMinter(session, template, spec).mint(count)
    metrics.vouchers_issued_when_committed(session, "mint", count)
    data: dict[str, Any] = {"count": count, "first_id": ids[0], "last_id": ids[-1]}
    if publication_id is not None:
        link_minted(session, campaign.tenant_id, publication_id, ids)
        data["publication_id"] = publication_id
    session.execute(
        insert(VoucherEvent).values(
            tenant_id=campaign.tenant_id,
            campaign_id=campaign.id,
            kind="minted",
            actor=actor,
            data=data,
            created_at=now,
        )
    )
    return ids
