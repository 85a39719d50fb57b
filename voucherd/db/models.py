"""Imports every feature's tables so that ``metadata`` is complete (Alembic, the schema test)."""

import voucherd.console.models
import voucherd.customers.models
import voucherd.delivery.models
import voucherd.guard.models
import voucherd.operations.models
import voucherd.orders.models
import voucherd.publications.models  # noqa: F401  (each registers its tables)
from voucherd.auth.models import ApiKey, IssuedValueBucket, Tenant
from voucherd.campaigns.models import Campaign, CampaignCustomer
from voucherd.idempotency.models import IdempotencyRecord
from voucherd.redemptions.models import Redemption
from voucherd.vouchers.models import LedgerEntry, Voucher, VoucherEvent

__all__ = [
    "ApiKey",
    "Campaign",
    "CampaignCustomer",
    "IdempotencyRecord",
    "IssuedValueBucket",
    "LedgerEntry",
    "Redemption",
    "Tenant",
    "Voucher",
    "VoucherEvent",
]
