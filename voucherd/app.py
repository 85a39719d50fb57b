"""The FastAPI app factory: the native API today; dialects and pages mount here too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Response
from sqlalchemy import text

from voucherd import __version__
from voucherd.api import openapi, problems
from voucherd.api.limits import BodySizeLimit, RefuseNulInUrl
from voucherd.api.responses import json_response
from voucherd.auth.routes import router as tenant_router
from voucherd.auth.service import Caller
from voucherd.campaigns import service as campaigns
from voucherd.campaigns.routes import router as campaigns_router
from voucherd.campaigns.schemas import present_campaign
from voucherd.config import Settings, load_settings
from voucherd.customers.routes import router as customers_router
from voucherd.db.engine import Database
from voucherd.db.migrate import schema_state
from voucherd.delivery.routes import router as delivery_router
from voucherd.dialects import imovo, vista, voucherify, yoyo
from voucherd.dialects.doors import DOORS
from voucherd.exports.routes import router as exports_router
from voucherd.guard.middleware import GuardRequests
from voucherd.guard.service import Guard
from voucherd.idempotency.service import RENDERERS
from voucherd.observability.middleware import ObserveRequests
from voucherd.observability.routes import router as metrics_router
from voucherd.operations.routes import router as operations_router
from voucherd.orders.routes import router as orders_router
from voucherd.pages.routes import router as pages_router
from voucherd.publications.routes import router as publications_router
from voucherd.redemptions import service as redemptions
from voucherd.redemptions.routes import router as redemptions_router
from voucherd.redemptions.schemas import present_redemption
from voucherd.vouchers import service as vouchers
from voucherd.vouchers.routes import router as vouchers_router
from voucherd.vouchers.schemas import present_voucher
from voucherd.worker.loop import BackgroundWorker


def create_app(settings: Settings | None = None, *, db: Database | None = None) -> FastAPI:
    settings = settings or load_settings()
    db = db or Database.from_settings(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # `voucherd serve` (without --no-worker) turns this on: the embedded mode needs no
        # separate worker process.
        worker = BackgroundWorker(db).start() if settings.in_process_worker else None
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
    )
    app.state.db = db
    app.state.settings = settings
    problems.install(app)
    openapi.install(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes, doors=DOORS)
    app.add_middleware(RefuseNulInUrl, doors=DOORS)
    # Inside the observability middleware (its 429s are logged and counted like any answer).
    app.state.guard = Guard(db, settings)
    app.add_middleware(GuardRequests, guard=app.state.guard)
    for router in (
        campaigns_router,
        vouchers_router,
        redemptions_router,
        tenant_router,
        customers_router,
        publications_router,
        delivery_router,
        exports_router,
        operations_router,
        orders_router,
        pages_router,
        yoyo.router,
        voucherify.router,
        imovo.router,
        vista.router,
        metrics_router,
    ):
        app.include_router(router)
    _register_replay_renderers()

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

    # Added last, so outermost: every answer, the other middlewares' refusals included, is
    # counted, logged and carries X-Request-Id.
    app.add_middleware(ObserveRequests)
    return app


def _register_replay_renderers() -> None:
    """How to answer an idempotent replay whose stored response was lost (see idempotency)."""

    def voucher(db: Database, tenant: str, voucher_id: str, _: str) -> tuple[int, dict[str, Any]]:
        record = vouchers.get_voucher(db, Caller(tenant, "replay"), voucher_id)
        return 201, present_voucher(record, now=db.now(), base_url=db.settings.public_base_url)

    def redemption(
        db: Database, tenant: str, redemption_id: str, action: str
    ) -> tuple[int, dict[str, Any]]:
        record = redemptions.get_redemption(db, Caller(tenant, "replay"), redemption_id)
        return (200 if action == "rollback" else 201), present_redemption(record)

    def campaign(db: Database, tenant: str, campaign_id: str, _: str) -> tuple[int, dict[str, Any]]:
        return 201, present_campaign(
            campaigns.get_campaign(db, Caller(tenant, "replay"), campaign_id)
        )

    def mint(db: Database, tenant: str, campaign_id: str, count: str) -> tuple[int, dict[str, Any]]:
        return 201, {"object": "mint", "campaign_id": campaign_id, "count": int(count)}

    RENDERERS.update(voucher=voucher, redemption=redemption, campaign=campaign, mint=mint)
