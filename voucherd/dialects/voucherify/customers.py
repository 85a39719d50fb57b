"""Customers: create (an upsert by id or source_id, as Voucherify's), list, get, update, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from voucherd.api.deps import DB, Idem
from voucherd.api.responses import json_response, respond_created
from voucherd.customers import service as customers
from voucherd.dialects.voucherify import bodies, shapes, translate
from voucherd.dialects.voucherify.errors import VoucherifyRoute
from voucherd.dialects.voucherify.vouchers import Limit, Page, Vf

router = APIRouter(tags=["voucherify"], route_class=VoucherifyRoute)


@router.post(
    "/v1/customers",
    summary="Voucherify: Create Customer",
    description="An id or source_id that exists updates that customer with the fields sent.",
)
def create_customer(
    db: DB, caller: Vf, idem: Idem, body: bodies.Customer | None = None
) -> Response:
    body = body or bodies.Customer()
    if body.id is not None:
        customer = customers.update_customer(db, caller, body.id, translate.customer_update(body))
    else:
        customer, _ = customers.save_customer(db, caller, translate.new_customer(body), idem=idem)
    return respond_created(db, caller, idem, shapes.customer(customer), status=200)


@router.get(
    "/v1/customers",
    summary="Voucherify: List Customers",
    description="Newest first; deleted customers are not listed.",
)
def list_customers(
    db: DB,
    caller: Vf,
    page: Page = 1,
    limit: Limit = 10,
    email: Annotated[str | None, Query(max_length=320)] = None,
) -> Response:
    found, total = customers.number_customers(db, caller, email=email, page=page, limit=limit)
    return json_response(shapes.listing("customers", [shapes.customer(c) for c in found], total))


@router.get("/v1/customers/{customerId}", summary="Voucherify: Get Customer (id or source_id)")
def get_customer(customerId: str, db: DB, caller: Vf) -> Response:
    customer = customers.get_customer(db, caller, customerId, include_erased=False)
    return json_response(shapes.customer(customer))


@router.put("/v1/customers/{customerId}", summary="Voucherify: Update Customer")
def update_customer(
    customerId: str,
    db: DB,
    caller: Vf,
    body: bodies.CustomerFields | None = None,
) -> Response:
    body = body or bodies.CustomerFields()
    customer = customers.update_customer(db, caller, customerId, translate.customer_update(body))
    return json_response(shapes.customer(customer))


@router.delete(
    "/v1/customers/{customerId}",
    status_code=204,
    summary="Voucherify: Delete Customer",
    description="Erases the customer's personal data; its vouchers and their history stay.",
)
def delete_customer(customerId: str, db: DB, caller: Vf) -> Response:
    customers.get_customer(db, caller, customerId, include_erased=False)
    customers.erase_customer(db, caller, customerId, "deleted through the Voucherify API")
    return Response(status_code=204)
