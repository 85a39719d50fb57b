"""A client order: its items and minting progress (polled by htmx while it runs), and the
distributions that handed out its codes, each with its items, recipients and shares.

Codes are masked on these pages (an operator who wants one opens the voucher by its code), and
recipients' addresses too, as in the outbox list."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from voucherd.console.lookup import mask
from voucherd.console.schemas import SignedIn
from voucherd.console.service import operator_names, require_role
from voucherd.console.web import console_of, render, signed_in
from voucherd.delivery.schemas import mask_recipient
from voucherd.orders import service as orders
from voucherd.orders.distributions import get_distribution, list_order_distributions

router = APIRouter()
MANAGERS = ("admin", "manager")


@router.get("/orders/{order_id}")
def order_page(request: Request, order_id: str, who: SignedIn = Depends(signed_in)) -> Response:
    """The whole page, or (asked by htmx's poll) only the progress card, until it finishes."""
    require_role(who, *MANAGERS)
    db, caller = console_of(request).db, who.operator.caller
    record = orders.get_order(db, caller, order_id)
    if request.headers.get("hx-request"):
        return render(request, "_order_progress.html", {"r": record})
    distributions = list_order_distributions(db, caller, order_id, limit=20)
    return render(
        request,
        "order.html",
        {
            "active": "orders",
            "r": record,
            "distributions": distributions,
            "names": operator_names(db, caller, {record.order.actor or ""}),
        },
    )


@router.get("/orders/{order_id}/distributions")
def order_distributions(
    request: Request, order_id: str, who: SignedIn = Depends(signed_in)
) -> Response:
    require_role(who, *MANAGERS)
    db, caller = console_of(request).db, who.operator.caller
    record = orders.get_order(db, caller, order_id)
    listed = list_order_distributions(db, caller, order_id)
    names = operator_names(db, caller, {d.distribution.actor or "" for d in listed})
    return render(
        request,
        "distributions.html",
        {"active": "orders", "r": record, "distributions": listed, "names": names},
    )


@router.get("/distributions/{distribution_id}")
def distribution_page(
    request: Request, distribution_id: str, who: SignedIn = Depends(signed_in)
) -> Response:
    require_role(who, *MANAGERS)
    db, caller = console_of(request).db, who.operator.caller
    record = get_distribution(db, caller, distribution_id)
    shares: dict[int, list[str]] = {}
    for share in record.shares:
        shares.setdefault(share.recipient_position, []).extend(mask(c) for c in share.codes)
    return render(
        request,
        "distribution.html",
        {
            "active": "orders",
            "d": record,
            "shares": shares,
            "mask_recipient": mask_recipient,
            "names": operator_names(db, caller, {record.distribution.actor or ""}),
        },
    )
