"""Tenant scope as a type.

A :class:`SiteScope` proves that the caller may act on one site. Only
``app.sites.authz`` creates them; repositories that read or write tenant data
take a ``SiteScope`` and nothing else, so a missing check is a type error,
not a data leak.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import Enum

_AUTHZ_TOKEN = object()


class Access(Enum):
    OWNER = "owner"  # the signed-in owner or their API token
    PUBLIC = "public"  # anyone, for a public map page
    INGEST = "ingest"  # the counter endpoint, by public key


@dataclass(frozen=True, slots=True)
class SiteScope:
    site_id: int
    account_id: int
    public_key: str
    name: str
    domain: str
    is_public: bool
    created_at: dt.datetime
    access: Access
    _token: object = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._token is not _AUTHZ_TOKEN:
            raise TypeError("SiteScope is created only by app.sites.authz")


def _issue(
    *,
    site_id: int,
    account_id: int,
    public_key: str,
    name: str,
    domain: str,
    is_public: bool,
    created_at: dt.datetime,
    access: Access,
) -> SiteScope:
    return SiteScope(
        site_id=site_id,
        account_id=account_id,
        public_key=public_key,
        name=name,
        domain=domain,
        is_public=is_public,
        created_at=created_at,
        access=access,
        _token=_AUTHZ_TOKEN,
    )
