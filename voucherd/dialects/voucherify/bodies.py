"""Voucherify's request bodies, field for field as its API reference and SDK 6.1.1 spell them.

Unknown fields with a value are refused (``invalid_payload`` naming the field) rather than
ignored: a field voucherd does not honour (validation rules, referral programs, promotion tiers,
sessions) must not look as if it took effect.

A field sent as ``null`` is a field not set, whichever it is. The SDK's models built with
``Model.from_dict({...})`` send every field they declare, most of them null
(``"validation_rules": null``, ``"order": {"initial_amount": null, ...}``), and Voucherify
reads those as absent. So a null neither refuses a body nor changes anything: updating a
customer with ``{"name": "Ada", "email": null}`` (what from_dict sends for a name alone) renames
them and keeps their email. Fields Voucherify computes itself and a request cannot set (a gift
card's ``balance``) are dropped whatever their value (:attr:`Body.READ_ONLY`).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, model_validator

from voucherd.campaigns.schemas import ValidityHours, ValidityTimeframe
from voucherd.fields import Metadata, RequestModel, Timestamp, VoucherCode, whole_number
from voucherd.money import MAX_MINOR_UNITS


def _whole(value: Any) -> Any:
    """Voucherify amounts are integers of the smallest unit (10000 = $100.00); its SDK types
    them as float or int, so 10000.0 is accepted, 99.5 and "100" are not."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value  # left for the int validation to refuse, naming the field
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("must be a whole number of the currency's smallest unit (cents)")
    return int(value)


class Body(RequestModel):
    """A Voucherify body: a key whose value is null is not set (see above)."""

    # Fields of the SDK's model that Voucherify computes and a request cannot set.
    READ_ONLY: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _not_set(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {
            key: value
            for key, value in data.items()
            if value is not None and key not in cls.READ_ONLY
        }


def _without_nulls(value: Any) -> Any:
    """The same rule inside the core's own models (validity hours, timeframes), which a null
    day list would otherwise refuse."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


# _whole after the bounds: before them it would hide the bounds from the OpenAPI document.
Amount = Annotated[int, Field(strict=True, ge=0, le=MAX_MINOR_UNITS), BeforeValidator(_whole)]
Count = Annotated[int, Field(strict=True, ge=1), BeforeValidator(whole_number)]
Text = Annotated[str, Field(max_length=2000)]


class CodeConfig(Body):
    # Not the core's bounds: beside an explicit code the seed (001) sends a moot code_config
    # ("length": 123), which is accepted; the core checks one that is used.
    length: Amount | None = None
    charset: str | None = None
    prefix: str | None = None
    postfix: str | None = None
    pattern: str | None = None
    initial_count: int | None = None


class Discount(Body):
    type: Literal["AMOUNT", "PERCENT", "FIXED", "UNIT"]
    amount_off: Amount | None = None
    percent_off: Decimal | None = Field(default=None, allow_inf_nan=False)
    amount_limit: Amount | None = None
    fixed_amount: Amount | None = None
    unit_off: Count | None = None
    unit_type: str | None = Field(default=None, max_length=100)
    # voucherd applies AMOUNT, PERCENT and FIXED to the whole order and a UNIT discount to the
    # order's matching items: the effects that say so are the ones accepted.
    effect: Literal["APPLY_TO_ORDER", "ADD_MISSING_ITEMS"] | None = None
    is_dynamic: Literal[False] | None = None


class Gift(Body):
    # The SDK's Gift is also the answer's: what was spent and what is left are Voucherify's to
    # count, from the redemptions.
    READ_ONLY = frozenset({"subtracted_amount", "balance"})

    amount: Amount
    effect: Literal["APPLY_TO_ORDER"] | None = None


class LoyaltyCard(Body):
    points: Annotated[
        int, Field(strict=True, ge=0, le=MAX_MINOR_UNITS), BeforeValidator(whole_number)
    ]


class Redemption(Body):
    quantity: Count | None = None


VoucherType = Literal["GIFT_VOUCHER", "DISCOUNT_VOUCHER", "LOYALTY_CARD"]
CampaignType = Literal["GIFT_VOUCHERS", "DISCOUNT_COUPONS", "LOYALTY_PROGRAM"]


class CampaignVoucher(Body):
    type: VoucherType | None = None
    discount: Discount | None = None
    gift: Gift | None = None
    loyalty_card: LoyaltyCard | None = None
    redemption: Redemption | None = None
    code_config: CodeConfig | None = None
    is_referral_code: Literal[False] | None = None


class CampaignCreate(Body):
    name: str = Field(min_length=1, max_length=200)
    description: Text | None = None
    type: Literal["STATIC", "AUTO_UPDATE"] | None = None
    campaign_type: CampaignType | None = None
    vouchers_count: (
        Annotated[int, Field(strict=True, ge=0), BeforeValidator(whole_number)] | None
    ) = None
    voucher: CampaignVoucher | None = None
    start_date: Timestamp | None = None
    expiration_date: Timestamp | None = None
    validity_timeframe: Annotated[ValidityTimeframe | None, BeforeValidator(_without_nulls)] = None
    validity_day_of_week: list[int] | None = None
    validity_hours: Annotated[ValidityHours | None, BeforeValidator(_without_nulls)] = None
    category: str | None = Field(default=None, max_length=100)
    metadata: Metadata | None = None
    # Accepted when they ask for what voucherd does anyway.
    join_once: Literal[False] | None = None
    auto_join: Literal[False] | None = None
    use_voucher_metadata_schema: bool | None = None

    @model_validator(mode="after")
    def _voucher_type(self) -> CampaignCreate:
        if (self.voucher is None or self.voucher.type is None) and self.campaign_type is None:
            raise ValueError("give voucher.type (or campaign_type)")
        return self


class AddVouchers(Body):
    code: VoucherCode | None = None
    code_config: CodeConfig | None = None
    category: str | None = Field(default=None, max_length=100)
    metadata: Metadata | None = None
    redemption: Redemption | None = None
    additional_info: Text | None = None
    start_date: Timestamp | None = None
    expiration_date: Timestamp | None = None


class Address(Body):
    city: str | None = Field(default=None, max_length=100)
    state: str | None = Field(default=None, max_length=100)
    line_1: str | None = Field(default=None, max_length=300)
    line_2: str | None = Field(default=None, max_length=190)
    country: str | None = Field(default=None, max_length=100)
    postal_code: str | None = Field(default=None, max_length=20)


class CustomerFields(Body):
    name: str | None = Field(default=None, max_length=200)
    description: Text | None = None
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=32)
    birthday: date | None = Field(default=None, description="Deprecated by Voucherify: birthdate")
    birthdate: date | None = None
    address: Address | None = None
    metadata: Metadata | None = None


class Customer(CustomerFields):
    """A customer given inline (a publication, a redemption) or created: by ``id`` or
    ``source_id`` when it exists."""

    id: str | None = Field(default=None, max_length=40)
    source_id: str | None = Field(default=None, min_length=1, max_length=200)


class PublicationCampaign(Body):
    name: str = Field(min_length=1, max_length=200)
    count: Count | None = None


class Publish(Body):
    voucher: str | None = Field(default=None, min_length=1, max_length=100)
    campaign: str | PublicationCampaign | None = None
    customer: str | Customer | None = None
    channel: str | None = Field(default=None, min_length=1, max_length=100)
    source_id: str | None = Field(default=None, min_length=1, max_length=200)
    metadata: Metadata | None = None


class Credits(Body):
    credits: Amount


class Reward(Body):
    id: str | None = None
    points: (
        Annotated[int, Field(strict=True, ge=1, le=MAX_MINOR_UNITS), BeforeValidator(whole_number)]
        | None
    ) = None


class Redeemable(Body):
    object: Literal["voucher", "promotion_tier", "promotion_stack"]
    id: str = Field(min_length=1, max_length=100)
    gift: Credits | None = None
    reward: Reward | None = None


class OrderItem(Body):
    sku_id: str | None = Field(default=None, max_length=100)
    product_id: str | None = Field(default=None, max_length=100)
    source_id: str | None = Field(default=None, max_length=100)
    related_object: Literal["product", "sku"] | None = None
    quantity: Count | None = None
    price: Amount | None = None
    amount: Amount | None = None
    metadata: Metadata | None = None


class Order(Body):
    id: str | None = Field(default=None, max_length=100)
    source_id: str | None = Field(default=None, max_length=100)
    status: Literal["CREATED", "PAID", "CANCELED", "FULFILLED"] | None = None
    amount: Amount | None = None
    items: list[OrderItem] | None = Field(default=None, max_length=500)
    metadata: Metadata | None = None


class Options(Body):
    expand: list[Literal["order", "redemption", "redeemable", "category"]] | None = None


class Redeem(Body):
    """``POST /v1/validations`` and ``POST /v1/redemptions`` (the stacking API's bodies)."""

    redeemables: list[Redeemable] = Field(min_length=1, max_length=30)
    order: Order | None = None
    customer: Customer | None = None
    options: Options | None = None
    tracking_id: str | None = Field(default=None, max_length=200)
    metadata: Metadata | None = None


class LegacyRedeem(Body):
    """``POST /v1/vouchers/{code}/redemption``: the code is in the path."""

    order: Order | None = None
    customer: Customer | None = None
    gift: Credits | None = None
    reward: Reward | None = None
    tracking_id: str | None = Field(default=None, max_length=200)
    metadata: Metadata | None = None


class Rollback(Body):
    reason: str | None = Field(default=None, max_length=500)
    tracking_id: str | None = Field(default=None, max_length=200)
    customer: Customer | None = None
    order: Order | None = None
    metadata: Metadata | None = None
