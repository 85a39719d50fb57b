from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.webhooks import Receiver, running_receiver
from voucherd.config import Settings


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A local endpoint that checks each message's Standard Webhooks signature."""
    with running_receiver() as running:
        yield running


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The `db` fixture is one connection: messages (and an order's batches) take turns on it.
    return settings.model_copy(update={"delivery_concurrency": 1, "order_mint_parallelism": 1})
