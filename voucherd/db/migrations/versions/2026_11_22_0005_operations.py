"""long-running operations and their stored results

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import voucherd.db.base

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "operation",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("token", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=True),
        sa.Column("parameters", JSON, nullable=False),
        sa.Column("done", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=True),
        sa.Column("checkpoint", JSON, nullable=True),
        sa.Column("result", JSON, nullable=True),
        sa.Column("entity_type", sa.String(length=40), nullable=True),
        sa.Column("entity_id", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("run_after", voucherd.db.base.UTCDateTime(), nullable=False),
        sa.Column("leased_by", sa.String(length=64), nullable=True),
        sa.Column("lease_token", sa.String(length=32), nullable=True),
        sa.Column("lease_expires_at", voucherd.db.base.UTCDateTime(), nullable=True),
        sa.Column("created_at", voucherd.db.base.UTCDateTime(), nullable=False),
        sa.Column("updated_at", voucherd.db.base.UTCDateTime(), nullable=False),
        sa.Column("finished_at", voucherd.db.base.UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "status IN ('Processing', 'Completed', 'Failed')", name=op.f("ck_operation_status")
        ),
        sa.CheckConstraint("done >= 0", name=op.f("ck_operation_done_not_negative")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_operation_tenant_id_tenant")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operation")),
        sa.UniqueConstraint("token", name=op.f("uq_operation_token")),
    )
    with op.batch_alter_table("operation", schema=None) as batch_op:
        batch_op.create_index("ix_operation_tenant_id_id", ["tenant_id", "id"], unique=False)
        batch_op.create_index(
            "ix_operation_status_run_after", ["status", "run_after"], unique=False
        )

    op.create_table(
        "operation_result_chunk",
        sa.Column("operation_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["operation_id"],
            ["operation.id"],
            name=op.f("fk_operation_result_chunk_operation_id_operation"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_operation_result_chunk_tenant_id_tenant")
        ),
        sa.PrimaryKeyConstraint("operation_id", "seq", name=op.f("pk_operation_result_chunk")),
    )


def downgrade() -> None:
    op.drop_table("operation_result_chunk")
    with op.batch_alter_table("operation", schema=None) as batch_op:
        batch_op.drop_index("ix_operation_status_run_after")
        batch_op.drop_index("ix_operation_tenant_id_id")

    op.drop_table("operation")
