"""Issuing: one voucher to a customer, or N vouchers into a campaign (bulk mint).

Bulk minting is written for PostgreSQL's strengths: codes are drawn in Python in batches,
``COPY``-ed into a temporary staging table, and moved into ``voucher`` by one
``INSERT ... SELECT ... ON CONFLICT (code) DO NOTHING`` per batch, with the opening ledger
entries written by the same statement (a data-modifying CTE). A code that collides with one
already stored is simply redrawn, so the database's unique index is the only judge of
uniqueness, under any number of concurrent minters.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, insert, null, or_, select, text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from voucherd.auth.models import Tenant
from voucherd.auth.service import Caller
from voucherd.campaigns.models import Campaign
from voucherd.campaigns.service import localise
from voucherd.codes.generator import CodeSpec, capacity, is_mistyped, spec_from_config
from voucherd.db.dialect import is_postgresql
from voucherd.db.engine import Database
from voucherd.delivery.enqueue import (
    DELIVERY_CTE,
    automatic_delivery,
    cte_parameters,
    insert_planned,
    plan_delivery,
)
from voucherd.delivery.enqueue import tenant_settings as read_tenant_settings
from voucherd.delivery.schemas import RequestedDelivery
from voucherd.errors import Conflict, InvalidInput, LimitReached, NotFound
from voucherd.idempotency import service as idempotency
from voucherd.ids import new_id, new_ids, new_public_tokens
from voucherd.money import MAX_MINOR_UNITS, to_minor
from voucherd.observability import metrics
from voucherd.vouchers.limits import count_customer_issue, spend_campaign_budget, spend_weekly_value
from voucherd.vouchers.models import LedgerEntry, Voucher, VoucherEvent
from voucherd.vouchers.schemas import (
    IssueVoucher,
    MintResult,
    MintVouchers,
    VoucherOverrides,
    VoucherRecord,
)
from voucherd.vouchers.validity import expiry_at_issue

BALANCE_TYPES = ("GIFT", "CASH", "LOYALTY")
MONEY_TYPES = ("GIFT", "CASH")  # what counts towards budgets and the weekly value limit
MINT_BATCH = 20_000
_REDRAWS = 12
# Above this many codes of headroom, counting a campaign's codes before each issue is skipped.
_COUNT_CAPACITY_BELOW = 2**40


@dataclass(frozen=True)
class _IssueTerms:
    """Everything shared by the vouchers made in one issuing request."""

    campaign: Campaign
    value: int | None
    start_date: datetime | None
    expiration_date: datetime | None
    category: str | None
    additional_info: str | None
    metadata: dict[str, Any] | None
    redemption_quantity: int | None
    spec: CodeSpec  # how this request's codes are drawn


def _campaign_for_issue(session: Session, tenant_id: str, ref: str) -> tuple[Campaign, int | None]:
    campaign, limit, _ = _campaign_and_tenant(session, tenant_id, ref, with_settings=False)
    return campaign, limit


def _campaign_and_tenant(
    session: Session, tenant_id: str, ref: str, *, with_settings: bool
) -> tuple[Campaign, int | None, dict[str, Any] | None]:
    """The campaign, the tenant's weekly limit and (for deliveries) its settings, in one read."""
    settings = Tenant.settings if with_settings else null()
    rows = session.execute(
        select(Campaign, Tenant.weekly_value_limit, settings)
        .join(Tenant, Tenant.id == Campaign.tenant_id)
        .where(Campaign.tenant_id == tenant_id, or_(Campaign.id == ref, Campaign.name == ref))
    ).all()
    if not rows:
        raise NotFound(f"no campaign with id or name {ref!r}", field="campaign")
    campaign, limit, tenant_settings = next((r for r in rows if r[0].id == ref), rows[0])
    return campaign, limit, tenant_settings


def _requested_value(body: IssueVoucher, campaign: Campaign) -> int | None:
    """The value asked for, in minor units. ``major_value`` (i-movo's 20.00) is converted here,
    where the campaign's currency is known, so faces need no read of their own to convert."""
    if body.major_value is None:
        return body.value
    if body.value is not None:
        raise InvalidInput("give value or major_value, not both", field="major_value")
    if campaign.currency is None or campaign.type not in MONEY_TYPES:
        raise InvalidInput(
            f"a {campaign.type} voucher's value is not an amount of money", field="major_value"
        )
    try:
        minor = to_minor(body.major_value, campaign.currency)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="major_value") from exc
    if not 0 < minor <= MAX_MINOR_UNITS:
        raise InvalidInput("must be a positive amount", field="major_value")
    return minor


def _terms(
    campaign: Campaign, value: int | None, overrides: VoucherOverrides, now: datetime
) -> _IssueTerms:
    if not campaign.active:
        raise Conflict("the campaign is not active", field="campaign", code="campaign_inactive")
    if campaign.type == "DISCOUNT":
        if value is not None:
            raise InvalidInput(
                "a DISCOUNT voucher's value is its campaign's discount", field="value"
            )
    else:
        value = value if value is not None else campaign.default_value
        if value is None or (value == 0 and campaign.type != "LOYALTY"):
            raise InvalidInput(
                f"a {campaign.type} voucher needs a value and its campaign has no default_value",
                field="value",
            )
        if campaign.max_value is not None and value > campaign.max_value:
            raise InvalidInput(
                f"{value} is above this campaign's maximum value of {campaign.max_value}",
                field="value",
                code="value_above_maximum",
            )
    start = localise(overrides.start_date, campaign.timezone) or campaign.start_date
    expiry = localise(overrides.expiration_date, campaign.timezone) or expiry_at_issue(
        issued_at=now,
        expiration_date=campaign.expiration_date,
        lifetime_days=campaign.lifetime_days,
        timezone=campaign.timezone,
    )
    if start is not None and expiry is not None and start >= expiry:
        raise InvalidInput("expiration_date must be after start_date", field="expiration_date")
    if expiry is not None and expiry <= now:
        raise InvalidInput(
            "the voucher would already be expired", field="expiration_date", code="campaign_expired"
        )
    quantity = overrides.redemption_quantity or campaign.redemption_quantity
    if campaign.type == "CASH" and quantity != 1:
        raise InvalidInput("a CASH voucher is paid out once", field="redemption_quantity")
    code_config = overrides.code_config.stored() if overrides.code_config else campaign.code_config
    return _IssueTerms(
        campaign=campaign,
        value=value,
        start_date=start,
        expiration_date=expiry,
        category=overrides.category or campaign.category,
        additional_info=overrides.additional_info,
        metadata=overrides.metadata,
        redemption_quantity=quantity,
        spec=spec_from_config(code_config),
    )


def _spend_limits(
    session: Session, terms: _IssueTerms, count: int, weekly_limit: int | None, now: datetime
) -> None:
    campaign = terms.campaign
    if campaign.type in MONEY_TYPES and terms.value:
        total = terms.value * count
        spend_campaign_budget(session, campaign, total)
        spend_weekly_value(session, campaign.tenant_id, total, now, limit_seen=weekly_limit)


def _take_turns_in_small_space(session: Session, spec: CodeSpec) -> None:
    """In a small code space, drawers of the same code shape take turns (PostgreSQL).

    Two transactions whose fresh codes overlap would each wait in ``INSERT ... ON CONFLICT``
    for the other's uncommitted row — a deadlock PostgreSQL breaks by aborting one — and
    concurrent capacity counts would each miss the other's codes. A transaction-scoped
    advisory lock on the shape makes them queue instead. Large spaces (the default 60-bit
    codes) never get here: collisions there are too rare to be worth a lock.
    """
    if not is_postgresql(session):
        return  # SQLite's writer lock already serialises every writer
    shape = repr((spec.charset, spec.random_length, spec.prefix, spec.postfix, spec.pattern))
    key = int.from_bytes(hashlib.sha256(shape.encode()).digest()[:8], "big", signed=True)
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _check_capacity(
    session: Session, db: Database, campaign: Campaign, spec: CodeSpec, count: int
) -> None:
    room = capacity(spec, db.settings.max_code_space_fill)
    if room >= _COUNT_CAPACITY_BELOW:
        return
    _take_turns_in_small_space(session, spec)
    existing = session.scalar(select(func.count()).where(Voucher.campaign_id == campaign.id)) or 0
    if existing + count > room:
        raise LimitReached(
            f"the campaign's code_config allows {room} codes ({db.settings.max_code_space_fill:.0%} of "
            f"its {spec.space_size} possible codes, so codes stay unguessable); "
            f"{existing} exist, {max(room - existing, 0)} remain",
            field="count" if count > 1 else "campaign",
            code="code_space_exhausted",
        )


def _voucher_row(terms: _IssueTerms, *, now: datetime) -> dict[str, Any]:
    c = terms.campaign
    has_balance = c.type in BALANCE_TYPES
    return {
        "tenant_id": c.tenant_id,
        "campaign_id": c.id,
        "type": c.type,
        "state": "ACTIVE",
        "currency": c.currency,
        "amount": terms.value,
        "balance": terms.value if has_balance else None,
        "redemption_quantity": terms.redemption_quantity,
        "redeemed_quantity": 0,
        "start_date": terms.start_date,
        "expiration_date": terms.expiration_date,
        "category": terms.category,
        "additional_info": terms.additional_info,
        "metadata_": terms.metadata,
        "created_at": now,
        "updated_at": now,
    }


_VOUCHER_TABLE = cast(Table, Voucher.__table__)
_ISSUE_COLUMNS = (
    "id", "tenant_id", "campaign_id", "code", "public_token", "type", "state", "currency",
    "amount", "balance", "redemption_quantity", "redeemed_quantity", "start_date",
    "expiration_date", "customer_ref", "holder_name", "holder_address", "holder_postcode",
    "category", "additional_info", "metadata", "created_at", "updated_at",
)  # fmt: skip

# PostgreSQL: the voucher, its opening ledger entry and its "issued" event in one statement,
# one round trip. A code that collides inserts nothing at all, and the caller redraws.
_ISSUE_CTES = (
    "WITH v AS (INSERT INTO voucher ("
    + ", ".join(_ISSUE_COLUMNS)
    + ") VALUES ("
    + ", ".join("CAST(:metadata AS jsonb)" if c == "metadata" else f":{c}" for c in _ISSUE_COLUMNS)
    + ") ON CONFLICT (code) DO NOTHING RETURNING id, balance), "
    "ledger AS (INSERT INTO ledger_entry (tenant_id, voucher_id, delta, kind, created_at) "
    "SELECT :tenant_id, id, balance, 'ISSUE', :created_at FROM v WHERE balance > 0), "
    "event AS (INSERT INTO voucher_event "
    "(tenant_id, voucher_id, campaign_id, kind, actor, data, created_at) "
    "SELECT :tenant_id, id, :campaign_id, 'issued', :actor, CAST(:event_data AS jsonb), "
    ":created_at FROM v)"
)
_ISSUE_ON_POSTGRESQL = text(_ISSUE_CTES + " SELECT id FROM v")
# Issued with a delivery: its outbox row and first event ride in the same statement.
_ISSUE_WITH_DELIVERY_ON_POSTGRESQL = text(f"{_ISSUE_CTES}, {DELIVERY_CTE} SELECT id FROM v")
# SQLite: the same three rows as prebuilt statements; its round trips are function calls.
_ISSUE_VOUCHER_ON_SQLITE = (
    sqlite_insert(_VOUCHER_TABLE)
    .on_conflict_do_nothing(index_elements=["code"])
    .returning(_VOUCHER_TABLE.c.id)
)
_ISSUE_LEDGER_ON_SQLITE = insert(cast(Table, LedgerEntry.__table__))
_ISSUE_EVENT_ON_SQLITE = insert(cast(Table, VoucherEvent.__table__))


def _insert_issued(
    session: Session,
    row: dict[str, Any],
    *,
    actor: str,
    event: dict[str, Any],
    delivery: dict[str, Any] | None = None,
) -> bool:
    """Write one issued voucher with its ledger entry and event; False if its code is taken.

    Statements are built once at import and executed with parameters: building an ORM
    statement per request cost more CPU than the database spent on the three rows.
    """
    params = {column: row.get(column) for column in _ISSUE_COLUMNS}
    params["metadata"] = row.get("metadata_")
    if is_postgresql(session):
        if params["metadata"] is not None:
            params["metadata"] = json.dumps(params["metadata"])
        params.update(actor=actor, event_data=json.dumps(event))
        if delivery is None:
            return session.execute(_ISSUE_ON_POSTGRESQL, params).first() is not None
        params.update(cte_parameters(delivery))
        return session.execute(_ISSUE_WITH_DELIVERY_ON_POSTGRESQL, params).first() is not None
    if session.execute(_ISSUE_VOUCHER_ON_SQLITE, params).first() is None:
        return False
    if row["balance"]:
        session.execute(
            _ISSUE_LEDGER_ON_SQLITE,
            {
                "tenant_id": row["tenant_id"],
                "voucher_id": row["id"],
                "delta": row["balance"],
                "kind": "ISSUE",
                "created_at": row["created_at"],
            },
        )
    session.execute(
        _ISSUE_EVENT_ON_SQLITE,
        {
            "tenant_id": row["tenant_id"],
            "voucher_id": row["id"],
            "campaign_id": row["campaign_id"],
            "kind": "issued",
            "actor": actor,
            "data": event,
            "created_at": row["created_at"],
        },
    )
    if delivery is not None:
        insert_planned(session, delivery, actor=actor)
    return True


def issue_voucher(
    db: Database,
    caller: Caller,
    body: IssueVoucher,
    *,
    idem: idempotency.IdempotencyClaim | None = None,
) -> VoucherRecord:
    """Issue one voucher, optionally to a customer reference."""
    caller.require("issue")
    if body.code is not None and is_mistyped(body.code):
        raise InvalidInput(
            "this code has the shape of a voucherd code but a wrong check character", field="code"
        )
    now = db.now()
    with db.unit_of_work() as session:
        idempotency.claim(session, db, caller.tenant_id, idem)
        campaign, weekly_limit, tenant_settings = _campaign_and_tenant(
            session, caller.tenant_id, body.campaign, with_settings=body.delivery is not None
        )
        terms = _terms(campaign, _requested_value(body, campaign), body, now)
        asked = body.delivery or automatic_delivery(
            campaign, recipient=body.recipient, customer_ref=body.customer_ref
        )
        count_customer_issue(session, campaign, body.customer_ref)
        _spend_limits(session, terms, 1, weekly_limit, now)
        row = _voucher_row(terms, now=now)
        row.update(
            id=new_id("v"),
            public_token=new_public_tokens(1)[0],
            customer_ref=body.customer_ref,
            holder_name=body.holder.name if body.holder else None,
            holder_address=body.holder.address if body.holder else None,
            holder_postcode=body.holder.postcode if body.holder else None,
        )
        event = {"value": terms.value, "customer_ref": body.customer_ref is not None}
        delivery = None
        if asked is not None:
            if tenant_settings is None:  # the campaign, not the request, asked for a delivery
                tenant_settings = read_tenant_settings(session, caller.tenant_id)
            delivery = plan_delivery(
                asked,
                tenant_settings,
                tenant_id=caller.tenant_id,
                voucher_id=row["id"],
                now=now,
                origin="issue",
            )
        if body.code is not None:
            row["code"] = body.code
            if not _insert_issued(
                session, row, actor=caller.key_id, event=event, delivery=delivery
            ):
                raise Conflict("this code is already in use", field="code", code="duplicate_code")
        else:
            spec = terms.spec
            _check_capacity(session, db, campaign, spec, 1)
            for _ in range(_REDRAWS):
                row["code"] = spec.generate(1)[0]
                if _insert_issued(
                    session, row, actor=caller.key_id, event=event, delivery=delivery
                ):
                    break
            else:
                raise LimitReached(
                    "no free code could be drawn; the code space is nearly full",
                    field="campaign",
                    code="code_space_exhausted",
                )
        idempotency.bind_effect(session, caller.tenant_id, idem, "voucher", row["id"])
        session.commit()
    metrics.vouchers_issued("issue")
    requested = None
    if delivery is not None:
        requested = RequestedDelivery(delivery["id"], delivery["channel"], delivery["state"])
    return VoucherRecord(Voucher(**row), campaign.name, delivery=requested, campaign=campaign)


def mint_vouchers(
    db: Database,
    caller: Caller,
    campaign_ref: str,
    body: MintVouchers,
    *,
    idem: idempotency.IdempotencyClaim | None = None,
    batch_size: int = MINT_BATCH,
) -> MintResult:
    """Add ``count`` vouchers with the campaign's defaults, all or nothing."""
    caller.require("issue")
    if body.count > db.settings.max_bulk_count:
        raise InvalidInput(
            f"at most {db.settings.max_bulk_count} vouchers per request", field="count"
        )
    now = db.now()
    with db.unit_of_work() as session:
        idempotency.claim(session, db, caller.tenant_id, idem)
        campaign, weekly_limit = _campaign_for_issue(session, caller.tenant_id, campaign_ref)
        terms = _terms(campaign, body.value, body, now)
        spec = terms.spec
        _check_capacity(session, db, campaign, spec, body.count)
        _spend_limits(session, terms, body.count, weekly_limit, now)
        template = _voucher_row(terms, now=now)
        minter = _BulkMinter(session, template, spec)
        remaining = body.count
        first_id: str | None = None
        while remaining:
            size = min(batch_size, remaining)
            ids = minter.mint(size)
            first_id = first_id or ids[0]
            session.execute(
                insert(VoucherEvent).values(
                    tenant_id=caller.tenant_id,
                    campaign_id=campaign.id,
                    kind="minted",
                    actor=caller.key_id,
                    data={"count": size, "first_id": ids[0], "last_id": ids[-1]},
                    created_at=now,
                )
            )
            remaining -= size
        first = None
        if body.count == 1 and first_id is not None:
            voucher = session.get(Voucher, first_id)
            assert voucher is not None
            first = VoucherRecord(voucher, campaign.name)
        if first is not None:
            idempotency.bind_effect(session, caller.tenant_id, idem, "voucher", first.voucher.id)
        else:
            idempotency.bind_effect(
                session, caller.tenant_id, idem, f"mint:{body.count}", campaign.id
            )
        session.commit()
    metrics.vouchers_issued("mint", body.count)
    return MintResult(campaign.id, body.count, first)


_STAGING_COLUMNS = "id, code, public_token"
_VOUCHER_COLUMNS = (
    "id, tenant_id, campaign_id, code, public_token, type, state, currency, amount, balance, "
    "redemption_quantity, redeemed_quantity, start_date, expiration_date, category, "
    "additional_info, metadata, created_at, updated_at, published_count"
)


class _BulkMinter:
    """Moves batches of freshly drawn codes into ``voucher`` through a staging table."""

    def __init__(self, session: Session, template: dict[str, Any], spec: CodeSpec) -> None:
        self.session = session
        self.spec = spec
        self.postgres = is_postgresql(session)
        self.with_ledger = bool(template["balance"])
        # Bind the constant columns once, through the mapped types (dates, JSON).
        table = Voucher.__table__
        dialect = session.get_bind().dialect
        self.params: dict[str, Any] = {}
        for key, value in template.items():
            if key == "metadata_":
                self.params["p_metadata"] = None if value is None else json.dumps(value)
                continue
            column = table.c[key]
            processor = column.type.bind_processor(dialect)
            self.params[f"p_{column.name}"] = processor(value) if processor else value
        self.params.setdefault("p_published_count", 0)
        self._create_staging()

    def _create_staging(self) -> None:
        if self.postgres:
            self.session.execute(
                text(
                    "CREATE TEMP TABLE IF NOT EXISTS mint_staging "
                    "(id varchar(32), code varchar(100), public_token varchar(32)) ON COMMIT DROP"
                )
            )
        else:
            self.session.execute(
                text(
                    "CREATE TEMP TABLE IF NOT EXISTS mint_staging "
                    "(id varchar(32), code varchar(100), public_token varchar(32))"
                )
            )

    def mint(self, count: int) -> list[str]:
        ids = new_ids("v", count)
        tokens = dict(zip(ids, new_public_tokens(count), strict=True))
        pending = ids
        for _ in range(_REDRAWS):
            self._stage(pending, self.spec.generate(len(pending)), tokens)
            moved = self._move()
            if moved == len(pending):
                return ids
            pending = self._not_moved()
        raise LimitReached(
            "no free codes could be drawn; the code space is nearly full",
            code="code_space_exhausted",
        )

    def _stage(self, ids: Sequence[str], codes: Sequence[str], tokens: dict[str, str]) -> None:
        self.session.execute(text("DELETE FROM mint_staging"))
        rows = [(i, c, tokens[i]) for i, c in zip(ids, codes, strict=True)]
        if self.postgres:
            # psycopg's COPY: the fastest way to hand PostgreSQL many rows.
            raw: Any = self.session.connection().connection.dbapi_connection
            with (
                raw.cursor() as cursor,
                cursor.copy(f"COPY mint_staging ({_STAGING_COLUMNS}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)
        else:
            self.session.execute(
                text("INSERT INTO mint_staging (id, code, public_token) VALUES (:id, :code, :tok)"),
                [{"id": i, "code": c, "tok": t} for i, c, t in rows],
            )

    def _move(self) -> int:
        constants = ", ".join(f":p_{name.strip()}" for name in _VOUCHER_COLUMNS.split(",")[5:])
        insert_vouchers = (
            f"INSERT INTO voucher ({_VOUCHER_COLUMNS}) "
            f"SELECT s.id, :p_tenant_id, :p_campaign_id, s.code, s.public_token, {constants} "
            "FROM mint_staging s WHERE true ON CONFLICT (code) DO NOTHING"
        )
        if self.postgres:
            insert_vouchers = insert_vouchers.replace(":p_metadata", "CAST(:p_metadata AS jsonb)")
        if not self.with_ledger:
            return int(self.session.execute(text(insert_vouchers), self.params).rowcount)  # type: ignore[attr-defined]
        if self.postgres:
            statement = (
                f"WITH moved AS ({insert_vouchers} RETURNING id) "
                "INSERT INTO ledger_entry (tenant_id, voucher_id, delta, kind, created_at) "
                "SELECT :p_tenant_id, id, :p_balance, 'ISSUE', :p_created_at FROM moved"
            )
            return int(self.session.execute(text(statement), self.params).rowcount)  # type: ignore[attr-defined]
        moved = int(self.session.execute(text(insert_vouchers), self.params).rowcount)  # type: ignore[attr-defined]
        self.session.execute(
            text(
                "INSERT INTO ledger_entry (tenant_id, voucher_id, delta, kind, created_at) "
                "SELECT :p_tenant_id, s.id, :p_balance, 'ISSUE', :p_created_at FROM mint_staging s "
                "WHERE EXISTS (SELECT 1 FROM voucher v WHERE v.id = s.id)"
            ),
            self.params,
        )
        return moved

    def _not_moved(self) -> list[str]:
        return list(
            self.session.scalars(
                text(
                    "SELECT s.id FROM mint_staging s "
                    "WHERE NOT EXISTS (SELECT 1 FROM voucher v WHERE v.id = s.id)"
                )
            )
        )


def mint_in_session(
    session: Session,
    db: Database,
    campaign: Campaign,
    count: int,
    *,
    actor: str,
    now: datetime,
    overrides: VoucherOverrides | None = None,
    value: int | None = None,
    publication_id: str | None = None,
) -> list[str]:
    """Mint ``count`` vouchers with the campaign's defaults inside the caller's transaction.

    For pools that grow on demand (an AUTO_UPDATE campaign publishing more codes than it has
    left): the same terms, limits, capacity check and minting as :func:`mint_vouchers`, but the
    caller's use case owns the transaction and decides what happens to the new vouchers.

    With ``publication_id`` the vouchers are born published in that publication (a client
    order's line item): they never enter the campaign's pool, so no concurrent claim can take
    them, and it costs no second write of each voucher.
    """
    campaign, weekly_limit = _campaign_for_issue(session, campaign.tenant_id, campaign.id)
    terms = _terms(campaign, value, overrides or VoucherOverrides(), now)
    spec = terms.spec
    _check_capacity(session, db, campaign, spec, count)
    _spend_limits(session, terms, count, weekly_limit, now)
    template = _voucher_row(terms, now=now)
    if publication_id is not None:
        template["published_count"] = 1
    ids = _BulkMinter(session, template, spec).mint(count)
    metrics.vouchers_issued_when_committed(session, "mint", count)
    data: dict[str, Any] = {"count": count, "first_id": ids[0], "last_id": ids[-1]}
    if publication_id is not None:
        _link_minted(session, campaign.tenant_id, publication_id, ids)
        data["publication_id"] = publication_id
    session.execute(
        insert(VoucherEvent).values(
            tenant_id=campaign.tenant_id,
            campaign_id=campaign.id,
            kind="minted",
            actor=actor,
            data=data,
            created_at=now,
        )
    )
    return ids


def _link_minted(session: Session, tenant_id: str, publication_id: str, ids: list[str]) -> None:
    if is_postgresql(session):
        # One statement and one array parameter for the whole batch, not a row per voucher.
        session.execute(
            text(
                "INSERT INTO publication_voucher (publication_id, voucher_id, tenant_id) "
                "SELECT :publication_id, unnest(CAST(:ids AS varchar[])), :tenant_id"
            ),
            {"publication_id": publication_id, "ids": ids, "tenant_id": tenant_id},
        )
        return
    session.execute(
        text(
            "INSERT INTO publication_voucher (publication_id, voucher_id, tenant_id) "
            "VALUES (:publication_id, :voucher_id, :tenant_id)"
        ),
        [{"publication_id": publication_id, "voucher_id": v, "tenant_id": tenant_id} for v in ids],
    )
