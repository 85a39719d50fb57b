"""Field types declared once and used by every schema of every face."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import babel
import orjson
import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)
from pydantic import Strict as StrictType

from voucherd.money import CURRENCIES, MAX_MINOR_UNITS


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


class RequestModel(BaseModel):
    """Base of every request body: unknown fields are refused, and so is a NUL character in any
    text, which PostgreSQL cannot store (it would be a 500 there and silently kept on SQLite)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if _has_nul(value):
            raise ValueError("must not contain NUL characters")
        return value


def _currency(value: str) -> str:
    if value not in CURRENCIES:
        raise ValueError("not an ISO 4217 currency code (e.g. EUR, GBP, ZAR)")
    return value


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("not an IANA time zone name (e.g. Europe/London)") from exc
    return value


def _metadata(value: dict[str, Any]) -> dict[str, Any]:
    if len(value) > 50:
        raise ValueError("at most 50 keys")
    for key in value:
        if len(key) > 100:
            raise ValueError("keys are at most 100 characters")
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        # Integers past 64 bits, nesting past 255 levels: refuse now, not after the commit.
        raise ValueError(f"cannot be stored as JSON: {exc}") from exc
    return value


_EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _iso_text(value: Any) -> Any:
    """Pydantic reads a number (or a string of digits) as seconds since 1970; the documents
    promise ISO 8601, and a till sending 20260615 means a day, not 1970-08-23."""
    text = value.strip() if isinstance(value, str) else None
    if isinstance(value, int | float) or (text and text.lstrip("+-").replace(".", "", 1).isdigit()):
        raise ValueError("an ISO 8601 date-time (2026-06-15T12:00:00Z), not a number")
    return value


def _timestamp(value: datetime) -> datetime:
    """Dates far outside any voucher's life would overflow when moved between time zones."""
    probe = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    try:
        in_range = _EARLIEST <= probe.astimezone(UTC) < _LATEST
    except OverflowError:
        in_range = False
    if not in_range:
        raise ValueError("must be between the years 1900 and 9000")
    return value


# Past 2**53 a float is not every integer: 9223372036854775807.0 reads as 2**63.
_EXACT_FLOAT = 2**53


def whole_number(value: Any) -> Any:
    """JSON has one number type: 5000.0 is the integer 5000 (JSON Schema's "integer" says so),
    while 99.5, true and "12" stay refused by the strict int validation that follows. A float
    too large to be exact is refused rather than rounded into another number."""
    if isinstance(value, float) and value.is_integer():
        if abs(value) >= _EXACT_FLOAT:
            raise ValueError("a number this large must be written without a fraction or exponent")
        return int(value)
    return value


# Pydantic documents a Decimal's text form with a pattern that JSON Schema validators read as
# allowing "" (which Decimal refuses); this one says what Decimal() takes: 12, 12.50, .5, 1e3.
DECIMAL_SCHEMA = {
    "anyOf": [
        {"type": "number"},
        {"type": "string", "pattern": r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d{1,2})?$"},
    ]
}
MajorUnits = Annotated[
    Decimal,
    Field(allow_inf_nan=False, description="Money in major units (20.00)."),
    WithJsonSchema(DECIMAL_SCHEMA),
]

# Strict: JSON true or "12" is not an amount of money (5000.0 is 5000: whole_number).
MinorUnits = Annotated[
    int,
    StrictType(),
    Field(ge=0, le=MAX_MINOR_UNITS, description="Money in minor units (cents), or points."),
    BeforeValidator(whole_number),  # after the bounds, or they leave the JSON schema
]
PositiveMinorUnits = Annotated[
    int,
    StrictType(),
    Field(gt=0, le=MAX_MINOR_UNITS, description="A positive amount in minor units, or points."),
    BeforeValidator(whole_number),  # after the bounds, or they leave the JSON schema
]
SignedMinorUnits = Annotated[
    int,
    StrictType(),
    Field(ge=-MAX_MINOR_UNITS, le=MAX_MINOR_UNITS, description="Minor units or points, + or -."),
    BeforeValidator(whole_number),  # after the bounds, or they leave the JSON schema
]
Currency = Annotated[
    str,
    StringConstraints(min_length=3, max_length=3),
    AfterValidator(_currency),
    Field(description="ISO 4217 code", examples=["EUR"]),
]
Timezone = Annotated[str, StringConstraints(max_length=64), AfterValidator(_timezone)]
_STORED_CODE = r"^[\x21-\x7e]+$"


def _stored_code(value: str) -> str:
    # In words, not as the pattern: a person reads this answer.
    if not re.match(_STORED_CODE, value):
        raise ValueError(
            "a voucher code is letters, digits and punctuation (printable ASCII), without spaces"
        )
    return value


def _typed_code(value: str) -> str:
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("a voucher code holds no control characters")
    return value


VoucherCode = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100),
    AfterValidator(_stored_code),
    Field(
        description="A voucher code: printable ASCII without spaces.",
        json_schema_extra={"pattern": _STORED_CODE},
    ),
]
# A code as a holder types it (validate, redeem): voucherd's own codes may come in lower case and
# in groups split by spaces or dashes; the core reads it (codes/typed.py), not this type.
TypedCode = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100),
    AfterValidator(_typed_code),
    Field(
        description="The voucher's code (or its id). voucherd's own codes may be typed in any "
        "case, in groups split by spaces or dashes."
    ),
]
CampaignRef = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200),
    Field(description="A campaign's id or its name."),
]
CustomerRef = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, strip_whitespace=True),
    Field(description="The issuer's own reference for its customer."),
]
Reference = Annotated[str, StringConstraints(max_length=200)]
Metadata = Annotated[dict[str, Any], AfterValidator(_metadata)]
Quantity = Annotated[
    int, StrictType(), Field(ge=1, le=1_000_000_000), BeforeValidator(whole_number)
]
Timestamp = Annotated[
    datetime,
    BeforeValidator(_iso_text),
    AfterValidator(_timestamp),
    Field(description="ISO 8601; without an offset it is read in the campaign's time zone."),
]


def phone_number(value: str) -> str:
    """Kept in E.164, so one number is one string whatever way it was typed."""
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError("not a phone number in international form (e.g. +447911123456)") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError("not a valid phone number for its country")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def email_address(value: str) -> str:
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from exc


PhoneNumber = Annotated[
    str,
    StringConstraints(min_length=3, max_length=32, strip_whitespace=True),
    AfterValidator(phone_number),
    Field(description="International form; stored as E.164.", examples=["+447911123456"]),
]
EmailAddress = Annotated[
    str,
    StringConstraints(min_length=3, max_length=254, strip_whitespace=True),
    AfterValidator(email_address),
    Field(examples=["ada@example.com"]),
]


def _locale(value: str) -> str:
    try:
        return str(babel.Locale.parse(value, sep="-" if "-" in value else "_"))
    except (ValueError, babel.UnknownLocaleError) as exc:
        raise ValueError("not a known locale (e.g. en, en-GB, pt-BR)") from exc


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http(s) URL")
    return value


Locale = Annotated[str, StringConstraints(min_length=2, max_length=16), AfterValidator(_locale)]
HttpUrlText = Annotated[
    str, StringConstraints(min_length=8, max_length=500), AfterValidator(_http_url)
]
