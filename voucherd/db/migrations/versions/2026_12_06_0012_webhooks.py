"""event webhooks: endpoints, subscriptions, the message outbox and its attempts, and the
triggers that write a message for every event a subscribed endpoint wants

Revision ID: 0012
Revises: 0010 (the integrator chains it after 0011 imports when that lands first)
Create Date: 2026-12-06

Why triggers: every event this feature sends is already a row the domain writes in the event's
own transaction (a ``voucher_event``, a ``publication_voucher`` link, a delivery or operation
reaching its final state). A trigger turns that row into one message per subscribed endpoint
with ``INSERT ... SELECT`` from ``webhook_subscription`` in the same statement: no extra round
trip on the issue and redeem hot paths, no code path that can forget to emit, and for a tenant
without endpoints the cost is one probe of an index holding nothing for it.

A later migration that makes SQLite recreate one of the four source tables (``batch_alter_table``
with a changed column) drops its trigger there: it must create the trigger again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import voucherd.db.base

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_endpoint",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("secret", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("failing_since", voucherd.db.base.UTCDateTime(), nullable=True),
        sa.Column("created_at", voucherd.db.base.UTCDateTime(), nullable=False),
        sa.Column("updated_at", voucherd.db.base.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "state IN ('ENABLED', 'DISABLED')", name=op.f("ck_webhook_endpoint_state")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_webhook_endpoint_tenant_id_tenant")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoint")),
    )
    with op.batch_alter_table("webhook_endpoint", schema=None) as batch_op:
        batch_op.create_index("ix_webhook_endpoint_tenant_id_id", ["tenant_id", "id"], unique=False)

    op.create_table(
        "webhook_message",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("endpoint_id", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=80), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("occurred_at", voucherd.db.base.UTCDateTime(), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("ordering_key", sa.String(length=64), nullable=False),
        sa.Column("source_id", sa.BigInteger(), nullable=True),
        sa.Column("voucher_state", sa.String(length=16), nullable=True),
        sa.Column("voucher_balance", sa.BigInteger(), nullable=True),
        sa.Column("voucher_redeemed_quantity", sa.Integer(), nullable=True),
        sa.Column("voucher_amount", sa.BigInteger(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("due_at", voucherd.db.base.UTCDateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(length=100), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", voucherd.db.base.UTCDateTime(), nullable=False),
        sa.Column("updated_at", voucherd.db.base.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "state IN ('PENDING', 'SENDING', 'DELIVERED', 'FAILED')",
            name=op.f("ck_webhook_message_state"),
        ),
        sa.CheckConstraint(
            "attempt >= 0 AND failures >= 0", name=op.f("ck_webhook_message_counts_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoint.id"],
            name=op.f("fk_webhook_message_endpoint_id_webhook_endpoint"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_webhook_message_tenant_id_tenant")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_message")),
        sa.UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_message_endpoint_event"),
    )
    with op.batch_alter_table("webhook_message", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_message_due",
            ["due_at"],
            unique=False,
            postgresql_where=sa.text("state IN ('PENDING', 'SENDING')"),
            sqlite_where=sa.text("state IN ('PENDING', 'SENDING')"),
        )
        batch_op.create_index(
            "ix_webhook_message_endpoint_id_id", ["endpoint_id", "id"], unique=False
        )
        batch_op.create_index(
            "ix_webhook_message_unfinished",
            ["endpoint_id", "ordering_key", "id"],
            unique=False,
            postgresql_where=sa.text("state IN ('PENDING', 'SENDING')"),
            sqlite_where=sa.text("state IN ('PENDING', 'SENDING')"),
        )

    op.create_table(
        "webhook_subscription",
        sa.Column("endpoint_id", sa.String(length=32), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoint.id"],
            name=op.f("fk_webhook_subscription_endpoint_id_webhook_endpoint"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_webhook_subscription_tenant_id_tenant")
        ),
        sa.PrimaryKeyConstraint("endpoint_id", "event_type", name=op.f("pk_webhook_subscription")),
    )
    with op.batch_alter_table("webhook_subscription", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_subscription_tenant_id_event_type",
            ["tenant_id", "event_type"],
            unique=False,
        )

    op.create_table(
        "webhook_attempt",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column(
            "message_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("worker", sa.String(length=100), nullable=True),
        sa.Column("created_at", voucherd.db.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["webhook_message.id"],
            name=op.f("fk_webhook_attempt_message_id_webhook_message"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_webhook_attempt_tenant_id_tenant")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempt")),
    )
    with op.batch_alter_table("webhook_attempt", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_attempt_message_id_id", ["message_id", "id"], unique=False
        )

    _create_triggers()


def downgrade() -> None:
    _drop_triggers()
    with op.batch_alter_table("webhook_attempt", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_attempt_message_id_id")

    op.drop_table("webhook_attempt")
    with op.batch_alter_table("webhook_subscription", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_subscription_tenant_id_event_type")

    op.drop_table("webhook_subscription")
    with op.batch_alter_table("webhook_message", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_webhook_message_unfinished",
            postgresql_where=sa.text("state IN ('PENDING', 'SENDING')"),
            sqlite_where=sa.text("state IN ('PENDING', 'SENDING')"),
        )
        batch_op.drop_index("ix_webhook_message_endpoint_id_id")
        batch_op.drop_index(
            "ix_webhook_message_due",
            postgresql_where=sa.text("state IN ('PENDING', 'SENDING')"),
            sqlite_where=sa.text("state IN ('PENDING', 'SENDING')"),
        )

    op.drop_table("webhook_message")
    with op.batch_alter_table("webhook_endpoint", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_endpoint_tenant_id_id")

    op.drop_table("webhook_endpoint")


_COLUMNS = (
    "tenant_id, endpoint_id, event_id, event_type, occurred_at, subject_id, ordering_key, "
    "source_id, voucher_state, voucher_balance, voucher_redeemed_quantity, voucher_amount, "
    "state, attempt, failures, due_at, created_at, updated_at"
)
_SUBSCRIBED = (
    "FROM webhook_subscription s "
    "JOIN webhook_endpoint e ON e.id = s.endpoint_id AND e.state = 'ENABLED' "
)


def _voucher_events(postgres: bool) -> str:
    redemption = (
        "NEW.data ->> 'redemption_id'" if postgres else "json_extract(NEW.data, '$.redemption_id')"
    )
    return (
        f"INSERT INTO webhook_message ({_COLUMNS}) "
        "SELECT NEW.tenant_id, s.endpoint_id, 'evt_v' || NEW.id, s.event_type, NEW.created_at, "
        f"CASE WHEN NEW.kind = 'rolled_back' THEN {redemption} ELSE NEW.voucher_id END, "
        "NEW.voucher_id, NEW.id, v.state, v.balance, v.redeemed_quantity, v.amount, "
        "'PENDING', 0, 0, NEW.created_at, NEW.created_at, NEW.created_at "
        f"{_SUBSCRIBED}LEFT JOIN voucher v ON v.id = NEW.voucher_id "
        "WHERE s.tenant_id = NEW.tenant_id AND s.event_type = CASE NEW.kind "
        "WHEN 'rolled_back' THEN 'redemption.rolled_back' ELSE 'voucher.' || NEW.kind END"
    )


# A publication of many codes writes one voucher_event; each link is one voucher published.
_PUBLISHED = (
    f"INSERT INTO webhook_message ({_COLUMNS}) "
    "SELECT NEW.tenant_id, s.endpoint_id, 'evt_p' || NEW.publication_id || '_' || NEW.voucher_id, "
    "s.event_type, v.updated_at, NEW.voucher_id, NEW.voucher_id, NULL, "
    "v.state, v.balance, v.redeemed_quantity, v.amount, "
    "'PENDING', 0, 0, v.updated_at, v.updated_at, v.updated_at "
    f"{_SUBSCRIBED}JOIN voucher v ON v.id = NEW.voucher_id "
    "WHERE s.tenant_id = NEW.tenant_id AND s.event_type = 'voucher.published'"
)
# The same, for every link one statement made (PostgreSQL's statement trigger; see below).
_PUBLISHED_SET = (
    f"INSERT INTO webhook_message ({_COLUMNS}) "
    "SELECT n.tenant_id, s.endpoint_id, 'evt_p' || n.publication_id || '_' || n.voucher_id, "
    "s.event_type, v.updated_at, n.voucher_id, n.voucher_id, NULL, "
    "v.state, v.balance, v.redeemed_quantity, v.amount, "
    "'PENDING', 0, 0, v.updated_at, v.updated_at, v.updated_at "
    "FROM new_links n "
    "JOIN webhook_subscription s ON s.tenant_id = n.tenant_id "
    "AND s.event_type = 'voucher.published' "
    "JOIN webhook_endpoint e ON e.id = s.endpoint_id AND e.state = 'ENABLED' "
    "JOIN voucher v ON v.id = n.voucher_id"
)
_DELIVERY_FAILED = (
    f"INSERT INTO webhook_message ({_COLUMNS}) "
    "SELECT NEW.tenant_id, s.endpoint_id, 'evt_d' || NEW.id, s.event_type, NEW.updated_at, "
    "NEW.id, NEW.voucher_id, NULL, NULL, NULL, NULL, NULL, "
    "'PENDING', 0, 0, NEW.updated_at, NEW.updated_at, NEW.updated_at "
    f"{_SUBSCRIBED}"
    "WHERE s.tenant_id = NEW.tenant_id AND s.event_type = 'delivery.failed'"
)
_OPERATION_FINISHED = (
    f"INSERT INTO webhook_message ({_COLUMNS}) "
    "SELECT NEW.tenant_id, s.endpoint_id, 'evt_o' || NEW.id, s.event_type, NEW.updated_at, "
    "NEW.id, NEW.id, NULL, NULL, NULL, NULL, NULL, "
    "'PENDING', 0, 0, NEW.updated_at, NEW.updated_at, NEW.updated_at "
    f"{_SUBSCRIBED}"
    "WHERE s.tenant_id = NEW.tenant_id AND s.event_type = CASE "
    "WHEN NEW.status = 'Failed' THEN 'operation.failed' "
    "WHEN NEW.kind = 'client_order' THEN 'order.completed' END"
)
_VOUCHER_KINDS = (
    "'issued', 'redeemed', 'rolled_back', 'disabled', 'enabled', 'cancelled', 'balance_adjusted'"
)


def _triggers(postgres: bool) -> list[tuple[str, str, str, str]]:
    """(name, event on table, condition, statement) of each trigger."""
    return [
        (
            "webhook_voucher_event",
            "INSERT ON voucher_event",
            f"NEW.voucher_id IS NOT NULL AND NEW.kind IN ({_VOUCHER_KINDS})",
            _voucher_events(postgres),
        ),
        ("webhook_published", "INSERT ON publication_voucher", "true", _PUBLISHED),
        (
            "webhook_delivery_failed",
            "UPDATE OF state ON delivery",
            "NEW.state = 'FAILED' AND OLD.state <> 'FAILED'",
            _DELIVERY_FAILED,
        ),
        (
            "webhook_operation_finished",
            "UPDATE OF status ON operation",
            "NEW.status <> OLD.status AND NEW.status IN ('Failed', 'Completed')",
            _OPERATION_FINISHED,
        ),
    ]


def _create_triggers() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, event, condition, statement in _triggers(postgres):
        if postgres and name == "webhook_published":
            # A million-voucher order links a million codes in one COPY: a row trigger would
            # run its INSERT ... SELECT a million times (about 30 s) even for a tenant without
            # endpoints. Once per statement over the new rows, and only if anyone subscribes.
            op.execute(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF EXISTS (SELECT 1 FROM webhook_subscription "
                "WHERE event_type = 'voucher.published') THEN "
                f"{_PUBLISHED_SET}; END IF; RETURN NULL; END $$"
            )
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} REFERENCING NEW TABLE AS new_links "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
            )
        elif postgres:
            op.execute(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
                f"BEGIN {statement}; RETURN NULL; END $$"
            )
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} FOR EACH ROW "
                f"WHEN ({condition}) EXECUTE FUNCTION {name}()"
            )
        else:
            condition = condition.replace("true", "1")
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} FOR EACH ROW "
                f"WHEN {condition} BEGIN {statement}; END"
            )


def _drop_triggers() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, event, _, _ in _triggers(postgres):
        table = event.rsplit(" ON ", 1)[1]
        if postgres:
            op.execute(f"DROP TRIGGER {name} ON {table}")
            op.execute(f"DROP FUNCTION {name}()")
        else:
            op.execute(f"DROP TRIGGER {name}")
