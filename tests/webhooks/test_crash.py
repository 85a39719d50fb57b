"""Worker processes killed with SIGKILL mid-batch lose no event message; a message sent but not
recorded goes out once more, with the same webhook-id, and a voucher's events stay in order."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable

import pytest
from sqlalchemy import func, select

from tests.factories.campaigns import make_campaign
from tests.factories.redemptions import make_redemption
from tests.factories.tenants import make_tenant
from tests.factories.vouchers import issue
from tests.support.webhooks import Receiver
from voucherd.db.engine import Database
from voucherd.webhooks.models import EVENT_TYPES, WebhookMessage
from voucherd.webhooks.schemas import EndpointCreate
from voucherd.webhooks.service import create_endpoint

VOUCHERS = 80  # each issued and redeemed: two messages per voucher
KILLS = 5
DEADLINE = 90.0


def wait_for(condition: Callable[[], bool], what: str) -> None:
    until = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > until:
            raise AssertionError(f"not within {DEADLINE:.0f}s: {what}")
        time.sleep(0.02)


def states(db: Database) -> Counter[str]:
    with db.unit_of_work(write=False) as session:
        rows = session.execute(
            select(WebhookMessage.state, func.count()).group_by(WebhookMessage.state)
        ).all()
    return Counter({state: int(n) for state, n in rows})


def worker_process(db: Database) -> subprocess.Popen[bytes]:
    """``voucherd worker`` in a child process: one message in flight, a short lease."""
    env = {
        **os.environ,
        "VOUCHERD_DATABASE_URL": db.settings.database_url,
        "VOUCHERD_WORKER_POLL_SECONDS": "0.05",
        "VOUCHERD_LOG_LEVEL": "WARNING",
        "VOUCHERD_ALLOW_HTTP_WEBHOOKS": "true",
        "VOUCHERD_ALLOW_LOOPBACK_WEBHOOKS": "true",
        "VOUCHERD_DELIVERY_LEASE_SECONDS": "1.5",
        "VOUCHERD_DELIVERY_CONCURRENCY": "1",
        "VOUCHERD_DELIVERY_BATCH_SIZE": "10",
        "VOUCHERD_WEBHOOK_MAX_ATTEMPTS": "100",
        # A send that fails on a loaded machine (a timeout) is retried soon, not after the
        # default backoff (10 s, doubling per failure, a killed claim counting as one), which
        # could outlast the test's deadline. Backoff is not what this proves.
        "VOUCHERD_DELIVERY_BACKOFF_SECONDS": "0.05",
        "VOUCHERD_DELIVERY_BACKOFF_MAX_SECONDS": "0.5",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "voucherd", "worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def stop(process: subprocess.Popen[bytes]) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        out, _ = process.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
    return out.decode(errors="replace")


class TestCrash:
    def test_killed_workers_lose_nothing_and_resend_with_the_same_id(
        self, backend: str, fresh_database: Callable[..., Database], receiver: Receiver
    ) -> None:
        if backend != "postgresql":
            pytest.skip("many worker processes share one database on PostgreSQL")
        db = fresh_database(pool_size=4)
        tenant = make_tenant(db)
        shown = create_endpoint(
            db,
            tenant.caller,
            EndpointCreate(url=receiver.url, events=["voucher.issued", "voucher.redeemed"]),
        )
        assert set(shown.events) <= set(EVENT_TYPES)
        receiver.secret = shown.secret or ""
        campaign = make_campaign(db, tenant)
        for _ in range(VOUCHERS):
            code = issue(db, tenant, campaign).voucher.code
            make_redemption(db, tenant, code=code, amount=100)
        total = 2 * VOUCHERS
        assert states(db) == Counter({"PENDING": total})
        receiver.delay = 0.003  # so a kill often lands mid-send

        workers = [worker_process(db) for _ in range(2)]
        rng = random.Random(20261206)
        kills = 0
        try:
            while kills < KILLS:
                target = len(receiver.hooks) + rng.randint(10, 30)
                wait_for(
                    lambda t=target: len(receiver.hooks) >= t or states(db)["DELIVERED"] == total,
                    "the workers made progress",
                )
                if states(db)["DELIVERED"] == total:
                    break
                victim = workers.pop(rng.randrange(len(workers)))
                victim.kill()  # SIGKILL: no cleanup, no release
                victim.communicate()
                kills += 1
                workers.append(worker_process(db))
            wait_for(lambda: states(db)["DELIVERED"] == total, "every message was delivered")
        finally:
            outputs = [stop(w) for w in workers]

        assert kills >= 3, f"only {kills} kills before the work ran out"
        # A worker told to stop while still importing dies of SIGTERM before its handler is in
        # place; none may stop any other way.
        assert all(w.returncode in (0, -signal.SIGTERM) for w in workers), outputs
        assert receiver.forged == 0
        with db.unit_of_work(write=False) as session:
            event_ids = set(session.scalars(select(WebhookMessage.event_id)))
        received = Counter(h.webhook_id for h in receiver.hooks)
        assert set(received) == event_ids, "an event never reached the endpoint"
        assert sum(received.values()) - total <= kills  # at most the one in hand per kill
        first_seen: dict[str, list[str]] = {}
        seen: set[str] = set()
        for hook in receiver.hooks:
            if hook.webhook_id in seen:
                continue
            seen.add(hook.webhook_id)
            first_seen.setdefault(hook.payload["data"]["object"]["id"], []).append(hook.type)
        assert all(t == ["voucher.issued", "voucher.redeemed"] for t in first_seen.values())
