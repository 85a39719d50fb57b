"""Publications over the native API: a given voucher, codes from a pool, AUTO_UPDATE minting,
join_once, source_id replay, listing, and what a voucher shows of its publications."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.factories.vouchers import issue
from tests.support.clock import FakeClock
from voucherd.campaigns.models import Campaign
from voucherd.db.engine import Database
from voucherd.publications.models import Publication, PublicationVoucher
from voucherd.publications.pool import pool_size
from voucherd.vouchers.mint import mint_vouchers
from voucherd.vouchers.models import Voucher, VoucherEvent
from voucherd.vouchers.schemas import MintVouchers


def _publish(api: TestClient, tenant: Tenant, **body: Any) -> Response:
    return api.post("/api/v1/publications", headers=tenant.headers, json=body)


def _published(api: TestClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    response = _publish(api, tenant, **body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def _problem(response: Response, status: int, code: str, field: str) -> None:
    assert response.status_code == status, response.text
    problem = response.json()
    assert problem["code"] == code
    assert problem["errors"][0]["field"] == field


def _pool(db: Database, tenant: Tenant, campaign: Campaign) -> int:
    with db.unit_of_work(write=False) as session:
        return pool_size(session, tenant_id=tenant.id, campaign_id=campaign.id, now=db.now())


def _campaign_with(db: Database, tenant: Tenant, count: int, **fields: Any) -> Campaign:
    campaign = make_campaign(db, tenant, **fields)
    if count:
        mint_vouchers(db, tenant.caller, campaign.id, MintVouchers(count=count))
    return campaign


def _customer(api: TestClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    response = api.post("/api/v1/customers", headers=tenant.headers, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def _links(db: Database) -> int:
    with db.unit_of_work(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(PublicationVoucher)) or 0)


class TestPublishGivenVoucher:
    def test_by_code_to_a_customer_by_id(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        voucher = issue(db, tenant, make_campaign(db, tenant)).voucher
        customer = _customer(api, tenant, source_id="u-1", name="Ada")

        shown = _published(
            api,
            tenant,
            voucher=voucher.code,
            customer=customer["id"],
            channel="newsletter_October",
            metadata={"batch": 7},
        )

        assert shown["object"] == "publication"
        assert shown["id"].startswith("pub_")
        assert (shown["customer_id"], shown["customer"]) == (customer["id"], "u-1")
        assert (shown["channel"], shown["metadata"], shown["count"]) == (
            "newsletter_October",
            {"batch": 7},
            1,
        )
        assert (shown["vouchers"], shown["vouchers_id"]) == ([voucher.code], [voucher.id])
        assert shown["voucher"]["code"] == voucher.code
        assert shown["voucher"]["holder_id"] == customer["id"]
        assert shown["voucher"]["publish"]["count"] == 1

    def test_by_id_to_a_customer_by_source_id_on_the_default_channel(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        voucher = issue(db, tenant, make_campaign(db, tenant)).voucher
        customer = _customer(api, tenant, source_id="u-2")

        shown = _published(api, tenant, voucher=voucher.id, customer="u-2")

        assert (shown["customer_id"], shown["channel"]) == (customer["id"], "API")

    def test_to_a_customer_created_inline(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        voucher = issue(db, tenant, make_campaign(db, tenant)).voucher

        shown = _published(
            api,
            tenant,
            voucher=voucher.code,
            customer={"source_id": "new-1", "email": "erlich@example.com", "name": "Erlich"},
        )

        made = api.get("/api/v1/customers/new-1", headers=tenant.headers).json()
        assert shown["customer_id"] == made["id"]
        assert (made["name"], made["email"]) == ("Erlich", "erlich@example.com")
        again = _published(api, tenant, voucher=voucher.code, customer={"source_id": "new-1"})
        assert again["customer_id"] == made["id"]  # found by source_id, not made twice

    def test_the_voucher_shows_its_publications(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        voucher = issue(db, tenant, make_campaign(db, tenant)).voucher
        _customer(api, tenant, source_id="12344")
        first = _published(api, tenant, voucher=voucher.code, customer="12344", channel="Print")
        second = _published(api, tenant, voucher=voucher.code, customer="12344")

        shown = api.get(f"/api/v1/vouchers/{voucher.code}", headers=tenant.headers).json()

        publish = shown["publish"]
        assert (publish["object"], publish["count"], publish["total"]) == ("list", 2, 2)
        assert publish["data_ref"] == "entries"
        assert [e["id"] for e in publish["entries"]] == [second["id"], first["id"]]
        entry = publish["entries"][1]
        assert entry["object"] == "publication"
        assert (entry["customer"], entry["channel"]) == ("12344", "Print")
        assert entry["published_at"] == first["created_at"]
        listed = api.get("/api/v1/vouchers", headers=tenant.headers).json()["data"]
        assert listed[0]["publish"]["count"] == 2
        assert "entries" not in listed[0]["publish"]  # lists stay one query

    def test_a_voucher_is_never_given_to_a_second_customer(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        voucher = issue(db, tenant, make_campaign(db, tenant)).voucher
        _published(api, tenant, voucher=voucher.code, customer={"source_id": "a"})
        links = _links(db)

        refused = _publish(api, tenant, voucher=voucher.code, customer={"source_id": "b"})

        _problem(refused, 409, "voucher_held_by_another_customer", "voucher")
        assert _links(db) == links
        assert api.get("/api/v1/customers/b", headers=tenant.headers).status_code == 404

    def test_a_cancelled_or_expired_voucher_is_refused(
        self, api: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant)
        cancelled = issue(db, tenant, campaign).voucher
        api.post(f"/api/v1/vouchers/{cancelled.id}/cancel", headers=tenant.headers)
        expiring = issue(
            db, tenant, campaign, expiration_date=(clock() + timedelta(days=1)).isoformat()
        ).voucher
        clock.advance(days=2)

        _problem(_publish(api, tenant, voucher=cancelled.code), 409, "voucher_cancelled", "voucher")
        _problem(_publish(api, tenant, voucher=expiring.code), 409, "voucher_expired", "voucher")

    def test_unknown_voucher_or_customer(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        voucher = issue(db, tenant, make_campaign(db, tenant)).voucher

        _problem(_publish(api, tenant, voucher="NOPE"), 404, "not_found", "voucher")
        _problem(
            _publish(api, tenant, voucher=voucher.code, customer="nobody"),
            404,
            "not_found",
            "customer",
        )


class TestPublishFromPool:
    def test_count_codes_of_the_pool(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        campaign = _campaign_with(db, tenant, 10)

        shown = _published(
            api,
            tenant,
            campaign=campaign.name,
            count=3,
            customer={"email": "erlich@example.com", "name": "Erlich Bachman"},
            metadata={"provider": "Shop Admin"},
        )

        assert (shown["count"], len(set(shown["vouchers"]))) == (3, 3)
        assert (shown["campaign_id"], shown["campaign"]) == (campaign.id, campaign.name)
        assert shown["customer_id"].startswith("cust_")
        assert "voucher" not in shown
        assert _pool(db, tenant, campaign) == 7
        again = _published(api, tenant, campaign=campaign.id, count=7)
        assert not set(again["vouchers"]) & set(shown["vouchers"])
        assert _pool(db, tenant, campaign) == 0

    def test_one_code_by_default_shows_the_voucher(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        campaign = _campaign_with(db, tenant, 2)

        shown = _published(api, tenant, campaign=campaign.id)

        assert shown["count"] == 1
        assert shown["voucher"]["code"] == shown["vouchers"][0]
        assert shown["voucher"]["publish"]["count"] == 1

    def test_a_short_static_pool_is_refused_and_nothing_is_claimed(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        campaign = _campaign_with(db, tenant, 3)
        links = _links(db)

        refused = _publish(api, tenant, campaign=campaign.id, count=5, customer={"source_id": "x"})

        _problem(refused, 409, "pool_exhausted", "count")
        assert refused.json()["missing"] == 2
        assert _pool(db, tenant, campaign) == 3
        assert _links(db) == links
        with db.unit_of_work(write=False) as session:
            assert session.scalar(select(func.count()).select_from(Publication)) == 0
        assert _published(api, tenant, campaign=campaign.id, count=3)["count"] == 3

    def test_claims_go_on_from_the_last_and_wrap_round_to_codes_returned(
        self, api: TestClient, db: Database
    ) -> None:
        """A claim starts after the last code claimed from the campaign; codes a rolled-back
        claim returned to the pool behind that point are found by wrapping round to the head,
        and each publication writes one ``published`` event counting its codes."""
        tenant = make_tenant(db)
        campaign = _campaign_with(db, tenant, 5)
        with db.unit_of_work(write=False) as session:
            codes = list(
                session.scalars(
                    select(Voucher.code)
                    .where(Voucher.campaign_id == campaign.id)
                    .order_by(Voucher.id)
                )
            )

        first = _published(api, tenant, campaign=campaign.id, count=2)
        _problem(
            _publish(api, tenant, campaign=campaign.id, count=4), 409, "pool_exhausted", "count"
        )
        second = _published(api, tenant, campaign=campaign.id)
        third = _published(api, tenant, campaign=campaign.id, count=2)

        assert first["vouchers"] == codes[:2]
        assert second["vouchers"] == codes[2:3]
        assert third["vouchers"] == codes[3:]
        _problem(_publish(api, tenant, campaign=campaign.id), 409, "pool_exhausted", "count")
        with db.unit_of_work(write=False) as session:
            events = session.execute(
                select(VoucherEvent.data)
                .where(VoucherEvent.campaign_id == campaign.id, VoucherEvent.kind == "published")
                .order_by(VoucherEvent.id)
            ).scalars()
            assert [(e["publication_id"], e["count"]) for e in events] == [
                (first["id"], 2),
                (second["id"], 1),
                (third["id"], 2),
            ]

    def test_an_auto_update_campaign_mints_what_is_missing(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        campaign = _campaign_with(db, tenant, 2, mode="AUTO_UPDATE")

        shown = _published(api, tenant, campaign=campaign.id, count=5, customer={"source_id": "m"})

        assert (shown["count"], len(set(shown["vouchers"]))) == (5, 5)
        with db.unit_of_work(write=False) as session:
            made = session.execute(
                select(func.count(), func.sum(Voucher.published_count)).where(
                    Voucher.campaign_id == campaign.id
                )
            ).one()
        assert tuple(made) == (5, 5)
        assert _pool(db, tenant, campaign) == 0
        empty = _published(api, tenant, campaign=campaign.id)  # from an empty pool, too
        assert empty["count"] == 1

    def test_the_pool_is_active_unexpired_unpublished_codes(
        self, api: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant)
        kept = issue(db, tenant, campaign).voucher
        disabled = issue(db, tenant, campaign).voucher
        api.post(f"/api/v1/vouchers/{disabled.id}/disable", headers=tenant.headers)
        issue(db, tenant, campaign, expiration_date=(clock() + timedelta(hours=1)).isoformat())
        given = issue(db, tenant, campaign).voucher
        _published(api, tenant, voucher=given.code)
        clock.advance(hours=2)

        assert _pool(db, tenant, campaign) == 1
        assert _published(api, tenant, campaign=campaign.id)["vouchers"] == [kept.code]
        _problem(_publish(api, tenant, campaign=campaign.id), 409, "pool_exhausted", "count")

    def test_an_inactive_campaign_is_refused(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        campaign = _campaign_with(db, tenant, 2)
        api.patch(
            f"/api/v1/campaigns/{campaign.id}", headers=tenant.headers, json={"active": False}
        )

        _problem(_publish(api, tenant, campaign=campaign.id), 409, "campaign_inactive", "campaign")


class TestBadRequests:
    def test_shapes_that_are_refused(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        campaign = _campaign_with(db, tenant, 1)
        voucher = issue(db, tenant, campaign).voucher
        cases: list[tuple[dict[str, Any], str]] = [
            ({}, "voucher"),
            ({"voucher": voucher.code, "campaign": campaign.id}, "campaign"),
            ({"voucher": voucher.code, "count": 2}, "count"),
            ({"campaign": campaign.id, "count": 0}, "count"),
            ({"campaign": campaign.id, "count": 1001}, "count"),
            ({"campaign": campaign.id, "count": "2"}, "count"),
            ({"campaign": campaign.id, "join_once": True}, "join_once"),
            ({"campaign": campaign.id, "channel": ""}, "channel"),
            ({"campaign": campaign.id, "customer": {"phone": "12"}}, "customer"),
            ({"campaign": campaign.id, "surprise": 1}, "surprise"),
        ]
        links = _links(db)
        for body, field in cases:
            response = _publish(api, tenant, **body)
            assert response.status_code == 422, (body, response.text)
            fields = [e["field"] for e in response.json()["errors"]]
            assert any(f == field or f.startswith(field + ".") for f in fields), (body, fields)
        assert _links(db) == links


class TestJoinOnce:
    def test_a_customer_gets_one_voucher_of_the_campaign(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        campaign = _campaign_with(db, tenant, 5)
        first = _published(
            api, tenant, campaign=campaign.id, customer={"source_id": "j"}, join_once=True
        )

        again = _publish(
            api, tenant, campaign=campaign.id, customer={"source_id": "j"}, join_once=True
        )

        _problem(again, 409, "already_joined", "customer")
        assert again.json()["publication_id"] == first["id"]
        assert _pool(db, tenant, campaign) == 4
        other = _published(
            api, tenant, campaign=campaign.id, customer={"source_id": "k"}, join_once=True
        )
        assert other["count"] == 1

    def test_it_counts_vouchers_given_without_join_once(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        campaign = _campaign_with(db, tenant, 5)
        voucher = issue(db, tenant, campaign).voucher
        _published(api, tenant, voucher=voucher.code, customer={"source_id": "j"})

        refused = _publish(
            api, tenant, campaign=campaign.id, customer={"source_id": "j"}, join_once=True
        )

        _problem(refused, 409, "already_joined", "customer")

    def test_count_above_one_is_refused(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        campaign = _campaign_with(db, tenant, 5)

        refused = _publish(api, tenant, campaign=campaign.id, count=2, customer="x", join_once=True)

        _problem(refused, 422, "invalid_input", "count")


class TestSourceId:
    def test_a_replay_returns_the_same_publication_and_codes(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        campaign = _campaign_with(db, tenant, 10)
        body = {"campaign": campaign.id, "count": 3, "source_id": "order-1", "customer": "c"}
        _customer(api, tenant, source_id="c")
        first = _published(api, tenant, **body)

        replayed = _publish(api, tenant, **body)

        assert replayed.status_code == 200
        assert replayed.json() == first
        assert _pool(db, tenant, campaign) == 7

    def test_another_body_with_the_same_source_id_is_refused(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        campaign = _campaign_with(db, tenant, 10)
        first = _published(api, tenant, campaign=campaign.id, count=2, source_id="order-2")

        refused = _publish(api, tenant, campaign=campaign.id, count=3, source_id="order-2")

        _problem(refused, 409, "duplicate_source_id", "source_id")
        assert refused.json()["publication_id"] == first["id"]
        assert _pool(db, tenant, campaign) == 8

    def test_source_ids_are_per_tenant(self, api: TestClient, db: Database) -> None:
        one, two = make_tenant(db), make_tenant(db)
        body = {"source_id": "same"}
        a = _published(api, one, campaign=_campaign_with(db, one, 1).id, **body)
        b = _published(api, two, campaign=_campaign_with(db, two, 1).id, **body)
        assert a["id"] != b["id"]

    def test_an_idempotency_key_replays_too(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        campaign = _campaign_with(db, tenant, 5)
        headers = {**tenant.headers, "Idempotency-Key": "k-1"}
        body = {"campaign": campaign.id, "count": 2}

        first = api.post("/api/v1/publications", headers=headers, json=body)
        second = api.post("/api/v1/publications", headers=headers, json=body)

        assert (first.status_code, second.status_code) == (201, 201)
        assert first.json() == second.json()
        assert _pool(db, tenant, campaign) == 3


class TestList:
    def test_filters_and_pages(self, api: TestClient, db: Database, clock: FakeClock) -> None:
        tenant = make_tenant(db)
        spring, autumn = _campaign_with(db, tenant, 5), _campaign_with(db, tenant, 5)
        _customer(api, tenant, source_id="ann")
        a = _published(api, tenant, campaign=spring.id, customer="ann", channel="Email")
        clock.advance(hours=1)
        b = _published(api, tenant, campaign=spring.name, count=2)
        clock.advance(hours=1)
        c = _published(api, tenant, campaign=autumn.id, customer="ann")

        def ids(**params: Any) -> list[str]:
            response = api.get("/api/v1/publications", headers=tenant.headers, params=params)
            assert response.status_code == 200, response.text
            return [p["id"] for p in response.json()["data"]]

        assert ids() == [c["id"], b["id"], a["id"]]
        assert ids(campaign=spring.name) == [b["id"], a["id"]]
        assert ids(customer="ann") == [c["id"], a["id"]]
        assert ids(channel="Email") == [a["id"]]
        assert ids(voucher=b["vouchers"][1]) == [b["id"]]
        assert ids(created_after=b["created_at"]) == [c["id"], b["id"]]
        assert ids(created_before=b["created_at"]) == [a["id"]]
        page = api.get("/api/v1/publications", headers=tenant.headers, params={"limit": 2}).json()
        assert ([p["id"] for p in page["data"]], page["has_more"]) == ([c["id"], b["id"]], True)
        rest = ids(limit=2, cursor=page["next_cursor"])
        assert rest == [a["id"]]
        listed = api.get("/api/v1/publications", headers=tenant.headers).json()["data"][1]
        assert (listed["count"], listed["vouchers"]) == (2, b["vouchers"])
        got = api.get(f"/api/v1/publications/{b['id']}", headers=tenant.headers).json()
        assert got == {key: value for key, value in b.items()}

    def test_unknown_filters_are_404(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        for name in ("campaign", "voucher", "customer"):
            response = api.get(
                "/api/v1/publications", headers=tenant.headers, params={name: "nope"}
            )
            _problem(response, 404, "not_found", name)
        _problem(
            api.get("/api/v1/publications/pub_nope", headers=tenant.headers),
            404,
            "not_found",
            "publication",
        )
