"""Campaigns: list, create (with a live preview of a sample code and the code space), mint as
an operation, manual distribution (channel ``Dashboard``), CSV export, publication history."""

from __future__ import annotations

import csv
import io
import secrets
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError

from voucherd.campaigns import service as campaigns
from voucherd.campaigns.schemas import CampaignCreate, CampaignUpdate
from voucherd.codes.generator import CodeConfigError, capacity, spec_from_config
from voucherd.codes.generator import validate_code_config as check_code_config
from voucherd.console.campaign_form import (
    CHANNELS,
    DISCOUNT_TYPES,
    MORE,
    discount_of,
    message_preview,
    more_fields,
    more_values,
    shown_at,
)
from voucherd.console.schemas import SignedIn
from voucherd.console.service import operator_names, require_role
from voucherd.console.web import (
    console_of,
    errors_of,
    posted,
    redirect,
    render,
    signed_in,
    validation_errors,
)
from voucherd.delivery.messages import MessageError, compose, variables
from voucherd.errors import DomainError
from voucherd.exports.schemas import ExportRequest
from voucherd.exports.service import start_export
from voucherd.money import to_major, to_minor
from voucherd.publications import publish
from voucherd.publications import service as publications
from voucherd.publications.schemas import PublicationFilters, PublishRequest
from voucherd.vouchers.mint import create_campaign
from voucherd.vouchers.models import Voucher
from voucherd.vouchers.schemas import MintVouchers
from voucherd.vouchers.tasks import start_mint

router = APIRouter()
MANAGERS = ("admin", "manager")
CHANNEL = "Dashboard"  # Voucherify's name for a manual distribution from its dashboard
TYPES = ("GIFT", "CASH", "DISCOUNT", "LOYALTY")
MAX_LIST = 500  # customers one distribution form takes
TEXT = ("name", "description", "category", "help_text", "store_finder_url", "timezone")
DATES = ("start_date", "expiration_date")
WHOLE = ("redemption_quantity", "per_customer_limit", "lifetime_days")
MONEY = ("default_value", "max_value", "budget")
CODE = ("pattern", "prefix", "postfix", "length", "charset")


@router.get("/campaigns")
def campaign_list(request: Request, who: SignedIn = Depends(signed_in)) -> Response:
    require_role(who, *MANAGERS)
    db, caller = console_of(request).db, who.operator.caller
    query = request.query_params.get("q", "").strip().lower()
    listed = campaigns.list_campaigns(db, caller, limit=200).items
    if query:
        listed = [c for c in listed if query in c.name.lower()]
    return render(
        request, "campaigns.html", {"active": "campaigns", "campaigns": listed, "q": query}
    )


def _code_config(form: dict[str, str]) -> dict[str, Any] | None:
    config: dict[str, Any] = {k: form[k].strip() for k in CODE if form.get(k, "").strip()}
    if "length" in config:
        try:
            config["length"] = int(config["length"])
        except ValueError as exc:
            raise CodeConfigError("code_config.length", "a whole number") from exc
    return config or None


def _preview(request: Request, form: dict[str, str]) -> dict[str, Any]:
    """A sample code and how many codes the campaign may draw (the core's own rules)."""
    try:
        config = _code_config(form)
        if config:
            check_code_config(config)
    except CodeConfigError as exc:
        return {"error": exc.reason, "field": exc.field.split(".")[-1]}
    spec = spec_from_config(config)
    fill = console_of(request).settings.max_code_space_fill
    return {"sample": spec.generate(1)[0], "capacity": capacity(spec, fill)}


def _payload(form: dict[str, str]) -> dict[str, Any]:
    """The form as the native API's campaign body; values in major units become minor."""
    body: dict[str, Any] = {"type": form.get("type", ""), "mode": "STATIC"}
    for name in TEXT + DATES:
        if form.get(name, "").strip():
            body[name] = form[name].strip()
    currency = form.get("currency", "").strip().upper() or None
    if currency:
        body["currency"] = currency
    for name in WHOLE:
        if form.get(name, "").strip():
            body[name] = _whole(form[name], name)
    for name in MONEY:
        if form.get(name, "").strip():
            body[name] = _amount(form[name], currency, name)
    days = [day for day in range(7) if form.get(f"dow_{day}")]
    if days and len(days) < 7:
        body["validity_day_of_week"] = days
    config = _code_config(form)
    if config:
        body["code_config"] = config
    discount = discount_of(form, currency)
    if discount is not None:
        body["discount"] = discount
    body.update(more_fields(form))
    templates: dict[str, Any] = {}
    if form.get("sms_text", "").strip():
        templates["sms"] = {"text": form["sms_text"]}
    if form.get("email_subject", "").strip() or form.get("email_text", "").strip():
        templates["email"] = {"subject": form.get("email_subject", ""), "text": form["email_text"]}
    if templates:
        body["message_templates"] = templates
    return body


def _whole(text: str, name: str) -> int:
    try:
        return int(text.strip())
    except ValueError as exc:
        raise DomainError("a whole number", field=name) from exc


def _amount(text: str, currency: str | None, name: str) -> int:
    try:
        value = Decimal(text.strip().replace(",", "."))
        return to_minor(value, currency) if currency else int(value)
    except (ValueError, InvalidOperation) as exc:
        raise DomainError("an amount such as 25.00", field=name) from exc


@router.get("/campaigns/new")
def new_campaign(request: Request, who: SignedIn = Depends(signed_in)) -> Response:
    require_role(who, *MANAGERS)
    every_day = {f"dow_{day}": "1" for day in range(7)}
    return _form(request, {"type": "GIFT", "currency": "EUR", **every_day}, {})


def _form(
    request: Request, values: dict[str, str], errors: dict[str, str], status: int = 200
) -> Response:
    context = {"active": "campaigns", "types": TYPES, "values": values, "errors": errors}
    base = console_of(request).settings.public_base_url
    return render(
        request,
        "campaign_new.html",
        {
            **context,
            "preview": _preview(request, values),
            "messages": message_preview(values, base),
            "discount_types": DISCOUNT_TYPES,
            "channels": CHANNELS,
        },
        status=status,
    )


@router.post("/campaigns/preview")
async def preview(request: Request) -> Response:
    _, form = await posted(request, *MANAGERS)
    return render(request, "_code_preview.html", {"preview": _preview(request, form)})


@router.post("/campaigns/messages-preview")
async def messages_preview(request: Request) -> Response:
    """The SMS and e-mail as the form stands, redrawn by htmx while the operator types."""
    _, form = await posted(request, *MANAGERS)
    shown = message_preview(form, console_of(request).settings.public_base_url)
    return render(request, "_message_preview.html", {"messages": shown})


@router.post("/campaigns/new")
async def create(request: Request) -> Response:
    who, form = await posted(request, *MANAGERS)
    try:
        body = CampaignCreate.model_validate(_payload(form))
        made = create_campaign(console_of(request).db, who.operator.caller, body)
    except CodeConfigError as exc:
        return _form(request, form, {exc.field.split(".")[-1]: exc.reason}, 422)
    except ValidationError as exc:
        return _form(request, form, shown_at(validation_errors(exc)), 422)
    except DomainError as exc:
        return _form(request, form, errors_of(exc), 422)
    return redirect(request, f"/campaigns/{made.id}")


def _messages(request: Request, campaign: Any) -> dict[str, Any]:
    """The SMS and e-mail a holder would get, rendered by the delivery feature from the
    campaign's own templates (or the defaults) for a made-up voucher with a sample code."""
    settings = console_of(request).settings
    config = campaign.code_config or None
    sample = Voucher(
        code=spec_from_config(config).generate(1)[0],
        type=campaign.type,
        currency=campaign.currency,
        amount=campaign.default_value,
        balance=campaign.default_value,
        expiration_date=campaign.expiration_date,
        holder_name=None,
    )
    values = variables(
        sample,
        campaign,
        customer_name="Ada Lovelace",
        page_url=f"{settings.public_base_url}/v/SAMPLE",
    )
    shown: dict[str, Any] = {}
    for channel in ("sms", "email"):
        try:
            shown[channel] = compose(
                channel, campaign.message_templates, values, locale=campaign.locale
            )
        except MessageError as exc:
            shown[channel] = str(exc)
    return shown


EDITABLE = set(CampaignUpdate.model_fields)
CLEARABLE = ("description", "category", "help_text", "store_finder_url", "start_date",
             "expiration_date", "lifetime_days", "redemption_quantity", "per_customer_limit",
             "budget", "max_value", "default_value", "validity_day_of_week",
             "message_templates", *MORE)  # fmt: skip


def _values_of(campaign: Any) -> dict[str, str]:
    """The campaign as the form shows it: money in major units, times in its own zone."""
    values: dict[str, str] = {"seen": campaign.updated_at.isoformat()}
    for name in TEXT:
        values[name] = getattr(campaign, name) or ""
    for name in WHOLE:
        found = getattr(campaign, name)
        values[name] = "" if found is None else str(found)
    for name in MONEY:
        found = getattr(campaign, name)
        values[name] = (
            ""
            if found is None
            else str(to_major(found, campaign.currency) if campaign.currency else found)
        )
    for name in DATES:
        found = getattr(campaign, name)
        moment = found.astimezone(ZoneInfo(campaign.timezone)) if found else None
        values[name] = moment.strftime("%Y-%m-%dT%H:%M") if moment else ""
    for day in campaign.validity_day_of_week or range(7):
        values[f"dow_{day}"] = "1"
    templates = campaign.message_templates or {}
    values["sms_text"] = (templates.get("sms") or {}).get("text", "")
    values["email_subject"] = (templates.get("email") or {}).get("subject", "")
    values["email_text"] = (templates.get("email") or {}).get("text", "")
    values["currency"] = campaign.currency or ""
    return {**values, **more_values(campaign)}


@router.get("/campaigns/{campaign_id}/edit")
def edit_campaign(
    request: Request, campaign_id: str, who: SignedIn = Depends(signed_in)
) -> Response:
    require_role(who, *MANAGERS)
    found = campaigns.get_campaign(console_of(request).db, who.operator.caller, campaign_id)
    return _edit_form(request, found, _values_of(found), {})


def _edit_form(
    request: Request,
    campaign: Any,
    values: dict[str, str],
    errors: dict[str, str],
    status: int = 200,
) -> Response:
    context = {"active": "campaigns", "c": campaign, "values": values, "errors": errors}
    context["channels"] = CHANNELS
    return render(request, "campaign_edit.html", context, status=status)


@router.post("/campaigns/{campaign_id}/edit")
async def update(request: Request, campaign_id: str) -> Response:
    """Only what the form holds changes; a field emptied is cleared. A campaign changed by
    someone else since the form was drawn is not overwritten: the form says so."""
    who, form = await posted(request, *MANAGERS)
    db, caller = console_of(request).db, who.operator.caller
    current = campaigns.get_campaign(db, caller, campaign_id)
    form["currency"] = current.currency or ""
    if form.get("seen") != current.updated_at.isoformat():
        stale = "someone changed this campaign since you opened the form: reload it"
        return _edit_form(request, current, form, {"form": stale}, 409)
    try:
        body = _payload(form)
        changes = {k: v for k, v in body.items() if k in EDITABLE}
        changes.update({k: None for k in CLEARABLE if k not in changes})
        campaigns.update_campaign(db, caller, campaign_id, CampaignUpdate.model_validate(changes))
    except ValidationError as exc:
        return _edit_form(request, current, form, shown_at(validation_errors(exc)), 422)
    except DomainError as exc:
        return _edit_form(request, current, form, errors_of(exc), 422)
    return redirect(request, f"/campaigns/{campaign_id}?saved=1")


def _campaign_page(
    request: Request,
    who: SignedIn,
    campaign_id: str,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    notice: str | None = None,
    status: int = 200,
) -> Response:
    db, caller = console_of(request).db, who.operator.caller
    campaign, count = campaigns.count_vouchers(db, caller, campaign_id)
    history = publications.list_publications(
        db, caller, PublicationFilters(campaign=campaign.id), limit=100, cursor=None
    ).items
    return render(
        request,
        "campaign.html",
        {
            "active": "campaigns",
            "c": campaign,
            "count": count,
            "history": history,
            "messages": _messages(request, campaign),
            "names": operator_names(db, caller, {p.publication.actor or "" for p in history}),
            "batch": secrets.token_urlsafe(9),
            "errors": errors or {},
            "values": values or {},
            "notice": notice,
        },
        status=status,
    )


@router.get("/campaigns/{campaign_id}")
def campaign_page(
    request: Request, campaign_id: str, who: SignedIn = Depends(signed_in)
) -> Response:
    require_role(who, *MANAGERS)
    published = request.query_params.get("published", "")
    notice = f"Published {published} codes with channel {CHANNEL}." if published.isdigit() else None
    if request.query_params.get("saved") == "1":
        notice = "Saved."
    return _campaign_page(request, who, campaign_id, notice=notice)


@router.post("/campaigns/{campaign_id}/mint")
async def mint(request: Request, campaign_id: str) -> Response:
    who, form = await posted(request, *MANAGERS)
    try:
        body = MintVouchers.model_validate({"count": _whole(form.get("count", ""), "count")})
        operation = start_mint(console_of(request).db, who.operator.caller, campaign_id, body)
    except ValidationError as exc:
        errors = validation_errors(exc)
        return _campaign_page(request, who, campaign_id, errors=errors, values=form, status=422)
    except DomainError as exc:
        errors = errors_of(exc)
        return _campaign_page(request, who, campaign_id, errors=errors, values=form, status=422)
    return redirect(request, f"/operations/{operation.id}")


@router.post("/campaigns/{campaign_id}/export")
async def export(request: Request, campaign_id: str) -> Response:
    who, _ = await posted(request, *MANAGERS)
    body = ExportRequest.model_validate({})
    operation = start_export(console_of(request).db, who.operator.caller, campaign_id, body)
    return redirect(request, f"/operations/{operation.id}")


def _recipients(text: str) -> list[dict[str, str]]:
    """``email, phone, name`` per line (pasted, or an uploaded CSV file: quoted cells may hold
    commas); each line one customer, a header line skipped."""
    people = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells) or cells[0].lower() == "email":
            continue
        cells += [""] * (3 - len(cells))
        person = {k: v for k, v in zip(("email", "phone", "name"), cells, strict=False) if v}
        if not person.get("email") and not person.get("phone"):
            raise DomainError(f"line {number}: give an e-mail or a phone", field="recipients")
        people.append(person)
    if not people:
        raise DomainError("one customer per line: email, phone, name", field="recipients")
    if len(people) > MAX_LIST:
        raise DomainError(f"at most {MAX_LIST} customers at once", field="recipients")
    return people


@router.post("/campaigns/{campaign_id}/distribute")
async def distribute(request: Request, campaign_id: str) -> Response:
    """One code from the campaign's pool per customer, through the same pool claim as the API;
    each publication's source_id is the form's batch and the line, so a double submit of the
    same form publishes nothing twice."""
    who, form = await posted(request, *MANAGERS)
    db, caller = console_of(request).db, who.operator.caller
    if form.get("recipients_file"):
        # An uploaded file wins over the text box, and is shown back in it if the form comes
        # back with an error, so a fix needs no second upload.
        form["recipients"] = form["recipients_file"]
    batch = form.get("batch", "")[:40] or secrets.token_urlsafe(9)
    send = form.get("send") or None
    try:
        people = _recipients(form.get("recipients", ""))
        bodies = []
        for line, person in enumerate(people):
            request_body: dict[str, Any] = {
                "campaign": campaign_id,
                "count": 1,
                "customer": person,
                "channel": CHANNEL,
                "source_id": f"console:{batch}:{line}",
            }
            if send in ("email", "phone"):
                request_body["delivery"] = {"channel": send}
            bodies.append(PublishRequest.model_validate(request_body))
    except ValidationError as exc:
        errors = {"recipients": "; ".join(validation_errors(exc).values())}
        return _campaign_page(request, who, campaign_id, errors=errors, values=form, status=422)
    except DomainError as exc:
        errors = errors_of(exc)
        return _campaign_page(request, who, campaign_id, errors=errors, values=form, status=422)
    done = 0
    try:
        for body in bodies:
            publish.publish(db, caller, body)
            done += 1
    except DomainError as exc:
        errors = {"recipients": f"published {done} of {len(bodies)}; then: {exc.detail}"}
        return _campaign_page(request, who, campaign_id, errors=errors, values=form, status=422)
    return redirect(request, f"/campaigns/{campaign_id}?published={done}")
