"""A code as a holder types it at the till, turned into what to ask the database for.

People copy codes from an SMS or a printout: in lower case, in groups split by spaces or dashes
(``abcd-efgh-jkmn-p``). For the codes voucherd draws itself (no ``code_config``: 12 characters of
the default alphabet plus a check character), case, spaces and dashes carry no meaning, so they
are dropped before the lookup; and when the check character fails, the holder is told the code is
mistyped, without a database lookup. That answer reveals nothing: the check is arithmetic on the
typed text that anyone can do.

Every other code (a campaign's ``code_config``, an issuer's explicit code, a code imported from
another platform) is matched exactly as it is stored. Nothing on a voucher row says whether
voucherd drew its code, so "drawn" means: in a campaign without a ``code_config``, and of the
default shape with a passing check. An imported or explicit code of exactly that shape in such a
campaign is matched in its loose forms too, which can find nothing else: its canonical form is
the code itself.

Three facts keep the no-lookup answers honest:

* no stored code holds whitespace or anything outside printable ASCII (fields.VoucherCode, the
  ``code_config`` checks, the imports' row check), so text with them can only be a drawn code;
* no stored code has the default shape with a failing check (``generator.is_mistyped``: drawn
  configured codes are redrawn, explicit and imported ones refused), so canonical text that fails
  the check is stored nowhere;
* the rest may be a stored code as it stands (``abcd-efgh`` from a ``code_config`` or an import),
  so it is looked up exactly, as before, and a miss is counted by the guard as before; only the
  words of the miss say "mistyped" when its canonical form fails the check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from voucherd.codes.generator import has_default_shape, is_mistyped
from voucherd.errors import CodeMistyped, NotFound

# What people type between groups: spaces of any kind, and the dashes a phone or a word processor
# puts in place of a hyphen.
_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015\u2212]+")
_STORABLE = re.compile(r"^[\x21-\x7e]+$")


@dataclass(frozen=True)
class CodeQuery:
    """What one typed code asks of the database.

    ``exact`` is matched against every stored code (and voucher id) as it is; ``drawn`` only
    against codes voucherd drew (campaign without ``code_config``). ``mistyped``: when neither
    matches, the answer is "mistyped" rather than "no such voucher".
    """

    exact: str | None
    drawn: str | None
    mistyped: bool = False

    @property
    def candidates(self) -> list[str]:
        """The distinct codes asked for; the guard counts a miss for each."""
        return list(dict.fromkeys(c for c in (self.exact, self.drawn) if c is not None))

    def miss(self, field: str) -> NotFound:
        """The refusal when nothing matched."""
        return mistyped(field) if self.mistyped else no_such_voucher(field)


def no_such_voucher(field: str) -> NotFound:
    return NotFound("no such voucher", field=field)


def mistyped(field: str) -> CodeMistyped:
    return CodeMistyped("this code is mistyped — check it and try again", field=field)


def code_query(typed: str, *, field: str = "code") -> CodeQuery:
    """What to look up for ``typed``; raises :class:`CodeMistyped` (or NotFound) when the text
    alone proves no stored code is meant, so the database is never asked.

    Surrounding whitespace is dropped for every code: no stored code holds any.
    """
    text = typed.strip()
    canonical = _SEPARATORS.sub("", text).upper()
    storable = bool(_STORABLE.match(text))
    if not has_default_shape(canonical):
        if not storable:
            raise no_such_voucher(field)
        return CodeQuery(exact=text, drawn=None)
    if is_mistyped(canonical):
        if text == canonical or not storable:
            raise mistyped(field)
        return CodeQuery(exact=text, drawn=None, mistyped=True)
    if text == canonical:
        return CodeQuery(exact=text, drawn=None)
    return CodeQuery(exact=text if storable else None, drawn=canonical)
