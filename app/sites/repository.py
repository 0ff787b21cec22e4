"""All SQL for sites and their hostnames."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from app.db import insert_for
from app.models import DailyCountryCount, LocationCount, Site, SiteChange, SiteHostname
from app.sites.scope import SiteScope


def find_by_key(session: Session, public_key: str) -> Site | None:
    return session.scalars(select(Site).where(Site.public_key == public_key)).one_or_none()


def find_by_id(session: Session, site_id: int, *, lock: bool = False) -> Site | None:
    """A site by id (jobs carry ids). ``lock``: on PostgreSQL, hold the site's row until
    commit (FOR NO KEY UPDATE): one render of a site at a time across all processes,
    and the site cannot be deleted under it, while counting visits (KEY SHARE) goes on."""
    stmt = select(Site).where(Site.id == site_id)
    if lock:
        stmt = stmt.with_for_update(key_share=True)
    return session.scalars(stmt).one_or_none()


def sites_by_id(session: Session, site_ids: set[int]) -> Sequence[Site]:
    if not site_ids:
        return []
    return session.scalars(select(Site).where(Site.id.in_(sorted(site_ids)))).all()


def list_for_account(session: Session, account_id: int) -> Sequence[Site]:
    return session.scalars(
        select(Site).where(Site.account_id == account_id).order_by(Site.created_at, Site.id)
    ).all()


def insert(
    session: Session,
    *,
    account_id: int,
    public_key: str,
    name: str,
    domain: str,
    created_at: dt.datetime,
) -> Site:
    site = Site(
        account_id=account_id,
        public_key=public_key,
        name=name,
        domain=domain,
        is_public=True,
        created_at=created_at,
    )
    session.add(site)
    session.flush()
    session.add(SiteHostname(site_id=site.id, hostname=domain))
    session.flush()
    return site


def all_sites_with_hostnames(session: Session) -> list[tuple[Site, list[str]]]:
    """Every site with its hostnames, in two queries (the counter's start-up warm-up)."""
    names: dict[int, list[str]] = {}
    for site_id, hostname in session.execute(
        select(SiteHostname.site_id, SiteHostname.hostname).order_by(SiteHostname.hostname)
    ):
        names.setdefault(site_id, []).append(hostname)
    return [(site, names.get(site.id, [])) for site in session.scalars(select(Site))]


def hostnames(session: Session, scope: SiteScope) -> list[str]:
    return list(
        session.scalars(
            select(SiteHostname.hostname)
            .where(SiteHostname.site_id == scope.site_id)
            .order_by(SiteHostname.hostname)
        )
    )


def hostname_schemes(session: Session, scope: SiteScope) -> list[tuple[str, bool]]:
    """The site's hostnames with the owner's plain-http choice, by name."""
    rows = session.execute(
        select(SiteHostname.hostname, SiteHostname.plain_http)
        .where(SiteHostname.site_id == scope.site_id)
        .order_by(SiteHostname.hostname)
    )
    return [(name, bool(plain)) for name, plain in rows]


def set_plain_http(session: Session, scope: SiteScope, hostname: str, plain_http: bool) -> int:
    result = session.execute(
        update(SiteHostname)
        .where(SiteHostname.site_id == scope.site_id, SiteHostname.hostname == hostname)
        .values(plain_http=plain_http)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def add_hostname(session: Session, scope: SiteScope, hostname: str) -> None:
    stmt = insert_for(session, SiteHostname).values(site_id=scope.site_id, hostname=hostname)
    session.execute(stmt.on_conflict_do_nothing())


def remove_hostname(session: Session, scope: SiteScope, hostname: str) -> int:
    result = session.execute(
        delete(SiteHostname).where(
            SiteHostname.site_id == scope.site_id, SiteHostname.hostname == hostname
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def update_settings(session: Session, scope: SiteScope, *, name: str, is_public: bool) -> None:
    session.execute(
        update(Site).where(Site.id == scope.site_id).values(name=name, is_public=is_public)
    )


def delete_site(session: Session, scope: SiteScope) -> None:
    session.execute(delete(Site).where(Site.id == scope.site_id))
    delete_aggregates(session, [scope.site_id])


def delete_aggregates(session: Session, site_ids: Sequence[int]) -> None:
    """Delete the counts of sites whose rows were deleted earlier in this transaction.

    The aggregate tables have no foreign key (a check per counted row was a fifth of
    the counter's database time). Order matters: deleting the site's row first waits
    for every batch that is counting into it (they hold KEY SHARE on it through the
    visit's foreign key) and makes later ones fail, so no count is left behind.
    """
    if not site_ids:
        return
    for table in (DailyCountryCount, LocationCount):
        session.execute(delete(table).where(table.site_id.in_(site_ids)))


# --- the site directory's change log (rows written by triggers, migration 0007) ---------


def last_change(session: Session) -> int:
    return int(session.scalar(select(func.coalesce(func.max(SiteChange.seq), 0))) or 0)


def changes_after(session: Session, seq: int, limit: int) -> tuple[list[tuple[int, str]], int]:
    """Up to ``limit`` changes after ``seq`` in order, and the newest seq (0 when none):
    :func:`prune_changes` keeps only the newest ones, so a poller that saw nothing
    after ``newest - keep`` may have missed some."""
    rows = session.execute(
        select(SiteChange.seq, SiteChange.public_key)
        .where(SiteChange.seq > seq)
        .order_by(SiteChange.seq)
        .limit(limit)
    ).all()
    return [(int(s), str(k)) for s, k in rows], last_change(session)


def prune_changes(session: Session, keep: int) -> int:
    """Keep the newest ``keep`` changes (pollers read them within seconds)."""
    newest = last_change(session)
    result = session.execute(delete(SiteChange).where(SiteChange.seq <= newest - keep))
    return int(result.rowcount)  # type: ignore[attr-defined]
