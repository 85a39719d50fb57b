"""``Idempotency-Key`` on every POST that creates or spends, one request after another.

(Concurrent duplicates are the concurrency suite's business; here each rule is shown in order.)
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update

from tests.factories.campaigns import make_campaign
from tests.factories.redemptions import make_redemption
from tests.factories.tenants import Tenant, make_tenant
from tests.factories.vouchers import issue
from tests.support.clock import FakeClock
from tests.support.rows import count_rows, ledger_and_balance
from voucherd.api.problems import PROBLEM_JSON
from voucherd.db.engine import Database
from voucherd.idempotency.models import IdempotencyRecord
from voucherd.idempotency.service import _lock_key


@dataclass(frozen=True)
class Request:
    path: str
    body: dict[str, Any]
    other_body: dict[str, Any]  # the same request with one value changed


@dataclass(frozen=True)
class Operation:
    name: str
    prepare: Callable[[Database, Tenant], Request]
    status: int
    # What one effect adds, per table.
    effect: dict[str, int]


def _campaign_create(db: Database, tenant: Tenant) -> Request:
    name = f"Summer {secrets.token_hex(3)}"
    body = {"name": name, "type": "GIFT", "currency": "EUR", "default_value": 900}
    return Request("/api/v1/campaigns", body, {**body, "default_value": 901})


def _voucher_issue(db: Database, tenant: Tenant) -> Request:
    campaign = make_campaign(db, tenant, type="GIFT")
    body = {"campaign": campaign.id, "value": 700, "customer_ref": "c-1"}
    return Request("/api/v1/vouchers", body, {**body, "value": 701})


def _campaign_mint(db: Database, tenant: Tenant) -> Request:
    campaign = make_campaign(db, tenant, type="GIFT")
    return Request(f"/api/v1/campaigns/{campaign.id}/vouchers", {"count": 3}, {"count": 4})


def _redemption(db: Database, tenant: Tenant) -> Request:
    voucher = issue(db, tenant, make_campaign(db, tenant, type="GIFT"), value=5000).voucher
    body = {"code": voucher.code, "amount": 300, "merchant_ref": "m-1"}
    return Request("/api/v1/redemptions", body, {**body, "amount": 301})


def _rollback(db: Database, tenant: Tenant) -> Request:
    voucher = issue(db, tenant, make_campaign(db, tenant, type="GIFT"), value=5000).voucher
    made = make_redemption(db, tenant, code=voucher.code, amount=300).redemption
    path = f"/api/v1/redemptions/{made.id}/rollback"
    return Request(path, {"reason": "till error"}, {"reason": "another reason"})


CAMPAIGN_CREATE = Operation("campaign create", _campaign_create, 201, {"campaign": 1})
VOUCHER_ISSUE = Operation(
    "voucher issue", _voucher_issue, 201, {"voucher": 1, "ledger_entry": 1, "voucher_event": 1}
)
CAMPAIGN_MINT = Operation(
    "campaign mint", _campaign_mint, 201, {"voucher": 3, "ledger_entry": 3, "voucher_event": 1}
)
REDEMPTION = Operation(
    "redemption", _redemption, 201, {"redemption": 1, "ledger_entry": 1, "voucher_event": 1}
)
ROLLBACK = Operation("rollback", _rollback, 200, {"ledger_entry": 1, "voucher_event": 1})
OPERATIONS = [
    pytest.param(CAMPAIGN_CREATE, id="campaign-create"),
    pytest.param(VOUCHER_ISSUE, id="voucher-issue"),
    pytest.param(CAMPAIGN_MINT, id="campaign-mint"),
    pytest.param(REDEMPTION, id="redemption"),
    pytest.param(ROLLBACK, id="rollback"),
]


def post(api: TestClient, tenant: Tenant, path: str, body: Any, key: str | None) -> httpx.Response:
    headers = {**tenant.headers, **({"Idempotency-Key": key} if key is not None else {})}
    return api.post(path, headers=headers, json=body)


def grew(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Tables that gained rows, without the idempotency records themselves."""
    return {
        t: after[t] - before[t]
        for t in before
        if after[t] != before[t] and t != "idempotency_record"
    }


def new_key() -> str:
    return f"key-{secrets.token_hex(8)}"


class TestSameKeySameBody:
    @pytest.mark.parametrize("operation", OPERATIONS)
    def test_replays_the_first_answer_byte_for_byte_with_one_effect(
        self, api: TestClient, db: Database, operation: Operation
    ) -> None:
        tenant = make_tenant(db)
        request = operation.prepare(db, tenant)
        key = new_key()
        before = count_rows(db)

        first = post(api, tenant, request.path, request.body, key)
        assert first.status_code == operation.status, first.text
        assert "idempotent-replayed" not in first.headers
        after_first = count_rows(db)
        assert grew(before, after_first) == operation.effect
        assert after_first["idempotency_record"] == before["idempotency_record"] + 1

        for _ in range(2):
            again = post(api, tenant, request.path, request.body, key)
            assert again.status_code == operation.status
            assert again.headers["idempotent-replayed"] == "true"
            assert again.headers["content-type"] == first.headers["content-type"]
            assert again.content == first.content
        assert count_rows(db) == after_first

    def test_another_key_of_the_same_tenant_gets_the_replay(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        request = _voucher_issue(db, tenant)
        key = new_key()
        first = post(api, tenant, request.path, request.body, key)
        other = {**tenant.key_with(db, ["issue"]), "Idempotency-Key": key}

        again = api.post(request.path, headers=other, json=request.body)

        assert again.headers["idempotent-replayed"] == "true"
        assert again.content == first.content

    def test_a_key_without_the_scope_is_refused_before_any_replay(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        request = _voucher_issue(db, tenant)
        key = new_key()
        post(api, tenant, request.path, request.body, key)
        other = {**tenant.key_with(db, ["redeem"]), "Idempotency-Key": key}

        refused = api.post(request.path, headers=other, json=request.body)

        assert refused.status_code == 403
        assert "idempotent-replayed" not in refused.headers

    def test_without_a_key_every_request_is_an_effect(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        request = _redemption(db, tenant)
        before = count_rows(db)

        ids = {post(api, tenant, request.path, request.body, None).json()["id"] for _ in range(2)}

        assert len(ids) == 2
        assert grew(before, count_rows(db))["redemption"] == 2


class TestSameKeyDifferentRequest:
    @pytest.mark.parametrize("operation", OPERATIONS)
    def test_a_different_body_is_refused(
        self, api: TestClient, db: Database, operation: Operation
    ) -> None:
        tenant = make_tenant(db)
        request = operation.prepare(db, tenant)
        key = new_key()
        first = post(api, tenant, request.path, request.body, key)
        assert first.status_code == operation.status, first.text
        before = count_rows(db)

        refused = post(api, tenant, request.path, request.other_body, key)

        assert refused.status_code == 422
        assert refused.headers["content-type"] == PROBLEM_JSON
        problem = refused.json()
        assert problem["code"] == "idempotency_key_reused"
        assert problem["errors"] == [{"field": "Idempotency-Key", "reason": problem["detail"]}]
        assert count_rows(db) == before
        # The first answer is still the one a true retry gets.
        assert post(api, tenant, request.path, request.body, key).content == first.content

    def test_the_same_key_on_another_route_is_refused(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        issued = _voucher_issue(db, tenant)
        key = new_key()
        post(api, tenant, issued.path, issued.body, key)
        redemption = _redemption(db, tenant)
        before = count_rows(db)

        refused = post(api, tenant, redemption.path, redemption.body, key)

        assert refused.status_code == 422
        assert refused.json()["code"] == "idempotency_key_reused"
        assert count_rows(db) == before


class TestKeysArePerTenant:
    @pytest.mark.parametrize(
        "operation",
        [
            pytest.param(CAMPAIGN_CREATE, id="campaign-create"),
            pytest.param(REDEMPTION, id="redemption"),
        ],
    )
    def test_another_tenant_may_use_the_same_key(
        self, api: TestClient, db: Database, operation: Operation
    ) -> None:
        one, two = make_tenant(db), make_tenant(db)
        key = new_key()
        req_one, req_two = operation.prepare(db, one), operation.prepare(db, two)
        first = post(api, one, req_one.path, req_one.body, key)
        before = count_rows(db)

        second = post(api, two, req_two.path, req_two.body, key)

        assert second.status_code == operation.status, second.text
        assert "idempotent-replayed" not in second.headers
        assert second.json()["id"] != first.json()["id"]
        assert grew(before, count_rows(db)) == operation.effect
        assert post(api, one, req_one.path, req_one.body, key).content == first.content
        assert post(api, two, req_two.path, req_two.body, key).content == second.content

    def test_another_tenant_cannot_read_an_answer_through_a_key(
        self, api: TestClient, db: Database
    ) -> None:
        one, two = make_tenant(db), make_tenant(db)
        key = new_key()
        request = _redemption(db, one)
        first = post(api, one, request.path, request.body, key)

        theirs = post(api, two, request.path, request.body, key)

        assert theirs.status_code == 404
        assert first.json()["id"] not in theirs.text


class TestRefusalsAreNotRemembered:
    def test_a_retry_after_fixing_the_state_succeeds(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        request = _redemption(db, tenant)
        code = request.body["code"]
        key = new_key()
        api.post(f"/api/v1/vouchers/{code}/disable", headers=tenant.headers)
        before = count_rows(db)

        refused = post(api, tenant, request.path, request.body, key)
        assert refused.status_code == 409
        assert refused.json()["code"] == "voucher_disabled"
        assert count_rows(db) == before

        api.post(f"/api/v1/vouchers/{code}/enable", headers=tenant.headers)
        after_enable = count_rows(db)
        done = post(api, tenant, request.path, request.body, key)
        assert done.status_code == 201, done.text
        assert "idempotent-replayed" not in done.headers
        assert grew(after_enable, count_rows(db)) == REDEMPTION.effect
        again = post(api, tenant, request.path, request.body, key)
        assert again.headers["idempotent-replayed"] == "true"
        assert again.content == done.content

    def test_a_retry_after_a_top_up_succeeds(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        voucher = issue(db, tenant, make_campaign(db, tenant), value=100).voucher
        body = {"code": voucher.code, "amount": 250}
        key = new_key()

        assert post(api, tenant, "/api/v1/redemptions", body, key).status_code == 409
        topped = api.post(
            f"/api/v1/vouchers/{voucher.id}/balance", headers=tenant.headers, json={"amount": 200}
        )
        assert topped.status_code == 200, topped.text
        done = post(api, tenant, "/api/v1/redemptions", body, key)

        assert done.status_code == 201, done.text
        assert done.json()["voucher"]["balance"] == 50
        assert ledger_and_balance(db, voucher_id=voucher.id) == (50, 50)

    def test_invalid_input_does_not_claim_the_key(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        request = _voucher_issue(db, tenant)
        key = new_key()

        invalid = post(api, tenant, request.path, {**request.body, "value": -1}, key)
        done = post(api, tenant, request.path, request.body, key)

        assert invalid.status_code == 422
        assert invalid.json()["code"] == "invalid_input"
        assert done.status_code == 201, done.text

    def test_a_refused_rollback_is_tried_again(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        request = _rollback(db, tenant)
        assert post(api, tenant, request.path, None, None).status_code == 200
        key = new_key()

        for _ in range(2):
            again = post(api, tenant, request.path, request.body, key)
            assert again.status_code == 409
            assert again.json()["code"] == "already_rolled_back"
            assert "idempotent-replayed" not in again.headers


class TestRetention:
    def test_a_key_is_kept_for_a_day(self, api: TestClient, db: Database, clock: FakeClock) -> None:
        tenant = make_tenant(db)
        request = _voucher_issue(db, tenant)
        key = new_key()
        first = post(api, tenant, request.path, request.body, key)

        clock.advance(hours=23, minutes=59)

        again = post(api, tenant, request.path, request.body, key)
        assert again.headers["idempotent-replayed"] == "true"
        assert again.content == first.content
        assert post(api, tenant, request.path, request.other_body, key).status_code == 422

    def test_after_it_expires_the_key_is_free_again(
        self, api: TestClient, db: Database, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        request = _voucher_issue(db, tenant)
        key = new_key()
        first = post(api, tenant, request.path, request.body, key)

        clock.advance(hours=25)
        before = count_rows(db)
        fresh = post(api, tenant, request.path, request.other_body, key)

        assert fresh.status_code == 201, fresh.text
        assert "idempotent-replayed" not in fresh.headers
        assert fresh.json()["id"] != first.json()["id"]
        assert fresh.json()["value"] == 701
        assert grew(before, count_rows(db)) == VOUCHER_ISSUE.effect
        assert count_rows(db)["idempotency_record"] == before["idempotency_record"]
        replay = post(api, tenant, request.path, request.other_body, key)
        assert replay.content == fresh.content


def forget_stored_answer(db: Database, tenant: Tenant, key: str) -> None:
    """As if the process died between committing the effect and storing its answer."""
    with db.unit_of_work() as session:
        changed = session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.tenant_id == tenant.id, IdempotencyRecord.key == key)
            .values(response_body=None, response_status=None)
        )
        assert changed.rowcount == 1  # type: ignore[attr-defined]
        session.commit()
    with db.unit_of_work(write=False) as session:
        row = session.scalars(
            select(IdempotencyRecord).where(
                IdempotencyRecord.tenant_id == tenant.id, IdempotencyRecord.key == key
            )
        ).one()
        assert row.resource_id is not None
        assert row.response_body is None


class TestReplayWithoutTheStoredAnswer:
    @pytest.mark.parametrize("operation", OPERATIONS)
    def test_renders_the_same_resource_again(
        self, api: TestClient, db: Database, operation: Operation
    ) -> None:
        tenant = make_tenant(db)
        request = operation.prepare(db, tenant)
        key = new_key()
        first = post(api, tenant, request.path, request.body, key)
        assert first.status_code == operation.status, first.text
        forget_stored_answer(db, tenant, key)
        before = count_rows(db)

        again = post(api, tenant, request.path, request.body, key)

        assert again.status_code == operation.status
        assert again.headers["idempotent-replayed"] == "true"
        assert again.headers["content-type"] == "application/json"
        assert again.json() == first.json()
        assert count_rows(db) == before

    def test_a_redeem_replayed_after_its_rollback_keeps_its_status(
        self, api: TestClient, db: Database
    ) -> None:
        tenant = make_tenant(db)
        request = _redemption(db, tenant)
        key = new_key()
        first = post(api, tenant, request.path, request.body, key)
        forget_stored_answer(db, tenant, key)
        undone = post(api, tenant, f"/api/v1/redemptions/{first.json()['id']}/rollback", None, None)
        assert undone.status_code == 200

        again = post(api, tenant, request.path, request.body, key)

        assert again.json()["id"] == first.json()["id"]
        assert again.status_code == 201

    def test_a_different_body_is_still_refused(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        request = _redemption(db, tenant)
        key = new_key()
        post(api, tenant, request.path, request.body, key)
        forget_stored_answer(db, tenant, key)

        refused = post(api, tenant, request.path, request.other_body, key)

        assert refused.status_code == 422
        assert refused.json()["code"] == "idempotency_key_reused"


class TestKeyInFlight:
    def test_a_duplicate_of_a_request_still_running_gets_409(
        self, api: TestClient, db: Database, backend: str
    ) -> None:
        if backend != "postgresql":
            pytest.skip("SQLite serialises writers (BEGIN IMMEDIATE): a duplicate waits instead")
        tenant = make_tenant(db)
        request = _redemption(db, tenant)
        key = new_key()
        lock = {"k": _lock_key(tenant.id, key)}
        before = count_rows(db)

        # Another connection holds the key's lock, as the first request's transaction would.
        with db.engine.connect() as first:
            first.execute(text("SELECT pg_advisory_lock(:k)"), lock)
            try:
                busy = post(api, tenant, request.path, request.body, key)
            finally:
                first.execute(text("SELECT pg_advisory_unlock(:k)"), lock)

        assert busy.status_code == 409
        assert busy.headers["content-type"] == PROBLEM_JSON
        assert busy.json()["code"] == "idempotency_key_in_flight"
        assert busy.json()["errors"][0]["field"] == "Idempotency-Key"
        assert count_rows(db) == before
        done = post(api, tenant, request.path, request.body, key)
        assert done.status_code == 201, done.text


class TestKeyFormat:
    @pytest.mark.parametrize("key", ["", "x" * 256, "tab\there"])
    def test_a_bad_key_is_refused_by_name(self, api: TestClient, db: Database, key: str) -> None:
        tenant = make_tenant(db)
        request = _voucher_issue(db, tenant)
        before = count_rows(db)

        refused = post(api, tenant, request.path, request.body, key)

        assert refused.status_code == 422
        assert refused.headers["content-type"] == PROBLEM_JSON
        assert refused.json()["errors"][0]["field"] == "Idempotency-Key"
        assert count_rows(db) == before

    def test_the_longest_key_is_kept(self, api: TestClient, db: Database) -> None:
        tenant = make_tenant(db)
        request = _voucher_issue(db, tenant)
        key = "k" * 255

        first = post(api, tenant, request.path, request.body, key)
        again = post(api, tenant, request.path, request.body, key)

        assert first.status_code == 201, first.text
        assert again.headers["idempotent-replayed"] == "true"
        assert again.content == first.content
