"""The outbox worker job: claim due deliveries with a lease, send them, record the outcomes.

1. **Claim** (one short write transaction, the lease step of ``voucherd.db.leases``): due rows,
   PENDING whose time has come or SENDING whose lease ran out, are locked with ``FOR UPDATE SKIP
   LOCKED`` on PostgreSQL (on SQLite the transaction's ``BEGIN IMMEDIATE`` already makes the
   claim exclusive), moved to SENDING with ``attempt + 1`` and a lease, and read together with
   their voucher, campaign and tenant.
2. **Send**, outside any transaction, in waves of ``delivery_concurrency`` messages at a time.
3. **Record** each wave's outcomes in one transaction, each row fenced by ``WHERE attempt = <the
   claim's attempt> AND state = 'SENDING'``: the attempt number is a fencing token, so a worker
   that lost its lease cannot overwrite a newer attempt, nor a status callback that already
   arrived. One commit per wave, not per message.

A worker killed between send and record leaves its rows SENDING; another claims them once the
lease runs out and sends again. What a kill resends is at most the wave in hand (at most
``delivery_concurrency`` messages, each at most once more per lost worker), as when each
sending thread recorded its own message (providers that take an idempotency key get the
delivery id as one). A row whose lease keeps
running out counts that as a failure, so a message that kills its worker ends FAILED.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Row, Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from voucherd.api.responses import dumps
from voucherd.auth.models import Tenant
from voucherd.campaigns.models import Campaign
from voucherd.config import Settings
from voucherd.db.dialect import is_postgresql
from voucherd.db.engine import Database
from voucherd.db.leases import lease_due
from voucherd.delivery.channels.base import Message, Outcome
from voucherd.delivery.channels.registry import channel_for
from voucherd.delivery.enqueue import delivery_settings
from voucherd.delivery.messages import MessageError, compose, variables
from voucherd.delivery.models import Delivery, DeliveryEvent, DeliveryVoucher
from voucherd.delivery.sql import RECORD_OUTCOMES
from voucherd.observability import metrics
from voucherd.pages.urls import page_url
from voucherd.vouchers.models import Voucher
from voucherd.vouchers.schemas import VoucherRecord, present_voucher

log = logging.getLogger("voucherd.delivery")

_DELIVERY = cast(Table, Delivery.__table__)
_INSERT_EVENT = insert(cast(Table, DeliveryEvent.__table__))
_RELEASE = Outcome("transient", error="released: the worker stopped before sending")


@dataclass(frozen=True)
class Claim:
    id: str
    tenant_id: str
    voucher_id: str
    attempt: int  # the fencing token
    failures: int
    channel: str
    recipient: str | None
    recipient_name: str | None
    message: str | None  # the issuer's own text, when it gave one
    worker: str


@dataclass(frozen=True)
class Prepared:
    claim: Claim
    message: Message | None = None
    provider: dict[str, Any] | None = None
    refused: Outcome | None = None  # failed before sending (no provider, template error)


def run_due_deliveries(db: Database, worker_id: str, stop: threading.Event) -> int:
    """Claim due deliveries, send them, record the outcomes; how many were handled."""
    if stop.is_set():
        return 0
    claimed = claim_due(db, worker_id)
    if not claimed:
        return 0
    _send_and_record(db, claimed, stop)
    return len(claimed)


# --- claiming -----------------------------------------------------------------------------------


_CLAIMED = (
    _DELIVERY.c.id,
    _DELIVERY.c.tenant_id,
    _DELIVERY.c.voucher_id,
    _DELIVERY.c.attempt,
    _DELIVERY.c.failures,
    _DELIVERY.c.channel,
    _DELIVERY.c.recipient,
    _DELIVERY.c.recipient_name,
    _DELIVERY.c.message,
    _DELIVERY.c.lease_owner,
)
_DUE = select(_DELIVERY.c.id, _DELIVERY.c.state, _DELIVERY.c.failures)


def claim_due(db: Database, worker_id: str) -> list[Prepared]:
    """Lease due deliveries (``voucherd.db.leases``), write their claim events, and prepare
    their messages, in one short transaction."""
    settings = db.settings
    now = db.now()
    why = (
        f"gave up: the worker sending it was lost {settings.delivery_max_attempts} times "
        "(its lease ran out each time)"
    )
    with db.unit_of_work() as session:
        leased = lease_due(
            session,
            _DELIVERY,
            _DUE,
            now=now,
            lease_until=now + timedelta(seconds=settings.delivery_lease_seconds),
            worker_id=worker_id,
            limit=settings.delivery_batch_size,
            max_attempts=settings.delivery_max_attempts,
            give_up_reason=why,
            returning=_CLAIMED,
        )
        if not leased.previous:
            return []
        events: list[dict[str, Any]] = []
        for row in leased.given_up:
            delivery_id, tenant_id, attempt = row.id, row.tenant_id, row.attempt
            events.append(
                _event(tenant_id, delivery_id, attempt, "SENDING", "FAILED", worker_id, now, why)
            )
            log.warning("delivery %s FAILED: its workers were lost too often", delivery_id)
        claims = [Claim(*tuple(row)) for row in leased.claimed]
        for claim in claims:
            expired = leased.previous[claim.id] == "SENDING"
            events.append(
                _event(
                    claim.tenant_id,
                    claim.id,
                    claim.attempt,
                    leased.previous[claim.id],
                    "SENDING",
                    worker_id,
                    now,
                    "the previous worker's lease ran out" if expired else None,
                )
            )
        if events:
            session.execute(_INSERT_EVENT, events)
        prepared = _prepare_all(session, claims, settings, now)
        session.commit()
    return prepared


# What a message needs of its voucher and campaign, read as plain rows: loading ORM objects (and
# parsing every JSON column of the voucher, campaign and tenant, once per message) cost more CPU
# per batch than the claim itself. A webhook delivery, which sends the whole voucher as the
# native API shows it, reads its voucher as an ORM object in one more query per batch.
_Row = Row[*tuple[Any, ...]]
_V = cast(Table, Voucher.__table__).c
_CAMPAIGN = cast(Table, Campaign.__table__)
_K = _CAMPAIGN.c
_TENANT = cast(Table, Tenant.__table__)
_VOUCHER_FACTS = (
    _V.id,
    _V.code,
    _V.state,
    _V.amount,
    _V.balance,
    _V.currency,
    _V.expiration_date,
    _V.holder_name,
    _V.public_token,
)
_CONTEXT = (
    select(
        *_VOUCHER_FACTS,
        _V.tenant_id,
        _K.name,
        _K.locale,
        _K.timezone,
        _K.help_text,
        _K.store_finder_url,
        _K.message_templates,
    )
    .join(_CAMPAIGN, _K.id == _V.campaign_id)
    .where(_V.id.in_(bindparam("voucher_ids", expanding=True)))
)
_BUNDLED = cast(Table, DeliveryVoucher.__table__).c
_BUNDLES = (
    select(_BUNDLED.delivery_id, *_VOUCHER_FACTS)
    .join(cast(Table, Voucher.__table__), _V.id == _BUNDLED.voucher_id)
    .where(_BUNDLED.delivery_id.in_(bindparam("delivery_ids", expanding=True)))
    .order_by(_BUNDLED.delivery_id, _BUNDLED.position)
)
_TENANT_SETTINGS = select(_TENANT.c.id, _TENANT.c.settings).where(
    _TENANT.c.id.in_(bindparam("tenant_ids", expanding=True))
)


def _prepare_all(
    session: Session, claims: list[Claim], settings: Settings, now: datetime
) -> list[Prepared]:
    if not claims:
        return []
    context = {
        row.id: row
        for row in session.execute(_CONTEXT, {"voucher_ids": list({c.voucher_id for c in claims})})
    }
    tenants = {
        row.id: delivery_settings(row.settings)
        for row in session.execute(
            _TENANT_SETTINGS, {"tenant_ids": list({c.tenant_id for c in claims})}
        )
    }
    bundles: dict[str, list[_Row]] = {}
    for row in session.execute(_BUNDLES, {"delivery_ids": [c.id for c in claims]}):
        bundles.setdefault(row.delivery_id, []).append(row)
    chosen = [_voucher_to_send(context[c.voucher_id], bundles.get(c.id, [])) for c in claims]
    whole = _whole_vouchers(
        session, [v.id for c, (v, _) in zip(claims, chosen, strict=True) if c.channel == "webhook"]
    )
    return [
        _prepare(
            claim,
            voucher,
            context[claim.voucher_id],
            tenants.get(claim.tenant_id, {}).get(claim.channel),
            settings,
            now,
            bundle,
            whole.get(voucher.id),
        )
        for claim, (voucher, bundle) in zip(claims, chosen, strict=True)
    ]


def _voucher_to_send(voucher: _Row, bundle: list[_Row]) -> tuple[_Row, list[_Row]]:
    """The voucher a message is about and the bundle it sends (empty: just that voucher). A
    bundled voucher cancelled since is left out; the message goes while any is left."""
    if bundle:
        bundle = [v for v in bundle if v.state != "CANCELLED"]
        if bundle:
            return bundle[0], bundle
    return voucher, []


def _whole_vouchers(session: Session, voucher_ids: list[str]) -> dict[str, Voucher]:
    """The vouchers a webhook delivery sends whole, as ORM objects (present_voucher's input)."""
    if not voucher_ids:
        return {}
    found = session.scalars(select(Voucher).where(Voucher.id.in_(voucher_ids)))
    return {voucher.id: voucher for voucher in found}


def _prepare(
    claim: Claim,
    voucher: _Row,
    campaign: _Row,
    provider: dict[str, Any] | None,
    settings: Settings,
    now: datetime,
    bundle: list[_Row],
    whole: Voucher | None,
) -> Prepared:
    """The message to send, rendered from the campaign's template (still in the claim's
    transaction, but rendering touches no database). ``campaign`` is the claimed voucher's row,
    campaign columns included; ``voucher`` is the one the message is about (a bundle's first)."""
    if voucher.state == "CANCELLED":
        return Prepared(
            claim, refused=Outcome.permanent("the voucher was cancelled before sending")
        )
    if not provider:
        why = f"the tenant has no {claim.channel} provider configured any more"
        return Prepared(claim, refused=Outcome.permanent(why))
    base = settings.public_base_url
    values = variables(
        voucher,
        campaign,
        customer_name=claim.recipient_name,
        page_url=page_url(base, voucher.public_token),
        message=claim.message,
        bundle=[(v, page_url(base, v.public_token)) for v in bundle],
    )
    try:
        content = compose(
            claim.channel, campaign.message_templates, values, locale=campaign.locale or "en"
        )
    except MessageError as exc:
        return Prepared(claim, refused=Outcome.permanent(str(exc)))
    callback = None
    if claim.channel == "sms":
        callback = f"{base}/callbacks/twilio/{claim.tenant_id}?delivery={claim.id}"
    body = None
    if claim.channel == "webhook":
        assert whole is not None
        body = dumps(
            {
                "type": "voucher.delivery",
                "timestamp": now,
                "data": {
                    "delivery_id": claim.id,
                    "recipient_name": claim.recipient_name,
                    "voucher": present_voucher(
                        VoucherRecord(whole, campaign.name), now=now, base_url=base
                    ),
                },
            }
        )
    message = Message(
        delivery_id=claim.id,
        tenant_id=claim.tenant_id,
        channel=claim.channel,
        recipient=claim.recipient,
        content=content,
        status_callback=callback,
        webhook_body=body,
    )
    return Prepared(claim, message=message, provider=provider)


# --- sending ------------------------------------------------------------------------------------

_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def sending_pool(size: int) -> ThreadPoolExecutor:
    with _pools_lock:
        pool = _pools.get(size)
        if pool is None:
            pool = _pools[size] = ThreadPoolExecutor(size, thread_name_prefix="voucherd-send")
        return pool


def _attempt(prepared: Prepared, settings: Settings, stop: threading.Event) -> Outcome:
    if prepared.refused is not None:
        return prepared.refused
    if stop.is_set():
        return _RELEASE
    assert prepared.message is not None
    assert prepared.provider is not None
    try:
        return channel_for(prepared.claim.channel).send(
            prepared.message, prepared.provider, settings
        )
    except Exception as exc:  # a bug in an adapter must not kill the worker
        log.exception(
            "delivery %s: the %s adapter failed", prepared.claim.id, prepared.claim.channel
        )
        return Outcome.transient(f"internal error: {type(exc).__name__}")


def _send_and_record(db: Database, batch: list[Prepared], stop: threading.Event) -> None:
    """Send the batch ``delivery_concurrency`` messages at a time and record each such wave's
    outcomes in one transaction: a worker keeps that many messages in flight, commits once per
    wave rather than once per message, and a crash loses (sends again) at most the wave in hand,
    as before when each sending thread recorded its own message."""
    settings = db.settings
    size = max(1, settings.delivery_concurrency)
    for start in range(0, len(batch), size):
        wave = batch[start : start + size]
        if len(wave) == 1:
            outcomes = [_attempt(wave[0], settings, stop)]
        else:
            pool = sending_pool(size)
            futures = [pool.submit(_attempt, prepared, settings, stop) for prepared in wave]
            wait(futures)
            outcomes = [future.result() for future in futures]
        record_outcomes(db, [(p.claim, o) for p, o in zip(wave, outcomes, strict=True)])


# --- recording ----------------------------------------------------------------------------------


def backoff_seconds(failures: int, retry_after: float | None, settings: Settings) -> float:
    """Exponential backoff with "equal jitter" (half fixed, half random), so a provider outage
    does not bring every retry back in the same second; never sooner than Retry-After."""
    ceiling = min(
        settings.delivery_backoff_max_seconds,
        settings.delivery_backoff_seconds * 2 ** min(failures - 1, 30),
    )
    delay = random.uniform(ceiling / 2, ceiling)
    return max(delay, retry_after) if retry_after is not None else delay


_C = _DELIVERY.c
_MINE = (_C.id == bindparam("b_id"), _C.attempt == bindparam("b_attempt"), _C.state == "SENDING")
# Built once, run with parameters: building an UPDATE per message cost more CPU than sending it.
_RECORD = (
    update(_DELIVERY)
    .where(*_MINE)
    .values(
        state=bindparam("b_state"),
        failures=bindparam("b_failures"),
        due_at=bindparam("b_due_at"),
        provider_message_id=func.coalesce(bindparam("b_message_id"), _C.provider_message_id),
        last_error=bindparam("b_error"),
        lease_owner=None,
        updated_at=bindparam("b_now"),
    )
    .returning(_C.id)
)
_RELEASE_CLAIM = (
    update(_DELIVERY)
    .where(*_MINE)
    .values(
        state="PENDING", due_at=bindparam("b_now"), lease_owner=None, updated_at=bindparam("b_now")
    )
    .returning(_C.id)
)


@dataclass(frozen=True, slots=True)
class _Written:
    """One outcome as the row change it makes: ``_RECORD``'s parameters (or a release)."""

    claim: Claim
    to: str
    params: dict[str, Any]
    detail: str | None
    release: bool


def _written(claim: Claim, outcome: Outcome, settings: Settings, now: datetime) -> _Written:
    params: dict[str, Any] = {
        "b_id": claim.id,
        "b_attempt": claim.attempt,
        "b_now": now,
        "b_failures": claim.failures,
        "b_due_at": None,
        "b_message_id": None,
        "b_error": outcome.error,
    }
    detail = outcome.error
    if outcome is _RELEASE:
        return _Written(claim, "PENDING", params, detail, release=True)
    if outcome.kind in ("sent", "delivered"):
        to = "SENT" if outcome.kind == "sent" else "DELIVERED"
        params["b_message_id"] = outcome.provider_message_id
        detail = None
    elif outcome.kind == "permanent":
        to = "FAILED"
    else:
        failures = params["b_failures"] = claim.failures + 1
        if failures >= settings.delivery_max_attempts:
            to = "FAILED"
            detail = params["b_error"] = (
                f"gave up after {failures} failed attempts; the last: {outcome.error}"
            )
        else:
            to = "PENDING"
            delay = backoff_seconds(failures, outcome.retry_after, settings)
            params["b_due_at"] = now + timedelta(seconds=delay)
    params["b_state"] = to
    return _Written(claim, to, params, detail, release=False)


def record_outcome(db: Database, claim: Claim, outcome: Outcome) -> bool:
    """Write what happened to ``claim``'s attempt; False when that attempt is no longer the
    delivery's (its lease ran out and another worker took it, or a callback finished it)."""
    return record_outcomes(db, [(claim, outcome)]) == [True]


def record_outcomes(db: Database, outcomes: Sequence[tuple[Claim, Outcome]]) -> list[bool]:
    """Write what happened to each claim's attempt, all in one transaction; for each, whether
    it was written (False: that attempt is no longer the delivery's, see :func:`record_outcome`).

    Each row is still fenced on its own (``attempt`` and ``state = 'SENDING'``), so one
    superseded attempt drops only its own outcome. On PostgreSQL the outcomes and their events
    are one statement (``delivery/sql.py``); on SQLite, one prebuilt statement per row.
    """
    if not outcomes:
        return []
    settings = db.settings
    now = db.now()
    written = [_written(claim, outcome, settings, now) for claim, outcome in outcomes]
    with db.unit_of_work() as session:
        if is_postgresql(session):
            mine = _record_on_postgresql(session, [w for w in written if not w.release], now)
        else:
            mine = _record_each(session, [w for w in written if not w.release], now)
        mine |= _record_each(session, [w for w in written if w.release], now)
        session.commit()
    done = [w.claim.id in mine for w in written]
    for w, ok in zip(written, done, strict=True):
        claim = w.claim
        if not ok:
            log.info("delivery %s attempt %d: superseded, outcome dropped", claim.id, claim.attempt)
            continue
        metrics.delivery_recorded(claim.channel, w.to)
        level = logging.WARNING if w.to == "FAILED" else logging.DEBUG
        log.log(
            level, "delivery %s attempt %d (%s): %s", claim.id, claim.attempt, claim.channel, w.to
        )
    return done


def _record_each(session: Session, written: list[_Written], now: datetime) -> set[str]:
    """Outcomes one statement each, their events in one executemany; the ids written."""
    mine: set[str] = set()
    events = []
    for w in written:
        statement = _RELEASE_CLAIM if w.release else _RECORD
        if session.execute(statement, w.params).first() is None:
            continue
        mine.add(w.claim.id)
        events.append(
            _event(
                w.claim.tenant_id,
                w.claim.id,
                w.claim.attempt,
                "SENDING",
                w.to,
                w.claim.worker,
                now,
                w.detail,
            )
        )
    if events:
        session.execute(_INSERT_EVENT, events)
    return mine


def _record_on_postgresql(session: Session, written: list[_Written], now: datetime) -> set[str]:
    """Every outcome and its event in one statement (``RECORD_OUTCOMES``); the ids written."""
    if not written:
        return set()
    rows = session.execute(
        RECORD_OUTCOMES,
        {
            "ids": [w.claim.id for w in written],
            "attempts": [w.claim.attempt for w in written],
            "states": [w.to for w in written],
            "failures": [w.params["b_failures"] for w in written],
            "due_at": [w.params["b_due_at"] for w in written],
            "message_ids": [w.params["b_message_id"] for w in written],
            "errors": [w.params["b_error"] for w in written],
            "details": [w.detail for w in written],
            "actors": [w.claim.worker for w in written],
            "now": now,
        },
    ).scalars()
    return set(rows)


def _event(
    tenant_id: str,
    delivery_id: str,
    attempt: int,
    from_state: str | None,
    to_state: str,
    actor: str | None,
    now: datetime,
    detail: str | None = None,
) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "delivery_id": delivery_id,
        "attempt": attempt,
        "from_state": from_state,
        "to_state": to_state,
        "actor": actor,
        "detail": detail,
        "created_at": now,
    }
