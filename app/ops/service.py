"""Readiness: may this process take traffic? The database answers, its schema is the
one this code expects, and the GeoIP database is open.

Nothing here knows HTTP. A check that fails says what is wrong and how to fix it,
never a URL, a password or an exception's text (which may hold either).
A database that hangs must not hang the probe: the checks run in a thread and
the answer comes after at most ``timeout`` seconds; a probe that arrives while a
hung check still runs waits for that one rather than starting another.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import cache

from alembic.script import ScriptDirectory

from app.db import Database
from app.ingest.geoip import GeoLocator
from app.migrate import alembic_config
from app.ops import repository

READY_TIMEOUT_SECONDS = 2.0
DATABASE_FIX = "check HITMAP_DATABASE_URL and that the database server is running"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Readiness:
    checks: tuple[Check, ...]

    @property
    def ready(self) -> bool:
        return all(c.ok for c in self.checks)

    def as_json(self) -> dict[str, object]:
        return {
            "status": "ready" if self.ready else "not ready",
            "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in self.checks},
            "failed": [c.name for c in self.checks if not c.ok],
        }


@cache
def _scripts() -> tuple[frozenset[str], frozenset[str]]:
    """This code's migration heads and all its revisions (read once per process)."""
    script = ScriptDirectory.from_config(alembic_config())
    revisions = frozenset(r.revision for r in script.walk_revisions())
    return frozenset(script.get_heads()), revisions


class ReadinessService:
    def __init__(self, db: Database, geo: GeoLocator, timeout: float | None = None) -> None:
        self.db = db
        self.geo = geo
        self.timeout = READY_TIMEOUT_SECONDS if timeout is None else timeout
        self._running: asyncio.Future[tuple[Check, Check]] | None = None

    async def check(self) -> Readiness:
        geoip = self.geoip_check()
        loop = asyncio.get_running_loop()
        running = self._running
        if running is None or running.done() or running.get_loop() is not loop:
            running = self._running = loop.run_in_executor(None, self.database_checks)
        try:
            database, migrations = await asyncio.wait_for(asyncio.shield(running), self.timeout)
        except TimeoutError:
            database = Check(
                "database", False, f"no answer within {self.timeout:g} s; {DATABASE_FIX}"
            )
            migrations = Check("migrations", False, "unknown: the database did not answer")
        return Readiness((database, migrations, geoip))

    def database_checks(self) -> tuple[Check, Check]:
        try:
            # Reads only: on SQLite a snapshot does not queue for the write lock the
            # counter's writer needs (a long write would read as "database down").
            with self.db.snapshot() as session:
                repository.ping(session)
                current = repository.schema_revisions(session)
        except Exception as exc:  # any failure is an answer: the probe must never 500
            return (
                Check(
                    "database",
                    False,
                    f"cannot use the database ({type(exc).__name__}); {DATABASE_FIX}",
                ),
                Check("migrations", False, "unknown: the database did not answer"),
            )
        return Check("database", True, "answers"), _migrations(current, *_scripts())

    def geoip_check(self) -> Check:
        if self.geo.is_loaded():
            return Check("geoip", True, f"{self.geo.database_type} loaded")
        return Check(
            "geoip",
            False,
            "the GeoIP database is not open or not readable; set HITMAP_GEOIP_PATH to a "
            "GeoLite2-City .mmdb file and restart",
        )


def _migrations(current: frozenset[str], heads: frozenset[str], known: frozenset[str]) -> Check:
    if current == heads:
        return Check("migrations", True, f"at {', '.join(sorted(current))}")
    if not current:
        return Check("migrations", False, "the database is not migrated; run `hitmap migrate`")
    have, want = ", ".join(sorted(current)), ", ".join(sorted(heads))
    if not current <= known:
        return Check(
            "migrations",
            False,
            f"the database is at {have}, which this Hitmap does not know (it needs {want}): "
            "a newer Hitmap migrated it; upgrade this one",
        )
    return Check(
        "migrations",
        False,
        f"the database is at {have}, this Hitmap needs {want}; run `hitmap migrate`",
    )
