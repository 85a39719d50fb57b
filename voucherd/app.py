"""The FastAPI app factory: the native API today; dialects and pages mount here too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import FastAPI, Response
from sqlalchemy import text

from voucherd import __version__, composition, docs
from voucherd.api import hot, openapi, problems
from voucherd.api.front import FrontDoor
from voucherd.api.responses import json_response
from voucherd.campaigns.routes import router as campaigns_router
from voucherd.config import Settings, load_settings
from voucherd.console.routes import create_console
from voucherd.customers.routes import router as customers_router
from voucherd.db.engine import Database
from voucherd.db.migrate import schema_state
from voucherd.delivery.routes import router as delivery_router
from voucherd.dialects import imovo, vista, voucherify, yoyo
from voucherd.dialects.doors import DOORS
from voucherd.exports.routes import router as exports_router
from voucherd.guard.service import Guard
from voucherd.imports.routes import router as imports_router
from voucherd.observability.routes import router as metrics_router
from voucherd.observability.telemetry import native_telemetry
from voucherd.operations.routes import router as operations_router
from voucherd.orders.routes import router as orders_router
from voucherd.pages.routes import router as pages_router
from voucherd.publications.routes import router as publications_router
from voucherd.redemptions.routes import router as redemptions_router
from voucherd.tenants.routes import router as tenant_router
from voucherd.vouchers.routes import router as vouchers_router
from voucherd.webhooks.routes import router as webhooks_router
from voucherd.worker.loop import BackgroundWorker


def create_app(
    settings: Settings | None = None, *, db: Database | None = None, express: bool = True
) -> FastAPI:
    """The app; ``express=False`` routes even the hot requests through FastAPI's routing (the
    tests compare the two ways' answers)."""
    settings = settings or load_settings()
    db = db or Database.from_settings(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # `voucherd serve` (without --no-worker) turns this on: the embedded mode needs no
        # separate worker process.
        worker = (
            BackgroundWorker(db, composition.JOBS).start() if settings.in_process_worker else None
        )
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()

    app = FastAPI(
        title="voucherd",
        version=__version__,
        summary="Self-hosted vouchers: campaigns, codes, issue, validate, redeem.",
        lifespan=lifespan,
        # Served by voucherd.docs from the package, not from a CDN: they work offline.
        docs_url=None,
        redoc_url=None,
        telemetry=native_telemetry(settings),
    )
    app.state.db = db
    app.state.settings = settings
    # What the composition module put together, kept by the app that uses it: the answers to
    # replays whose stored response was lost (api/problems.py), the gauges of /metrics.
    app.state.renderers = composition.RENDERERS
    app.state.gauges = composition.GAUGES
    problems.install(app)
    openapi.install(app)
    app.state.guard = Guard(db, settings)
    for router in (
        campaigns_router,
        vouchers_router,
        redemptions_router,
        tenant_router,
        customers_router,
        publications_router,
        delivery_router,
        exports_router,
        imports_router,
        operations_router,
        orders_router,
        webhooks_router,
        pages_router,
        yoyo.router,
        voucherify.router,
        imovo.router,
        vista.router,
        metrics_router,
    ):
        app.include_router(router)
    app.include_router(docs.router)
    # Once every router is in: the hot routes (and any of their shape) skip FastAPI's generic
    # dependency solving when the request is plain (api/hot.py); kept to be seen in tests.
    app.state.short_way = hot.install(app)
    app.mount("/console", create_console(db, settings))

    @app.get("/healthz", tags=["operations"], summary="The process is up")
    def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="The database answers and is migrated",
        responses={503: {"description": "Not ready: the database is unreachable or behind"}},
    )
    def readyz() -> Response:
        checks: dict[str, Any] = {}
        try:
            with db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
            checks["migrations"] = schema_state(db.engine)
        except Exception as exc:  # noqa: BLE001  (readiness reports, it does not raise)
            checks["database"] = f"unreachable: {type(exc).__name__}"
        # "ahead": a newer release migrated the database under this process; still serving.
        ready = checks.get("database") == "ok" and checks.get("migrations") in ("current", "ahead")
        return json_response(
            {"status": "ready" if ready else "not ready", **checks}, 200 if ready else 503
        )

    # The one middleware (api/front.py): the request id, the access line and the metrics of
    # every answer, the guard's visit, the refusals at the door (a NUL in the URL, a body too
    # large), each face's in its own shape (DOORS), and the hot routes' express lanes.
    app.add_middleware(
        FrontDoor,
        guard=app.state.guard,
        max_body_bytes=settings.max_body_bytes,
        doors=DOORS,
        express_lanes=partial(hot.express_lanes, app) if express else None,
    )
    return app
