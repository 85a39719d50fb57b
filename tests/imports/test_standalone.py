"""The core's rules for vouchers that come without a campaign (``standalone_campaign``): every
face that places such vouchers (Voucherify's today) says the same, in its own shape."""

from __future__ import annotations

import pytest

from tests.factories.tenants import make_tenant
from voucherd.campaigns.lookup import find_campaign
from voucherd.db.engine import Database
from voucherd.errors import InvalidInput
from voucherd.imports.service import standalone_campaign


def test_a_type_gets_its_campaign_once(db: Database) -> None:
    tenant = make_tenant(db)
    first = standalone_campaign(db, tenant.caller, ["GIFT", "GIFT"], "GBP")
    again = standalone_campaign(db, tenant.caller, ["GIFT"], "GBP")
    loyalty = standalone_campaign(db, tenant.caller, ["LOYALTY"], "GBP")
    assert first == again != loyalty
    with db.unit_of_work(write=False) as session:
        campaign = find_campaign(session, tenant.id, "standalone-gift")
        assert (campaign.id, campaign.type, campaign.currency) == (first, "GIFT", "GBP")


def test_a_discount_is_refused_naming_its_field(db: Database) -> None:
    tenant = make_tenant(db)
    with pytest.raises(InvalidInput) as caught:
        standalone_campaign(db, tenant.caller, ["DISCOUNT"], "GBP", field=lambda i: f"rows[{i}]")
    assert caught.value.field == "rows[0]"
    assert "needs a campaign" in str(caught.value)


def test_mixed_types_are_refused_naming_the_first_of_another_type(db: Database) -> None:
    tenant = make_tenant(db)
    with pytest.raises(InvalidInput) as caught:
        standalone_campaign(db, tenant.caller, ["GIFT", "GIFT", "LOYALTY", "GIFT"], "GBP")
    assert caught.value.field == "type"
    assert "LOYALTY" in str(caught.value)
    with pytest.raises(InvalidInput) as caught:
        standalone_campaign(db, tenant.caller, ["GIFT", "COUPON"], "GBP", field=str)
    assert caught.value.field == "1"


def test_an_unknown_type_is_named_as_such(db: Database) -> None:
    tenant = make_tenant(db)
    with pytest.raises(InvalidInput, match="is not a voucher type"):
        standalone_campaign(db, tenant.caller, ["COUPON"], "GBP")
