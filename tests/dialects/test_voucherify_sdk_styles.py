"""The official Voucherify SDK (``voucherify==6.1.1``) in both of its coding styles, every call
the Voucherify face speaks, against a real voucherd under uvicorn.

A model built with its constructor sends the fields given; one built with ``Model.from_dict``
sends every field the model declares, most of them ``null`` (``"validation_rules": null``,
``"order": {"initial_amount": null, ...}``). Voucherify reads null as not set, and so must
voucherd: each request body below is built once per style from the same data, and the flow's
answers must be the same. A field voucherd does not do is still refused when it has a value.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import voucherify
from pydantic import BaseModel
from voucherify import models as m

from tests.factories.tenants import Tenant
from tests.support.serving import serving
from tests.support.voucherify_sdk import Sdk as PlainSdk
from voucherd.composition import run_due_operations
from voucherd.db.engine import Database

M = TypeVar("M", bound=BaseModel)


class Sdk(PlainSdk):
    """The SDK's clients, and bodies built in one of the SDK's two styles."""

    def __init__(self, host: str, tenant: Tenant, style: str) -> None:
        super().__init__(host, tenant)
        self.style = style

    def body(self, model: type[M], data: dict[str, Any]) -> M:
        """``data`` as ``model``, built in this run's style."""
        if self.style == "from_dict":
            built = model.from_dict(data)  # type: ignore[attr-defined]
            assert built is not None
            return built  # type: ignore[no-any-return]
        return model(**data)


@pytest.fixture(params=["constructors", "from_dict"])
def sdk(request: pytest.FixtureRequest, fresh_database: Callable[..., Database]) -> Iterator[Sdk]:
    db = fresh_database(pool_size=4)
    tenant = Tenant(db)
    with serving(db) as host:
        client = Sdk(host, tenant, request.param)
        client.db = db  # type: ignore[attr-defined]
        with client.client:
            yield client


def _sent(model: BaseModel) -> dict[str, Any]:
    """What the SDK puts on the wire for a body."""
    return json.loads(json.dumps(model.to_dict(), default=str))  # type: ignore[attr-defined]


def test_the_styles_send_different_bodies() -> None:
    """The premise: from_dict sends nulls the constructor does not (else this file tests one
    style twice)."""
    data = {"name": "x", "voucher": {"type": "GIFT_VOUCHER", "gift": {"amount": 1}}}
    built = _sent(m.CampaignsCreateRequestBody(**data))
    parsed = _sent(m.CampaignsCreateRequestBody.from_dict(data))
    assert "validation_rules" not in built
    assert parsed["validation_rules"] is None
    assert parsed["voucher"]["gift"]["subtracted_amount"] is None


def test_every_call_of_the_face_in_both_styles(sdk: Sdk) -> None:
    db: Database = sdk.db  # type: ignore[attr-defined]
    body = sdk.body

    gift = sdk.campaigns.create_campaign(
        body(
            m.CampaignsCreateRequestBody,
            {
                "name": "Gift cards",
                "type": "STATIC",
                "campaign_type": "GIFT_VOUCHERS",
                "vouchers_count": 1,
                "voucher": {
                    "type": "GIFT_VOUCHER",
                    "gift": {"amount": 5000},
                    "redemption": {"quantity": 5},
                    "code_config": {"length": 10, "charset": "ABCDEFGHJKLMNPQRSTUVWXYZ"},
                },
                "metadata": {"source": "sdk"},
            },
        )
    )
    assert gift.id.startswith("camp_")
    assert gift.vouchers_count == 1
    assert gift.voucher.gift.amount == 5000

    discount = sdk.campaigns.create_campaign(
        body(
            m.CampaignsCreateRequestBody,
            {
                "name": "Weekday discount",
                "campaign_type": "DISCOUNT_COUPONS",
                "voucher": {
                    "type": "DISCOUNT_VOUCHER",
                    "discount": {"type": "PERCENT", "percent_off": 10, "amount_limit": 500},
                },
                "start_date": "2020-01-01T00:00:00Z",
                "validity_timeframe": {"duration": "P1D", "interval": "P1D"},
                "validity_hours": {"daily": [{"start_time": "00:00", "expiration_time": "23:59"}]},
                "validity_day_of_week": [0, 1, 2, 3, 4, 5, 6],
            },
        )
    )
    assert discount.voucher.discount.percent_off == 10
    assert sdk.campaigns.get_campaign(discount.id).validity_timeframe.interval == "P1D"
    names = {c.name for c in sdk.campaigns.list_campaigns(limit=10, page=1).campaigns}
    assert names == {"Gift cards", "Weekday discount"}

    one = sdk.campaigns.add_vouchers_to_campaign(
        gift.id,
        vouchers_count=1,
        campaigns_vouchers_create_in_bulk_request_body=body(
            m.CampaignsVouchersCreateInBulkRequestBody, {"metadata": {"batch": 1}}
        ),
    )
    assert one.metadata == {"batch": 1}
    started = sdk.campaigns.add_vouchers_to_campaign(
        "Gift cards",
        vouchers_count=2,
        campaigns_vouchers_create_in_bulk_request_body=body(
            m.CampaignsVouchersCreateInBulkRequestBody, {"category": "batch-2"}
        ),
    )
    assert run_due_operations(db, "sdk-styles-worker", threading.Event()) == 1
    assert sdk.async_actions.get_async_action(started.async_action_id).status == "DONE"

    published = sdk.publications.create_publication(
        publications_create_request_body=body(
            m.PublicationsCreateRequestBody,
            {
                "campaign": {"name": "Gift cards", "count": 1},
                "customer": {"source_id": "ada-1", "name": "Ada", "email": "ada@example.com"},
                "metadata": {"via": "sdk"},
            },
        )
    )
    code = published.voucher.code
    assert published.customer_id.startswith("cust_")
    assert sdk.publications.list_publications(customer="ada-1").total == 1

    order = {"amount": 3000, "source_id": "order-1"}
    validation = sdk.validations.validate_stacked_discounts(
        body(
            m.ValidationsValidateRequestBody,
            {
                "redeemables": [{"object": "voucher", "id": code, "gift": {"credits": 2000}}],
                "order": order,
                "customer": {"source_id": "ada-1"},
                "options": {"expand": ["order"]},
            },
        )
    )
    assert validation.valid is True
    assert validation.order.total_amount == 1000

    redeemed = sdk.redemptions.redeem_stacked_discounts(
        body(
            m.RedemptionsRedeemRequestBody,
            {
                "redeemables": [{"object": "voucher", "id": code, "gift": {"credits": 2000}}],
                "order": {**order, "items": [{"source_id": "sku-1", "quantity": 1, "price": 3000}]},
                "customer": {"id": published.customer_id},
                "metadata": {"till": 3},
            },
        )
    )
    (redemption,) = redeemed.redemptions
    assert redemption.amount == 2000
    assert redemption.tracking_id == "ada-1"
    assert sdk.redemptions.get_redemption(redemption.id).amount == 2000
    assert sdk.redemptions.get_voucher_redemptions(code).total == 1
    assert sdk.redemptions.list_redemptions(customer="ada-1", result="SUCCESS").total == 1

    rolled = sdk.redemptions.rollback_redemption(
        redemption.id,
        reason="returned",
        redemptions_rollback_create_request_body=body(
            m.RedemptionsRollbackCreateRequestBody,
            {"reason": "returned", "order": {"source_id": "order-1"}},
        ),
    )
    assert rolled.amount == -2000
    assert sdk.vouchers.get_voucher(code).gift.balance == 5000

    assert sdk.vouchers.disable_voucher(code).active is False
    assert sdk.vouchers.enable_voucher(code).active is True
    assert sdk.vouchers.list_vouchers(campaign="Gift cards").total == 4
    assert [v.code for v in sdk.vouchers.list_vouchers(customer="ada-1").vouchers] == [code]

    created = sdk.customers.create_customer(
        body(
            m.CustomersCreateRequestBody,
            {
                "source_id": "grace",
                "name": "Grace Hopper",
                "email": "grace@example.com",
                "address": {"line_1": "1 Navy Way", "city": "Arlington", "country": "US"},
                "metadata": {"tier": "gold"},
            },
        )
    )
    assert created.address.city == "Arlington"
    updated = sdk.customers.update_customer(
        "grace", body(m.CustomersUpdateRequestBody, {"name": "Rear Admiral Hopper"})
    )
    assert updated.name == "Rear Admiral Hopper"
    # Null means not set: from_dict's nulls erase nothing that was not named.
    assert updated.email == "grace@example.com"
    assert updated.metadata == {"tier": "gold"}
    assert sdk.customers.get_customer(created.id).name == "Rear Admiral Hopper"
    assert sdk.customers.list_customers(email="grace@example.com").total == 1
    assert sdk.customers.delete_customer(created.id) is None


def test_a_field_voucherd_does_not_do_is_refused_when_it_has_a_value(sdk: Sdk) -> None:
    campaign = sdk.body(
        m.CampaignsCreateRequestBody,
        {
            "name": "Ruled",
            "voucher": {"type": "GIFT_VOUCHER", "gift": {"amount": 100}},
            "validation_rules": ["val_1"],
        },
    )
    with pytest.raises(voucherify.ApiException) as refused:
        sdk.campaigns.create_campaign(campaign)
    assert refused.value.status == 400
    error = json.loads(refused.value.body)
    assert error["key"] == "invalid_payload"
    assert error["details"].startswith("validation_rules: ")


def test_what_voucherify_computes_is_ignored_whatever_its_value(sdk: Sdk) -> None:
    """A gift card's balance and spent amount are Voucherify's to count: sent back (as a
    client that copies a fetched campaign does), they change nothing."""
    created = sdk.campaigns.create_campaign(
        sdk.body(
            m.CampaignsCreateRequestBody,
            {
                "name": "Copied",
                "vouchers_count": 1,
                "voucher": {
                    "type": "GIFT_VOUCHER",
                    "gift": {"amount": 100, "balance": 7, "subtracted_amount": 93},
                },
            },
        )
    )
    (voucher,) = sdk.vouchers.list_vouchers(campaign="Copied").vouchers
    assert voucher.gift.balance == 100
    assert created.voucher.gift.amount == 100
