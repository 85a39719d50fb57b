"""/docs and /redoc that work on a server without internet (issue 15).

FastAPI's default pages load Swagger UI and ReDoc from a CDN, so on an air-gapped server (where
self-hosted software often runs) they were blank. The assets come from the ``fastapi-offline``
package (MIT; Swagger UI and ReDoc are under their own MIT and Apache-2.0 licences), which ships
them as plain files: a dependency keeps them updatable with pip, where a vendored copy would age
unnoticed. The pages themselves are FastAPI's documented self-hosting
(https://fastapi.tiangolo.com/how-to/custom-docs-ui-assets/), served by this router; the app is
built with ``docs_url=None, redoc_url=None``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse, HTMLResponse

ASSETS_PATH = "/docs/assets"
OPENAPI_PATH = "/openapi.json"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"

# The only files served, by name: nothing else under the package's folder is reachable.
_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}

router = APIRouter(include_in_schema=False)


def _assets_dir() -> Path:
    return Path(str(files("fastapi_offline") / "static"))


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", ""))


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    root = _root(request)
    return get_swagger_ui_html(
        openapi_url=f"{root}{OPENAPI_PATH}",
        title="voucherd - Swagger UI",
        oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT_PATH}",
        swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
    )


@router.get(OAUTH2_REDIRECT_PATH)
def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    root = _root(request)
    return get_redoc_html(
        openapi_url=f"{root}{OPENAPI_PATH}",
        title="voucherd - ReDoc",
        redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
        # Google's fonts are the one other thing ReDoc fetches from outside.
        with_google_fonts=False,
    )


@router.get(ASSETS_PATH + "/{name}")
def asset(name: str) -> FileResponse:
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status_code=404)
    return FileResponse(
        _assets_dir() / name,
        media_type=media_type,
        # The files change only with the installed package; a day's caching spares reloading
        # 2.8 MB on every visit.
        headers={"Cache-Control": "public, max-age=86400"},
    )
