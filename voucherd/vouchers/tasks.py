"""Adding many vouchers to a campaign as an operation (Voucherify's async action).

The request that asks for them checks what every batch would check (the campaign, the value, the
dates) and starts an operation in the same transaction; a worker then mints the vouchers in
batches, each batch one transaction with its checkpoint (operations/steps.py), so progress is
visible while it runs and a worker that dies resumes after the last committed batch. Limits
(budget, weekly value, code space) are spent batch by batch: an operation stopped by one ends
Failed with the vouchers of the batches before it kept, and says how many those are.
"""

from __future__ import annotations

from typing import Any

from voucherd.auth.caller import Caller
from voucherd.campaigns.models import Campaign
from voucherd.db.engine import Database
from voucherd.errors import InvalidInput, NotFound
from voucherd.idempotency import service as idempotency
from voucherd.operations import steps
from voucherd.operations.models import Operation
from voucherd.operations.service import start_operation
from voucherd.operations.steps import Run
from voucherd.vouchers.mint import mint_in_session
from voucherd.vouchers.schemas import MintVouchers
from voucherd.vouchers.terms import campaign_for_issue, issue_terms

MINT_KIND = "mint"
MINT_STEP = 10_000  # vouchers per step: a few seconds of work, well inside a lease


def start_mint(
    db: Database,
    caller: Caller,
    campaign_ref: str,
    body: MintVouchers,
    *,
    idem: idempotency.IdempotencyClaim | None = None,
) -> Operation:
    """Accept a bulk mint to run in the background; refused now if it could not start."""
    caller.require("issue")
    if body.count > db.settings.max_bulk_count:
        raise InvalidInput(
            f"at most {db.settings.max_bulk_count} vouchers per request", field="count"
        )
    now = db.now()
    with db.unit_of_work() as session:
        idempotency.claim(session, db, caller.tenant_id, idem)
        campaign, _ = campaign_for_issue(session, caller.tenant_id, campaign_ref)
        issue_terms(campaign, body.value, body, now)
        operation = start_operation(
            session,
            tenant_id=caller.tenant_id,
            kind=MINT_KIND,
            parameters={
                "campaign_id": campaign.id,
                "campaign": campaign.name,
                "request": body.model_dump(mode="json", exclude_none=True),
            },
            actor=caller.key_id,
            now=now,
            total=body.count,
        )
        idempotency.bind_effect(session, caller.tenant_id, idem, "operation", operation.id)
        session.commit()
    return operation


def mint_step(db: Database, run: Run) -> bool:
    """Mint the next batch; True once every voucher asked for exists."""
    request = MintVouchers.model_validate(run.parameters["request"])
    size = min(MINT_STEP, request.count - run.done)
    done = run.done + size
    now = db.now()
    with db.unit_of_work() as session:
        campaign = session.get(Campaign, run.parameters["campaign_id"])
        if campaign is None or campaign.tenant_id != run.tenant_id:
            raise NotFound("the campaign no longer exists", field="campaign")
        if size > 0:
            mint_in_session(
                session,
                db,
                campaign,
                size,
                actor=run.actor or "operation",
                now=now,
                overrides=request,
                value=request.value,
            )
        if done >= request.count:
            result: dict[str, Any] = {
                "campaign_id": campaign.id,
                "campaign": campaign.name,
                "count": done,
            }
            steps.complete(
                session,
                run,
                now=now,
                done=done,
                total=request.count,
                result=result,
                entity_type="campaign",
                entity_id=campaign.id,
            )
        else:
            steps.advance(session, run, now=now, done=done, checkpoint={"done": done})
        session.commit()
    return done >= request.count
