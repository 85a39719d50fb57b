"""The outbox under faults: retries with backoff, permanent failures, timeouts, the attempt cap,
lost leases and the fencing token, a clean stop, and what a send may never write to the logs."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

import pytest

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.factories.vouchers import issue
from tests.support.clock import FakeClock
from tests.support.delivery import (
    PHONE,
    TWILIO_TOKEN,
    Answer,
    Provider,
    configure,
    deliver_due,
    delivery_row,
    events_of,
    settings_for,
    sms_settings,
    with_all_channels,
)
from voucherd.config import Settings
from voucherd.db.engine import Database
from voucherd.delivery import outbox
from voucherd.vouchers.schemas import VoucherRecord
from voucherd.vouchers.service import cancel_voucher

TWILIO_400 = {
    "code": 21211,
    "message": "The 'To' number is not a valid phone number.",
    "status": 400,
}


@pytest.fixture
def settings(provider: Provider) -> Settings:
    return settings_for(
        provider,
        delivery_max_attempts=4,
        delivery_backoff_seconds=10,
        delivery_backoff_max_seconds=600,
        delivery_lease_seconds=30,
        delivery_timeout_seconds=0.3,
    )


def _sms(db: Database, tenant: Tenant, **campaign: Any) -> tuple[VoucherRecord, str]:
    configure(db, tenant, phone_channel="sms", sms=sms_settings())
    made = make_campaign(db, tenant, **campaign)
    record = issue(db, tenant, made, delivery={"channel": "phone", "recipient": PHONE})
    assert record.delivery is not None
    return record, record.delivery.id


class TestTransientFailures:
    def test_500_then_200_is_sent_on_a_later_attempt(
        self, db: Database, provider: Provider, clock: FakeClock
    ) -> None:
        _, delivery_id = _sms(db, make_tenant(db))
        provider.script("sms", Answer(500, {"message": "upstream trouble"}))

        deliver_due(db)

        row = delivery_row(db, delivery_id)
        assert (row.state, row.failures) == ("PENDING", 1)
        assert row.last_error == "HTTP 500: upstream trouble"
        assert row.due_at is not None
        # Equal jitter: between half and all of the first backoff (10 s).
        assert clock() + timedelta(seconds=5) <= row.due_at <= clock() + timedelta(seconds=10)
        assert deliver_due(db) == 0  # not due yet

        clock.advance(seconds=10)
        deliver_due(db)

        row = delivery_row(db, delivery_id)
        assert (row.state, row.attempt, row.last_error) == ("SENT", 2, None)
        assert len(provider.of("sms")) == 2
        assert events_of(db, delivery_id) == [
            (None, "PENDING", 0),
            ("PENDING", "SENDING", 1),
            ("SENDING", "PENDING", 1),
            ("PENDING", "SENDING", 2),
            ("SENDING", "SENT", 2),
        ]

    def test_a_timeout_is_retried(self, db: Database, provider: Provider, clock: FakeClock) -> None:
        _, delivery_id = _sms(db, make_tenant(db))
        provider.script("sms", Answer(201, {"sid": "SMslow"}, delay=1.0))

        deliver_due(db)

        row = delivery_row(db, delivery_id)
        assert (row.state, row.failures, row.last_error) == ("PENDING", 1, "timeout: ReadTimeout")
        clock.advance(seconds=10)
        deliver_due(db)
        assert delivery_row(db, delivery_id).state == "SENT"

    def test_429_waits_at_least_retry_after(
        self, db: Database, provider: Provider, clock: FakeClock
    ) -> None:
        _, delivery_id = _sms(db, make_tenant(db))
        provider.script(
            "sms", Answer(429, {"message": "Too Many Requests"}, {"Retry-After": "120"})
        )

        deliver_due(db)

        row = delivery_row(db, delivery_id)
        assert row.state == "PENDING"
        assert row.due_at == clock() + timedelta(seconds=120)
        clock.advance(seconds=119)
        assert deliver_due(db) == 0
        clock.advance(seconds=1)
        assert deliver_due(db) == 1

    def test_the_attempts_are_capped(
        self, db: Database, provider: Provider, clock: FakeClock
    ) -> None:
        _, delivery_id = _sms(db, make_tenant(db))
        provider.script("sms", *[Answer(503, {"message": "down"}) for _ in range(4)])

        for _ in range(4):
            deliver_due(db)
            clock.advance(seconds=600)

        row = delivery_row(db, delivery_id)
        assert (row.state, row.attempt, row.failures) == ("FAILED", 4, 4)
        assert row.last_error == "gave up after 4 failed attempts; the last: HTTP 503: down"
        assert deliver_due(db) == 0
        assert len(provider.of("sms")) == 4

    def test_a_refused_connection_is_transient(
        self, db: Database, provider: Provider, settings: Settings
    ) -> None:
        _, delivery_id = _sms(db, make_tenant(db))
        nowhere = Database(
            db.engine,
            settings=settings.model_copy(update={"twilio_base_url": "http://127.0.0.1:9"}),
            bind=db._bind,
            clock=db.clock,
        )

        deliver_due(nowhere)

        row = delivery_row(db, delivery_id)
        assert (row.state, row.last_error) == ("PENDING", "connection error: ConnectError")


class TestPermanentFailures:
    def test_400_fails_after_one_attempt_with_the_providers_reason(
        self, db: Database, provider: Provider, clock: FakeClock
    ) -> None:
        _, delivery_id = _sms(db, make_tenant(db))
        provider.script("sms", Answer(400, TWILIO_400))

        deliver_due(db)

        row = delivery_row(db, delivery_id)
        assert (row.state, row.attempt) == ("FAILED", 1)
        assert row.last_error == (
            "HTTP 400: The 'To' number is not a valid phone number. (Twilio error 21211)"
        )
        clock.advance(days=1)
        assert deliver_due(db) == 0
        assert len(provider.of("sms")) == 1

    def test_a_template_that_cannot_render_fails_with_the_variable(
        self, db: Database, provider: Provider
    ) -> None:
        _, delivery_id = _sms(
            db, make_tenant(db), message_templates={"sms": {"text": "Hi {{ nickname }}"}}
        )

        deliver_due(db)

        row = delivery_row(db, delivery_id)
        assert row.state == "FAILED"
        assert row.last_error == (
            "the message template failed: UndefinedError: 'nickname' is undefined"
        )
        assert provider.received == []

    def test_a_voucher_cancelled_before_sending_is_not_sent(
        self, db: Database, provider: Provider
    ) -> None:
        tenant = make_tenant(db)
        record, delivery_id = _sms(db, tenant)
        cancel_voucher(db, tenant.caller, record.voucher.id, "ordered by mistake")

        deliver_due(db)

        row = delivery_row(db, delivery_id)
        assert (row.state, row.last_error) == ("FAILED", "the voucher was cancelled before sending")
        assert provider.received == []


class TestLeases:
    def test_a_lost_lease_cannot_overwrite_the_newer_attempt(
        self, db: Database, provider: Provider, clock: FakeClock
    ) -> None:
        _, delivery_id = _sms(db, make_tenant(db))
        (first,) = outbox.claim_due(db, "worker-a")
        clock.advance(seconds=31)  # worker-a stalls past its lease
        (second,) = outbox.claim_due(db, "worker-b")
        assert (first.claim.attempt, second.claim.attempt) == (1, 2)
        assert second.claim.failures == 1  # the lost lease counts

        done_b = outbox.record_outcome(db, second.claim, outbox.Outcome("sent", "SMb"))
        late_a = outbox.record_outcome(db, first.claim, outbox.Outcome.permanent("HTTP 400: x"))

        assert (done_b, late_a) == (True, False)
        row = delivery_row(db, delivery_id)
        assert (row.state, row.provider_message_id, row.attempt) == ("SENT", "SMb", 2)
        assert events_of(db, delivery_id)[-3:] == [
            ("PENDING", "SENDING", 1),
            ("SENDING", "SENDING", 2),
            ("SENDING", "SENT", 2),
        ]

    def test_a_claimed_row_is_not_claimed_again_within_its_lease(
        self, db: Database, provider: Provider, clock: FakeClock
    ) -> None:
        _sms(db, make_tenant(db))
        assert len(outbox.claim_due(db, "worker-a")) == 1
        clock.advance(seconds=29)
        assert outbox.claim_due(db, "worker-b") == []

    def test_a_message_whose_workers_keep_dying_ends_failed(
        self, db: Database, provider: Provider, clock: FakeClock
    ) -> None:
        _, delivery_id = _sms(db, make_tenant(db))
        for _ in range(4):
            outbox.claim_due(db, "doomed")
            clock.advance(seconds=31)

        assert outbox.claim_due(db, "survivor") == []

        row = delivery_row(db, delivery_id)
        assert row.state == "FAILED"
        assert row.last_error is not None
        assert row.last_error.startswith("gave up: the worker sending it was lost 4 times")

    def test_stopping_releases_what_was_claimed_but_not_sent(
        self, db: Database, provider: Provider, clock: FakeClock
    ) -> None:
        _, delivery_id = _sms(db, make_tenant(db))
        claimed = outbox.claim_due(db, "worker-a")
        stop = threading.Event()
        stop.set()  # SIGTERM arrived between the claim and the send

        outbox._send_and_record(db, claimed, stop)

        row = delivery_row(db, delivery_id)
        assert (row.state, row.due_at, row.failures, row.lease_owner) == (
            "PENDING",
            clock(),
            0,
            None,
        )
        assert provider.received == []
        assert len(outbox.claim_due(db, "worker-b")) == 1


class TestBackoff:
    def test_doubles_with_jitter_up_to_the_ceiling(self, settings: Settings) -> None:
        for failures, ceiling in [(1, 10), (2, 20), (3, 40), (7, 600), (40, 600)]:
            delays = [outbox.backoff_seconds(failures, None, settings) for _ in range(50)]
            assert all(ceiling / 2 <= d <= ceiling for d in delays), (failures, delays)
            assert len(set(delays)) > 1

    def test_never_sooner_than_retry_after(self, settings: Settings) -> None:
        assert outbox.backoff_seconds(1, 3000.0, settings) == 3000.0


class TestSecrets:
    def test_no_code_phone_number_or_credential_reaches_the_logs(
        self, db: Database, provider: Provider, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        tenant = make_tenant(db)
        secret = with_all_channels(db, tenant, provider)
        made = make_campaign(db, tenant)
        records = [
            issue(db, tenant, made, delivery={"channel": "phone", "recipient": PHONE}),
            issue(db, tenant, made, delivery={"channel": "webhook"}),
        ]
        provider.script("sms", Answer(400, {**TWILIO_400, "message": f"bad To {PHONE}"}))
        provider.script("webhook", Answer(500, {"error": "x"}))

        with caplog.at_level(logging.DEBUG):
            deliver_due(db)
            clock.advance(hours=1)
            deliver_due(db)

        logged = caplog.text
        assert "delivery" in logged
        for needle in [PHONE, PHONE[1:], TWILIO_TOKEN, secret, *(r.voucher.code for r in records)]:
            assert needle not in logged
