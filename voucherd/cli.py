"""The ``voucherd`` command: serve, migrate, tenants, keys, and each feature's sub-commands."""

from __future__ import annotations

import gc
import json
import sys
from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.console import Console

from voucherd.api.terminal import fail, rows_table, show
from voucherd.campaigns.cli import campaigns
from voucherd.composition import JOBS, open_database
from voucherd.config import Settings, load_settings
from voucherd.console.cli import operators
from voucherd.customers.cli import customers
from voucherd.db.commands import database
from voucherd.db.engine import Database
from voucherd.db.migrate import upgrade
from voucherd.delivery.cli import deliveries
from voucherd.demo import demo
from voucherd.errors import DomainError
from voucherd.exports.cli import export
from voucherd.imports.cli import import_vouchers
from voucherd.orders.cli import orders
from voucherd.publications.cli import publications
from voucherd.redemptions.cli import redemptions
from voucherd.vouchers.cli import vouchers
from voucherd.webhooks.cli import webhooks

app = typer.Typer(help="voucherd: a self-hosted voucher platform.", no_args_is_help=True)
tenants = typer.Typer(help="Tenants: the businesses this deployment serves.", no_args_is_help=True)
keys = typer.Typer(help="API keys: one credential for every API face.", no_args_is_help=True)
app.add_typer(tenants, name="tenants")
app.add_typer(keys, name="keys")
# What an operator reads, one sub-app per feature (voucherd/<feature>/cli.py).
app.add_typer(campaigns, name="campaigns")
app.add_typer(vouchers, name="vouchers")
app.add_typer(redemptions, name="redemptions")
app.add_typer(customers, name="customers")
app.add_typer(publications, name="publications")
app.add_typer(orders, name="orders")
app.add_typer(deliveries, name="deliveries")
app.add_typer(webhooks, name="webhooks")
guard = typer.Typer(help="The guard: callers caught guessing codes.", no_args_is_help=True)
app.add_typer(guard, name="guard")
app.add_typer(operators, name="operators")
app.command()(export)
app.command("import")(import_vouchers)
app.command()(demo)
console = Console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


@app.callback()
def _root(ctx: typer.Context) -> None:
    # Every sub-command, the features' own (deliveries, export) included, opens its database
    # through the opener it finds here, so none of them imports this module or copies it.
    if ctx.obj is None:
        ctx.obj = open_database


def _print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, default=str) + "\n")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Default: VOUCHERD_HOST or 127.0.0.1")] = None,
    port: Annotated[int | None, typer.Option(help="Default: VOUCHERD_PORT or 8000")] = None,
    workers: Annotated[int, typer.Option(min=1, help="HTTP worker processes")] = 1,
    no_worker: Annotated[
        bool,
        typer.Option(
            "--no-worker",
            help="Do not run a delivery/operations worker in the API process; run `voucherd "
            "worker` processes instead (the production shape on PostgreSQL).",
        ),
    ] = False,
) -> None:
    """Apply migrations and serve the API (with an in-process worker unless --no-worker)."""
    import os
    import shutil
    import tempfile

    import uvicorn

    from voucherd.observability.logs import configure_logging
    from voucherd.observability.metrics import MULTIPROC_ENV

    # uvicorn builds the app from the environment (also in its worker processes).
    os.environ["VOUCHERD_IN_PROCESS_WORKER"] = "false" if no_worker else "true"
    # The options go through the environment too, so the public base URL (unless set) follows
    # the address actually served, in this process and in uvicorn's.
    os.environ.update(
        {f"VOUCHERD_{k}": str(v) for k, v in (("HOST", host), ("PORT", port)) if v is not None}
    )
    settings: Settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    # Several processes add their counters up through files in one directory (see
    # voucherd.observability); set before uvicorn spawns them, which import prometheus-client anew.
    own_metrics_dir = None
    if workers > 1 and not os.environ.get(MULTIPROC_ENV):
        own_metrics_dir = os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="voucherd-metrics-")
    db = Database.from_settings(settings)
    upgrade(db.engine)
    db.dispose()
    loop, http = _event_loop_and_parser()
    console.print(
        f"voucherd on http://{host or settings.host}:{port or settings.port} "
        f"({db.engine.dialect.name}; uvicorn, {workers} process{'es' if workers > 1 else ''}, "
        f"{loop} + {http}); console at {settings.public_base_url}/console",
        highlight=False,
        soft_wrap=True,  # a URL cut in two by the terminal's width cannot be clicked or copied
    )
    if (loop, http) != ("uvloop", "httptools"):
        console.print(
            "[yellow]uvloop or httptools is missing: the server spends about 4x the CPU per "
            "request on HTTP (pip install 'uvicorn[standard]')[/yellow]",
            highlight=False,
        )
    console.print(
        f"links in pages and messages use {settings.public_base_url}",
        highlight=False,
        soft_wrap=True,
    )
    try:
        uvicorn.run(
            "voucherd.cli:served_app",
            factory=True,
            host=host or settings.host,
            port=port or settings.port,
            workers=workers,
            log_level=settings.log_level.lower(),
            loop=loop,
            http=http,
            # Our handler formats uvicorn's records too; the access line is ours (route template,
            # request id, tenant), uvicorn's would print the raw path with its voucher codes.
            log_config=None,
            access_log=False,
            # uvicorn's supervisor kills a child that misses a health ping for 5 s; on a busy
            # machine a child still importing or working through a burst missed it and was
            # restarted, dropping its connections. A hung child is still replaced, later.
            timeout_worker_healthcheck=30,
        )
    finally:
        if own_metrics_dir is not None:
            shutil.rmtree(own_metrics_dir, ignore_errors=True)


def _event_loop_and_parser() -> tuple[str, str]:
    """uvloop and httptools where installed (``uvicorn[standard]`` brings both where they build),
    named rather than left to uvicorn's "auto", so ``serve`` can say which it runs.

    Measured per request on a bare ASGI app, 2 processes, 16 connections (bench/README.md,
    "The server"): uvicorn with uvloop + httptools 94-113 µs of server CPU, granian's ASGI
    interface 211-294 µs, uvicorn on asyncio + h11 426-543 µs.
    """
    from importlib.util import find_spec

    loop = "uvloop" if find_spec("uvloop") else "asyncio"
    http = "httptools" if find_spec("httptools") else "h11"
    return loop, http


def _freeze_what_lives_forever() -> None:
    """Move every object alive now (modules, the app, its routes and models: ~200,000 of them)
    out of the collector's reach. They live as long as the process, and a full collection
    walking them held the GIL for 150-250 ms of CPU per process (measured), stalling every
    request in flight; after the freeze a full collection walks only what came later. The
    collection first, so no garbage of the start-up is frozen with them."""
    gc.collect()
    gc.freeze()


def served_app() -> Any:
    """The app as each uvicorn process builds it: logging set up first, in that process."""
    from voucherd.app import create_app
    from voucherd.observability.logs import configure_logging

    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    built = create_app(settings)
    _freeze_what_lives_forever()
    return built


@app.command()
def worker(
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Serve this process's Prometheus metrics (delivery outcomes) on "
            "http://VOUCHERD_HOST:PORT/metrics. Default: VOUCHERD_WORKER_METRICS_PORT, or none.",
        ),
    ] = None,
) -> None:
    """Run a worker: send deliveries, run operations. Stops cleanly on SIGTERM or Ctrl-C."""
    from prometheus_client import start_http_server

    from voucherd.db.migrate import is_current
    from voucherd.observability.logs import configure_logging
    from voucherd.worker.loop import run_until_signalled

    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    port = metrics_port or settings.worker_metrics_port
    if port is not None:
        start_http_server(port, addr=settings.host)
    db = Database.from_settings(settings)
    try:
        if not is_current(db.engine):
            console.print("[red]error:[/red] the database is not migrated; run `voucherd migrate`")
            raise typer.Exit(1)
        console.print(f"voucherd worker ({db.engine.dialect.name}); SIGTERM stops it cleanly")
        _freeze_what_lives_forever()
        run_until_signalled(db, JOBS)
    finally:
        db.dispose()


@app.command()
def migrate(
    ctx: typer.Context,
) -> None:
    """Bring the database schema up to date."""
    with database(ctx):
        pass
    console.print("database is at the newest migration")


@tenants.command("create")
def tenants_create(
    ctx: typer.Context,
    name: str,
    weekly_value_limit: Annotated[
        int | None, typer.Option(help="Most value issued in any 7 days, minor units")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a tenant."""
    from voucherd.tenants.service import create_tenant

    try:
        with database(ctx) as db:
            tenant = create_tenant(db, name, weekly_value_limit=weekly_value_limit)
    except DomainError as exc:
        fail(exc)
        return
    if as_json:
        _print_json(asdict(tenant))
    else:
        console.print(f"tenant [bold]{tenant.name}[/bold] ({tenant.id})")


@tenants.command("list")
def tenants_list(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List tenants."""
    from voucherd.tenants.service import list_tenants

    with database(ctx) as db:
        rows = list_tenants(db)
    if as_json:
        _print_json([asdict(t) for t in rows])
        return
    shown = [
        (t.id, t.name, str(t.weekly_value_limit or "-"), f"{t.created_at:%Y-%m-%d}") for t in rows
    ]
    show(rows_table(("id", "name", "weekly limit", "created"), shown, fold=(1,)))


@tenants.command("set-limit")
def tenants_set_limit(
    ctx: typer.Context,
    name: str,
    weekly_value_limit: Annotated[
        int | None, typer.Argument(help="Minor units; omit to clear")
    ] = None,
) -> None:
    """Set or clear a tenant's rolling weekly value limit."""
    from voucherd.tenants.service import set_weekly_value_limit, tenant_id_by_name

    try:
        with database(ctx) as db:
            set_weekly_value_limit(db, tenant_id_by_name(db, name), weekly_value_limit)
    except DomainError as exc:
        fail(exc)


@keys.command("create")
def keys_create(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option(help="Tenant name")],
    scopes: Annotated[
        str, typer.Option(help="Comma-separated: issue,redeem,manage")
    ] = "issue,redeem,manage",
    name: Annotated[str | None, typer.Option(help="A label for people")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an API key. The secret is shown once and stored only as a hash."""
    from voucherd.auth.service import create_key, parse_scopes

    try:
        with database(ctx) as db:
            issued = create_key(db, tenant, scopes=parse_scopes(scopes), name=name)
    except DomainError as exc:
        fail(exc)
        return
    if as_json:
        _print_json(
            {
                "key_id": issued.key_id,
                "secret": issued.secret,
                "token": issued.token,
                "tenant": issued.tenant,
                "scopes": issued.scopes,
            }
        )
    else:
        console.print(
            f"key id:  {issued.key_id}\nsecret:  {issued.secret}\ntoken:   {issued.token}\n"
            "The secret is not stored; keep it now."
        )


@keys.command("list")
def keys_list(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option(help="Tenant name")],
    as_json: JsonFlag = False,
) -> None:
    """List a tenant's keys (never their secrets)."""
    from voucherd.auth.service import list_keys

    try:
        with database(ctx) as db:
            rows = list_keys(db, tenant)
    except DomainError as exc:
        fail(exc)
        return
    if as_json:
        _print_json([asdict(k) for k in rows])
        return
    shown = [
        (
            k.key_id,
            k.name,
            ",".join(k.scopes),
            f"{k.created_at:%Y-%m-%d}",
            f"{k.revoked_at:%Y-%m-%d}" if k.revoked_at else "",
        )
        for k in rows
    ]
    # The key id whole, whatever the terminal's width: it is what `keys revoke` takes.
    show(rows_table(("key id", "name", "scopes", "created", "revoked"), shown, fold=(1, 2)))


@guard.command("events")
def guard_events(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's (name)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many, newest first")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Callers slowed or refused for guessing codes: key, client address, misses, when."""
    from voucherd.guard.service import list_guard_events
    from voucherd.tenants.service import tenant_id_by_name

    try:
        with database(ctx) as db:
            tenant_id = tenant_id_by_name(db, tenant) if tenant else None
            rows = list_guard_events(db, tenant_id=tenant_id, limit=limit)
    except DomainError as exc:
        fail(exc)
        return
    if as_json:
        _print_json(
            [
                {
                    "kind": e.kind,
                    "tenant_id": e.tenant_id,
                    "key_id": e.key_id,
                    "address": e.address,
                    "failures": e.failures,
                    "created_at": e.created_at.isoformat(),
                }
                for e in rows
            ]
        )
        return
    shown = [
        (f"{e.created_at:%Y-%m-%d %H:%M:%S}", e.kind, e.key_id, e.address, str(e.failures))
        for e in rows
    ]
    show(rows_table(("when", "kind", "key id", "address", "misses"), shown, fold=(3,)))


@keys.command("revoke")
def keys_revoke(ctx: typer.Context, key_id: str) -> None:
    """Revoke a key: it stops working at once here, within seconds in other processes."""
    from voucherd.auth.service import revoke_key

    try:
        with database(ctx) as db:
            revoke_key(db, key_id)
    except DomainError as exc:
        fail(exc)
    console.print(f"revoked {key_id}")
