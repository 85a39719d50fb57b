"""An import's columns, its rows once read, the problems it names, and its summary.

One row of the file is one voucher as the platform it comes from knows it *now*: its code,
its value at issue and what is left of it, its state, its dates, its holder and where it was
published. The same names are CSV headers and JSON-lines keys (``metadata`` is a JSON object in
either; a CSV may also spread it over ``metadata.<key>`` columns, as Voucherify's exports do).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from voucherd.campaigns.models import Campaign
from voucherd.campaigns.validity import localise
from voucherd.codes.generator import is_mistyped
from voucherd.errors import ErrorCode
from voucherd.money import MAX_MINOR_UNITS

COLUMNS = (
    "code", "type", "value", "balance", "redeemed_quantity", "redemption_quantity", "state",
    "start_date", "expiration_date", "category", "additional_info", "customer_source_id",
    "customer_name", "customer_email", "customer_phone", "published_at", "channel", "metadata",
)  # fmt: skip
METADATA_PREFIX = "metadata."
IMPORTED_STATES = ("ACTIVE", "DISABLED", "CANCELLED", "REDEEMED")
BALANCE_TYPES = ("GIFT", "CASH", "LOYALTY")
# The names other platforms' exports give the same types (Voucherify's voucher types).
_TYPE_ALIASES = {
    "GIFT_VOUCHER": "GIFT",
    "DISCOUNT_VOUCHER": "DISCOUNT",
    "LOYALTY_CARD": "LOYALTY",
}
_ANSWERABLE_CODE = re.compile(r"^[\x21-\x7e]+$")
IMPORT_CHANNEL = "Import"  # a publication whose file named no channel
MAX_LISTED_PROBLEMS = 1_000  # in the operation's result; all of them are in its CSV


@dataclass(frozen=True)
class Problem:
    """Why one row (``line``, counted from 1 with the CSV header as line 1) was not imported."""

    line: int
    column: str | None
    code: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "column": self.column, "code": self.code, "reason": self.reason}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Problem:
        return cls(int(data["line"]), data.get("column"), str(data["code"]), str(data["reason"]))


@dataclass(frozen=True, slots=True)
class RowTerms:
    """The campaign's columns a row is read against, read off the campaign once per batch: an
    ORM attribute costs a descriptor call, and a row consulted a dozen of them."""

    type: str
    default_value: int | None
    max_value: int | None
    redemption_quantity: int | None
    timezone: str
    start_date: datetime | None
    expiration_date: datetime | None
    category: str | None

    @classmethod
    def of(cls, campaign: Campaign) -> RowTerms:
        return cls(
            type=campaign.type,
            default_value=campaign.default_value,
            max_value=campaign.max_value,
            redemption_quantity=campaign.redemption_quantity,
            timezone=campaign.timezone,
            start_date=campaign.start_date,
            expiration_date=campaign.expiration_date,
            category=campaign.category,
        )


class RowError(Exception):
    def __init__(self, column: str | None, reason: str, code: str = ErrorCode.INVALID_INPUT):
        super().__init__(reason)
        self.column, self.reason, self.code = column, reason, code


@dataclass(frozen=True)
class Holder:
    source_id: str | None
    name: str | None
    email: str | None
    phone: str | None


@dataclass(slots=True)
class ImportedRow:
    """One valid row, in the campaign's terms: what its voucher, ledger and publication hold.

    Not frozen: a frozen dataclass sets each of its fifteen fields through
    ``object.__setattr__``, which cost a tenth of reading the row."""

    line: int
    code: str
    value: int | None
    balance: int | None  # what is left; None for a type without a balance
    redemption_quantity: int | None
    redeemed_quantity: int
    state: str
    start_date: datetime | None
    expiration_date: datetime | None
    category: str | None
    additional_info: str | None
    metadata: dict[str, Any] | None
    holder: Holder | None
    published_at: datetime | None
    channel: str | None

    @property
    def published(self) -> bool:
        return self.holder is not None or self.published_at is not None or bool(self.channel)


@dataclass
class ImportSummary:
    campaign_id: str
    campaign: str
    imported: int = 0
    already_present: int = 0
    rejected: int = 0
    problems: list[Problem] = field(default_factory=list)  # the first MAX_LISTED_PROBLEMS
    rolled_back: bool = False
    # Every problem since the last step wrote them out (to the operation's CSV of problems).
    pending: list[Problem] = field(default_factory=list)

    def refuse(self, problem: Problem) -> None:
        self.rejected += 1
        if len(self.problems) < MAX_LISTED_PROBLEMS:
            self.problems.append(problem)
        self.pending.append(problem)

    def to_result(self, *, all_or_nothing: bool) -> dict[str, Any]:
        return {
            "campaign_id": self.campaign_id,
            "campaign": self.campaign,
            "imported": self.imported,
            "already_present": self.already_present,
            "rejected": self.rejected,
            "all_or_nothing": all_or_nothing,
            "rolled_back": self.rolled_back,
            "problems": [p.to_json() for p in self.problems],
            "problems_not_listed": self.rejected - len(self.problems),
        }

    @classmethod
    def from_result(cls, data: dict[str, Any]) -> ImportSummary:
        return cls(
            campaign_id=data["campaign_id"],
            campaign=data["campaign"],
            imported=data["imported"],
            already_present=data["already_present"],
            rejected=data["rejected"],
            problems=[Problem.from_json(p) for p in data["problems"]],
            rolled_back=data["rolled_back"],
        )


def _text(fields: dict[str, Any], column: str, max_length: int) -> str | None:
    value = fields.get(column)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RowError(column, "must be text")
    if len(value) > max_length:
        raise RowError(column, f"is longer than {max_length} characters")
    return value


def _integer(fields: dict[str, Any], column: str, *, minimum: int = 0) -> int | None:
    value = fields.get(column)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise RowError(column, "must be a whole number (minor units)")
    try:
        number = int(value)
    except ValueError:
        raise RowError(column, f"{str(value)[:40]!r} is not a whole number (minor units)") from None
    if not minimum <= number <= MAX_MINOR_UNITS:
        raise RowError(column, f"must be between {minimum} and {MAX_MINOR_UNITS}")
    return number


def _moment(fields: dict[str, Any], column: str, timezone: str) -> datetime | None:
    value = _text(fields, column, 40)
    if value is None:
        return None
    moment = _parse_moment(value, timezone)
    if moment is None:
        raise RowError(column, f"{value!r} is not an ISO 8601 date or date-time")
    return moment


@lru_cache(maxsize=4096)
def _parse_moment(value: str, timezone: str) -> datetime | None:
    """Cached: a file's dates repeat (a campaign's expiry on every row), and parsing one with
    its time zone costs more than the rest of its row."""
    try:
        return localise(datetime.fromisoformat(value), timezone)
    except ValueError:
        return None


def _metadata(fields: dict[str, Any]) -> dict[str, Any] | None:
    value = fields.get("metadata")
    found: dict[str, Any] = {}
    if isinstance(value, str) and value != "":
        try:
            value = json.loads(value)
        except ValueError:
            raise RowError("metadata", "is not valid JSON") from None
    if isinstance(value, dict):
        found.update(value)
    elif value not in (None, ""):
        raise RowError("metadata", "must be a JSON object")
    for key, item in fields.items():
        if key.startswith(METADATA_PREFIX) and item not in (None, ""):
            found[key[len(METADATA_PREFIX) :]] = item
    return found or None


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict | list):
        return "\\u0000" in json.dumps(value)
    return False


_KNOWN = frozenset(COLUMNS)


def unknown_column(name: str) -> bool:
    return name not in _KNOWN and not (
        name.startswith(METADATA_PREFIX) and len(name) > len(METADATA_PREFIX)
    )


def read_row(line: int, fields: dict[str, Any], campaign: RowTerms) -> ImportedRow:
    """One row in the campaign's terms, or :class:`RowError` naming the column at fault."""
    spread = False  # some column is a ``metadata.<key>``
    for name, value in fields.items():
        if name not in _KNOWN:
            if unknown_column(name):
                raise RowError(name, f"no such column; the columns are {', '.join(COLUMNS)}")
            spread = True
        # No database stores a NUL in text or JSON.
        if "\x00" in name or ("\x00" in value if value.__class__ is str else _holds_nul(value)):
            raise RowError(name, "contains a NUL character")
    code = fields.get("code")
    if not isinstance(code, str) or code == "":
        raise RowError("code", "a code is required")
    if len(code) > 100:
        raise RowError("code", "is longer than 100 characters")
    if not _ANSWERABLE_CODE.match(code):
        # Every face takes codes of printable ASCII without spaces (fields.VoucherCode); a code
        # outside them could be stored but never validated or redeemed.
        raise RowError("code", "must be printable ASCII without spaces, as every face takes it")
    if is_mistyped(code):
        # Looks up would take it for a mistyped voucherd code and refuse it unread.
        raise RowError(
            "code", "has the shape of a voucherd code but fails its check character; give it a "
            "prefix or another length"
        )  # fmt: skip
    kind = _text(fields, "type", 20) if "type" in fields else None
    if kind is not None:
        kind = _TYPE_ALIASES.get(kind.upper(), kind.upper())
        if kind != campaign.type:
            raise RowError("type", f"{kind} does not match the campaign's type {campaign.type}")
    state = (_text(fields, "state", 20) or "ACTIVE").upper()
    if state not in IMPORTED_STATES:
        raise RowError("state", f"must be one of {', '.join(IMPORTED_STATES)}")
    value = _value(fields, campaign)
    quantity = (
        _integer(fields, "redemption_quantity", minimum=1) if "redemption_quantity" in fields
        else None
    ) or campaign.redemption_quantity  # fmt: skip
    if campaign.type == "CASH":
        quantity = 1
    redeemed = _integer(fields, "redeemed_quantity") if "redeemed_quantity" in fields else None
    balance = _integer(fields, "balance") if campaign.type in BALANCE_TYPES else None
    if fields.get("balance") not in (None, "") and campaign.type not in BALANCE_TYPES:
        raise RowError("balance", f"a {campaign.type} voucher has no balance")
    if campaign.type in BALANCE_TYPES:
        if balance is None:
            balance = 0 if state == "REDEEMED" or (campaign.type == "CASH" and redeemed) else value
        if value is not None and balance is not None and balance > value:
            raise RowError("balance", f"{balance} is more than the value of {value}")
    if redeemed is None:
        used_up = state == "REDEEMED" or (campaign.type == "CASH" and balance == 0)
        redeemed = (quantity or 1) if used_up else 0
    if quantity is not None and redeemed > quantity:
        raise RowError("redeemed_quantity", f"{redeemed} is more than redemption_quantity")
    start = (
        _moment(fields, "start_date", campaign.timezone) if "start_date" in fields else None
    ) or campaign.start_date  # fmt: skip
    expiry = (
        _moment(fields, "expiration_date", campaign.timezone) if "expiration_date" in fields
        else None
    ) or campaign.expiration_date  # fmt: skip
    if start is not None and expiry is not None and start >= expiry:
        raise RowError("expiration_date", "must be after start_date")
    holder = None if _HOLDER_COLUMNS.isdisjoint(fields) else _holder(fields)
    if _OPTIONAL_COLUMNS.isdisjoint(fields) and not spread:  # most rows of most files
        return ImportedRow(
            line, code, value, balance, quantity, redeemed, state, start, expiry,
            campaign.category, None, None, holder, None, None,
        )  # fmt: skip
    return ImportedRow(
        line=line,
        code=code,
        value=value,
        balance=balance,
        redemption_quantity=quantity,
        redeemed_quantity=redeemed,
        state=state,
        start_date=start,
        expiration_date=expiry,
        category=_text(fields, "category", 100) or campaign.category,
        additional_info=_text(fields, "additional_info", 10_000),
        metadata=_metadata(fields) if spread or "metadata" in fields else None,
        holder=holder,
        published_at=_moment(fields, "published_at", campaign.timezone),
        channel=_text(fields, "channel", 100),
    )


_HOLDER_COLUMNS = frozenset(
    ("customer_source_id", "customer_name", "customer_email", "customer_phone")
)
# The columns read after the holder's; a row with none of them takes the short way out.
_OPTIONAL_COLUMNS = frozenset(
    ("category", "additional_info", "metadata", "published_at", "channel")
)


def _holder(fields: dict[str, Any]) -> Holder | None:
    source_id = _text(fields, "customer_source_id", 200)
    holder_name = _text(fields, "customer_name", 200)
    email = _text(fields, "customer_email", 254)
    phone = _text(fields, "customer_phone", 32)
    if email is not None and "@" not in email:
        raise RowError("customer_email", "is not an email address")
    if source_id or holder_name or email or phone:
        return Holder(source_id, holder_name, email, phone)
    return None


def _value(fields: dict[str, Any], campaign: RowTerms) -> int | None:
    value = _integer(fields, "value")
    if campaign.type == "DISCOUNT":
        if value is not None:
            raise RowError("value", "a DISCOUNT voucher's value is its campaign's discount")
        return None
    value = value if value is not None else campaign.default_value
    if value is None or (value == 0 and campaign.type != "LOYALTY"):
        raise RowError("value", f"a {campaign.type} voucher needs a value (no default_value)")
    if campaign.max_value is not None and value > campaign.max_value:
        raise RowError(
            "value",
            f"{value} is above this campaign's maximum value of {campaign.max_value}",
            ErrorCode.VALUE_ABOVE_MAXIMUM,
        )
    return value
