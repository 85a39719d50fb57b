"""Vista's request bodies as the native ones (orders.schemas): the same fields, renamed.

Each map is native name -> Vista name; it renames a request's fields one way and a refusal's
field back the other way, so the two can never disagree. Fields the seed abbreviates away
(``...``) and any other unknown field are dropped, as ASP.NET's binder ignores them.
"""

from __future__ import annotations

from typing import Any

CLIENT_FIELDS = {
    "code": "code",
    "name": "name",
    "contact": "contact",
    "external_client_id": "externalClientId",
    "external_data": "externalData",
    "voucher_types": "voucherTypeCodes",
}
_ORDER = {
    "client": "clientCode",
    "reference": "reference",
    "electronic_distribution": "electronicDistribution",
    "external_user_id": "externalUserId",
    "delivery_address": "deliveryAddress",
    "external_data": "externalData",
    "items": "vouchers",
}
_ORDER_ITEM = {
    "product": "productCode",
    "quantity": "quantity",
    "major_sale_price": "salePrice",
    "major_redeem_price": "redeemPrice",
    "expiry_date": "expiryDate",
}
# For refusals: the core also names the minor-unit fields the major ones become.
ORDER_FIELDS = {**_ORDER, **_ORDER_ITEM, "sale_price": "salePrice", "redeem_price": "redeemPrice"}
_DISTRIBUTION = {
    "reference": "reference",
    "distribution_data": "distributionData",
    "externally_distributed": "externallyDistributed",
    "items": "distributionItems",
    "recipients": "recipients",
}
_DISTRIBUTION_ITEM = {
    "order_item": "clientOrderItemId",
    "quantity_per_recipient": "quantityPerRecipient",
}


def distribution_fields(channel: str) -> dict[str, str]:
    return {
        **_DISTRIBUTION,
        **_DISTRIBUTION_ITEM,
        "email": "email",
        "phone": "mobileNumber" if channel == "mobile" else "phone",
        "name": "name",
        "channel": "channel",
    }


def _pick(body: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """The native body: each Vista field present under its native name; others are dropped."""
    return {native: body[vista] for native, vista in names.items() if vista in body}


def _each(items: Any, names: dict[str, str]) -> Any:
    """A list's objects renamed; anything else is left for the native body to refuse."""
    if not isinstance(items, list):
        return items
    return [_pick(item, names) if isinstance(item, dict) else item for item in items]


def client_body(body: dict[str, Any]) -> dict[str, Any]:
    native = _pick(body, CLIENT_FIELDS)
    contact = native.get("contact")
    if isinstance(contact, dict):
        # Vista sends "" for a detail the client has none of (its example's fax).
        native["contact"] = {
            k: (None if v == "" else v)
            for k, v in contact.items()
            if k in ("name", "email", "phone", "fax")
        }
    if native.get("voucher_types") is None:
        native.pop("voucher_types", None)
    return native


def order_body(body: dict[str, Any]) -> dict[str, Any]:
    native = _pick(body, _ORDER)
    if "items" in native:
        native["items"] = _each(native["items"], _ORDER_ITEM)
    return native


def distribution_body(body: dict[str, Any], channel: str) -> dict[str, Any]:
    native = _pick(body, _DISTRIBUTION)
    native["channel"] = channel
    if "items" in native:
        native["items"] = _each(native["items"], _DISTRIBUTION_ITEM)
    if "recipients" in native:
        address = {"email": "email"} if channel == "email" else {"phone": "mobileNumber"}
        native["recipients"] = _each(native["recipients"], {"name": "name", **address})
    return native
