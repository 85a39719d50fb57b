"""``voucherd deliveries`` against a real migrated database, as an operator runs it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import make_tenant
from tests.factories.vouchers import issue
from tests.support.delivery import (
    PHONE,
    TWILIO_TOKEN,
    Answer,
    Provider,
    deliver_due,
    delivery_row,
    settings_for,
    sms_settings,
)
from voucherd.cli import app
from voucherd.config import Settings
from voucherd.db.engine import Database

Run = Callable[..., Result]


@pytest.fixture
def settings(provider: Provider) -> Settings:
    return settings_for(provider)


@pytest.fixture
def cli(fresh_database: Callable[..., Database]) -> tuple[Run, Database]:
    db = fresh_database(pool_size=2)
    runner = CliRunner()
    env = {"VOUCHERD_DATABASE_URL": db.settings.database_url, "VOUCHERD_KEY_CACHE_SECONDS": "0"}

    def run(*args: str, ok: bool = True, stdin: str | None = None) -> Result:
        result = runner.invoke(app, list(args), env=env, input=stdin)
        assert (result.exit_code == 0) is ok, result.output
        return result

    return run, db


class TestDeliveriesCommand:
    def test_configure_list_and_resend(
        self, cli: tuple[Run, Database], provider: Provider, tmp_path: Path
    ) -> None:
        run, db = cli
        tenant = make_tenant(db, name="acme")
        settings_file = tmp_path / "delivery.json"
        settings_file.write_text(json.dumps({"phone_channel": "sms", "sms": sms_settings()}))

        shown = run("deliveries", "configure", "acme", str(settings_file))

        assert TWILIO_TOKEN not in shown.stdout
        assert json.loads(shown.stdout)["sms"]["auth_token"] == "****" + TWILIO_TOKEN[-4:]
        record = issue(
            db,
            tenant,
            make_campaign(db, tenant),
            delivery={"channel": "phone", "recipient": PHONE},
        )
        assert record.delivery is not None
        provider.script("sms", Answer(400, {"code": 21211, "message": "bad number"}))
        deliver_due(db)

        failed = json.loads(
            run("deliveries", "list", "--tenant", "acme", "--state", "failed", "--json").stdout
        )
        assert [d["id"] for d in failed] == [record.delivery.id]
        table = run("deliveries", "list", "--tenant", "acme").stdout
        assert record.delivery.id in table
        assert record.voucher.code not in table  # masked for the operator's screen

        resent = json.loads(
            run("deliveries", "resend", record.delivery.id, "--tenant", "acme", "--json").stdout
        )
        assert (resent["resend_of"], resent["state"]) == (record.delivery.id, "PENDING")
        deliver_due(db)
        assert delivery_row(db, resent["id"]).state == "SENT"

    def test_configure_refuses_bad_json_naming_the_field(self, cli: tuple[Run, Database]) -> None:
        run, db = cli
        make_tenant(db, name="acme")

        refused = run(
            "deliveries",
            "configure",
            "acme",
            "-",
            ok=False,
            stdin=json.dumps({"webhook": {"url": "https://x.example", "secret": "plain"}}),
        )

        assert "webhook.secret" in refused.output
        assert json.loads(run("deliveries", "settings", "acme").stdout)["webhook"] is None

    def test_a_fresh_webhook_secret(self, cli: tuple[Run, Database]) -> None:
        run, _ = cli

        secret = json.loads(run("deliveries", "new-webhook-secret").stdout)["secret"]

        assert secret.startswith("whsec_")
        assert len(secret) > 40

    def test_resend_of_an_unknown_delivery(self, cli: tuple[Run, Database]) -> None:
        run, db = cli
        make_tenant(db, name="acme")

        failed = run("deliveries", "resend", "dlv_nope", "--tenant", "acme", ok=False)

        assert "no such delivery" in failed.output
