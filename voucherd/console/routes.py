"""The console app (mounted at /console) and its account pages: sign-in, sign-out, password,
operators. The other pages are in till.py, lookup.py, campaign_pages.py, overview.py and
admin_pages.py; each is a router included here."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from voucherd.config import Settings
from voucherd.console import service
from voucherd.console.models import ROLES
from voucherd.console.schemas import SignedIn
from voucherd.console.service import SignInRefused, SignInThrottled
from voucherd.console.web import (
    COOKIE,
    HOME,
    PREFIX,
    STATIC,
    Console,
    NotSignedIn,
    SecurityHeaders,
    client_address,
    console_of,
    error_page,
    errors_of,
    form_of,
    not_signed_in,
    posted,
    pre_token,
    redirect,
    render,
    set_pre_cookie,
    set_session_cookie,
    signed_in,
)
from voucherd.db.engine import Database
from voucherd.errors import DomainError, InvalidInput
from voucherd.observability.telemetry import native_telemetry

router = APIRouter()


def create_console(db: Database, settings: Settings) -> FastAPI:
    """The console as its own small app, so its errors are pages and not problem+json, and it
    stays out of the API's OpenAPI document. Mounted inside the main app, it runs behind the
    same middlewares (request ids, logs, the guard)."""
    from voucherd.console import (
        admin_pages,
        campaign_pages,
        lookup,
        order_pages,
        overview,
        redemption_pages,
        till,
    )

    app = FastAPI(
        docs_url=None, redoc_url=None, openapi_url=None, telemetry=native_telemetry(settings)
    )
    app.state.console = Console(db, settings)
    app.add_middleware(SecurityHeaders)
    app.add_exception_handler(NotSignedIn, not_signed_in)
    app.add_exception_handler(DomainError, error_page)  # type: ignore[arg-type]
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for part in (
        router,
        till.router,
        lookup.router,
        campaign_pages.router,
        overview.router,
        redemption_pages.router,
        admin_pages.router,
        order_pages.router,
    ):
        app.include_router(part)
    return app


@router.get("/")
def home(request: Request, who: SignedIn = Depends(signed_in)) -> Response:
    return redirect(request, f"/{HOME.get(who.operator.role, 'overview')}")


@router.get("/sign-in")
def sign_in_page(request: Request) -> Response:
    token = pre_token(request)
    response = render(request, "sign_in.html", {"pre": token})
    set_pre_cookie(console_of(request), response, token)
    return response


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    console = console_of(request)
    form = await form_of(request)
    values = {"email": form.get("email", "")}
    cookie = request.cookies.get("voucherd_console_pre")
    if not cookie or form.get("pre") != cookie:
        error = {"form": "the sign-in form was stale: try again"}
        return _sign_in_again(request, values, error, 403)
    try:
        new = service.sign_in(
            console.db,
            form.get("email", ""),
            form.get("password", ""),
            address=client_address(request),
        )
    except SignInThrottled as exc:
        response = _sign_in_again(request, values, {"password": exc.detail}, 429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except SignInRefused as exc:
        return _sign_in_again(request, values, {"password": exc.detail}, 401)
    request.state.signed_in = new.signed_in
    response = redirect(request, f"/{HOME.get(new.signed_in.operator.role, 'overview')}")
    set_session_cookie(console, response, new.token)
    return response


def _sign_in_again(
    request: Request, values: dict[str, str], errors: dict[str, str], status: int
) -> Response:
    token = pre_token(request)
    response = render(
        request,
        "sign_in.html",
        {"pre": token, "values": values, "errors": errors},
        status=status,
    )
    set_pre_cookie(console_of(request), response, token)
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    who, _ = await posted(request)
    service.end_session(console_of(request).db, who.token_hash, actor=who.operator.id)
    response = redirect(request, "/sign-in")
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


@router.get("/account")
def account(request: Request, who: SignedIn = Depends(signed_in)) -> Response:
    return render(request, "account.html")


@router.post("/account/password")
async def change_password(request: Request) -> Response:
    who, form = await posted(request)
    console = console_of(request)
    try:
        new = service.change_password(
            console.db, who, form.get("current_password", ""), form.get("new_password", "")
        )
    except InvalidInput as exc:
        field = "new_password" if exc.field == "password" else exc.field or "form"
        return render(request, "account.html", {"errors": {field: exc.detail}}, status=422)
    request.state.signed_in = new.signed_in
    response = render(request, "account.html", {"changed": True})
    set_session_cookie(console, response, new.token)
    return response


@router.get("/settings/operators")
def operators(request: Request, who: SignedIn = Depends(signed_in)) -> Response:
    service.require_role(who, "admin")
    return _operators_page(request, who)


def _operators_page(
    request: Request,
    who: SignedIn,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    listed = service.list_operators(console_of(request).db, who.operator.caller)
    return render(
        request,
        "operators.html",
        {"operators": listed, "roles": ROLES, "values": values or {}, "errors": errors or {}},
        status=status,
    )


@router.post("/settings/operators")
async def create_operator(request: Request) -> Response:
    who, form = await posted(request, "admin")
    values = {k: form.get(k, "") for k in ("email", "name", "role")}
    try:
        service.create_operator(
            console_of(request).db,
            tenant_id=who.operator.tenant_id,
            email=form.get("email", ""),
            password=form.get("password", ""),
            role=form.get("role", ""),
            name=form.get("name"),
            created_by=who.operator.id,
        )
    except DomainError as exc:
        return _operators_page(request, who, values=values, errors=errors_of(exc), status=422)
    return redirect(request, "/settings/operators")


@router.post("/settings/operators/{operator_id}/{action}")
async def switch_operator(request: Request, operator_id: str, action: str) -> Response:
    who, _ = await posted(request, "admin")
    if action not in ("disable", "enable"):
        raise InvalidInput("disable or enable", field="action")
    service.set_operator_disabled(
        console_of(request).db, who.operator.caller, operator_id, disabled=action == "disable"
    )
    return redirect(request, "/settings/operators")
