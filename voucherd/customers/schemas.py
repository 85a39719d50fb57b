"""Customer request bodies and how a customer is shown."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from pydantic import Field

from voucherd.customers.models import Customer
from voucherd.fields import CustomerRef, EmailAddress, Metadata, PhoneNumber, RequestModel


class CustomerFields(RequestModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    email: EmailAddress | None = None
    phone: PhoneNumber | None = None
    address: str | None = Field(
        default=None, min_length=1, max_length=500, description="Shown on ID-checked vouchers."
    )
    postcode: str | None = Field(default=None, min_length=1, max_length=20)
    city: str | None = Field(default=None, min_length=1, max_length=100)
    region: str | None = Field(default=None, min_length=1, max_length=100)
    country: str | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=2000)
    birthdate: date | None = None
    metadata: Metadata | None = None


class CustomerCreate(CustomerFields):
    source_id: CustomerRef | None = Field(
        default=None,
        description="The issuer's own reference for this customer (a voucher's customer_ref), "
        "unique per tenant.",
    )


class CustomerUpdate(CustomerCreate):
    """Only the fields sent change; a field sent as null is cleared."""


@dataclass(frozen=True)
class CustomerFilters:
    q: str | None = None  # part of the name, email, phone or source_id
    email: str | None = None
    phone: str | None = None
    source_id: str | None = None


PERSONAL_FIELDS = (
    "source_id", "name", "email", "phone", "address", "postcode", "city", "region", "country",
    "description", "birthdate", "metadata_",
)  # fmt: skip


def present_customer(customer: Customer) -> dict[str, Any]:
    return {
        "id": customer.id,
        "object": "customer",
        "source_id": customer.source_id,
        "name": customer.name,
        "email": customer.email,
        "phone": customer.phone,
        "address": customer.address,
        "postcode": customer.postcode,
        "city": customer.city,
        "region": customer.region,
        "country": customer.country,
        "description": customer.description,
        "birthdate": customer.birthdate,
        "metadata": customer.metadata_,
        "erased": customer.erased_at is not None,
        "erased_at": customer.erased_at,
        "created_at": customer.created_at,
        "updated_at": customer.updated_at,
    }
