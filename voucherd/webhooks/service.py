"""Event webhook endpoints: register, list, change, remove; an endpoint's messages with their
attempts; replaying one. Sending is the worker's (``voucherd.webhooks.tasks``)."""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from voucherd.auth.caller import Caller
from voucherd.db.engine import Database
from voucherd.delivery.settings import new_webhook_secret
from voucherd.errors import Conflict, InvalidInput, NotFound
from voucherd.idempotency import service as idempotency
from voucherd.ids import new_id
from voucherd.pagination import Page, page_of
from voucherd.webhooks.models import (
    WebhookAttempt,
    WebhookEndpoint,
    WebhookMessage,
    WebhookSubscription,
)
from voucherd.webhooks.schemas import (
    EndpointCreate,
    EndpointRecord,
    EndpointUpdate,
    MessageRecord,
)
from voucherd.webhooks.urls import Refused, resolve


def _checked_url(db: Database, url: str) -> str:
    """Refuse what the worker would refuse to call: the same check, done now, so a tenant
    learns at once rather than from a day of failed attempts."""
    try:
        resolve(url, db.settings)
    except Refused as exc:
        raise InvalidInput(str(exc), field="url") from exc
    return url


def _find(session: Session, tenant_id: str, endpoint_id: str) -> WebhookEndpoint:
    endpoint = session.scalar(
        select(WebhookEndpoint).where(
            WebhookEndpoint.id == endpoint_id, WebhookEndpoint.tenant_id == tenant_id
        )
    )
    if endpoint is None:
        raise NotFound("no such webhook endpoint", field="endpoint")
    return endpoint


def _events(session: Session, endpoint_id: str) -> tuple[str, ...]:
    return tuple(
        session.scalars(
            select(WebhookSubscription.event_type)
            .where(WebhookSubscription.endpoint_id == endpoint_id)
            .order_by(WebhookSubscription.event_type)
        )
    )


def _subscribe(session: Session, endpoint: WebhookEndpoint, events: list[str]) -> None:
    session.execute(
        delete(WebhookSubscription).where(WebhookSubscription.endpoint_id == endpoint.id)
    )
    session.add_all(
        WebhookSubscription(endpoint_id=endpoint.id, event_type=t, tenant_id=endpoint.tenant_id)
        for t in dict.fromkeys(events)
    )


def create_endpoint(
    db: Database,
    caller: Caller,
    body: EndpointCreate,
    *,
    idem: idempotency.IdempotencyClaim | None = None,
) -> EndpointRecord:
    """A new endpoint, ENABLED, with a fresh ``whsec_`` signing secret shown this once."""
    caller.require("manage")
    url = _checked_url(db, body.url)
    now = db.now()
    secret = new_webhook_secret()
    with db.unit_of_work() as session:
        idempotency.claim(session, db, caller.tenant_id, idem)
        endpoint = WebhookEndpoint(
            id=new_id("whe"),
            tenant_id=caller.tenant_id,
            url=url,
            description=body.description,
            secret=secret,
            state="ENABLED",
            created_at=now,
            updated_at=now,
        )
        session.add(endpoint)
        session.flush()
        _subscribe(session, endpoint, list(body.events))
        session.flush()
        events = _events(session, endpoint.id)
        idempotency.bind_effect(session, caller.tenant_id, idem, "webhook_endpoint", endpoint.id)
        session.commit()
    return EndpointRecord(endpoint, events, secret=secret)


# Reads take any key, as every native GET does; changing or replaying takes manage.
def get_endpoint(db: Database, caller: Caller, endpoint_id: str) -> EndpointRecord:
    with db.unit_of_work(write=False) as session:
        endpoint = _find(session, caller.tenant_id, endpoint_id)
        return EndpointRecord(endpoint, _events(session, endpoint.id))


def list_endpoints(db: Database, caller: Caller) -> list[EndpointRecord]:
    with db.unit_of_work(write=False) as session:
        endpoints = session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.tenant_id == caller.tenant_id)
            .order_by(WebhookEndpoint.id)
        ).all()
        return [EndpointRecord(e, _events(session, e.id)) for e in endpoints]


def update_endpoint(
    db: Database, caller: Caller, endpoint_id: str, body: EndpointUpdate
) -> EndpointRecord:
    """Change what is given. Enabling clears the failure run and the reason it was disabled."""
    caller.require("manage")
    url = _checked_url(db, body.url) if body.url is not None else None
    now = db.now()
    with db.unit_of_work() as session:
        endpoint = _find(session, caller.tenant_id, endpoint_id)
        if url is not None:
            endpoint.url = url
        if "description" in body.model_fields_set:
            endpoint.description = body.description
        if body.state == "ENABLED":
            endpoint.state, endpoint.disabled_reason, endpoint.failing_since = "ENABLED", None, None
        elif body.state == "DISABLED" and endpoint.state == "ENABLED":
            endpoint.state, endpoint.disabled_reason = "DISABLED", f"disabled by {caller.key_id}"
        if body.events is not None:
            _subscribe(session, endpoint, list(body.events))
        endpoint.updated_at = now
        session.flush()
        events = _events(session, endpoint.id)
        session.commit()
    return EndpointRecord(endpoint, events)


def delete_endpoint(db: Database, caller: Caller, endpoint_id: str) -> None:
    """Remove the endpoint with its messages and their attempts: nothing more goes to it."""
    caller.require("manage")
    with db.unit_of_work() as session:
        endpoint = _find(session, caller.tenant_id, endpoint_id)
        messages = select(WebhookMessage.id).where(WebhookMessage.endpoint_id == endpoint.id)
        session.execute(delete(WebhookAttempt).where(WebhookAttempt.message_id.in_(messages)))
        session.execute(delete(WebhookMessage).where(WebhookMessage.endpoint_id == endpoint.id))
        session.execute(
            delete(WebhookSubscription).where(WebhookSubscription.endpoint_id == endpoint.id)
        )
        session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint.id))
        session.commit()


def list_messages(
    db: Database,
    caller: Caller,
    endpoint_id: str,
    *,
    state: str | None,
    limit: int,
    cursor: str | None,
) -> Page[MessageRecord]:
    """The endpoint's messages, newest first."""
    with db.unit_of_work(write=False) as session:
        endpoint = _find(session, caller.tenant_id, endpoint_id)
        query = select(WebhookMessage).where(WebhookMessage.endpoint_id == endpoint.id)
        if state is not None:
            query = query.where(WebhookMessage.state == state)
        if cursor:
            if not cursor.isdigit():
                raise InvalidInput("is not a cursor this list gave", field="cursor")
            query = query.where(WebhookMessage.id < int(cursor))
        rows = session.scalars(query.order_by(WebhookMessage.id.desc()).limit(limit + 1)).all()
    records = [MessageRecord(m) for m in rows]
    last = str(records[limit - 1].message.id) if len(records) > limit else None
    return page_of(records, limit, last)


def _message(session: Session, tenant_id: str, endpoint_id: str, event_id: str) -> WebhookMessage:
    endpoint = _find(session, tenant_id, endpoint_id)
    message = session.scalar(
        select(WebhookMessage).where(
            WebhookMessage.endpoint_id == endpoint.id, WebhookMessage.event_id == event_id
        )
    )
    if message is None:
        raise NotFound("this endpoint has no message for that event", field="event")
    return message


def _attempts(session: Session, message_id: int) -> tuple[WebhookAttempt, ...]:
    return tuple(
        session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.message_id == message_id)
            .order_by(WebhookAttempt.id)
        )
    )


def get_message(db: Database, caller: Caller, endpoint_id: str, event_id: str) -> MessageRecord:
    """One event's message to the endpoint, with every attempt at sending it."""
    with db.unit_of_work(write=False) as session:
        message = _message(session, caller.tenant_id, endpoint_id, event_id)
        return MessageRecord(message, _attempts(session, message.id))


def replay_message(
    db: Database,
    caller: Caller,
    endpoint_id: str,
    event_id: str,
    *,
    idem: idempotency.IdempotencyClaim | None = None,
) -> MessageRecord:
    """Send an event to the endpoint again, now, with the same webhook-id (receivers that
    already have it drop it). A message being sent right now is refused (409)."""
    caller.require("manage")
    now = db.now()
    with db.unit_of_work() as session:
        idempotency.claim(session, db, caller.tenant_id, idem)
        message = _message(session, caller.tenant_id, endpoint_id, event_id)
        m = WebhookMessage
        replayed = session.execute(
            update(m)
            .where(m.id == message.id, m.state != "SENDING")
            .values(state="PENDING", failures=0, due_at=now, last_error=None, updated_at=now)
            .returning(m.attempt)
            .execution_options(synchronize_session=False)
        ).first()
        if replayed is None:
            raise Conflict("the message is being sent right now", field="event")
        session.add(
            WebhookAttempt(
                tenant_id=caller.tenant_id,
                message_id=message.id,
                attempt=replayed.attempt,
                outcome="REPLAY",
                detail=f"replay asked by {caller.key_id}",
                worker=None,
                created_at=now,
            )
        )
        session.flush()
        session.refresh(message)
        record = MessageRecord(message, _attempts(session, message.id))
        key = f"{endpoint_id}:{event_id}"
        idempotency.bind_effect(session, caller.tenant_id, idem, "webhook_replay", key)
        session.commit()
    return record
