"""Click budgets without HTTP: who is charged, for how many clicks, and the settings."""

from __future__ import annotations

import ipaddress

import pytest

from app.heatmaps.budgets import BeaconLimits, ClickBudgets, ShedReason, address_key
from app.heatmaps.validation import MAX_CLICKS
from app.ingest.budgets import TokenBuckets
from app.settings import MIN_BEACON_BURST, Settings, SettingsError, load_settings

PROXY = (ipaddress.ip_network("10.9.0.0/16"),)
LIMITS = BeaconLimits(ip_per_second=2.0, ip_burst=500, site_per_second=50.0, site_burst=5_000)


def test_buckets_charge_a_cost_and_refill_at_their_rate():
    buckets = TokenBuckets(rate=2.0, burst=100)
    assert buckets.take("a", now=0.0, cost=60)
    assert not buckets.take("a", now=0.0, cost=41)  # nothing is taken from a short bucket
    assert buckets.take("a", now=0.0, cost=40)
    assert not buckets.take("a", now=0.0)
    assert not buckets.take("a", now=4.0, cost=9)  # 8 back after 4 s
    assert buckets.take("a", now=4.0, cost=8)
    assert not buckets.take("b", now=0.0, cost=101)  # more than a full bucket: never


def test_a_clock_stepped_back_pauses_the_refill():
    buckets = TokenBuckets(rate=1.0, burst=10)
    assert buckets.take("a", now=1000.0, cost=10)
    assert not buckets.take("a", now=400.0)  # wall clock stepped back ten minutes
    assert not buckets.take("a", now=1000.5)  # no refill for the time "lost"
    assert buckets.take("a", now=1001.0)


def test_full_batches_drain_an_address_fifty_times_faster_than_single_clicks():
    budgets = ClickBudgets(LIMITS, PROXY)
    full = [budgets.admit("81.2.69.142", None, 1, 50, 0.0) for _ in range(11)]
    assert full == [None] * 10 + [ShedReason.IP_BUDGET]
    single = [budgets.admit("89.160.20.112", None, 1, 1, 0.0) for _ in range(501)]
    assert single.count(None) == 500 and single[-1] is ShedReason.IP_BUDGET


def test_the_site_is_charged_only_for_what_its_addresses_may_send():
    budgets = ClickBudgets(LIMITS, PROXY)
    for _ in range(50):  # one address over its own budget does not use up the site's
        budgets.admit("81.2.69.142", None, 1, 50, 0.0)
    verdicts = [budgets.admit(f"10.1.0.{n}", None, 1, 50, 0.0) for n in range(1, 101)]
    assert verdicts.count(None) == 90  # 5,000 - the flooder's 500, in full batches
    assert set(verdicts[90:]) == {ShedReason.SITE_BUDGET}
    assert budgets.admit("10.1.0.200", None, 2, 50, 0.0) is None  # another site


def test_the_address_comes_from_the_trusted_proxy_resolution():
    budgets = ClickBudgets(LIMITS, PROXY)
    # Behind the trusted proxy, X-Forwarded-For names the client: each has its budget.
    for n in range(1, 21):
        assert budgets.admit("10.9.0.1", f"81.2.69.{n}", 1, 50, 0.0) is None
    # From anywhere else, X-Forwarded-For is the sender's own words: ignored.
    forged = [budgets.admit("89.160.20.112", f"81.3.0.{n}", 1, 50, 0.0) for n in range(11)]
    assert forged.count(None) == 10
    # A broken entry cannot be told from a client: all such share one budget.
    broken = [budgets.admit("10.9.0.1", f"not-an-ip-{n}", 1, 50, 0.0) for n in range(11)]
    assert broken.count(None) == 10 and broken[-1] is ShedReason.IP_BUDGET


@pytest.mark.parametrize(
    ("client", "key"),
    [
        ("81.2.69.142", "81.2.69.142"),
        ("::ffff:81.2.69.142", "81.2.69.142"),  # a dual-stack socket's IPv4 peer
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::9", "2001:db8:1:2::/64"),
        (None, "?"),
        ("testclient", "?"),
    ],
)
def test_address_keys(client, key):
    assert address_key(client) == key


def test_budget_settings_fail_fast_with_the_variable_and_an_example(monkeypatch):
    assert MIN_BEACON_BURST == MAX_CLICKS  # a full batch always fits an empty budget
    defaults = Settings()
    assert (
        defaults.beacon_ip_budget_per_second,
        defaults.beacon_ip_budget_burst,
        defaults.beacon_site_budget_per_second,
        defaults.beacon_site_budget_burst,
    ) == (2.0, 500, 50.0, 5_000)
    for name, wrong in (
        ("HITMAP_BEACON_IP_BUDGET_BURST", "49"),
        ("HITMAP_BEACON_SITE_BUDGET_BURST", "5k"),
        ("HITMAP_BEACON_IP_BUDGET_PER_SECOND", "0"),
        ("HITMAP_BEACON_SITE_BUDGET_PER_SECOND", "nan"),
    ):
        monkeypatch.setenv(name, wrong)
        with pytest.raises(SettingsError, match=f"{name} '{wrong}' is not .*; use e.g."):
            load_settings()
        monkeypatch.delenv(name)
    monkeypatch.setenv("HITMAP_BEACON_SITE_BUDGET_PER_SECOND", "12.5")
    assert load_settings().beacon_site_budget_per_second == 12.5
