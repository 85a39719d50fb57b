"""The worker's webhook job: claim due event messages with a lease, send each signed, record
every attempt; disable an endpoint after a day of failures.

The same pattern as the delivery outbox (``voucherd.delivery.outbox``), on a sibling table:

1. **Claim** (one short transaction): due rows, PENDING whose time has come or SENDING whose
   lease ran out, of ENABLED endpoints, and only the first unfinished one per endpoint and
   voucher (so a receiver gets a voucher's events in order), are locked with ``FOR UPDATE SKIP
   LOCKED`` on PostgreSQL and moved to SENDING with ``attempt + 1`` and a lease.
2. **Render and send**, outside that transaction: the payload is built from the event's rows,
   the URL is checked again and called at the address that was checked.
3. **Record** in its own transaction, fenced by ``WHERE attempt = <the claim's attempt> AND
   state = 'SENDING'``, with one ``webhook_attempt`` row per try.

A worker killed after sending and before recording leaves its rows SENDING; once the lease runs
out another worker sends them again with the same ``webhook-id`` (the event id), so a receiver
can drop the duplicate. Backoff, the reading of HTTP answers and the signature are the delivery
outbox's own functions, not copies.
"""

from __future__ import annotations

import logging
import ssl
import threading
from concurrent.futures import wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Row, Select, Table, and_, exists, func, select, update
from sqlalchemy.orm import Session, aliased

from voucherd.api.responses import dumps
from voucherd.auth.caller import SCOPES, Caller
from voucherd.db.engine import Database
from voucherd.db.leases import UNFINISHED as _UNFINISHED
from voucherd.db.leases import lease_due
from voucherd.delivery import service as deliveries
from voucherd.delivery.channels.base import Outcome
from voucherd.delivery.channels.http import Answer, ConnectError, client, post
from voucherd.delivery.channels.webhook import reason, signed_headers
from voucherd.delivery.outbox import backoff_seconds, sending_pool
from voucherd.delivery.schemas import present_delivery
from voucherd.errors import DomainError
from voucherd.observability import metrics
from voucherd.operations import service as operations
from voucherd.operations.schemas import present_operation
from voucherd.orders.models import ClientOrder
from voucherd.orders.schemas import present_order
from voucherd.orders.service import order_record
from voucherd.redemptions import service as redemptions
from voucherd.redemptions.schemas import present_redemption
from voucherd.vouchers import service as vouchers
from voucherd.vouchers.models import VoucherEvent
from voucherd.vouchers.schemas import present_voucher
from voucherd.webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage
from voucherd.webhooks.urls import Refused, resolve

log = logging.getLogger("voucherd.webhooks")

_M = cast(Table, WebhookMessage.__table__)
_E = cast(Table, WebhookEndpoint.__table__)
_A = cast(Table, WebhookAttempt.__table__)
_RELEASE = Outcome("transient", error="released: the worker stopped before sending")


@dataclass(frozen=True)
class Claim:
    id: int
    tenant_id: str
    endpoint_id: str
    event_id: str
    event_type: str
    occurred_at: datetime
    subject_id: str
    source_id: int | None
    snapshot: tuple[str | None, int | None, int | None, int | None]
    attempt: int  # the fencing token
    failures: int
    worker: str


def run_due_webhooks(db: Database, worker_id: str, stop: threading.Event) -> int:
    """Claim due event messages, send them, record the outcomes; how many were handled."""
    if stop.is_set():
        return 0
    claimed = claim_due(db, worker_id)
    if not claimed:
        return 0
    settings = db.settings
    if settings.delivery_concurrency == 1 or len(claimed) == 1:
        for claim in claimed:
            deliver(db, claim, stop)
        return len(claimed)
    futures = [
        sending_pool(settings.delivery_concurrency).submit(deliver, db, c, stop) for c in claimed
    ]
    wait(futures)
    for future in futures:
        future.result()  # the first failure (the database went away) reaches the worker loop
    return len(claimed)


# --- claiming -----------------------------------------------------------------------------------


_CLAIMED = (
    _M.c.id,
    _M.c.tenant_id,
    _M.c.endpoint_id,
    _M.c.event_id,
    _M.c.event_type,
    _M.c.occurred_at,
    _M.c.subject_id,
    _M.c.source_id,
    _M.c.voucher_state,
    _M.c.voucher_balance,
    _M.c.voucher_redeemed_quantity,
    _M.c.voucher_amount,
    _M.c.attempt,
    _M.c.failures,
)
_GIVE_UP = "gave up: the worker sending it was lost too often (its lease ran out each time)"


def _due() -> Select[Any]:
    """Due messages of ENABLED endpoints, only the first unfinished one per endpoint and
    voucher (so a receiver gets a voucher's events in order); ``lease_due`` adds the rest."""
    earlier = aliased(_M)
    return (
        select(_M.c.id, _M.c.state, _M.c.failures)
        .join(_E, and_(_E.c.id == _M.c.endpoint_id, _E.c.state == "ENABLED"))
        .where(
            ~exists().where(
                earlier.c.endpoint_id == _M.c.endpoint_id,
                earlier.c.ordering_key == _M.c.ordering_key,
                earlier.c.id < _M.c.id,
                earlier.c.state.in_(_UNFINISHED),
            ),
        )
    )


_DUE = _due()


def claim_due(db: Database, worker_id: str) -> list[Claim]:
    """Lease due messages (``voucherd.db.leases``) and write an attempt row for each given up,
    in one short transaction."""
    settings = db.settings
    now = db.now()
    with db.unit_of_work() as session:
        leased = lease_due(
            session,
            _M,
            _DUE,
            now=now,
            lease_until=now + timedelta(seconds=settings.delivery_lease_seconds),
            worker_id=worker_id,
            limit=settings.delivery_batch_size,
            max_attempts=settings.webhook_max_attempts,
            give_up_reason=_GIVE_UP,
            returning=_CLAIMED,
            order_by=(_M.c.due_at, _M.c.id),
        )
        if not leased.previous:
            return []
        for row in leased.given_up:
            message_id, tenant_id, attempt = row.id, row.tenant_id, row.attempt
            session.execute(
                _A.insert().values(
                    tenant_id=tenant_id,
                    message_id=message_id,
                    attempt=attempt,
                    outcome="FAILED",
                    detail=_GIVE_UP,
                    worker=worker_id,
                    created_at=now,
                )
            )
        claims = [_claim_of(r, worker_id) for r in leased.claimed]
        session.commit()
    return sorted(claims, key=lambda claim: claim.id)


def _claim_of(r: Row[Any], worker_id: str) -> Claim:
    return Claim(
        id=r.id,
        tenant_id=r.tenant_id,
        endpoint_id=r.endpoint_id,
        event_id=r.event_id,
        event_type=r.event_type,
        occurred_at=r.occurred_at,
        subject_id=r.subject_id,
        source_id=r.source_id,
        snapshot=(
            r.voucher_state,
            r.voucher_balance,
            r.voucher_redeemed_quantity,
            r.voucher_amount,
        ),
        attempt=r.attempt,
        failures=r.failures,
        worker=worker_id,
    )


# --- rendering ----------------------------------------------------------------------------------


def _voucher_object(db: Database, caller: Caller, claim: Claim) -> dict[str, Any]:
    """The voucher as the native API showed it at the event: today's row with what changes over
    its life (state, balance, redeemed quantity, amount) as the trigger saw it then."""
    record = vouchers.get_voucher(db, caller, claim.subject_id)
    voucher = record.voucher  # detached: setting attributes writes nothing
    state, balance, redeemed, amount = claim.snapshot
    if state is not None:
        voucher.state = state
        voucher.balance = balance
        voucher.redeemed_quantity = redeemed or 0
        voucher.amount = amount
    return present_voucher(record, now=claim.occurred_at, base_url=db.settings.public_base_url)


def _details(db: Database, claim: Claim) -> dict[str, Any]:
    """What the voucher event says besides the voucher: the redemption and amount, the reason."""
    if claim.event_type == "voucher.published":
        # The event id is evt_p<publication id>_<voucher id> (see migration 0012).
        return {"publication_id": claim.event_id[len("evt_p") : -(len(claim.subject_id) + 1)]}
    if claim.source_id is None:
        return {}
    with db.unit_of_work(write=False) as session:
        event = session.get(VoucherEvent, claim.source_id)
        if event is None:
            return {}
        return {**(event.data or {}), "reason": event.reason}


def _object(db: Database, claim: Claim) -> dict[str, Any]:
    caller = Caller(claim.tenant_id, "webhooks", frozenset(SCOPES))
    kind = claim.event_type
    if kind == "redemption.rolled_back":
        return present_redemption(redemptions.get_redemption(db, caller, claim.subject_id))
    if kind.startswith("voucher."):
        return _voucher_object(db, caller, claim)
    if kind == "delivery.failed":
        return present_delivery(deliveries.get_delivery(db, caller, claim.subject_id))
    if kind == "operation.failed":
        return present_operation(operations.get_operation(db, caller, claim.subject_id))
    if kind == "order.completed":
        with db.unit_of_work(write=False) as session:
            order_id = session.scalar(
                select(ClientOrder.id).where(ClientOrder.operation_id == claim.subject_id)
            )
            if order_id is None:
                raise LookupError("the order of this operation is gone")
            return present_order(order_record(session, claim.tenant_id, order_id))
    raise LookupError(f"no renderer for {kind}")


def render(db: Database, claim: Claim) -> bytes:
    """The message body: Standard Webhooks' ``type``, ``timestamp`` and ``data``, with the
    event id, and the object as the native API shows it."""
    data: dict[str, Any] = {"object": _object(db, claim)}
    if claim.event_type.startswith(("voucher.", "redemption.")):
        data["details"] = _details(db, claim)
    return dumps(
        {
            "id": claim.event_id,
            "type": claim.event_type,
            "timestamp": claim.occurred_at,
            "data": data,
        }
    )


# --- sending ------------------------------------------------------------------------------------


def _attempt(db: Database, claim: Claim, stop: threading.Event) -> Outcome:
    if stop.is_set():
        return _RELEASE
    with db.unit_of_work(write=False) as session:
        endpoint = session.execute(
            select(_E.c.url, _E.c.secret).where(_E.c.id == claim.endpoint_id)
        ).first()
    if endpoint is None:
        return Outcome.permanent("the endpoint was removed")
    try:
        body = render(db, claim)
    except (DomainError, LookupError) as exc:
        return Outcome.permanent(f"cannot render the event: {exc}")
    try:
        target = resolve(endpoint.url, db.settings)
    except Refused as exc:
        # Checked at registration too; a name can resolve elsewhere since (DNS rebinding).
        return Outcome.transient(f"refused: the URL {exc}")
    headers = signed_headers(endpoint.secret, claim.event_id, body)
    headers["Host"] = target.host

    def send() -> Answer:
        try:
            return client().post(
                target.url,
                body,
                headers,
                timeout=db.settings.delivery_timeout_seconds,
                server_name=target.server_name,
            )
        except ConnectError as exc:
            refusal = _certificate_refusal(exc)
            if refusal is None:
                raise
            raise _CertificateRefused(refusal) from exc

    try:
        return post(send, reason=reason, message_id=lambda _: claim.event_id, success="delivered")
    except _CertificateRefused as exc:
        # Retried as any connection failure is (a certificate gets fixed), but saying why: a
        # tenant reading "ConnectError" could not tell a wrong certificate from a down server.
        return Outcome.transient(f"TLS: the server's certificate was refused: {exc}")


class _CertificateRefused(Exception):
    """Not a transport error, so that it passes the shared reading of answers with its reason."""


def _certificate_refusal(exc: BaseException) -> str | None:
    """Why the TLS handshake refused the server's certificate, when that is what failed."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return str(seen.verify_message or seen.reason or seen)[:500]
        seen = seen.__cause__ or seen.__context__
    return None


def deliver(db: Database, claim: Claim, stop: threading.Event) -> None:
    try:
        outcome = _attempt(db, claim, stop)
    except Exception as exc:  # a bug in rendering must not kill the worker
        log.exception("webhook message %s: sending failed", claim.id)
        outcome = Outcome.transient(f"internal error: {type(exc).__name__}")
    record_outcome(db, claim, outcome)


# --- recording ----------------------------------------------------------------------------------


def record_outcome(db: Database, claim: Claim, outcome: Outcome) -> bool:
    """Write what happened to ``claim``'s attempt; False when that attempt is no longer the
    message's (its lease ran out and another worker took it, or it was replayed)."""
    settings = db.settings
    now = db.now()
    c = _M.c
    values: dict[str, Any] = {"lease_owner": None, "updated_at": now, "last_error": outcome.error}
    failed = False
    if outcome is _RELEASE:
        values.update(state="PENDING", due_at=now)
        result = "RELEASED"
    elif outcome.kind in ("sent", "delivered"):
        values.update(state="DELIVERED", due_at=None, last_error=None)
        result = "DELIVERED"
    else:
        failed = True
        failures = claim.failures + 1
        values["failures"] = failures
        if outcome.kind == "permanent" or failures >= settings.webhook_max_attempts:
            values.update(state="FAILED", due_at=None)
            result = "FAILED"
        else:
            delay = backoff_seconds(failures, outcome.retry_after, settings)
            values.update(state="PENDING", due_at=now + timedelta(seconds=delay))
            result = "RETRY"
    with db.unit_of_work() as session:
        mine = session.execute(
            update(_M)
            .where(c.id == claim.id, c.attempt == claim.attempt, c.state == "SENDING")
            .values(values)
            .returning(c.id)
        ).first()
        if mine is None:
            log.info("webhook message %s attempt %d: superseded", claim.id, claim.attempt)
            return False
        session.execute(
            _A.insert().values(
                tenant_id=claim.tenant_id,
                message_id=claim.id,
                attempt=claim.attempt,
                outcome=result,
                detail=outcome.error,
                worker=claim.worker,
                created_at=now,
            )
        )
        if result == "DELIVERED":
            _endpoint_recovered(session, claim.endpoint_id, now)
        elif failed:
            _endpoint_failed(session, claim.endpoint_id, now, outcome.error, settings)
        session.commit()
    metrics.webhook_recorded(claim.event_type, result)
    log.log(
        logging.WARNING if result == "FAILED" else logging.DEBUG,
        "webhook message %s attempt %d (%s): %s",
        claim.id,
        claim.attempt,
        claim.event_type,
        result,
    )
    return True


def _endpoint_recovered(session: Session, endpoint_id: str, now: datetime) -> None:
    session.execute(
        update(_E)
        .where(_E.c.id == endpoint_id, _E.c.failing_since.is_not(None))
        .values(failing_since=None, updated_at=now)
    )


def _endpoint_failed(
    session: Session, endpoint_id: str, now: datetime, error: str | None, settings: Any
) -> None:
    """Start (or continue) the endpoint's run of failures; past a day of it, disable it and
    keep why, so the tenant sees the reason and its pending messages wait for re-enabling."""
    since = session.execute(
        update(_E)
        .where(_E.c.id == endpoint_id)
        .values(failing_since=func.coalesce(_E.c.failing_since, now))
        .returning(_E.c.failing_since)
    ).scalar()
    if since is None or now - since < timedelta(seconds=settings.webhook_disable_after_seconds):
        return
    session.execute(
        update(_E)
        .where(_E.c.id == endpoint_id, _E.c.state == "ENABLED")
        .values(
            state="DISABLED",
            disabled_reason=(f"every attempt failed since {since.isoformat()}; the last: {error}")[
                :2000
            ],
            updated_at=now,
        )
    )
    log.warning("webhook endpoint %s disabled after a day of failures", endpoint_id)
