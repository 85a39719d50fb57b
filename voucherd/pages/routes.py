"""The public voucher page, ``/v/{public_token}``, and its barcode and QR images.

No credentials: the token in the link is the secret. So every answer here keeps it from leaking
(no Referer to the store finder or anywhere else, no caching by shared caches, no indexing),
runs no script at all (the Content-Security-Policy allows only this page's own stylesheet, by
hash), and the token is never logged: uvicorn's access log is off (voucherd serve), and errors
on these routes are logged here, without the path, instead of by the app's handlers.

Every wrong link, whatever its shape (unknown token, too long, odd characters, extra path
segments), gets the same 404 page, byte for byte, so probing tells nothing about which vouchers
exist.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable, Coroutine
from importlib.resources import files
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup
from sqlalchemy.exc import DBAPIError

from voucherd.api.deps import DB
from voucherd.api.openapi import face_responses
from voucherd.db.engine import Database
from voucherd.errors import NotFound
from voucherd.guard.service import RateLimited
from voucherd.pages.barcode import code128_svg, qr_svg
from voucherd.pages.i18n import translator
from voucherd.pages.schemas import present_page
from voucherd.pages.service import VoucherPageFacts, read_voucher_page

log = logging.getLogger("voucherd.pages")

_templates = Environment(
    loader=PackageLoader("voucherd.pages", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_CSS = files("voucherd.pages").joinpath("templates/page.css").read_text("utf-8").strip()
_CSS_HASH = base64.b64encode(hashlib.sha256(_CSS.encode("utf-8")).digest()).decode("ascii")

_PRIVATE = {
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
}
PAGE_HEADERS = {
    **_PRIVATE,
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        # The barcode and QR are inline SVG, so not even images are fetched.
        f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
}
# The images are the Voucherify-style asset URLs an issuer may embed in its own app or email, so
# they may be embedded anywhere and cached briefly by the holder's browser, never by a shared
# cache: the code they draw never changes. They are served whatever the voucher's state (they
# show only the code, which the link's holder has anyway); the page decides whether to offer them.
IMAGE_HEADERS = {
    **_PRIVATE,
    "Cache-Control": "private, max-age=300",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}
SVG = "image/svg+xml"


class _PageRoute(APIRoute):
    """Answers a failure with an HTML page and logs it without the URL, which holds the token."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except RateLimited as exc:
                # Too many requests from this address, or too many unknown links (voucherd/guard).
                return _message(
                    429,
                    "Please try again later",
                    "Too many voucher pages were asked for from your connection. "
                    "Please try again in a little while.",
                    {"Retry-After": str(exc.retry_after)},
                )
            except DBAPIError as exc:
                log.warning("voucher page: database unavailable (%s)", type(exc).__name__)
                return _message(
                    503,
                    "Please try again",
                    "Your voucher cannot be shown just now. Please try again in a minute.",
                    {"Retry-After": "5"},
                )
            except Exception:
                log.exception("voucher page: unexpected error")
                return _message(
                    500, "Please try again", "Your voucher cannot be shown just now.", {}
                )

        return guarded


router = APIRouter(
    tags=["voucher page"],
    route_class=_PageRoute,
    # Failures are pages too (a wrong link, too many requests, the database away).
    responses=face_responses("PageText", {"type": "string"}, 404, 429, 503, media_type="text/html"),
)


@router.get("/v/{token}", response_class=HTMLResponse, summary="The holder's voucher page")
def voucher_page(token: str, db: DB) -> Response:
    facts = _facts(db, token)
    if facts is None:
        return not_found()
    view = present_page(facts, now=db.now())
    html = _templates.get_template("voucher.html").render(
        css=Markup(_CSS),
        lang=view.lang,
        _=translator(facts.locale),
        view=view,
        barcode=_barcode_markup(facts.code) if view.scannable else None,
        qr=Markup(qr_svg(facts.code)) if view.scannable else None,
    )
    return HTMLResponse(html, headers=PAGE_HEADERS)


@router.get(
    "/v/{token}/barcode.svg",
    summary="The voucher's code as a Code 128 barcode",
    response_class=Response,
    responses={200: {"content": {SVG: {}}}},
)
def barcode_image(token: str, db: DB) -> Response:
    facts = _facts(db, token)
    if facts is None:
        return not_found()
    try:
        svg = code128_svg(facts.code)
    except ValueError:
        return not_found()  # a code beyond ASCII has no Code 128 form; the QR still has it
    return Response(svg, media_type=SVG, headers=IMAGE_HEADERS)


@router.get(
    "/v/{token}/qr.svg",
    summary="The voucher's code as a QR code (the code, not the page link)",
    response_class=Response,
    responses={200: {"content": {SVG: {}}}},
)
def qr_image(token: str, db: DB) -> Response:
    facts = _facts(db, token)
    if facts is None:
        return not_found()
    return Response(qr_svg(facts.code), media_type=SVG, headers=IMAGE_HEADERS)


@router.get("/v/{anything:path}", include_in_schema=False)
def unknown_page(anything: str) -> Response:
    """A link with extra or odd segments reads exactly like an unknown token."""
    return not_found()


def not_found() -> Response:
    return _message(
        404,
        "Voucher not found",
        "This voucher link is not valid. Please check the link in your message.",
        {},
    )


def _facts(db: Database, token: str) -> VoucherPageFacts | None:
    try:
        return read_voucher_page(db, token)
    except NotFound:
        return None


def _barcode_markup(code: str) -> Markup | None:
    try:
        return Markup(code128_svg(code))
    except ValueError:
        return None


def _message(status: int, heading: str, text: str, headers: dict[str, str]) -> Response:
    html = _templates.get_template("message.html").render(
        # No campaign, so no locale: a wrong link must read the same whoever asks.
        css=Markup(_CSS),
        lang="en",
        _=translator(None),
        heading=heading,
        text=text,
    )
    return HTMLResponse(html, status_code=status, headers={**PAGE_HEADERS, **headers})
