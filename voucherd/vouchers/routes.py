from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from voucherd.api.deps import DB, QUERY_AS_DECLARED, CallerDep, Idem
from voucherd.api.offload import off_loop
from voucherd.api.openapi import NATIVE_ERRORS
from voucherd.api.responses import json_response, list_payload, respond_created
from voucherd.auth.caller import Caller
from voucherd.db.engine import Database
from voucherd.fields import Timestamp
from voucherd.idempotency.service import IdempotencyClaim
from voucherd.pagination import DEFAULT_LIMIT, MAX_LIMIT
from voucherd.vouchers import service
from voucherd.vouchers.issue import issue_on_loop, issue_voucher
from voucherd.vouchers.schemas import (
    AdjustBalance,
    ChangeState,
    IssueVoucher,
    VoucherFilters,
    VoucherRecord,
    VoucherStateName,
    present_event,
    present_ledger_entry,
    present_voucher,
)

router = APIRouter(
    prefix="/api/v1/vouchers",
    tags=["vouchers"],
    responses=NATIVE_ERRORS,
    dependencies=QUERY_AS_DECLARED,
)


def _shown(db: Database, record: VoucherRecord) -> dict[str, object]:
    return present_voucher(record, now=db.now(), base_url=db.settings.public_base_url)


@router.post("", status_code=201, summary="Issue a voucher")
async def issue(body: IssueVoucher, db: DB, caller: CallerDep, idem: Idem) -> Response:
    # The hot path. On PostgreSQL, on the event loop when the express lane has a connection
    # free (db/express.py); otherwise one thread trip for the whole blocking body.
    if idem is None:
        record = await issue_on_loop(db, caller, body)
        if record is not None:
            return respond_created(db, caller, None, _issued(db, record))
    return await off_loop(_issue, db, caller, body, idem)


def _issue(
    db: Database, caller: Caller, body: IssueVoucher, idem: IdempotencyClaim | None
) -> Response:
    record = issue_voucher(db, caller, body, idem=idem)
    return respond_created(db, caller, idem, _issued(db, record))


def _issued(db: Database, record: VoucherRecord) -> dict[str, object]:
    shown = _shown(db, record)
    if record.delivery is not None:
        shown["delivery"] = record.delivery.present()
    return shown


@router.get("", summary="List vouchers, newest first")
def list_vouchers(
    db: DB,
    caller: CallerDep,
    campaign: Annotated[str | None, Query(max_length=200)] = None,
    state: VoucherStateName | None = None,
    customer_ref: Annotated[str | None, Query(max_length=200)] = None,
    created_after: Timestamp | None = None,
    created_before: Timestamp | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    filters = VoucherFilters(campaign, state, customer_ref, created_after, created_before)
    page = service.list_vouchers(db, caller, filters, limit=limit, cursor=cursor)
    return json_response(list_payload([_shown(db, r) for r in page.items], page.next_cursor))


@router.get("/{voucher}", summary="Get a voucher by id or code")
def get_voucher(voucher: str, db: DB, caller: CallerDep) -> Response:
    return json_response(_shown(db, service.get_voucher(db, caller, voucher)))


@router.post("/{voucher}/disable", summary="Switch a voucher off (it can come back)")
def disable(voucher: str, db: DB, caller: CallerDep, body: ChangeState | None = None) -> Response:
    reason = body.reason if body else None
    return json_response(_shown(db, service.disable_voucher(db, caller, voucher, reason)))


@router.post("/{voucher}/enable", summary="Switch a disabled voucher back on")
def enable(voucher: str, db: DB, caller: CallerDep, body: ChangeState | None = None) -> Response:
    reason = body.reason if body else None
    return json_response(_shown(db, service.enable_voucher(db, caller, voucher, reason)))


@router.post("/{voucher}/cancel", summary="Cancel a voucher (final)")
def cancel(voucher: str, db: DB, caller: CallerDep, body: ChangeState | None = None) -> Response:
    reason = body.reason if body else None
    return json_response(_shown(db, service.cancel_voucher(db, caller, voucher, reason)))


@router.post("/{voucher}/balance", summary="Add to or take from a GIFT or LOYALTY balance")
def adjust(voucher: str, body: AdjustBalance, db: DB, caller: CallerDep) -> Response:
    record = service.adjust_balance(db, caller, voucher, body.amount, body.reason)
    return json_response(_shown(db, record))


@router.get("/{voucher}/events", summary="A voucher's history: who changed what, when, why")
def events(voucher: str, db: DB, caller: CallerDep) -> Response:
    items = [present_event(e) for e in service.list_events(db, caller, voucher)]
    return json_response(list_payload(items, None))


@router.get(
    "/{voucher}/ledger",
    summary="A voucher's balance changes, oldest first (the balance is their sum)",
)
def ledger(voucher: str, db: DB, caller: CallerDep) -> Response:
    items = [present_ledger_entry(e) for e in service.list_ledger(db, caller, voucher)]
    return json_response(list_payload(items, None))
