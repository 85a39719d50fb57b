"""What the guard learns about one request while it is served."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from voucherd.guard.limits import TenantLimits


@dataclass
class Visit:
    address: str
    tenant_id: str | None = None
    key_id: str | None = None
    # The tenant's numbers, read when the request was admitted (before any unit of work, so a
    # lookup never needs a second connection to learn them).
    limits: TenantLimits | None = None
    admitted: bool = False
    failures: int = 0
    limit: int | None = None
    remaining: int | None = None
    retry_after: int | None = None
    retry_at: int | None = None
    _address_subject: str | None = field(default=None, repr=False)

    @property
    def address_subject(self) -> str:
        if self._address_subject is None:
            digest = hashlib.sha256(self.address.encode()).hexdigest()[:32]
            self._address_subject = f"addr:{digest}"
        return self._address_subject

    def headers(self) -> list[tuple[str, str]]:
        """Voucherify's rate-limit headers, and Retry-After on a refusal."""
        headers: list[tuple[str, str]] = []
        if self.limit is not None and self.remaining is not None:
            headers += [
                ("X-Rate-Limit-Limit", str(self.limit)),
                ("X-Rate-Limit-Remaining", str(self.remaining)),
            ]
        if self.retry_after is not None:
            headers.append(("Retry-After", str(self.retry_after)))
            if self.retry_at is not None:
                headers.append(("X-Rate-Limit-Retry", str(self.retry_at)))
        return headers
