"""Voucherify's Import Vouchers, Import Vouchers using CSV, Create Voucher and Delete Voucher.

Translation only: the rows go to the core's import (voucherd.imports), which judges them as it
judges any file, and an import answers ``202 {"async_action_id"}`` as Voucherify does.

Where voucherd differs, and why:

* Voucherify's imported and created vouchers may have no campaign ("standalone"); every voucherd
  voucher has one, so they go into the tenant's ``standalone-gift`` or ``standalone-loyalty``
  campaign, created on first use (which takes the ``manage`` scope). The core's rules for that
  (``voucherd.imports.service.standalone_campaign``) apply as they are, in Voucherify's error
  shape: a DISCOUNT_VOUCHER without a campaign is refused naming its ``type`` (voucherd keeps a
  discount on its campaign, so discount codes are imported into a campaign that carries their
  discount: ``POST /api/v1/campaigns/{campaign}/imports``, or Create Voucher with
  ``campaign``), and one import is one type (a list mixing gift vouchers and loyalty cards is
  refused, naming the first item of another type; a CSV, the line of that row).
* A row the core refuses (a code in use, a balance above its amount) does not fail the request:
  the async action completes with the rows it could import, and the native operation
  (``/api/v1/operations/{id}``, the same id after ``op_``) names each refused row by line.
* CSV: Voucherify's headers (``Code``, ``Voucher Type``, ``Value``, ``Category``, ``Start
  Date``, ``Expiration Date``, ``Redemption Limit``, ``Redeemed Quantity``, ``Redeemed
  Amount``, ``Active``, ``Additional Info``; any other column is metadata). ``Value`` and
  ``Redeemed Amount`` are in the smallest unit, as everywhere in Voucherify's API. The file's
  line numbers are kept, so a refusal names the line of the file that was sent.
* Delete Voucher deletes only a voucher never redeemed nor delivered (voucherd keeps history);
  another is refused with 409: disable it instead. ``force`` is accepted and changes nothing:
  a deleted code can always be created again.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import HTTP
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from pydantic import Field

from voucherd.api.deps import DB, Idem
from voucherd.api.responses import respond_created
from voucherd.auth.caller import Caller
from voucherd.db.engine import Database
from voucherd.dialects import kit
from voucherd.dialects.voucherify import shapes
from voucherd.dialects.voucherify.bodies import Amount, Count, Text, VoucherType
from voucherd.dialects.voucherify.errors import BODY_REQUIRED, VoucherifyRoute, voucherify_caller
from voucherd.errors import InvalidInput
from voucherd.fields import Metadata, RequestModel, Timestamp, VoucherCode
from voucherd.imports import service as imports
from voucherd.imports.reader import FileFormat
from voucherd.vouchers import removal

router = APIRouter(tags=["voucherify"], route_class=VoucherifyRoute)

Vf = Annotated[Caller, Depends(voucherify_caller)]
_TYPES = {"GIFT_VOUCHER": "GIFT", "DISCOUNT_VOUCHER": "DISCOUNT", "LOYALTY_CARD": "LOYALTY"}


class Gift(RequestModel):
    amount: Amount | None = None
    balance: Amount | None = None
    subtracted_amount: Amount | None = None
    effect: Literal["APPLY_TO_ORDER", "APPLY_TO_ITEMS"] | None = None


class LoyaltyCard(RequestModel):
    points: Amount | None = None
    balance: Amount | None = None


class Redemption(RequestModel):
    quantity: Count | None = None
    redeemed_quantity: int | None = Field(default=None, ge=0)


class VoucherFields(RequestModel):
    type: VoucherType | None = None
    gift: Gift | None = None
    loyalty_card: LoyaltyCard | None = None
    redemption: Redemption | None = None
    active: bool | None = None
    category: str | None = Field(default=None, max_length=100)
    metadata: Metadata | None = None
    additional_info: Text | None = None
    start_date: Timestamp | None = None
    expiration_date: Timestamp | None = None


class ImportItem(VoucherFields):
    code: VoucherCode


class CreateVoucher(VoucherFields):
    campaign: str | None = Field(default=None, max_length=200)
    campaign_id: str | None = Field(default=None, max_length=200)


def _type(body: VoucherFields) -> str:
    if body.type is not None:
        return _TYPES[body.type]
    if body.gift is not None:
        return "GIFT"
    if body.loyalty_card is not None:
        return "LOYALTY"
    return "DISCOUNT"  # Voucherify's default type


def _row(code: str, body: VoucherFields) -> dict[str, Any]:
    """The core's import row (voucherd.imports.schemas.COLUMNS) for one Voucherify voucher."""
    row: dict[str, Any] = {"code": code, "type": _type(body)}
    if body.gift is not None:
        row.update(value=body.gift.amount, balance=body.gift.balance)
    if body.loyalty_card is not None:
        row.update(value=body.loyalty_card.points, balance=body.loyalty_card.balance)
    if body.redemption is not None:
        row.update(
            redemption_quantity=body.redemption.quantity,
            redeemed_quantity=body.redemption.redeemed_quantity,
        )
    if body.active is False:
        row["state"] = "DISABLED"
    for moment in ("start_date", "expiration_date"):
        value = getattr(body, moment)
        if value is not None:
            row[moment] = value.isoformat()
    row.update(category=body.category, metadata=body.metadata, additional_info=body.additional_info)
    return {k: v for k, v in row.items() if v is not None}


def _standalone(db: Database, caller: Caller, kinds: list[str], field: Callable[[int], str]) -> str:
    """The core's standalone campaign for these types; its refusals keep the core's words and
    name the field as Voucherify's request has it."""
    currency = db.settings.voucherify_currency
    return imports.standalone_campaign(db, caller, kinds, currency, field=field)


def _accepted(db: Database, caller: Caller, idem: Any, operation_id: str) -> Response:
    shown = {"async_action_id": shapes.async_action_id(operation_id)}
    return respond_created(db, caller, idem, shown, status=202)


@router.post(
    "/v1/vouchers/import",
    status_code=202,
    summary="Voucherify: Import Vouchers",
    description="Standalone vouchers as they are elsewhere; 202 with an async_action_id.",
    openapi_extra=BODY_REQUIRED,
)
def import_vouchers(
    db: DB, caller: Vf, idem: Idem, body: Annotated[list[ImportItem], Body(min_length=1)]
) -> Response:
    kinds = [_type(item) for item in body]
    campaign = _standalone(db, caller, kinds, lambda index: f"[{index}].type")
    lines = b"".join(json.dumps(_row(i.code, i)).encode() + b"\n" for i in body)
    operation = imports.start_import(
        db, caller, campaign, io.BytesIO(lines), file_format=FileFormat.JSONL, idem=idem
    )
    return _accepted(db, caller, idem, operation.id)


_CSV_COLUMNS = {
    "code": "code",
    "voucher type": "type",
    "value": "value",
    "category": "category",
    "start date": "start_date",
    "expiration date": "expiration_date",
    "redemption limit": "redemption_quantity",
    "redeemed quantity": "redeemed_quantity",
    "additional info": "additional_info",
}


def _native_csv(data: bytes) -> tuple[bytes, list[str]]:
    """Voucherify's CSV as the core's, line for line; and each row's voucher type."""
    reader = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""))
    header = [name.strip() for name in next(reader, [])]
    kinds: list[str] = []
    out = io.StringIO(newline="")
    writer: csv.DictWriter[str] | None = None
    for values in reader:
        row: dict[str, str] = {}
        redeemed_amount = active = None
        for name, value in zip(header, values, strict=False):
            key = name.lower()
            if key in _CSV_COLUMNS:
                row[_CSV_COLUMNS[key]] = value
            elif key == "redeemed amount":
                redeemed_amount = value
            elif key == "active":
                active = value
            elif key != "discount type" and value != "":
                row[f"metadata.{name}"] = value
        kind = _TYPES.get(row.get("type", "").upper(), row.get("type", "").upper() or "DISCOUNT")
        kinds.append(kind)
        if redeemed_amount and row.get("value", "").isdigit() and redeemed_amount.isdigit():
            row["balance"] = str(max(int(row["value"]) - int(redeemed_amount), 0))
        if active is not None and active.strip().lower() in ("false", "0", "no"):
            row["state"] = "DISABLED"
        if writer is None:
            fields = [*_CSV_COLUMNS.values(), "balance", "state"]
            fields += [f"metadata.{n}" for n in header if n.lower() not in _KNOWN_CSV]
            writer = csv.DictWriter(out, fields)
            writer.writeheader()
        writer.writerow(row)
    return out.getvalue().encode(), kinds or ["GIFT"]


_KNOWN_CSV = {*_CSV_COLUMNS, "redeemed amount", "active", "discount type"}


def _file_part(content_type: str, body: bytes) -> bytes:
    """The ``file`` field of a multipart/form-data body (bounded by the server's body limit)."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if message.is_multipart():
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == "file":
                payload = part.get_payload(decode=True)
                if isinstance(payload, bytes):
                    return payload
    raise InvalidInput("send the CSV as the multipart/form-data field 'file'", field="file")


def _import_csv(
    db: Database, caller: Caller, idem: Any, content_type: str, body: bytes
) -> Response:
    try:
        data, kinds = _native_csv(_file_part(content_type, body))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInput(f"not a UTF-8 CSV file: {exc}", field="file") from None
    # The file's line: the header is line 1, its first row line 2.
    campaign = _standalone(db, caller, kinds, lambda index: f"line {index + 2}: Voucher Type")
    operation = imports.start_import(
        db, caller, campaign, io.BytesIO(data), file_format=FileFormat.CSV, idem=idem
    )
    return _accepted(db, caller, idem, operation.id)


@router.post(
    "/v1/vouchers/importCSV",
    status_code=202,
    summary="Voucherify: Import Vouchers using CSV",
    description="A multipart/form-data `file`; 202 with an async_action_id.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }
                }
            },
        }
    },
)
async def import_vouchers_csv(request: Request, db: DB, caller: Vf, idem: Idem) -> Response:
    body = await request.body()
    content_type = request.headers.get("content-type", "")
    return await kit.off_loop(_import_csv, db, caller, idem, content_type, body)


@router.post(
    "/v1/vouchers/{code}",
    summary="Voucherify: Create Voucher (with this code)",
    openapi_extra=BODY_REQUIRED,
)
def create_voucher(
    code: str, db: DB, caller: Vf, idem: Idem, body: CreateVoucher | None = None
) -> Response:
    body = body or CreateVoucher()
    campaign = (
        body.campaign_id
        or body.campaign
        or _standalone(db, caller, [_type(body)], lambda _: "type")
    )
    row = _row(code, body)
    if body.type is None and body.gift is None and body.loyalty_card is None:
        row.pop("type")  # the campaign's type, whatever it is
    record = imports.import_one(db, caller, campaign, row)
    shown = shapes.voucher(record, base_url=db.settings.public_base_url)
    return respond_created(db, caller, idem, shown, status=200)


@router.delete("/v1/vouchers/{code}", status_code=204, summary="Voucherify: Delete Voucher")
def delete_voucher(
    code: str,
    db: DB,
    caller: Vf,
    force: Annotated[bool | None, Query(description="accepted; changes nothing")] = None,
) -> Response:
    removal.delete_voucher(db, caller, code)
    return Response(status_code=204)
