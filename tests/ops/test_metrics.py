"""/metrics through HTTP, on both databases: what the counter, spool and beacons did."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from app.capture import repository
from app.context import build_context
from app.ingest.pipeline import DropReason
from app.main import create_app
from app.ops import metrics
from app.settings import SettingsError, load_settings
from tests.factories import hit, make_account, make_site
from tests.heatmaps.beacons import batch, click, send
from tests.ops.helpers import delta, parse, scrape, unreachable, value

TOKEN = "scrape-token-0123456789abcdef"


@pytest.fixture
def site(ctx):
    return make_site(ctx, make_account(ctx))


def test_counted_hits_and_drops_by_reason(ctx, client, site):
    before = scrape(client)
    for n in range(3):  # three visitors
        assert hit(client, site.public_key, ua=f"Mozilla/5.0 Firefox/{n}.0").status_code == 200
    hit(client, site.public_key, ua="Mozilla/5.0 Firefox/0.0")  # a repeat: not written again
    hit(client, site.public_key, referer=None)
    after = scrape(client)

    assert delta(before, after, "hitmap_hits_recorded_total") == 3
    assert delta(before, after, "hitmap_visits_new_total") == 3
    assert delta(before, after, "hitmap_hits_dropped_total", reason="no_referrer") == 1
    for reason in DropReason:
        if reason is not DropReason.NO_REFERRER:
            assert delta(before, after, "hitmap_hits_dropped_total", reason=reason.value) == 0
    assert delta(before, after, "hitmap_hits_spooled_total") == 0


def test_metrics_name_no_site_and_no_visitor(ctx, client, site):
    hit(client, site.public_key, ip="89.160.20.112")
    text = client.get("/metrics").text
    assert site.public_key not in text and site.domain not in text
    assert "89.160.20.112" not in text
    ours = [labels for (name, labels) in parse(text) if name.startswith("hitmap_")]
    labels = {name for sample_labels in ours for name, _ in sample_labels}
    assert labels <= {"reason", "result", "kind", "range", "le"}


def test_shed_hits_are_counted_by_their_reason(settings, db, clock):
    tight = settings.model_copy(update={"ip_budget_burst": 1, "ip_budget_per_second": 0.001})
    ctx = build_context(tight, db=db, clock=clock)
    site = make_site(ctx, make_account(ctx))
    with TestClient(create_app(ctx), client=("127.0.0.1", 5000)) as client:
        before = scrape(client)
        hit(client, site.public_key, ua="Mozilla/5.0 Firefox/1.0")
        hit(client, site.public_key, ua="Mozilla/5.0 Firefox/2.0")  # same address, no budget
        after = scrape(client)
    assert delta(before, after, "hitmap_hits_recorded_total") == 1
    assert delta(before, after, "hitmap_hits_dropped_total", reason="ip_budget") == 1


def test_spooled_and_replayed_hits_and_the_spool_size(ctx, client, site, monkeypatch):
    hit(client, site.public_key)
    before = scrape(client)
    assert value(before, "hitmap_spool_records") == 0

    def broken(*args, **kwargs):
        raise OperationalError("INSERT", {}, Exception("server closed the connection"))

    real = repository.insert_visits
    monkeypatch.setattr(repository, "insert_visits", broken)
    hit(client, site.public_key, ip="89.160.20.112")
    spooled = scrape(client)
    assert delta(before, spooled, "hitmap_hits_spooled_total") == 1
    assert delta(before, spooled, "hitmap_hits_recorded_total") == 0
    assert value(spooled, "hitmap_spool_records") == 1
    assert value(spooled, "hitmap_spool_segments") == 1
    segment_bytes = sum(p.stat().st_size for p in ctx.settings.spool_dir.glob("spool-*.log"))
    assert value(spooled, "hitmap_spool_bytes") == segment_bytes > 0

    monkeypatch.setattr(repository, "insert_visits", real)
    assert ctx.ingest.writer.replay_once(now=True) == 1
    replayed = scrape(client)
    assert delta(spooled, replayed, "hitmap_hits_replayed_total") == 1
    assert delta(spooled, replayed, "hitmap_visits_new_total") == 1
    assert value(replayed, "hitmap_spool_records") == 0
    assert value(replayed, "hitmap_spool_bytes") == 0


def test_lost_hits_are_counted(settings, clock, database_url, tmp_path):
    ctx = build_context(settings, db=unreachable(database_url, tmp_path), clock=clock)
    with TestClient(create_app(ctx), client=("127.0.0.1", 5000)) as client:
        before = scrape(client)  # needs no database
        hit(client, "AAAAAAAAAAAAAAAAAAAAAA")  # the site cannot be looked up
        after = scrape(client)
    assert delta(before, after, "hitmap_hits_lost_total") == 1


def test_beacon_batches_by_result_and_accepted_clicks(ctx, client, site):
    before = scrape(client)
    assert send(client, site.public_key, batch(click(), click(10, 20))).status_code == 204
    assert send(client, site.public_key, batch(), origin="https://evil.example").status_code == 400
    assert send(client, site.public_key, b"not json").status_code == 400
    assert send(client, "AAAAAAAAAAAAAAAAAAAAAA", batch()).status_code == 404
    after = scrape(client)
    assert delta(before, after, "hitmap_beacon_batches_total", result="accepted") == 1
    assert delta(before, after, "hitmap_beacon_clicks_accepted_total") == 2
    assert delta(before, after, "hitmap_beacon_batches_total", result="rejected") == 2
    assert delta(before, after, "hitmap_beacon_batches_total", result="unknown_site") == 1


def test_render_histogram_by_kind_and_range(client):
    before = scrape(client)
    metrics.observe_render("map", "30d", 0.004)
    with metrics.timed_render("heatmap", "2026-01-01..2026-02-01"):  # not a series of its own
        pass
    with pytest.raises(RuntimeError), metrics.timed_render("map", "7d"):
        raise RuntimeError("a failed render is not a render time")
    after = scrape(client)
    count = "hitmap_render_seconds_count"
    assert delta(before, after, count, kind="map", range="30d") == 1
    bucket = "hitmap_render_seconds_bucket"
    assert delta(before, after, bucket, kind="map", range="30d", le="0.005") == 1
    assert delta(before, after, bucket, kind="map", range="30d", le="0.002") == 0
    assert delta(before, after, count, kind="heatmap", range="other") == 1
    assert delta(before, after, count, kind="map", range="7d") == 0


def test_a_token_guards_metrics_when_set(settings, db, clock):
    ctx = build_context(settings.model_copy(update={"metrics_token": TOKEN}), db=db, clock=clock)
    with TestClient(create_app(ctx), client=("198.51.100.7", 5000)) as client:
        missing = client.get("/metrics")
        wrong = client.get("/metrics", headers={"authorization": "Bearer not-the-token"})
        right = client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert missing.status_code == 401 and wrong.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN not in missing.text
    assert right.status_code == 200 and "hitmap_hits_recorded_total" in right.text


def test_without_a_token_only_direct_local_requests_get_metrics(ctx):
    app = create_app(ctx)
    with TestClient(app, client=("203.0.113.9", 5000)) as remote:
        refused = remote.get("/metrics")
    assert refused.status_code == 403 and "HITMAP_METRICS_TOKEN" in refused.text
    with TestClient(app, client=("127.0.0.1", 5000)) as local:
        assert local.get("/metrics").status_code == 200
        forwarded = local.get("/metrics", headers={"x-forwarded-for": "203.0.113.9"})
    assert forwarded.status_code == 403  # came through a proxy for someone else


def test_a_short_metrics_token_is_refused_with_the_fix(monkeypatch):
    monkeypatch.setenv("HITMAP_METRICS_TOKEN", "short")
    with pytest.raises(SettingsError, match="HITMAP_METRICS_TOKEN is too short"):
        load_settings()
    monkeypatch.setenv("HITMAP_METRICS_TOKEN", "")
    assert load_settings().metrics_token is None
