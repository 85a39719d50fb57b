"""A code as a holder types it, on every face where one is typed (issue 15, point 4): a changed last
character or two swapped neighbours answer "mistyped" in the face's own error shape; lower case,
spaced and dashed forms of a voucherd code find the voucher; a code_config code is matched as it
is. The rule is the core's (codes/typed.py); a face only words the refusal. Vista takes no
holder's code (its API orders and distributes), so it has no path here; its error shape renders
the refusal as any other (``test_vista_words_a_typo_as_its_problem``).

The native API is in tests/codes/test_typed_codes.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.factories.campaigns import make_campaign
from tests.factories.tenants import Tenant
from tests.factories.vouchers import issue
from voucherd.codes.generator import DEFAULT_ALPHABET, check_character
from voucherd.db.engine import Database
from voucherd.dialects.vista.errors import refusal
from voucherd.errors import CodeMistyped

MISTYPED = "this code is mistyped — check it and try again"


def changed_last(code: str) -> str:
    other = DEFAULT_ALPHABET[(DEFAULT_ALPHABET.index(code[-1]) + 1) % len(DEFAULT_ALPHABET)]
    return code[:-1] + other


def swapped(code: str) -> str:
    i = next(i for i in range(len(code) - 1) if code[i] != code[i + 1])
    return code[:i] + code[i + 1] + code[i] + code[i + 2 :]


TYPOS: dict[str, Callable[[str], str]] = {"changed last": changed_last, "swapped": swapped}
FORMS: dict[str, Callable[[str], str]] = {
    "lower": str.lower,
    "spaced": lambda c: f"{c[:4]} {c[4:8]} {c[8:]}",
    "dashed": lambda c: f"{c[:4]}-{c[4:8]}-{c[8:]}",
    "lower spaced": lambda c: f"{c[:4]} {c[4:8]} {c[8:]}".lower(),
}


def voucherify(tenant: Tenant) -> dict[str, str]:
    return {"X-App-Id": tenant.key.key_id, "X-App-Token": tenant.key.secret}


def yoyo(tenant: Tenant) -> dict[str, str]:
    return {"apiId": tenant.key.key_id, "apiPassword": tenant.key.secret}


def imovo(tenant: Tenant) -> dict[str, str]:
    return {"X-API-KEY": tenant.key.token}


def _stacked(path: str) -> Callable[[TestClient, Tenant, str], httpx.Response]:
    def call(api: TestClient, tenant: Tenant, code: str) -> httpx.Response:
        body = {"redeemables": [{"object": "voucher", "id": code}], "order": {"amount": 100}}
        return api.post(path, headers=voucherify(tenant), json=body)

    return call


@dataclass(frozen=True)
class Path:
    """One place a face takes a holder's code: how to call it, and what success reads as."""

    name: str
    call: Callable[[TestClient, Tenant, str], httpx.Response]
    found: Callable[[httpx.Response, str], None]
    mistyped: Callable[[httpx.Response], None]


def _voucherify_error(answer: httpx.Response) -> None:
    assert answer.status_code == 404, answer.text
    error = answer.json()
    assert (error["code"], error["key"], error["message"]) == (
        404,
        "not_found",
        "Resource not found",
    )
    assert MISTYPED in error["details"]
    assert error["resource_type"] == "voucher"


def _voucherify_voucher(answer: httpx.Response, code: str) -> None:
    assert answer.status_code == 200, answer.text
    assert answer.json()["code"] == code


def _voucherify_validation_mistyped(answer: httpx.Response) -> None:
    assert answer.status_code == 200, answer.text
    shown = answer.json()
    assert shown["valid"] is False
    (item,) = shown["redeemables"]
    assert item["status"] == "INAPPLICABLE"
    error = item["result"]["error"]
    assert (error["code"], error["key"]) == (404, "not_found")
    assert MISTYPED in error["details"]


def _voucherify_validation_found(answer: httpx.Response, code: str) -> None:
    assert answer.status_code == 200, answer.text
    shown = answer.json()
    assert shown["valid"] is True, shown
    assert shown["redeemables"][0]["status"] == "APPLICABLE"


def _voucherify_redemption_found(answer: httpx.Response, code: str) -> None:
    assert answer.status_code == 200, answer.text
    (redemption,) = answer.json()["redemptions"]
    assert redemption["voucher"]["code"] == code
    assert redemption["result"] == "SUCCESS"


def _voucherify_legacy_found(answer: httpx.Response, code: str) -> None:
    assert answer.status_code == 200, answer.text
    assert answer.json()["voucher"]["code"] == code


def _yoyo_found(answer: httpx.Response, code: str) -> None:
    assert answer.status_code == 200, answer.text
    assert answer.json()["wiCode"] == code


def _yoyo_mistyped(answer: httpx.Response) -> None:
    assert answer.status_code == 404, answer.text
    assert answer.json() == {"responseCode": "code_mistyped", "responseDesc": MISTYPED}


def _imovo_found(answer: httpx.Response, code: str) -> None:
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"successfulRequest": True}


def _imovo_mistyped(answer: httpx.Response) -> None:
    assert answer.status_code == 404, answer.text
    assert answer.json() == {
        "successfulRequest": False,
        "errorMessages": ["Voucher code is mistyped — check it and try again"],
    }


PATHS = [
    Path(
        "voucherify get voucher",
        lambda api, t, code: api.get(f"/v1/vouchers/{code}", headers=voucherify(t)),
        _voucherify_voucher,
        _voucherify_error,
    ),
    Path(
        "voucherify disable voucher",
        lambda api, t, code: api.post(f"/v1/vouchers/{code}/disable", headers=voucherify(t)),
        _voucherify_voucher,
        _voucherify_error,
    ),
    Path(
        "voucherify validate",
        _stacked("/v1/validations"),
        _voucherify_validation_found,
        _voucherify_validation_mistyped,
    ),
    Path(
        "voucherify redeem",
        _stacked("/v1/redemptions"),
        _voucherify_redemption_found,
        _voucherify_error,
    ),
    Path(
        "voucherify redeem voucher (legacy)",
        lambda api, t, code: api.post(
            f"/v1/vouchers/{code}/redemption", headers=voucherify(t), json={"order": {"amount": 1}}
        ),
        _voucherify_legacy_found,
        _voucherify_error,
    ),
    Path(
        "yoyo get coupon",
        lambda api, t, code: api.get(f"/cvs-issuer/rest/coupons/{code}", headers=yoyo(t)),
        _yoyo_found,
        _yoyo_mistyped,
    ),
    Path(
        "imovo cancel voucher",
        lambda api, t, code: api.post(
            "/Voucher/CancelVoucher", headers=imovo(t), json={"voucherCode": code}
        ),
        _imovo_found,
        _imovo_mistyped,
    ),
]
_IDS = [p.name for p in PATHS]


@pytest.mark.parametrize("typo", list(TYPOS))
@pytest.mark.parametrize("path", PATHS, ids=_IDS)
def test_a_typo_answers_mistyped_in_the_faces_shape(
    api: TestClient, db: Database, tenant: Tenant, path: Path, typo: str
) -> None:
    code = issue(db, tenant, make_campaign(db, tenant)).voucher.code
    path.mistyped(path.call(api, tenant, TYPOS[typo](code)))
    path.mistyped(path.call(api, tenant, FORMS["lower spaced"](TYPOS[typo](code))))


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("path", PATHS, ids=_IDS)
def test_loose_forms_of_a_voucherd_code_find_it(
    api: TestClient, db: Database, tenant: Tenant, path: Path, form: str
) -> None:
    code = issue(db, tenant, make_campaign(db, tenant)).voucher.code
    path.found(path.call(api, tenant, FORMS[form](code)), code)


@pytest.mark.parametrize("path", PATHS, ids=_IDS)
def test_a_code_config_code_is_matched_exactly(
    api: TestClient, db: Database, tenant: Tenant, path: Path
) -> None:
    body = "ABCDEFGHJKLM"
    custom = body + check_character(body)  # the default shape, but not drawn by voucherd
    campaign = make_campaign(db, tenant, code_config={"charset": DEFAULT_ALPHABET, "length": 13})
    issue(db, tenant, campaign, code=custom)

    missed = path.call(api, tenant, custom.lower())
    if path.name == "voucherify validate":
        (item,) = missed.json()["redeemables"]
        assert item["result"]["error"]["key"] == "not_found"
        assert MISTYPED not in item["result"]["error"]["details"]
    else:
        assert missed.status_code == 404, missed.text
        assert "mistyped" not in missed.text
    path.found(path.call(api, tenant, custom), custom)


def test_vista_words_a_typo_as_its_problem() -> None:
    refused = refusal(CodeMistyped(MISTYPED, field="code"), {})
    assert refused.errors == {"code": [MISTYPED]}
