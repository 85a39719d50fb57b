"""Typed domain errors. Services raise them; each face renders them in its own error shape.

``code`` is the stable, machine-readable reason a dialect maps to its vendor's words;
``field`` names the request field at fault (dotted path) when there is one.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        field: str | None = None,
        code: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        if code is not None:
            self.code = code
        self.extra = extra or {}


class Unauthorized(DomainError):
    status, code, title = 401, "unauthorized", "Unauthorized"


class Forbidden(DomainError):
    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(DomainError):
    status, code, title = 404, "not_found", "Not found"


class Conflict(DomainError):
    """The request clashes with the current state (a duplicate, a final state)."""

    status, code, title = 409, "conflict", "Conflict"


class InvalidInput(DomainError):
    """A value is well-formed but not acceptable (above a maximum, inconsistent with others)."""

    status, code, title = 422, "invalid_input", "Invalid input"


class LimitReached(DomainError):
    """A configured limit (weekly value, budget, per customer, code space) refuses the request."""

    status, code, title = 422, "limit_reached", "Limit reached"


class NotRedeemable(DomainError):
    """The voucher exists but the rules refuse this validation or redemption now."""

    status, code, title = 409, "not_redeemable", "Voucher not redeemable"


class IdempotencyKeyReused(DomainError):
    status, code, title = 422, "idempotency_key_reused", "Idempotency key reused"


class IdempotencyKeyInFlight(DomainError):
    status, code, title = 409, "idempotency_key_in_flight", "Request in progress"
