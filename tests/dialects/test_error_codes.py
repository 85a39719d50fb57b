"""Every error code the core gives is an :class:`ErrorCode` member, the names the dialects map
from: no raise site spells a code as a free string, so no face can be left mapping a code that
no longer exists, and a renamed code breaks at import rather than silently.
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


def test_no_raise_site_spells_a_code_as_a_string() -> None:
    assert _literal_codes() == set()


def test_the_scan_would_see_a_string_code() -> None:
    """The patterns are not stale: each finds the forms it is meant to refuse."""
    source = """
        raise NotFound("gone", code="voucher_gone")
        return Refusal("outside_hours", "not now")
    class Late(DomainError):
        status, code, title = 409, "too_late", "Too late"
    """
    found = {m.group(1) for pattern in _LITERALS for m in pattern.finditer(source)}
    assert found == {"voucher_gone", "outside_hours", "too_late"}


@pytest.mark.parametrize("state", ["ACTIVE", "DISABLED", "REDEEMED", "CANCELLED", "EXPIRED"])
def test_a_voucher_state_names_a_member(state: str) -> None:
    assert voucher_state(state) == f"voucher_{state.lower()}"


def test_a_member_is_its_string() -> None:
    error = NotFound("no such voucher")
    assert error.code == "not_found"
    assert f"urn:voucherd:problem:{error.code}" == "urn:voucherd:problem:not_found"
    assert describe("voucher_expired") == describe(ErrorCode.VOUCHER_EXPIRED)
