"""Workers for real: the thread ``voucherd serve`` runs, ``voucherd worker`` processes stopped by
SIGTERM, and the crash test: worker processes SIGKILLed over and over while they deliver."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import make_tenant
from tests.support.delivery import (
    PHONE,
    Answer,
    Provider,
    configure,
    settings_for,
    sms_settings,
    with_all_channels,
)
from voucherd.app import create_app
from voucherd.auth.caller import Caller
from voucherd.config import Settings
from voucherd.db.engine import Database
from voucherd.delivery.enqueue import request_delivery
from voucherd.delivery.models import Delivery
from voucherd.delivery.schemas import DeliveryRequest
from voucherd.vouchers.mint import mint_vouchers
from voucherd.vouchers.models import Voucher
from voucherd.vouchers.schemas import MintVouchers

# A condition that has not come true by then never will (a stuck worker): fail, don't hang.
DEADLINE = 60.0


@pytest.fixture
def settings(provider: Provider) -> Settings:
    return settings_for(provider, worker_poll_seconds=0.05)


def wait_for(condition: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    until = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > until:
            raise AssertionError(f"not within {deadline:.0f}s: {what}")
        time.sleep(0.02)


def states(db: Database) -> Counter[str]:
    with db.unit_of_work(write=False) as session:
        rows = session.execute(select(Delivery.state, func.count()).group_by(Delivery.state)).all()
    return Counter({state: int(n) for state, n in rows})


def enqueue(db: Database, caller: Caller, campaign_id: str, count: int, channel: str) -> list[str]:
    """``count`` vouchers, each with a delivery, through the real services."""
    mint_vouchers(db, caller, campaign_id, MintVouchers(count=count))
    recipient = PHONE if channel == "phone" else None
    request = DeliveryRequest.model_validate({"channel": channel, "recipient": recipient})
    with db.unit_of_work() as session:
        voucher_ids = session.scalars(
            select(Voucher.id).where(Voucher.campaign_id == campaign_id).order_by(Voucher.id)
        ).all()
        made = [
            request_delivery(
                session,
                tenant_id=caller.tenant_id,
                voucher_id=voucher_id,
                request=request,
                now=db.now(),
            ).id
            for voucher_id in voucher_ids
        ]
        session.commit()
    return made


def worker_process(db: Database, provider: Provider, **settings: object) -> subprocess.Popen[bytes]:
    """``voucherd worker`` in a child process on ``db``'s database."""
    env = {
        **os.environ,
        "VOUCHERD_DATABASE_URL": db.settings.database_url,
        "VOUCHERD_PUBLIC_BASE_URL": db.settings.public_base_url,
        "VOUCHERD_TWILIO_BASE_URL": provider.url,
        "VOUCHERD_WORKER_POLL_SECONDS": "0.05",
        "VOUCHERD_LOG_LEVEL": "WARNING",
    }
    env.update({f"VOUCHERD_{k.upper()}": str(v) for k, v in settings.items()})
    return subprocess.Popen(
        [sys.executable, "-m", "voucherd", "worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def catches_sigterm(process: subprocess.Popen[bytes]) -> bool:
    """Whether ``process`` has its SIGTERM handler in place (Linux: the SigCgt mask of
    /proc/PID/status). Until then a SIGTERM kills it outright: a worker still importing."""
    try:
        status = Path(f"/proc/{process.pid}/status").read_text()
    except OSError:  # gone
        return False
    caught = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught, 16) >> (signal.SIGTERM - 1) & 1)


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> str:
    """Signal ``process`` and wait for it; its output."""
    if process.poll() is None:
        process.send_signal(sig)
    try:
        out, _ = process.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
        raise AssertionError(f"the worker ignored signal {sig}:\n{out.decode()}") from None
    return out.decode(errors="replace")


class TestInProcessWorker:
    def test_serve_delivers_without_a_separate_worker(
        self, fresh_database: Callable[..., Database], provider: Provider
    ) -> None:
        db = fresh_database(pool_size=4)
        tenant = make_tenant(db)
        with_all_channels(db, tenant, provider)
        campaign = make_campaign(db, tenant)
        app = create_app(db.settings.model_copy(update={"in_process_worker": True}), db=db)

        with TestClient(app) as client:
            issued = client.post(
                "/api/v1/vouchers",
                headers=tenant.headers,
                json={"campaign": campaign.id, "delivery": {"channel": "webhook"}},
            )
            assert issued.status_code == 201, issued.text
            wait_for(lambda: states(db)["DELIVERED"] == 1, "the webhook delivered")

        assert provider.of("webhook")[0].headers["webhook-id"] == issued.json()["delivery"]["id"]

    def test_off_unless_asked_for(self, db: Database, provider: Provider) -> None:
        tenant = make_tenant(db)
        with_all_channels(db, tenant, provider)
        campaign = make_campaign(db, tenant)
        app = create_app(db.settings, db=db)

        with TestClient(app) as client:
            client.post(
                "/api/v1/vouchers",
                headers=tenant.headers,
                json={"campaign": campaign.id, "delivery": {"channel": "webhook"}},
            )

        assert states(db) == Counter({"PENDING": 1})
        assert provider.received == []


class TestWorkerProcess:
    def test_sigterm_finishes_the_send_in_hand_and_releases_the_rest(
        self, fresh_database: Callable[..., Database], provider: Provider
    ) -> None:
        db = fresh_database(pool_size=4)
        tenant = make_tenant(db)
        with_all_channels(db, tenant, provider)
        campaign = make_campaign(db, tenant)
        ids = enqueue(db, tenant.caller, campaign.id, 5, "webhook")
        # The first send takes a while: SIGTERM arrives while it is in flight.
        provider.script("webhook", Answer(200, {"ok": True}, delay=1.0))
        worker = worker_process(db, provider, delivery_batch_size=5, delivery_concurrency=1)

        wait_for(lambda: len(provider.received) == 1, "the first webhook arrived")
        output = stop(worker)

        assert worker.returncode == 0, output
        assert "SIGTERM stops it cleanly" in output
        assert len(provider.received) == 1
        assert states(db) == Counter({"DELIVERED": 1, "PENDING": 4})
        with db.unit_of_work(write=False) as session:
            held = session.scalars(
                select(Delivery.id).where(Delivery.lease_owner.is_not(None))
            ).all()
        assert held == []
        assert set(ids) >= {provider.received[0].headers["webhook-id"]}

    def test_refuses_an_unmigrated_database(self, tmp_path: object, provider: Provider) -> None:
        env = {**os.environ, "VOUCHERD_DATABASE_URL": f"sqlite:///{tmp_path}/empty.db"}
        done = subprocess.run(
            [sys.executable, "-m", "voucherd", "worker"],
            env=env,
            capture_output=True,
            timeout=DEADLINE,
            check=False,
        )
        assert done.returncode == 1
        assert b"voucherd migrate" in done.stderr


# Twelve kills, each after 40 to 120 more sends (the seeded draws add up to 1,124 sends by the
# twelfth): enough deliveries that the kills all land while work remains, and a margin after
# them (the overshoot of each wait, the resends) without a long tail that proves nothing more.
CRASH_DELIVERIES = 1400
KILLS = 12


class TestCrash:
    def test_workers_killed_again_and_again_lose_nothing(
        self, backend: str, fresh_database: Callable[..., Database], provider: Provider
    ) -> None:
        if backend != "postgresql":
            pytest.skip("many worker processes share one database on PostgreSQL")
        db = fresh_database(pool_size=4)
        tenant = make_tenant(db)
        configure(db, tenant, phone_channel="sms", sms=sms_settings())
        campaign = make_campaign(db, tenant)
        ids = enqueue(db, tenant.caller, campaign.id, CRASH_DELIVERIES, "phone")
        provider.delay = 0.002  # so a kill often lands mid-send
        # One send in flight per worker: a kill can leave at most one message sent but not
        # recorded, which is the one that may go out twice.
        knobs = {
            "delivery_lease_seconds": 1.5,
            "delivery_concurrency": 1,
            "delivery_batch_size": 10,
            "delivery_max_attempts": 100,
            # A send that fails on a loaded machine (a timeout) is retried soon: with the
            # default backoff (10 s, doubling per failure, a killed claim counting as one) the
            # last delivery could sit out the test's deadline. Backoff is not what this proves.
            "delivery_backoff_seconds": 0.05,
            "delivery_backoff_max_seconds": 0.5,
        }
        workers = [worker_process(db, provider, **knobs) for _ in range(2)]
        rng = random.Random(20261122)
        kills = 0
        try:
            while kills < KILLS:
                target = len(provider.received) + rng.randint(40, 120)

                def progressed(target: int = target) -> bool:
                    return (
                        len(provider.received) >= target or states(db)["SENT"] == CRASH_DELIVERIES
                    )

                wait_for(progressed, "the workers made progress")
                if states(db)["SENT"] == CRASH_DELIVERIES:
                    break
                victim = workers.pop(rng.randrange(len(workers)))
                victim.kill()  # SIGKILL: no cleanup, no release, no goodbye
                victim.communicate()
                kills += 1
                workers.append(worker_process(db, provider, **knobs))
            wait_for(lambda: states(db)["SENT"] == CRASH_DELIVERIES, "every delivery reached SENT")
            # The last one started may still be importing when the work runs out: it is stopped
            # once it listens for SIGTERM, as an operator's stop would find it.
            for worker in workers:
                wait_for(
                    lambda w=worker: w.poll() is not None or catches_sigterm(w),
                    "a worker's SIGTERM handler was in place",
                )
        finally:
            outputs = [stop(w) for w in workers]

        assert kills >= 10, f"only {kills} kills before the work ran out"
        assert all(w.returncode == 0 for w in workers), outputs
        assert states(db) == Counter({"SENT": CRASH_DELIVERIES})
        sent = Counter(
            parse_qs(urlsplit(r.form()["StatusCallback"]).query)["delivery"][0]
            for r in provider.of("sms")
        )
        assert set(sent) == set(ids), "a delivery never reached the provider"
        assert max(sent.values()) <= 1 + kills
        assert sum(sent.values()) <= CRASH_DELIVERIES + kills
        with db.unit_of_work(write=False) as session:
            recorded = session.scalars(select(Delivery.provider_message_id)).all()
        assert None not in recorded
