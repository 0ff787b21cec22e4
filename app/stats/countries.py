"""Country names and flags for ISO 3166-1 alpha-2 codes ('' or None: unknown location)."""

from __future__ import annotations

from functools import lru_cache

import pycountry

UNKNOWN_LABEL = "Unknown location"


@lru_cache(maxsize=512)
def country_name(code: str | None) -> str:
    if not code:
        return UNKNOWN_LABEL
    country = pycountry.countries.get(alpha_2=code.upper())
    if country is None:
        return code.upper()
    return str(getattr(country, "common_name", None) or country.name)


def country_flag(code: str | None) -> str:
    """The flag emoji (regional indicator pair); a globe for unknown locations."""
    if not code or len(code) != 2 or not code.isalpha():
        return "\U0001f310"
    return "".join(chr(0x1F1E6 + ord(c) - ord("A")) for c in code.upper())
