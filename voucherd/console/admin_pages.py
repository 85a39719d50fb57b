"""Operations (with a progress bar polled by htmx), deliveries, orders and the admin's
settings: API keys, delivery providers (masked), rate limits, guard events."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError

from voucherd.auth import service as auth
from voucherd.console.schemas import SignedIn
from voucherd.console.service import list_console_events, require_role
from voucherd.console.web import (
    console_of,
    errors_of,
    posted,
    redirect,
    render,
    signed_in,
    validation_errors,
)
from voucherd.delivery import probe
from voucherd.delivery import service as delivery
from voucherd.delivery.schemas import DeliveryFilters, mask_recipient
from voucherd.delivery.settings import SECRET_FIELDS, DeliverySettingsPatch
from voucherd.errors import DomainError, InvalidInput
from voucherd.guard.service import list_guard_events
from voucherd.operations import service as operations
from voucherd.orders import service as orders
from voucherd.orders.clients import list_clients
from voucherd.tenants import service as tenants

router = APIRouter()
MANAGERS = ("admin", "manager")
LOOKERS = ("admin", "manager", "support")


@router.get("/operations")
def operation_list(request: Request, who: SignedIn = Depends(signed_in)) -> Response:
    require_role(who, *MANAGERS)
    listed = operations.list_operations(console_of(request).db, who.operator.caller, limit=100)
    return render(request, "operations.html", {"active": "operations", "page": listed})


@router.get("/operations/{operation_id}")
def operation_page(
    request: Request, operation_id: str, who: SignedIn = Depends(signed_in)
) -> Response:
    require_role(who, *MANAGERS)
    found = operations.get_operation(console_of(request).db, who.operator.caller, operation_id)
    template = "_progress.html" if request.headers.get("hx-request") else "operation.html"
    return render(request, template, {"active": "operations", "op": found})


@router.get("/operations/{operation_id}/result")
def operation_result(
    request: Request, operation_id: str, who: SignedIn = Depends(signed_in)
) -> Response:
    require_role(who, *MANAGERS)
    download = operations.open_result(console_of(request).db, who.operator.caller, operation_id)
    return StreamingResponse(
        download.chunks,
        media_type=download.media_type,
        headers={"Content-Disposition": f'attachment; filename="{download.filename}"'},
    )


@router.get("/deliveries")
def delivery_list(request: Request, who: SignedIn = Depends(signed_in)) -> Response:
    """The outbox, FAILED first (the ones someone must look at), then the newest."""
    require_role(who, *LOOKERS)
    db, caller = console_of(request).db, who.operator.caller
    failed = delivery.list_deliveries(
        db, caller, DeliveryFilters(state="FAILED"), limit=50, cursor=None
    ).items
    recent = delivery.list_deliveries(db, caller, DeliveryFilters(), limit=100, cursor=None).items
    rest = [d for d in recent if d.delivery.state != "FAILED"]
    return render(
        request,
        "deliveries.html",
        {
            "active": "deliveries",
            "rows": failed + rest,
            "mask_recipient": mask_recipient,
            "notice": "Resending: a new delivery is queued."
            if request.query_params.get("resent")
            else None,
        },
    )


@router.post("/deliveries/{delivery_id}/resend")
async def resend(request: Request, delivery_id: str) -> Response:
    who, _ = await posted(request, *LOOKERS)
    delivery.resend_delivery(console_of(request).db, who.operator.caller, delivery_id)
    return redirect(request, "/deliveries?resent=1")


@router.get("/orders")
def order_list(request: Request, who: SignedIn = Depends(signed_in)) -> Response:
    require_role(who, *MANAGERS)
    db, caller = console_of(request).db, who.operator.caller
    listed = orders.list_orders(db, caller, limit=100, cursor=None)
    if request.headers.get("hx-request"):
        return render(request, "_orders.html", {"page": listed})
    clients = list_clients(db, caller, limit=100).items
    return render(request, "orders.html", {"active": "orders", "page": listed, "clients": clients})


@router.get("/settings")
def tenant_settings(request: Request, who: SignedIn = Depends(signed_in)) -> Response:
    require_role(who, "admin")
    saved = request.query_params.get("saved") == "1"
    return _settings_page(request, who, notice="Saved." if saved else None)


def _settings_page(
    request: Request,
    who: SignedIn,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    notice: str | None = None,
    status: int = 200,
) -> Response:
    db = console_of(request).db
    tenant = tenants.get_tenant(db, who.operator.tenant_id)
    context = {
        "active": "settings",
        "t": tenant,
        "events": list_console_events(db, who.operator.caller),
        "limit_names": LIMITS,
        "providers": PROVIDER_FIELDS,
        "secret_fields": SECRET_FIELDS,
        "values": values or {},
        "errors": errors or {},
        "notice": notice,
    }
    return render(request, "settings.html", context, status=status)


LIMITS = ("per_key", "per_tenant", "guess_slow_after", "guess_refuse_after")
EMAIL = ("host", "port", "security", "username", "password", "from_address", "from_name")


@router.post("/settings/limits")
async def save_limits(request: Request) -> Response:
    """Blank means the deployment's default (rate limits) or no limit (weekly value)."""
    who, form = await posted(request, "admin")
    try:
        weekly = form.get("weekly_value_limit", "").strip()
        limits: dict[str, int | None] = {
            name: int(form[name]) if form.get(name, "").strip() else None for name in LIMITS
        }
        tenants.update_tenant(
            console_of(request).db,
            who.operator.caller,
            weekly_value_limit=int(weekly) if weekly else None,
            rate_limits=limits,
        )
    except ValueError:
        errors = {"form": "limits are whole numbers"}
        return _settings_page(request, who, values=form, errors=errors, status=422)
    except DomainError as exc:
        return _settings_page(request, who, values=form, errors=errors_of(exc), status=422)
    return redirect(request, "/settings?saved=1")


PROVIDER_FIELDS = {
    "sms": ("account_sid", "auth_token", "from_number", "messaging_service_sid"),
    "whatsapp": ("phone_number_id", "access_token", "app_secret", "verify_token"),
    "email": EMAIL,
    "webhook": ("url", "secret"),
}


@router.post("/settings/email")
async def save_email(request: Request) -> Response:
    """The SMTP form's old address (bookmarked pages still post here)."""
    return await save_provider(request, "email")


@router.post("/settings/providers/{name}")
async def save_provider(request: Request, name: str) -> Response:
    """One provider block; a secret field left empty keeps the stored secret (the form never
    shows it back), all of which tenants.save_delivery_provider decides."""
    who, form = await posted(request, "admin")
    if name not in PROVIDER_FIELDS:
        raise InvalidInput("no such provider", field="provider")
    block = {field: form[field].strip() for field in PROVIDER_FIELDS[name] if field in form}
    secrets = SECRET_FIELDS.get(name, ())
    values = {k: v for k, v in form.items() if k not in secrets}
    try:
        tenants.save_delivery_provider(console_of(request).db, who.operator.caller, name, block)
    except ValidationError as exc:
        errors = validation_errors(exc)
        return _settings_page(request, who, values=values, errors=errors, status=422)
    except DomainError as exc:
        return _settings_page(request, who, values=values, errors=errors_of(exc), status=422)
    return redirect(request, "/settings?saved=1")


@router.post("/settings/providers/{name}/remove")
async def remove_provider(request: Request, name: str) -> Response:
    who, _ = await posted(request, "admin")
    if name not in PROVIDER_FIELDS:
        raise InvalidInput("no such provider", field="provider")
    patch = DeliverySettingsPatch.model_validate({name: None})
    try:
        tenants.update_tenant(console_of(request).db, who.operator.caller, delivery=patch)
    except DomainError as exc:
        return _settings_page(request, who, errors=errors_of(exc), status=422)
    return redirect(request, "/settings?saved=1")


@router.post("/settings/phone-channel")
async def save_phone_channel(request: Request) -> Response:
    """SMS or WhatsApp for phone numbers; refused (named) when that provider is not set up."""
    who, form = await posted(request, "admin")
    values = {"phone_channel": form.get("phone_channel", "")}
    try:
        patch = DeliverySettingsPatch.model_validate({"phone_channel": values["phone_channel"]})
        tenants.update_tenant(console_of(request).db, who.operator.caller, delivery=patch)
    except ValidationError as exc:
        errors = validation_errors(exc)
        return _settings_page(request, who, values=values, errors=errors, status=422)
    except DomainError as exc:
        return _settings_page(request, who, values=values, errors=errors_of(exc), status=422)
    return redirect(request, "/settings?saved=1")


@router.post("/settings/test/{channel}")
async def test_message(request: Request, channel: str) -> Response:
    """Send one test message now and show the provider's answer (probe.send_test_message)."""
    who, form = await posted(request, "admin")
    values = {"test_channel": channel, "test_recipient": form.get("recipient", "")}
    try:
        result = probe.send_test_message(
            console_of(request).db, who.operator.caller, channel, form.get("recipient")
        )
    except DomainError as exc:
        errors = {f"test_{channel}": exc.detail}
        return _settings_page(request, who, values=values, errors=errors, status=422)
    if result.ok:
        to = f" to {result.recipient}" if result.recipient else ""
        return _settings_page(request, who, notice=f"Test {channel} message sent{to}.")
    errors = {f"test_{channel}": f"the provider refused it: {result.error}"}
    return _settings_page(request, who, values=values, errors=errors, status=200)


@router.get("/settings/keys")
def keys(request: Request, who: SignedIn = Depends(signed_in)) -> Response:
    require_role(who, "admin")
    return _keys_page(request, who)


def _keys_page(
    request: Request,
    who: SignedIn,
    *,
    issued: auth.IssuedKey | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    listed = auth.list_keys(console_of(request).db, who.operator.tenant_name)
    return render(
        request,
        "keys.html",
        {"active": "settings", "keys": listed, "issued": issued, "errors": errors or {}},
    )


@router.post("/settings/keys")
async def create_key(request: Request) -> Response:
    """The secret is in this one answer and nowhere else (stored hashed, never logged)."""
    who, form = await posted(request, "admin")
    scopes = [s for s in ("issue", "redeem", "manage") if form.get(f"scope_{s}")]
    try:
        issued = auth.create_key(
            console_of(request).db,
            who.operator.tenant_name,
            scopes=scopes or [""],
            name=form.get("name", "").strip()[:100] or None,
        )
    except DomainError as exc:
        return _keys_page(request, who, errors={"scopes": exc.detail})
    return _keys_page(request, who, issued=issued)


@router.post("/settings/keys/{key_id}/revoke")
async def revoke_key(request: Request, key_id: str) -> Response:
    who, _ = await posted(request, "admin")
    db = console_of(request).db
    mine = {k.key_id for k in auth.list_keys(db, who.operator.tenant_name)}
    if key_id not in mine:
        raise InvalidInput("no such key", field="key_id")
    auth.revoke_key(db, key_id)
    return redirect(request, "/settings/keys")


@router.get("/settings/guard")
def guard_events(request: Request, who: SignedIn = Depends(signed_in)) -> Response:
    require_role(who, "admin")
    events = list_guard_events(console_of(request).db, tenant_id=who.operator.tenant_id)
    return render(request, "guard.html", {"active": "settings", "events": events})
