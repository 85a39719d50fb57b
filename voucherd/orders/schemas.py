"""Request bodies and answers of clients, orders and distributions (native API).

Money is in minor units of the product's currency, as everywhere in the native API; the
``major_*`` twins take major units (Vista's ``12.34``) for faces that spell money so, since only
the product (campaign) knows its currency and the core converts (as issuing does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StrictBool,
    StringConstraints,
    model_validator,
)

from voucherd.fields import (
    CampaignRef,
    EmailAddress,
    MajorUnits,
    MinorUnits,
    PhoneNumber,
    PositiveMinorUnits,
    Quantity,
    RequestModel,
    Timestamp,
    _metadata,
    whole_number,
)
from voucherd.operations.models import Operation
from voucherd.orders.models import (
    Client,
    ClientOrder,
    ClientOrderItem,
    Distribution,
    DistributionItem,
    DistributionRecipient,
)

MAX_ORDER_ITEMS = 100
MAX_RECIPIENTS = 1_000
MAX_PER_RECIPIENT = 1_000
MAX_FREE_TEXT = 4_000

ClientCode = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100, pattern=r"^[\x21-\x7e]+$"),
    Field(description="The client's code, unique in the tenant (printable ASCII, no spaces)."),
]
ClientRef = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100),
    Field(description="A client's id or its code."),
]
FreeText = Annotated[str, StringConstraints(max_length=MAX_FREE_TEXT)]
ShortText = Annotated[str, StringConstraints(max_length=200)]
ContactNumber = Annotated[str, StringConstraints(max_length=40, strip_whitespace=True)]
Address = Annotated[dict[str, Any], AfterValidator(_metadata)]
DistributionChannel = Literal["email", "mobile"]


class ClientContact(RequestModel):
    name: ShortText | None = None
    email: EmailAddress | None = None
    phone: ContactNumber | None = Field(
        default=None, description="As the client writes it (a contact detail, never sent to)."
    )
    fax: ContactNumber | None = None


class ClientCreate(RequestModel):
    code: ClientCode
    name: Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
    contact: ClientContact | None = None
    external_client_id: ShortText | None = Field(
        default=None, description="The client's id in your own system; searchable."
    )
    external_data: FreeText | None = None
    voucher_types: list[CampaignRef] = Field(
        default_factory=list,
        max_length=100,
        description="Campaigns (by id or name) the client may order.",
    )


class ClientUpdate(RequestModel):
    """Fields sent are changed (null clears); fields left out stay. ``code`` is the client's
    reference and does not change."""

    name: (
        Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
        | None
    ) = None
    contact: ClientContact | None = None
    external_client_id: ShortText | None = None
    external_data: FreeText | None = None
    voucher_types: list[CampaignRef] | None = Field(default=None, max_length=100)

    @model_validator(mode="after")
    def _name_not_cleared(self) -> ClientUpdate:
        if "name" in self.model_fields_set and self.name is None:
            raise ValueError("name cannot be cleared")
        if "voucher_types" in self.model_fields_set and self.voucher_types is None:
            raise ValueError("voucher_types cannot be null; send [] for none")
        return self


class OrderItemCreate(RequestModel):
    product: CampaignRef = Field(description="The campaign (voucher type) by id or name.")
    quantity: Quantity
    sale_price: MinorUnits | None = Field(default=None, description="What the client pays, each.")
    redeem_price: PositiveMinorUnits | None = Field(
        default=None,
        description="The value each voucher carries; the campaign's default if absent.",
    )
    major_sale_price: MajorUnits | None = None
    major_redeem_price: MajorUnits | None = None
    expiry_date: Timestamp | None = Field(
        default=None, description="When the vouchers expire; the campaign's rule if absent."
    )


class OrderCreate(RequestModel):
    client: ClientRef
    reference: ShortText | None = None
    electronic_distribution: StrictBool = True
    external_user_id: ShortText | None = Field(
        default=None, description="Who placed the order, in your system; searchable."
    )
    delivery_address: Address | None = None
    external_data: FreeText | None = None
    items: list[OrderItemCreate] = Field(min_length=1, max_length=MAX_ORDER_ITEMS)


# Order item ids are BIGINTs, but FastAPI's OpenAPI models hold bounds as floats, which are exact
# only up to 2**53: 2**63 - 1 was documented as 2**63, a value schemathesis then sent and we
# refused. 2**53 is far beyond any id a table will reach and documented exactly.
MAX_ITEM_ID = 2**53


class DistributionItemCreate(RequestModel):
    order_item: Annotated[
        int,
        Field(
            ge=1,
            le=MAX_ITEM_ID,
            strict=True,
            description="A client order item's id (an integer; the order shows its items' ids).",
        ),
        BeforeValidator(whole_number),
    ]
    quantity_per_recipient: Annotated[
        int, Field(ge=1, le=MAX_PER_RECIPIENT, strict=True), BeforeValidator(whole_number)
    ]


class RecipientCreate(RequestModel):
    name: ShortText | None = None
    email: EmailAddress | None = None
    phone: PhoneNumber | None = None


class DistributionCreate(RequestModel):
    channel: DistributionChannel
    reference: ShortText | None = None
    distribution_data: FreeText | None = Field(
        default=None, description="Free text for the client (image links, a personal message)."
    )
    externally_distributed: StrictBool = Field(
        default=True,
        description="true: the codes are assigned and handed back for you to send (Vista's "
        "only mode); false: voucherd sends each recipient its codes in one message.",
    )
    items: list[DistributionItemCreate] = Field(min_length=1, max_length=MAX_ORDER_ITEMS)
    recipients: list[RecipientCreate] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_RECIPIENTS,
        description="Who gets a share of each item. Required when voucherd sends the codes "
        "(externally_distributed false). Left out of an external distribution, the client "
        "itself is the one unnamed recipient: each item's quantity_per_recipient codes are "
        "assigned to it and handed back.",
    )

    @model_validator(mode="after")
    def _recipients_fit_channel(self) -> DistributionCreate:
        wanted = "email" if self.channel == "email" else "phone"
        for recipient in self.recipients or []:
            if getattr(recipient, wanted) is None:
                raise ValueError(f"every recipient of a {self.channel} distribution needs {wanted}")
        return self

    def shares_to(self) -> list[RecipientCreate]:
        """The recipients, or the one unnamed recipient (the client, which sends the codes on
        itself) of an external distribution that names none. Whether an internal one named
        any is the service's to check, so the refusal names ``recipients``."""
        return self.recipients if self.recipients is not None else [RecipientCreate()]

    def address_of(self, recipient: RecipientCreate) -> str:
        """Where the recipient is sent its codes; "" for the unnamed one, who is sent nothing."""
        address = recipient.email if self.channel == "email" else recipient.phone
        return address or ""


# --- what the services hand back ------------------------------------------------------------


@dataclass(frozen=True)
class ClientRecord:
    client: Client
    voucher_types: list[tuple[str, str]]  # (campaign id, campaign name), in the order given
    operation: Operation | None = None  # the operation recording its creation


@dataclass(frozen=True)
class OrderRecord:
    order: ClientOrder
    client_code: str
    items: list[tuple[ClientOrderItem, str]]  # with the campaign's name
    operation: Operation
    minted: int  # vouchers minted so far


@dataclass(frozen=True)
class Share:
    distribution_item_id: str
    recipient_position: int
    codes: list[str]
    delivery_id: str | None


@dataclass(frozen=True)
class DistributionRecord:
    distribution: Distribution
    items: list[tuple[DistributionItem, Operation]]
    recipients: list[DistributionRecipient]
    shares: list[Share]


def present_client(record: ClientRecord) -> dict[str, Any]:
    c = record.client
    return {
        "id": c.id,
        "object": "client",
        "code": c.code,
        "name": c.name,
        "contact": {
            "name": c.contact_name,
            "email": c.contact_email,
            "phone": c.contact_phone,
            "fax": c.contact_fax,
        },
        "external_client_id": c.external_client_id,
        "external_data": c.external_data,
        "voucher_types": [{"id": i, "name": n} for i, n in record.voucher_types],
        "operation_token": record.operation.token if record.operation else None,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
    }


def present_order(record: OrderRecord) -> dict[str, Any]:
    o, op = record.order, record.operation
    return {
        "id": o.id,
        "object": "client_order",
        "client_id": o.client_id,
        "client_code": record.client_code,
        "reference": o.reference,
        "electronic_distribution": o.electronic_distribution,
        "external_user_id": o.external_user_id,
        "delivery_address": o.delivery_address,
        "external_data": o.external_data,
        "status": op.status,
        "progress": {"done": record.minted, "total": o.voucher_count},
        "error": op.last_error if op.status != "Completed" else None,
        "operation_id": op.id,
        "operation_token": op.token,
        "items": [
            {
                "id": item.id,
                "product": campaign_name,
                "campaign_id": item.campaign_id,
                "quantity": item.quantity,
                "currency": item.currency,
                "sale_price": item.sale_price,
                "redeem_price": item.redeem_price,
                "expiry_date": item.expiry_date,
                "publication_id": item.publication_id,
                "distributed": item.distributed,
                "available": item.quantity - item.distributed,
            }
            for item, campaign_name in record.items
        ],
        "created_at": o.created_at,
        "updated_at": o.updated_at,
        "completed_at": op.finished_at if op.status == "Completed" else None,
    }


def present_distribution(record: DistributionRecord) -> dict[str, Any]:
    d = record.distribution
    codes: dict[int, dict[str, Any]] = {}
    for share in record.shares:
        codes.setdefault(share.recipient_position, {})[share.distribution_item_id] = share
    return {
        "id": d.id,
        "object": "distribution",
        "channel": d.kind,
        "reference": d.reference,
        "distribution_data": d.distribution_data,
        "externally_distributed": d.externally_distributed,
        "items": [
            {
                "id": item.id,
                "order_item": item.order_item_id,
                "quantity_per_recipient": item.quantity_per_recipient,
                "status": op.status,
                "error": op.last_error if op.status != "Completed" else None,
                "operation_id": op.id,
                "operation_token": op.token,
            }
            for item, op in record.items
        ],
        "recipients": [
            {
                "position": r.position,
                "name": r.name,
                "address": r.address or None,  # None: the client itself (no recipients named)
                "shares": [
                    {
                        "distribution_item": item_id,
                        "codes": share.codes,
                        "delivery_id": share.delivery_id,
                    }
                    for item_id, share in codes.get(r.position, {}).items()
                ],
            }
            for r in record.recipients
        ],
        "created_at": d.created_at,
    }
