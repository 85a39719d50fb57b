"""the console: operators, their sessions, failed sign-ins, operator events

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import voucherd.db.base

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MOMENT = voucherd.db.base.UTCDateTime
AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "console_operator",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("created_at", MOMENT(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("disabled_at", MOMENT(), nullable=True),
        sa.CheckConstraint(
            "role IN ('admin', 'manager', 'support', 'cashier')",
            name=op.f("ck_console_operator_role"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_console_operator_tenant_id_tenant")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_operator")),
        sa.UniqueConstraint("email", name=op.f("uq_console_operator_email")),
    )
    with op.batch_alter_table("console_operator", schema=None) as batch_op:
        batch_op.create_index("ix_console_operator_tenant_id_email", ["tenant_id", "email"])
    op.create_table(
        "console_session",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("operator_id", sa.String(length=32), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", MOMENT(), nullable=False),
        sa.Column("last_seen_at", MOMENT(), nullable=False),
        sa.Column("expires_at", MOMENT(), nullable=False),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["console_operator.id"],
            name=op.f("fk_console_session_operator_id_console_operator"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_console_session_tenant_id_tenant")
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_console_session")),
    )
    with op.batch_alter_table("console_session", schema=None) as batch_op:
        batch_op.create_index("ix_console_session_operator_id", ["operator_id"])
    op.create_table(
        "console_signin_failure",
        sa.Column("subject", sa.String(length=80), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_at", MOMENT(), nullable=False),
        sa.PrimaryKeyConstraint("subject", "window_start", name=op.f("pk_console_signin_failure")),
    )
    op.create_table(
        "console_event",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=True),
        sa.Column("operator_id", sa.String(length=32), nullable=True),
        sa.Column("actor", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", MOMENT(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_console_event_tenant_id_tenant")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_event")),
    )
    with op.batch_alter_table("console_event", schema=None) as batch_op:
        batch_op.create_index("ix_console_event_tenant_id_id", ["tenant_id", "id"])


def downgrade() -> None:
    with op.batch_alter_table("console_event", schema=None) as batch_op:
        batch_op.drop_index("ix_console_event_tenant_id_id")
    op.drop_table("console_event")
    op.drop_table("console_signin_failure")
    with op.batch_alter_table("console_session", schema=None) as batch_op:
        batch_op.drop_index("ix_console_session_operator_id")
    op.drop_table("console_session")
    with op.batch_alter_table("console_operator", schema=None) as batch_op:
        batch_op.drop_index("ix_console_operator_tenant_id_email")
    op.drop_table("console_operator")
