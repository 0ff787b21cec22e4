"""Registering sites, their hostnames, privacy and the widget snippet."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from sqlalchemy.orm import Session

from app.clock import Clock
from app.errors import Conflict, InvalidInput, NotFound
from app.inputs import check_text
from app.sites import authz, repository
from app.sites.keys import new_site_key, normalize_hostname
from app.sites.scope import SiteScope

MAX_NAME_LENGTH = 100
MAX_HOSTNAMES = 50


def _clean_name(name: str | None, fallback: str) -> str:
    value = check_text((name or "").strip(), "name") or fallback
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidInput(f"the site name is too long (at most {MAX_NAME_LENGTH} characters)")
    return value


def create_site(
    session: Session, clock: Clock, *, account_id: int, domain: str, name: str | None = None
) -> SiteScope:
    host = normalize_hostname(domain)
    site = repository.insert(
        session,
        account_id=account_id,
        public_key=new_site_key(),
        name=_clean_name(name, host),
        domain=host,
        created_at=clock.now(),
    )
    return authz.adopt_new_site(site)


def hostnames(session: Session, scope: SiteScope) -> list[str]:
    return repository.hostnames(session, scope)


def add_hostname(session: Session, scope: SiteScope, raw: str) -> str:
    host = normalize_hostname(raw)
    existing = repository.hostnames(session, scope)
    if host in existing:
        raise Conflict(f"{host} is already allowed for this site")
    if len(existing) >= MAX_HOSTNAMES:
        raise InvalidInput(f"a site can have at most {MAX_HOSTNAMES} hostnames")
    repository.add_hostname(session, scope, host)
    return host


@dataclass(frozen=True)
class Hostname:
    name: str
    plain_http: bool  # the owner's pages there are served over http, not https

    @property
    def origin(self) -> str:
        """The origin of the owner's pages on this hostname (default port)."""
        shown = f"[{self.name}]" if ":" in self.name else self.name
        return f"{'http' if self.plain_http else 'https'}://{shown}"


def hostname_list(session: Session, scope: SiteScope) -> list[Hostname]:
    return [Hostname(n, p) for n, p in repository.hostname_schemes(session, scope)]


def set_hostname_scheme(session: Session, scope: SiteScope, hostname: str, scheme: str) -> bool:
    """The owner's choice of scheme for one of the site's hostnames; True for plain http."""
    if scheme not in ("https", "http"):
        raise InvalidInput("scheme: choose https or http")
    plain_http = scheme == "http"
    if repository.set_plain_http(session, scope, hostname, plain_http) == 0:
        raise NotFound(f"{hostname} is not a hostname of this site")
    return plain_http


def listed_origin(session: Session, scope: SiteScope, seen_host: str | None) -> str:
    """The origin of a listed hostname for a page last seen on ``seen_host``: that
    hostname itself when listed, else the listed one it is a subdomain of (the most
    specific), else the site's main domain. Never a host, port or scheme a visitor
    named: only what the owner listed, over https unless they chose http."""
    listed = {h.name: h for h in hostname_list(session, scope)}
    host = (seen_host or "").lower().rstrip(".")
    labels = host.split(".") if host else []
    for i in range(len(labels)):
        candidate = listed.get(".".join(labels[i:]))
        if candidate is not None:
            return candidate.origin
    return listed.get(scope.domain, Hostname(scope.domain, plain_http=False)).origin


def remove_hostname(session: Session, scope: SiteScope, hostname: str) -> None:
    if hostname == scope.domain:
        raise InvalidInput("the site's main domain cannot be removed")
    if repository.remove_hostname(session, scope, hostname) == 0:
        raise NotFound(f"{hostname} is not a hostname of this site")


def update_settings(session: Session, scope: SiteScope, *, name: str, is_public: bool) -> None:
    repository.update_settings(
        session, scope, name=_clean_name(name, scope.domain), is_public=is_public
    )


def delete_site(session: Session, scope: SiteScope) -> None:
    repository.delete_site(session, scope)


@dataclass(frozen=True)
class Snippet:
    counter_html: str
    script_html: str

    @property
    def full_html(self) -> str:
        return f"{self.counter_html}\n{self.script_html}"


def snippet(base_url: str, scope: SiteScope) -> Snippet:
    key = escape(scope.public_key)
    base = escape(base_url)
    alt = escape(f"Visitor map of {scope.name}")
    counter = (
        f'<a href="{base}/map/{key}" title="{alt}">'
        f'<img src="{base}/c/{key}.png" alt="{alt}" '
        f'loading="eager" referrerpolicy="strict-origin-when-cross-origin"></a>'
    )
    script = f'<script async src="{base}/w.js" data-site="{key}"></script>'
    return Snippet(counter_html=counter, script_html=script)
