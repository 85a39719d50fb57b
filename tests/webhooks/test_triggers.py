"""Every trigger that turns a domain row into webhook messages exists after ``alembic upgrade
head``, on its table: a later migration that makes SQLite rebuild one of those tables
(``batch_alter_table``) silently drops its trigger, and this fails CI until it makes it again."""

from __future__ import annotations

from sqlalchemy import Engine, text

EXPECTED = {
    "webhook_voucher_event": "voucher_event",
    "webhook_published": "publication_voucher",
    "webhook_delivery_failed": "delivery",
    "webhook_operation_finished": "operation",
}


def triggers(engine: Engine) -> dict[str, str]:
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            rows = connection.execute(
                text("SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'")
            )
        else:
            rows = connection.execute(
                text(
                    "SELECT t.tgname, c.relname FROM pg_trigger t "
                    "JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal"
                )
            )
        return {str(name): str(table) for name, table in rows}


def test_every_webhook_trigger_exists_on_its_table(engine: Engine) -> None:
    found = triggers(engine)
    assert {name: found.get(name) for name in EXPECTED} == EXPECTED


def test_on_sqlite_publications_probe_the_subscriptions_before_the_insert(engine: Engine) -> None:
    """0013: a tenant without a ``voucher.published`` subscription skips the trigger's body."""
    if engine.dialect.name != "sqlite":
        return  # PostgreSQL's is a statement trigger that checks first (0012)
    with engine.connect() as connection:
        sql = connection.execute(
            text("SELECT sql FROM sqlite_master WHERE name = 'webhook_published'")
        ).scalar_one()
    assert "WHEN EXISTS (SELECT 1 FROM webhook_subscription" in sql


def test_voucher_events_probe_the_subscriptions_before_the_insert(engine: Engine) -> None:
    """0014: an event of a type the tenant does not subscribe to skips the trigger's INSERT."""
    probe = "EXISTS (SELECT 1 FROM webhook_subscription WHERE tenant_id = NEW.tenant_id"
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            sql = connection.execute(
                text("SELECT sql FROM sqlite_master WHERE name = 'webhook_voucher_event'")
            ).scalar_one()
            assert f"AND {probe}" in sql.partition(" BEGIN ")[0]  # in the WHEN
        else:
            body = connection.execute(
                text("SELECT prosrc FROM pg_proc WHERE proname = 'webhook_voucher_event'")
            ).scalar_one()
            assert body.strip().startswith(f"BEGIN IF {probe}")
            assert "INSERT INTO webhook_message" in body
