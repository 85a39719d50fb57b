"""Corporate clients: create, find (by id or code), update, list and search by external id.

Creating a client is done at once, but it still records a Completed operation, so a face that
promises a token for every change (Vista resolves its client creation to the client's id) has
one to give, and it resolves like any other.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, delete, insert, or_, select, update
from sqlalchemy.orm import Session

from voucherd.auth.caller import Caller
from voucherd.campaigns.lookup import find_campaign
from voucherd.campaigns.models import Campaign
from voucherd.db.dialect import upsert
from voucherd.db.engine import Database
from voucherd.errors import Conflict, ErrorCode, NotFound
from voucherd.idempotency import service as idempotency
from voucherd.ids import new_id
from voucherd.operations.service import record_completed
from voucherd.orders.models import Client, ClientVoucherType
from voucherd.orders.schemas import ClientContact, ClientCreate, ClientRecord, ClientUpdate
from voucherd.pagination import Page

CLIENT_KIND = "client"
CLIENT_ENTITY = "VoucherClient"

_CLIENT = cast(Table, Client.__table__)


def find_client(session: Session, tenant_id: str, ref: str, *, field: str = "client") -> Client:
    """A client by id or by code, within the tenant (an id match wins)."""
    found = list(
        session.scalars(
            select(Client).where(
                Client.tenant_id == tenant_id, or_(Client.id == ref, Client.code == ref)
            )
        )
    )
    if not found:
        raise NotFound(f"no client with id or code {ref!r}", field=field)
    return next((c for c in found if c.id == ref), found[0])


def _contact_values(contact: ClientContact | None) -> dict[str, Any]:
    contact = contact or ClientContact()
    return {
        "contact_name": contact.name or None,
        "contact_email": contact.email,
        "contact_phone": contact.phone or None,
        "contact_fax": contact.fax or None,
    }


def _set_voucher_types(
    session: Session, client: Client, refs: list[str], *, field: str = "voucher_types"
) -> None:
    campaigns: list[Campaign] = []
    for index, ref in enumerate(refs):
        campaign = find_campaign(session, client.tenant_id, ref, field=f"{field}.{index}")
        if campaign.id not in {c.id for c in campaigns}:
            campaigns.append(campaign)
    session.execute(delete(ClientVoucherType).where(ClientVoucherType.client_id == client.id))
    if campaigns:
        session.execute(
            insert(ClientVoucherType),
            [
                {
                    "client_id": client.id,
                    "campaign_id": c.id,
                    "tenant_id": client.tenant_id,
                    "position": position,
                }
                for position, c in enumerate(campaigns)
            ],
        )


def voucher_types_of(session: Session, client_ids: list[str]) -> dict[str, list[tuple[str, str]]]:
    rows = session.execute(
        select(ClientVoucherType.client_id, Campaign.id, Campaign.name)
        .join(Campaign, Campaign.id == ClientVoucherType.campaign_id)
        .where(ClientVoucherType.client_id.in_(client_ids))
        .order_by(ClientVoucherType.client_id, ClientVoucherType.position)
    ).all()
    types: dict[str, list[tuple[str, str]]] = {i: [] for i in client_ids}
    for client_id, campaign_id, name in rows:
        types[client_id].append((campaign_id, name))
    return types


def _record(session: Session, client: Client, operation: Any = None) -> ClientRecord:
    return ClientRecord(client, voucher_types_of(session, [client.id])[client.id], operation)


def create_client(
    db: Database,
    caller: Caller,
    body: ClientCreate,
    *,
    idem: idempotency.IdempotencyClaim | None = None,
) -> ClientRecord:
    """A new client; its code must be new in the tenant (409 ``duplicate_client_code``)."""
    caller.require("manage")
    now = db.now()
    with db.unit_of_work() as session:
        idempotency.claim(session, db, caller.tenant_id, idem)
        client_id = new_id("cl")
        # ON CONFLICT DO NOTHING rather than catching the unique violation, which would abort
        # the whole transaction on PostgreSQL.
        inserted = session.execute(
            upsert(session, _CLIENT)
            .values(
                id=client_id,
                tenant_id=caller.tenant_id,
                code=body.code,
                name=body.name,
                external_client_id=body.external_client_id,
                external_data=body.external_data,
                created_at=now,
                updated_at=now,
                **_contact_values(body.contact),
            )
            .on_conflict_do_nothing(index_elements=["tenant_id", "code"])
            .returning(_CLIENT.c.id)
        ).first()
        if inserted is None:
            raise Conflict(
                f"a client with code {body.code!r} already exists",
                field="code",
                code=ErrorCode.DUPLICATE_CLIENT_CODE,
            )
        client = session.get_one(Client, client_id)
        _set_voucher_types(session, client, body.voucher_types)
        operation = record_completed(
            session,
            tenant_id=caller.tenant_id,
            kind=CLIENT_KIND,
            entity_type=CLIENT_ENTITY,
            entity_id=client_id,
            actor=caller.key_id,
            now=now,
            parameters={"client_id": client_id, "code": body.code},
        )
        idempotency.bind_effect(session, caller.tenant_id, idem, "client", client_id)
        record = _record(session, client, operation)
        session.commit()
    return record


def get_client(db: Database, caller: Caller, ref: str) -> ClientRecord:
    with db.unit_of_work(write=False) as session:
        return _record(session, find_client(session, caller.tenant_id, ref))


def update_client(db: Database, caller: Caller, ref: str, body: ClientUpdate) -> ClientRecord:
    caller.require("manage")
    now = db.now()
    sent = body.model_fields_set
    with db.unit_of_work() as session:
        client = find_client(session, caller.tenant_id, ref)
        values: dict[str, Any] = {"updated_at": now}
        if "name" in sent:
            values["name"] = body.name
        if "contact" in sent:
            values.update(_contact_values(body.contact))
        for name in ("external_client_id", "external_data"):
            if name in sent:
                values[name] = getattr(body, name)
        session.execute(update(Client).where(Client.id == client.id).values(values))
        if body.voucher_types is not None:
            _set_voucher_types(session, client, body.voucher_types)
        session.refresh(client)
        record = _record(session, client)
        session.commit()
    return record


def list_clients(
    db: Database,
    caller: Caller,
    *,
    external_client_id: str | None = None,
    q: str | None = None,
    limit: int,
    cursor: str | None = None,
) -> Page[ClientRecord]:
    query = select(Client).where(Client.tenant_id == caller.tenant_id)
    if external_client_id is not None:
        query = query.where(Client.external_client_id == external_client_id)
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            or_(
                Client.name.ilike(pattern, escape="\\"),
                Client.code.ilike(pattern, escape="\\"),
                Client.external_client_id.ilike(pattern, escape="\\"),
            )
        )
    if cursor:
        query = query.where(Client.id < cursor)
    with db.unit_of_work(write=False) as session:
        rows = list(session.scalars(query.order_by(Client.id.desc()).limit(limit + 1)))
        types = voucher_types_of(session, [c.id for c in rows[:limit]])
    records = [ClientRecord(c, types[c.id]) for c in rows[:limit]]
    return Page(records, rows[limit - 1].id if len(rows) > limit else None)


def allowed_campaigns(session: Session, client_id: str) -> set[str]:
    return set(
        session.scalars(
            select(ClientVoucherType.campaign_id).where(ClientVoucherType.client_id == client_id)
        )
    )
