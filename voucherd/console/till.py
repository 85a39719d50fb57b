"""The till: a cashier types or scans a code, sees what it is worth and whether it may be used
now, and redeems an amount.

Each sale carries a key made when the till page is drawn, passed to the core as the redemption's
Idempotency-Key: a double tap, a retried request or a second tab with the same sale redeems
once, and the repeat is answered with the first redemption.
"""

from __future__ import annotations

import json
import secrets
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError

from voucherd.console.schemas import SignedIn
from voucherd.console.service import require_role
from voucherd.console.web import console_of, posted, render, signed_in, validation_errors
from voucherd.errors import DomainError, ErrorCode
from voucherd.idempotency.service import IdempotencyClaim, Replay
from voucherd.money import to_minor
from voucherd.redemptions import service as redemptions
from voucherd.redemptions.schemas import RedeemRequest, ValidateRequest, ValidationResult

router = APIRouter()
ROLES = ("admin", "manager", "support", "cashier")
MISTYPED = "this code has a typo: its last character does not match the rest; check it again"


def _page(request: Request, **context: Any) -> Response:
    context.setdefault("sale", secrets.token_urlsafe(12))
    return render(request, "till.html", {"active": "till", **context})


@router.get("/till")
def till(request: Request, who: SignedIn = Depends(signed_in)) -> Response:
    require_role(who, *ROLES)
    return _page(request)


def _check(request: Request, who: SignedIn, code: str) -> ValidationResult | None:
    db, caller = console_of(request).db, who.operator.caller
    result = redemptions.validate(db, caller, ValidateRequest.model_validate({"code": code}))
    if result.reason == ErrorCode.CODE_MISTYPED:
        return None  # the core judged the typed text a typo (its check character fails)
    voucher = result.record.voucher if result.record else None
    # A balance asks "how much?"; "is it usable now?" is asked for all of it, which is what the
    # till shows before the cashier types an amount.
    if (
        voucher is not None
        and not result.valid
        and result.reason == "invalid_input"
        and voucher.type in ("GIFT", "LOYALTY")
        and (voucher.balance or 0) > 0
    ):
        whole = ValidateRequest.model_validate({"code": code, "amount": voucher.balance})
        result = redemptions.validate(db, caller, whole)
    return result


@router.post("/till/check")
async def check(request: Request) -> Response:
    who, form = await posted(request, *ROLES)
    code = form.get("code", "").strip()
    values = {"code": code}
    if not code:
        return _page(request, values=values, errors={"code": "type or scan a code"})
    try:
        result = _check(request, who, code)
    except ValidationError as exc:
        return _page(request, values=values, errors=validation_errors(exc))
    if result is None:
        return _page(request, values=values, errors={"code": MISTYPED})
    sale = form.get("sale") or secrets.token_urlsafe(12)
    return _page(request, values=values, result=result, sale=sale)


def _minor(text: str, currency: str | None) -> int:
    """What the cashier typed (12.50) in the voucher's minor units; points are whole."""
    try:
        if currency:
            return to_minor(Decimal(text.replace(",", ".")), currency)
        return int(text)
    except (ValueError, InvalidOperation) as exc:
        raise ValueError("an amount such as 12.50") from exc


@router.post("/till/redeem")
async def redeem(request: Request) -> Response:
    who, form = await posted(request, *ROLES)
    db = console_of(request).db
    code = form.get("code", "").strip()
    sale = form.get("sale", "")
    values = {"code": code, "amount": form.get("amount", "")}
    result = _check(request, who, code) if code else None
    if result is None or result.record is None:
        return _page(request, values=values, errors={"code": MISTYPED if code else "no code"})
    voucher = result.record.voucher
    payload: dict[str, Any] = {"code": code}
    if voucher.type in ("GIFT", "LOYALTY"):
        try:
            payload["amount"] = _minor(form.get("amount", "").strip(), voucher.currency)
        except ValueError as exc:
            errors = {"amount": str(exc)}
            return _page(request, values=values, result=result, sale=sale, errors=errors)
    if not sale or len(sale) > 64:
        return _page(request, values=values, errors={"form": "this sale has no key: start again"})
    claim = IdempotencyClaim.of(
        f"console-sale:{sale}", "POST", "/console/till/redeem", json.dumps(payload).encode()
    )
    repeated = False
    try:
        body = RedeemRequest.model_validate(payload)
        done = redemptions.redeem(db, who.operator.caller, body, idem=claim)
    except ValidationError as exc:
        return _page(
            request, values=values, result=result, sale=sale, errors=validation_errors(exc)
        )
    except Replay as replay:
        done = redemptions.get_redemption(db, who.operator.caller, str(replay.resource_id))
        repeated = True
    except DomainError as exc:
        errors = {"amount" if exc.field == "amount" else "form": exc.detail}
        return _page(request, values=values, result=result, sale=sale, errors=errors)
    after = _check(request, who, code)
    return _page(
        request,
        values={"code": code},
        result=after,
        redeemed=done,
        repeated=repeated,
        sale=secrets.token_urlsafe(12),
    )
