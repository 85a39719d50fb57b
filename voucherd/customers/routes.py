from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import Field, TypeAdapter, ValidationError

from voucherd.api.deps import DB, QUERY_AS_DECLARED, CallerDep, Idem
from voucherd.api.openapi import NATIVE_ERRORS
from voucherd.api.responses import json_response, list_payload, respond_created
from voucherd.auth.caller import Caller
from voucherd.customers import service
from voucherd.customers.schemas import (
    CustomerCreate,
    CustomerFilters,
    CustomerUpdate,
    present_customer,
)
from voucherd.db.engine import Database
from voucherd.errors import InvalidInput
from voucherd.fields import EmailAddress, PhoneNumber, RequestModel
from voucherd.idempotency.service import Renderer
from voucherd.pagination import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter(
    prefix="/api/v1/customers",
    tags=["customers"],
    responses=NATIVE_ERRORS,
    dependencies=QUERY_AS_DECLARED,
)


class EraseCustomer(RequestModel):
    reason: str | None = Field(default=None, max_length=500)


_PHONE: TypeAdapter[str] = TypeAdapter(PhoneNumber)
_EMAIL: TypeAdapter[str] = TypeAdapter(EmailAddress)


def _normalised(adapter: TypeAdapter[str], value: str | None, field: str) -> str | None:
    """Exact filters match the stored form, so a number typed with spaces still finds it."""
    if value is None:
        return None
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise InvalidInput(exc.errors()[0]["msg"], field=field) from exc


@router.post("", status_code=201, summary="Create a customer")
def create(body: CustomerCreate, db: DB, caller: CallerDep, idem: Idem) -> Response:
    customer = service.create_customer(db, caller, body, idem=idem)
    return respond_created(db, caller, idem, present_customer(customer))


@router.get("", summary="List or search customers, newest first")
def list_customers(
    db: DB,
    caller: CallerDep,
    q: Annotated[
        str | None,
        Query(min_length=1, max_length=200, description="Part of a name, email, phone, source_id"),
    ] = None,
    email: Annotated[str | None, Query(max_length=254)] = None,
    phone: Annotated[
        str | None, Query(max_length=32, description="International form, as stored (E.164)")
    ] = None,
    source_id: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    filters = CustomerFilters(
        q=q,
        email=_normalised(_EMAIL, email, "email"),
        phone=_normalised(_PHONE, phone, "phone"),
        source_id=source_id,
    )
    page = service.list_customers(db, caller, filters, limit=limit, cursor=cursor)
    return json_response(list_payload([present_customer(c) for c in page.items], page.next_cursor))


@router.get("/{customer}", summary="Get a customer by id or by source_id")
def get_customer(customer: str, db: DB, caller: CallerDep) -> Response:
    return json_response(present_customer(service.get_customer(db, caller, customer)))


@router.patch(
    "/{customer}", summary="Change a customer's details (fields sent as null are cleared)"
)
def update_customer(customer: str, body: CustomerUpdate, db: DB, caller: CallerDep) -> Response:
    return json_response(present_customer(service.update_customer(db, caller, customer, body)))


@router.post(
    "/{customer}/erase",
    summary="Erase a customer's personal data; vouchers and publications stay",
)
def erase_customer(
    customer: str, db: DB, caller: CallerDep, body: EraseCustomer | None = None
) -> Response:
    reason = body.reason if body else None
    return json_response(present_customer(service.erase_customer(db, caller, customer, reason)))


def _replay(db: Database, tenant: str, customer_id: str, _: str) -> tuple[int, dict[str, object]]:
    return 201, present_customer(service.get_customer(db, Caller(tenant, "replay"), customer_id))


REPLAY_RENDERERS: dict[str, Renderer] = {"customer": _replay}
