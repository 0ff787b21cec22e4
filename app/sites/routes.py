"""The sites pages: the list, registering a site, and the forms on a site's page.

Every route that takes a key goes through ``authz.owned_site`` first: a site the
caller does not own answers 404 before any form value is looked at. A form error
re-renders the page with the message (nothing is written: each change runs in a
savepoint); a change redirects back with a flash message.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask

from app.context import AppContext
from app.deps import Csrf, CurrentAccount, DbSession, get_ctx
from app.errors import DomainError, InvalidInput
from app.inputs import FormText, checkbox
from app.retention import service as retention
from app.sites import authz
from app.sites import service as sites
from app.sites.page import render_site_page, site_path
from app.sites.schemas import PageError, SiteForms, SiteSummary
from app.sites.scope import SiteScope
from app.stats import service as stats
from app.templating import flash_url, render

router = APIRouter(tags=["sites"], include_in_schema=False)


def _redirect(
    request: Request, path: str, flash: str, *, forget: tuple[AppContext, str] | None = None
) -> Response:
    """303 to ``path`` with a flash message; ``forget`` drops a site from the counter's cache.

    The counter caches sites. The unit of work commits before the response is sent and
    background tasks run after it, so a changed or deleted site is dropped once the
    change is visible: in this process at once, in the others through the change log.
    """
    task = BackgroundTask(forget[0].site_directory.site_changed, forget[1]) if forget else None
    return RedirectResponse(flash_url(request, path, flash), status_code=303, background=task)


@router.get("/sites", response_class=HTMLResponse, name="sites_list")
def sites_list(request: Request, session: DbSession, account: CurrentAccount) -> HTMLResponse:
    ctx = get_ctx(request)
    rows = []
    for scope in authz.owned_sites(session, account.id):
        numbers = stats.dashboard(session, ctx.clock, scope, stats.Range.TODAY)
        rows.append(SiteSummary.of(scope, today=numbers.today, total=numbers.total))
    return render(request, "sites_list.html", {"sites": rows})


@router.get("/sites/new", response_class=HTMLResponse, name="site_new")
def site_new(request: Request, account: CurrentAccount) -> HTMLResponse:
    return render(request, "site_new.html", {"values": {"name": "", "domain": ""}})


@router.post("/sites", dependencies=[Csrf], name="site_create")
def site_create(
    request: Request,
    session: DbSession,
    account: CurrentAccount,
    domain: FormText = "",
    name: FormText = "",
) -> Response:
    ctx = get_ctx(request)
    try:
        with session.begin_nested():
            scope = sites.create_site(
                session, ctx.clock, account_id=account.id, domain=domain, name=name
            )
    except DomainError as exc:
        return render(
            request,
            "site_new.html",
            {"values": {"name": name, "domain": domain}, "error": exc.message},
            status_code=exc.status,
        )
    return _redirect(
        request,
        site_path(scope),
        f"{scope.domain} is registered. Add the snippet below to your pages to start counting.",
    )


def _page_error(
    request: Request,
    session: Session,
    scope: SiteScope,
    exc: DomainError,
    section: str,
    forms: SiteForms,
) -> HTMLResponse:
    forms.error = PageError(section, exc.message)
    return render_site_page(
        request, get_ctx(request), session, scope, forms=forms, status_code=exc.status
    )


@router.post("/sites/{key}/settings", dependencies=[Csrf], name="site_settings")
def site_settings(
    key: str,
    request: Request,
    session: DbSession,
    account: CurrentAccount,
    name: FormText = "",
    is_public: FormText = "",
) -> Response:
    scope = authz.owned_site(session, account.id, key)
    public = checkbox(is_public, "public")
    try:
        with session.begin_nested():
            sites.update_settings(session, scope, name=name, is_public=public)
    except DomainError as exc:
        forms = SiteForms(name=name, is_public=public)
        return _page_error(request, session, scope, exc, "settings", forms)
    return _redirect(
        request, site_path(scope), "Settings saved.", forget=(get_ctx(request), scope.public_key)
    )


@router.post("/sites/{key}/hostnames", dependencies=[Csrf], name="site_hostname_add")
def site_hostname_add(
    key: str,
    request: Request,
    session: DbSession,
    account: CurrentAccount,
    hostname: FormText = "",
) -> Response:
    scope = authz.owned_site(session, account.id, key)
    try:
        with session.begin_nested():
            added = sites.add_hostname(session, scope, hostname)
    except DomainError as exc:
        forms = SiteForms(hostname=hostname)
        return _page_error(request, session, scope, exc, "hostnames", forms)
    return _redirect(
        request,
        site_path(scope),
        f"{added} added: the counter now accepts pages from it.",
        forget=(get_ctx(request), scope.public_key),
    )


@router.post("/sites/{key}/hostnames/remove", dependencies=[Csrf], name="site_hostname_remove")
def site_hostname_remove(
    key: str,
    request: Request,
    session: DbSession,
    account: CurrentAccount,
    hostname: FormText = "",
) -> Response:
    scope = authz.owned_site(session, account.id, key)
    try:
        with session.begin_nested():
            sites.remove_hostname(session, scope, hostname.strip().lower())
    except DomainError as exc:
        return _page_error(request, session, scope, exc, "hostnames", SiteForms())
    return _redirect(
        request,
        site_path(scope),
        f"{hostname.strip().lower()} removed.",
        forget=(get_ctx(request), scope.public_key),
    )


@router.post("/sites/{key}/hostnames/scheme", dependencies=[Csrf], name="site_hostname_scheme")
def site_hostname_scheme(
    key: str,
    request: Request,
    session: DbSession,
    account: CurrentAccount,
    hostname: FormText = "",
    scheme: FormText = "",
) -> Response:
    """The owner's choice of http or https for a hostname (the heatmap overlay link's)."""
    scope = authz.owned_site(session, account.id, key)
    host = hostname.strip().lower()
    try:
        with session.begin_nested():
            plain_http = sites.set_hostname_scheme(session, scope, host, scheme.strip().lower())
    except DomainError as exc:
        return _page_error(request, session, scope, exc, "hostnames", SiteForms())
    used = "plain http" if plain_http else "https"
    return _redirect(request, site_path(scope), f"Overlay links open pages on {host} over {used}.")


@router.post("/sites/{key}/retention", dependencies=[Csrf], name="site_retention")
def site_retention(
    key: str,
    request: Request,
    session: DbSession,
    account: CurrentAccount,
    mode: FormText = "",
    days: FormText = "",
) -> Response:
    scope = authz.owned_site(session, account.id, key)
    default_days = get_ctx(request).settings.retention_days
    try:
        with session.begin_nested():
            choice = retention.parse_choice(mode, days)
            retention.set_choice(session, scope, choice)
    except DomainError as exc:
        forms = SiteForms(retention_mode=mode, retention_days=days)
        return _page_error(request, session, scope, exc, "retention", forms)
    kept = retention.effective_days(choice, default_days)
    return _redirect(request, site_path(scope), f"Retention saved. {retention.describe(kept)}")


@router.post("/sites/{key}/delete", dependencies=[Csrf], name="site_delete")
def site_delete(
    key: str,
    request: Request,
    session: DbSession,
    account: CurrentAccount,
    confirm: FormText = "",
) -> Response:
    scope = authz.owned_site(session, account.id, key)
    try:
        if confirm.strip().lower() != scope.domain:
            raise InvalidInput(
                f"type the site's domain, {scope.domain}, to confirm; the site was not deleted"
            )
        with session.begin_nested():
            sites.delete_site(session, scope)
    except DomainError as exc:
        return _page_error(request, session, scope, exc, "delete", SiteForms(confirm=confirm))
    return _redirect(
        request,
        "/sites",
        f"{scope.name} was deleted with all its statistics.",
        forget=(get_ctx(request), scope.public_key),
    )
