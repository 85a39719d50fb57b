"""A publication from a campaign's pool with nothing else to write or look up (no
Idempotency-Key, source_id, customer or delivery), on PostgreSQL, is the campaign's read and one
statement writing the publication, its codes, their links and its event, each its own
transaction (``Database.single_write``): no ``BEGIN``/``COMMIT``, and the same answers, rows and
refusals as the transactional way, which SQLite, every other publication and a Database bound
to a connection still take. A pool short of the count writes nothing and is answered by the
transactional way, as before.

These run on whole databases whose units of work really commit (``fresh_database``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Connection, func, select, text, update

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.support.clock import FakeClock
from tests.support.concurrency import run_together
from tests.support.wire import statements, statements_seen, statuses, wire
from voucherd.campaigns.models import Campaign
from voucherd.db.engine import Database
from voucherd.errors import Conflict
from voucherd.idempotency.service import IdempotencyClaim
from voucherd.publications.models import Publication, PublicationVoucher
from voucherd.publications.pool import claim_publication, publication_row
from voucherd.publications.publish import publish
from voucherd.publications.schemas import PublicationRecord, PublishRequest, present_publication
from voucherd.publications.sql import POOL_CURSOR
from voucherd.vouchers.mint import mint_vouchers
from voucherd.vouchers.models import Voucher, VoucherEvent
from voucherd.vouchers.schemas import MintVouchers


@pytest.fixture
def database(fresh_database: Callable[..., Database]) -> Database:
    return fresh_database(pool_size=8, clock=FakeClock())


def _campaign(
    database: Database, tenant: Tenant, codes: int, *, name: str = "pool", mode: str = "STATIC"
) -> Campaign:
    campaign = make_campaign(database, tenant, name=name, mode=mode)
    if codes:
        mint_vouchers(database, tenant.caller, campaign.id, MintVouchers(count=codes))
    return campaign


def _body(campaign: Campaign, **more: Any) -> PublishRequest:
    return PublishRequest.model_validate({"campaign": campaign.id, **more})


def _rows(database: Database, campaign: Campaign) -> tuple[int, int, int, int]:
    """The campaign's publications, links, ``published`` events and published codes."""
    with database.unit_of_work(write=False) as session:
        publications = session.scalar(
            select(func.count()).where(Publication.campaign_id == campaign.id)
        )
        links = session.scalar(
            select(func.count())
            .select_from(PublicationVoucher)
            .join(Voucher, Voucher.id == PublicationVoucher.voucher_id)
            .where(Voucher.campaign_id == campaign.id)
        )
        events = session.scalar(
            select(func.count()).where(
                VoucherEvent.campaign_id == campaign.id, VoucherEvent.kind == "published"
            )
        )
        published = session.scalar(
            select(func.count()).where(
                Voucher.campaign_id == campaign.id, Voucher.published_count > 0
            )
        )
    return int(publications or 0), int(links or 0), int(events or 0), int(published or 0)


def _bound(database: Database, connection: Connection) -> Database:
    """The same database bound to one connection: the transactional way, always."""
    bound = Database(
        database.engine, settings=database.settings, bind=connection, clock=database.clock
    )
    assert bound.writes_single is False
    return bound


class TestOneStatement:
    def test_the_read_and_one_statement_and_no_transaction_on_postgresql(
        self, database: Database, tmp_path: Path
    ) -> None:
        tenant = make_tenant(database)
        campaign = _campaign(database, tenant, 5)
        if database.is_postgresql:
            with wire(database, tmp_path / "trace") as on_wire:
                one = publish(database, tenant.caller, _body(campaign)).record
                three = publish(database, tenant.caller, _body(campaign, count=3)).record
            # The campaign's read and the statement that writes it all (a CTE: its tag is its
            # SELECT's), nothing left open after either.
            assert statements(on_wire) == ["SELECT 1", "SELECT 1", "SELECT 1", "SELECT 3"]
            assert statuses(on_wire) == {"I"}
        else:
            assert database.writes_single is False
            with statements_seen(database) as seen:
                one = publish(database, tenant.caller, _body(campaign)).record
                three = publish(database, tenant.caller, _body(campaign, count=3)).record
            assert ("BEGIN", True) in seen
        assert (one.count, three.count) == (1, 3)
        assert one.voucher is not None
        assert one.voucher.voucher.code == one.codes[0][1]
        assert three.voucher is None
        assert len({code for _, code in one.codes + three.codes}) == 4
        assert _rows(database, campaign) == (2, 4, 2, 4)

    def test_the_claim_wraps_round_to_the_head_as_before(
        self, database: Database, tmp_path: Path
    ) -> None:
        """Nothing past this process's cursor: a second try from the head of the pool."""
        tenant = make_tenant(database)
        campaign = _campaign(database, tenant, 3)
        with database.unit_of_work(write=False) as session:
            ids = list(
                session.scalars(
                    select(Voucher.id)
                    .where(Voucher.campaign_id == campaign.id)
                    .order_by(Voucher.id)
                )
            )
        POOL_CURSOR.moved(campaign.id, ids[-1])
        if database.is_postgresql:
            with wire(database, tmp_path / "trace") as on_wire:
                record = publish(database, tenant.caller, _body(campaign, count=2)).record
            # The read, a claim after the cursor that finds nothing, one from the head.
            assert statements(on_wire) == ["SELECT 1", "SELECT 0", "SELECT 2"]
            assert statuses(on_wire) == {"I"}
        else:
            record = publish(database, tenant.caller, _body(campaign, count=2)).record
        assert [voucher_id for voucher_id, _ in record.codes] == ids[:2]
        assert _rows(database, campaign) == (1, 2, 1, 2)

    def test_the_same_answer_as_the_transactional_way(self, database: Database) -> None:
        """Two tenants alike, one publication each way: the answers and the rows agree, but
        for the ids and codes."""
        answers, rows = [], []
        for way in ("single", "transaction"):
            tenant = make_tenant(database)
            campaign = _campaign(database, tenant, 2, name="alike")
            body = _body(campaign, channel="SMS", metadata={"k": [1, "x"]})
            if way == "single":
                record = publish(database, tenant.caller, body).record
            else:
                with database.engine.connect() as connection:
                    record = publish(_bound(database, connection), tenant.caller, body).record
                    connection.commit()
            answers.append(_anonymous(database, record, tenant))
            rows.append(_rows(database, campaign))
            with database.unit_of_work(write=False) as session:
                stored = session.get_one(Publication, record.publication.id)
                assert (stored.channel, stored.metadata_, stored.created_at) == (
                    "SMS",
                    {"k": [1, "x"]},
                    database.now(),
                )
                data = session.scalars(
                    select(VoucherEvent.data).where(VoucherEvent.campaign_id == campaign.id)
                ).all()
                assert [d for d in data if d.get("publication_id")] == [
                    {"publication_id": record.publication.id, "count": 1}
                ]
        assert answers[0] == answers[1]
        assert rows == [(1, 1, 1, 1)] * 2

    def test_others_keep_the_transaction(self, database: Database) -> None:
        """An Idempotency-Key, a source_id or a customer: each asks for the transactional way."""
        tenant = make_tenant(database)
        campaign = _campaign(database, tenant, 5)
        claim = IdempotencyClaim.of("key-1", "POST", "/api/v1/publications", b"{}")
        for body, idem in (
            (_body(campaign), claim),
            (_body(campaign, source_id="s-1"), None),
            (_body(campaign, customer={"source_id": "c-1"}), None),
        ):
            with statements_seen(database) as seen:
                publish(database, tenant.caller, body, idem=idem)
            assert ("BEGIN", True) in seen or any(opened for _, opened in seen)
            assert ("WITH", False) not in seen
        assert _rows(database, campaign) == (3, 3, 3, 3)


class TestShortPool:
    def test_an_empty_pool_is_refused_as_before_and_nothing_is_written(
        self, database: Database
    ) -> None:
        tenant = make_tenant(database)
        empty = _campaign(database, tenant, 0, name="empty")
        short = _campaign(database, tenant, 3, name="short")
        for campaign, count, missing in ((empty, 1, 1), (short, 4, 1)):
            refusals = [
                _refusal(database, tenant, _body(campaign, count=count), bound=b)
                for b in (False, True)
            ]
            for refusal in refusals:
                assert (refusal.code, refusal.field, refusal.extra) == (
                    "pool_exhausted",
                    "count",
                    {"missing": missing},
                )
            assert str(refusals[0]) == str(refusals[1])
            assert _rows(database, campaign) == (0, 0, 0, 0)
        assert publish(database, tenant.caller, _body(short, count=3)).record.count == 3

    def test_an_auto_update_campaign_still_mints_what_is_missing(self, database: Database) -> None:
        tenant = make_tenant(database)
        campaign = _campaign(database, tenant, 0, mode="AUTO_UPDATE")
        record = publish(database, tenant.caller, _body(campaign)).record
        assert record.count == 1
        assert record.voucher is not None
        assert _rows(database, campaign) == (1, 1, 1, 1)

    def test_an_inactive_campaign_is_refused_and_the_statement_rechecks_it(
        self, database: Database
    ) -> None:
        tenant = make_tenant(database)
        campaign = _campaign(database, tenant, 2)
        with database.unit_of_work() as session:
            session.execute(update(Campaign).where(Campaign.id == campaign.id).values(active=False))
            session.commit()
        with pytest.raises(Conflict) as refused:
            publish(database, tenant.caller, _body(campaign))
        assert refused.value.code == "campaign_inactive"
        if database.writes_single:
            # Switched off after the read: the statement itself claims nothing.
            row = publication_row(
                tenant_id=tenant.id,
                channel="API",
                now=database.now(),
                campaign_id=campaign.id,
                actor=tenant.caller.key_id,
            )
            with database.single_write() as connection:
                assert claim_publication(connection, publication=row, count=1) == []
        assert _rows(database, campaign) == (0, 0, 0, 0)


POOL = 120
THREADS = 6


def test_concurrent_publications_never_share_a_code(database: Database) -> None:
    """Threads publish one or two codes at a time from one pool until it is empty: every code
    in exactly one publication, every publication whole."""
    tenant = make_tenant(database)
    campaign = _campaign(database, tenant, POOL)

    refusals: Counter[str] = Counter()

    def drain(count: int) -> list[PublicationRecord]:
        made = []
        while True:
            try:
                made.append(publish(database, tenant.caller, _body(campaign, count=count)).record)
            except Conflict as refused:
                refusals[refused.code] += 1
                if count == 1:
                    return made
                count = 1

    outcomes = run_together([partial(drain, 1 + i % 2) for i in range(THREADS)])
    records = [record for made in outcomes for record in made]
    records += drain(1)  # a code skipped while another thread held it locked, if any
    assert set(refusals) == {"pool_exhausted"}
    codes = Counter(code for record in records for _, code in record.codes)
    assert codes.most_common(1)[0][1] == 1
    assert sum(codes.values()) == POOL
    assert all(record.count == len(record.codes) for record in records)
    assert _rows(database, campaign) == (len(records), POOL, len(records), POOL)
    with database.unit_of_work(write=False) as session:
        counted = session.execute(
            select(PublicationVoucher.publication_id, func.count()).group_by(
                PublicationVoucher.publication_id
            )
        ).all()
    assert dict(counted) == {r.publication.id: r.count for r in records}


def test_a_one_code_claim_is_planned_once_not_on_every_publication(
    fresh_database: Callable[..., Database],
) -> None:
    """With its count as a parameter (``LIMIT $n``) PostgreSQL costs the claim's generic plan
    for an unknown limit (a tenth of the rows) and, on a pool of a few thousand codes already,
    judged it too dear and planned the statement afresh on every publication (on 40 codes it
    did not); a one-code claim says ``LIMIT 1`` and keeps a generic plan."""
    database = fresh_database(pool_size=1)  # sequential: every statement on the one connection
    if not database.writes_single:
        pytest.skip("the one-statement claim is PostgreSQL's")
    tenant = make_tenant(database)
    campaign = _campaign(database, tenant, 3_000)
    with database.single_write() as connection:
        connection.execute(text("ANALYZE voucher"))  # the statistics a live database has
    for _ in range(12):
        assert publish(database, tenant.caller, _body(campaign)).record.count == 1
    with database.single_read() as connection:
        plans = connection.execute(
            text(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement LIKE 'WITH head AS%'"
                " ORDER BY generic_plans + custom_plans DESC"
            )
        ).all()
    assert plans, "the claim was never prepared"
    generic, custom = plans[0]  # the claims after the first (which starts at the pool's head)
    assert generic >= 1, plans
    assert custom <= 5, plans


def _refusal(database: Database, tenant: Tenant, body: PublishRequest, *, bound: bool) -> Conflict:
    """The Conflict a publication is refused with, the single way or (``bound``) the
    transactional way."""
    with database.engine.connect() as connection:
        db = _bound(database, connection) if bound else database
        with pytest.raises(Conflict) as refused:
            publish(db, tenant.caller, body)
    return refused.value


def _anonymous(database: Database, record: PublicationRecord, tenant: Tenant) -> dict[str, Any]:
    """The answer as JSON, its ids, codes and tokens replaced by their names."""
    shown = present_publication(
        record, now=database.now(), base_url=database.settings.public_base_url
    )
    text = orjson.dumps(shown, default=str).decode()
    varying = {
        record.publication.id: "PUBLICATION",
        record.publication.campaign_id: "CAMPAIGN",
        tenant.id: "TENANT",
    }
    assert record.voucher is not None
    voucher = record.voucher.voucher
    varying |= {voucher.id: "VOUCHER", voucher.code: "CODE", voucher.public_token: "TOKEN"}
    for value, name in varying.items():
        if value:
            text = text.replace(value, name)
    answer: dict[str, Any] = orjson.loads(text)
    return answer
