"""the guard: shared rate and guessing counters, events of callers caught guessing

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import voucherd.db.base

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MOMENT = voucherd.db.base.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "guard_counter",
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("subject", sa.String(length=80), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("hits", sa.BigInteger(), nullable=False),
        sa.Column("last_at", MOMENT(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "subject", "window_start", name=op.f("pk_guard_counter")),
    )
    op.create_table(
        "guard_event",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=True),
        sa.Column("key_id", sa.String(length=40), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("subject", sa.String(length=80), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("created_at", MOMENT(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_guard_event_tenant_id_tenant")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guard_event")),
    )
    with op.batch_alter_table("guard_event", schema=None) as batch_op:
        batch_op.create_index(
            "ix_guard_event_tenant_id_created_at", ["tenant_id", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("guard_event", schema=None) as batch_op:
        batch_op.drop_index("ix_guard_event_tenant_id_created_at")
    op.drop_table("guard_event")
    op.drop_table("guard_counter")
