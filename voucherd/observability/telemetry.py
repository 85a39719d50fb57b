"""FastAPI's own OpenTelemetry instrumentation, on only when asked (``VOUCHERD_OPENTELEMETRY``).

FastAPI 0.165 traces, meters and logs every request through OpenTelemetry's global providers
when the process has configured any, and to know whether it has, it looks all three up on every
request: about 90,000 of the 1.9 million instructions voucherd's API process spends on a
redemption (callgrind, 2026-12-07, bench/README.md), in a process that by default exports
nothing to OpenTelemetry. voucherd's own observability is its Prometheus metrics and its JSON
access lines; a deployment that runs under ``opentelemetry-instrument`` (or sets
``FASTAPI_OTEL_AUTO_CONFIGURE``) sets ``VOUCHERD_OPENTELEMETRY=true`` for FastAPI's spans too.
"""

from __future__ import annotations

from fastapi.telemetry import TelemetryConfig

from voucherd.config import Settings


def native_telemetry(settings: Settings) -> TelemetryConfig | None:
    """``FastAPI(telemetry=...)``: FastAPI's defaults (the global providers) or all of it off."""
    if settings.opentelemetry:
        return None
    return {"tracing": False, "metrics": False, "logs": False}
