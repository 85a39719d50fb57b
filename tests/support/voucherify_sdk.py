"""Voucherify's official SDK (PyPI ``voucherify``, unchanged) pointed at a voucherd served in a
thread (``tests.support.serving``): the clients every SDK test uses."""

from __future__ import annotations

import voucherify

from tests.factories.tenants import Tenant


class Sdk:
    def __init__(self, host: str, tenant: Tenant) -> None:
        configuration = voucherify.Configuration(
            host=host,
            api_key={"X-App-Id": tenant.key.key_id, "X-App-Token": tenant.key.secret},
        )
        self.client = voucherify.ApiClient(configuration)
        self.campaigns = voucherify.CampaignsApi(self.client)
        self.async_actions = voucherify.AsyncActionsApi(self.client)
        self.publications = voucherify.PublicationsApi(self.client)
        self.validations = voucherify.ValidationsApi(self.client)
        self.redemptions = voucherify.RedemptionsApi(self.client)
        self.customers = voucherify.CustomersApi(self.client)
        self.vouchers = voucherify.VouchersApi(self.client)
