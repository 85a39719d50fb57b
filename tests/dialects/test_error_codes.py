"""Every error code the core gives is an :class:`ErrorCode`, the names the dialects map from.

Raise sites may still spell a code as a literal (a StrEnum equals its string); this keeps each
literal one of the members, so no face can be left mapping a code that no longer exists.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import voucherd
from voucherd.dialects.voucherify.errors import describe
from voucherd.errors import ErrorCode, NotFound, voucher_state

_PACKAGE = Path(voucherd.__file__).parent
# code="..." at a raise site, Refusal("...", ...) in validity, and class-level defaults.
_LITERALS = (
    re.compile(r"\bcode=\"([a-z_]+)\""),
    re.compile(r"\bRefusal\(\s*\"([a-z_]+)\""),
    re.compile(r"^\s+status, code(?:, title)? = \d+, \"([a-z_]+)\"", re.MULTILINE),
)


def _literal_codes() -> set[tuple[str, str]]:
    found = set()
    for path in _PACKAGE.rglob("*.py"):
        source = path.read_text()
        for pattern in _LITERALS:
            for match in pattern.finditer(source):
                found.add((str(path.relative_to(_PACKAGE)), match.group(1)))
    return found


def test_every_code_spelled_in_the_core_is_a_member() -> None:
    literals = _literal_codes()
    assert literals, "the scan found no code at all: its patterns are stale"
    strays = sorted((path, code) for path, code in literals if code not in set(ErrorCode))
    assert strays == []


@pytest.mark.parametrize("state", ["ACTIVE", "DISABLED", "REDEEMED", "CANCELLED", "EXPIRED"])
def test_a_voucher_state_names_a_member(state: str) -> None:
    assert voucher_state(state) == f"voucher_{state.lower()}"


def test_a_member_is_its_string() -> None:
    error = NotFound("no such voucher")
    assert error.code == "not_found"
    assert f"urn:voucherd:problem:{error.code}" == "urn:voucherd:problem:not_found"
    assert describe("voucher_expired") == describe(ErrorCode.VOUCHER_EXPIRED)
