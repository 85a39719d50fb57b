"""``voucherd demo``: a tenant with what the seed documents' example requests name (issue 15).

Each platform's documents show requests against campaigns, vouchers and customers their
readers' accounts already have (Yoyo's campaign ``1234``, i-movo's ``THINK`` and ``CAMP01``,
Vista's ``VOUCHERTYPE1``, Voucherify's ``ycs2AnLT`` and ``100k-test``). On a fresh install they
answered "no such campaign"; this makes them, under the tenant ``demo``, through the same use
cases the APIs call, so the examples work with only the host and the credentials changed.

Run again, it makes only what is missing (nothing is changed or duplicated) and prints a new
key: a key's secret is shown once, so an old one cannot be printed again.

What the demo does not make, on purpose: Vista's client ``ABC123`` (the seed's first Vista
example creates it, and would be refused as a duplicate). The README's "Try every face" section
lists each example and the few the documents cannot run as written (their own typos, a
placeholder body, a date in the past, an id only an earlier answer can tell).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

import typer

from voucherd.auth.caller import Caller
from voucherd.auth.service import IssuedKey, authenticate_token, create_key
from voucherd.campaigns.schemas import CampaignCreate
from voucherd.campaigns.service import get_campaign
from voucherd.config import load_settings
from voucherd.customers.schemas import CustomerCreate
from voucherd.customers.service import get_customer, save_customer
from voucherd.db.engine import Database
from voucherd.db.migrate import upgrade
from voucherd.errors import NotFound
from voucherd.tenants.service import create_tenant, tenant_id_by_name
from voucherd.vouchers.issue import issue_voucher
from voucherd.vouchers.mint import create_campaign
from voucherd.vouchers.schemas import IssueVoucher
from voucherd.vouchers.service import get_voucher

TENANT = "demo"

_HELP = "Show this voucher at the till. Help? 0800 310 0000"
_FINDER = "https://stores.example/find"


def _campaigns(voucherify_currency: str) -> list[tuple[str, dict[str, Any]]]:
    """(the face whose seed names it, the campaign), in the order the README lists them."""
    return [
        # Yoyo's "campaignId": "1234" (both examples); South Africa, so rand.
        (
            "yoyo",
            {
                "name": "1234",
                "type": "GIFT",
                "currency": "ZAR",
                "default_value": 10000,
                "locale": "en-ZA",
                "timezone": "Africa/Johannesburg",
                "lifetime_days": 90,
                "help_text": _HELP,
            },
        ),
        # Voucherify's "Add Vouchers to Campaign" answers a voucher of "Gift Card Campaign".
        (
            "voucherify",
            {
                "name": "Gift Card Campaign",
                "type": "GIFT",
                "currency": voucherify_currency,
                "default_value": 10000,
            },
        ),
        # The campaign of the 10% voucher "ycs2AnLT" that the publication example publishes.
        (
            "voucherify",
            {
                "name": "Newsletter",
                "type": "DISCOUNT",
                "discount": {"type": "PERCENT", "percent_off": 10},
            },
        ),
        # Publishing "count": 2 from "100k-test": a pool that grows as codes are taken.
        (
            "voucherify",
            {
                "name": "100k-test",
                "type": "DISCOUNT",
                "mode": "AUTO_UPDATE",
                "discount": {"type": "PERCENT", "percent_off": 10},
            },
        ),
        # i-movo's Request example: value=20.00 from "THINK", a £20 CashOut voucher.
        (
            "imovo",
            {
                "name": "THINK",
                "type": "CASH",
                "currency": "GBP",
                "default_value": 2000,
                "max_value": 5000,
                "locale": "en-GB",
                "timezone": "Europe/London",
                "lifetime_days": 30,
                "help_text": _HELP,
                "store_finder_url": _FINDER,
            },
        ),
        # i-movo's RequestVoucherWithId example: VoucherValue 1.00 from "CAMP01", with ID check.
        (
            "imovo",
            {
                "name": "CAMP01",
                "type": "CASH",
                "currency": "GBP",
                "default_value": 500,
                "max_value": 5000,
                "locale": "en-GB",
                "timezone": "Europe/London",
                "lifetime_days": 30,
                "help_text": _HELP,
                "store_finder_url": _FINDER,
            },
        ),
        # Vista: the client example lists VOUCHERTYPE1 and VOUCHERTYPE2, the order asks for
        # ABC12 at redeemPrice 12.34.
        *(
            (
                "vista",
                {
                    "name": name,
                    "type": "CASH",
                    "currency": "USD",
                    "default_value": 1234,
                    "locale": "en-US",
                },
            )
            for name in ("VOUCHERTYPE1", "VOUCHERTYPE2", "ABC12")
        ),
    ]


# Codes the examples name as if already issued: Voucherify publishes "ycs2AnLT"; i-movo's
# CancelVoucher example cancels "2193785990".
_VOUCHERS = (("Newsletter", "ycs2AnLT"), ("THINK", "2193785990"))
# The customer the Voucherify publication example publishes to, found by its source_id.
_CUSTOMERS = ({"source_id": "cust_RZa0oS7qUT9giVISFVJhKlMq", "name": "Demo Customer"},)


@dataclass
class DemoSetup:
    tenant: str
    key: IssuedKey
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)


def set_up_demo(db: Database, *, tenant: str = TENANT) -> DemoSetup:
    """The demo tenant and everything the seed examples name; only what is missing is made."""
    try:
        tenant_id_by_name(db, tenant)
        made_tenant = False
    except NotFound:
        create_tenant(db, tenant)
        made_tenant = True
    key = create_key(db, tenant, name="demo")
    setup = DemoSetup(tenant, key)
    (setup.created if made_tenant else setup.existing).append(f"tenant {tenant}")
    caller = authenticate_token(db, key.token)
    for _, body in _campaigns(db.settings.voucherify_currency):
        _campaign(db, caller, body, setup)
    for campaign, code in _VOUCHERS:
        _voucher(db, caller, campaign, code, setup)
    for customer in _CUSTOMERS:
        _customer(db, caller, customer, setup)
    return setup


def _campaign(db: Database, caller: Caller, body: dict[str, Any], setup: DemoSetup) -> None:
    what = f"campaign {body['name']}"
    try:
        get_campaign(db, caller, body["name"])
        setup.existing.append(what)
    except NotFound:
        create_campaign(db, caller, CampaignCreate.model_validate(body))
        setup.created.append(what)


def _voucher(db: Database, caller: Caller, campaign: str, code: str, setup: DemoSetup) -> None:
    what = f"voucher {code} ({campaign})"
    try:
        get_voucher(db, caller, code)
        setup.existing.append(what)
    except NotFound:
        issue_voucher(db, caller, IssueVoucher.model_validate({"campaign": campaign, "code": code}))
        setup.created.append(what)


def _customer(db: Database, caller: Caller, body: dict[str, Any], setup: DemoSetup) -> None:
    what = f"customer {body['source_id']}"
    try:
        get_customer(db, caller, body["source_id"])
        setup.existing.append(what)
    except NotFound:
        save_customer(db, caller, CustomerCreate.model_validate(body))
        setup.created.append(what)


def _credentials(key: IssuedKey) -> list[str]:
    return [
        f"native, Vista:  Authorization: Bearer {key.token}",
        f"i-movo:         X-API-KEY: {key.token}",
        f"Voucherify:     X-App-Id: {key.key_id}   X-App-Token: {key.secret}",
        f"Yoyo:           apiId: {key.key_id}   apiPassword: {key.secret}",
    ]


def demo(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Make a demo tenant with what every seed document's examples need, and print a key.

    Run again, it adds only what is missing, and prints a new key.
    """
    db = Database.from_settings(load_settings())
    try:
        upgrade(db.engine)
        setup = set_up_demo(db)
    finally:
        db.dispose()
    if as_json:
        sys.stdout.write(json.dumps(asdict(setup)) + "\n")
        return
    out = typer.echo
    out(f"tenant {setup.tenant}: made {len(setup.created)}, found {len(setup.existing)} already")
    for line in setup.created:
        out(f"  + {line}")
    out("a new key (its secret is shown only now):")
    for line in _credentials(setup.key):
        out(f"  {line}")
    out("The seed documents' example requests now work with these credentials; see the README.")
