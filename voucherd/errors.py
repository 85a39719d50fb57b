"""Typed domain errors. Services raise them; each face renders them in its own error shape.

``code`` is the stable, machine-readable reason a dialect maps to its vendor's words: one of
:class:`ErrorCode`, so a face maps from the members rather than from free strings, and a code
that is renamed or dropped breaks the mapping at import rather than silently;
``field`` names the request field at fault (dotted path) when there is one.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Every reason the core (and the faces' shared kit) gives for refusing a request.

    A StrEnum equals its value (``ErrorCode.NOT_FOUND == "not_found"``), so error bodies,
    logs and stored validation results carry the same strings as before.
    """

    # The error classes' defaults.
    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    INVALID_INPUT = "invalid_input"
    LIMIT_REACHED = "limit_reached"
    NOT_REDEEMABLE = "not_redeemable"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    IDEMPOTENCY_KEY_IN_FLIGHT = "idempotency_key_in_flight"
    RATE_LIMITED = "rate_limited"
    TOO_MANY_FAILED_LOOKUPS = "too_many_failed_lookups"
    # A typed default code whose check character fails (codes/typed.py): a typo at the till.
    CODE_MISTYPED = "code_mistyped"
    # Requests the HTTP layer refuses before a use case runs.
    MALFORMED_JSON = "malformed_json"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    BODY_TOO_LARGE = "body_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    INVALID_URL = "invalid_url"
    HTTP_ERROR = "http_error"
    DATABASE_UNAVAILABLE = "database_unavailable"
    INTERNAL_ERROR = "internal_error"
    # Duplicates.
    DUPLICATE_NAME = "duplicate_name"
    DUPLICATE_CODE = "duplicate_code"
    DUPLICATE_SOURCE_ID = "duplicate_source_id"
    DUPLICATE_CLIENT_CODE = "duplicate_client_code"
    # A voucher in a state that refuses the request (``voucher_state``).
    VOUCHER_ACTIVE = "voucher_active"
    VOUCHER_DISABLED = "voucher_disabled"
    VOUCHER_REDEEMED = "voucher_redeemed"
    VOUCHER_CANCELLED = "voucher_cancelled"
    VOUCHER_EXPIRED = "voucher_expired"
    # Validity.
    VOUCHER_NOT_ACTIVE_YET = "voucher_not_active_yet"
    OUTSIDE_VALIDITY_TIMEFRAME = "outside_validity_timeframe"
    OUTSIDE_VALIDITY_DAYS = "outside_validity_days"
    OUTSIDE_VALIDITY_HOURS = "outside_validity_hours"
    CAMPAIGN_INACTIVE = "campaign_inactive"
    CAMPAIGN_EXPIRED = "campaign_expired"
    # Redemptions.
    QUANTITY_EXCEEDED = "quantity_exceeded"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    ORDER_RULES_VIOLATED = "order_rules_violated"
    ALREADY_ROLLED_BACK = "already_rolled_back"
    # Customers and publications.
    CUSTOMER_ERASED = "customer_erased"
    CUSTOMER_LIMIT_REACHED = "customer_limit_reached"
    ALREADY_JOINED = "already_joined"
    POOL_EXHAUSTED = "pool_exhausted"
    VOUCHER_HELD_BY_ANOTHER_CUSTOMER = "voucher_held_by_another_customer"
    # Limits.
    VALUE_ABOVE_MAXIMUM = "value_above_maximum"
    WEEKLY_VALUE_LIMIT_REACHED = "weekly_value_limit_reached"
    CAMPAIGN_BUDGET_EXHAUSTED = "campaign_budget_exhausted"
    CODE_SPACE_EXHAUSTED = "code_space_exhausted"
    NOT_ENOUGH_VOUCHERS = "not_enough_vouchers"
    # Delivery.
    CHANNEL_NOT_CONFIGURED = "channel_not_configured"
    RECIPIENT_REQUIRED = "recipient_required"
    INVALID_RECIPIENT = "invalid_recipient"
    DELIVERY_IN_PROGRESS = "delivery_in_progress"
    # Orders and operations.
    PRODUCT_NOT_ALLOWED = "product_not_allowed"
    ORDER_NOT_COMPLETED = "order_not_completed"
    OPERATION_PROCESSING = "operation_processing"
    OPERATION_FAILED = "operation_failed"
    # The console's sign-in.
    SIGN_IN_REFUSED = "sign_in_refused"
    SIGN_IN_THROTTLED = "sign_in_throttled"


def voucher_state(state: str) -> ErrorCode:
    """The refusal of a voucher in ``state`` (``"DISABLED"`` -> ``voucher_disabled``)."""
    return ErrorCode(f"voucher_{state.lower()}")


class DomainError(Exception):
    status: int = 400
    code: str = ErrorCode.BAD_REQUEST
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
    status, code, title = 401, ErrorCode.UNAUTHORIZED, "Unauthorized"


class Forbidden(DomainError):
    status, code, title = 403, ErrorCode.FORBIDDEN, "Forbidden"


class NotFound(DomainError):
    status, code, title = 404, ErrorCode.NOT_FOUND, "Not found"


class CodeMistyped(NotFound):
    """A typed code of voucherd's own shape whose check character fails: no voucher has it, and
    the holder is told to look again. A NotFound, so a face that maps only "not found" still
    answers as it did for a wrong code."""

    code, title = ErrorCode.CODE_MISTYPED, "Code mistyped"


class Conflict(DomainError):
    """The request clashes with the current state (a duplicate, a final state)."""

    status, code, title = 409, ErrorCode.CONFLICT, "Conflict"


class InvalidInput(DomainError):
    """A value is well-formed but not acceptable (above a maximum, inconsistent with others)."""

    status, code, title = 422, ErrorCode.INVALID_INPUT, "Invalid input"


class LimitReached(DomainError):
    """A configured limit (weekly value, budget, per customer, code space) refuses the request."""

    status, code, title = 422, ErrorCode.LIMIT_REACHED, "Limit reached"


class NotRedeemable(DomainError):
    """The voucher exists but the rules refuse this validation or redemption now."""

    status, code, title = 409, ErrorCode.NOT_REDEEMABLE, "Voucher not redeemable"


class IdempotencyKeyReused(DomainError):
    status, code, title = 422, ErrorCode.IDEMPOTENCY_KEY_REUSED, "Idempotency key reused"


class IdempotencyKeyInFlight(DomainError):
    status, code, title = 409, ErrorCode.IDEMPOTENCY_KEY_IN_FLIGHT, "Request in progress"
