"""Which customer a request names, as the reference the core records.

A redemption records its customer by the issuer's own reference (``customer_ref``, a
``source_id``). A face may name the customer by voucherd's id instead (Voucherify's
``customer.id``); the id is resolved here, inside the use case's transaction, for every face.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from voucherd.customers.service import find_customer


def customer_ref(
    session: Session, tenant_id: str, *, source_id: str | None, customer_id: str | None
) -> str | None:
    """The reference given, else the ``source_id`` of the customer with ``customer_id``
    (NotFound, naming ``customer``, when there is none); None when neither is given."""
    if source_id is not None:
        return source_id
    if customer_id is not None:
        return find_customer(session, tenant_id, customer_id).source_id
    return None
