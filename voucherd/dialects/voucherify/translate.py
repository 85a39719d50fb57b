"""Voucherify's request bodies into the core's: names and nesting only, no rules.

A core body that refuses what it was given names its own field; the names are turned back into
Voucherify's (``default_value`` was ``voucher.gift.amount``) so the client sees its own words.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from voucherd.campaigns.schemas import CampaignCreate
from voucherd.customers.schemas import CustomerCreate, CustomerUpdate
from voucherd.dialects.voucherify import bodies
from voucherd.errors import DomainError, InvalidInput
from voucherd.publications.schemas import PublishRequest
from voucherd.redemptions.schemas import Order, OrderItem, RedeemRequest, ValidateRequest
from voucherd.vouchers.schemas import IssueVoucher, MintVouchers

_TYPES = {"GIFT_VOUCHER": "GIFT", "DISCOUNT_VOUCHER": "DISCOUNT", "LOYALTY_CARD": "LOYALTY"}
_CAMPAIGN_TYPES = {
    "GIFT_VOUCHERS": "GIFT",
    "DISCOUNT_COUPONS": "DISCOUNT",
    "LOYALTY_PROGRAM": "LOYALTY",
}
# Core field -> the Voucherify field it came from, for errors.
CAMPAIGN_FIELDS = {
    "mode": "type",
    "default_value": "voucher.gift.amount",
    "value": "voucher.gift.amount",
    "redemption_quantity": "voucher.redemption.quantity",
    "code_config": "voucher.code_config",
    "discount": "voucher.discount",
    "currency": "voucher.type",
    "count": "vouchers_count",
    "vouchers_count": "vouchers_count",
}
_CUSTOMER_FIELDS = {
    "address": "address.line_1",
    "postcode": "address.postal_code",
    "city": "address.city",
    "region": "address.state",
    "country": "address.country",
}

M = TypeVar("M", bound=BaseModel)


@contextmanager
def named_as_sent(names: dict[str, str]) -> Iterator[None]:
    """A core refusal names the core's field; rename it to the one the client sent."""
    try:
        yield
    except DomainError as exc:
        if exc.field is not None:
            head, dot, rest = exc.field.partition(".")
            exc.field = names.get(head, head) + dot + rest
        raise


def _build(model: type[M], data: dict[str, Any], names: dict[str, str], prefix: str = "") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = [str(part) for part in error["loc"]]
        if loc:
            loc[0] = names.get(loc[0], loc[0])
        raise InvalidInput(str(error["msg"]), field=prefix + ".".join(loc) or None) from exc


def _some(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


def voucher_type(body: bodies.CampaignCreate) -> str:
    if body.voucher is not None and body.voucher.type is not None:
        return _TYPES[body.voucher.type]
    assert body.campaign_type is not None  # the body's own validator saw to it
    return _CAMPAIGN_TYPES[body.campaign_type]


def campaign(body: bodies.CampaignCreate, currency: str) -> CampaignCreate:
    kind = voucher_type(body)
    template = body.voucher or bodies.CampaignVoucher()
    data: dict[str, Any] = _some(
        name=body.name,
        description=body.description,
        type=kind,
        mode=body.type,
        vouchers_count=body.vouchers_count,
        start_date=body.start_date,
        expiration_date=body.expiration_date,
        validity_timeframe=body.validity_timeframe,
        validity_day_of_week=body.validity_day_of_week,
        validity_hours=body.validity_hours,
        category=body.category,
        metadata=body.metadata,
        redemption_quantity=template.redemption.quantity if template.redemption else None,
        code_config=template.code_config.model_dump(exclude_none=True, exclude={"initial_count"})
        if template.code_config
        else None,
    )
    names = dict(CAMPAIGN_FIELDS)
    if kind == "GIFT":
        data["currency"] = currency
        if template.gift is not None:
            data["default_value"] = template.gift.amount
    elif kind == "LOYALTY":
        names["default_value"] = "voucher.loyalty_card.points"
        if template.loyalty_card is not None:
            data["default_value"] = template.loyalty_card.points
    else:
        given = template.discount
        if given is not None:
            data["discount"] = given.model_dump(exclude_none=True, exclude={"effect", "is_dynamic"})
            if given.type in ("AMOUNT", "FIXED"):
                data["currency"] = currency
    return _build(CampaignCreate, data, names)


def overrides(body: bodies.AddVouchers) -> dict[str, Any]:
    """What one request's vouchers set apart from their campaign. A given ``code`` makes the
    ``code_config`` moot (it only says how to draw codes), as in Voucherify."""
    return _some(
        category=body.category,
        metadata=body.metadata,
        additional_info=body.additional_info,
        start_date=body.start_date,
        expiration_date=body.expiration_date,
        redemption_quantity=body.redemption.quantity if body.redemption else None,
        code_config=body.code_config.model_dump(exclude_none=True, exclude={"initial_count"})
        if body.code_config is not None and body.code is None
        else None,
    )


def issue(campaign_ref: str, body: bodies.AddVouchers) -> IssueVoucher:
    data = {"campaign": campaign_ref, "code": body.code, **overrides(body)}
    return _build(IssueVoucher, _some(**data), {})


def mint(count: int, body: bodies.AddVouchers) -> MintVouchers:
    return _build(MintVouchers, {"count": count, **overrides(body)}, {"count": "vouchers_count"})


def customer_fields(body: bodies.CustomerFields) -> dict[str, Any]:
    """Only the fields sent: an update (and an upsert) changes those and nothing else."""
    sent = body.model_fields_set
    data: dict[str, Any] = {}
    for name in ("name", "description", "email", "phone", "metadata"):
        if name in sent:
            data[name] = getattr(body, name)
    if "birthdate" in sent or "birthday" in sent:
        data["birthdate"] = body.birthdate or body.birthday
    if "address" in sent:
        address = body.address or bodies.Address()
        lines = [line for line in (address.line_1, address.line_2) if line]
        data.update(
            address="\n".join(lines) or None,
            postcode=address.postal_code,
            city=address.city,
            region=address.state,
            country=address.country,
        )
    return data


def new_customer(body: bodies.Customer, prefix: str = "") -> CustomerCreate:
    data = customer_fields(body)
    if body.source_id is not None:
        data["source_id"] = body.source_id
    return _build(CustomerCreate, data, _CUSTOMER_FIELDS, prefix)


def customer_update(body: bodies.CustomerFields) -> CustomerUpdate:
    return _build(CustomerUpdate, customer_fields(body), _CUSTOMER_FIELDS)


def publish(body: bodies.Publish) -> PublishRequest:
    data: dict[str, Any] = _some(
        voucher=body.voucher,
        channel=body.channel,
        source_id=body.source_id,
        metadata=body.metadata,
    )
    if isinstance(body.campaign, str):
        data["campaign"] = body.campaign
    elif body.campaign is not None:
        data["campaign"] = body.campaign.name
        data["count"] = body.campaign.count
    if isinstance(body.customer, str):
        data["customer"] = body.customer
    elif body.customer is not None:
        # An existing customer by its id (or its source_id), else one created inline.
        if body.customer.id is not None:
            data["customer"] = body.customer.id
        else:
            given = new_customer(body.customer, "customer.")
            data["customer"] = given.model_dump(exclude_unset=True)
    return _build(PublishRequest, _some(**data), {}, "")


def _order(given: bodies.Order | None) -> Order | None:
    if given is None:
        return None
    items = None
    if given.items:
        items = []
        for n, item in enumerate(given.items):
            sku = item.source_id or item.sku_id or item.product_id
            price = item.price
            if price is None and item.amount is not None and item.quantity:
                price = item.amount // item.quantity
            items.append(
                _build(
                    OrderItem,
                    {"sku": sku, "quantity": item.quantity or 1, "price": price},
                    {"sku": "source_id"},
                    f"order.items.{n}.",
                )
            )
    reference = given.source_id or given.id
    return Order(amount=given.amount, reference=reference, items=items)


def redeemable(
    item: bodies.Redeemable, order: bodies.Order | None, customer_ref: str | None
) -> dict[str, Any]:
    """One redeemable as the core's validate/redeem body (without its redeem-only fields)."""
    if item.object != "voucher":
        raise InvalidInput(
            f"voucherd redeems vouchers; {item.object} redeemables are not supported",
            field="redeemables.object",
        )
    amount = None
    if item.gift is not None:
        amount = item.gift.credits or None
    elif item.reward is not None and item.reward.points is not None:
        amount = item.reward.points
    return _some(code=item.id, amount=amount, order=_order(order), customer_ref=customer_ref)


def validate_request(data: dict[str, Any]) -> ValidateRequest:
    return _build(ValidateRequest, data, {"code": "redeemables.id", "amount": "gift.credits"})


def redeem_request(data: dict[str, Any], metadata: dict[str, Any] | None) -> RedeemRequest:
    return _build(
        RedeemRequest,
        _some(**data, metadata=metadata),
        {"code": "redeemables.id", "amount": "gift.credits"},
    )
