"""Voucherify's official Python SDK (PyPI ``voucherify`` 6.1.1, unchanged) against a real voucherd.

voucherd runs under uvicorn in a thread on a free 127.0.0.1 port over a fresh database; the SDK
is the client, pointed at it by ``Configuration(host=..., api_key={"X-App-Id", "X-App-Token"})``.
The SDK parses every answer into its own pydantic models (enums and types checked), so a shape
voucherd got wrong fails here as it would fail a real integration. The worker that mints the
async action's vouchers is run by the test between polls, so nothing waits on time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
import voucherify
from voucherify import models as m

from tests.factories.tenants import Tenant
from tests.support.serving import serving
from tests.support.voucherify_sdk import Sdk
from voucherd.composition import run_due_operations
from voucherd.db.engine import Database


@pytest.fixture
def site(fresh_database: Callable[..., Database]) -> Iterator[tuple[Sdk, Database]]:
    db = fresh_database(pool_size=4)
    tenant = Tenant(db)
    with serving(db) as host:
        sdk = Sdk(host, tenant)
        with sdk.client:
            yield sdk, db


def test_the_whole_flow_through_the_official_sdk(site: tuple[Sdk, Database]) -> None:
    sdk, db = site

    campaign = sdk.campaigns.create_campaign(
        m.CampaignsCreateRequestBody(
            name="SDK gift cards",
            type="STATIC",
            campaign_type="GIFT_VOUCHERS",
            vouchers_count=1,
            voucher=m.CampaignsCreateRequestBodyVoucher(
                type="GIFT_VOUCHER",
                gift=m.Gift(amount=5000),
                redemption=m.CampaignsCreateRequestBodyVoucherRedemption(quantity=5),
                code_config=m.CodeConfig(length=10, charset="ABCDEFGHJKLMNPQRSTUVWXYZ"),
            ),
            metadata={"source": "sdk"},
        )
    )
    assert campaign.id.startswith("camp_")
    assert campaign.campaign_type == "GIFT_VOUCHERS"
    assert campaign.type == "STATIC"
    assert campaign.vouchers_count == 1
    assert campaign.voucher.gift.amount == 5000

    # Add vouchers: one comes back at once; more are an async action a worker runs.
    one = sdk.campaigns.add_vouchers_to_campaign(campaign.id, vouchers_count=1)
    assert one.type == "GIFT_VOUCHER"
    assert len(one.code) == 10
    assert one.gift.balance == 5000
    assert one.assets.qr.url.endswith("/qr.svg")
    started = sdk.campaigns.add_vouchers_to_campaign(
        "SDK gift cards",
        vouchers_count=4,
        campaigns_vouchers_create_in_bulk_request_body=m.CampaignsVouchersCreateInBulkRequestBody(
            metadata={"batch": 2}
        ),
    )
    assert started.async_action_id.startswith("aa_")
    action = sdk.async_actions.get_async_action(started.async_action_id)
    assert action.status == "ENQUEUED"
    assert action.progress == 0
    assert run_due_operations(db, "sdk-test-worker", threading.Event()) == 1
    action = sdk.async_actions.get_async_action(started.async_action_id)
    assert action.status == "DONE"
    assert action.operation_status == "SUCCESS"
    assert action.progress == 100
    assert sdk.campaigns.get_campaign(campaign.id).vouchers_count == 6

    # Publish a code from the pool to a customer given inline.
    published = sdk.publications.create_publication(
        publications_create_request_body=m.PublicationsCreateRequestBody(
            campaign=m.CreatePublicationCampaign(name="SDK gift cards", count=1),
            customer=m.Customer(source_id="ada-1", name="Ada Lovelace", email="ada@example.com"),
            metadata={"via": "sdk"},
        )
    )
    assert published.id.startswith("pub_")
    assert published.result == "SUCCESS"
    assert published.channel == "API"
    assert published.customer_id.startswith("cust_")
    code = published.voucher.code
    assert published.voucher.holder_id == published.customer_id
    listed = sdk.publications.list_publications(limit=10, page=1, customer="ada-1")
    assert listed.total == 1
    assert listed.publications[0].id == published.id

    # Validate, redeem part of the balance, roll back.
    order = m.Order(amount=3000, source_id="order-1")
    validation = sdk.validations.validate_stacked_discounts(
        m.ValidationsValidateRequestBody(
            redeemables=[
                m.ValidationsValidateRequestBodyRedeemablesItem(
                    object="voucher",
                    id=code,
                    gift=m.ValidationsValidateRequestBodyRedeemablesItemGift(credits=2000),
                )
            ],
            order=order,
            customer=m.Customer(source_id="ada-1"),
        )
    )
    assert validation.valid is True
    assert validation.redeemables[0].status == "APPLICABLE"
    assert validation.redeemables[0].result.gift.credits == 2000
    assert validation.order.total_amount == 1000

    redeemed = sdk.redemptions.redeem_stacked_discounts(
        m.RedemptionsRedeemRequestBody(
            redeemables=[
                m.RedemptionsRedeemRequestBodyRedeemablesItem(
                    object="voucher",
                    id=code,
                    gift=m.RedemptionsRedeemRequestBodyRedeemablesItemGift(credits=2000),
                )
            ],
            order=order,
            customer=m.Customer(id=published.customer_id),
        )
    )
    (redemption,) = redeemed.redemptions
    assert redemption.id.startswith("r_")
    assert redemption.result == "SUCCESS"
    assert redemption.status == "SUCCEEDED"
    assert redemption.amount == 2000
    assert redemption.tracking_id == "ada-1"
    assert redemption.voucher.gift.balance == 3000
    assert sdk.vouchers.get_voucher(code).gift.balance == 3000

    rolled = sdk.redemptions.rollback_redemption(redemption.id, reason="returned")
    assert rolled.id.startswith("rr_")
    assert rolled.object == "redemption_rollback"
    assert rolled.redemption == redemption.id
    assert rolled.amount == -2000
    assert rolled.status == "SUCCEEDED"
    assert sdk.vouchers.get_voucher(code).gift.balance == 5000
    with pytest.raises(voucherify.ApiException) as again:
        sdk.redemptions.rollback_redemption(redemption.id)
    assert again.value.status == 400
    assert '"key":"already_rolled_back"' in again.value.body

    # Switch the voucher off and on.
    assert sdk.vouchers.disable_voucher(code).active is False
    assert sdk.vouchers.enable_voucher(code).active is True

    # The three lists, parsed by the SDK's own models.
    vouchers = sdk.vouchers.list_vouchers(limit=2, page=1, campaign="SDK gift cards")
    assert (vouchers.object, vouchers.data_ref, vouchers.total) == ("list", "vouchers", 6)
    assert len(vouchers.vouchers) == 2
    held = sdk.vouchers.list_vouchers(customer="ada-1")
    assert [v.code for v in held.vouchers] == [code]
    assert sdk.vouchers.list_vouchers(campaign="No such campaign").total == 0
    redemptions = sdk.redemptions.list_redemptions(limit=10, page=1, customer="ada-1")
    assert (redemptions.object, redemptions.data_ref, redemptions.total) == (
        "list", "redemptions", 1,
    )  # fmt: skip
    assert redemptions.redemptions[0].id == redemption.id
    assert redemptions.redemptions[0].status == "ROLLED_BACK"
    assert sdk.redemptions.list_redemptions(result="FAILURE").total == 0
    customers = sdk.customers.list_customers(limit=10, page=1, email="ada@example.com")
    assert (customers.object, customers.data_ref, customers.total) == ("list", "customers", 1)
    assert customers.customers[0].id == published.customer_id


def test_customers_through_the_official_sdk(site: tuple[Sdk, Database]) -> None:
    sdk, _ = site
    created = sdk.customers.create_customer(
        m.CustomersCreateRequestBody(
            source_id="grace",
            name="Grace Hopper",
            email="grace@example.com",
            phone="+447911123456",
            address=m.CustomersCreateRequestBodyAddress(
                line_1="1 Navy Way", city="Arlington", postal_code="22201", country="US"
            ),
            metadata={"tier": "gold"},
        )
    )
    assert created.id.startswith("cust_")
    assert created.address.city == "Arlington"
    fetched = sdk.customers.get_customer("grace")
    assert fetched.id == created.id
    assert fetched.email == "grace@example.com"
    updated = sdk.customers.update_customer(
        created.id, m.CustomersUpdateRequestBody(name="Rear Admiral Hopper")
    )
    assert updated.name == "Rear Admiral Hopper"
    assert updated.metadata == {"tier": "gold"}
    assert sdk.customers.delete_customer(created.id) is None
    with pytest.raises(voucherify.ApiException) as gone:
        sdk.customers.get_customer(created.id)
    assert gone.value.status == 404
    assert '"key":"not_found"' in gone.value.body


def test_wrong_credentials_through_the_official_sdk(site: tuple[Sdk, Database]) -> None:
    sdk, _ = site
    sdk.client.configuration.api_key["X-App-Token"] = "not-the-secret"
    with pytest.raises(voucherify.ApiException) as refused:
        sdk.campaigns.list_campaigns()
    assert refused.value.status == 401
    assert '"key":"unauthorized"' in refused.value.body
