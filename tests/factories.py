"""Typed factories, keyword-only, one per thing a test needs. They call the real services."""

from __future__ import annotations

import secrets
from typing import Any

from voucherd.auth.service import Caller, authenticate_token, create_key, create_tenant
from voucherd.campaigns.models import Campaign
from voucherd.campaigns.schemas import CampaignCreate
from voucherd.campaigns.service import create_campaign
from voucherd.db.engine import Database
from voucherd.vouchers.issue import issue_voucher
from voucherd.vouchers.schemas import IssueVoucher, VoucherRecord


class Tenant:
    """A tenant with a full-scope key: ``caller`` for services, ``headers`` for HTTP."""

    def __init__(
        self,
        db: Database,
        *,
        name: str | None = None,
        scopes: list[str] | None = None,
        weekly_value_limit: int | None = None,
    ) -> None:
        self.name = name or f"tenant-{secrets.token_hex(4)}"
        self.view = create_tenant(db, self.name, weekly_value_limit=weekly_value_limit)
        self.id = self.view.id
        key = create_key(db, self.name, scopes=scopes)
        self.key = key
        self.caller: Caller = authenticate_token(db, key.token)
        self.headers = {"Authorization": f"Bearer {key.token}"}

    def key_with(self, db: Database, scopes: list[str]) -> dict[str, str]:
        key = create_key(db, self.name, scopes=scopes)
        return {"Authorization": f"Bearer {key.token}"}


def make_tenant(db: Database, **kwargs: Any) -> Tenant:
    return Tenant(db, **kwargs)


def make_campaign(
    db: Database, tenant: Tenant, *, name: str | None = None, type: str = "GIFT", **fields: Any
) -> Campaign:
    body: dict[str, Any] = {"name": name or f"campaign-{secrets.token_hex(4)}", "type": type}
    if type in ("GIFT", "CASH"):
        body.setdefault("currency", "EUR")
        body.setdefault("default_value", 5000)
    if type == "DISCOUNT":
        body.setdefault("discount", {"type": "PERCENT", "percent_off": 10})
    body.update(fields)
    return create_campaign(db, tenant.caller, CampaignCreate.model_validate(body))


def issue(db: Database, tenant: Tenant, campaign: Campaign | str, **fields: Any) -> VoucherRecord:
    ref = campaign if isinstance(campaign, str) else campaign.id
    return issue_voucher(
        db, tenant.caller, IssueVoucher.model_validate({"campaign": ref, **fields})
    )
