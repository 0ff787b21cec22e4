"""The only code that turns a key into a :class:`SiteScope` the caller may use.

Anything the caller may not see is reported as NotFound, never as forbidden:
a stranger cannot tell a private site from a missing one.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.errors import NotFound
from app.models import Site
from app.sites import repository
from app.sites.keys import is_wellformed_key
from app.sites.scope import Access, SiteScope, _issue


def _scope(site: Site, access: Access) -> SiteScope:
    return _issue(
        site_id=site.id,
        account_id=site.account_id,
        public_key=site.public_key,
        name=site.name,
        domain=site.domain,
        is_public=site.is_public,
        created_at=site.created_at,
        access=access,
    )


def _find(session: Session, key: str) -> Site:
    site = repository.find_by_key(session, key) if is_wellformed_key(key) else None
    if site is None:
        raise NotFound("no such site")
    return site


def owned_site(session: Session, account_id: int, key: str) -> SiteScope:
    site = _find(session, key)
    if site.account_id != account_id:
        raise NotFound("no such site")
    return _scope(site, Access.OWNER)


def owned_sites(session: Session, account_id: int) -> list[SiteScope]:
    return [_scope(s, Access.OWNER) for s in repository.list_for_account(session, account_id)]


def site_for_admin(session: Session, key: str) -> SiteScope:
    """Any site by its key, for the self-hoster's own command line (``hitmap stats``).

    Never reachable from HTTP: the CLI runs with the operator's access to the
    database anyway. Unknown keys raise NotFound like everywhere else.
    """
    return _scope(_find(session, key), Access.OWNER)


def site_for_job(session: Session, site_id: int, *, lock: bool = False) -> SiteScope | None:
    """The site a background job carries the id of; None when it is gone (the job then
    discards itself). Jobs run with the operator's access, like ``site_for_admin``."""
    site = repository.find_by_id(session, site_id, lock=lock)
    return None if site is None else _scope(site, Access.OWNER)


def adopt_new_site(site: Site) -> SiteScope:
    """Scope for a site its creator has just registered."""
    return _scope(site, Access.OWNER)


def viewable_site(session: Session, viewer_account_id: int | None, key: str) -> SiteScope:
    """The public map page: anyone for a public site, only the owner for a private one."""
    site = _find(session, key)
    if viewer_account_id is not None and site.account_id == viewer_account_id:
        return _scope(site, Access.OWNER)
    if not site.is_public:
        raise NotFound("no such site")
    return _scope(site, Access.PUBLIC)


def ingest_site(session: Session, key: str) -> tuple[SiteScope, frozenset[str]]:
    """The counter endpoint: a site by its public key, with its allowed hostnames."""
    site = _find(session, key)
    scope = _scope(site, Access.INGEST)
    return scope, frozenset(repository.hostnames(session, scope))


def ingest_sites_by_id(session: Session, site_ids: set[int]) -> dict[int, SiteScope]:
    """Ingest scopes for hits spooled during a database outage (they carry site ids).

    The ids were authorised by key when the hits arrived; a site deleted since then
    is missing from the answer, so its spooled hits are discarded.
    """
    return {s.id: _scope(s, Access.INGEST) for s in repository.sites_by_id(session, site_ids)}


def all_ingest_sites(session: Session) -> dict[str, tuple[SiteScope, frozenset[str]]]:
    """Every site as the counter sees it, by public key: a process fills its cache at
    start, so that a database outage later does not find it knowing no site."""
    return {
        site.public_key: (_scope(site, Access.INGEST), frozenset(names))
        for site, names in repository.all_sites_with_hostnames(session)
    }
