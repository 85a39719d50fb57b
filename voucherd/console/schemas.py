"""What the console's use cases hand back: an operator as shown, a live session."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from voucherd.auth.caller import Caller

# Scopes of the core's Caller per role; the console's own role checks are stricter still
# (a support agent holds "manage" to disable a voucher, yet is refused the campaign pages).
ROLE_SCOPES = {
    "admin": frozenset({"issue", "redeem", "manage"}),
    "manager": frozenset({"issue", "redeem", "manage"}),
    "support": frozenset({"issue", "redeem", "manage"}),
    "cashier": frozenset({"redeem"}),
}


@dataclass(frozen=True)
class OperatorView:
    id: str
    tenant_id: str
    tenant_name: str
    email: str
    name: str | None
    role: str
    created_at: datetime
    disabled: bool

    @property
    def caller(self) -> Caller:
        return Caller(self.tenant_id, self.id, ROLE_SCOPES[self.role])


@dataclass(frozen=True)
class SignedIn:
    """A live session: who, and the token its forms must carry back."""

    operator: OperatorView
    csrf_token: str
    token_hash: str


@dataclass(frozen=True)
class NewSession:
    token: str  # for the cookie; never stored
    signed_in: SignedIn
