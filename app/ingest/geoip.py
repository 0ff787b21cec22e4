"""GeoIP lookups through the maxminddb C extension, with a small in-memory cache."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import geoip2.database
import geoip2.errors
from maxminddb import MODE_AUTO


@dataclass(frozen=True, slots=True)
class Location:
    country_code: str | None
    region: str | None
    city: str | None
    latitude: float | None
    longitude: float | None
    accuracy_km: int | None

    @property
    def is_known(self) -> bool:
        return self.country_code is not None or self.latitude is not None


UNKNOWN_LOCATION = Location(None, None, None, None, None, None)


def _short(value: str | None, limit: int = 100) -> str | None:
    return value[:limit] if value else None


class GeoLocator:
    def __init__(self, path: Path, cache_size: int = 8192) -> None:
        self.path = path
        self._reader = geoip2.database.Reader(str(path), mode=MODE_AUTO)
        self.lookup = lru_cache(maxsize=cache_size)(self._lookup)

    @property
    def database_type(self) -> str:
        return str(self._reader.metadata().database_type)

    def _lookup(self, ip: str) -> Location:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return UNKNOWN_LOCATION
        if not address.is_global:
            return UNKNOWN_LOCATION
        try:
            record = self._reader.city(str(address))
        except (geoip2.errors.AddressNotFoundError, ValueError):
            return UNKNOWN_LOCATION
        loc = record.location
        # Two decimals is ~1 km: enough for a map dot, too coarse to point at a house.
        lat = round(loc.latitude, 2) if loc.latitude is not None else None
        lon = round(loc.longitude, 2) if loc.longitude is not None else None
        return Location(
            country_code=record.country.iso_code or record.registered_country.iso_code,
            region=_short(record.subdivisions.most_specific.name),
            city=_short(record.city.name),
            latitude=lat,
            longitude=lon,
            accuracy_km=loc.accuracy_radius,
        )

    def close(self) -> None:
        self._reader.close()
