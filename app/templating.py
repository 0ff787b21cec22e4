"""Jinja2 pages: one environment, with the helpers every template may use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from app.deps import CSRF_FIELD, csrf_token, get_ctx
from app.stats.countries import country_flag, country_name

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
TEMPLATES.env.globals.update(
    csrf_field=CSRF_FIELD, country_name=country_name, country_flag=country_flag
)
TEMPLATES.env.filters["thousands"] = lambda n: f"{int(n):,}"


def render(
    request: Request, template: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> HTMLResponse:
    values: dict[str, Any] = {
        "account": getattr(request.state, "account", None),
        "csrf_token": csrf_token(request),
        "base_url": get_ctx(request).settings.base_url,
        "flash": request.query_params.get("flash"),
    }
    values.update(context or {})
    return TEMPLATES.TemplateResponse(request, template, values, status_code=status_code)
