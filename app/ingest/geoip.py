"""GeoIP lookups through the maxminddb C extension, with a small in-memory cache.

geoip2 opens the file and checks it is a City database; lookups then read the raw
record through maxminddb's C reader, skipping geoip2's model objects, which cost
more than the lookup itself on the counter's hot path.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

import geoip2.database
import maxminddb


@dataclass(frozen=True, slots=True)
class Location:
    country_code: str | None
    region: str | None
    city: str | None
    latitude: float | None
    longitude: float | None
    accuracy_km: int | None

    def as_row(
        self,
    ) -> tuple[str | None, str | None, str | None, float | None, float | None, int | None]:
        """The stored columns, in table order (``Location(*row)`` reads them back)."""
        return (
            self.country_code,
            self.region,
            self.city,
            self.latitude,
            self.longitude,
            self.accuracy_km,
        )

    @property
    def is_known(self) -> bool:
        return self.country_code is not None or self.latitude is not None


UNKNOWN_LOCATION = Location(None, None, None, None, None, None)


def _short(value: str | None, limit: int = 100) -> str | None:
    return value[:limit] if value else None


def _mode() -> int:
    try:
        import maxminddb.extension  # noqa: F401  (the C reader, when the wheel has it)
    except ImportError:
        return maxminddb.MODE_MMAP
    return maxminddb.MODE_MMAP_EXT


class GeoLocator:
    def __init__(self, path: Path, cache_size: int = 65_536) -> None:
        self.path = path
        self._reader = geoip2.database.Reader(str(path), mode=maxminddb.MODE_MMAP)
        self._raw = maxminddb.open_database(str(path), _mode())
        self.lookup = lru_cache(maxsize=cache_size)(self._lookup)

    @property
    def database_type(self) -> str:
        return str(self._reader.metadata().database_type)

    def is_loaded(self) -> bool:
        """The reader is open and reads its tree (readiness). Lookups cannot tell:
        they answer "unknown" for a closed reader as for an unlisted address."""
        try:
            self._raw.get("1.1.1.1")
        except (ValueError, RuntimeError, OSError):  # closed, or a broken file
            return False
        return True

    def _lookup(self, ip: str) -> Location:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return UNKNOWN_LOCATION
        if not address.is_global:
            return UNKNOWN_LOCATION
        try:
            record = self._raw.get(address)
        except ValueError:
            return UNKNOWN_LOCATION
        if not isinstance(record, dict):
            return UNKNOWN_LOCATION
        return _location(cast(dict[str, Any], record))

    def close(self) -> None:
        self._reader.close()
        self._raw.close()


def _english(entry: dict[str, Any]) -> str | None:
    names = entry.get("names") or {}
    name = names.get("en")
    return name if isinstance(name, str) else None


def _location(record: dict[str, Any]) -> Location:
    loc = record.get("location") or {}
    lat, lon = loc.get("latitude"), loc.get("longitude")
    code = (record.get("country") or {}).get("iso_code") or (
        record.get("registered_country") or {}
    ).get("iso_code")
    subdivisions = record.get("subdivisions") or [{}]
    return Location(
        country_code=code,
        region=_short(_english(subdivisions[-1])),
        city=_short(_english(record.get("city") or {})),
        # Two decimals is ~1 km: enough for a map dot, too coarse to point at a house.
        latitude=round(lat, 2) if lat is not None else None,
        longitude=round(lon, 2) if lon is not None else None,
        accuracy_km=loc.get("accuracy_radius"),
    )
