"""Field types declared once and used by every schema of every face."""

from __future__ import annotations

from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, StringConstraints

from voucherd.money import CURRENCIES, MAX_MINOR_UNITS


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
    return value


MinorUnits = Annotated[
    int,
    Field(ge=0, le=MAX_MINOR_UNITS, description="Money in minor units (cents), or points."),
]
PositiveMinorUnits = Annotated[
    int,
    Field(gt=0, le=MAX_MINOR_UNITS, description="A positive amount in minor units, or points."),
]
Currency = Annotated[
    str,
    StringConstraints(min_length=3, max_length=3),
    AfterValidator(_currency),
    Field(description="ISO 4217 code", examples=["EUR"]),
]
Timezone = Annotated[str, StringConstraints(max_length=64), AfterValidator(_timezone)]
VoucherCode = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100, pattern=r"^[\x21-\x7e]+$"),
    Field(description="A voucher code: printable ASCII without spaces."),
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
Quantity = Annotated[int, Field(ge=1, le=1_000_000_000)]
