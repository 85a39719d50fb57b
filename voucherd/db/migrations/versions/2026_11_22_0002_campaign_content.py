"""campaign content: voucher page help and store finder, locale, message templates

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.add_column(sa.Column("help_text", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("store_finder_url", sa.String(length=500), nullable=True))
        batch_op.add_column(
            sa.Column("locale", sa.String(length=16), server_default="en", nullable=False)
        )
        batch_op.add_column(sa.Column("message_templates", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.drop_column("message_templates")
        batch_op.drop_column("locale")
        batch_op.drop_column("store_finder_url")
        batch_op.drop_column("help_text")
