"""Issuing one voucher, optionally to a customer and with a delivery.

The rules of what may be issued are in ``vouchers/terms.py``; the statement that writes the
voucher with its ledger entry, its event and its outbox row (one round trip on PostgreSQL) is in
``vouchers/sql.py``.
"""

from __future__ import annotations

from voucherd.auth.caller import Caller
from voucherd.codes.generator import is_mistyped
from voucherd.db.engine import Database
from voucherd.delivery.enqueue import automatic_delivery, plan_delivery
from voucherd.delivery.enqueue import tenant_settings as read_tenant_settings
from voucherd.delivery.schemas import RequestedDelivery
from voucherd.errors import Conflict, ErrorCode, InvalidInput, LimitReached
from voucherd.idempotency import service as idempotency
from voucherd.ids import new_id, new_public_tokens
from voucherd.observability import metrics
from voucherd.vouchers.limits import count_customer_issue
from voucherd.vouchers.models import Voucher
from voucherd.vouchers.schemas import IssueVoucher, VoucherRecord
from voucherd.vouchers.sql import insert_issued
from voucherd.vouchers.terms import (
    REDRAWS,
    campaign_and_tenant,
    check_capacity,
    detached,
    issue_terms,
    requested_value,
    spend_limits,
    voucher_row,
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
    if body.code is not None and is_mistyped(body.code):
        raise InvalidInput(
            "this code has the shape of a voucherd code but a wrong check character", field="code"
        )
    now = db.now()
    with db.unit_of_work() as session:
        idempotency.claim(session, db, caller.tenant_id, idem)
        campaign, weekly_limit, tenant_settings = campaign_and_tenant(
            session, caller.tenant_id, body.campaign, with_settings=body.delivery is not None
        )
        terms = issue_terms(campaign, requested_value(body, campaign), body, now)
        asked = body.delivery
        if asked is None and campaign_delivers:
            asked = automatic_delivery(
                campaign, recipient=body.recipient, customer_ref=body.customer_ref
            )
        count_customer_issue(session, campaign, body.customer_ref)
        spend_limits(session, terms, 1, weekly_limit, now)
        row = voucher_row(terms, now=now)
        row.update(
            id=new_id("v"),
            public_token=new_public_tokens(1)[0],
            customer_ref=body.customer_ref,
            holder_name=body.holder.name if body.holder else None,
            holder_address=body.holder.address if body.holder else None,
            holder_postcode=body.holder.postcode if body.holder else None,
        )
        event = {"value": terms.value, "customer_ref": body.customer_ref is not None}
        delivery = None
        if asked is not None:
            if tenant_settings is None:  # the campaign, not the request, asked for a delivery
                tenant_settings = read_tenant_settings(session, caller.tenant_id)
            delivery = plan_delivery(
                asked,
                tenant_settings,
                tenant_id=caller.tenant_id,
                voucher_id=row["id"],
                now=now,
                origin="issue",
            )
        if body.code is not None:
            row["code"] = body.code
            if not insert_issued(session, row, actor=caller.key_id, event=event, delivery=delivery):
                raise Conflict(
                    "this code is already in use", field="code", code=ErrorCode.DUPLICATE_CODE
                )
        else:
            spec = terms.spec
            check_capacity(session, db, campaign, spec, 1)
            for _ in range(REDRAWS):
                row["code"] = spec.generate(1)[0]
                if insert_issued(session, row, actor=caller.key_id, event=event, delivery=delivery):
                    break
            else:
                raise LimitReached(
                    "no free code could be drawn; the code space is nearly full",
                    field="campaign",
                    code=ErrorCode.CODE_SPACE_EXHAUSTED,
                )
        idempotency.bind_effect(session, caller.tenant_id, idem, "voucher", row["id"])
        session.commit()
    metrics.vouchers_issued("issue")
    requested = None
    if delivery is not None:
        requested = RequestedDelivery(delivery["id"], delivery["channel"], delivery["state"])
    voucher = detached(Voucher, row)
    return VoucherRecord(voucher, campaign.name, delivery=requested, campaign=campaign)
