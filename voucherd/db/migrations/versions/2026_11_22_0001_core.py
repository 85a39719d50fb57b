"""Core schema: tenants, keys, campaigns, vouchers, ledger, events, redemptions, idempotency.

Revision ID: 0001
Revises:
Create Date: 2026-11-22 05:23:33.696764
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import voucherd.db.base

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tenant",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("weekly_value_limit", sa.BigInteger(), nullable=True),
        sa.Column(
            "settings",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", voucherd.db.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenant")),
        sa.UniqueConstraint("name", name=op.f("uq_tenant_name")),
    )
    op.create_table(
        "api_key",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=True),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.String(length=100), nullable=False),
        sa.Column("created_at", voucherd.db.base.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", voucherd.db.base.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_api_key_tenant_id_tenant")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key")),
    )
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_key_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "campaign",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("default_value", sa.BigInteger(), nullable=True),
        sa.Column("max_value", sa.BigInteger(), nullable=True),
        sa.Column(
            "discount",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "code_config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("start_date", voucherd.db.base.UTCDateTime(), nullable=True),
        sa.Column("expiration_date", voucherd.db.base.UTCDateTime(), nullable=True),
        sa.Column("lifetime_days", sa.Integer(), nullable=True),
        sa.Column(
            "validity_timeframe",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "validity_day_of_week",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "validity_hours",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("redemption_quantity", sa.Integer(), nullable=True),
        sa.Column("per_customer_limit", sa.Integer(), nullable=True),
        sa.Column("budget", sa.BigInteger(), nullable=True),
        sa.Column("issued_value", sa.BigInteger(), nullable=False),
        sa.Column("category", sa.String(length=100), nullable=True),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("created_at", voucherd.db.base.UTCDateTime(), nullable=False),
        sa.Column("updated_at", voucherd.db.base.UTCDateTime(), nullable=False),
        sa.CheckConstraint("mode IN ('STATIC', 'AUTO_UPDATE')", name=op.f("ck_campaign_mode")),
        sa.CheckConstraint(
            "type IN ('GIFT', 'CASH', 'DISCOUNT', 'LOYALTY')", name=op.f("ck_campaign_type")
        ),
        sa.CheckConstraint(
            "budget IS NULL OR issued_value <= budget", name=op.f("ck_campaign_within_budget")
        ),
        sa.CheckConstraint("issued_value >= 0", name=op.f("ck_campaign_issued_value_not_negative")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_campaign_tenant_id_tenant")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_campaign_tenant_id_name")),
    )
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_campaign_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "idempotency_record",
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("resource_type", sa.String(length=32), nullable=True),
        sa.Column("resource_id", sa.String(length=32), nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", voucherd.db.base.UTCDateTime(), nullable=False),
        sa.Column("expires_at", voucherd.db.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_idempotency_record_tenant_id_tenant")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "key", name=op.f("pk_idempotency_record")),
    )
    with op.batch_alter_table("idempotency_record", schema=None) as batch_op:
        batch_op.create_index("ix_idempotency_record_expires_at", ["expires_at"], unique=False)

    op.create_table(
        "issued_value_bucket",
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("hour", voucherd.db.base.UTCDateTime(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_issued_value_bucket_tenant_id_tenant")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "hour", name=op.f("pk_issued_value_bucket")),
    )
    op.create_table(
        "campaign_customer",
        sa.Column("campaign_id", sa.String(length=32), nullable=False),
        sa.Column("customer_ref", sa.String(length=200), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("issued_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaign.id"], name=op.f("fk_campaign_customer_campaign_id_campaign")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_campaign_customer_tenant_id_tenant")
        ),
        sa.PrimaryKeyConstraint("campaign_id", "customer_ref", name=op.f("pk_campaign_customer")),
    )
    op.create_table(
        "voucher",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("campaign_id", sa.String(length=32), nullable=False),
        sa.Column("code", sa.String(length=100), nullable=False),
        sa.Column("public_token", sa.String(length=32), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("balance", sa.BigInteger(), nullable=True),
        sa.Column("redemption_quantity", sa.Integer(), nullable=True),
        sa.Column("redeemed_quantity", sa.Integer(), nullable=False),
        sa.Column("start_date", voucherd.db.base.UTCDateTime(), nullable=True),
        sa.Column("expiration_date", voucherd.db.base.UTCDateTime(), nullable=True),
        sa.Column("customer_ref", sa.String(length=200), nullable=True),
        sa.Column("holder_name", sa.String(length=200), nullable=True),
        sa.Column("holder_address", sa.String(length=500), nullable=True),
        sa.Column("holder_postcode", sa.String(length=20), nullable=True),
        sa.Column("category", sa.String(length=100), nullable=True),
        sa.Column("additional_info", sa.Text(), nullable=True),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("created_at", voucherd.db.base.UTCDateTime(), nullable=False),
        sa.Column("updated_at", voucherd.db.base.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "state IN ('ACTIVE', 'DISABLED', 'REDEEMED', 'CANCELLED')",
            name=op.f("ck_voucher_state"),
        ),
        sa.CheckConstraint(
            "balance IS NULL OR balance >= 0", name=op.f("ck_voucher_balance_not_negative")
        ),
        sa.CheckConstraint(
            "redeemed_quantity >= 0", name=op.f("ck_voucher_redeemed_quantity_not_negative")
        ),
        sa.CheckConstraint(
            "redemption_quantity IS NULL OR redeemed_quantity <= redemption_quantity",
            name=op.f("ck_voucher_redeemed_within_quantity"),
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaign.id"], name=op.f("fk_voucher_campaign_id_campaign")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_voucher_tenant_id_tenant")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voucher")),
        sa.UniqueConstraint("code", name=op.f("uq_voucher_code")),
        sa.UniqueConstraint("public_token", name=op.f("uq_voucher_public_token")),
    )
    with op.batch_alter_table("voucher", schema=None) as batch_op:
        batch_op.create_index("ix_voucher_campaign_id_id", ["campaign_id", "id"], unique=False)
        batch_op.create_index(
            "ix_voucher_tenant_id_customer_ref", ["tenant_id", "customer_ref"], unique=False
        )
        batch_op.create_index("ix_voucher_tenant_id_id", ["tenant_id", "id"], unique=False)

    op.create_table(
        "ledger_entry",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("voucher_id", sa.String(length=32), nullable=False),
        sa.Column("delta", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("redemption_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", voucherd.db.base.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('ISSUE', 'REDEMPTION', 'ROLLBACK', 'ADJUSTMENT')",
            name=op.f("ck_ledger_entry_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_ledger_entry_tenant_id_tenant")
        ),
        sa.ForeignKeyConstraint(
            ["voucher_id"], ["voucher.id"], name=op.f("fk_ledger_entry_voucher_id_voucher")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entry")),
    )
    with op.batch_alter_table("ledger_entry", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_entry_voucher_id", ["voucher_id"], unique=False)

    op.create_table(
        "redemption",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("voucher_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("order_amount", sa.BigInteger(), nullable=True),
        sa.Column("order_reference", sa.String(length=200), nullable=True),
        sa.Column("merchant_ref", sa.String(length=200), nullable=True),
        sa.Column("store_ref", sa.String(length=200), nullable=True),
        sa.Column("customer_ref", sa.String(length=200), nullable=True),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("created_at", voucherd.db.base.UTCDateTime(), nullable=False),
        sa.Column("rollback_id", sa.String(length=32), nullable=True),
        sa.Column("rolled_back_at", voucherd.db.base.UTCDateTime(), nullable=True),
        sa.Column("rollback_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('SUCCEEDED', 'ROLLED_BACK')", name=op.f("ck_redemption_status")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_redemption_tenant_id_tenant")
        ),
        sa.ForeignKeyConstraint(
            ["voucher_id"], ["voucher.id"], name=op.f("fk_redemption_voucher_id_voucher")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redemption")),
        sa.UniqueConstraint("rollback_id", name=op.f("uq_redemption_rollback_id")),
    )
    with op.batch_alter_table("redemption", schema=None) as batch_op:
        batch_op.create_index("ix_redemption_tenant_id_id", ["tenant_id", "id"], unique=False)
        batch_op.create_index("ix_redemption_voucher_id_id", ["voucher_id", "id"], unique=False)

    op.create_table(
        "voucher_event",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("voucher_id", sa.String(length=32), nullable=True),
        sa.Column("campaign_id", sa.String(length=32), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("created_at", voucherd.db.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaign.id"], name=op.f("fk_voucher_event_campaign_id_campaign")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_voucher_event_tenant_id_tenant")
        ),
        sa.ForeignKeyConstraint(
            ["voucher_id"], ["voucher.id"], name=op.f("fk_voucher_event_voucher_id_voucher")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voucher_event")),
    )
    with op.batch_alter_table("voucher_event", schema=None) as batch_op:
        batch_op.create_index("ix_voucher_event_voucher_id_id", ["voucher_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("voucher_event", schema=None) as batch_op:
        batch_op.drop_index("ix_voucher_event_voucher_id_id")

    op.drop_table("voucher_event")
    with op.batch_alter_table("redemption", schema=None) as batch_op:
        batch_op.drop_index("ix_redemption_voucher_id_id")
        batch_op.drop_index("ix_redemption_tenant_id_id")

    op.drop_table("redemption")
    with op.batch_alter_table("ledger_entry", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_entry_voucher_id")

    op.drop_table("ledger_entry")
    with op.batch_alter_table("voucher", schema=None) as batch_op:
        batch_op.drop_index("ix_voucher_tenant_id_id")
        batch_op.drop_index("ix_voucher_tenant_id_customer_ref")
        batch_op.drop_index("ix_voucher_campaign_id_id")

    op.drop_table("voucher")
    op.drop_table("campaign_customer")
    op.drop_table("issued_value_bucket")
    with op.batch_alter_table("idempotency_record", schema=None) as batch_op:
        batch_op.drop_index("ix_idempotency_record_expires_at")

    op.drop_table("idempotency_record")
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_campaign_tenant_id"))

    op.drop_table("campaign")
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_key_tenant_id"))

    op.drop_table("api_key")
    op.drop_table("tenant")
