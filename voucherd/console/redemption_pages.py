"""The redemptions list, newest first, filtered by campaign, and rollback with a reason."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from voucherd.console.lookup import mask
from voucherd.console.schemas import SignedIn
from voucherd.console.service import require_role
from voucherd.console.web import console_of, posted, redirect, render, signed_in
from voucherd.redemptions import service as redemptions

router = APIRouter()
ROLES = ("admin", "manager", "support")


@router.get("/redemptions")
def redemption_list(request: Request, who: SignedIn = Depends(signed_in)) -> Response:
    require_role(who, *ROLES)
    campaign = request.query_params.get("campaign", "").strip()[:200] or None
    asked = request.query_params.get("page", "1")
    page = min(int(asked), 10_000) if asked.isdigit() and asked != "0" else 1
    rows, total = redemptions.number_redemptions(
        console_of(request).db, who.operator.caller, campaign=campaign, page=page, limit=50
    )
    return render(
        request,
        "redemptions.html",
        {
            "active": "redemptions",
            "rows": rows,
            "total": total,
            "page": page,
            "campaign": campaign or "",
            "mask": mask,
        },
    )


@router.post("/redemptions/{redemption_id}/rollback")
async def rollback(request: Request, redemption_id: str) -> Response:
    who, form = await posted(request, *ROLES)
    reason = form.get("reason", "").strip()[:500] or None
    redemptions.rollback(console_of(request).db, who.operator.caller, redemption_id, reason)
    return redirect(request, "/redemptions")
