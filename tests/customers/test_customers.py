"""Customers over the native API: create, get by id or source_id, update, search, erase."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.factories.vouchers import issue
from voucherd.campaigns.models import CampaignCustomer
from voucherd.db.engine import Database
from voucherd.vouchers.models import Voucher

ADA = {
    "source_id": "user-42",
    "name": "Ada Lovelace",
    "email": "Ada@Example.com",
    "phone": "+44 7911 123456",
    "address": "12 Analytical Row, London",
    "postcode": "N1 9GU",
    "metadata": {"tier": "gold"},
}


def _create(api: TestClient, tenant: Tenant, **body: Any) -> Response:
    return api.post("/api/v1/customers", headers=tenant.headers, json=body)


def _created(api: TestClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    response = _create(api, tenant, **body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def _problem(response: Response, status: int, code: str, field: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert response.json()["errors"][0]["field"] == field


def _search(api: TestClient, tenant: Tenant, **params: Any) -> list[str]:
    response = api.get("/api/v1/customers", headers=tenant.headers, params=params)
    assert response.status_code == 200, response.text
    return [c["id"] for c in response.json()["data"]]


class TestCreate:
    def test_with_every_field(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)

        shown = _created(api, tenant, **ADA)

        assert shown["id"].startswith("cust_")
        assert shown["object"] == "customer"
        assert shown["phone"] == "+447911123456"  # stored as E.164
        assert shown["email"] == "Ada@example.com"  # the domain part is normalised
        assert (shown["source_id"], shown["name"], shown["postcode"]) == (
            "user-42",
            "Ada Lovelace",
            "N1 9GU",
        )
        assert (shown["metadata"], shown["erased"]) == ({"tier": "gold"}, False)
        assert api.get(f"/api/v1/customers/{shown['id']}", headers=tenant.headers).json() == shown

    def test_with_nothing_but_a_name(self, api: TestClient, db: Database) -> None:
        shown = _created(api, make_tenant(db), name="Anonymous")
        assert (shown["source_id"], shown["email"]) == (None, None)

    def test_source_id_is_unique_per_tenant(self, api: TestClient, db: Database) -> None:
        one, two = make_tenant(db), make_tenant(db)
        _created(api, one, source_id="same")

        _problem(_create(api, one, source_id="same"), 409, "duplicate_source_id", "source_id")
        assert _created(api, two, source_id="same")["source_id"] == "same"

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"phone": "07911 123456"}, "phone"),
            ({"phone": "+44 12"}, "phone"),
            ({"email": "not-an-email"}, "email"),
            ({"name": ""}, "name"),
            ({"postcode": "x" * 21}, "postcode"),
            ({"source_id": ""}, "source_id"),
            ({"metadata": "nope"}, "metadata"),
            ({"nickname": "Ada"}, "nickname"),
        ],
    )
    def test_bad_fields_are_named(
        self, api: TestClient, db: Database, body: dict[str, Any], field: str
    ) -> None:
        response = _create(api, make_tenant(db), **body)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == field

    def test_an_idempotency_key_replays(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        headers = {**tenant.headers, "Idempotency-Key": "c-1"}
        first = api.post("/api/v1/customers", headers=headers, json={"source_id": "k"})
        second = api.post("/api/v1/customers", headers=headers, json={"source_id": "k"})
        assert (first.status_code, second.status_code) == (201, 201)
        assert first.json() == second.json()


class TestGetAndUpdate:
    def test_get_by_source_id(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        made = _created(api, tenant, **ADA)
        got = api.get("/api/v1/customers/user-42", headers=tenant.headers)
        assert got.json()["id"] == made["id"]
        _problem(
            api.get("/api/v1/customers/user-43", headers=tenant.headers),
            404,
            "not_found",
            "customer",
        )

    def test_only_the_fields_sent_change_and_null_clears(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        made = _created(api, tenant, **ADA)

        changed = api.patch(
            f"/api/v1/customers/{made['id']}",
            headers=tenant.headers,
            json={"name": "Augusta Ada King", "email": None, "phone": "+33 6 12 34 56 78"},
        )

        assert changed.status_code == 200, changed.text
        shown = changed.json()
        assert (shown["name"], shown["email"], shown["phone"]) == (
            "Augusta Ada King",
            None,
            "+33612345678",
        )
        assert (shown["postcode"], shown["source_id"]) == ("N1 9GU", "user-42")

    def test_a_taken_source_id_is_refused(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        _created(api, tenant, source_id="a")
        b = _created(api, tenant, source_id="b")
        response = api.patch(
            f"/api/v1/customers/{b['id']}", headers=tenant.headers, json={"source_id": "a"}
        )
        _problem(response, 409, "duplicate_source_id", "source_id")


class TestSearch:
    def test_by_part_of_name_email_phone_or_source_id(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        ada = _created(api, tenant, **ADA)
        bob = _created(
            api,
            tenant,
            source_id="b-7",
            name="Bob 100%",
            email="bob@shopco.org",
            phone="+27821234567",
        )

        assert _search(api, tenant, q="lovelace") == [ada["id"]]
        assert _search(api, tenant, q="SHOPCO.org") == [bob["id"]]
        assert _search(api, tenant, q="2782") == [bob["id"]]
        assert _search(api, tenant, q="user-4") == [ada["id"]]
        assert _search(api, tenant, q="100%") == [bob["id"]]
        assert _search(api, tenant, q="_") == []  # LIKE wildcards are literal
        assert _search(api, tenant, phone="+44 7911 123456") == [ada["id"]]
        assert _search(api, tenant, email="Ada@example.COM") == [ada["id"]]
        assert _search(api, tenant, source_id="b-7") == [bob["id"]]
        assert _search(api, tenant) == [bob["id"], ada["id"]]
        bad = api.get("/api/v1/customers", headers=tenant.headers, params={"phone": "12"})
        _problem(bad, 422, "invalid_input", "phone")

    def test_pages(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        made = [_created(api, tenant, name=f"n{i}")["id"] for i in range(5)]
        page = api.get("/api/v1/customers", headers=tenant.headers, params={"limit": 3}).json()
        rest = _search(api, tenant, limit=3, cursor=page["next_cursor"])
        assert [c["id"] for c in page["data"]] + rest == made[::-1]


class TestErase:
    def test_personal_data_goes_and_history_stays(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant, per_customer_limit=5)
        ada = _created(api, tenant, **ADA)
        given = issue(
            db,
            tenant,
            campaign,
            customer_ref="user-42",
            holder={"name": "Ada Lovelace", "postcode": "N1 9GU"},
        ).voucher
        publication = api.post(
            "/api/v1/publications",
            headers=tenant.headers,
            json={"voucher": given.code, "customer": "user-42"},
        ).json()

        erased = api.post(f"/api/v1/customers/{ada['id']}/erase", headers=tenant.headers)

        assert erased.status_code == 200, erased.text
        shown = erased.json()
        assert shown["erased"] is True
        for field in ("source_id", "name", "email", "phone", "address", "postcode", "metadata"):
            assert shown[field] is None, field
        # Not findable by its old personal data any more.
        _problem(
            api.get("/api/v1/customers/user-42", headers=tenant.headers),
            404,
            "not_found",
            "customer",
        )
        for q in ("Lovelace", "example.com", "7911", "user-42"):
            assert _search(api, tenant, q=q) == []
        assert _search(api, tenant, phone="+447911123456") == []
        # The history stays, without the personal data copied onto the voucher.
        kept = api.get(f"/api/v1/publications/{publication['id']}", headers=tenant.headers)
        assert (kept.json()["customer_id"], kept.json()["customer"]) == (ada["id"], None)
        assert _search_publications(api, tenant, ada["id"]) == [publication["id"]]
        voucher = api.get(f"/api/v1/vouchers/{given.id}", headers=tenant.headers).json()
        assert (voucher["holder_id"], voucher["customer_ref"], voucher["holder"]) == (
            ada["id"],
            None,
            None,
        )
        assert voucher["publish"]["count"] == 1
        with db.unit_of_work(write=False) as session:
            assert session.scalar(select(Voucher.holder_name).where(Voucher.id == given.id)) is None
            assert list(session.scalars(select(CampaignCustomer.customer_ref))) == []

    def test_erasing_twice_changes_nothing(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        ada = _created(api, tenant, **ADA)
        first = api.post(f"/api/v1/customers/{ada['id']}/erase", headers=tenant.headers).json()
        second = api.post(f"/api/v1/customers/{ada['id']}/erase", headers=tenant.headers).json()
        assert first == second

    def test_an_erased_customer_cannot_be_updated_or_given_vouchers(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        ada = _created(api, tenant, **ADA)
        voucher = issue(db, tenant, make_campaign(db, tenant)).voucher
        api.post(f"/api/v1/customers/{ada['id']}/erase", headers=tenant.headers)

        updated = api.patch(
            f"/api/v1/customers/{ada['id']}", headers=tenant.headers, json={"name": "Ada"}
        )
        published = api.post(
            "/api/v1/publications",
            headers=tenant.headers,
            json={"voucher": voucher.code, "customer": ada["id"]},
        )

        _problem(updated, 409, "customer_erased", "customer")
        _problem(published, 409, "customer_erased", "customer")
        # The source_id is free again: a new customer may take it.
        assert _created(api, tenant, source_id="user-42")["id"] != ada["id"]


def _search_publications(api: TestClient, tenant: Tenant, customer: str) -> list[str]:
    response = api.get(
        "/api/v1/publications", headers=tenant.headers, params={"customer": customer}
    )
    return [p["id"] for p in response.json()["data"]]


def test_personal_data_is_never_logged(
    api: TestClient, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    tenant = make_tenant(db)
    voucher = issue(db, tenant, make_campaign(db, tenant)).voucher
    with caplog.at_level(logging.DEBUG):
        ada = _created(api, tenant, **ADA)
        _create(api, tenant, source_id="user-42")  # a refusal
        api.get("/api/v1/customers", headers=tenant.headers, params={"q": "Lovelace"})
        api.post(
            "/api/v1/publications",
            headers=tenant.headers,
            json={"voucher": voucher.code, "customer": "user-42"},
        )
        api.post(f"/api/v1/customers/{ada['id']}/erase", headers=tenant.headers)
    # The test's own HTTP client logs its request URLs; the server side is what is judged
    # (voucherd serve runs uvicorn without an access log).
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpx"))
    for secret in ("Lovelace", "7911123456", "Ada@", "Analytical", "N1 9GU", "user-42"):
        assert secret not in logged
    assert voucher.code not in logged
