"""The wiring of the package, in one place at the top: which tables, which background work,
which replay renderers, which gauges, and the database a command runs against.

Features offer what they have as plain values (a table class, a handler, ``REPLAY_RENDERERS``, a
gauge reader); this module imports them and puts them together. Nothing below the top imports
it: the app (``app.py``), the CLI (``cli.py``), the worker's starters and Alembic's ``env.py``
do, and hand what they need to the code they start. Importing it changes no other module's
state: ``metadata`` is complete because every table module has been imported, each table
registering itself as its class is defined.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from voucherd.auth import models as auth_models
from voucherd.auth.caller import Caller
from voucherd.campaigns import models as campaigns_models
from voucherd.campaigns import service as campaigns
from voucherd.campaigns.schemas import present_campaign
from voucherd.config import load_settings
from voucherd.console import models as console_models
from voucherd.customers import models as customers_models
from voucherd.customers.routes import REPLAY_RENDERERS as CUSTOMER_RENDERERS
from voucherd.db.base import metadata
from voucherd.db.engine import Database
from voucherd.db.migrate import upgrade
from voucherd.delivery import models as delivery_models
from voucherd.delivery.gauges import outbox_gauges
from voucherd.delivery.outbox import run_due_deliveries
from voucherd.delivery.routes import REPLAY_RENDERERS as DELIVERY_RENDERERS
from voucherd.exports.tasks import export_step
from voucherd.guard import models as guard_models
from voucherd.idempotency import models as idempotency_models
from voucherd.idempotency.service import Renderer
from voucherd.imports import models as imports_models
from voucherd.imports.service import IMPORT_KIND
from voucherd.imports.tasks import import_step
from voucherd.observability.collector import GaugeReader
from voucherd.operations import models as operations_models
from voucherd.operations import runner
from voucherd.operations.gauges import operation_gauges
from voucherd.operations.routes import REPLAY_RENDERERS as OPERATION_RENDERERS
from voucherd.orders import models as orders_models
from voucherd.orders.distributions import DISTRIBUTION_KIND
from voucherd.orders.routes import REPLAY_RENDERERS as ORDER_RENDERERS
from voucherd.orders.service import ORDER_KIND
from voucherd.orders.tasks import distribution_step, order_step
from voucherd.publications import models as publications_models
from voucherd.publications.routes import REPLAY_RENDERERS as PUBLICATION_RENDERERS
from voucherd.redemptions import models as redemptions_models
from voucherd.redemptions import service as redemptions
from voucherd.redemptions.schemas import present_redemption
from voucherd.vouchers import limits as vouchers_limits
from voucherd.vouchers import models as vouchers_models
from voucherd.vouchers import service as vouchers
from voucherd.vouchers.schemas import present_voucher
from voucherd.vouchers.tasks import MINT_KIND, mint_step
from voucherd.webhooks import models as webhooks_models
from voucherd.webhooks.gauges import webhook_gauges
from voucherd.webhooks.routes import REPLAY_RENDERERS as WEBHOOK_RENDERERS
from voucherd.webhooks.tasks import run_due_webhooks
from voucherd.worker.jobs import Job

__all__ = [
    "GAUGES",
    "HANDLERS",
    "JOBS",
    "RENDERERS",
    "TABLE_MODULES",
    "metadata",
    "open_database",
    "run_due_operations",
]

# --- (a) every table: `metadata` is complete once this module is imported --------------------

# Each module defines tables (the weekly-limit buckets live beside the code spending them).
TABLE_MODULES = (
    auth_models,
    campaigns_models,
    console_models,
    customers_models,
    delivery_models,
    guard_models,
    idempotency_models,
    imports_models,
    operations_models,
    orders_models,
    publications_models,
    redemptions_models,
    vouchers_limits,
    vouchers_models,
    webhooks_models,
)

# --- (b) background work: operation handlers and the worker's jobs ----------------------------

HANDLERS: dict[str, runner.Handler] = {
    "export": export_step,
    IMPORT_KIND: import_step,
    MINT_KIND: mint_step,
    ORDER_KIND: order_step,
    DISTRIBUTION_KIND: distribution_step,
}


def run_due_operations(db: Database, worker_id: str, stop: threading.Event) -> int:
    """The worker's operations job: :func:`runner.run_due_operations` with every handler."""
    return runner.run_due_operations(db, worker_id, stop, HANDLERS)


JOBS: tuple[Job, ...] = (run_due_deliveries, run_due_operations, run_due_webhooks)

# --- (c) answers to idempotent replays whose stored response was lost --------------------------


def _voucher(db: Database, tenant: str, voucher_id: str, _: str) -> tuple[int, dict[str, Any]]:
    record = vouchers.get_voucher(db, Caller(tenant, "replay"), voucher_id)
    return 201, present_voucher(record, now=db.now(), base_url=db.settings.public_base_url)


def _redemption(
    db: Database, tenant: str, redemption_id: str, action: str
) -> tuple[int, dict[str, Any]]:
    record = redemptions.get_redemption(db, Caller(tenant, "replay"), redemption_id)
    return (200 if action == "rollback" else 201), present_redemption(record)


def _campaign(db: Database, tenant: str, campaign_id: str, _: str) -> tuple[int, dict[str, Any]]:
    return 201, present_campaign(campaigns.get_campaign(db, Caller(tenant, "replay"), campaign_id))


def _mint(db: Database, tenant: str, campaign_id: str, count: str) -> tuple[int, dict[str, Any]]:
    return 201, {"object": "mint", "campaign_id": campaign_id, "count": int(count)}


def _one_each(*offers: Mapping[str, Renderer]) -> dict[str, Renderer]:
    """The features' renderers together; two claiming one resource type is a wiring mistake,
    refused here rather than one silently answering for the other."""
    merged: dict[str, Renderer] = {}
    for offer in offers:
        clash = merged.keys() & offer.keys()
        if clash:
            raise RuntimeError(f"two replay renderers for {sorted(clash)}")
        merged.update(offer)
    return merged


RENDERERS: dict[str, Renderer] = _one_each(
    {"voucher": _voucher, "redemption": _redemption, "campaign": _campaign, "mint": _mint},
    CUSTOMER_RENDERERS,
    DELIVERY_RENDERERS,
    OPERATION_RENDERERS,
    ORDER_RENDERERS,
    PUBLICATION_RENDERERS,
    WEBHOOK_RENDERERS,
)

# --- gauges read from the database at each scrape of /metrics ----------------------------------

GAUGES: tuple[GaugeReader, ...] = (outbox_gauges, operation_gauges, webhook_gauges)

# --- (d) the database a CLI command runs against -----------------------------------------------


@contextmanager
def open_database() -> Iterator[Database]:
    """The configured database, migrated, and closed again when the command ends. The root
    command hands this opener to every sub-command in ``ctx.obj`` (voucherd/cli.py)."""
    db = Database.from_settings(load_settings())
    try:
        upgrade(db.engine)
        yield db
    finally:
        db.dispose()
