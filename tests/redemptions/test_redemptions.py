"""Validation, redemption and rollback over the native API, for every voucher type.

After every step that touches a balance the ledger is summed straight from the database and
compared with the voucher's cached ``balance`` column: the balance is the ledger, never a
number kept on the side.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.factories.vouchers import issue
from tests.support.clock import FakeClock
from tests.support.rows import count_rows, ledger_and_balance
from voucherd.api.problems import PROBLEM_JSON
from voucherd.db.engine import Database
from voucherd.errors import NotFound
from voucherd.redemptions import service
from voucherd.vouchers.schemas import VoucherRecord


def redeem(api: TestClient, tenant: Tenant, code: str, **body: Any) -> httpx.Response:
    return api.post("/api/v1/redemptions", headers=tenant.headers, json={"code": code, **body})


def validate(api: TestClient, tenant: Tenant, code: str, **body: Any) -> dict[str, Any]:
    response = api.post("/api/v1/validations", headers=tenant.headers, json={"code": code, **body})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def rollback(api: TestClient, tenant: Tenant, redemption_id: str, **body: Any) -> httpx.Response:
    return api.post(
        f"/api/v1/redemptions/{redemption_id}/rollback",
        headers=tenant.headers,
        json=body or None,
    )


def voucher_now(api: TestClient, tenant: Tenant, ref: str) -> dict[str, Any]:
    response = api.get(f"/api/v1/vouchers/{ref}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    shown: dict[str, Any] = response.json()
    return shown


def assert_ledger(db: Database, voucher: VoucherRecord, expected: int | None) -> None:
    """The ledger sums to the cached balance, and both are what the test expects."""
    total, balance = ledger_and_balance(db, voucher_id=voucher.voucher.id)
    assert balance == expected
    assert total == (expected or 0)


def assert_refused(
    response: httpx.Response, status: int, code: str, field: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    problem: dict[str, Any] = response.json()
    assert problem["code"] == code
    assert problem["status"] == status
    if field is not None:
        assert {"field": field, "reason": problem["detail"]} in problem["errors"]
    return problem


def gift(db: Database, tenant: Tenant, value: int = 5000, **campaign: Any) -> VoucherRecord:
    return issue(db, tenant, make_campaign(db, tenant, type="GIFT", **campaign), value=value)


class TestRedeemGift:
    def test_parts_down_to_zero_then_refused(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        voucher = gift(db, tenant, 5000)
        code = voucher.voucher.code
        assert_ledger(db, voucher, 5000)

        first = redeem(api, tenant, code, amount=1500)
        assert first.status_code == 201, first.text
        assert first.json()["amount"] == 1500
        assert first.json()["currency"] == "EUR"
        assert first.json()["voucher"] == {
            "state": "ACTIVE",
            "balance": 3500,
            "redeemed_quantity": 1,
        }
        assert_ledger(db, voucher, 3500)

        second = redeem(api, tenant, code, amount=2000)
        assert second.status_code == 201, second.text
        assert second.json()["voucher"]["balance"] == 1500
        assert_ledger(db, voucher, 1500)

        last = redeem(api, tenant, code, amount=1500)
        assert last.status_code == 201, last.text
        assert last.json()["voucher"] == {"state": "REDEEMED", "balance": 0, "redeemed_quantity": 3}
        assert_ledger(db, voucher, 0)
        assert voucher_now(api, tenant, code)["state"] == "REDEEMED"

        before = count_rows(db)
        assert_refused(redeem(api, tenant, code, amount=1), 409, "voucher_redeemed", "code")
        assert count_rows(db) == before
        assert_ledger(db, voucher, 0)

    def test_overspend_refused_and_nothing_written(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        voucher = gift(db, tenant, 5000)
        before = count_rows(db)

        problem = assert_refused(
            redeem(api, tenant, voucher.voucher.code, amount=5001),
            409,
            "insufficient_balance",
            "amount",
        )

        assert problem["balance"] == 5000
        assert count_rows(db) == before
        shown = voucher_now(api, tenant, voucher.voucher.code)
        assert (shown["balance"], shown["state"], shown["redemption"]["redeemed_quantity"]) == (
            5000,
            "ACTIVE",
            0,
        )
        assert_ledger(db, voucher, 5000)

    def test_without_amount_takes_the_order_amount_the_balance_covers(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        voucher = gift(db, tenant, 5000)

        small = redeem(api, tenant, voucher.voucher.code, order={"amount": 1200})
        assert small.status_code == 201, small.text
        assert small.json()["amount"] == 1200
        assert_ledger(db, voucher, 3800)

        large = redeem(api, tenant, voucher.voucher.code, order={"amount": 10_000})
        assert large.status_code == 201, large.text
        assert large.json()["amount"] == 3800
        assert large.json()["order"]["amount"] == 10_000
        assert large.json()["voucher"]["state"] == "REDEEMED"
        assert_ledger(db, voucher, 0)

    def test_an_explicit_amount_wins_over_the_order_amount(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        voucher = gift(db, tenant, 5000)

        response = redeem(api, tenant, voucher.voucher.code, amount=700, order={"amount": 3000})

        assert response.status_code == 201, response.text
        assert response.json()["amount"] == 700
        assert_ledger(db, voucher, 4300)

    def test_neither_amount_nor_order_amount_is_refused(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        voucher = gift(db, tenant, 5000)
        before = count_rows(db)

        assert_refused(redeem(api, tenant, voucher.voucher.code), 422, "invalid_input", "amount")
        assert_refused(
            redeem(api, tenant, voucher.voucher.code, order={"amount": 0}),
            422,
            "invalid_input",
            "order.amount",
        )
        assert count_rows(db) == before
        assert_ledger(db, voucher, 5000)

    def test_by_voucher_id_as_well_as_code(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        voucher = gift(db, tenant, 5000)

        response = redeem(api, tenant, voucher.voucher.id, amount=100)

        assert response.status_code == 201, response.text
        assert response.json()["code"] == voucher.voucher.code
        assert response.json()["voucher_id"] == voucher.voucher.id
        assert_ledger(db, voucher, 4900)


class TestRedeemCash:
    def test_once_for_its_whole_value(self, api: TestClient, db: Database, tenant: Tenant) -> None:
        campaign = make_campaign(db, tenant, type="CASH", default_value=2000)
        voucher = issue(db, tenant, campaign)
        assert_ledger(db, voucher, 2000)

        paid = redeem(api, tenant, voucher.voucher.code)

        assert paid.status_code == 201, paid.text
        assert paid.json()["amount"] == 2000
        assert paid.json()["voucher"] == {"state": "REDEEMED", "balance": 0, "redeemed_quantity": 1}
        assert_ledger(db, voucher, 0)
        before = count_rows(db)
        assert_refused(
            redeem(api, tenant, voucher.voucher.code, amount=2000), 409, "voucher_redeemed", "code"
        )
        assert count_rows(db) == before

    def test_the_exact_value_may_be_named(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        voucher = issue(db, tenant, make_campaign(db, tenant, type="CASH"), value=3000)

        paid = redeem(api, tenant, voucher.voucher.code, amount=3000)

        assert paid.status_code == 201, paid.text
        assert paid.json()["amount"] == 3000
        assert_ledger(db, voucher, 0)

    def test_a_different_amount_is_refused(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        voucher = issue(db, tenant, make_campaign(db, tenant, type="CASH"), value=3000)
        before = count_rows(db)

        for amount in (1, 2999, 3001):
            response = redeem(api, tenant, voucher.voucher.code, amount=amount)
            assert_refused(response, 422, "invalid_input", "amount")

        assert count_rows(db) == before
        assert voucher_now(api, tenant, voucher.voucher.code)["state"] == "ACTIVE"
        assert_ledger(db, voucher, 3000)


def discount_voucher(
    db: Database, tenant: Tenant, discount: dict[str, Any], **campaign: Any
) -> VoucherRecord:
    if discount["type"] in ("AMOUNT", "FIXED"):
        campaign.setdefault("currency", "EUR")
    return issue(
        db, tenant, make_campaign(db, tenant, type="DISCOUNT", discount=discount, **campaign)
    )


class TestRedeemDiscount:
    def test_amount_off_never_more_than_the_order(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        voucher = discount_voucher(db, tenant, {"type": "AMOUNT", "amount_off": 1500})

        for order, expected in [({"amount": 5000}, 1500), ({"amount": 1000}, 1000), (None, 1500)]:
            body = {"order": order} if order else {}
            response = redeem(api, tenant, voucher.voucher.code, **body)
            assert response.status_code == 201, response.text
            assert response.json()["amount"] == expected, order
            assert response.json()["voucher"]["balance"] is None
        assert_ledger(db, voucher, None)

    def test_percent_off_rounds_half_up(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        voucher = discount_voucher(db, tenant, {"type": "PERCENT", "percent_off": "12.5"})
        cases = [
            (1000, 125),  # 125.0
            (1001, 125),  # 125.125 rounds down
            (1004, 126),  # 125.5 rounds half up
            (1012, 127),  # 126.5 rounds half up, not to even
            (3, 0),  # 0.375
            (4, 1),  # 0.5
        ]

        taken = [
            redeem(api, tenant, voucher.voucher.code, order={"amount": amount}).json()["amount"]
            for amount, _ in cases
        ]

        assert taken == [expected for _, expected in cases]

    def test_percent_off_is_capped_by_amount_limit(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        voucher = discount_voucher(
            db, tenant, {"type": "PERCENT", "percent_off": 20, "amount_limit": 5000}
        )

        taken = [
            redeem(api, tenant, voucher.voucher.code, order={"amount": amount}).json()["amount"]
            for amount in (10_000, 25_000, 90_000)
        ]

        assert taken == [2000, 5000, 5000]

    def test_fixed_brings_the_order_down_to_the_price(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        voucher = discount_voucher(db, tenant, {"type": "FIXED", "fixed_amount": 7000})

        taken = [
            redeem(api, tenant, voucher.voucher.code, order={"amount": amount}).json()["amount"]
            for amount in (10_000, 7000, 5000)
        ]

        assert taken == [3000, 0, 0]

    def test_unit_gives_items_of_its_type_free(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        voucher = discount_voucher(
            db, tenant, {"type": "UNIT", "unit_off": 2, "unit_type": "coffee"}
        )

        taken = []
        for quantity in (3, 1):
            items = [
                {"sku": "cake", "quantity": 1, "price": 400},
                {"sku": "coffee", "quantity": quantity, "price": 250},
            ]
            response = redeem(
                api, tenant, voucher.voucher.code, order={"amount": 2000, "items": items}
            )
            assert response.status_code == 201, response.text
            taken.append(response.json()["amount"])

        assert taken == [500, 250]

    def test_unit_needs_an_item_of_its_type(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        voucher = discount_voucher(
            db, tenant, {"type": "UNIT", "unit_off": 1, "unit_type": "coffee"}
        )
        before = count_rows(db)

        for order in [
            None,
            {"amount": 1000},
            {"amount": 1000, "items": [{"sku": "tea", "quantity": 2, "price": 300}]},
        ]:
            body = {"order": order} if order else {}
            response = redeem(api, tenant, voucher.voucher.code, **body)
            assert_refused(response, 409, "order_rules_violated", "order.items")

        assert count_rows(db) == before

    def test_an_amount_is_refused(self, api: TestClient, db: Database, tenant: Tenant) -> None:
        voucher = discount_voucher(db, tenant, {"type": "PERCENT", "percent_off": 10})
        before = count_rows(db)

        assert_refused(
            redeem(api, tenant, voucher.voucher.code, amount=100, order={"amount": 1000}),
            422,
            "invalid_input",
            "amount",
        )
        assert count_rows(db) == before

    def test_redemption_quantity_is_honoured(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        voucher = discount_voucher(
            db, tenant, {"type": "PERCENT", "percent_off": 10}, redemption_quantity=2
        )
        code = voucher.voucher.code

        one = redeem(api, tenant, code, order={"amount": 1000})
        two = redeem(api, tenant, code, order={"amount": 1000})

        assert one.json()["voucher"] == {"state": "ACTIVE", "balance": None, "redeemed_quantity": 1}
        assert two.json()["voucher"] == {
            "state": "REDEEMED",
            "balance": None,
            "redeemed_quantity": 2,
        }
        before = count_rows(db)
        assert_refused(redeem(api, tenant, code, order={"amount": 1000}), 409, "voucher_redeemed")
        assert count_rows(db) == before
        assert voucher_now(api, tenant, code)["redemption"] == {
            "quantity": 2,
            "redeemed_quantity": 2,
        }

    def test_without_redemption_quantity_it_can_be_used_again(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        voucher = discount_voucher(db, tenant, {"type": "AMOUNT", "amount_off": 100})

        states = [
            redeem(api, tenant, voucher.voucher.code, order={"amount": 1000}).json()["voucher"]
            for _ in range(3)
        ]

        assert [s["redeemed_quantity"] for s in states] == [1, 2, 3]
        assert {s["state"] for s in states} == {"ACTIVE"}


class TestRedeemLoyalty:
    def test_points_in_parts(self, api: TestClient, db: Database, tenant: Tenant) -> None:
        campaign = make_campaign(db, tenant, type="LOYALTY", default_value=300)
        voucher = issue(db, tenant, campaign)
        code = voucher.voucher.code
        assert_ledger(db, voucher, 300)

        first = redeem(api, tenant, code, amount=120)
        assert first.status_code == 201, first.text
        assert first.json()["currency"] is None
        assert_ledger(db, voucher, 180)

        assert_refused(redeem(api, tenant, code, amount=181), 409, "insufficient_balance")
        assert_ledger(db, voucher, 180)

        last = redeem(api, tenant, code, amount=180)
        assert last.json()["voucher"] == {"state": "REDEEMED", "balance": 0, "redeemed_quantity": 2}
        assert_ledger(db, voucher, 0)
        assert_refused(redeem(api, tenant, code, amount=1), 409, "voucher_redeemed")


class TestRedeemQuantity:
    def test_a_gift_with_a_redemption_quantity_is_used_up_by_count(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        voucher = gift(db, tenant, 5000, redemption_quantity=2)
        code = voucher.voucher.code

        redeem(api, tenant, code, amount=100)
        second = redeem(api, tenant, code, amount=100)

        assert second.json()["voucher"] == {
            "state": "REDEEMED",
            "balance": 4800,
            "redeemed_quantity": 2,
        }
        assert_ledger(db, voucher, 4800)
        assert_refused(redeem(api, tenant, code, amount=100), 409, "voucher_redeemed")
        assert_ledger(db, voucher, 4800)


class TestRedeemRecordsReferences:
    def test_merchant_store_order_and_customer_are_kept(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        voucher = gift(db, tenant, 5000)

        made = redeem(
            api,
            tenant,
            voucher.voucher.code,
            amount=1000,
            merchant_ref="merchant-7",
            store_ref="store-42",
            customer_ref="  cust-1  ",
            order={"amount": 2500, "reference": "ORD-2026-001"},
            metadata={"till": 3, "cashier": "ann"},
        )

        assert made.status_code == 201, made.text
        shown = api.get(f"/api/v1/redemptions/{made.json()['id']}", headers=tenant.headers)
        assert shown.status_code == 200
        for body in (made.json(), shown.json()):
            assert body["merchant_ref"] == "merchant-7"
            assert body["store_ref"] == "store-42"
            assert body["customer_ref"] == "cust-1"
            assert body["order"] == {"amount": 2500, "reference": "ORD-2026-001"}
            assert body["metadata"] == {"till": 3, "cashier": "ann"}
            assert body["status"] == "SUCCEEDED"
            assert body["rollback"] is None

    def test_an_event_names_who_redeemed(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        voucher = gift(db, tenant, 5000)

        made = redeem(api, tenant, voucher.voucher.code, amount=250).json()

        events = api.get(f"/api/v1/vouchers/{voucher.voucher.id}/events", headers=tenant.headers)
        redeemed = [e for e in events.json()["data"] if e["kind"] == "redeemed"]
        assert len(redeemed) == 1
        assert redeemed[0]["actor"] == tenant.key.key_id
        assert redeemed[0]["data"] == {"redemption_id": made["id"], "amount": 250}


class TestRedeemRefusals:
    def test_an_unknown_code_is_not_found(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        before = count_rows(db)

        assert_refused(redeem(api, tenant, "NO-SUCH-CODE", amount=1), 404, "not_found", "code")

        assert count_rows(db) == before

    def test_a_mistyped_default_code_is_told_so(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        """Issue 15: a typo answers "mistyped" (still a 404), and lower case is the code."""
        code = gift(db, tenant).voucher.code
        typo = code[:-1] + ("2" if code[-1] != "2" else "3")

        assert_refused(redeem(api, tenant, typo, amount=1), 404, "code_mistyped", "code")
        assert redeem(api, tenant, code.lower(), amount=1).status_code == 201

    @pytest.mark.parametrize(
        ("action", "code"),
        [("disable", "voucher_disabled"), ("cancel", "voucher_cancelled")],
    )
    def test_a_switched_off_voucher(
        self, api: TestClient, db: Database, tenant: Tenant, action: str, code: str
    ) -> None:
        voucher = gift(db, tenant)
        changed = api.post(
            f"/api/v1/vouchers/{voucher.voucher.id}/{action}", headers=tenant.headers
        )
        assert changed.status_code == 200, changed.text
        before = count_rows(db)

        assert_refused(redeem(api, tenant, voucher.voucher.code, amount=1), 409, code, "code")

        assert count_rows(db) == before
        assert_ledger(db, voucher, 5000)

    def test_a_re_enabled_voucher_redeems_again(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        voucher = gift(db, tenant)
        api.post(f"/api/v1/vouchers/{voucher.voucher.id}/disable", headers=tenant.headers)
        api.post(f"/api/v1/vouchers/{voucher.voucher.id}/enable", headers=tenant.headers)

        assert redeem(api, tenant, voucher.voucher.code, amount=1).status_code == 201

    def test_dates_are_honoured(
        self, api: TestClient, db: Database, tenant: Tenant, clock: FakeClock
    ) -> None:
        start = clock() + timedelta(days=1)
        expiry = clock() + timedelta(days=2)
        voucher = gift(db, tenant, start_date=start.isoformat(), expiration_date=expiry.isoformat())
        code = voucher.voucher.code

        assert_refused(redeem(api, tenant, code, amount=1), 409, "voucher_not_active_yet")
        clock.advance(days=1, hours=1)
        assert redeem(api, tenant, code, amount=1).status_code == 201
        clock.advance(days=1)
        before = count_rows(db)
        assert_refused(redeem(api, tenant, code, amount=1), 409, "voucher_expired")
        assert count_rows(db) == before
        assert voucher_now(api, tenant, code)["state"] == "EXPIRED"
        assert_ledger(db, voucher, 4999)

    def test_an_inactive_campaign(self, api: TestClient, db: Database, tenant: Tenant) -> None:
        voucher = gift(db, tenant)
        switched = api.patch(
            f"/api/v1/campaigns/{voucher.voucher.campaign_id}",
            headers=tenant.headers,
            json={"active": False},
        )
        assert switched.status_code == 200, switched.text

        assert_refused(
            redeem(api, tenant, voucher.voucher.code, amount=1), 409, "campaign_inactive"
        )

    def test_days_of_week_are_read_in_the_campaign_time_zone(
        self, api: TestClient, db: Database, tenant: Tenant, clock: FakeClock
    ) -> None:
        # The clock says Monday 12:00 UTC: already Tuesday 01:00 in Auckland (UTC+12 in June).
        voucher = gift(db, tenant, timezone="Pacific/Auckland", validity_day_of_week=[1])

        code = voucher.voucher.code

        assert_refused(redeem(api, tenant, code, amount=1), 409, "outside_validity_days")
        clock.advance(days=6, hours=1)  # Sunday 13:00 UTC is Monday 01:00 in Auckland
        assert redeem(api, tenant, code, amount=1).status_code == 201
        clock.advance(hours=22)  # Monday 23:00 in Auckland
        assert redeem(api, tenant, code, amount=1).status_code == 201
        clock.advance(hours=1)  # Tuesday 00:00 in Auckland, still Monday in UTC
        assert_refused(redeem(api, tenant, code, amount=1), 409, "outside_validity_days")


class TestRollback:
    def test_restores_balance_quantity_and_active_state(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        voucher = gift(db, tenant, 5000)
        code = voucher.voucher.code
        first = redeem(api, tenant, code, amount=2000).json()
        last = redeem(api, tenant, code, amount=3000).json()
        assert last["voucher"]["state"] == "REDEEMED"
        assert_ledger(db, voucher, 0)

        undone = rollback(api, tenant, last["id"], reason="till error")

        assert undone.status_code == 200, undone.text
        body = undone.json()
        assert body["status"] == "ROLLED_BACK"
        assert body["voucher"] == {"state": "ACTIVE", "balance": 3000, "redeemed_quantity": 1}
        assert body["rollback"]["reason"] == "till error"
        assert body["rollback"]["id"].startswith("rr_")
        assert_ledger(db, voucher, 3000)
        shown = voucher_now(api, tenant, code)
        assert (shown["state"], shown["balance"], shown["redemption"]["redeemed_quantity"]) == (
            "ACTIVE",
            3000,
            1,
        )

        also = rollback(api, tenant, first["id"])
        assert also.json()["voucher"] == {
            "state": "ACTIVE",
            "balance": 5000,
            "redeemed_quantity": 0,
        }
        assert_ledger(db, voucher, 5000)
        assert redeem(api, tenant, code, amount=5000).status_code == 201
        assert_ledger(db, voucher, 0)

    def test_twice_is_refused_and_changes_nothing(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        voucher = gift(db, tenant, 5000)
        made = redeem(api, tenant, voucher.voucher.code, amount=500).json()
        assert rollback(api, tenant, made["id"]).status_code == 200
        before = count_rows(db)

        assert_refused(rollback(api, tenant, made["id"]), 409, "already_rolled_back", "redemption")

        assert count_rows(db) == before
        assert_ledger(db, voucher, 5000)

    def test_an_unknown_redemption_is_not_found(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        before = count_rows(db)

        assert_refused(rollback(api, tenant, "r_nope"), 404, "not_found", "redemption")

        assert count_rows(db) == before

    def test_a_cash_voucher_can_be_paid_again(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        voucher = issue(db, tenant, make_campaign(db, tenant, type="CASH"), value=1000)
        made = redeem(api, tenant, voucher.voucher.code).json()

        undone = rollback(api, tenant, made["id"]).json()

        assert undone["voucher"] == {"state": "ACTIVE", "balance": 1000, "redeemed_quantity": 0}
        assert_ledger(db, voucher, 1000)
        assert redeem(api, tenant, voucher.voucher.code).status_code == 201
        assert_ledger(db, voucher, 0)

    def test_a_discount_gets_its_use_back(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        voucher = discount_voucher(
            db, tenant, {"type": "PERCENT", "percent_off": 10}, redemption_quantity=1
        )
        made = redeem(api, tenant, voucher.voucher.code, order={"amount": 1000}).json()
        assert made["voucher"]["state"] == "REDEEMED"

        undone = rollback(api, tenant, made["id"]).json()

        assert undone["voucher"] == {"state": "ACTIVE", "balance": None, "redeemed_quantity": 0}
        assert undone["amount"] == 100
        assert_ledger(db, voucher, None)

    def test_writes_a_ledger_row_and_an_event(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        voucher = gift(db, tenant, 5000)
        made = redeem(api, tenant, voucher.voucher.code, amount=800).json()
        before = count_rows(db)

        rollback(api, tenant, made["id"], reason="refund")

        after = count_rows(db)
        assert after["ledger_entry"] == before["ledger_entry"] + 1
        assert after["voucher_event"] == before["voucher_event"] + 1
        assert after["redemption"] == before["redemption"]
        events = api.get(f"/api/v1/vouchers/{voucher.voucher.code}/events", headers=tenant.headers)
        kinds = [(e["kind"], e["reason"]) for e in events.json()["data"]]
        assert kinds == [("issued", None), ("redeemed", None), ("rolled_back", "refund")]

    def test_the_body_is_optional(self, api: TestClient, db: Database, tenant: Tenant) -> None:
        voucher = gift(db, tenant, 5000)
        made = redeem(api, tenant, voucher.voucher.code, amount=800).json()

        undone = api.post(f"/api/v1/redemptions/{made['id']}/rollback", headers=tenant.headers)

        assert undone.status_code == 200, undone.text
        assert undone.json()["rollback"]["reason"] is None


class TestValidate:
    def test_a_gift_answers_the_amount_and_order_totals(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        voucher = gift(db, tenant, 5000)

        result = validate(api, tenant, voucher.voucher.code, order={"amount": 8000})

        assert result["valid"] is True
        assert result["reason"] is None
        assert result["amount"] == 5000
        assert result["order"] == {"amount": 8000, "discount_amount": None, "total_amount": 3000}
        assert result["voucher"]["code"] == voucher.voucher.code
        assert result["voucher"]["balance"] == 5000

    def test_a_discount_answers_the_discount(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        voucher = discount_voucher(
            db, tenant, {"type": "PERCENT", "percent_off": 15, "amount_limit": 1000}
        )

        small = validate(api, tenant, voucher.voucher.code, order={"amount": 2010})
        large = validate(api, tenant, voucher.voucher.code, order={"amount": 100_000})

        assert small["valid"] is True
        assert small["discount_amount"] == 302  # 301.5 rounds half up
        assert small["order"] == {"amount": 2010, "discount_amount": 302, "total_amount": 1708}
        assert large["discount_amount"] == 1000
        assert large["order"]["total_amount"] == 99_000

    def test_invalid_answers_say_why_and_change_nothing(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        campaign = make_campaign(db, tenant, type="GIFT")
        rich, disabled, cancelled, used = (issue(db, tenant, campaign) for _ in range(4))
        unit = discount_voucher(db, tenant, {"type": "UNIT", "unit_off": 1, "unit_type": "tea"})
        cash = issue(db, tenant, make_campaign(db, tenant, type="CASH"), value=900)
        headers = tenant.headers
        api.post(f"/api/v1/vouchers/{disabled.voucher.id}/disable", headers=headers)
        api.post(f"/api/v1/vouchers/{cancelled.voucher.id}/cancel", headers=headers)
        assert redeem(api, tenant, used.voucher.code, amount=5000).status_code == 201
        before = count_rows(db)
        snapshot = api.get("/api/v1/vouchers?limit=100", headers=headers).json()

        cases = [
            ("NO-SUCH-CODE", {"amount": 1}, "not_found"),
            (disabled.voucher.code, {"amount": 1}, "voucher_disabled"),
            (cancelled.voucher.code, {"amount": 1}, "voucher_cancelled"),
            (used.voucher.code, {"amount": 1}, "voucher_redeemed"),
            (rich.voucher.code, {"amount": 5001}, "insufficient_balance"),
            (rich.voucher.code, {}, "invalid_input"),
            (unit.voucher.code, {"order": {"amount": 100}}, "order_rules_violated"),
            (cash.voucher.code, {"amount": 100}, "invalid_input"),
        ]
        for code, body, reason in cases:
            result = validate(api, tenant, code, **body)
            assert (result["valid"], result["reason"]) == (False, reason), (code, body)
            assert result["detail"]
            assert result["amount"] is None
        assert count_rows(db) == before
        assert api.get("/api/v1/vouchers?limit=100", headers=headers).json() == snapshot

    def test_an_expired_voucher(
        self, api: TestClient, db: Database, tenant: Tenant, clock: FakeClock
    ) -> None:
        voucher = gift(db, tenant, lifetime_days=0)
        assert validate(api, tenant, voucher.voucher.code, amount=1)["valid"] is True

        clock.advance(hours=12)

        result = validate(api, tenant, voucher.voucher.code, amount=1)
        assert (result["valid"], result["reason"]) == (False, "voucher_expired")
        assert result["voucher"]["state"] == "EXPIRED"

    def test_a_valid_answer_does_not_spend(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        voucher = gift(db, tenant, 5000)
        before = count_rows(db)

        for _ in range(3):
            assert validate(api, tenant, voucher.voucher.code, amount=5000)["valid"] is True

        assert count_rows(db) == before
        assert_ledger(db, voucher, 5000)


class TestGetRedemption:
    def test_by_id(self, api: TestClient, db: Database, tenant: Tenant) -> None:
        voucher = gift(db, tenant, 5000)
        made = redeem(api, tenant, voucher.voucher.code, amount=300).json()
        redeem(api, tenant, voucher.voucher.code, amount=200)

        shown = api.get(f"/api/v1/redemptions/{made['id']}", headers=tenant.headers)

        assert shown.status_code == 200
        body = shown.json()
        assert body["id"] == made["id"]
        assert body["object"] == "redemption"
        assert body["amount"] == 300
        # The voucher part shows the voucher as it is now.
        assert body["voucher"] == {"state": "ACTIVE", "balance": 4500, "redeemed_quantity": 2}

    def test_unknown(self, api: TestClient, tenant: Tenant) -> None:
        response = api.get("/api/v1/redemptions/r_unknown", headers=tenant.headers)

        assert_refused(response, 404, "not_found", "redemption")


class TestListRedemptions:
    def test_newest_first_by_voucher_and_in_pages(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        one, two = gift(db, tenant, 5000), gift(db, tenant, 5000)
        made = [redeem(api, tenant, one.voucher.code, amount=100).json()["id"] for _ in range(3)]
        other = redeem(api, tenant, two.voucher.code, amount=100).json()["id"]
        headers = tenant.headers

        # Ids are time-ordered to the millisecond: "newest first" is descending id order.
        newest_first = sorted([*made, other], reverse=True)
        everything = api.get("/api/v1/redemptions", headers=headers).json()
        assert [r["id"] for r in everything["data"]] == newest_first
        assert everything["has_more"] is False
        for ref in (one.voucher.code, one.voucher.id):
            listed = api.get("/api/v1/redemptions", headers=headers, params={"voucher": ref})
            assert [r["id"] for r in listed.json()["data"]] == sorted(made, reverse=True)

        seen: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
            page = api.get("/api/v1/redemptions", headers=headers, params=params).json()
            seen += [r["id"] for r in page["data"]]
            cursor = page["next_cursor"]
            assert page["has_more"] is (cursor is not None)
            if cursor is None:
                break
        assert seen == newest_first

    def test_numbered_pages_of_one_voucher_with_its_total(
        self, api: TestClient, db: Database, tenant: Tenant
    ) -> None:
        one, two = gift(db, tenant, 5000), gift(db, tenant, 5000)
        made = [redeem(api, tenant, one.voucher.code, amount=100).json()["id"] for _ in range(3)]
        redeem(api, tenant, two.voucher.code, amount=100)
        assert rollback(api, tenant, made[0]).status_code == 200
        newest_first = sorted(made, reverse=True)

        pages = [
            service.number_voucher_redemptions(db, tenant.caller, ref, page=page, limit=2)
            for ref, page in ((one.voucher.code, 1), (one.voucher.id, 2), (one.voucher.code, 3))
        ]

        assert [p.total for p in pages] == [3, 3, 3]
        assert [[r.redemption.id for r in p.redemptions] for p in pages] == [
            newest_first[:2], newest_first[2:], [],
        ]  # fmt: skip
        assert all(p.voucher.voucher.id == one.voucher.id for p in pages)
        assert pages[0].voucher.voucher.redeemed_quantity == 2
        listed = {r.redemption.id: r for p in pages for r in p.redemptions}
        assert listed[made[0]].redemption.status == "ROLLED_BACK"
        assert {r.voucher_type for r in listed.values()} == {"GIFT"}
        with pytest.raises(NotFound):
            service.number_voucher_redemptions(db, make_tenant(db).caller, one.voucher.code,
                                               page=1, limit=2)  # fmt: skip

    def test_an_unknown_voucher_filter(self, api: TestClient, tenant: Tenant) -> None:
        response = api.get(
            "/api/v1/redemptions", headers=tenant.headers, params={"voucher": "NOPE"}
        )

        assert_refused(response, 404, "not_found", "voucher")
