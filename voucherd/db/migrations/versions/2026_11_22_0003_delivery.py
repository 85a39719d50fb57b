"""deliveries (outbox) and their events

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import voucherd.db.base

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
DUE = "state IN ('PENDING', 'SENDING')"


def upgrade() -> None:
    op.create_table(
        "delivery",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("voucher_id", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("recipient", sa.String(length=254), nullable=True),
        sa.Column("recipient_name", sa.String(length=200), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("resend_of", sa.String(length=32), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("due_at", voucherd.db.base.UTCDateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(length=100), nullable=True),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", voucherd.db.base.UTCDateTime(), nullable=False),
        sa.Column("updated_at", voucherd.db.base.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "channel IN ('sms', 'whatsapp', 'email', 'webhook', 'none')",
            name=op.f("ck_delivery_channel"),
        ),
        sa.CheckConstraint(
            "state IN ('PENDING', 'SENDING', 'SENT', 'DELIVERED', 'FAILED')",
            name=op.f("ck_delivery_state"),
        ),
        sa.CheckConstraint(
            "origin IN ('issue', 'publication', 'request', 'resend')",
            name=op.f("ck_delivery_origin"),
        ),
        sa.CheckConstraint(
            "attempt >= 0 AND failures >= 0", name=op.f("ck_delivery_counts_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_delivery_tenant_id_tenant")
        ),
        sa.ForeignKeyConstraint(
            ["voucher_id"], ["voucher.id"], name=op.f("fk_delivery_voucher_id_voucher")
        ),
        sa.ForeignKeyConstraint(
            ["resend_of"], ["delivery.id"], name=op.f("fk_delivery_resend_of_delivery")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery")),
    )
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.create_index("ix_delivery_tenant_id_id", ["tenant_id", "id"], unique=False)
        batch_op.create_index("ix_delivery_voucher_id_id", ["voucher_id", "id"], unique=False)
        batch_op.create_index(
            "ix_delivery_tenant_id_state_id", ["tenant_id", "state", "id"], unique=False
        )
        batch_op.create_index(
            "ix_delivery_due",
            ["due_at"],
            unique=False,
            postgresql_where=sa.text(DUE),
            sqlite_where=sa.text(DUE),
        )
        batch_op.create_index(
            "ix_delivery_provider_message_id", ["provider_message_id"], unique=False
        )

    op.create_table(
        "delivery_event",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("delivery_id", sa.String(length=32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("from_state", sa.String(length=16), nullable=True),
        sa.Column("to_state", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", voucherd.db.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"], ["delivery.id"], name=op.f("fk_delivery_event_delivery_id_delivery")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_delivery_event_tenant_id_tenant")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_event")),
    )
    with op.batch_alter_table("delivery_event", schema=None) as batch_op:
        batch_op.create_index(
            "ix_delivery_event_delivery_id_id", ["delivery_id", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("delivery_event", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_event_delivery_id_id")
    op.drop_table("delivery_event")
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_provider_message_id")
        batch_op.drop_index("ix_delivery_due")
        batch_op.drop_index("ix_delivery_tenant_id_state_id")
        batch_op.drop_index("ix_delivery_voucher_id_id")
        batch_op.drop_index("ix_delivery_tenant_id_id")
    op.drop_table("delivery")
