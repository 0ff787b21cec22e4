"""The live overlay: site-scoped tokens, the bookmarklet, and the clicks it draws.

A token lets ``widgets/overlay.js``, running on the owner's own page, read the
clicks of one site and nothing else. Only its SHA-256 is stored. There are two
kinds: the **bookmarklet** token (one per site, shown once, valid until revoked
or replaced) and short-lived **link** tokens made by the heatmap page's "open
with overlay" button. Revoking deletes both kinds. A missing, unknown, expired
or other site's token is a 404, like a site the caller may not see.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from app.errors import InvalidInput, NotFound
from app.heatmaps import repository
from app.heatmaps.schemas import DateRange, OverlayTokenInfo, RecordingOptions
from app.heatmaps.validation import MAX_PATH_LENGTH, PATH_PATTERN, normalise_path, page_origin
from app.security import new_token, token_digest
from app.settings import WidthBucket
from app.sites import authz
from app.sites import service as sites
from app.sites.scope import SiteScope

TOKEN_PREFIX = "hmo_"  # noqa: S105 - a prefix, not a secret
BOOKMARKLET = "bookmarklet"
LINK = "link"
LINK_TOKEN_LIFETIME = dt.timedelta(minutes=10)
MAX_OVERLAY_CLICKS = 20_000
MAX_TOKEN_LENGTH = 100


def create_bookmarklet_token(session: Session, now: dt.datetime, scope: SiteScope) -> str:
    """A new bookmarklet token; the site's previous one stops working."""
    repository.delete_tokens(session, scope, BOOKMARKLET)
    return _create(session, now, scope, BOOKMARKLET, None)


def create_link_token(session: Session, now: dt.datetime, scope: SiteScope) -> str:
    repository.delete_expired_tokens(session, scope, now)
    return _create(session, now, scope, LINK, now + LINK_TOKEN_LIFETIME)


def _create(
    session: Session, now: dt.datetime, scope: SiteScope, kind: str, expires: dt.datetime | None
) -> str:
    token = TOKEN_PREFIX + new_token(24)
    repository.add_token(
        session,
        scope,
        token_hash=token_digest(token),
        kind=kind,
        prefix=token[:10],
        created_at=now,
        expires_at=expires,
    )
    return token


def revoke_tokens(session: Session, scope: SiteScope) -> int:
    return repository.delete_tokens(session, scope)


def active_tokens(session: Session, now: dt.datetime, scope: SiteScope) -> list[OverlayTokenInfo]:
    return [
        OverlayTokenInfo(t.kind, t.prefix, t.created_at, t.expires_at)
        for t in repository.tokens(session, scope)
        if t.expires_at is None or t.expires_at > now
    ]


def scope_for_token(session: Session, now: dt.datetime, key: str, token: str | None) -> SiteScope:
    """The site named by ``key``, if ``token`` is a live overlay token of exactly that site."""
    if not token or len(token) > MAX_TOKEN_LENGTH or not token.startswith(TOKEN_PREFIX):
        raise NotFound("no such site")
    found = repository.token_owner(session, token_digest(token))
    if found is None:
        raise NotFound("no such site")
    site_id, account_id, expires_at = found
    if expires_at is not None and expires_at <= now:
        raise NotFound("no such site")
    scope = authz.owned_site(session, account_id, key)  # the token's owner acts, through authz
    if scope.site_id != site_id:
        raise NotFound("no such site")
    return scope


def allowed_origin(session: Session, scope: SiteScope, origin: str | None) -> str | None:
    """``origin`` itself when it is a page origin on one of the site's hostnames."""
    if not origin:
        return None
    allowed = page_origin(origin, frozenset(sites.hostnames(session, scope)))
    return origin if allowed is not None and allowed == origin.rstrip("/") else None


def overlay_path(raw: str | None, options: RecordingOptions) -> str:
    path = (raw or "").strip()
    if not path or len(path) > MAX_PATH_LENGTH or not PATH_PATTERN.fullmatch(path):
        raise InvalidInput("path: not a page path (it starts with / and is URL-encoded)")
    return normalise_path(path, options.keep_query)


def overlay_data(
    session: Session,
    scope: SiteScope,
    raw_path: str | None,
    days: DateRange,
    buckets: tuple[WidthBucket, ...],
) -> dict[str, Any]:
    """What overlay.js draws: per click its selector, offsets, page position and bucket."""
    path = overlay_path(raw_path, repository.options(session, scope))
    index = {b.name: i for i, b in enumerate(buckets)}
    rows = repository.overlay_clicks(
        session, scope, path, days.first, days.last, MAX_OVERLAY_CLICKS
    )
    return {
        "path": path,
        "from": days.first.isoformat(),
        "to": days.last.isoformat(),
        "buckets": [
            {"name": b.name, "min": b.min_width, "reference": b.reference_width} for b in buckets
        ],
        # [selector, offset x, offset y, page x, page y, document width, bucket index]
        "clicks": [
            [r.selector, r.offset_x, r.offset_y, r.x, r.y, r.doc_width, index.get(r.bucket, -1)]
            for r in rows
        ],
        "truncated": len(rows) >= MAX_OVERLAY_CLICKS,
    }


def bookmarklet(base_url: str, scope: SiteScope, token: str) -> str:
    """A ``javascript:`` link that loads overlay.js on the page it is clicked on."""
    src = json.dumps(f"{base_url}/overlay.js")
    key = json.dumps(scope.public_key)
    tok = json.dumps(token)
    return (
        "javascript:(function(){var d=document,s=d.createElement('script');"
        f"s.src={src};s.setAttribute('data-site',{key});s.setAttribute('data-token',{tok});"
        "(d.body||d.documentElement).appendChild(s)})()"
    )


def link_origin(session: Session, scope: SiteScope, seen_origin: str) -> str:
    """Where the overlay link may take the token: one of the owner's listed hostnames.

    ``seen_origin`` is what the page's last beacon said; anyone with the public key
    can send a beacon from any subdomain, port or scheme of a listed host. It only
    picks which listed hostname: the link's scheme, host and port come from the list
    (https unless the owner chose http for that hostname on the site page).
    """
    try:
        seen_host = urlsplit(seen_origin).hostname
    except ValueError:
        seen_host = None
    return sites.listed_origin(session, scope, seen_host)


def overlay_link(origin: str, path: str, token: str) -> str:
    """The page itself, with the token in the fragment: the page's w.js loads the overlay.

    Fragments never reach a server or a Referer, and w.js removes it at once.
    """
    return f"{origin}{path.split('#', 1)[0]}#hitmap-overlay={token}"
