"""Acceptance: concurrent publishing never gives one code twice, on SQLite and PostgreSQL.

Real commits (``fresh_database``), requests through the HTTP app from 16 threads at once.
"""

from __future__ import annotations

import random
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.support.concurrency import run_together
from voucherd.app import create_app
from voucherd.config import Settings
from voucherd.db.engine import Database
from voucherd.publications.models import Publication, PublicationVoucher
from voucherd.vouchers.mint import mint_vouchers
from voucherd.vouchers.models import Voucher
from voucherd.vouchers.schemas import MintVouchers

POOL = 10_000
THREADS = 16


@dataclass
class Outcome:
    codes: list[str] = field(default_factory=list)
    publications: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)


def _drain(client: TestClient, tenant: Tenant, campaign_id: str, seed: int) -> Outcome:
    """Publish 5 to 20 codes at a time until the pool is empty; a short answer's ``missing``
    says how many fewer to ask for next."""
    rng = random.Random(seed)
    outcome = Outcome()
    count = rng.randint(5, 20)
    while True:
        body = {"campaign": campaign_id, "count": count, "customer": {"source_id": f"c{seed}"}}
        response = client.post("/api/v1/publications", headers=tenant.headers, json=body)
        if response.status_code >= 500:
            outcome.server_errors.append(response.text[:300])
            return outcome
        if response.status_code == 201:
            outcome.codes += response.json()["vouchers"]
            outcome.publications += 1
            count = rng.randint(5, 20)
            continue
        problem = response.json()
        outcome.refused[problem["code"]] += 1
        if problem["code"] != "pool_exhausted" or count == 1:
            return outcome
        count = max(count - problem["missing"], 1)


def test_sixteen_threads_drain_a_pool_of_ten_thousand(
    fresh_database: Callable[..., Database], settings: Settings
) -> None:
    db = fresh_database()
    tenant = make_tenant(db)
    campaign = make_campaign(db, tenant, name=f"pool-{secrets.token_hex(3)}")
    mint_vouchers(db, tenant.caller, campaign.id, MintVouchers(count=POOL))
    app = create_app(settings.model_copy(update={"database_url": str(db.engine.url)}), db=db)

    with TestClient(app, raise_server_exceptions=False) as client:
        outcomes = run_together(
            [
                (lambda seed=seed: _drain(client, tenant, campaign.id, seed))
                for seed in range(THREADS)
            ]
        )

    codes = [code for o in outcomes for code in o.codes]
    assert [e for o in outcomes for e in o.server_errors] == []
    refusals: Counter[str] = Counter()
    for o in outcomes:
        refusals.update(o.refused)
    assert set(refusals) <= {"pool_exhausted"}
    assert len(codes) == POOL
    assert len(set(codes)) == POOL  # no code went to two publications
    with db.unit_of_work(write=False) as session:
        links, distinct = session.execute(
            select(func.count(), func.count(func.distinct(PublicationVoucher.voucher_id)))
        ).one()
        publications = session.scalar(select(func.count()).select_from(Publication))
        counts = {
            n: c
            for n, c in session.execute(
                select(Voucher.published_count, func.count())
                .where(Voucher.campaign_id == campaign.id)
                .group_by(Voucher.published_count)
            )
        }
    assert (links, distinct) == (POOL, POOL)
    assert publications == sum(o.publications for o in outcomes)
    assert counts == {1: POOL}


def _concurrently(
    db: Database, settings: Settings, bodies: list[dict[str, Any]], tenant: Tenant
) -> list[Any]:
    app = create_app(settings.model_copy(update={"database_url": str(db.engine.url)}), db=db)
    with TestClient(app, raise_server_exceptions=False) as client:
        return run_together(
            [
                (
                    lambda body=body: client.post(
                        "/api/v1/publications", headers=tenant.headers, json=body
                    )
                )
                for body in bodies
            ]
        )


def test_one_source_id_sent_at_once_makes_one_publication(
    fresh_database: Callable[..., Database], settings: Settings
) -> None:
    db = fresh_database(pool_size=8)
    tenant = make_tenant(db)
    campaign = make_campaign(db, tenant)
    mint_vouchers(db, tenant.caller, campaign.id, MintVouchers(count=50))
    body = {"campaign": campaign.id, "count": 3, "source_id": "order-7"}

    responses = _concurrently(db, settings, [body] * 8, tenant)

    assert sorted(r.status_code for r in responses) == [200] * 7 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert len({tuple(r.json()["vouchers"]) for r in responses}) == 1
    with db.unit_of_work(write=False) as session:
        assert session.scalar(select(func.count()).select_from(PublicationVoucher)) == 3


def test_join_once_sent_at_once_gives_one_voucher(
    fresh_database: Callable[..., Database], settings: Settings
) -> None:
    db = fresh_database(pool_size=8)
    tenant = make_tenant(db)
    campaign = make_campaign(db, tenant)
    mint_vouchers(db, tenant.caller, campaign.id, MintVouchers(count=50))
    client_body = {"campaign": campaign.id, "customer": {"source_id": "once"}, "join_once": True}

    responses = _concurrently(db, settings, [client_body] * 8, tenant)

    statuses = Counter(r.status_code for r in responses)
    assert statuses == Counter({201: 1, 409: 7}), [r.text for r in responses]
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"already_joined"}
    with db.unit_of_work(write=False) as session:
        assert session.scalar(select(func.count()).select_from(PublicationVoucher)) == 1
