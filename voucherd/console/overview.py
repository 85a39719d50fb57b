"""The overview: what a tenant (or one campaign) has issued, published, redeemed and still
owes, per day over 30 or 90 days as server-drawn SVG, and deliveries by state.

These are read-only counts over the core's tables, scoped by tenant like every query; they
decide nothing. Outstanding liability is the unspent value of money vouchers that can still
be spent or come back: GIFT balances and unredeemed CASH values of ACTIVE and DISABLED
vouchers (expired ones included, as they may be extended; cancelled and used-up ones not).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from markupsafe import Markup
from sqlalchemy import Select, case, func, select

from voucherd.auth.caller import Caller
from voucherd.campaigns import service as campaigns
from voucherd.console.schemas import SignedIn
from voucherd.console.service import require_role
from voucherd.console.web import console_of, render, signed_in
from voucherd.db.engine import Database
from voucherd.delivery.models import Delivery
from voucherd.redemptions.models import Redemption
from voucherd.vouchers.models import Voucher

router = APIRouter()
PERIODS = (30, 90)


@dataclass(frozen=True)
class Figures:
    issued: int
    published: int
    redeemed_vouchers: int
    redemptions: int
    liability: dict[str, int]  # currency -> minor units
    deliveries: dict[str, int]  # state -> count
    issued_per_day: list[tuple[date, int]]
    redeemed_per_day: list[tuple[date, int]]


def _day(db: Database, column: Any) -> Any:
    # Days in UTC on both stores (PostgreSQL's date() would use the session's zone).
    return func.date(func.timezone("UTC", column)) if db.is_postgresql else func.date(column)


def _series(db: Database, query: Select[Any], since: date, days: int) -> list[tuple[date, int]]:
    with db.unit_of_work(write=False) as session:
        counted = {str(day)[:10]: int(n) for day, n in session.execute(query)}
    return [
        (day, counted.get(day.isoformat(), 0))
        for day in (since + timedelta(days=i) for i in range(days))
    ]


def figures(
    db: Database, caller: Caller, *, campaign_id: str | None = None, days: int = 30
) -> Figures:
    tenant = caller.tenant_id
    in_scope = [Voucher.tenant_id == tenant]
    if campaign_id is not None:
        in_scope.append(Voucher.campaign_id == campaign_id)
    now = db.now()
    since = (now - timedelta(days=days - 1)).date()
    start = datetime(since.year, since.month, since.day, tzinfo=now.tzinfo)
    spendable = Voucher.state.in_(("ACTIVE", "DISABLED"))
    money = Voucher.type.in_(("GIFT", "CASH")) & Voucher.currency.is_not(None)
    with db.unit_of_work(write=False) as session:
        issued, published, used = session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(case((Voucher.published_count > 0, 1), else_=0)), 0),
                func.coalesce(func.sum(case((Voucher.state == "REDEEMED", 1), else_=0)), 0),
            ).where(*in_scope)
        ).one()
        owed = session.execute(
            select(Voucher.currency, func.sum(func.coalesce(Voucher.balance, Voucher.amount)))
            .where(*in_scope, spendable, money)
            .group_by(Voucher.currency)
        ).all()
        redemptions = session.scalar(
            select(func.count())
            .select_from(Redemption)
            .join(Voucher, Voucher.id == Redemption.voucher_id)
            .where(*in_scope, Redemption.tenant_id == tenant, Redemption.status == "SUCCEEDED")
        )
        states = session.execute(
            select(Delivery.state, func.count())
            .join(Voucher, Voucher.id == Delivery.voucher_id)
            .where(*in_scope, Delivery.tenant_id == tenant)
            .group_by(Delivery.state)
        ).all()
    issue_day = _day(db, Voucher.created_at)
    redeem_day = _day(db, Redemption.created_at)
    return Figures(
        issued=int(issued),
        published=int(published),
        redeemed_vouchers=int(used),
        redemptions=int(redemptions or 0),
        liability={str(c): int(v or 0) for c, v in owed},
        deliveries={str(s): int(n) for s, n in states},
        issued_per_day=_series(
            db,
            select(issue_day, func.count())
            .where(*in_scope, Voucher.created_at >= start)
            .group_by(issue_day),
            since,
            days,
        ),
        redeemed_per_day=_series(
            db,
            select(redeem_day, func.count())
            .join(Voucher, Voucher.id == Redemption.voucher_id)
            .where(
                *in_scope,
                Redemption.tenant_id == tenant,
                Redemption.status == "SUCCEEDED",
                Redemption.created_at >= start,
            )
            .group_by(redeem_day),
            since,
            days,
        ),
    )


def chart(
    series: dict[str, list[tuple[date, int]]], *, width: int = 720, height: int = 220
) -> Markup:
    """A line per series over the same days, drawn as SVG here (no JavaScript charting); the
    only text is numbers and dates, so nothing needs escaping."""
    colours = ("#1f5fbf", "#17703a", "#b3261e")
    left, bottom, top, right = 44, 28, 12, 12
    days = len(next(iter(series.values())))
    peak = max([1] + [n for points in series.values() for _, n in points])
    x_step = (width - left - right) / max(1, days - 1)

    def x(i: int) -> float:
        return left + i * x_step

    def y(n: int) -> float:
        return top + (height - top - bottom) * (1 - n / peak)

    axis = 'stroke="#9aa6b5"'
    label = 'font-size="11" fill="#5b6675"'
    base = f"{y(0):.1f}"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img">',
        f'<line x1="{left}" y1="{base}" x2="{width - right}" y2="{base}" {axis}/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{base}" {axis}/>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" {label}>{peak}</text>',
        f'<text x="{left - 6}" y="{base}" text-anchor="end" {label}>0</text>',
    ]
    first = next(iter(series.values()))
    for i in (0, days // 2, days - 1):
        anchor = "start" if i == 0 else "end" if i == days - 1 else "middle"
        parts.append(
            f'<text x="{x(i):.1f}" y="{height - 8}" text-anchor="{anchor}" {label}>'
            f"{first[i][0].isoformat()}</text>"
        )
    for colour, (name, points) in zip(colours, series.items(), strict=False):
        path = " ".join(f"{x(i):.1f},{y(n):.1f}" for i, (_, n) in enumerate(points))
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}" '
            f'data-series="{name}"/>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


@router.get("/overview")
def overview(request: Request, who: SignedIn = Depends(signed_in)) -> Response:
    require_role(who, "admin", "manager")
    db, caller = console_of(request).db, who.operator.caller
    days = 90 if request.query_params.get("days") == "90" else 30
    campaign = None
    wanted = request.query_params.get("campaign") or None
    if wanted:
        campaign = campaigns.get_campaign(db, caller, wanted)
    shown = figures(db, caller, campaign_id=campaign.id if campaign else None, days=days)
    drawn = chart({"issued": shown.issued_per_day, "redeemed": shown.redeemed_per_day})
    listed = campaigns.list_campaigns(db, caller, limit=200).items
    context: dict[str, Any] = {
        "active": "overview",
        "f": shown,
        "chart": drawn,
        "days": days,
        "campaign": campaign,
        "campaigns": listed,
    }
    return render(request, "overview.html", context)
