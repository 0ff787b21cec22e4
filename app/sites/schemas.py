"""What the sites pages show and what their forms send back."""

from __future__ import annotations

from dataclasses import dataclass

from app.sites.scope import SiteScope


@dataclass(frozen=True)
class SiteSummary:
    """One row of the sites list."""

    key: str
    name: str
    domain: str
    is_public: bool
    today: int
    total: int

    @classmethod
    def of(cls, scope: SiteScope, *, today: int, total: int) -> SiteSummary:
        return cls(scope.public_key, scope.name, scope.domain, scope.is_public, today, total)


@dataclass(frozen=True)
class PageError:
    """A form's error on the site page: which section, what went wrong."""

    section: str  # "settings", "hostnames", "retention", "delete": the page section's id
    message: str


@dataclass
class SiteForms:
    """Values to put back into the site page's forms after an error."""

    name: str | None = None
    is_public: bool | None = None
    hostname: str = ""
    confirm: str = ""
    retention_mode: str | None = None
    retention_days: str | None = None
    error: PageError | None = None
