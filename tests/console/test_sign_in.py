"""Operators, sign-in, sessions, CSRF, roles and lockout, on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.factories.tenants import Tenant
from tests.support.clock import FakeClock
from tests.support.console import PASSWORD, browser, csrf_of, make_operator, sign_in
from voucherd.console import service
from voucherd.console.models import ConsoleEvent, ConsoleSession
from voucherd.db.engine import Database
from voucherd.errors import Conflict, InvalidInput


class TestCreateOperator:
    def test_email_is_unique_and_password_long_enough(self, db: Database) -> None:
        tenant = Tenant(db)
        made = make_operator(db, tenant)
        with pytest.raises(Conflict):
            service.create_operator(
                db, tenant_id=tenant.id, email=made.email.upper(), password=PASSWORD, role="admin"
            )
        with pytest.raises(InvalidInput) as short:
            service.create_operator(
                db, tenant_id=tenant.id, email="x@shop.example", password="short", role="admin"
            )
        assert short.value.field == "password"

    def test_the_password_is_stored_hashed(self, db: Database) -> None:
        made = make_operator(db, Tenant(db))
        with db.unit_of_work(write=False) as session:
            stored = session.scalar(
                select(service.Operator.password_hash).where(service.Operator.id == made.id)
            )
        assert stored is not None
        assert stored.startswith("$argon2id$")
        assert PASSWORD not in stored


class TestSignIn:
    def test_cookie_flags_and_the_first_page(self, db: Database) -> None:
        operator = make_operator(db, Tenant(db), "cashier")
        with browser(db) as client:
            page = client.get("/console/sign-in")
            pre = page.cookies.get("voucherd_console_pre")
            answer = client.post(
                "/console/sign-in",
                data={"pre": pre, "email": operator.email, "password": PASSWORD},
                follow_redirects=False,
            )
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/till"
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie
        assert "Secure" in cookie
        assert "Path=/console" in cookie
        assert PASSWORD not in answer.text

    def test_wrong_password_names_the_field_and_keeps_the_email(self, db: Database) -> None:
        operator = make_operator(db, Tenant(db))
        with browser(db) as client:
            page = client.get("/console/sign-in")
            answer = client.post(
                "/console/sign-in",
                data={
                    "pre": page.cookies.get("voucherd_console_pre"),
                    "email": operator.email,
                    "password": "wrong password!",
                },
            )
        assert answer.status_code == 401
        assert 'id="e-password"' in answer.text
        assert "wrong e-mail or password" in answer.text
        assert f'value="{operator.email}"' in answer.text
        assert "wrong password!" not in answer.text

    def test_without_a_session_every_page_goes_to_sign_in(self, db: Database) -> None:
        with browser(db) as client:
            for path in ("/console/", "/console/till", "/console/settings/operators"):
                answer = client.get(path, follow_redirects=False)
                assert answer.status_code == 303
                assert answer.headers["location"] == "/console/sign-in"


class TestLockout:
    def test_slowed_then_locked_per_account(self, db: Database, clock: FakeClock) -> None:
        operator = make_operator(db, Tenant(db))
        for _ in range(service.ACCOUNT_SLOW_AFTER):
            with pytest.raises(service.SignInRefused):
                service.sign_in(db, operator.email, "nope nope nope", address="10.0.0.1")
        # Slowed: even the right password waits.
        with pytest.raises(service.SignInThrottled):
            service.sign_in(db, operator.email, PASSWORD, address="10.0.0.2")
        for _ in range(service.ACCOUNT_LOCK_AFTER - service.ACCOUNT_SLOW_AFTER):
            clock.advance(seconds=service.SLOW_SECONDS)
            with pytest.raises(service.SignInRefused):
                service.sign_in(db, operator.email, "nope nope nope", address="10.0.0.1")
        clock.advance(seconds=service.SLOW_SECONDS)
        with pytest.raises(service.SignInThrottled) as locked:
            service.sign_in(db, operator.email, PASSWORD, address="10.0.0.3")
        assert "locked" in locked.value.detail
        with db.unit_of_work(write=False) as session:
            kinds = session.scalars(
                select(ConsoleEvent.kind).where(ConsoleEvent.operator_id == operator.id)
            ).all()
        assert "signin_locked" in kinds
        clock.advance(seconds=service.WINDOW_SECONDS)
        assert service.sign_in(db, operator.email, PASSWORD, address="10.0.0.3").token

    def test_locked_per_address_across_accounts(self, db: Database, clock: FakeClock) -> None:
        operator = make_operator(db, Tenant(db))
        for n in range(service.ADDRESS_LOCK_AFTER):
            clock.advance(seconds=service.SLOW_SECONDS)
            with pytest.raises(service.SignInRefused):
                service.sign_in(db, f"nobody{n}@x.example", "guess guess", address="10.9.9.9")
        clock.advance(seconds=service.SLOW_SECONDS)
        with pytest.raises(service.SignInThrottled):
            service.sign_in(db, operator.email, PASSWORD, address="10.9.9.9")
        assert service.sign_in(db, operator.email, PASSWORD, address="10.1.1.1").token

    def test_the_form_answers_429_with_retry_after(self, db: Database) -> None:
        operator = make_operator(db, Tenant(db))
        with browser(db) as client:
            pre = client.get("/console/sign-in").cookies.get("voucherd_console_pre")
            codes = [
                client.post(
                    "/console/sign-in",
                    data={"pre": pre, "email": operator.email, "password": "bad bad bad"},
                ).status_code
                for _ in range(service.ACCOUNT_SLOW_AFTER + 1)
            ]
            assert codes[-1] == 429


class TestSessions:
    def test_idle_and_absolute_expiry(self, db: Database, clock: FakeClock) -> None:
        operator = make_operator(db, Tenant(db))
        new = service.sign_in(db, operator.email, PASSWORD, address="a")
        clock.advance(seconds=service.IDLE.total_seconds() - 60)
        assert service.session_for(db, new.token) is not None
        clock.advance(seconds=service.IDLE.total_seconds() - 60)
        assert service.session_for(db, new.token) is not None  # touched: still alive
        clock.advance(seconds=service.IDLE.total_seconds() + 1)
        assert service.session_for(db, new.token) is None
        other = service.sign_in(db, operator.email, PASSWORD, address="a")
        for _ in range(int(service.ABSOLUTE / service.IDLE) + 1):
            clock.advance(seconds=service.IDLE.total_seconds() - 60)
            service.session_for(db, other.token)
        assert service.session_for(db, other.token) is None

    def test_sign_out_ends_the_session_everywhere(self, db: Database) -> None:
        operator = make_operator(db, Tenant(db))
        with browser(db) as client:
            csrf = sign_in(client, operator.email)
            cookie = client.cookies.get("voucherd_console")
            answer = client.post("/console/sign-out", data={"csrf": csrf})
            assert answer.status_code == 200
            assert "Sign in to voucherd" in answer.text
        assert cookie
        assert service.session_for(db, cookie) is None
        with browser(db) as replayed:
            replayed.cookies.set("voucherd_console", cookie, domain="testserver", path="/console")
            assert replayed.get("/console/till", follow_redirects=False).status_code == 303

    def test_password_change_ends_every_other_session(self, db: Database) -> None:
        operator = make_operator(db, Tenant(db))
        elsewhere = service.sign_in(db, operator.email, PASSWORD, address="b")
        with browser(db) as client:
            csrf = sign_in(client, operator.email)
            answer = client.post(
                "/console/account/password",
                data={"csrf": csrf, "current_password": "wrong one!", "new_password": "x" * 12},
            )
            assert answer.status_code == 422
            assert "not your current password" in answer.text
            answer = client.post(
                "/console/account/password",
                data={
                    "csrf": csrf,
                    "current_password": PASSWORD,
                    "new_password": "a new password",
                },
            )
            assert answer.status_code == 200
            assert 'id="password-changed"' in answer.text
            assert client.get("/console/account").status_code == 200  # this browser stays in
        assert service.session_for(db, elsewhere.token) is None
        with db.unit_of_work(write=False) as session:
            left = session.scalars(
                select(ConsoleSession).where(ConsoleSession.operator_id == operator.id)
            ).all()
        assert len(left) == 1
        with pytest.raises(service.SignInRefused):
            service.sign_in(db, operator.email, PASSWORD, address="c")


class TestCsrfAndRoles:
    def test_a_post_without_the_token_is_refused(self, db: Database) -> None:
        operator = make_operator(db, Tenant(db))
        with browser(db) as client:
            sign_in(client, operator.email)
            answer = client.post(
                "/console/settings/operators",
                data={"email": "new@shop.example", "password": PASSWORD, "role": "admin"},
            )
            assert answer.status_code == 403
            forged = client.post(
                "/console/settings/operators",
                data={"csrf": "forged", "email": "n@shop.example", "password": PASSWORD},
            )
            assert forged.status_code == 403
        assert [o.email for o in service.list_operators(db, operator.caller)] == [operator.email]

    def test_an_admin_adds_an_operator_and_bad_input_keeps_values(self, db: Database) -> None:
        admin = make_operator(db, Tenant(db))
        with browser(db) as client:
            csrf = sign_in(client, admin.email)
            bad = client.post(
                "/console/settings/operators",
                data={"csrf": csrf, "email": "clerk@shop.example", "name": "Clerk",
                      "password": "short", "role": "cashier"},
            )  # fmt: skip
            assert bad.status_code == 422
            assert "at least 10 characters" in bad.text
            assert 'value="clerk@shop.example"' in bad.text
            assert 'value="Clerk"' in bad.text
            good = client.post(
                "/console/settings/operators",
                data={"csrf": csrf, "email": "clerk@shop.example", "password": PASSWORD,
                      "role": "cashier"},
            )  # fmt: skip
            assert good.status_code == 200
            assert "clerk@shop.example" in good.text

    def test_a_cashier_cannot_open_admin_pages(self, db: Database) -> None:
        cashier = make_operator(db, Tenant(db), "cashier")
        with browser(db) as client:
            csrf_of(client.get("/console/sign-in").text.replace("pre", "csrf"))
            sign_in(client, cashier.email)
            assert client.get("/console/settings/operators").status_code == 403
            assert client.get("/console/till").status_code == 200
