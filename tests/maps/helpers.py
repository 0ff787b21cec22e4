"""Helpers for the map tests: visits through the real ingest repository."""

from __future__ import annotations

import datetime as dt
import itertools

from app.capture import repository as ingest_repo
from app.context import AppContext
from app.ingest.geoip import Location
from app.sites.scope import SiteScope

LONDON = Location("GB", "England", "London", 51.5142, -0.0931, 10)
PARIS = Location("FR", None, "Paris", 48.8566, 2.3522, 20)
SYDNEY = Location("AU", None, "Sydney", -33.8688, 151.2093, 5)
SOMEWHERE_IN_US = Location("US", None, None, 37.751, -97.822, 1000)  # a country centroid
NOWHERE = Location(None, None, None, None, None, None)

_visitor = itertools.count(1)


def add_visits(
    ctx: AppContext, scope: SiteScope, day: dt.date, location: Location, count: int = 1
) -> None:
    """``count`` new unique visitors of the site on ``day`` at ``location``."""
    visits = [
        ingest_repo.NewVisit(scope, day, next(_visitor).to_bytes(16, "big"), location)
        for _ in range(count)
    ]
    with ctx.db.session() as session:
        assert len(ingest_repo.insert_visits(session, visits)) == count
