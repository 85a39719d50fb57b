"""``voucherd import``: the file streamed straight into the database, batch by batch."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import make_tenant
from tests.support.imports import gift_rows, to_csv
from voucherd.cli import app
from voucherd.db.engine import Database
from voucherd.imports import service


def run(db: Database, *args: str) -> Any:
    env = {"VOUCHERD_DATABASE_URL": db.settings.database_url}
    return CliRunner().invoke(app, ["import", *args], env=env)


def test_imports_a_file_in_batches_and_a_rerun_imports_nothing_twice(
    fresh_database: Callable[..., Database], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "IMPORT_BATCH", 7)
    db = fresh_database(pool_size=4)
    tenant = make_tenant(db)
    campaign = make_campaign(db, tenant, max_value=10_000)
    file = tmp_path / "vouchers.csv"
    file.write_bytes(to_csv(gift_rows(40)))
    args = [str(file), "--tenant", tenant.name, "--campaign", campaign.name, "--json"]

    first = run(db, *args)
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["imported"] == 40
    again = run(db, *args)
    assert json.loads(again.stdout)["already_present"] == 40
    with db.unit_of_work(write=False) as session:
        stored = session.scalar(
            text("SELECT count(*) FROM voucher WHERE campaign_id = :c"), {"c": campaign.id}
        )
    assert stored == 40


def test_all_or_nothing_names_the_bad_row_and_imports_nothing(
    fresh_database: Callable[..., Database], tmp_path: Path
) -> None:
    db = fresh_database(pool_size=4)
    tenant = make_tenant(db)
    campaign = make_campaign(db, tenant, max_value=10_000)
    file = tmp_path / "vouchers.jsonl"
    lines = [{"code": f"J-{i}", "value": 100} for i in range(5)] + [{"code": "J-9", "value": -1}]
    file.write_text("\n".join(json.dumps(line) for line in lines))
    args = [str(file), "--tenant", tenant.name, "--campaign", campaign.id, "--all-or-nothing"]

    result = run(db, *args)

    assert result.exit_code == 1
    assert "line 6, column value" in result.output
    with db.unit_of_work(write=False) as session:
        stored = session.scalar(
            text("SELECT count(*) FROM voucher WHERE campaign_id = :c"), {"c": campaign.id}
        )
    assert stored == 0


def test_a_file_whose_header_names_no_such_column_is_refused_whole(
    fresh_database: Callable[..., Database], tmp_path: Path
) -> None:
    """The file is read in a thread of its own (batch.prepared_ahead): what it finds wrong with
    the file still reaches the command, named, and nothing is imported."""
    db = fresh_database(pool_size=4)
    tenant = make_tenant(db)
    campaign = make_campaign(db, tenant, max_value=10_000)
    file = tmp_path / "vouchers.csv"
    file.write_text("code,value,colour\nH-1,100,red\n")

    result = run(db, str(file), "--tenant", tenant.name, "--campaign", campaign.id)

    assert result.exit_code != 0
    assert "line 1, column 'colour': no such column" in result.output
    with db.unit_of_work(write=False) as session:
        stored = session.scalar(
            text("SELECT count(*) FROM voucher WHERE campaign_id = :c"), {"c": campaign.id}
        )
    assert stored == 0
