"""Registering sites, their hostnames, privacy and the widget snippet."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from sqlalchemy.orm import Session

from app.clock import Clock
from app.errors import Conflict, InvalidInput, NotFound
from app.sites import authz, repository
from app.sites.keys import new_site_key, normalize_hostname
from app.sites.scope import SiteScope

MAX_NAME_LENGTH = 100
MAX_HOSTNAMES = 50


def _clean_name(name: str | None, fallback: str) -> str:
    value = (name or "").strip() or fallback
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
