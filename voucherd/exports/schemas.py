"""What an export is asked for, and the spec a worker or the CLI runs it from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import Field, StrictBool

from voucherd.fields import Quantity, RequestModel
from voucherd.vouchers.schemas import VoucherStateName


class ExportRequest(RequestModel):
    state: list[VoucherStateName] | None = Field(
        default=None,
        min_length=1,
        max_length=5,
        description="Only vouchers in these states (EXPIRED as derived when the export starts).",
    )
    # Strict: "no" or 0 is not an answer to "published?" (lax pydantic would read it as false).
    published: StrictBool | None = Field(
        default=None,
        description="true: only vouchers published before; false: only unpublished ones.",
    )
    record_publication: StrictBool = Field(
        default=True,
        description="With published=false the export is for distribution: its codes are taken "
        "from the campaign's pool and recorded as published with channel Export, so nobody "
        "publishes them again. false exports the unpublished codes without taking them.",
    )
    limit: Quantity | None = Field(default=None, description="At most this many vouchers.")


@dataclass(frozen=True)
class ExportSpec:
    """One export, resolved: the campaign found, the time EXPIRED is judged at fixed.

    Kept as the operation's parameters, so every step (on any worker, after any restart)
    exports by the same rules.
    """

    tenant_id: str
    campaign_id: str
    campaign_name: str
    states: tuple[str, ...] | None
    published: bool | None
    distribute: bool
    limit: int | None
    as_of: datetime
    actor: str | None

    def to_parameters(self) -> dict[str, Any]:
        return {
            "campaign_id": self.campaign_id,
            "campaign": self.campaign_name,
            "state": list(self.states) if self.states else None,
            "published": self.published,
            "distribute": self.distribute,
            "limit": self.limit,
            "as_of": self.as_of.isoformat(),
        }

    @classmethod
    def from_parameters(
        cls, tenant_id: str, actor: str | None, parameters: dict[str, Any]
    ) -> ExportSpec:
        states = parameters.get("state")
        return cls(
            tenant_id=tenant_id,
            campaign_id=str(parameters["campaign_id"]),
            campaign_name=str(parameters["campaign"]),
            states=tuple(states) if states else None,
            published=parameters.get("published"),
            distribute=bool(parameters.get("distribute")),
            limit=parameters.get("limit"),
            as_of=datetime.fromisoformat(str(parameters["as_of"])),
            actor=actor,
        )


@dataclass(frozen=True)
class ExportProgress:
    """Where an export stands between two batches (an operation's checkpoint)."""

    done: int = 0
    total: int | None = None
    after: str | None = None  # the last voucher id written (keyset position)
    publication_id: str | None = None  # the Export publication a distribution fills

    @property
    def started(self) -> bool:
        return self.total is not None

    def to_checkpoint(self) -> dict[str, Any]:
        return {
            "done": self.done,
            "total": self.total,
            "after": self.after,
            "publication_id": self.publication_id,
        }

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any] | None) -> ExportProgress:
        if not checkpoint:
            return cls()
        return cls(
            done=int(checkpoint["done"]),
            total=checkpoint.get("total"),
            after=checkpoint.get("after"),
            publication_id=checkpoint.get("publication_id"),
        )


@dataclass(frozen=True)
class ExportSummary:
    campaign_id: str
    rows: int
    publication_id: str | None
