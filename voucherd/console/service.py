"""Operators, sign-in and sessions: the console's own use cases.

Everything an operator does to vouchers, campaigns and customers goes through the core's
services with a :class:`Caller` whose ``key_id`` is the operator's id, so the core's events name
the operator exactly as they name an API key. What lives here is only who may sign in, how
long a session lasts, and how hard a password may be guessed.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from voucherd.auth.caller import Caller
from voucherd.auth.models import Tenant
from voucherd.console.models import ROLES, ConsoleEvent, ConsoleSession, Operator, SigninFailure
from voucherd.console.schemas import NewSession, OperatorView, SignedIn
from voucherd.db.dialect import upsert
from voucherd.db.engine import Database
from voucherd.errors import Conflict, DomainError, ErrorCode, Forbidden, InvalidInput, NotFound
from voucherd.ids import new_id

IDLE = timedelta(minutes=30)
ABSOLUTE = timedelta(hours=12)
# Touching last_seen_at on every page would turn every read into a write; once a minute keeps
# the idle expiry accurate to a minute.
TOUCH_EVERY = timedelta(minutes=1)
MIN_PASSWORD = 10

# Failed sign-ins, per account and per client address, in fixed windows: past SLOW_AFTER each
# further try waits SLOW_SECONDS after the last failure; past LOCK_AFTER the subject is locked
# out until the window ends. An address gets more tries, as an office shares one.
WINDOW_SECONDS = 900
SLOW_SECONDS = 5
ACCOUNT_SLOW_AFTER, ACCOUNT_LOCK_AFTER = 3, 10
ADDRESS_SLOW_AFTER, ADDRESS_LOCK_AFTER = 10, 50

# argon2id at OWASP's recommended floor (19 MiB, 2 passes, 1 lane): a sign-in costs tens of
# milliseconds, not the library default's 64 MiB and several hundred on a small shared server.
_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
# Verified against when the e-mail is unknown, so a miss costs what a wrong password costs
# and the answer's timing does not tell which addresses have accounts.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class SignInRefused(DomainError):
    status, code, title = 401, ErrorCode.SIGN_IN_REFUSED, "Sign-in refused"


class SignInThrottled(DomainError):
    status, code, title = 429, ErrorCode.SIGN_IN_THROTTLED, "Too many failed sign-ins"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, field="password")
        self.retry_after = retry_after


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _view(operator: Operator, tenant_name: str) -> OperatorView:
    return OperatorView(
        operator.id,
        operator.tenant_id,
        tenant_name,
        operator.email,
        operator.name,
        operator.role,
        operator.created_at,
        operator.disabled_at is not None,
    )


def _event(
    session: Session,
    now: datetime,
    kind: str,
    *,
    tenant_id: str | None,
    operator_id: str | None,
    actor: str | None,
    detail: str | None = None,
) -> None:
    session.add(
        ConsoleEvent(
            tenant_id=tenant_id,
            operator_id=operator_id,
            actor=actor,
            kind=kind,
            detail=detail,
            created_at=now,
        )
    )


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"at least {MIN_PASSWORD} characters", field="password")
    if len(password) > 200:
        raise InvalidInput("at most 200 characters", field="password")


def _check_email(email: str) -> str:
    email = email.strip().lower()
    local, at, domain = email.partition("@")
    if not at or not local or "." not in domain or len(email) > 254 or " " in email:
        raise InvalidInput("not an e-mail address", field="email")
    return email


def create_operator(
    db: Database,
    *,
    tenant_id: str,
    email: str,
    password: str,
    role: str,
    name: str | None = None,
    created_by: str | None = None,
) -> OperatorView:
    """A new operator of ``tenant_id``; ``created_by`` is the admin's id (None: the CLI)."""
    email = _check_email(email)
    if role not in ROLES:
        raise InvalidInput(f"one of {', '.join(ROLES)}", field="role")
    _check_password(password)
    now = db.now()
    with db.unit_of_work() as session:
        tenant = session.get(Tenant, tenant_id)
        if tenant is None:
            raise NotFound("tenant not found", field="tenant")
        operator = Operator(
            id=new_id("opr"),
            tenant_id=tenant_id,
            email=email,
            name=(name or "").strip() or None,
            role=role,
            password_hash=_hasher.hash(password),
            created_at=now,
            created_by=created_by,
        )
        session.add(operator)
        try:
            session.flush()
        except IntegrityError as exc:
            raise Conflict("an operator with this e-mail exists", field="email") from exc
        _event(
            session,
            now,
            "operator_created",
            tenant_id=tenant_id,
            operator_id=operator.id,
            actor=created_by or "cli",
            detail=f"role {role}",
        )
        session.commit()
        return _view(operator, tenant.name)


def list_operators(db: Database, caller: Caller) -> list[OperatorView]:
    with db.unit_of_work(write=False) as session:
        rows = session.execute(
            select(Operator, Tenant.name)
            .join(Tenant, Tenant.id == Operator.tenant_id)
            .where(Operator.tenant_id == caller.tenant_id)
            .order_by(Operator.email)
        ).all()
        return [_view(operator, name) for operator, name in rows]


def set_operator_disabled(
    db: Database, caller: Caller, operator_id: str, *, disabled: bool
) -> OperatorView:
    """Switch an operator off (their sessions end at once) or on again."""
    if operator_id == caller.key_id:
        raise InvalidInput("you cannot switch yourself off", field="operator")
    now = db.now()
    with db.unit_of_work() as session:
        operator = session.scalar(
            select(Operator).where(
                Operator.id == operator_id, Operator.tenant_id == caller.tenant_id
            )
        )
        if operator is None:
            raise NotFound("no such operator", field="operator")
        operator.disabled_at = now if disabled else None
        if disabled:
            session.execute(delete(ConsoleSession).where(ConsoleSession.operator_id == operator_id))
        _event(
            session,
            now,
            "operator_disabled" if disabled else "operator_enabled",
            tenant_id=caller.tenant_id,
            operator_id=operator_id,
            actor=caller.key_id,
        )
        tenant_name = session.scalar(select(Tenant.name).where(Tenant.id == caller.tenant_id))
        session.commit()
        return _view(operator, tenant_name or "")


# --- sign-in ---------------------------------------------------------------------------------


def _subjects(email: str, address: str) -> list[tuple[str, int, int]]:
    return [
        (f"acct:{_hash(email.strip().lower())[:32]}", ACCOUNT_SLOW_AFTER, ACCOUNT_LOCK_AFTER),
        (f"addr:{_hash(address)[:32]}", ADDRESS_SLOW_AFTER, ADDRESS_LOCK_AFTER),
    ]


def _refuse_if_throttled(
    session: Session, subjects: list[tuple[str, int, int]], now: datetime
) -> None:
    stamp = now.timestamp()
    window_start = int(stamp // WINDOW_SECONDS) * WINDOW_SECONDS
    rows = session.execute(
        select(SigninFailure).where(
            SigninFailure.subject.in_([s for s, _, _ in subjects]),
            SigninFailure.window_start == window_start,
        )
    ).scalars()
    counts = {row.subject: row for row in rows}
    for subject, slow_after, lock_after in subjects:
        row = counts.get(subject)
        if row is None:
            continue
        if row.failures >= lock_after:
            wait = math.ceil(window_start + WINDOW_SECONDS - stamp)
            raise SignInThrottled(
                f"too many failed sign-ins: locked for {max(1, wait // 60)} minutes",
                retry_after=max(1, wait),
            )
        wait = math.ceil(row.last_at.timestamp() + SLOW_SECONDS - stamp)
        if row.failures >= slow_after and wait > 0:
            raise SignInThrottled(
                f"too many failed sign-ins: wait {wait} seconds before trying again",
                retry_after=wait,
            )


def _count_failure(db: Database, subjects: list[tuple[str, int, int]], email: str) -> None:
    """Count the failure in its own transaction: it must stay even though sign-in failed."""
    now = db.now()
    window_start = int(now.timestamp() // WINDOW_SECONDS) * WINDOW_SECONDS
    with db.unit_of_work() as session:
        statement = upsert(session, SigninFailure).values(
            [
                {"subject": s, "window_start": window_start, "failures": 1, "last_at": now}
                for s, _, _ in sorted(subjects)
            ]
        )
        statement = statement.on_conflict_do_update(
            index_elements=[SigninFailure.subject, SigninFailure.window_start],
            set_={
                "failures": SigninFailure.failures + 1,
                "last_at": statement.excluded.last_at,
            },
        ).returning(SigninFailure.subject, SigninFailure.failures)
        totals = {str(s): int(n) for s, n in session.execute(statement)}
        operator = session.scalar(select(Operator).where(Operator.email == email.lower()))
        account = subjects[0][0]
        if operator is not None and totals.get(account) == ACCOUNT_LOCK_AFTER:
            _event(
                session,
                now,
                "signin_locked",
                tenant_id=operator.tenant_id,
                operator_id=operator.id,
                actor=None,
                detail=f"{ACCOUNT_LOCK_AFTER} failed sign-ins",
            )
        session.commit()


def sign_in(db: Database, email: str, password: str, *, address: str) -> NewSession:
    """A new session for the right e-mail and password; slowed, then refused, when guessed."""
    email = email.strip().lower()[:254]
    subjects = _subjects(email, address)
    now = db.now()
    with db.unit_of_work(write=False) as session:
        _refuse_if_throttled(session, subjects, now)
        row = session.execute(
            select(Operator, Tenant.name)
            .join(Tenant, Tenant.id == Operator.tenant_id)
            .where(Operator.email == email)
        ).first()
    stored = row[0].password_hash if row is not None else _DUMMY_HASH
    try:
        ok = _hasher.verify(stored, password[:200]) and row is not None
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok or row is None or row[0].disabled_at is not None:
        _count_failure(db, subjects, email)
        raise SignInRefused("wrong e-mail or password", field="password")
    operator, tenant_name = row
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    with db.unit_of_work() as session:
        session.add(
            ConsoleSession(
                token_hash=_hash(token),
                tenant_id=operator.tenant_id,
                operator_id=operator.id,
                csrf_token=csrf,
                created_at=now,
                last_seen_at=now,
                expires_at=now + ABSOLUTE,
            )
        )
        # A good password clears the account's count (not the address's: one right password
        # must not buy a guesser fresh tries at every other account).
        session.execute(delete(SigninFailure).where(SigninFailure.subject == subjects[0][0]))
        _event(
            session,
            now,
            "signed_in",
            tenant_id=operator.tenant_id,
            operator_id=operator.id,
            actor=operator.id,
        )
        session.commit()
    return NewSession(token, SignedIn(_view(operator, tenant_name), csrf, _hash(token)))


def session_for(db: Database, token: str) -> SignedIn | None:
    """The live session behind a cookie, or None (unknown, idle too long, past its end)."""
    if not token or len(token) > 100:
        return None
    token_hash = _hash(token)
    now = db.now()
    with db.unit_of_work(write=False) as session:
        row = session.execute(
            select(ConsoleSession, Operator, Tenant.name)
            .join(Operator, Operator.id == ConsoleSession.operator_id)
            .join(Tenant, Tenant.id == Operator.tenant_id)
            .where(ConsoleSession.token_hash == token_hash)
        ).first()
    if row is None:
        return None
    live, operator, tenant_name = row
    if live.expires_at <= now or live.last_seen_at + IDLE <= now or operator.disabled_at:
        end_session(db, token_hash)
        return None
    if now - live.last_seen_at >= TOUCH_EVERY:
        with db.unit_of_work() as session:
            session.execute(
                update(ConsoleSession)
                .where(ConsoleSession.token_hash == token_hash)
                .values(last_seen_at=now)
            )
            session.commit()
    return SignedIn(_view(operator, tenant_name), live.csrf_token, token_hash)


def end_session(db: Database, token_hash: str, *, actor: str | None = None) -> None:
    """Sign out: the row goes, so no process will accept the cookie again."""
    with db.unit_of_work() as session:
        gone = session.execute(
            delete(ConsoleSession)
            .where(ConsoleSession.token_hash == token_hash)
            .returning(ConsoleSession.tenant_id, ConsoleSession.operator_id)
        ).first()
        if gone is not None and actor is not None:
            _event(
                session,
                db.now(),
                "signed_out",
                tenant_id=gone[0],
                operator_id=gone[1],
                actor=actor,
            )
        session.commit()


def change_password(db: Database, signed_in: SignedIn, current: str, new: str) -> NewSession:
    """A new password ends every session of the operator, this one included; the browser
    that changed it gets a fresh one."""
    operator = signed_in.operator
    with db.unit_of_work(write=False) as session:
        stored = session.scalar(select(Operator.password_hash).where(Operator.id == operator.id))
    try:
        _hasher.verify(stored or _DUMMY_HASH, current[:200])
    except (VerificationError, InvalidHashError) as exc:
        raise InvalidInput("not your current password", field="current_password") from exc
    _check_password(new)
    now = db.now()
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    with db.unit_of_work() as session:
        session.execute(
            update(Operator)
            .where(Operator.id == operator.id)
            .values(password_hash=_hasher.hash(new))
        )
        session.execute(delete(ConsoleSession).where(ConsoleSession.operator_id == operator.id))
        session.add(
            ConsoleSession(
                token_hash=_hash(token),
                tenant_id=operator.tenant_id,
                operator_id=operator.id,
                csrf_token=csrf,
                created_at=now,
                last_seen_at=now,
                expires_at=now + ABSOLUTE,
            )
        )
        _event(
            session,
            now,
            "password_changed",
            tenant_id=operator.tenant_id,
            operator_id=operator.id,
            actor=operator.id,
        )
        session.commit()
    return NewSession(token, SignedIn(operator, csrf, _hash(token)))


def csrf_matches(signed_in: SignedIn, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(signed_in.csrf_token, presented)


def require_role(signed_in: SignedIn, *roles: str) -> None:
    if signed_in.operator.role not in roles:
        raise Forbidden("your role does not open this page")


def operator_names(db: Database, caller: Caller, ids: set[str]) -> dict[str, str]:
    """E-mails of the tenant's operators among ``ids`` (event actors), to show who did what."""
    wanted = [i for i in ids if i and i.startswith("opr_")]
    if not wanted:
        return {}
    with db.unit_of_work(write=False) as session:
        rows = session.execute(
            select(Operator.id, Operator.email).where(
                Operator.tenant_id == caller.tenant_id, Operator.id.in_(wanted)
            )
        ).all()
    return {i: e for i, e in rows}


def list_console_events(db: Database, caller: Caller, *, limit: int = 50) -> list[ConsoleEvent]:
    with db.unit_of_work(write=False) as session:
        return list(
            session.scalars(
                select(ConsoleEvent)
                .where(ConsoleEvent.tenant_id == caller.tenant_id)
                .order_by(ConsoleEvent.id.desc())
                .limit(limit)
            )
        )
