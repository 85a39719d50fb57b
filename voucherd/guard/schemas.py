"""A tenant's own rate limits, as ``PATCH /api/v1/tenant`` takes them."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from voucherd.fields import RequestModel

Count = Annotated[int, Field(ge=1, le=1_000_000_000)]


class RateLimitsPatch(RequestModel):
    """Only the fields present change; null puts a field back to the operator's default."""

    per_key: Count | None = Field(
        default=None, description="Requests one of the tenant's keys may make per window."
    )
    per_tenant: Count | None = Field(
        default=None, description="Requests all the tenant's keys together may make per window."
    )
    guess_slow_after: Count | None = Field(
        default=None,
        description="Failed code lookups by one key in a guessing window before it is slowed.",
    )
    guess_refuse_after: Count | None = Field(
        default=None,
        description="Failed code lookups by one key in a guessing window before it is refused.",
    )
