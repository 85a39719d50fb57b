"""Issuing one voucher, optionally to a customer and with a delivery.

The rules of what may be issued are in ``vouchers/terms.py``; the statement that writes the
voucher with its ledger entry, its event and its outbox row (one round trip on PostgreSQL) is in
``vouchers/sql.py``.

On PostgreSQL, without an Idempotency-Key, an issue that spends no limit (no per-customer
count, no campaign budget or weekly value limit, no code-space count) runs its campaign read and
its one writing statement each as their own transaction (``Database.single_write``): two round
trips instead of four. Everything else (SQLite, a key, a limit) stays one unit of work, because
a limit is spent by statements of its own, which must commit or roll back with the voucher.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from voucherd.auth.caller import Caller
from voucherd.campaigns.models import Campaign
from voucherd.codes.generator import is_mistyped
from voucherd.db.engine import Database
from voucherd.db.express import ExpressLane, LaneBusy, LaneConnection
from voucherd.delivery.enqueue import (
    TENANT_SETTINGS,
    automatic_delivery,
    plan_delivery,
    settings_of_rows,
)
from voucherd.delivery.enqueue import tenant_settings as read_tenant_settings
from voucherd.delivery.schemas import DeliveryRequest, RequestedDelivery
from voucherd.errors import Conflict, ErrorCode, InvalidInput, LimitReached
from voucherd.idempotency import service as idempotency
from voucherd.ids import new_id, new_public_tokens
from voucherd.observability import metrics
from voucherd.vouchers.limits import count_customer_issue, counts_customer
from voucherd.vouchers.models import Voucher
from voucherd.vouchers.schemas import IssueVoucher, VoucherRecord
from voucherd.vouchers.sql import insert_issued, issue_on_postgresql
from voucherd.vouchers.terms import (
    REDRAWS,
    IssueTerms,
    campaign_and_tenant,
    campaign_of_rows,
    campaign_query,
    check_capacity,
    counts_capacity,
    detached,
    issue_terms,
    requested_value,
    spend_limits,
    spends_limits,
    voucher_row,
)


@dataclass(frozen=True)
class _Plan:
    """What the campaign read decided for one issue, before anything is written."""

    campaign: Campaign
    terms: IssueTerms
    weekly_limit: int | None  # the tenant's, as read with the campaign
    tenant_settings: dict[str, Any] | None  # read with the campaign when the request delivers
    asked: DeliveryRequest | None  # the delivery asked for, by the request or the campaign


@dataclass(frozen=True)
class _Issued:
    campaign: Campaign
    row: dict[str, Any]  # the voucher's columns, as written
    delivery: dict[str, Any] | None  # the delivery row written with it


@dataclass(frozen=True)
class _Draft:
    """The rows one issue writes under a plan, all but the voucher's code, which
    :meth:`codes` draws (or takes from the request) until one is free."""

    plan: _Plan
    row: dict[str, Any]  # the voucher's columns; "code" set by the caller for each try
    event: dict[str, Any]
    delivery: dict[str, Any] | None
    given_code: str | None

    def codes(self) -> Iterator[str]:
        if self.given_code is not None:
            yield self.given_code
            return
        spec = self.plan.terms.spec
        for _ in range(REDRAWS):
            yield spec.generate(1)[0]

    def issued(self) -> _Issued:
        return _Issued(self.plan.campaign, self.row, self.delivery)

    def refusal(self) -> Exception:
        """Why no try wrote the voucher: the code given is taken, or the space nearly full."""
        if self.given_code is not None:
            return Conflict(
                "this code is already in use", field="code", code=ErrorCode.DUPLICATE_CODE
            )
        return LimitReached(
            "no free code could be drawn; the code space is nearly full",
            field="campaign",
            code=ErrorCode.CODE_SPACE_EXHAUSTED,
        )


def issue_voucher(
    db: Database,
    caller: Caller,
    body: IssueVoucher,
    *,
    idem: idempotency.IdempotencyClaim | None = None,
    campaign_delivers: bool = True,
) -> VoucherRecord:
    """Issue one voucher, optionally to a customer reference.

    Without ``body.delivery`` a campaign set to deliver every voucher (``delivery_channel``)
    delivers this one too, unless ``campaign_delivers`` is False: a face whose caller said "do
    not send" (Yoyo's ``sendSMS: false``). Then nothing is sent and no delivery row is written.
    """
    caller.require("issue")
    _refuse_mistyped(body)
    now = db.now()
    issued: _Issued | None = None
    plan: _Plan | None = None  # read without a transaction, kept for one when a limit applies
    if idem is None and db.writes_single:
        # The read and the write each as their own transaction: under READ COMMITTED the write
        # never saw the read's snapshot anyway, and it re-checks the one fact it depends on
        # that can change in between, the code's being free (ON CONFLICT: nothing written,
        # redraw or refuse). A limit is spent by statements of its own: a unit of work.
        with db.single_write() as connection:
            plan = _plan(connection, caller, body, now, campaign_delivers=campaign_delivers)
            if not _spends_limits(db, body, plan):
                issued = _write(connection, db, caller, body, plan, now)
    if issued is None:
        issued = _issue_in_transaction(db, caller, body, now, plan, idem, campaign_delivers)
    metrics.vouchers_issued("issue")
    return _record(issued)


async def issue_on_loop(db: Database, caller: Caller, body: IssueVoucher) -> VoucherRecord | None:
    """:func:`issue_voucher` without an Idempotency-Key, on the event loop: the campaign read
    and the one writing statement (per code drawn) on a connection of the express lane
    (``db/express.py``), each its own transaction, as ``issue_voucher`` runs them on a
    ``single_write`` connection. Same rules, rows and refusals.

    None, with nothing written, when the lane cannot take it (SQLite, a Database bound to one
    connection, every lane connection lent) or the issue spends a limit (a unit of work's
    statements): the caller then runs :func:`issue_voucher` on a worker thread, which reads
    the campaign again (one indexed row; limits spend several statements and a COMMIT)."""
    lane = db.express
    if lane is None:
        return None
    caller.require("issue")
    _refuse_mistyped(body)
    now = db.now()
    try:
        async with lane.connection() as connection:
            issued = await _issue_on_lane(lane, connection, db, caller, body, now)
    except LaneBusy:
        return None
    if issued is None:
        return None
    metrics.vouchers_issued("issue")
    return _record(issued)


async def _issue_on_lane(
    lane: ExpressLane,
    connection: LaneConnection,
    db: Database,
    caller: Caller,
    body: IssueVoucher,
    now: datetime,
) -> _Issued | None:
    statement = campaign_query(with_settings=body.delivery is not None)
    rows = await lane.rows(
        connection, statement, {"tenant_id": caller.tenant_id, "ref": body.campaign}
    )
    plan = _plan_of(campaign_of_rows(rows, body.campaign), body, now, campaign_delivers=True)
    if _spends_limits(db, body, plan):
        return None
    tenant_settings = plan.tenant_settings
    if plan.asked is not None and tenant_settings is None:
        rows = await lane.rows(connection, TENANT_SETTINGS, {"tenant_id": caller.tenant_id})
        tenant_settings = settings_of_rows(rows)
    draft = _draft(caller, body, plan, now, tenant_settings)
    for code in draft.codes():
        draft.row["code"] = code
        statement, params = issue_on_postgresql(
            draft.row, actor=caller.key_id, event=draft.event, delivery=draft.delivery
        )
        if await lane.rows(connection, statement, params):
            return draft.issued()
    raise draft.refusal()


def _refuse_mistyped(body: IssueVoucher) -> None:
    if body.code is not None and is_mistyped(body.code):
        raise InvalidInput(
            "this code has the shape of a voucherd code but a wrong check character", field="code"
        )


def _record(issued: _Issued) -> VoucherRecord:
    delivery = issued.delivery
    requested = None
    if delivery is not None:
        requested = RequestedDelivery(delivery["id"], delivery["channel"], delivery["state"])
    voucher = detached(Voucher, issued.row)
    campaign = issued.campaign
    return VoucherRecord(voucher, campaign.name, delivery=requested, campaign=campaign)


def _issue_in_transaction(
    db: Database,
    caller: Caller,
    body: IssueVoucher,
    now: datetime,
    plan: _Plan | None,
    idem: idempotency.IdempotencyClaim | None,
    campaign_delivers: bool,
) -> _Issued:
    """The unit of work: the key's claim, the limits' spends and the voucher commit together.

    ``plan``: the campaign as already read without a transaction (the single-write path found
    a limit to spend); reading it again inside would see no more than that read saw (READ
    COMMITTED), and every limit below re-checks under its own lock or condition."""
    with db.unit_of_work() as session:
        idempotency.claim(session, db, caller.tenant_id, idem)
        if plan is None:
            plan = _plan(session, caller, body, now, campaign_delivers=campaign_delivers)
        count_customer_issue(session, plan.campaign, body.customer_ref)
        spend_limits(session, plan.terms, 1, plan.weekly_limit, now)
        issued = _write(session, db, caller, body, plan, now)
        idempotency.bind_effect(session, caller.tenant_id, idem, "voucher", issued.row["id"])
        session.commit()
    return issued


def _plan(
    session: Session | Connection,
    caller: Caller,
    body: IssueVoucher,
    now: datetime,
    *,
    campaign_delivers: bool,
) -> _Plan:
    """Read the campaign (one statement) and decide the terms and the delivery asked for, or
    raise the first rule the request breaks. Writes nothing."""
    read = campaign_and_tenant(
        session, caller.tenant_id, body.campaign, with_settings=body.delivery is not None
    )
    return _plan_of(read, body, now, campaign_delivers=campaign_delivers)


def _plan_of(
    read: tuple[Campaign, int | None, dict[str, Any] | None],
    body: IssueVoucher,
    now: datetime,
    *,
    campaign_delivers: bool,
) -> _Plan:
    """:func:`_plan` from the campaign read (``campaign_and_tenant``'s answer)."""
    campaign, weekly_limit, tenant_settings = read
    terms = issue_terms(campaign, requested_value(body, campaign), body, now)
    asked = body.delivery
    if asked is None and campaign_delivers:
        asked = automatic_delivery(
            campaign, recipient=body.recipient, customer_ref=body.customer_ref
        )
    return _Plan(campaign, terms, weekly_limit, tenant_settings, asked)


def _spends_limits(db: Database, body: IssueVoucher, plan: _Plan) -> bool:
    """Whether issuing under ``plan`` spends a limit by a statement of its own (so it needs a
    unit of work): a per-customer count, a campaign budget or weekly value, or the count of a
    small code space (its advisory lock and count must hold to the insert's commit)."""
    return (
        counts_customer(plan.campaign, body.customer_ref)
        or spends_limits(plan.terms, plan.weekly_limit)
        or (body.code is None and counts_capacity(db, plan.terms.spec))
    )


def _write(
    session: Session | Connection,
    db: Database,
    caller: Caller,
    body: IssueVoucher,
    plan: _Plan,
    now: datetime,
) -> _Issued:
    """Write the voucher with its ledger entry, event and delivery: on PostgreSQL one
    statement per code drawn, each writing all its rows or (the code taken) none."""
    tenant_settings = plan.tenant_settings
    if plan.asked is not None and tenant_settings is None:
        tenant_settings = read_tenant_settings(session, caller.tenant_id)
    draft = _draft(caller, body, plan, now, tenant_settings)
    if body.code is None:
        check_capacity(session, db, plan.campaign, plan.terms.spec, 1)
    for code in draft.codes():
        draft.row["code"] = code
        if insert_issued(
            session, draft.row, actor=caller.key_id, event=draft.event, delivery=draft.delivery
        ):
            return draft.issued()
    raise draft.refusal()


def _draft(
    caller: Caller,
    body: IssueVoucher,
    plan: _Plan,
    now: datetime,
    tenant_settings: dict[str, Any] | None,
) -> _Draft:
    """The rows to write under ``plan``. ``tenant_settings``: read with the campaign when the
    request delivers, on their own when only the campaign does (None when nothing delivers)."""
    row = voucher_row(plan.terms, now=now)
    row.update(
        id=new_id("v"),
        public_token=new_public_tokens(1)[0],
        customer_ref=body.customer_ref,
        holder_name=body.holder.name if body.holder else None,
        holder_address=body.holder.address if body.holder else None,
        holder_postcode=body.holder.postcode if body.holder else None,
    )
    event = {"value": plan.terms.value, "customer_ref": body.customer_ref is not None}
    delivery = None
    if plan.asked is not None:
        delivery = plan_delivery(
            plan.asked,
            tenant_settings,
            tenant_id=caller.tenant_id,
            voucher_id=row["id"],
            now=now,
            origin="issue",
        )
    return _Draft(plan, row, event, delivery, body.code)
