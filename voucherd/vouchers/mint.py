"""Minting: many vouchers into a campaign at once, with the campaign's defaults.

All or nothing per transaction; the statements that move each batch into ``voucher`` are in
``vouchers/sql.py``. Three use cases mint: a bulk request (:func:`mint_vouchers`), a campaign
created with vouchers (:func:`create_campaign`), and, inside their own transactions, a pool
that grows on demand, a background mint and a client order (:func:`mint_in_session`).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from voucherd.auth.caller import Caller
from voucherd.campaigns.models import Campaign
from voucherd.campaigns.schemas import CampaignCreate
from voucherd.campaigns.service import add_campaign, new_campaign
from voucherd.codes.generator import CodeSpec
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
    """Moves batches of freshly drawn codes into ``voucher`` through a staging table."""

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
        sql.create_staging(session)

    def mint(self, count: int) -> list[str]:
        ids = new_ids("v", count)
        tokens = dict(zip(ids, new_public_tokens(count), strict=True))
        pending = ids
        for _ in range(REDRAWS):
            codes = self.spec.generate(len(pending))
            rows = [(i, c, tokens[i]) for i, c in zip(pending, codes, strict=True)]
            sql.stage(self.session, rows)
            moved = sql.move_staged(self.session, self.params, with_ledger=self.with_ledger)
            if moved == len(pending):
                return ids
            pending = sql.not_moved(self.session)
        raise LimitReached(
            "no free codes could be drawn; the code space is nearly full",
            code=ErrorCode.CODE_SPACE_EXHAUSTED,
        )


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
