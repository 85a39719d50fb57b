"""FastAPI's own OpenTelemetry instrumentation is off unless VOUCHERD_OPENTELEMETRY asks for it.

Run in a child process: OpenTelemetry's global tracer provider can be set once per process, and
once set it would instrument every app the suite builds afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_CHILD = """
import json, sys
from fastapi.testclient import TestClient
from opentelemetry import trace
from voucherd.app import create_app
from voucherd.config import Settings

started = []

class CountingTracer(trace.NoOpTracer):
    def start_span(self, name, *args, **kwargs):
        started.append((kwargs.get("attributes") or {}).get("url.path"))
        return super().start_span(name, *args, **kwargs)

class CountingProvider(trace.TracerProvider):
    def get_tracer(self, *args, **kwargs):
        return CountingTracer()

# What opentelemetry-instrument does before the app is imported: a configured provider.
trace.set_tracer_provider(CountingProvider())
spans = {}
for asked in (False, True):
    settings = Settings(database_url=sys.argv[1], opentelemetry=asked)
    with TestClient(create_app(settings)) as client:
        before = len(started)
        assert client.get("/healthz").status_code == 200
        spans[str(asked)] = started[before:]
print(json.dumps(spans))
"""


def test_fastapi_traces_requests_only_when_opentelemetry_is_asked_for(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'unused.db'}"
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, database],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    spans = json.loads(child.stdout.strip().splitlines()[-1])
    assert spans["False"] == []  # the default: no lookup of the providers, no span
    assert spans["True"], "with VOUCHERD_OPENTELEMETRY=true FastAPI traces the request"
    assert "/healthz" in spans["True"]  # the request's server span (and its operations')
