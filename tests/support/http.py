"""The native API client as the suite uses it."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient


def refuse_server_errors(client: TestClient) -> TestClient:
    """Make any 5xx answer fail the request that received it, inside the test's own call.

    The check wraps ``request`` (which every verb goes through) rather than using a response
    hook, so a failure's traceback stays a few frames deep and cheap to report.
    """
    send = client.request

    def request(*args: Any, **kwargs: Any) -> Any:
        response = send(*args, **kwargs)
        if response.status_code >= 500:
            raise AssertionError(
                f"{response.request.method} {response.request.url.path} answered "
                f"{response.status_code}: {response.text}"
            )
        return response

    client.request = request  # type: ignore[method-assign]
    return client
