"""Everything a request or a job needs, built once per process from the settings."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from app.accounts.service import LoginPolicy
from app.clock import Clock, SystemClock
from app.db import Database
from app.heatmaps.beacons import BeaconService
from app.heatmaps.budgets import BeaconLimits
from app.ingest.geoip import GeoLocator
from app.ingest.service import IngestLimits, IngestService
from app.settings import Settings
from app.sites.directory import SiteDirectory


@dataclass
class AppContext:
    settings: Settings
    db: Database
    clock: Clock
    geo: GeoLocator
    secret: str
    site_directory: SiteDirectory = field(init=False)
    ingest: IngestService = field(init=False)
    beacons: BeaconService = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.site_directory = SiteDirectory(self.db)
        self.ingest = IngestService(
            self.db,
            self.clock,
            self.geo,
            s.trusted_networks,
            s.spool_dir,
            self.site_directory,
            IngestLimits(s.max_pending_hits, s.ip_budget_per_second, s.ip_budget_burst),
        )
        self.beacons = BeaconService(
            self.db,
            self.clock,
            self.site_directory.cache,
            s.width_buckets,
            self.ingest.writer,
            BeaconLimits(
                s.beacon_ip_budget_per_second,
                s.beacon_ip_budget_burst,
                s.beacon_site_budget_per_second,
                s.beacon_site_budget_burst,
            ),
            s.trusted_networks,
        )

    def warm_up(self) -> None:
        """Fill a serving process's caches: every site, today's salt, recording options."""
        self.beacons.warm_up(self.ingest.warm_up())

    @property
    def login_policy(self) -> LoginPolicy:
        s = self.settings
        return LoginPolicy(
            max_failures=s.login_max_failures,
            max_failures_per_address=s.login_max_failures_per_address,
            max_failures_per_account=s.login_max_failures_per_account,
            window=dt.timedelta(seconds=s.login_window_seconds),
            session_lifetime=dt.timedelta(days=s.session_days),
        )


def build_context(
    settings: Settings, *, db: Database | None = None, clock: Clock | None = None
) -> AppContext:
    settings.check()
    return AppContext(
        settings=settings,
        db=db or Database.from_url(settings.effective_database_url),
        clock=clock or SystemClock(),
        geo=GeoLocator(settings.geoip_path),
        secret=settings.resolved_secret_key(),
    )
