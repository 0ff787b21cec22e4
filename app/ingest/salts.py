"""Daily visitor-hash salts: random, one per UTC day, deleted 48 hours after the day began.

Because the salt is gone two days later, yesterday's visitor hashes can never be
recomputed from an IP address and user agent, not even by us.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import threading

from app.db import Database
from app.ingest import repository

SALT_BYTES = 32
VISITOR_HASH_BYTES = 16


def visitor_hash(salt: bytes, site_id: int, client_ip: str, user_agent: str) -> bytes:
    """BLAKE2b keyed by the day's salt: same visitor, same site, same day → same hash."""
    h = hashlib.blake2b(key=salt, digest_size=VISITOR_HASH_BYTES, person=b"hitmap-visit")
    h.update(f"{site_id}\x00{client_ip}\x00{user_agent}".encode("utf-8", "surrogateescape"))
    return h.digest()


class SaltKeeper:
    """Gives the salt of a day, shared by every process through the database."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: dict[dt.date, bytes] = {}
        self._lock = threading.Lock()

    def has(self, day: dt.date) -> bool:
        return day in self._cache

    def salt_for(self, day: dt.date) -> bytes:
        salt = self._cache.get(day)
        if salt is not None:
            return salt
        with self._lock:
            salt = self._cache.get(day)
            if salt is None:
                salt = self._load(day)
                self._cache = {d: s for d, s in self._cache.items() if d >= day}
                self._cache[day] = salt
            return salt

    def _load(self, day: dt.date) -> bytes:
        with self._db.session() as session:
            salt = repository.ensure_salt(session, day, secrets.token_bytes(SALT_BYTES))
            repository.delete_salts_before(session, day - dt.timedelta(days=1))
        return salt

    def prefetch(self, day: dt.date) -> None:
        """Create (or read) a coming day's salt now, so that a database outage over
        midnight does not leave the new day without one. It is random and links to
        nothing until used, and goes 48 h after its day began like any other."""
        with self._db.session() as session:
            salt = repository.ensure_salt(session, day, secrets.token_bytes(SALT_BYTES))
        with self._lock:
            self._cache[day] = salt

    def rotate(self, today: dt.date) -> int:
        """Delete salts older than 48 h and drop them from memory; returns how many went.
        Tomorrow's salt is made ready at the same time."""
        with self._db.session() as session:
            removed = repository.delete_salts_before(session, today - dt.timedelta(days=1))
        self.prefetch(today + dt.timedelta(days=1))
        with self._lock:
            self._cache = {
                d: s for d, s in self._cache.items() if d >= today - dt.timedelta(days=1)
            }
        return removed
