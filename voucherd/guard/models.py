"""The guard's tables: shared counters and the record of callers caught guessing."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from voucherd.db.base import Base, UTCDateTime

# What a counter counts; each kind has its own window length and its own clock.
RATE = "rate"  # requests, per key, tenant or page address (the guard's clock: wall time)
GUESS = "guess"  # failed code lookups, per key or address (the Database's clock)


class GuardCounter(Base):
    """One subject's count in one fixed window, summed over every API process.

    Processes add their increments with one ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``,
    which hands back the shared total: no read-modify-write, so no lost increments.
    """

    __tablename__ = "guard_counter"

    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    # "key:<key id>", "tenant:<tenant id>", "addr:<hash of the address>": never a raw address.
    subject: Mapped[str] = mapped_column(String(80), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # epoch seconds
    hits: Mapped[int] = mapped_column(BigInteger)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime())


class GuardEvent(Base):
    """A caller slowed down or refused for guessing codes: who, from where, when, how many.

    ``address`` is the client address as seen (or as a trusted proxy reported it): the one thing
    an operator needs to block a guesser at the firewall. It is kept here, never logged.
    """

    __tablename__ = "guard_event"
    __table_args__ = (Index("ix_guard_event_tenant_id_created_at", "tenant_id", "created_at"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    kind: Mapped[str] = mapped_column(String(40))  # guessing_slowed, guessing_refused
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenant.id"))
    key_id: Mapped[str | None] = mapped_column(String(40))
    address: Mapped[str | None] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(80))  # the counter that crossed the threshold
    failures: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
