"""A GeoIP place (latitude, longitude, accuracy radius) packed into one 64-bit integer.

``location_counts`` is keyed by this integer instead of three columns: ranges are
summed with ``GROUP BY place`` over one bigint (several times cheaper than grouping on
two floats and an int), rows are narrower, and a query's answer is two integer arrays
that numpy decodes at once. No table of places is needed: the key *is* the place.

Layout, high to low bits: latitude in 1e-4 degrees + 900,000 (21 bits), longitude in
1e-4 degrees + 1,800,000 (22 bits), accuracy in km capped at 32,767 (15 bits; 0 means
unknown). GeoIP coordinates have four decimals, so nothing is lost (1e-4° ≈ 11 m).

The counter writes these keys (``app.ingest.repository``) and the maps read them
(``app.maps.repository``): the encoding lives here, in neither, so that neither feature
imports the other for it.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

ALL_TIME_PERIOD = dt.date(1970, 1, 1)  # ``period`` of the all-time grain
_LON_BITS, _ACC_BITS = 22, 15
_ACC_MAX = (1 << _ACC_BITS) - 1


def place_key(latitude: float, longitude: float, accuracy_km: int | None) -> int:
    lat = round(latitude * 10_000) + 900_000
    lon = round(longitude * 10_000) + 1_800_000
    if not (0 <= lat <= 1_800_000 and 0 <= lon <= 3_600_000):
        raise ValueError(f"not a place on Earth: {latitude}, {longitude}")
    acc = min(max(accuracy_km or 0, 0), _ACC_MAX)
    return (lat << (_LON_BITS + _ACC_BITS)) | (lon << _ACC_BITS) | acc


def decode(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Latitudes, longitudes (float64 degrees) and accuracies (float64 km, 0 unknown)."""
    keys = np.asarray(keys, dtype=np.int64)
    acc = (keys & _ACC_MAX).astype(np.float64)
    lon = ((keys >> _ACC_BITS) & ((1 << _LON_BITS) - 1)) - 1_800_000
    lat = (keys >> (_LON_BITS + _ACC_BITS)) - 900_000
    return lat / 10_000.0, lon / 10_000.0, acc


def sql_place_key(latitude: str, longitude: str, accuracy_km: str, dialect: str) -> str:
    """The same key as an SQL expression over columns (the migration's backfill)."""
    as_int = "bigint" if dialect == "postgresql" else "INTEGER"
    lat = f"(CAST(round({latitude} * 10000) AS {as_int}) + 900000)"
    lon = f"(CAST(round({longitude} * 10000) AS {as_int}) + 1800000)"
    acc = f"min(max(COALESCE({accuracy_km}, 0), 0), {_ACC_MAX})"
    if dialect == "postgresql":
        acc = f"least(greatest(COALESCE({accuracy_km}, 0), 0), {_ACC_MAX})"
    return f"(({lat} << {_LON_BITS + _ACC_BITS}) | ({lon} << {_ACC_BITS}) | {acc})"
