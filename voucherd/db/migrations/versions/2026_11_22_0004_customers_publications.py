"""customers and publications

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import voucherd.db.base

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
POOL = "published_count = 0 AND state = 'ACTIVE'"


def upgrade() -> None:
    op.create_table(
        "customer",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=200), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("address", sa.String(length=500), nullable=True),
        sa.Column("postcode", sa.String(length=20), nullable=True),
        sa.Column("metadata", JSON, nullable=True),
        sa.Column("created_at", voucherd.db.base.UTCDateTime(), nullable=False),
        sa.Column("updated_at", voucherd.db.base.UTCDateTime(), nullable=False),
        sa.Column("erased_at", voucherd.db.base.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_customer_tenant_id_tenant")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer")),
        sa.UniqueConstraint("tenant_id", "source_id", name=op.f("uq_customer_tenant_id_source_id")),
    )
    with op.batch_alter_table("customer", schema=None) as batch_op:
        batch_op.create_index("ix_customer_tenant_id_id", ["tenant_id", "id"], unique=False)
        batch_op.create_index("ix_customer_tenant_id_email", ["tenant_id", "email"], unique=False)
        batch_op.create_index("ix_customer_tenant_id_phone", ["tenant_id", "phone"], unique=False)

    op.create_table(
        "publication",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("campaign_id", sa.String(length=32), nullable=True),
        sa.Column("customer_id", sa.String(length=32), nullable=True),
        sa.Column("channel", sa.String(length=100), nullable=False),
        sa.Column("source_id", sa.String(length=200), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("metadata", JSON, nullable=True),
        sa.Column("actor", sa.String(length=64), nullable=True),
        sa.Column("created_at", voucherd.db.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaign.id"], name=op.f("fk_publication_campaign_id_campaign")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customer.id"], name=op.f("fk_publication_customer_id_customer")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_publication_tenant_id_tenant")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_publication")),
        sa.UniqueConstraint(
            "tenant_id", "source_id", name=op.f("uq_publication_tenant_id_source_id")
        ),
    )
    with op.batch_alter_table("publication", schema=None) as batch_op:
        batch_op.create_index("ix_publication_tenant_id_id", ["tenant_id", "id"], unique=False)
        batch_op.create_index("ix_publication_campaign_id_id", ["campaign_id", "id"], unique=False)
        batch_op.create_index("ix_publication_customer_id_id", ["customer_id", "id"], unique=False)

    op.create_table(
        "publication_voucher",
        sa.Column("publication_id", sa.String(length=32), nullable=False),
        sa.Column("voucher_id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["publication_id"],
            ["publication.id"],
            name=op.f("fk_publication_voucher_publication_id_publication"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_publication_voucher_tenant_id_tenant")
        ),
        sa.ForeignKeyConstraint(
            ["voucher_id"], ["voucher.id"], name=op.f("fk_publication_voucher_voucher_id_voucher")
        ),
        sa.PrimaryKeyConstraint(
            "publication_id", "voucher_id", name=op.f("pk_publication_voucher")
        ),
    )
    with op.batch_alter_table("publication_voucher", schema=None) as batch_op:
        batch_op.create_index("ix_publication_voucher_voucher_id", ["voucher_id"], unique=False)

    op.create_table(
        "campaign_holder",
        sa.Column("campaign_id", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("voucher_count", sa.Integer(), nullable=False),
        sa.Column("first_publication_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaign.id"], name=op.f("fk_campaign_holder_campaign_id_campaign")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customer.id"], name=op.f("fk_campaign_holder_customer_id_customer")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_campaign_holder_tenant_id_tenant")
        ),
        sa.PrimaryKeyConstraint("campaign_id", "customer_id", name=op.f("pk_campaign_holder")),
    )

    # Existing vouchers are unpublished: the server default fills them, and keeps the bulk
    # COPY mint path (vouchers/issue.py), which names its columns, unaware of the new ones.
    with op.batch_alter_table("voucher", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("published_count", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("holder_id", sa.String(length=32), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_voucher_holder_id_customer"), "customer", ["holder_id"], ["id"]
        )
        batch_op.create_index(
            "ix_voucher_pool",
            ["campaign_id", "id"],
            unique=False,
            postgresql_where=sa.text(POOL),
            sqlite_where=sa.text(POOL),
        )


def downgrade() -> None:
    with op.batch_alter_table("voucher", schema=None) as batch_op:
        batch_op.drop_index("ix_voucher_pool")
        batch_op.drop_constraint(batch_op.f("fk_voucher_holder_id_customer"), type_="foreignkey")
        batch_op.drop_column("holder_id")
        batch_op.drop_column("published_count")

    op.drop_table("campaign_holder")
    with op.batch_alter_table("publication_voucher", schema=None) as batch_op:
        batch_op.drop_index("ix_publication_voucher_voucher_id")
    op.drop_table("publication_voucher")
    with op.batch_alter_table("publication", schema=None) as batch_op:
        batch_op.drop_index("ix_publication_customer_id_id")
        batch_op.drop_index("ix_publication_campaign_id_id")
        batch_op.drop_index("ix_publication_tenant_id_id")
    op.drop_table("publication")
    with op.batch_alter_table("customer", schema=None) as batch_op:
        batch_op.drop_index("ix_customer_tenant_id_phone")
        batch_op.drop_index("ix_customer_tenant_id_email")
        batch_op.drop_index("ix_customer_tenant_id_id")
    op.drop_table("customer")
