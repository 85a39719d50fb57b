"""Typed factories, keyword-only, one per thing a test needs. They call the real services."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from voucherd.auth.service import Caller, authenticate_token, create_key, create_tenant
from voucherd.campaigns.models import Campaign
from voucherd.campaigns.schemas import CampaignCreate
from voucherd.db.engine import Database
from voucherd.redemptions.schemas import RedeemRequest, RedemptionRecord
from voucherd.redemptions.service import redeem
from voucherd.vouchers.issue import issue_voucher
from voucherd.vouchers.mint import create_campaign
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


# Helpers of the HTTP suites (redemptions, errors, isolation, idempotency).

COUNTED_TABLES = (
    "campaign",
    "voucher",
    "redemption",
    "ledger_entry",
    "voucher_event",
    "idempotency_record",
)


def count_rows(db: Database, *, tables: Sequence[str] = COUNTED_TABLES) -> dict[str, int]:
    """Rows per table; each test runs in its own rolled-back transaction, so these are its own."""
    with db.unit_of_work(write=False) as session:
        return {t: int(session.scalar(text(f"SELECT count(*) FROM {t}")) or 0) for t in tables}


def ledger_and_balance(db: Database, *, voucher_id: str) -> tuple[int, int | None]:
    """The sum of a voucher's ledger rows and its cached balance column, read together."""
    with db.unit_of_work(write=False) as session:
        total = session.scalar(
            text("SELECT coalesce(sum(delta), 0) FROM ledger_entry WHERE voucher_id = :v"),
            {"v": voucher_id},
        )
        balance = session.scalar(
            text("SELECT balance FROM voucher WHERE id = :v"), {"v": voucher_id}
        )
    return int(total or 0), None if balance is None else int(balance)


def refuse_server_errors(client: TestClient) -> TestClient:
    """Make any 5xx answer fail the request that received it, inside the test's own call.

    The check wraps ``request`` (which every verb goes through) rather than using a response
    hook, so a failure's traceback stays a few frames deep and cheap to report.
    """
    send = client.request

    def request(*args: Any, **kwargs: Any) -> Any:
        response = send(*args, **kwargs)
        if response.status_code >= 500:
            raise AssertionError(
                f"{response.request.method} {response.request.url.path} answered "
                f"{response.status_code}: {response.text}"
            )
        return response

    client.request = request  # type: ignore[method-assign]
    return client


def make_redemption(
    db: Database, tenant: Tenant, *, code: str, amount: int | None = None, **fields: Any
) -> RedemptionRecord:
    body = RedeemRequest.model_validate({"code": code, "amount": amount, **fields})
    return redeem(db, tenant.caller, body)
