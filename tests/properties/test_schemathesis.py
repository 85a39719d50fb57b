"""Schemathesis over the whole OpenAPI document: the native API, the four dialects and the
public routes, with every check on, on SQLite and PostgreSQL.

One real key is made per run and sent in every face's spelling at once (``Authorization:
Bearer``, Voucherify's ``X-App-Id``/``X-App-Token``, Yoyo's ``apiId``/``apiPassword``, i-movo's
``X-API-KEY``): each operation declares which of them it needs as security schemes, so
``ignored_auth`` removes exactly those and checks the operation then refuses.

CI runs 5 examples per operation (phases examples and fuzzing, derandomized: ~30 s for both
databases). A bigger search by hand, new cases every run, with the coverage phase (boundaries,
negative cases, undeclared methods and their Allow headers)::

    VOUCHERD_SCHEMATHESIS_EXAMPLES=100 VOUCHERD_SCHEMATHESIS_PHASES=examples,coverage,fuzzing \
        .venv/bin/pytest tests/properties/test_schemathesis.py

Checks that a vendor's documented behaviour makes wrong are excluded per operation in
``EXCLUSIONS``, each with its reason.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import settings as hypothesis_settings
from schemathesis import Case, CheckContext, Response
from schemathesis.checks import CHECKS, load_all_checks, positive_data_acceptance

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import make_tenant
from tests.support.databases import Template
from voucherd.api.openapi import PROBLEM_JSON
from voucherd.app import create_app
from voucherd.config import Settings
from voucherd.db.engine import Database, make_engine

load_all_checks()


def _domain_refusal(response: Response) -> bool:
    """A 422 problem naming a rule JSON Schema cannot state (a known IANA time zone or locale,
    an amount that is not zero, the deployment's bulk limit, a delivery channel that takes no
    recipient): a service refusal (its detail is its one reason) or a model validator's
    (pydantic's "Value error, ..."). A refusal of a *shape* the document allowed ("Input should
    be ...", "Field required") is none of these, and still fails."""
    content_type = response.headers.get("content-type", [""])[0]
    if response.status_code != 422 or not content_type.startswith(PROBLEM_JSON):
        return False
    body = response.json()
    errors = [(e.get("field", ""), e.get("reason", "")) for e in body.get("errors", [])]
    if len(errors) == 1 and body.get("detail") == errors[0][1]:
        return True
    rules = {field.split(".")[0] for field, reason in errors if reason.startswith("Value error, ")}
    # A union (a customer given by id or inline) reports each alternative's complaint: the
    # alternatives a rule's field did not take are noise beside the rule.
    return bool(rules) and all(
        reason.startswith("Value error, ")
        or (field.split(".")[0] in rules and reason.startswith("Input should be a valid "))
        for field, reason in errors
    )


def positive_data_acceptance_but_domain_rules(
    ctx: CheckContext, response: Response, case: Case
) -> bool | None:
    """Schemathesis' positive_data_acceptance, except for a domain rule's 422 (above)."""
    if _domain_refusal(response):
        return None
    return positive_data_acceptance(ctx, response, case)


ALL_CHECKS = [
    positive_data_acceptance_but_domain_rules if check is positive_data_acceptance else check
    for check in CHECKS.get_all()
]
CI_RUN = "VOUCHERD_SCHEMATHESIS_EXAMPLES" not in os.environ
EXAMPLES = int(os.environ.get("VOUCHERD_SCHEMATHESIS_EXAMPLES", "5"))
# The coverage phase (every boundary and negative case the document implies, undeclared methods,
# Allow headers) is a few hundred requests per operation whatever EXAMPLES says: run by hand with
# VOUCHERD_SCHEMATHESIS_PHASES=examples,coverage,fuzzing; CI runs the cheap phases.
PHASES = os.environ.get("VOUCHERD_SCHEMATHESIS_PHASES", "examples,fuzzing").split(",")


# The guard would soon answer 429 to a fuzzer's thousands of unknown codes (correctly, and the
# 429 is declared), leaving nothing else tested; its own tests are tests/guard/test_rate_limits.py.
_LENIENT_GUARD = {
    "rate_limit_per_key": 10**6,
    "rate_limit_per_tenant": 10**6,
    "rate_limit_page_per_address": 10**6,
    "guess_slow_after": 10**6,
    "guess_refuse_after": 10**6,
}


_POSITIVE = positive_data_acceptance_but_domain_rules.__name__
# Checks that are wrong about a vendor's documented behaviour, per operation, with the reason.
EXCLUSIONS = {
    # i-movo takes every parameter from the query string *or* the JSON body (seed 003, "as query
    # string or body"), so the document can mark neither place required; a request giving a
    # mandatory parameter in neither place is schema-valid and rightly refused with 400.
    **{
        (f"POST {path}", _POSITIVE): "i-movo: query or body"
        for path in (
            "/VoucherRequest/Request",
            "/VoucherRequest/RequestVoucherWithId",
            "/Voucher/CancelVoucher",
        )
    },
    # Vista (seed 004; voucherd/dialects/vista.py "Errors") answers a broken business rule with
    # 400 validation problem details, an unknown client, campaign or order item included, where
    # a native API would say 404: schema-valid bodies naming things that do not exist get 400.
    **{
        (f"POST /api/v1/voucher-management/{path}", _POSITIVE): "Vista: rules are 400"
        for path in ("client", "client-order", "email-distribution", "mobile-distribution")
    },
    # Voucherify answers every refusal of a request's content with 400 and its documented error
    # keys (seed 001's errors; voucherd/dialects/voucherify/errors.py), rules JSON Schema cannot
    # state included: a body that must name a campaign, voucher or redeemable, a customer's
    # email that must be deliverable. Shape errors are 400 too, so this check cannot tell them
    # apart on these operations; the dialect's own tests pin each message.
    **{
        (operation, _POSITIVE): "Voucherify: every refusal is 400"
        for operation in (
            "POST /v1/campaigns",
            "POST /v1/campaigns/{campaignId}/vouchers",
            "POST /v1/vouchers/{code}/redemption",
            "POST /v1/redemptions/{redemptionId}/rollback",
            "POST /v1/publications",
            "POST /v1/validations",
            "POST /v1/redemptions",
            "POST /v1/customers",
            "PUT /v1/customers/{customerId}",
            "POST /v1/vouchers/{code}",
            "POST /v1/vouchers/import",
            "POST /v1/vouchers/importCSV",
        )
    },
    # Yoyo's seed (000) documents no error shape; voucherd's (dialects/yoyo.py "Errors") keeps
    # the native status with only a code and a description, so a campaign's rule (a CASH
    # campaign without a default value needs a value Yoyo cannot send) is a 422 this check
    # cannot tell from a shape error.
    ("POST /cvs-issuer/rest/coupons", _POSITIVE): "Yoyo: rules are 422 without detail",
}

_keys = itertools.count()


def _fresh_idempotency_key(case: Case) -> None:
    """A generated key is often "0" for every case: a second body under the same key is rightly
    refused (422, Voucherify's 400), which says nothing about the second body. Valid cases get a
    key of their own, still valid; replays are tests/idempotency/test_idempotency.py's."""
    for name in list(case.headers or {}):
        if name.lower() == "idempotency-key":
            case.headers[name] = f"{str(case.headers[name])[:200]}-{next(_keys)}"


@dataclass
class Served:
    app: FastAPI
    credentials: dict[str, str]


@pytest.fixture(scope="module")
def served(template: Template) -> Iterator[Served]:
    """The app over a whole new database whose requests really commit (as in production, and so
    /readyz's own connection is not blocked by a test's open transaction), with a tenant, a
    campaign and one key in every face's spelling."""
    url = template.copy()
    settings = Settings(
        database_url=url,
        public_base_url="https://vouchers.example",
        key_cache_seconds=0,
        max_body_bytes=64 * 1024,
    )
    lenient = {k: v for k, v in _LENIENT_GUARD.items() if k in Settings.model_fields}
    settings = settings.model_copy(update=lenient)
    db = Database(make_engine(url), settings=settings)
    tenant = make_tenant(db)
    make_campaign(db, tenant, name="gift")
    key = tenant.key
    credentials = {
        "Authorization": f"Bearer {key.token}",
        "X-App-Id": key.key_id,
        "X-App-Token": key.secret,
        "apiId": key.key_id,
        "apiPassword": key.secret,
        "X-API-KEY": key.token,
    }
    yield Served(create_app(settings, db=db), credentials)
    db.dispose()
    template.drop(url)


# The document is read from an app that never touches its database; each test sends its cases
# (and ignored_auth its probes) to an app over the test's own database.
# (schemathesis.pytest.from_fixture would build the schema per test, but it sets pytest's private
# `_nodeid`, which pytest 9.2 no longer has.)
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(Settings(database_url="sqlite:///unused.db"))
)
# NUL is refused in every URL and text (api/limits.py, fields.RequestModel: PostgreSQL cannot
# store it), tested in tests/api/test_errors.py; generating it would only test that refusal again.
schema.config.generation.update(max_examples=EXAMPLES, allow_x00=False)
schema.config.phases.update(phases=PHASES)
# A body over the server's limit is refused before it is read, with 413: a rejection too.
rejection = schema.config.checks.negative_data_rejection
rejection.expected_statuses = [*rejection.expected_statuses, "413"]


@schema.parametrize()
# CI's run is the same every time (a new finding shows up in a by-hand run, not as a flaky CI
# failure); a run with VOUCHERD_SCHEMATHESIS_EXAMPLES set explores anew each time.
@hypothesis_settings(deadline=None, database=None, derandomize=CI_RUN)
def test_api(case: Case, served: Served) -> None:
    if case.meta is not None and case.meta.generation.mode.is_positive:
        _fresh_idempotency_key(case)
    excluded = [
        check for check in ALL_CHECKS if (case.operation.label, check.__name__) in EXCLUSIONS
    ]
    case.call_and_validate(
        app=served.app, headers=served.credentials, checks=ALL_CHECKS, excluded_checks=excluded
    )


# What CI's cheap phases do not reach (the coverage phase does, by hand): pinned here.

_DOCUMENT = schema.raw_schema


def test_paired_credentials_are_one_requirement_and_public_routes_need_none() -> None:
    paths = _DOCUMENT["paths"]
    assert paths["/v1/vouchers/{code}"]["get"]["security"] == [
        {"VoucherifyAppId": [], "VoucherifyAppToken": []},
        {"HTTPBearer": []},
    ]
    assert paths["/cvs-issuer/rest/coupons"]["post"]["security"] == [
        {"YoyoApiId": [], "YoyoApiPassword": []}
    ]
    assert paths["/VoucherRequest/Request"]["post"]["security"] == [{"ImovoApiKey": []}]
    assert paths["/api/v1/voucher-management/client"]["post"]["security"] == [{"HTTPBearer": []}]
    for path in (
        "/v/{token}",
        "/healthz",
        "/readyz",
        "/metrics",
        "/callbacks/whatsapp/{tenant_id}",
    ):
        assert "security" not in paths[path]["get"], path


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/api/v1/campaigns/gift", "GET, HEAD, PATCH"),
        ("/api/v1/operations/resolve", "POST"),
        ("/v1/campaigns", "GET, HEAD, POST"),
        ("/cvs-issuer/rest/coupons/x", "GET, HEAD"),
        ("/VoucherRequest/Request", "POST"),
    ],
)
def test_a_method_a_path_does_not_take_is_405_naming_every_method_it_does(
    client: TestClient, path: str, allow: str
) -> None:
    answer = client.put(path)
    assert answer.status_code == 405, answer.text
    assert answer.headers["Allow"] == allow


def test_a_query_parameter_given_twice_is_refused_not_half_read(
    client: TestClient, db: Database
) -> None:
    tenant = make_tenant(db)
    answer = client.get("/api/v1/vouchers?state=ACTIVE&state=DISABLED", headers=tenant.headers)
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"] == [{"field": "state", "reason": "is given more than once"}]


def test_a_query_parameter_the_endpoint_does_not_take_is_refused(
    client: TestClient, db: Database
) -> None:
    tenant = make_tenant(db)
    answer = client.get("/api/v1/vouchers?stat=ACTIVE", headers=tenant.headers)
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"] == [
        {"field": "stat", "reason": "is not a parameter of this endpoint"}
    ]
    assert client.get("/api/v1/vouchers?state=ACTIVE", headers=tenant.headers).status_code == 200
