"""Interactive API docs at /docs, with Swagger UI served from this server.

FastAPI's default page loads Swagger UI from a CDN; a visitor-map service that
promises no third-party requests must not. The Swagger UI files come from the
`fastapi-offline` package (MIT; Swagger UI itself is Apache-2.0). The page's
one inline script is allowed by its hash, so the CSP still names no other host.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

SWAGGER_DIR = Path(fastapi_offline.__file__).parent / "static"
ASSETS = frozenset({"swagger-ui-bundle.js", "swagger-ui.css"})
ASSET_PREFIX = "/docs/assets"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)

router = APIRouter(include_in_schema=False)


def _csp(html: str) -> str:
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
        for s in _INLINE_SCRIPT.findall(html)
    )
    return (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; "
        f"script-src 'self' {hashes}; object-src 'none'; base-uri 'self'; "
        "frame-ancestors 'none'; form-action 'self'"
    )


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    page = get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} API",
        swagger_js_url=f"{root}{ASSET_PREFIX}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSET_PREFIX}/swagger-ui.css",
        swagger_favicon_url=f"{root}/static/favicon.svg",
        # No badge image from the public validator service.
        swagger_ui_parameters={"validatorUrl": None},
    )
    html = bytes(page.body).decode()
    page.headers["Content-Security-Policy"] = _csp(html)
    return page


@router.get(ASSET_PREFIX + "/{name}")
def swagger_asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise HTTPException(404)
    return FileResponse(SWAGGER_DIR / name, headers={"Cache-Control": "public, max-age=86400"})
