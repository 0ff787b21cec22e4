"""Typed settings, read from the environment with the ``HITMAP_`` prefix.

Every setting fails fast with a message that says how to fix it: a bad value
stops the process at start-up rather than surfacing as a strange error later.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
import re
import secrets
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIN_SECRET_LENGTH = 32
MIN_SECRET_ENTROPY_BITS = 128.0
MAX_RETENTION_DAYS = 3650  # ten years; 0 already means "forever"
# A click budget must hold one full beacon batch (app.heatmaps.validation.MAX_CLICKS).
MIN_BEACON_BURST = 50
MAX_BEACON_BUDGET = 1_000_000_000


class SettingsError(RuntimeError):
    """A setting is missing or wrong; the message tells how to fix it."""


@dataclass(frozen=True, slots=True)
class WidthBucket:
    """Click heatmaps are kept apart by the visitor's viewport width."""

    name: str
    min_width: int  # viewport widths from here up to the next bucket's min_width
    reference_width: int  # heatmaps of this bucket are drawn at this width


def parse_width_buckets(value: str) -> tuple[WidthBucket, ...]:
    """``name:min_width:reference_width,...``, narrowest first, the first from 0."""
    buckets = []
    for entry in value.split(","):
        parts = entry.strip().split(":")
        if len(parts) != 3 or not re.fullmatch(r"[a-z][a-z0-9_-]{0,15}", parts[0]):
            raise ValueError(
                f"HITMAP_HEATMAP_BUCKETS entry {entry.strip()!r} is not name:min_width:"
                "reference_width (lower-case name); e.g. mobile:0:390,tablet:768:1024,"
                "desktop:1280:1280"
            )
        try:
            low, ref = int(parts[1]), int(parts[2])
        except ValueError as exc:
            raise ValueError(
                f"HITMAP_HEATMAP_BUCKETS entry {entry.strip()!r}: widths must be whole numbers"
            ) from exc
        if not 100 <= ref <= 4000:
            raise ValueError(
                f"HITMAP_HEATMAP_BUCKETS entry {entry.strip()!r}: the reference width must be "
                "between 100 and 4000 px"
            )
        buckets.append(WidthBucket(parts[0], low, ref))
    names = [b.name for b in buckets]
    lows = [b.min_width for b in buckets]
    if len(set(names)) != len(names) or lows[0] != 0 or lows != sorted(set(lows)):
        raise ValueError(
            "HITMAP_HEATMAP_BUCKETS needs distinct names and rising min_widths starting at 0, "
            "e.g. mobile:0:390,tablet:768:1024,desktop:1280:1280"
        )
    return tuple(buckets)


def _default_data_dir() -> Path:
    return Path.cwd() / "hitmap-data"


def _default_geoip_path() -> Path:
    from importlib.resources import files

    return Path(str(files("_geoip_geolite2") / "GeoLite2-City.mmdb"))


def secret_entropy_bits(secret: str) -> float:
    """Shannon entropy of the secret's characters times its length."""
    counts = Counter(secret)
    per_char = -sum(n / len(secret) * math.log2(n / len(secret)) for n in counts.values())
    return per_char * len(secret)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HITMAP_", extra="ignore")

    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Folder for the SQLite database, the generated secret key and spools.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db. "
        "Default: SQLite file hitmap.sqlite3 in the data dir.",
    )
    secret_key: str | None = Field(
        default=None,
        description="Key for CSRF tokens, signed flash messages and login-throttle buckets "
        "(sessions and API tokens are stored as hashes; visitor hashes use the daily salts). "
        "Default: generated once and stored in <data dir>/secret_key.",
    )
    production: bool = Field(
        default=False, description="Production mode: refuses a weak secret key."
    )
    geoip_path: Path = Field(
        default_factory=_default_geoip_path,
        description="GeoIP2/GeoLite2 City .mmdb file. Default: the bundled GeoLite2-City.",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated IPs or CIDR networks of reverse proxies whose "
        "X-Forwarded-For is believed. Empty: the socket peer is the client.",
    )
    base_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Public URL of this Hitmap, used in widget snippets and cookies.",
    )
    host: str = Field(default="127.0.0.1", description="Address `hitmap serve` binds.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port `hitmap serve` binds.")
    # Three budgets per window, so that a stranger's guesses cannot lock the owner out:
    # 10 per account from one address lets a person mistype a few times and gives one
    # guesser 10 guesses; 30 per address across accounts stops one address trying many
    # accounts (credential stuffing) yet fits a few people behind one office NAT; 100 per
    # account from anywhere bounds guesses spread over many addresses (9,600 a day), and
    # locking the owner out that way takes at least ten addresses.
    login_max_failures: int = Field(
        default=10,
        ge=1,
        description="Failed logins per account from one client address before a pause.",
    )
    login_max_failures_per_address: int = Field(
        default=30,
        ge=1,
        description="Failed logins from one client address, whatever the accounts, before "
        "a pause; at least HITMAP_LOGIN_MAX_FAILURES.",
    )
    login_max_failures_per_account: int = Field(
        default=100,
        ge=1,
        description="Failed logins per account from all addresses together before a pause "
        "(for everyone: keep it well above HITMAP_LOGIN_MAX_FAILURES, so that one stranger "
        "cannot lock the owner out); at least HITMAP_LOGIN_MAX_FAILURES.",
    )
    login_window_seconds: int = Field(
        default=900, ge=1, description="Window in which failed logins are counted."
    )
    session_days: int = Field(default=30, ge=1, description="Lifetime of a login session.")
    nightly_at: dt.time = Field(
        default=dt.time(3, 0),
        description="UTC time of day (HH:MM) when the nightly map rendering starts.",
    )
    retention_days: int = Field(
        default=0,
        description="Days of raw visits and click positions kept for a site that has not "
        "chosen its own retention on its page: every night (HITMAP_NIGHTLY_AT) rows of UTC "
        "days more than this many days before the night's date are deleted. Totals, "
        "per-day and per-country counts and the maps are kept. 0 (default) keeps them "
        f"forever; at most {MAX_RETENTION_DAYS}.",
    )
    heatmap_buckets: str = Field(
        default="mobile:0:390,tablet:768:1024,desktop:1280:1280",
        description="Click heatmap width buckets, name:min_width:reference_width, narrowest "
        "first: a click belongs to the last bucket whose min_width is at most the visitor's "
        "viewport width, and that bucket's heatmaps are drawn at its reference width.",
    )
    heatmap_radius: float = Field(
        default=24.0, gt=0, le=200, description="Radius in px of one click's heatmap blob."
    )
    heatmap_fresh_seconds: int = Field(
        default=600,
        ge=0,
        description="A stored heatmap whose range includes today is shown for this long "
        "before new clicks make it render again.",
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Web server processes `hitmap serve` starts; they share the database "
        "and count correctly together. On the 2-core reference machine one process gave "
        "the most counted hits per second (bench/README.md): each process batches its own "
        "hits, so more processes mean smaller batches.",
    )
    max_pending_hits: int = Field(
        default=20_000,
        ge=100,
        description="Hits a web process may hold waiting for the database; beyond it, "
        "the counter sheds (answers its image uncounted, reason 'shed').",
    )
    ip_budget_per_second: float = Field(
        default=20.0,
        gt=0,
        description="Counter hits per second one client address may send before "
        "the rest is shed (reason 'ip_budget'); one address is usually one visitor.",
    )
    ip_budget_burst: int = Field(
        default=200, ge=1, description="Hits one client address may send at once."
    )
    # Click budgets of the beacon (POST /b/{key}), charged per click. The widget sends at
    # most 10 batches of at most 20 clicks per page view (200 clicks); most page views
    # send one batch of 1-3 clicks. Per address: 500 at once covers two page views at
    # the widget's cap, or dozens of ordinary ones from one address (an office, a
    # carrier's NAT), and 2 clicks/s (7,200 an hour) refill it. So 200 batches of 50
    # clicks from one address within seconds store ~500 of 10,000, and a flood at one
    # full batch a second stores under a quarter from its 50th second on. Per site:
    # 50 clicks/s averages 4.3 million a day, above a site with a million page views
    # (~35 clicks/s), and 5,000 at once absorb its peaks; a flood from many addresses
    # then stores that much, not what a process can take (2,600 clicks/s measured).
    beacon_ip_budget_per_second: float = Field(
        default=2.0,
        gt=0,
        le=MAX_BEACON_BUDGET,
        description="Heatmap clicks per second one client address (an IPv6 /64) may send "
        "before the rest is shed (answered like stored ones, counted as "
        "'clicks_ip_budget' on the site page and in /metrics).",
    )
    beacon_ip_budget_burst: int = Field(
        default=500,
        ge=MIN_BEACON_BURST,
        le=MAX_BEACON_BUDGET,
        description="Heatmap clicks one client address may send at once (at least 50, "
        "one full batch).",
    )
    beacon_site_budget_per_second: float = Field(
        default=50.0,
        gt=0,
        le=MAX_BEACON_BUDGET,
        description="Heatmap clicks per second one site may receive from all addresses "
        "before the rest is shed (counted as 'clicks_site_budget'); per web process.",
    )
    beacon_site_budget_burst: int = Field(
        default=5000,
        ge=MIN_BEACON_BURST,
        le=MAX_BEACON_BUDGET,
        description="Heatmap clicks one site may receive at once (at least 50, one full batch).",
    )
    log_format: str = Field(
        default="text",
        description="Log lines: text (for people) or json (one object per line, for "
        "log collectors). Never with visitor IPs or user agents.",
    )
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    metrics_token: str | None = Field(
        default=None,
        description="Bearer token that /metrics asks for. Unset: /metrics answers only "
        "direct requests from this machine (loopback, not forwarded by a proxy).",
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise ValueError(
                    f"HITMAP_TRUSTED_PROXIES entry {entry!r} is not an IP address or CIDR "
                    "network; use e.g. 127.0.0.1,10.0.0.0/8"
                ) from exc
        return value

    @field_validator("login_max_failures_per_address", "login_max_failures_per_account")
    @classmethod
    def _check_login_budgets(cls, value: int, info: ValidationInfo) -> int:
        per_pair = info.data.get("login_max_failures")
        if per_pair is not None and value < per_pair:
            name = f"HITMAP_{str(info.field_name).upper()}"
            raise ValueError(
                f"{name} ({value}) is below HITMAP_LOGIN_MAX_FAILURES ({per_pair}), which "
                "would never be reached; raise it"
            )
        return value

    @field_validator("nightly_at", mode="before")
    @classmethod
    def _check_nightly_at(cls, value: object) -> object:
        if isinstance(value, str):
            match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", value.strip())
            if match is None:
                raise ValueError(
                    f"HITMAP_NIGHTLY_AT {value!r} is not a time of day; use HH:MM in UTC, "
                    "e.g. 03:00"
                )
            return dt.time(int(match.group(1)), int(match.group(2)))
        return value

    @field_validator("retention_days", mode="before")
    @classmethod
    def _check_retention_days(cls, value: object) -> object:
        text = str(value).strip()
        if not re.fullmatch(r"[0-9]{1,9}", text) or int(text) > MAX_RETENTION_DAYS:
            raise ValueError(
                f"HITMAP_RETENTION_DAYS {value!r} is not a number of days from 0 to "
                f"{MAX_RETENTION_DAYS}; use e.g. 365, or 0 to keep visits and clicks forever"
            )
        return int(text)

    @field_validator("beacon_ip_budget_per_second", "beacon_site_budget_per_second", mode="before")
    @classmethod
    def _check_beacon_rate(cls, value: object, info: ValidationInfo) -> object:
        try:
            rate = float(str(value).strip())
        except ValueError:
            rate = math.nan
        if not (math.isfinite(rate) and 0 < rate <= MAX_BEACON_BUDGET):
            raise ValueError(
                f"HITMAP_{(info.field_name or '').upper()} {value!r} is not a positive number "
                "of clicks per second; use e.g. 2"
            )
        return rate

    @field_validator("beacon_ip_budget_burst", "beacon_site_budget_burst", mode="before")
    @classmethod
    def _check_beacon_burst(cls, value: object, info: ValidationInfo) -> object:
        text = str(value).strip()
        if not re.fullmatch(r"[0-9]{1,10}", text) or not (
            MIN_BEACON_BURST <= int(text) <= MAX_BEACON_BUDGET
        ):
            raise ValueError(
                f"HITMAP_{(info.field_name or '').upper()} {value!r} is not a whole number of "
                f"clicks from {MIN_BEACON_BURST} (one full batch) to {MAX_BEACON_BUDGET:,}; "
                "use e.g. 500"
            )
        return int(text)

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(
                "HITMAP_BASE_URL must start with http:// or https://, e.g. https://hitmap.example.com"
            )
        return value.rstrip("/")

    @field_validator("heatmap_buckets")
    @classmethod
    def _check_heatmap_buckets(cls, value: str) -> str:
        parse_width_buckets(value)
        return value

    @field_validator("log_format")
    @classmethod
    def _check_log_format(cls, value: str) -> str:
        if value.strip().lower() not in ("text", "json"):
            raise ValueError(f"HITMAP_LOG_FORMAT {value!r} is unknown; use text or json")
        return value.strip().lower()

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        if value.strip().upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError(
                f"HITMAP_LOG_LEVEL {value!r} is unknown; use DEBUG, INFO, WARNING or ERROR"
            )
        return value.strip().upper()

    @field_validator("metrics_token")
    @classmethod
    def _check_metrics_token(cls, value: str | None) -> str | None:
        if value and len(value) < 16:
            raise ValueError(
                "HITMAP_METRICS_TOKEN is too short: use at least 16 random characters, e.g. "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`, or unset it"
            )
        return value or None

    @cached_property
    def width_buckets(self) -> tuple[WidthBucket, ...]:
        return parse_width_buckets(self.heatmap_buckets)

    @cached_property
    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(e, strict=False) for e in self.trusted_proxies)

    @property
    def secure_cookies(self) -> bool:
        return self.base_url.startswith("https://")

    @property
    def spool_dir(self) -> Path:
        """Hits the database could not take wait here (fsynced) until it is back."""
        return self.data_dir / "spool"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'hitmap.sqlite3'}"

    def ensure_data_dir(self) -> None:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SettingsError(
                f"cannot create data dir {self.data_dir}: {exc}; set HITMAP_DATA_DIR to a "
                "writable folder"
            ) from exc

    def resolved_secret_key(self) -> str:
        """The configured key, or the one stored in the data dir (created on first use)."""
        if self.secret_key is not None:
            key = self.secret_key
        else:
            self.ensure_data_dir()
            path = self.data_dir / "secret_key"
            if not path.exists():
                path.touch(mode=0o600)
                path.write_text(secrets.token_urlsafe(48))
            key = path.read_text().strip()
        self._check_secret(key)
        return key

    def _check_secret(self, key: str) -> None:
        weak = len(key) < MIN_SECRET_LENGTH or secret_entropy_bits(key) < MIN_SECRET_ENTROPY_BITS
        if weak and self.production:
            raise SettingsError(
                "HITMAP_SECRET_KEY is too weak for production: use at least "
                f"{MIN_SECRET_LENGTH} random characters, e.g. the output of "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            )

    def check(self) -> None:
        """Validate what cannot be checked field by field; raise SettingsError."""
        if not self.geoip_path.is_file():
            raise SettingsError(
                f"GeoIP database not found at {self.geoip_path}; set HITMAP_GEOIP_PATH to a "
                "GeoLite2-City .mmdb file or reinstall hitmap to get the bundled one"
            )
        self.resolved_secret_key()


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment; errors become one readable SettingsError."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = [f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()]
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from exc
