"""``/metrics``: unauthenticated like ``/healthz``, for Prometheus to scrape."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from voucherd.observability.collector import CONTENT_TYPE, exposition

router = APIRouter(tags=["operations"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    return Response(exposition(request.app.state.db), media_type=CONTENT_TYPE)
