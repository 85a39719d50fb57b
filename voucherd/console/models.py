"""The console's tables: operators, their server-side sessions, failed sign-ins, and the
record of what operators did that has no voucher to hang an event on (sign-ins, accounts)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from voucherd.db.base import Base, UTCDateTime

ROLES = ("admin", "manager", "support", "cashier")


class Operator(Base):
    """A person who signs in to the console for one tenant.

    The e-mail is unique across the deployment, so the sign-in form needs nothing but it and
    the password (someone working for two tenants has two addresses).
    """

    __tablename__ = "console_operator"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'manager', 'support', 'cashier')", name="role"),
        Index("ix_console_operator_tenant_id_email", "tenant_id", "email"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))
    email: Mapped[str] = mapped_column(String(254), unique=True)  # stored lower-cased
    name: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(200))  # argon2id, with its parameters
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str | None] = mapped_column(String(64))
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ConsoleSession(Base):
    """One signed-in browser. The cookie holds a random token; only its SHA-256 is stored, so
    a copy of the table signs nobody in. Deleting the row ends the session in every process."""

    __tablename__ = "console_session"
    __table_args__ = (Index("ix_console_session_operator_id", "operator_id"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))
    operator_id: Mapped[str] = mapped_column(ForeignKey("console_operator.id"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())  # the absolute end


class SigninFailure(Base):
    """Failed sign-ins of one subject (an account or a client address) in one fixed window,
    counted with one upsert like the guard's counters, so every process sees the same total."""

    __tablename__ = "console_signin_failure"

    # "acct:<hash of the e-mail>" or "addr:<hash of the address>": never the raw value.
    subject: Mapped[str] = mapped_column(String(80), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # epoch seconds
    failures: Mapped[int] = mapped_column(Integer)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ConsoleEvent(Base):
    """Operator actions outside any voucher: signed in, locked out, account created..."""

    __tablename__ = "console_event"
    __table_args__ = (Index("ix_console_event_tenant_id_id", "tenant_id", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenant.id"))
    operator_id: Mapped[str | None] = mapped_column(String(32))
    actor: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
