"""core rules the vendor dialects need: a delivery's own message text, campaigns that deliver

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message", sa.Text(), nullable=True))
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.add_column(sa.Column("delivery_channel", sa.String(length=16), nullable=True))
        batch_op.create_check_constraint(
            op.f("ck_campaign_delivery_channel"), "delivery_channel IN ('phone', 'email')"
        )


def downgrade() -> None:
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_campaign_delivery_channel"), type_="check")
        batch_op.drop_column("delivery_channel")
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_column("message")
