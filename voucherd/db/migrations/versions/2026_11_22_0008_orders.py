"""corporate clients, client orders, distributions; deliveries that carry several vouchers

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import voucherd.db.base

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MOMENT = voucherd.db.base.UTCDateTime


def _tenant(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"], ["tenant.id"], name=op.f(f"fk_{table}_tenant_id_tenant")
    )


def upgrade() -> None:
    op.create_table(
        "client",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("code", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("contact_name", sa.String(length=200), nullable=True),
        sa.Column("contact_email", sa.String(length=254), nullable=True),
        sa.Column("contact_phone", sa.String(length=40), nullable=True),
        sa.Column("contact_fax", sa.String(length=40), nullable=True),
        sa.Column("external_client_id", sa.String(length=200), nullable=True),
        sa.Column("external_data", sa.Text(), nullable=True),
        sa.Column("created_at", MOMENT(), nullable=False),
        sa.Column("updated_at", MOMENT(), nullable=False),
        _tenant("client"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_client")),
        sa.UniqueConstraint("tenant_id", "code", name=op.f("uq_client_tenant_id_code")),
    )
    with op.batch_alter_table("client", schema=None) as batch_op:
        batch_op.create_index("ix_client_tenant_id_id", ["tenant_id", "id"], unique=False)
        batch_op.create_index(
            "ix_client_tenant_id_external_client_id",
            ["tenant_id", "external_client_id"],
            unique=False,
        )

    op.create_table(
        "client_voucher_type",
        sa.Column("client_id", sa.String(length=32), nullable=False),
        sa.Column("campaign_id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
            name=op.f("fk_client_voucher_type_campaign_id_campaign"),
        ),
        sa.ForeignKeyConstraint(
            ["client_id"], ["client.id"], name=op.f("fk_client_voucher_type_client_id_client")
        ),
        _tenant("client_voucher_type"),
        sa.PrimaryKeyConstraint("client_id", "campaign_id", name=op.f("pk_client_voucher_type")),
    )

    op.create_table(
        "client_order",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("client_id", sa.String(length=32), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=True),
        sa.Column("electronic_distribution", sa.Boolean(), nullable=False),
        sa.Column("external_user_id", sa.String(length=200), nullable=True),
        sa.Column("delivery_address", JSON, nullable=True),
        sa.Column("external_data", sa.Text(), nullable=True),
        sa.Column("voucher_count", sa.BigInteger(), nullable=False),
        sa.Column("operation_id", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=True),
        sa.Column("created_at", MOMENT(), nullable=False),
        sa.Column("updated_at", MOMENT(), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"], ["client.id"], name=op.f("fk_client_order_client_id_client")
        ),
        sa.ForeignKeyConstraint(
            ["operation_id"], ["operation.id"], name=op.f("fk_client_order_operation_id_operation")
        ),
        _tenant("client_order"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_client_order")),
    )
    with op.batch_alter_table("client_order", schema=None) as batch_op:
        batch_op.create_index("ix_client_order_tenant_id_id", ["tenant_id", "id"], unique=False)
        batch_op.create_index("ix_client_order_client_id_id", ["client_id", "id"], unique=False)
        batch_op.create_index(
            "ix_client_order_tenant_id_external_user_id",
            ["tenant_id", "external_user_id"],
            unique=False,
        )

    op.create_table(
        "client_order_item",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("order_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.String(length=32), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("sale_price", sa.BigInteger(), nullable=True),
        sa.Column("redeem_price", sa.BigInteger(), nullable=True),
        sa.Column("expiry_date", MOMENT(), nullable=True),
        sa.Column("publication_id", sa.String(length=32), nullable=False),
        sa.Column("distributed", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_client_order_item_quantity_positive")),
        sa.CheckConstraint(
            "distributed >= 0 AND distributed <= quantity",
            name=op.f("ck_client_order_item_distributed_within_quantity"),
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaign.id"], name=op.f("fk_client_order_item_campaign_id_campaign")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["client_order.id"],
            name=op.f("fk_client_order_item_order_id_client_order"),
        ),
        sa.ForeignKeyConstraint(
            ["publication_id"],
            ["publication.id"],
            name=op.f("fk_client_order_item_publication_id_publication"),
        ),
        _tenant("client_order_item"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_client_order_item")),
        sa.UniqueConstraint(
            "order_id", "position", name=op.f("uq_client_order_item_order_id_position")
        ),
    )
    with op.batch_alter_table("client_order_item", schema=None) as batch_op:
        batch_op.create_index(
            "ix_client_order_item_tenant_id_id", ["tenant_id", "id"], unique=False
        )

    op.create_table(
        "client_order_batch",
        sa.Column("order_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("item_id", AUTO_ID, nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("created_at", MOMENT(), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["client_order_item.id"],
            name=op.f("fk_client_order_batch_item_id_client_order_item"),
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["client_order.id"],
            name=op.f("fk_client_order_batch_order_id_client_order"),
        ),
        _tenant("client_order_batch"),
        sa.PrimaryKeyConstraint("order_id", "seq", name=op.f("pk_client_order_batch")),
    )

    op.create_table(
        "distribution",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=True),
        sa.Column("distribution_data", sa.Text(), nullable=True),
        sa.Column("externally_distributed", sa.Boolean(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=True),
        sa.Column("created_at", MOMENT(), nullable=False),
        sa.CheckConstraint("kind IN ('email', 'mobile')", name=op.f("ck_distribution_kind")),
        _tenant("distribution"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_distribution")),
    )
    with op.batch_alter_table("distribution", schema=None) as batch_op:
        batch_op.create_index("ix_distribution_tenant_id_id", ["tenant_id", "id"], unique=False)

    op.create_table(
        "distribution_recipient",
        sa.Column("distribution_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("address", sa.String(length=254), nullable=False),
        sa.ForeignKeyConstraint(
            ["distribution_id"],
            ["distribution.id"],
            name=op.f("fk_distribution_recipient_distribution_id_distribution"),
        ),
        _tenant("distribution_recipient"),
        sa.PrimaryKeyConstraint(
            "distribution_id", "position", name=op.f("pk_distribution_recipient")
        ),
    )

    op.create_table(
        "distribution_item",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("distribution_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("order_item_id", AUTO_ID, nullable=False),
        sa.Column("quantity_per_recipient", sa.Integer(), nullable=False),
        sa.Column("operation_id", sa.String(length=32), nullable=False),
        sa.CheckConstraint(
            "quantity_per_recipient > 0", name=op.f("ck_distribution_item_quantity_positive")
        ),
        sa.ForeignKeyConstraint(
            ["distribution_id"],
            ["distribution.id"],
            name=op.f("fk_distribution_item_distribution_id_distribution"),
        ),
        sa.ForeignKeyConstraint(
            ["operation_id"],
            ["operation.id"],
            name=op.f("fk_distribution_item_operation_id_operation"),
        ),
        sa.ForeignKeyConstraint(
            ["order_item_id"],
            ["client_order_item.id"],
            name=op.f("fk_distribution_item_order_item_id_client_order_item"),
        ),
        _tenant("distribution_item"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_distribution_item")),
        sa.UniqueConstraint(
            "distribution_id",
            "position",
            name=op.f("uq_distribution_item_distribution_id_position"),
        ),
    )
    with op.batch_alter_table("distribution_item", schema=None) as batch_op:
        batch_op.create_index(
            "ix_distribution_item_tenant_id_id", ["tenant_id", "id"], unique=False
        )

    op.create_table(
        "distribution_share",
        sa.Column("distribution_item_id", sa.String(length=32), nullable=False),
        sa.Column("recipient_position", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("publication_id", sa.String(length=32), nullable=False),
        sa.Column("delivery_id", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["delivery.id"],
            name=op.f("fk_distribution_share_delivery_id_delivery"),
        ),
        sa.ForeignKeyConstraint(
            ["distribution_item_id"],
            ["distribution_item.id"],
            name=op.f("fk_distribution_share_distribution_item_id_distribution_item"),
        ),
        sa.ForeignKeyConstraint(
            ["publication_id"],
            ["publication.id"],
            name=op.f("fk_distribution_share_publication_id_publication"),
        ),
        _tenant("distribution_share"),
        sa.PrimaryKeyConstraint(
            "distribution_item_id", "recipient_position", name=op.f("pk_distribution_share")
        ),
    )

    op.create_table(
        "delivery_voucher",
        sa.Column("delivery_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("voucher_id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"], ["delivery.id"], name=op.f("fk_delivery_voucher_delivery_id_delivery")
        ),
        sa.ForeignKeyConstraint(
            ["voucher_id"], ["voucher.id"], name=op.f("fk_delivery_voucher_voucher_id_voucher")
        ),
        _tenant("delivery_voucher"),
        sa.PrimaryKeyConstraint("delivery_id", "position", name=op.f("pk_delivery_voucher")),
    )


def downgrade() -> None:
    op.drop_table("delivery_voucher")
    op.drop_table("distribution_share")
    with op.batch_alter_table("distribution_item", schema=None) as batch_op:
        batch_op.drop_index("ix_distribution_item_tenant_id_id")
    op.drop_table("distribution_item")
    op.drop_table("distribution_recipient")
    with op.batch_alter_table("distribution", schema=None) as batch_op:
        batch_op.drop_index("ix_distribution_tenant_id_id")
    op.drop_table("distribution")
    op.drop_table("client_order_batch")
    with op.batch_alter_table("client_order_item", schema=None) as batch_op:
        batch_op.drop_index("ix_client_order_item_tenant_id_id")
    op.drop_table("client_order_item")
    with op.batch_alter_table("client_order", schema=None) as batch_op:
        batch_op.drop_index("ix_client_order_tenant_id_external_user_id")
        batch_op.drop_index("ix_client_order_client_id_id")
        batch_op.drop_index("ix_client_order_tenant_id_id")
    op.drop_table("client_order")
    op.drop_table("client_voucher_type")
    with op.batch_alter_table("client", schema=None) as batch_op:
        batch_op.drop_index("ix_client_tenant_id_external_client_id")
        batch_op.drop_index("ix_client_tenant_id_id")
    op.drop_table("client")
