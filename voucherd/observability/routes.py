"""``/metrics``: unauthenticated like ``/healthz``, for Prometheus to scrape."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from voucherd.observability.collector import CONTENT_TYPE, exposition

router = APIRouter(tags=["operations"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    # The gauge readers are the features' (delivery, operations), handed to the app at its
    # composition (voucherd/composition.py).
    state = request.app.state
    return Response(exposition(state.db, state.gauges), media_type=CONTENT_TYPE)
