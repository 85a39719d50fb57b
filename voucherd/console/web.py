"""The console's plumbing: templates, forms, the signed-in operator, CSRF, errors as pages.

No rule lives here: a page asks who is signed in, checks the role may open it, calls one core
service, and renders what came back (or the form again with the field and the reason).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voucherd.auth.caller import Caller, identified
from voucherd.config import Settings
from voucherd.console import service
from voucherd.console.schemas import SignedIn
from voucherd.db.engine import Database
from voucherd.errors import DomainError, Forbidden, InvalidInput
from voucherd.formatting import format_value
from voucherd.guard import service as guard

COOKIE = "voucherd_console"
PRE_COOKIE = "voucherd_console_pre"  # double-submit CSRF for the sign-in form
PREFIX = "/console"
MAX_FORM_BYTES = 256 * 1024
TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

NAV = (
    ("overview", "Overview", ("admin", "manager")),
    ("campaigns", "Campaigns", ("admin", "manager")),
    ("vouchers", "Vouchers", ("admin", "manager", "support")),
    ("customers", "Customers", ("admin", "manager", "support")),
    ("redemptions", "Redemptions", ("admin", "manager", "support")),
    ("till", "Till", ("admin", "manager", "support", "cashier")),
    ("deliveries", "Deliveries", ("admin", "manager", "support")),
    ("orders", "Orders", ("admin", "manager")),
    ("operations", "Operations", ("admin", "manager")),
    ("settings", "Settings", ("admin",)),
)
HOME = {"cashier": "till", "support": "vouchers"}


class NotSignedIn(Exception):
    """No live session: go to the sign-in page."""


class StaleForm(Forbidden):
    """A POST without the session's CSRF token: forged, or from a page of an ended session."""


def _money(amount: int | None, currency: str | None) -> str:
    return format_value(amount, currency) or "—"


def _moment(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "—"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "svg"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = lambda amount, currency=None: _money(amount, currency)
    env.filters["moment"] = _moment
    env.filters["urlquote"] = lambda text: quote(str(text), safe="")
    return env


@dataclass
class Console:
    """What every console page needs: the database, settings and the templates."""

    db: Database
    settings: Settings
    env: Environment = field(default_factory=_environment)

    @property
    def secure_cookies(self) -> bool:
        return self.settings.public_base_url.startswith("https://")


def console_of(request: Request) -> Console:
    return request.app.state.console


def client_address(request: Request) -> str:
    visit = guard.current()
    if visit is not None:
        return visit.address
    return request.client.host if request.client else "unknown"


def signed_in(request: Request) -> SignedIn:
    """The dependency every page but sign-in uses: the live session, or off to sign in."""
    cached = getattr(request.state, "signed_in", None)
    if cached is not None:
        return cached
    found = service.session_for(console_of(request).db, request.cookies.get(COOKIE, ""))
    if found is None:
        raise NotSignedIn()
    # The operator counts against the API's rate limits like a key, and a voucher lookup that
    # misses counts against them for the guessing guard.
    identified(found.operator.caller)
    request.state.signed_in = found
    return found


def caller_of(request: Request) -> Caller:
    return signed_in(request).operator.caller


async def form_of(request: Request) -> dict[str, str]:
    """An urlencoded form (htmx and plain forms both send one), or a multipart one with a file
    (the CSV upload): the last value of a name, a file as its text (UTF-8, a BOM dropped)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise DomainError("the form is too large", field="form")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    found: dict[str, str] = {}
    async with request.form(max_files=2, max_fields=50) as parts:
        for name, value in parts.multi_items():
            if isinstance(value, str):
                found[name] = value
                continue
            data = await value.read()
            try:
                found[name] = data.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                raise InvalidInput("the file is not UTF-8 text", field=name) from exc
    return found


async def posted(request: Request, *roles: str) -> tuple[SignedIn, dict[str, str]]:
    """A POST from a page of this session: signed in, of a role allowed here, with the token."""
    who = signed_in(request)
    form = await form_of(request)
    presented = form.get("csrf") or request.headers.get("x-csrf-token")
    if not service.csrf_matches(who, presented):
        raise StaleForm("this form is stale or did not come from the console: reload the page")
    if roles:
        service.require_role(who, *roles)
    return who, form


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    console = console_of(request)
    who = getattr(request.state, "signed_in", None)
    values = {
        "request": request,
        "me": who.operator if who else None,
        "csrf": who.csrf_token if who else "",
        "nav": [(slug, label) for slug, label, roles in NAV if who and who.operator.role in roles],
        "prefix": PREFIX,
        "errors": {},
        "values": {},
        **(context or {}),
    }
    html = console.env.get_template(template).render(values)
    return HTMLResponse(html, status_code=status, headers=dict(headers or {}))


def redirect(request: Request, path: str) -> Response:
    """See other: a plain form follows it; htmx is told to load the page whole."""
    url = f"{PREFIX}{path}"
    if request.headers.get("hx-request"):
        return Response(status_code=200, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def errors_of(exc: DomainError) -> dict[str, str]:
    """The field a service named (its last dotted part is the form field), and the reason."""
    name = (exc.field or "form").split(".")[-1]
    return {name: exc.detail, **({"form": exc.detail} if name == "form" else {})}


def set_session_cookie(console: Console, response: Response, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(service.ABSOLUTE.total_seconds()),
        path=PREFIX,
        httponly=True,
        samesite="lax",
        secure=console.secure_cookies,
    )


def pre_token(request: Request) -> str:
    return request.cookies.get(PRE_COOKIE) or secrets.token_urlsafe(24)


def set_pre_cookie(console: Console, response: Response, token: str) -> None:
    response.set_cookie(
        PRE_COOKIE, token, path=PREFIX, httponly=True, samesite="lax", secure=console.secure_cookies
    )


def error_page(request: Request, exc: DomainError) -> Response:
    if request.headers.get("hx-request") and exc.status in (400, 409, 422):
        return render(request, "_flash.html", {"error": exc.detail}, status=200)
    return render(
        request,
        "error.html",
        {"status": exc.status, "title": exc.title, "detail": exc.detail},
        status=exc.status,
    )


def not_signed_in(request: Request, _: Exception) -> Response:
    if request.headers.get("hx-request"):
        return Response(status_code=200, headers={"HX-Redirect": f"{PREFIX}/sign-in"})
    return RedirectResponse(f"{PREFIX}/sign-in", status_code=303)


_HEADERS = [
    (
        b"content-security-policy",
        (
            b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
        ),
    ),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
]


class SecurityHeaders:
    """Pages that show codes and balances are never cached, framed or leaked by a referrer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        static = "/static/" in scope.get("path", "")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += _HEADERS
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def validation_errors(exc: Any) -> dict[str, str]:
    """A pydantic ValidationError as {form field: reason}, the field being the last part of the
    error's location (``code_config.pattern`` -> ``pattern``)."""
    found: dict[str, str] = {}
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ()) if not isinstance(part, int)]
        name = location[-1] if location else "form"
        found.setdefault(name, str(error.get("msg", "invalid")).removeprefix("Value error, "))
    return found
