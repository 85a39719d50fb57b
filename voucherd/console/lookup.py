"""Vouchers and customers: find, look at, act on (the support agent's pages).

Vouchers are addressed by id in every URL, never by code, so no code lands in a URL, a log
line or a browser's history; a code is typed into a POSTed search form instead. Lists show a
masked code; the full code is on the voucher's own page, which the operator asked for.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError

from voucherd.console.schemas import SignedIn
from voucherd.console.service import operator_names, require_role
from voucherd.console.web import (
    console_of,
    errors_of,
    posted,
    redirect,
    render,
    signed_in,
    validation_errors,
)
from voucherd.customers import service as customers
from voucherd.customers.schemas import CustomerFilters
from voucherd.delivery import service as delivery
from voucherd.delivery.schemas import DeliveryRequest
from voucherd.errors import CodeMistyped, DomainError, InvalidInput, NotFound
from voucherd.money import to_minor
from voucherd.pages.schemas import present_page
from voucherd.pages.service import preview_voucher_page
from voucherd.redemptions import service as redemptions
from voucherd.vouchers import service as vouchers
from voucherd.vouchers.schemas import VoucherFilters
from voucherd.vouchers.validity import effective_state

router = APIRouter()
LOOKERS = ("admin", "manager", "support")
STATES = ("ACTIVE", "DISABLED", "REDEEMED", "CANCELLED", "EXPIRED")
MISTYPED = "this code has a typo: its last character does not match the rest"


def mask(code: str) -> str:
    """Enough of a code to tell two apart in a list, too little to use it."""
    return code if len(code) <= 6 else f"{code[:4]}…{code[-2:]}"


def version(voucher: Any) -> str:
    """What the operator saw: state and balance (times alone can tie within a clock tick)."""
    return f"{voucher.state}:{voucher.balance}:{voucher.updated_at.isoformat()}"


def _voucher_id(ref: str) -> str:
    # Only ids in URLs: the core would also take a code here, and a code must not be in a URL.
    if not ref.startswith("v_") or len(ref) > 40:
        raise NotFound("no such voucher", field="voucher")
    return ref


@router.get("/vouchers")
def voucher_list(request: Request, who: SignedIn = Depends(signed_in)) -> Response:
    require_role(who, *LOOKERS)
    return _list_page(request, who)


def _list_page(
    request: Request,
    who: SignedIn,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    found: dict[str, Any] | None = None,
) -> Response:
    db = console_of(request).db
    state = request.query_params.get("state", "")
    campaign = request.query_params.get("campaign", "").strip()[:200] or None
    wanted = VoucherFilters(campaign=campaign, state=state if state in STATES else None)  # type: ignore[arg-type]
    errors = dict(errors or {})
    recent: list[Any] = []
    try:
        recent = vouchers.list_vouchers(
            db, who.operator.caller, wanted, limit=50, cursor=None
        ).items
    except NotFound as exc:
        # A campaign the tenant does not have: the filter form says so by its field.
        errors["campaign"] = exc.detail
    return render(
        request,
        "vouchers.html",
        {
            "active": "vouchers",
            "recent": recent,
            "mask": mask,
            "now": db.now(),
            "state_of": effective_state,
            "values": values or {},
            "errors": errors,
            "found": found,
            "states": STATES,
            "filters": {"state": state, "campaign": campaign or ""},
        },
        status=422 if "campaign" in errors else 200,
    )


@router.post("/vouchers/find")
async def find(request: Request) -> Response:
    """A code (the core tells a typo from its check character before any lookup), or a customer's
    reference, e-mail or phone."""
    who, form = await posted(request, *LOOKERS)
    db, caller = console_of(request).db, who.operator.caller
    query = form.get("q", "").strip()
    values = {"q": query}
    if not query:
        return _list_page(request, who, values=values, errors={"q": "type a code or a customer"})
    try:
        record = vouchers.get_voucher(db, caller, query)
    except CodeMistyped:  # the core's judgement of the typed text, before any lookup
        return _list_page(request, who, values=values, errors={"q": MISTYPED})
    except NotFound:
        record = None
    if record is not None:
        return redirect(request, f"/vouchers/{record.voucher.id}")
    by_ref = vouchers.list_vouchers(
        db, caller, VoucherFilters(customer_ref=query[:200]), limit=50, cursor=None
    ).items
    people = customers.list_customers(
        db, caller, CustomerFilters(q=query[:200]), limit=20, cursor=None
    ).items
    if not by_ref and not people:
        errors = {"q": "no voucher with this code, and no customer matches it"}
        return _list_page(request, who, values=values, errors=errors)
    return _list_page(request, who, values=values, found={"vouchers": by_ref, "customers": people})


def _voucher_page(
    request: Request,
    who: SignedIn,
    voucher_id: str,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    notice: str | None = None,
    status: int = 200,
) -> Response:
    db, caller = console_of(request).db, who.operator.caller
    record = vouchers.get_voucher(db, caller, _voucher_id(voucher_id))
    events = vouchers.list_events(db, caller, voucher_id)
    spent = redemptions.list_redemptions(
        db, caller, voucher=voucher_id, limit=50, cursor=None
    ).items
    sent = delivery.list_voucher_deliveries(db, caller, voucher_id)
    asked = {d.delivery.id: d.events[0].actor for d in sent if d.events}
    names = operator_names(
        db, caller, {e.actor or "" for e in events} | {a or "" for a in asked.values()}
    )
    # The holder's page cannot be framed (its CSP says frame-ancestors 'none', so no link
    # leaks into another page), so the console draws the same view the page is drawn from.
    preview = present_page(preview_voucher_page(db, caller, voucher_id), now=db.now())
    return render(
        request,
        "voucher.html",
        {
            "active": "vouchers",
            "record": record,
            "v": record.voucher,
            "seen": version(record.voucher),
            "state": effective_state(
                record.voucher.state, record.voucher.expiration_date, db.now()
            ),
            "events": events,
            "names": names,
            "redemptions": spent,
            "deliveries": sent,
            "asked": asked,
            "ledger": vouchers.list_ledger(db, caller, voucher_id),
            "preview": preview,
            "page_url": f"{db.settings.public_base_url}/v/{record.voucher.public_token}",
            "errors": errors or {},
            "values": values or {},
            "notice": notice,
            "can_act": who.operator.role in LOOKERS,
        },
        status=status,
    )


@router.get("/vouchers/{voucher_id}")
def voucher_page(request: Request, voucher_id: str, who: SignedIn = Depends(signed_in)) -> Response:
    require_role(who, *LOOKERS)
    notice = DONE.get(request.query_params.get("done", ""))
    return _voucher_page(request, who, voucher_id, notice=notice)


@router.post("/vouchers/{voucher_id}/{action}")
async def voucher_action(request: Request, voucher_id: str, action: str) -> Response:
    who, form = await posted(request, *LOOKERS)
    db, caller = console_of(request).db, who.operator.caller
    current = vouchers.get_voucher(db, caller, _voucher_id(voucher_id)).voucher
    reason = form.get("reason", "").strip()[:500] or None
    values = dict(form)
    # The page the operator acted on showed the voucher as of ``seen``; if it changed since,
    # say so rather than act on a state they did not see.
    if form.get("seen") and form.get("seen") != version(current):
        stale = "the voucher changed since this page was loaded: look again, then act"
        return _voucher_page(request, who, voucher_id, errors={"form": stale}, status=409)
    try:
        _act(db, caller, voucher_id, action, form, reason)
    except ValidationError as exc:
        errors = validation_errors(exc)
        return _voucher_page(request, who, voucher_id, errors=errors, values=values, status=422)
    except DomainError as exc:
        errors = errors_of(exc)
        return _voucher_page(request, who, voucher_id, errors=errors, values=values, status=422)
    # Post/redirect/get: reloading the page the browser lands on must not act twice.
    return redirect(request, f"/vouchers/{voucher_id}?done={action}")


DONE = {
    "disable": "Disabled.",
    "enable": "Enabled.",
    "cancel": "Cancelled.",
    "adjust": "Balance adjusted.",
    "send": "Sending: the delivery is queued.",
    "resend": "Resending: a new delivery is queued.",
}


def _act(
    db: Any, caller: Any, voucher_id: str, action: str, form: dict[str, str], reason: str | None
) -> None:
    if action == "disable":
        vouchers.disable_voucher(db, caller, voucher_id, reason)
        return
    if action == "enable":
        vouchers.enable_voucher(db, caller, voucher_id, reason)
        return
    if action == "cancel":
        vouchers.cancel_voucher(db, caller, voucher_id, reason)
        return
    if action == "adjust":
        if reason is None:
            raise InvalidInput("say why the balance changes", field="reason")
        currency = vouchers.get_voucher(db, caller, voucher_id).voucher.currency
        text = form.get("amount", "").strip().replace(",", ".")
        try:
            amount = to_minor(Decimal(text), currency) if currency else int(text)
        except (ValueError, InvalidOperation) as exc:
            raise InvalidInput("an amount such as 5.00 or -2.50", field="amount") from exc
        vouchers.adjust_balance(db, caller, voucher_id, amount, reason)
        return
    if action == "send":
        body = DeliveryRequest.model_validate(
            {"channel": form.get("channel", ""), "recipient": form.get("recipient") or None}
        )
        delivery.deliver_voucher(db, caller, voucher_id, body)
        return
    if action == "resend":
        original = form.get("delivery", "")
        found = delivery.get_delivery(db, caller, original)
        if found.delivery.voucher_id != voucher_id:
            raise NotFound("no such delivery", field="delivery")
        delivery.resend_delivery(db, caller, original)
        return
    raise NotFound("no such action")


@router.get("/customers")
def customer_list(request: Request, who: SignedIn = Depends(signed_in)) -> Response:
    require_role(who, *LOOKERS)
    query = request.query_params.get("q", "").strip()[:200] or None
    listed = customers.list_customers(
        console_of(request).db,
        who.operator.caller,
        CustomerFilters(q=query),
        limit=50,
        cursor=request.query_params.get("after") or None,
    )
    return render(
        request,
        "customers.html",
        {"active": "customers", "page": listed, "values": {"q": query or ""}},
    )


def _customer_page(
    request: Request, who: SignedIn, customer_id: str, *, notice: str | None = None
) -> Response:
    db, caller = console_of(request).db, who.operator.caller
    customer = customers.get_customer(db, caller, customer_id)
    held, _ = vouchers.number_vouchers(db, caller, customer=customer.id, page=1, limit=50)
    return render(
        request,
        "customer.html",
        {"active": "customers", "c": customer, "held": held, "mask": mask, "notice": notice},
    )


@router.get("/customers/{customer_id}")
def customer_page(
    request: Request, customer_id: str, who: SignedIn = Depends(signed_in)
) -> Response:
    require_role(who, *LOOKERS)
    return _customer_page(request, who, customer_id)


@router.post("/customers/{customer_id}/erase")
async def erase(request: Request, customer_id: str) -> Response:
    who, form = await posted(request, "admin", "manager")
    reason = form.get("reason", "").strip()[:500] or None
    customers.erase_customer(console_of(request).db, who.operator.caller, customer_id, reason)
    return _customer_page(request, who, customer_id, notice="Erased.")
