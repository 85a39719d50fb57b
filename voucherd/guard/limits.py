"""The numbers the guard applies, and the refusal it answers past them.

A tenant may set its own numbers (``PATCH /api/v1/tenant`` with ``rate_limits``); the rest are
the operator's (Settings). Stored in the tenant's settings under :data:`TENANT_SETTING`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from voucherd.config import Settings
from voucherd.errors import DomainError, ErrorCode, InvalidInput

# The tenant settings key that holds a tenant's own numbers (see TenantLimits).
TENANT_SETTING = "rate_limits"


class RateLimited(DomainError):
    """Too many requests, or too many failed code lookups: come back after ``retry_after`` s."""

    status, code, title = 429, ErrorCode.RATE_LIMITED, "Too many requests"

    def __init__(self, detail: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(detail, code=code)
        self.retry_after = retry_after


@dataclass(frozen=True)
class TenantLimits:
    """The numbers a tenant may set for itself; the rest are the operator's (Settings)."""

    per_key: int
    per_tenant: int
    guess_slow_after: int
    guess_refuse_after: int

    @classmethod
    def defaults(cls, settings: Settings) -> TenantLimits:
        return cls(
            per_key=settings.rate_limit_per_key,
            per_tenant=settings.rate_limit_per_tenant,
            guess_slow_after=settings.guess_slow_after,
            guess_refuse_after=settings.guess_refuse_after,
        )

    def merged(self, overrides: dict[str, Any] | None) -> TenantLimits:
        known = {k: int(v) for k, v in (overrides or {}).items() if k in _FIELDS and v is not None}
        return TenantLimits(**{**self.__dict__, **known})

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


_FIELDS = frozenset(TenantLimits.__dataclass_fields__)


def patched_limits(
    stored: dict[str, Any] | None, patch: dict[str, int | None], settings: Settings
) -> dict[str, int]:
    """A tenant's stored overrides after a PATCH (null: back to the default), checked whole."""
    overrides = {k: v for k, v in {**(stored or {}), **patch}.items() if v is not None}
    effective = TenantLimits.defaults(settings).merged(overrides)
    if effective.guess_slow_after > effective.guess_refuse_after:
        raise InvalidInput(
            f"must not exceed guess_refuse_after ({effective.guess_refuse_after})",
            field="rate_limits.guess_slow_after",
        )
    return {k: int(v) for k, v in overrides.items()}
