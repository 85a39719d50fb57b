"""Debian's headless Chromium against the app under uvicorn, for the tests in this folder.

The app runs in a thread on a free 127.0.0.1 port over a fresh database (what a test makes is
committed and visible to the server). ``offline=True`` cuts the browser off from everything but
loopback: a proxy that nothing answers for any other host, and every name resolving to nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DESKTOP = (1280, 900)
PHONE = (390, 844)

# Port 9 (discard) has no listener: every request that is not to loopback fails at once.
OFFLINE = (
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>;127.0.0.1",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)


def require_chromium() -> str:
    """Debian's chromium, or a skip that says so (a failure under VOUCHERD_REQUIRE_CHROMIUM=1)."""
    if CHROMIUM is None:
        message = "chromium is not installed (apt-get install chromium); browser tests skipped"
        if os.environ.get("VOUCHERD_REQUIRE_CHROMIUM") == "1":
            pytest.fail(message + ", but VOUCHERD_REQUIRE_CHROMIUM=1 forbids skipping them")
        pytest.skip(message)
    return CHROMIUM


def browse(
    chromium: str,
    profile: Path,
    url: str,
    *action: str,
    size: tuple[int, int] = PHONE,
    offline: bool = False,
    wait_ms: int = 0,
    strict_csp: bool = False,
) -> str:
    """Load ``url`` and do ``action`` (``--dump-dom``, ``--screenshot=PATH``); its stdout.

    ``wait_ms`` lets scripts run that long in virtual time first (Swagger UI draws the
    operations list only after it fetched /openapi.json).
    """
    result = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--enable-logging=stderr",
            "--v=0",
            f"--window-size={size[0]},{size[1]}",
            f"--user-data-dir={profile}",
            *(OFFLINE if offline else ()),
            *((f"--virtual-time-budget={wait_ms}",) if wait_ms else ()),
            *action,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,  # a guard against a hung browser, not a measurement
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    if strict_csp:
        # The Content-Security-Policy allows everything the page needs and nothing more.
        refused = [line for line in result.stderr.splitlines() if "Content Security Policy" in line]
        assert refused == []
    return result.stdout
