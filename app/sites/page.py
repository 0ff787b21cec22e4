"""The owner's site page, drawn whole: the dashboard, the snippet and every settings form.

Its GET route (``app.stats.routes``) and the POST routes of the site's settings (sites,
maps, retention) all render it, the latter again with a form's error and values.
"""

from __future__ import annotations

import datetime as dt

from fastapi import Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from app.context import AppContext
from app.maps.schemas import style_form
from app.retention.schemas import retention_form
from app.sites import service as sites
from app.sites.schemas import SiteForms
from app.sites.scope import SiteScope
from app.stats import service as stats
from app.stats.schemas import dashboard_view
from app.stats.service import Range
from app.templating import render


def site_path(scope: SiteScope) -> str:
    return f"/sites/{scope.public_key}"


def _day(moment: dt.datetime) -> str:
    return f"{moment.day} {moment:%b %Y}"


def render_site_page(
    request: Request,
    ctx: AppContext,
    session: Session,
    scope: SiteScope,
    *,
    range_: Range = Range.MONTH,
    forms: SiteForms | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The site page; the POST routes re-render it with a form's error and values."""
    forms = forms or SiteForms()
    base_url = ctx.settings.base_url.rstrip("/")
    dashboard = stats.dashboard(session, ctx.clock, scope, range_)
    return render(
        request,
        "site_detail.html",
        {
            "site": scope,
            "path": site_path(scope),
            "map_url": f"/map/{scope.public_key}",
            "public_map_url": f"{base_url}/map/{scope.public_key}",
            "view": dashboard_view(dashboard, site_path(scope)),
            "added_on": _day(scope.created_at),
            "snippet": sites.snippet(base_url, scope),
            "hostnames": sites.hostname_list(session, scope),
            "forms": forms,
            "error": forms.error,
            "name_value": scope.name if forms.name is None else forms.name,
            "public_value": scope.is_public if forms.is_public is None else forms.is_public,
            "map_style": style_form(session, scope),
            "retention": retention_form(
                session, ctx.settings, scope, mode=forms.retention_mode, days=forms.retention_days
            ),
        },
        status_code=status_code,
    )
