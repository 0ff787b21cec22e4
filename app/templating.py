"""Jinja2 pages: one environment, with the helpers every template may use."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from app.deps import CSRF_FIELD, csrf_token, get_ctx
from app.security import keyed_digest
from app.stats.countries import country_flag, country_name

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
TEMPLATES.env.globals.update(
    csrf_field=CSRF_FIELD, country_name=country_name, country_flag=country_flag
)
TEMPLATES.env.filters["thousands"] = lambda n: f"{int(n):,}"


def _flash_signature(secret: str, message: str) -> str:
    return keyed_digest(secret, "flash", message).hex()[:20]


def flash_url(request: Request, path: str, message: str) -> str:
    """``path`` with a one-line notice for the next page, signed so that nobody can
    craft a link that makes Hitmap show their text."""
    sig = _flash_signature(get_ctx(request).secret, message)
    return f"{path}?{urlencode({'flash': message, 'fs': sig})}"


def verified_flash(request: Request) -> str | None:
    message = request.query_params.get("flash")
    sig = request.query_params.get("fs", "")
    if not message:
        return None
    expected = _flash_signature(get_ctx(request).secret, message)
    return message if hmac.compare_digest(sig, expected) else None


class LazyCsrfToken:
    """The page's CSRF token, made when a template first writes it.

    Making one sets the browser's CSRF cookie, so a page without a form (the public
    map, which anyone may cache) sets no cookie on an anonymous visitor.
    """

    __slots__ = ("_request", "_value")

    def __init__(self, request: Request) -> None:
        self._request = request
        self._value: str | None = None

    def __str__(self) -> str:
        if self._value is None:
            self._value = csrf_token(self._request)
        return self._value

    def __html__(self) -> str:  # hex digits: nothing to escape
        return str(self)


def render(
    request: Request, template: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> HTMLResponse:
    values: dict[str, Any] = {
        "account": getattr(request.state, "account", None),
        "csrf_token": LazyCsrfToken(request),
        "base_url": get_ctx(request).settings.base_url,
        "flash": verified_flash(request),
    }
    values.update(context or {})
    return TEMPLATES.TemplateResponse(request, template, values, status_code=status_code)
