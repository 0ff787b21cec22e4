"""The hit pipeline: named steps, each of which may drop a hit with a counted reason.

A step fills in what it learns (client IP, visitor hash, location) or returns
the reason the hit must not count. The order is cheap checks first.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from urllib.parse import urlsplit

from app.ingest.budgets import Backlog, LoadGauge, LoopLag, TokenBuckets
from app.ingest.geoip import UNKNOWN_LOCATION, GeoLocator, Location
from app.ingest.salts import SaltKeeper, visitor_hash
from app.sites.keys import host_matches
from app.sites.scope import SiteScope

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class DropReason(StrEnum):
    NO_REFERRER = "no_referrer"
    FOREIGN_REFERRER = "foreign_referrer"
    BOT = "bot"
    PREFETCH = "prefetch"
    NO_CLIENT_IP = "no_client_ip"
    IP_BUDGET = "ip_budget"
    SITE_BUDGET = "site_budget"
    SHED = "shed"


DROP_LABELS = {
    DropReason.NO_REFERRER: "No referrer (page not identified)",
    DropReason.FOREIGN_REFERRER: "Referrer from another site",
    DropReason.BOT: "Bot or crawler",
    DropReason.PREFETCH: "Prefetch or preview",
    DropReason.NO_CLIENT_IP: "No client address",
    DropReason.IP_BUDGET: "Too many hits from one address (shed)",
    DropReason.SITE_BUDGET: "Site over its share while busy (shed)",
    DropReason.SHED: "Server over capacity (shed)",
}

BOT_PATTERN = re.compile(
    r"bot\b|bot/|crawl|spider|slurp|archiver|facebookexternalhit|embedly|quora link preview"
    r"|headlesschrome|phantomjs|python-requests|python-urllib|curl/|wget/|go-http-client"
    r"|java/|okhttp|libwww|httpclient|scrapy|lighthouse|pingdom|uptimerobot|statuscake"
    r"|preview|monitor",
    re.IGNORECASE,
)


@dataclass(slots=True)
class Hit:
    scope: SiteScope
    hostnames: frozenset[str]
    received_at: dt.datetime
    peer_ip: str | None
    forwarded_for: str | None
    user_agent: str
    referer: str | None
    purpose: str | None
    client_ip: str | None = None
    visitor_hash: bytes | None = None
    location: Location = field(default=UNKNOWN_LOCATION)
    # The UTC day the hit counts for; set once (several steps and the writer read it).
    day: dt.date = field(init=False)

    def __post_init__(self) -> None:
        self.day = self.received_at.astimezone(dt.UTC).date()


Step = Callable[[Hit], DropReason | None]


def _in_networks(ip: str, networks: Sequence[IPNetwork]) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in net for net in networks)


@lru_cache(maxsize=65_536)  # parsing addresses costs more than the rest of a hit
def client_ip_of(
    peer_ip: str | None, forwarded_for: str | None, trusted: tuple[IPNetwork, ...]
) -> str | None:
    """The socket peer, or the right-most untrusted X-Forwarded-For entry behind trusted proxies."""
    if peer_ip is None or not trusted or not _in_networks(peer_ip, trusted):
        return peer_ip
    chain = [part.strip() for part in (forwarded_for or "").split(",") if part.strip()]
    for candidate in reversed(chain):
        if not _in_networks(candidate, trusted):
            try:
                return str(ipaddress.ip_address(candidate))
            except ValueError:
                return None  # a forged or broken entry: we cannot tell who the client is
    return chain[0] if chain else peer_ip


def resolve_client_ip(trusted: tuple[IPNetwork, ...]) -> Step:
    def step(hit: Hit) -> DropReason | None:
        hit.client_ip = client_ip_of(hit.peer_ip, hit.forwarded_for, trusted)
        return None if hit.client_ip else DropReason.NO_CLIENT_IP

    step.__name__ = "resolve_client_ip"
    return step


def reject_prefetch(hit: Hit) -> DropReason | None:
    if hit.purpose and ("prefetch" in hit.purpose or "preview" in hit.purpose):
        return DropReason.PREFETCH
    return None


def reject_bots(hit: Hit) -> DropReason | None:
    return DropReason.BOT if _looks_like_a_bot(hit.user_agent) else None


@lru_cache(maxsize=8192)  # a few thousand user agents make most traffic
def _looks_like_a_bot(user_agent: str) -> bool:
    return not user_agent or BOT_PATTERN.search(user_agent) is not None


def check_referrer(hit: Hit) -> DropReason | None:
    if not hit.referer:
        return DropReason.NO_REFERRER
    try:
        host = urlsplit(hit.referer).hostname
    except ValueError:
        host = None
    if not host:
        return DropReason.NO_REFERRER
    if not host_matches(host, hit.hostnames):
        return DropReason.FOREIGN_REFERRER
    return None


def within_ip_budget(buckets: TokenBuckets) -> Step:
    def step(hit: Hit) -> DropReason | None:
        assert hit.client_ip is not None
        return None if buckets.take(hit.client_ip) else DropReason.IP_BUDGET

    step.__name__ = "within_ip_budget"
    return step


def admit_under_load(backlog: Backlog, gauge: LoadGauge, loop: LoopLag) -> Step:
    def step(hit: Hit) -> DropReason | None:
        verdict = backlog.verdict(gauge, hit.scope.site_id, loop.lag)
        return None if verdict is None else DropReason(verdict)

    step.__name__ = "admit_under_load"
    return step


def identify_visitor(salts: SaltKeeper) -> Step:
    def step(hit: Hit) -> DropReason | None:
        assert hit.client_ip is not None
        salt = salts.salt_for(hit.day)
        hit.visitor_hash = visitor_hash(salt, hit.scope.site_id, hit.client_ip, hit.user_agent)
        return None

    step.__name__ = "identify_visitor"
    return step


def locate(geo: GeoLocator) -> Step:
    def step(hit: Hit) -> DropReason | None:
        assert hit.client_ip is not None
        hit.location = geo.lookup(hit.client_ip)
        return None

    step.__name__ = "locate"
    return step


def build_pipeline(
    trusted: tuple[IPNetwork, ...],
    salts: SaltKeeper,
    geo: GeoLocator,
    ip_budget: TokenBuckets,
    backlog: Backlog,
    gauge: LoadGauge,
    loop: LoopLag,
) -> tuple[Step, ...]:
    return (
        reject_prefetch,
        reject_bots,
        check_referrer,
        resolve_client_ip(trusted),
        within_ip_budget(ip_budget),
        admit_under_load(backlog, gauge, loop),
        identify_visitor(salts),
        locate(geo),
    )


def run(steps: Sequence[Step], hit: Hit) -> DropReason | None:
    for step in steps:
        reason = step(hit)
        if reason is not None:
            return reason
    return None
