"""Click budgets: one address, or one site's flood from many, cannot fill the heatmaps.

The counter's token buckets (``app/ingest/budgets.py``), charged per click rather
than per batch, so that fifty-click batches drain a budget fifty times faster than
one-click ones. The client address comes from the counter's trusted-proxy
resolution. A batch over budget is shed whole: answered like a stored one (the
script cannot see answers, and a stranger learns nothing), counted per site, day
and reason with the counter's drops (``dropped_hits``) and in the metrics.

Budgets live in each web process's memory, as the counter's do: with
``hitmap serve --workers N`` a client may get up to N times a budget.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import StrEnum

from app.addresses import address_key
from app.heatmaps.validation import Beacon, Reason, Step, Verdict
from app.ingest.budgets import TokenBuckets
from app.ingest.pipeline import IPNetwork, client_ip_of


class ShedReason(StrEnum):
    """Why clicks were shed; the values are ``dropped_hits`` reasons (clicks, not hits)."""

    IP_BUDGET = "clicks_ip_budget"
    SITE_BUDGET = "clicks_site_budget"


SHED_LABELS = {
    ShedReason.IP_BUDGET: "Too many clicks from one address (shed)",
    ShedReason.SITE_BUDGET: "Too many clicks for the site at once (shed)",
}

# The route answers a shed batch as a stored one: it must not look different.
SHED_VERDICTS = {
    reason: Verdict(Reason.SHED, "not recorded: over budget", shed=reason.value)
    for reason in ShedReason
}


@dataclass(frozen=True, slots=True)
class BeaconLimits:
    """Clicks per second and at once, per client address and per site (settings
    ``HITMAP_BEACON_*_BUDGET_*``, where the defaults are reasoned)."""

    ip_per_second: float
    ip_burst: int
    site_per_second: float
    site_burst: int


class ClickBudgets:
    def __init__(self, limits: BeaconLimits, trusted: tuple[IPNetwork, ...]) -> None:
        self.trusted = trusted
        self._addresses = TokenBuckets(limits.ip_per_second, limits.ip_burst)
        self._sites = TokenBuckets(limits.site_per_second, limits.site_burst)
        # Batches are checked in the thread pool: a take is a read and a write.
        self._lock = threading.Lock()

    def admit(
        self,
        peer_ip: str | None,
        forwarded_for: str | None,
        site_id: int,
        clicks: int,
        now: float,
    ) -> ShedReason | None:
        """None when the batch may be stored, else why it is shed (nothing is charged
        to the site for a batch its address had no budget for)."""
        address = address_key(client_ip_of(peer_ip, forwarded_for, self.trusted))
        with self._lock:
            if not self._addresses.take(address, now, clicks):
                return ShedReason.IP_BUDGET
            if not self._sites.take(site_id, now, clicks):
                return ShedReason.SITE_BUDGET
        return None


def within_budgets(budgets: ClickBudgets) -> Step:
    def step(beacon: Beacon) -> Verdict | None:
        assert beacon.site is not None
        reason = budgets.admit(
            beacon.peer_ip,
            beacon.forwarded_for,
            beacon.site.scope.site_id,
            len(beacon.clicks),
            # The injected clock: tests move it; a wall clock stepped back pauses refills.
            beacon.received_at.timestamp(),
        )
        return None if reason is None else SHED_VERDICTS[reason]

    step.__name__ = "within_budgets"
    return step
