"""Guessing (voucherd/guard): failed code lookups counted per key and address, the guesser
slowed then refused with an event recorded, nobody else troubled, typos free and told so, and
every miss reading the same. Time here is the Database's clock (``FakeClock``), moved by the tests.

The brute-force test makes 5,000 well-formed guesses against 5,000 live codes in CI. The guesser
keeps trying after its first refusal for as many guesses as it was let through (200, the default
threshold), every one of them refused; the guesses it never sends are checked against the live
codes in the database all the same. The issue's full size is one command::

    VOUCHERD_BRUTE_FORCE_SIZE=100000 .venv/bin/pytest tests/guard/test_guessing.py -k brute -p no:cacheprovider
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select
from typer.testing import CliRunner

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant, make_tenant
from tests.factories.vouchers import issue
from tests.support.clock import FakeClock
from voucherd.app import create_app
from voucherd.cli import app as cli
from voucherd.codes.generator import DEFAULT_ALPHABET, DEFAULT_SPEC
from voucherd.config import Settings
from voucherd.db.engine import Database
from voucherd.guard.models import GUESS, GuardCounter, GuardEvent
from voucherd.vouchers.mint import mint_vouchers
from voucherd.vouchers.models import Voucher
from voucherd.vouchers.schemas import MintVouchers

GUESSER = ("203.0.113.66", 40000)
HOLDER = ("198.51.100.20", 40000)
BRUTE_FORCE_SIZE = int(os.environ.get("VOUCHERD_BRUTE_FORCE_SIZE", "5000"))


def _app(db: Database, settings: Settings, **overrides: Any) -> Any:
    return create_app(settings.model_copy(update=overrides), db=db)


def _typo(code: str) -> str:
    """The code with its last character changed: a single substitution always fails the check."""
    other = DEFAULT_ALPHABET[(DEFAULT_ALPHABET.index(code[-1]) + 1) % len(DEFAULT_ALPHABET)]
    return code[:-1] + other


def _redeem(client: TestClient, tenant: Tenant, code: str, **headers: str) -> httpx.Response:
    return client.post(
        "/api/v1/redemptions",
        headers={**tenant.headers, **headers},
        json={"code": code, "amount": 1},
    )


def _events(db: Database) -> list[tuple[str, str | None, str | None, int]]:
    with db.unit_of_work(write=False) as session:
        rows = session.execute(
            select(
                GuardEvent.kind, GuardEvent.key_id, GuardEvent.address, GuardEvent.failures
            ).order_by(GuardEvent.id)
        ).all()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


@contextmanager
def _voucher_queries(db: Database) -> Iterator[list[str]]:
    """Every statement that reads the voucher table while the block runs."""
    seen: list[str] = []

    def note(*args: Any) -> None:
        statement = str(args[2])
        if "FROM voucher" in statement:
            seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", note)


class TestGuesser:
    SLOW_AFTER, REFUSE_AFTER, SLOW_SECONDS = 3, 6, 10

    def test_slowed_then_refused_with_events_while_everyone_else_redeems(
        self, db: Database, settings: Settings, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        card = issue(db, tenant, make_campaign(db, tenant))
        guesser_key = tenant.key  # the tenant's own key, leaked or misused
        holder = Tenant.__new__(Tenant)  # the same tenant's till, on its own key
        holder.headers = tenant.key_with(db, ["redeem"])
        app = _app(
            db,
            settings,
            guess_slow_after=self.SLOW_AFTER,
            guess_refuse_after=self.REFUSE_AFTER,
            guess_slow_seconds=self.SLOW_SECONDS,
        )
        guesses = iter(DEFAULT_SPEC.generate(20))
        with (
            TestClient(app, client=GUESSER) as guesser,
            TestClient(app, client=HOLDER) as till,
        ):
            for _ in range(self.SLOW_AFTER):
                assert _redeem(guesser, tenant, next(guesses)).status_code == 404
            assert [e[0] for e in _events(db)] == ["guessing_slowed", "guessing_slowed"]

            # Slowed: one lookup per SLOW_SECONDS, even of a real code.
            slowed = _redeem(guesser, tenant, card.voucher.code)
            assert slowed.status_code == 429
            assert slowed.headers["Retry-After"] == str(self.SLOW_SECONDS)
            assert slowed.json()["code"] == "too_many_failed_lookups"
            for _ in range(self.REFUSE_AFTER - self.SLOW_AFTER):
                clock.advance(seconds=self.SLOW_SECONDS)
                assert _redeem(guesser, tenant, next(guesses)).status_code == 404

            # Refused: waiting the slow interval no longer helps; the window must end.
            clock.advance(seconds=self.SLOW_SECONDS)
            refused = _redeem(guesser, tenant, next(guesses))
            assert refused.status_code == 429
            assert int(refused.headers["Retry-After"]) > self.SLOW_SECONDS
            events = _events(db)
            assert sorted(e[0] for e in events[2:]) == ["guessing_refused", "guessing_refused"]
            assert {(e[1], e[2], e[3]) for e in events[2:]} == {
                (guesser_key.key_id, GUESSER[0], self.REFUSE_AFTER)
            }

            # The code the guesser touched is not locked: its holder, on another key and
            # address, redeems it; so does another tenant; the guesser's other calls still work.
            assert (
                till.post(
                    "/api/v1/redemptions",
                    headers=holder.headers,
                    json={"code": card.voucher.code, "amount": 1},
                ).status_code
                == 201
            )
            other = make_tenant(db)
            theirs = issue(db, other, make_campaign(db, other)).voucher.code
            assert _redeem(till, other, theirs).status_code == 201
            assert guesser.get("/api/v1/tenant", headers=tenant.headers).status_code == 200

            # A new window forgives.
            clock.advance(seconds=settings.guess_window_seconds)
            assert _redeem(guesser, tenant, card.voucher.code).status_code == 201

    def test_the_page_counts_unknown_links_per_address(
        self, db: Database, settings: Settings, clock: FakeClock
    ) -> None:
        tenant = make_tenant(db)
        token = issue(db, tenant, make_campaign(db, tenant)).voucher.public_token
        app = _app(db, settings, guess_slow_after=2, guess_refuse_after=2)
        unknown = "".join(reversed(token))
        with (
            TestClient(app, client=GUESSER) as guesser,
            TestClient(app, client=HOLDER) as holder,
        ):
            assert [guesser.get(f"/v/{unknown}").status_code for _ in range(2)] == [404, 404]
            refused = guesser.get(f"/v/{token}")
            assert refused.status_code == 429
            assert refused.headers["content-type"].startswith("text/html")
            assert holder.get(f"/v/{token}").status_code == 200
        assert [(e[0], e[1], e[2]) for e in _events(db)] == [
            ("guessing_slowed", None, GUESSER[0]),
            ("guessing_refused", None, GUESSER[0]),
        ]


class TestTypos:
    def test_a_typo_never_reaches_the_database_and_is_never_counted(
        self, db: Database, settings: Settings
    ) -> None:
        tenant = make_tenant(db)
        code = issue(db, tenant, make_campaign(db, tenant)).voucher.code
        app = _app(db, settings, guess_slow_after=2, guess_refuse_after=3)
        with TestClient(app, client=GUESSER) as client:
            with _voucher_queries(db) as seen:
                typos = [
                    _redeem(client, tenant, _typo(code)),
                    client.post(f"/api/v1/vouchers/{_typo(code)}/cancel", headers=tenant.headers),
                    client.get(f"/api/v1/vouchers/{_typo(code)}", headers=tenant.headers),
                ] * 4
            assert seen == []
            assert {t.status_code for t in typos} == {404}
            with db.unit_of_work(write=False) as session:
                counted = session.scalar(
                    select(func.count()).select_from(GuardCounter).where(GuardCounter.kind == GUESS)
                )
            assert counted == 0
            assert _events(db) == []
            # The holder, who mistyped twelve times, redeems the real code at once.
            assert _redeem(client, tenant, code).status_code == 201

    def test_loose_typing_is_counted_as_exact_typing_is(
        self, db: Database, settings: Settings
    ) -> None:
        """Issue 15: lower case, spaces and dashes are read for voucherd's own codes. A typo
        that no stored code can be is free, as before; text that may be a stored code as it
        stands is looked up and counted, as before; each code asked of the database counts."""
        tenant = make_tenant(db)
        code = issue(db, tenant, make_campaign(db, tenant)).voucher.code
        unknown = DEFAULT_SPEC.generate(1)[0]
        with TestClient(_app(db, settings), client=GUESSER) as client:

            def misses_after(typed: str, answer: str) -> int:
                refused = _redeem(client, tenant, typed)
                assert (refused.status_code, refused.json()["code"]) == (404, answer), typed
                with db.unit_of_work(write=False) as session:
                    hits = session.scalar(
                        select(func.max(GuardCounter.hits)).where(GuardCounter.kind == GUESS)
                    )
                return int(hits or 0)

            typo = _typo(code)
            assert misses_after(typo, "code_mistyped") == 0
            assert misses_after(f"{typo[:4]} {typo[4:8]} {typo[8:]}".lower(), "code_mistyped") == 0
            # "abcd...": a code_config or imported code may be exactly that; it is looked up.
            assert misses_after(typo.lower(), "code_mistyped") == 1
            assert misses_after(unknown, "not_found") == 2
            # The text as typed, and voucherd's canonical form of it: two codes asked.
            assert misses_after(unknown.lower(), "not_found") == 4
            # No stored code holds a space: only the canonical form is asked.
            assert misses_after(f"{unknown[:6]} {unknown[6:]}", "not_found") == 5
            assert _redeem(client, tenant, code.lower()).status_code == 201

    def test_a_well_formed_unknown_code_does_reach_it(
        self, db: Database, settings: Settings
    ) -> None:
        """The control of the test above: the listener sees lookups that happen."""
        tenant = make_tenant(db)
        with TestClient(_app(db, settings)) as client, _voucher_queries(db) as seen:
            assert _redeem(client, tenant, DEFAULT_SPEC.generate(1)[0]).status_code == 404
        assert seen


Lookup = Callable[[TestClient, Tenant, str], httpx.Response]


def _native_redeem(client: TestClient, tenant: Tenant, code: str) -> httpx.Response:
    return _redeem(client, tenant, code)


def _native_validate(client: TestClient, tenant: Tenant, code: str) -> httpx.Response:
    return client.post(
        "/api/v1/validations", headers=tenant.headers, json={"code": code, "amount": 1}
    )


def _native_cancel(client: TestClient, tenant: Tenant, code: str) -> httpx.Response:
    return client.post(f"/api/v1/vouchers/{code}/cancel", headers=tenant.headers)


def _voucherify_get(client: TestClient, tenant: Tenant, code: str) -> httpx.Response:
    headers = {"X-App-Id": tenant.key.key_id, "X-App-Token": tenant.key.secret}
    return client.get(f"/v1/vouchers/{code}", headers=headers)


def _voucherify_redeem(client: TestClient, tenant: Tenant, code: str) -> httpx.Response:
    headers = {"X-App-Id": tenant.key.key_id, "X-App-Token": tenant.key.secret}
    return client.post(
        f"/v1/vouchers/{code}/redemption", headers=headers, json={"order": {"amount": 100}}
    )


def _yoyo_get(client: TestClient, tenant: Tenant, code: str) -> httpx.Response:
    headers = {"apiId": tenant.key.key_id, "apiPassword": tenant.key.secret}
    return client.get(f"/cvs-issuer/rest/coupons/{code}", headers=headers)


def _imovo_cancel(client: TestClient, tenant: Tenant, code: str) -> httpx.Response:
    return client.post(
        "/Voucher/CancelVoucher",
        headers={"X-API-KEY": tenant.key.token},
        json={"voucherCode": code},
    )


LOOKUPS: list[Lookup] = [
    _native_redeem,
    _native_validate,
    _native_cancel,
    _voucherify_get,
    _voucherify_redeem,
    _yoyo_get,
    _imovo_cancel,
]
# What differs between two answers by design: ids made per request.
_PER_REQUEST = ("request_id", "traceId")


def _comparable(response: httpx.Response) -> tuple[int, str, Any]:
    body = response.json()
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in _PER_REQUEST}
    return response.status_code, response.headers["content-type"], body


class TestEveryMissReadsTheSame:
    @pytest.mark.parametrize("lookup", LOOKUPS, ids=lambda f: f.__name__.lstrip("_"))
    def test_unknown_another_tenants_and_mistyped_codes_answer_alike(
        self, api: TestClient, db: Database, lookup: Lookup
    ) -> None:
        mine, theirs = make_tenant(db), make_tenant(db)
        their_code = issue(db, theirs, make_campaign(db, theirs)).voucher.code
        unknown = DEFAULT_SPEC.generate(1)[0]
        misses = {
            "unknown": unknown,
            "another tenant's": their_code,
            "mistyped": _typo(their_code),
            "mistyped unknown": _typo(unknown),
        }
        answers = {name: _comparable(lookup(api, mine, code)) for name, code in misses.items()}
        assert answers["unknown"][0] in (200, 404)  # validate answers 200 "not valid"
        assert answers["another tenant's"] == answers["unknown"]
        # Issue 15: a typo says so (arithmetic on the typed text), whoever's code it was near.
        assert answers["mistyped"] == answers["mistyped unknown"]
        assert answers["mistyped"][0] == answers["unknown"][0]
        assert "mistyped" in str(answers["mistyped"][2])
        for _, _, body in answers.values():
            assert their_code not in str(body)


class TestBruteForce:
    def test_guesses_against_live_codes_find_nothing_and_are_refused_early(
        self, fresh_database: Callable[..., Database], clock: FakeClock
    ) -> None:
        """BRUTE_FORCE_SIZE well-formed guesses (valid check character) against as many live
        codes, by a patient guesser who waits whenever it is only slowed down. Validations:
        the cheapest lookup, and one whose answer would tell a hit from a miss."""
        # Real commits, as in production: inside one test transaction PostgreSQL would keep a
        # lock per committed savepoint until the end and run out of lock slots at full size.
        fresh = fresh_database(pool_size=4)
        # Keys cached as in production; the guessing guard's defaults (slow after 50, refuse
        # after 200 per hour) on the test's clock. Request rate limits out of the way: at full
        # size this one key would also meet them (they run on the wall clock), and this test is
        # about guessing.
        settings = fresh.settings.model_copy(
            update={
                "key_cache_seconds": 60,
                "rate_limit_per_key": 10**9,
                "rate_limit_per_tenant": 10**9,
            }
        )
        db = Database(fresh.engine, settings=settings, clock=clock)
        tenant = make_tenant(db)
        campaign = make_campaign(db, tenant)
        mint_vouchers(db, tenant.caller, campaign.id, MintVouchers(count=BRUTE_FORCE_SIZE))
        guesses = DEFAULT_SPEC.generate(BRUTE_FORCE_SIZE)
        with db.unit_of_work(write=False) as session:
            live = session.scalar(select(func.count()).select_from(Voucher)) or 0
            sample = session.scalar(select(Voucher.code).limit(1)) or ""
        assert live >= BRUTE_FORCE_SIZE
        app = create_app(settings, db=db)
        hits = misses = refused = 0
        first_refusal: int | None = None
        with TestClient(app, client=GUESSER) as guesser:
            for index, guess in enumerate(guesses):
                while True:
                    answer = _native_validate(guesser, tenant, guess)
                    retry = int(answer.headers.get("Retry-After", "0"))
                    if answer.status_code == 429 and retry <= settings.guess_slow_seconds:
                        assert answer.json()["code"] == "too_many_failed_lookups"
                        clock.advance(seconds=retry)  # slowed: wait as told, then try again
                        continue
                    break
                if answer.status_code == 200:
                    found = answer.json()["reason"] != "not_found"
                    hits += found
                    misses += not found
                else:
                    assert answer.status_code == 429, answer.text
                    assert answer.json()["code"] == "too_many_failed_lookups"
                    if first_refusal is None:
                        first_refusal = index
                    refused += 1
                    # Refused as many times in a row as it was let through: the refusal holds
                    # while it keeps guessing. Thousands more would take the same path.
                    if refused == settings.guess_refuse_after:
                        break
        assert hits == 0
        assert refused == settings.guess_refuse_after
        assert misses == settings.guess_refuse_after
        assert first_refusal == settings.guess_refuse_after
        assert first_refusal < BRUTE_FORCE_SIZE // 4
        # None of the guesses, including those never let through, is a live code.
        with db.unit_of_work(write=False) as session:
            found = 0
            for start in range(0, len(guesses), 1000):
                chunk = guesses[start : start + 1000]
                found += (
                    session.scalar(
                        select(func.count()).select_from(Voucher).where(Voucher.code.in_(chunk))
                    )
                    or 0
                )
        assert found == 0
        assert len(sample) == len(guesses[0])  # live codes and guesses have the same shape
        kinds = sorted(e[0] for e in _events(db))
        assert kinds == ["guessing_refused"] * 2 + ["guessing_slowed"] * 2


class TestGuardEventsCommand:
    def test_an_operator_lists_who_was_caught_guessing(
        self, fresh_database: Callable[..., Database], settings: Settings
    ) -> None:
        db = fresh_database(pool_size=4)
        tenant = make_tenant(db, name="acme")
        make_tenant(db, name="quiet")
        app = _app(db, settings, guess_slow_after=2, guess_refuse_after=50)
        with TestClient(app, client=GUESSER) as guesser:
            for code in DEFAULT_SPEC.generate(2):
                assert _redeem(guesser, tenant, code).status_code == 404
        env = {"VOUCHERD_DATABASE_URL": db.settings.database_url}
        runner = CliRunner()

        shown = runner.invoke(cli, ["guard", "events", "--tenant", "acme", "--json"], env=env)
        assert shown.exit_code == 0, shown.output
        events = json.loads(shown.output)
        assert len(events) == 2  # one for the key, one for the address
        assert {(e["kind"], e["key_id"], e["address"], e["failures"]) for e in events} == {
            ("guessing_slowed", tenant.key.key_id, GUESSER[0], 2)
        }
        quiet = runner.invoke(cli, ["guard", "events", "--tenant", "quiet", "--json"], env=env)
        assert quiet.exit_code == 0, quiet.output
        assert json.loads(quiet.output) == []
        table = runner.invoke(cli, ["guard", "events"], env=env)
        assert table.exit_code == 0, table.output
        assert "guessing_slowed" in table.output
