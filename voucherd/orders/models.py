"""Corporate clients, their orders (line items of vouchers), and distributions of those vouchers.

How an order's vouchers are held: each line item owns one publication (channel ``ClientOrder``)
and its vouchers are minted straight into it, already published once. So they never sit in their
campaign's pool, where a publication to somebody else could take them, and "the vouchers of
item 42" is the publication's links. A distribution publishes them a second time, to each
recipient (channel ``Distribution``): a voucher of an item that is still undistributed is one
whose ``published_count`` is 1.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from voucherd.db.base import Base, JSONType, UTCDateTime
from voucherd.vouchers.models import AutoId

# An order's and a distribution item's status are their operation's (Processing, Completed,
# Failed), read from it rather than copied, so the two can never disagree.
DISTRIBUTION_KINDS = ("email", "mobile")


class Client(Base):
    __tablename__ = "client"
    __table_args__ = (
        UniqueConstraint("tenant_id", "code"),
        Index("ix_client_tenant_id_id", "tenant_id", "id"),
        Index("ix_client_tenant_id_external_client_id", "tenant_id", "external_client_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))
    code: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    contact_name: Mapped[str | None] = mapped_column(String(200))
    contact_email: Mapped[str | None] = mapped_column(String(254))
    # As the client gave it (Vista's example is a national number): a contact detail for
    # people, never an address voucherd sends to.
    contact_phone: Mapped[str | None] = mapped_column(String(40))
    contact_fax: Mapped[str | None] = mapped_column(String(40))
    external_client_id: Mapped[str | None] = mapped_column(String(200))
    external_data: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ClientVoucherType(Base):
    """A campaign (Vista's voucher type) a client may order."""

    __tablename__ = "client_voucher_type"

    client_id: Mapped[str] = mapped_column(ForeignKey("client.id"), primary_key=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaign.id"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))
    position: Mapped[int] = mapped_column(Integer)


class ClientOrder(Base):
    __tablename__ = "client_order"
    __table_args__ = (
        Index("ix_client_order_tenant_id_id", "tenant_id", "id"),
        Index("ix_client_order_client_id_id", "client_id", "id"),
        Index("ix_client_order_tenant_id_external_user_id", "tenant_id", "external_user_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))
    client_id: Mapped[str] = mapped_column(ForeignKey("client.id"))
    reference: Mapped[str | None] = mapped_column(String(200))
    electronic_distribution: Mapped[bool] = mapped_column(Boolean)
    external_user_id: Mapped[str | None] = mapped_column(String(200))
    delivery_address: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    external_data: Mapped[str | None] = mapped_column(Text)
    voucher_count: Mapped[int] = mapped_column(BigInteger)  # of all its items
    operation_id: Mapped[str] = mapped_column(ForeignKey("operation.id"))
    actor: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ClientOrderItem(Base):
    """One line of an order: so many vouchers of one campaign, at a price, with a value.

    Its id is an integer because Vista's ``clientOrderItemId`` is one.
    """

    __tablename__ = "client_order_item"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint(
            "distributed >= 0 AND distributed <= quantity", name="distributed_within_quantity"
        ),
        UniqueConstraint("order_id", "position"),
        Index("ix_client_order_item_tenant_id_id", "tenant_id", "id"),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))
    order_id: Mapped[str] = mapped_column(ForeignKey("client_order.id"))
    position: Mapped[int] = mapped_column(Integer)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaign.id"))
    quantity: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    sale_price: Mapped[int | None] = mapped_column(BigInteger)  # what the client pays, each
    redeem_price: Mapped[int | None] = mapped_column(BigInteger)  # each voucher's value
    expiry_date: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The ClientOrder publication its vouchers are minted into (see the module docstring).
    publication_id: Mapped[str] = mapped_column(ForeignKey("publication.id"))
    # Vouchers promised to distributions so far: taken by one conditional UPDATE, so two
    # distributions can never promise the same voucher.
    distributed: Mapped[int] = mapped_column(BigInteger, default=0)


class ClientOrderBatch(Base):
    """One committed batch of an order's mint. Its primary key is what makes a batch commit at
    most once, whichever worker (or resumed run) mints it."""

    __tablename__ = "client_order_batch"

    order_id: Mapped[str] = mapped_column(ForeignKey("client_order.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))
    item_id: Mapped[int] = mapped_column(ForeignKey("client_order_item.id"))
    count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Distribution(Base):
    __tablename__ = "distribution"
    __table_args__ = (
        CheckConstraint("kind IN ('email', 'mobile')", name="kind"),
        Index("ix_distribution_tenant_id_id", "tenant_id", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))
    kind: Mapped[str] = mapped_column(String(8))
    reference: Mapped[str | None] = mapped_column(String(200))
    distribution_data: Mapped[str | None] = mapped_column(Text)
    # Vista: the client sends the codes itself; voucherd: false sends them through delivery.
    externally_distributed: Mapped[bool] = mapped_column(Boolean)
    actor: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DistributionRecipient(Base):
    __tablename__ = "distribution_recipient"

    distribution_id: Mapped[str] = mapped_column(ForeignKey("distribution.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))
    name: Mapped[str | None] = mapped_column(String(200))
    # An email address (email distributions) or an E.164 number (mobile ones).
    address: Mapped[str] = mapped_column(String(254))


class DistributionItem(Base):
    """One order item a distribution hands out, so many vouchers to each recipient; each is
    its own operation (Vista answers one token per distribution item)."""

    __tablename__ = "distribution_item"
    __table_args__ = (
        CheckConstraint("quantity_per_recipient > 0", name="quantity_positive"),
        UniqueConstraint("distribution_id", "position"),
        Index("ix_distribution_item_tenant_id_id", "tenant_id", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))
    distribution_id: Mapped[str] = mapped_column(ForeignKey("distribution.id"))
    position: Mapped[int] = mapped_column(Integer)
    order_item_id: Mapped[int] = mapped_column(ForeignKey("client_order_item.id"))
    quantity_per_recipient: Mapped[int] = mapped_column(Integer)
    operation_id: Mapped[str] = mapped_column(ForeignKey("operation.id"))


class DistributionShare(Base):
    """What one recipient got of one distribution item: its publication (and the delivery that
    sends it, for internal distributions). One row per recipient is the item's progress: a
    resumed run skips the recipients that have one, so nobody is given vouchers twice."""

    __tablename__ = "distribution_share"

    distribution_item_id: Mapped[str] = mapped_column(
        ForeignKey("distribution_item.id"), primary_key=True
    )
    recipient_position: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))
    publication_id: Mapped[str] = mapped_column(ForeignKey("publication.id"))
    delivery_id: Mapped[str | None] = mapped_column(ForeignKey("delivery.id"))
