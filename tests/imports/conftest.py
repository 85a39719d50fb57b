from __future__ import annotations

import pytest

from voucherd.config import Settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Room for a 10,000-row file in one request (the suite's default is 64 KiB)."""
    return settings.model_copy(update={"max_body_bytes": 8 * 1024 * 1024})
