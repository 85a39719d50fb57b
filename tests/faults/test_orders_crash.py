"""Orders under fire: a worker SIGKILLed in the middle of a 200,000-voucher order, and ten
orders placed at once by ten clients, on committed databases."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from sqlalchemy import func, select

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.support.concurrency import run_together
from voucherd.composition import run_due_operations
from voucherd.db.engine import Database
from voucherd.operations.models import Operation
from voucherd.orders.clients import create_client
from voucherd.orders.models import ClientOrderBatch, ClientOrderItem
from voucherd.orders.schemas import ClientCreate, OrderCreate, OrderRecord
from voucherd.orders.service import MINT_BATCH, place_order
from voucherd.publications.models import PublicationVoucher
from voucherd.vouchers.models import LedgerEntry, Voucher

BIG_ORDER = 200_000  # the acceptance's size, on PostgreSQL
SQLITE_ORDER = 60_000  # SQLite proves the same in three batches, in a third of the time
WAIT_SECONDS = 240.0  # a guard against hanging, not a measurement


def order_of(db: Database, tenant: Tenant, client: str, product: str, count: int) -> OrderRecord:
    body = OrderCreate.model_validate(
        {"client": client, "items": [{"product": product, "quantity": count}]}
    )
    return place_order(db, tenant.caller, body)


def worker(db: Database) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "VOUCHERD_DATABASE_URL": db.settings.database_url,
        "VOUCHERD_WORKER_POLL_SECONDS": "0.05",
        "VOUCHERD_LOG_LEVEL": "WARNING",
        # A dead worker's order is taken up this soon after its last batch.
        "VOUCHERD_OPERATION_LEASE_SECONDS": "2",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "voucherd", "worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def progress(db: Database, operation_id: str) -> tuple[str, int, int]:
    with db.unit_of_work(write=False) as session:
        row = session.execute(
            select(Operation.status, Operation.done, Operation.attempts).where(
                Operation.id == operation_id
            )
        ).one()
    return str(row[0]), int(row[1]), int(row[2])


def wait_for(
    db: Database,
    operation_id: str,
    until: Callable[[str, int], bool],
    process: subprocess.Popen[bytes],
) -> tuple[str, int]:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        status, done, _ = progress(db, operation_id)
        if until(status, done):
            return status, done
        if process.poll() is not None:
            raise AssertionError(f"the worker exited:\n{process.communicate()[0].decode()}")
        time.sleep(0.01)
    process.kill()
    process.communicate()
    raise AssertionError(f"no progress to the awaited point within {WAIT_SECONDS}s")


def minted(db: Database, order_id: str) -> tuple[int, int, int, int]:
    """(vouchers, distinct codes, opening ledger entries, batch rows) of the order."""
    with db.unit_of_work(write=False) as session:
        in_order = (
            select(PublicationVoucher.voucher_id)
            .join(
                ClientOrderItem, ClientOrderItem.publication_id == PublicationVoucher.publication_id
            )
            .where(ClientOrderItem.order_id == order_id)
        )
        vouchers, codes = session.execute(
            select(func.count(), func.count(func.distinct(Voucher.code))).where(
                Voucher.id.in_(in_order)
            )
        ).one()
        ledger = session.scalar(select(func.count()).where(LedgerEntry.voucher_id.in_(in_order)))
        batches = session.scalar(select(func.count()).where(ClientOrderBatch.order_id == order_id))
    return int(vouchers), int(codes), int(ledger or 0), int(batches or 0)


class TestSigkill:
    def test_a_killed_worker_is_resumed_and_the_order_has_exactly_its_vouchers(
        self, fresh_database: Callable[..., Database]
    ) -> None:
        db = fresh_database(pool_size=4)
        tenant = make_tenant(db)
        make_campaign(db, tenant, name="Cinema", type="GIFT", default_value=1500)
        create_client(
            db, tenant.caller, ClientCreate(code="BIG", name="Big", voucher_types=["Cinema"])
        )
        size = BIG_ORDER if db.is_postgresql else SQLITE_ORDER
        order = order_of(db, tenant, "BIG", "Cinema", size)
        operation_id = order.operation.id

        first = worker(db)
        wait_for(db, operation_id, lambda s, d: d >= MINT_BATCH, first)
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=60)

        status, at_kill, _ = progress(db, operation_id)
        assert status == "Processing"
        assert 0 < at_kill < size, "killed too late to prove anything"
        # What committed is whole batches, each with its progress: nothing half-written.
        vouchers, codes, ledger, batches = minted(db, order.order.id)
        assert vouchers == codes == ledger == at_kill == batches * MINT_BATCH

        second = worker(db)
        try:
            wait_for(db, operation_id, lambda s, d: s != "Processing", second)
        finally:
            second.send_signal(signal.SIGTERM)
            second.communicate(timeout=60)

        status, done, attempts = progress(db, operation_id)
        assert (status, done) == ("Completed", size)
        assert attempts == 1  # the abandoned run counts as one failed attempt
        assert minted(db, order.order.id) == (size, size, size, size // MINT_BATCH)
        with db.unit_of_work(write=False) as session:
            assert session.scalar(select(func.count()).select_from(Voucher)) == size


class TestTenOrdersAtOnce:
    def test_all_complete_and_no_code_is_minted_twice(
        self, fresh_database: Callable[..., Database]
    ) -> None:
        db = fresh_database(pool_size=40)
        tenant = make_tenant(db)
        make_campaign(db, tenant, name="Cinema", type="GIFT", default_value=1500)
        make_campaign(db, tenant, name="Popcorn", type="CASH", default_value=500)
        for n in range(10):
            create_client(
                db,
                tenant.caller,
                ClientCreate(code=f"C{n}", name=f"Client {n}", voucher_types=["Cinema", "Popcorn"]),
            )
        sizes = [500 + 137 * n for n in range(10)]

        placed = run_together(
            [
                (lambda n=n: order_of(db, tenant, f"C{n}", ("Cinema", "Popcorn")[n % 2], sizes[n]))
                for n in range(10)
            ]
        )
        stop = threading.Event()
        run_together(
            [
                (lambda w=w: [run_due_operations(db, f"w{w}", stop) for _ in range(50)])
                for w in range(3)
            ]
        )

        for record, size in zip(placed, sizes, strict=True):
            status, done, _ = progress(db, record.operation.id)
            assert (status, done) == ("Completed", size)
            vouchers, codes, _, _ = minted(db, record.order.id)
            assert vouchers == codes == size
        with db.unit_of_work(write=False) as session:
            total, distinct = session.execute(
                select(func.count(), func.count(func.distinct(Voucher.code)))
            ).one()
        assert total == distinct == sum(sizes)
