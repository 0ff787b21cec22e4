"""The image each counter answers with, cached per site with its ETag.

The nightly thumbnail (a small map with the total) when one has been rendered,
else the plain total. Bytes and ETag are computed once per refresh, never per
hit. A new visit makes a plain total stale, but it is redrawn at most every
few seconds: a busy counter must not render a PNG per visitor.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from app.capture.cache import RefreshingCache
from app.db import Database
from app.ingest import repository
from app.ingest.counter_image import NEUTRAL_PNG, etag_for, render_total
from app.maps import repository as maps_repository
from app.maps.kinds import THUMBNAIL_KEY
from app.sites.scope import SiteScope

IMAGE_CACHE_SECONDS = 20.0
REDRAW_TOTAL_AFTER_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class CounterImage:
    png: bytes
    etag: str
    is_thumbnail: bool = False


def counter_image(png: bytes, *, is_thumbnail: bool = False) -> CounterImage:
    return CounterImage(png, etag_for(png), is_thumbnail)


NEUTRAL = counter_image(NEUTRAL_PNG)


class CounterImages:
    def __init__(self, db: Database, ttl: float = IMAGE_CACHE_SECONDS) -> None:
        self._db = db
        self._scopes: dict[int, SiteScope] = {}
        self._cache: RefreshingCache[int, CounterImage] = RefreshingCache(
            self._load, ttl, name="counter image", errors=(SQLAlchemyError,)
        )

    def get(self, scope: SiteScope) -> CounterImage:
        """Waits for the database only for a site this process has not drawn yet."""
        self._scopes[scope.site_id] = scope
        return self._cache.get(scope.site_id)

    def peek(self, scope: SiteScope) -> CounterImage | None:
        self._scopes[scope.site_id] = scope
        return self._cache.peek(scope.site_id)[1]

    def counted(self, site_id: int, _new_visits: int) -> None:
        """New visits were committed: redraw a plain total soon (not a nightly thumbnail)."""
        self._cache.expire(
            site_id, older_than=REDRAW_TOTAL_AFTER_SECONDS, unless=lambda i: i.is_thumbnail
        )

    def invalidate(self, site_id: int) -> None:
        """A thumbnail was (re)rendered: show it from the next hit on."""
        self._cache.invalidate(site_id)

    def _load(self, site_id: int) -> CounterImage:
        scope = self._scopes[site_id]
        with self._db.session() as session:
            png = maps_repository.image_png(session, site_id, *THUMBNAIL_KEY)
            if png is not None:
                return counter_image(png, is_thumbnail=True)
            total = repository.total_visits(session, scope)
        return counter_image(render_total(total))
