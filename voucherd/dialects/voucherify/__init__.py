"""The Voucherify dialect: Voucherify's API under ``/v1``, translated onto voucherd's core.

A client of Voucherify (its official SDKs included; the tests drive the whole flow with the
unchanged ``voucherify==6.1.1`` Python package) changes its host and its credentials and keeps
working. Seeds: ``001`` (Add Vouchers to Campaign, the voucher object) and ``002`` (publications).

Credentials: ``X-App-Id`` = the key id, ``X-App-Token`` = its secret; or ``Authorization:
Bearer <token>``. When both are sent (as in the seed's example), the pair is used.

Endpoints: campaigns (create with ``vouchers_count``, get, list), ``POST /v1/campaigns/{id or
name}/vouchers`` (one voucher, or ``202 {"async_action_id"}`` for more, minted by the worker and
followed at ``GET /v1/async-actions/{id}``), vouchers (get, enable, disable, publications,
redemptions: the list a voucher's ``redemption.url`` names),
publications (create in both forms, list), validations, redemptions (stacking and legacy), get
redemption, rollback, customers (create = upsert, get, update, delete); and the lists of
vouchers, redemptions and customers.

Choices where Voucherify's documents leave room, or where voucherd differs:

* Ids are the core's (``camp_``, ``v_``, ``pub_``, ``r_``, ``rr_``, ``cust_``); async actions are
  operations, shown as ``aa_`` + the operation id's tail.
* Money is integers of the smallest unit, as Voucherify's. A Voucherify project has one currency
  its API never states: money campaigns created here take ``VOUCHERD_VOUCHERIFY_CURRENCY``
  (default USD). A CASH voucher (another face's) is shown as a ``GIFT_VOUCHER``.
* ``active`` is the voucher's switch (false when disabled or cancelled); expiry is in the dates.
* Lists are ``{object: "list", data_ref, <name>: [...], total}`` numbered by ``page`` (from 1)
  and ``limit`` (1-100, default 10), newest first. Campaigns in a list carry no
  ``vouchers_count`` (counting every campaign's vouchers per page is not worth it); a single
  campaign does. Vouchers in a list carry no ``publish.entries`` (a query per voucher).
  A filter naming nothing that exists (a campaign, customer or voucher) answers an empty
  list, as Voucherify does; ``result=FAILURE`` does too, since voucherd records no failed
  redemption (a refusal is answered, not kept).
* A redemption takes up to 30 redeemables and redeems all of them or none (one transaction,
  the customer's resolution included); a voucher given twice is refused, naming
  ``redeemables``. Validation takes up to 30, each judged on its own against the whole order. A gift card's credits count
  as the order's discount, as Voucherify counts them. Without ``gift.credits`` a gift card
  takes as much of the order amount as its balance covers.
* A rollback's ``amount`` is negative: what went back onto the voucher.
* Deleting a customer erases its personal data (voucherd keeps the history of its vouchers);
  afterwards it is not found here. A customer's address is kept as lines 1 and 2, post code,
  city, state and country.
* Unknown body fields, and fields for things voucherd does not do (validation rules, referral
  programs, promotion tiers, sessions, dynamic discounts), are refused as ``invalid_payload``
  naming the field, rather than silently ignored, when they have a value. A field sent as
  ``null`` is not set, as Voucherify reads it (the SDK's ``from_dict`` models send every field,
  mostly null): it is ignored, and clears nothing (bodies.py).
* Query parameters: those each endpoint declares (the OpenAPI document lists them); a
  misspelled one is refused naming it, as on the native API, rather than listing everything.
  Voucherify's own parameters that voucherd does not do are refused too, saying so (``filters``,
  ``created_at``, ``campaign_type``, ...: an ignored filter would answer a list that looks
  filtered); ``expand`` and ``order=-created_at`` (voucherd's order) are accepted. A body must
  be sent as JSON: another Content-Type is refused naming it.
* Errors are ``{code, key, message, details, request_id}`` with Voucherify's keys (errors.py);
  a limit voucherd enforces and Voucherify has no key for (budget, weekly value, code space)
  is ``limit_exceeded``. Bodies larger than the server's limit (413) and URLs holding a NUL
  byte are refused before any route is chosen, in this shape all the same (doors.py).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from voucherd.api.deps import ONE_VALUE_PER_QUERY_PARAMETER, json_content_type
from voucherd.api.methods import allowed_methods
from voucherd.api.openapi import face_responses
from voucherd.api.responses import json_response
from voucherd.dialects.voucherify import campaigns, customers, imports, redemptions, vouchers
from voucherd.dialects.voucherify.errors import (
    ERROR_SCHEMA,
    VoucherifyRoute,
    error_body,
    voucherify_query,
)
from voucherd.errors import NotFound

router = APIRouter(
    responses=face_responses("VoucherifyError", ERROR_SCHEMA, 400, 401, 403, 404, 409, 429, 503),
    dependencies=ONE_VALUE_PER_QUERY_PARAMETER,
)
# Imports first: its POST /v1/vouchers/import must not be read as a voucher code.
for part in (
    imports.router,
    campaigns.router,
    vouchers.router,
    redemptions.router,
    customers.router,
):
    router.include_router(
        part, dependencies=[Depends(voucherify_query), Depends(json_content_type)]
    )

_fallback = APIRouter(route_class=VoucherifyRoute, include_in_schema=False)


@_fallback.api_route(
    "/v1/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
)
def unknown(path: str, request: Request) -> Response:
    """Anything else under /v1 is answered in Voucherify's shape too: a path voucherd serves
    with other methods is 405 with ``Allow``, any other path 404."""
    allowed = allowed_methods(request)
    if allowed:
        details = f"/v1/{path} takes {', '.join(allowed)}"
        body = error_body(405, "method_not_allowed", "HTTP Method Not Allowed", details)
        return json_response(body, 405, {"Allow": ", ".join(allowed)})
    raise NotFound(f"no endpoint /v1/{path}", field="path")


router.include_router(_fallback)

__all__ = ["router"]
