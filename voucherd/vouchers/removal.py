"""Deleting a voucher that was never used (Voucherify's Delete Voucher).

voucherd keeps every voucher's history, so only a voucher with none worth keeping can go: never
redeemed and never sent to anyone (no redemption, no delivery). Its own rows go with it (its
ledger entries, its events, its place in publications), and the campaign keeps one ``deleted``
event saying which voucher went and who removed it. A voucher with history is refused: disable
or cancel it instead. Once deleted, its code is free to be created again, as Voucherify's
``force`` deletion allows.
"""

from __future__ import annotations

from sqlalchemy import delete, exists, insert, select

from voucherd.auth.caller import Caller
from voucherd.db.engine import Database
from voucherd.delivery.models import Delivery, DeliveryVoucher
from voucherd.errors import Conflict
from voucherd.publications.models import PublicationVoucher
from voucherd.redemptions.models import Redemption
from voucherd.vouchers.lookup import find_voucher
from voucherd.vouchers.models import LedgerEntry, Voucher, VoucherEvent


def delete_voucher(db: Database, caller: Caller, ref: str) -> None:
    caller.require("manage")
    now = db.now()
    with db.unit_of_work() as session:
        voucher = find_voucher(session, caller.tenant_id, ref).voucher
        used = session.scalar(
            select(
                exists().where(Redemption.voucher_id == voucher.id)
                | exists().where(Delivery.voucher_id == voucher.id)
                | exists().where(DeliveryVoucher.voucher_id == voucher.id)
            )
        )
        if used:
            raise Conflict(
                "this voucher has been redeemed or delivered; disable or cancel it instead, so "
                "its history stays",
                field="voucher",
            )
        for model in (PublicationVoucher, LedgerEntry, VoucherEvent):
            session.execute(delete(model).where(model.voucher_id == voucher.id))
        session.execute(delete(Voucher).where(Voucher.id == voucher.id))
        session.execute(
            insert(VoucherEvent).values(
                tenant_id=caller.tenant_id,
                campaign_id=voucher.campaign_id,
                kind="deleted",
                actor=caller.key_id,
                data={"voucher_id": voucher.id},
                created_at=now,
            )
        )
        session.commit()
