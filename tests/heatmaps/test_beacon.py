"""The click beacon POST /b/{key} through HTTP, on both databases."""

from __future__ import annotations

import datetime as dt
import gzip
from importlib.resources import files

import pytest

from app.heatmaps import service
from app.heatmaps.schemas import RecordingOptions, bucket_for
from app.heatmaps.validation import MAX_BODY_BYTES, MAX_CLICKS
from app.settings import Settings, SettingsError, load_settings, parse_width_buckets
from app.sites import service as sites
from tests.factories import make_account, make_site
from tests.heatmaps.beacons import (
    batch,
    click,
    click_count,
    send,
    stored_clicks,
    stored_pages,
)


@pytest.fixture
def site(ctx):
    return make_site(ctx, make_account(ctx))


def test_good_batch_is_stored_with_selectors_offsets_and_buckets(ctx, client, site):
    response = send(
        client,
        site.public_key,
        batch(
            click(700.4, 1210.6, w=1385, h=4000, v=1400, r=2, s="#plans>a.buy", ox=0.41, oy=0.5),
            click(30, 20, w=800, h=2000, v=800, s="body", ox=0.02, oy=0.01),
            click(10, 10, w=375, h=5000, v=375, r=3, s=None),
            path="/pricing?plan=pro#faq",
        ),
    )
    assert response.status_code == 204
    assert response.content == b""
    rows = stored_clicks(ctx, site)
    assert [(r.path, r.day, r.bucket) for r in rows] == [
        ("/pricing", dt.date(2026, 11, 22), "desktop"),
        ("/pricing", dt.date(2026, 11, 22), "tablet"),
        ("/pricing", dt.date(2026, 11, 22), "mobile"),
    ]
    first = rows[0]
    assert (first.x, first.y, first.doc_width, first.doc_height) == (700, 1211, 1385, 4000)
    assert (first.viewport_width, first.dpr) == (1400, 2.0)
    assert (first.selector, first.offset_x, first.offset_y) == ("#plans>a.buy", 0.41, 0.5)
    assert (rows[2].selector, rows[2].offset_x, rows[2].offset_y) == (None, None, None)
    assert stored_pages(ctx, site) == {"/pricing": "https://blog.example.org"}
    assert ctx.beacons.accepted_clicks == 3


def test_referer_counts_when_origin_is_null_and_subdomains_are_the_site(ctx, client, site):
    assert (
        send(
            client,
            site.public_key,
            batch(),
            origin="null",
            headers={"referer": "https://blog.example.org/pricing"},
        ).status_code
        == 204
    )
    response = send(client, site.public_key, batch(), origin="http://m.blog.example.org:8080")
    assert response.status_code == 204
    assert stored_pages(ctx, site) == {"/pricing": "http://m.blog.example.org:8080"}
    assert click_count(ctx, site) == 2


def _huge_body() -> bytes:
    """Valid JSON, but one byte over the limit."""
    head, tail = b'{"p": "/", "c": [', b"]}"
    return head + b" " * (MAX_BODY_BYTES + 1 - len(head) - len(tail)) + tail


BAD_BATCHES = {
    "oversized body": (_huge_body(), 400, "too large"),
    "empty body": (b"", 400, "empty"),
    "binary garbage": (b"\x89PNG\r\n\x1a\n\x00\xff\xfe" * 20, 400, "not JSON"),
    "not JSON": (b"x=1&y=2", 400, "not JSON"),
    "a JSON list": (b"[1, 2, 3]", 400, "object"),
    "unknown field": ({"p": "/", "c": [click()], "ip": "1.2.3.4"}, 400, "unknown field"),
    "no clicks": ({"p": "/", "c": []}, 400, "non-empty"),
    "clicks not a list": ({"p": "/", "c": {"x": 1}}, 400, "non-empty"),
    "too many clicks": (batch(*[click()] * (MAX_CLICKS + 1)), 400, "too many"),
    "click not an object": ({"p": "/", "c": [[1, 2]]}, 400, "c[0]: must be an object"),
    "x as a string": (batch(click(x="12")), 400, "c[0].x: must be a number"),  # type: ignore[arg-type]
    "x as a boolean": (batch(click(x=True)), 400, "c[0].x: must be a number"),
    "y missing": ({"p": "/", "c": [{"x": 1, "w": 9, "h": 9, "v": 9, "r": 1}]}, 400, "c[0].y"),
    "NaN": (b'{"p": "/", "c": [{"x": NaN, "y": 1, "w": 9, "h": 9, "v": 9, "r": 1}]}', 400, "JSON"),
    "Infinity": (
        b'{"p": "/", "c": [{"x": 1e999, "y": 1, "w": 9, "h": 9, "v": 9, "r": 1}]}',
        400,
        "finite",
    ),
    "negative x": (batch(click(x=-1)), 400, "c[0].x: out of range"),
    "huge y": (batch(click(y=1e9)), 400, "c[0].y: out of range"),
    "zero document width": (batch(click(w=0)), 400, "c[0].w"),
    "huge viewport": (batch(click(v=50_000)), 400, "c[0].v"),
    "zero pixel ratio": (batch(click(r=0)), 400, "c[0].r"),
    "offset above 1": (batch(click(ox=1.5)), 400, "c[0].ox"),
    "offset without selector": (
        {"p": "/", "c": [{**click(s=None), "ox": 0.5}]},
        400,
        "need a selector",
    ),
    "overlong selector": (batch(click(s="div>" * 70 + "a")), 400, "selector is too long"),
    "selector with quotes": (batch(click(s='a[href="x"]')), 400, "characters"),
    "selector as a number": (batch(click(s=7)), 400, "c[0].s"),  # type: ignore[arg-type]
    "path not a string": ({"p": 5, "c": [click()]}, 400, "p: "),
    "relative path": (batch(path="pricing"), 400, "start with /"),
    "path with a space": (batch(path="/a b"), 400, "start with /"),
    "overlong path": (batch(path="/" + "a" * 600), 400, "too long"),
    "one bad click among good ones": (batch(click(), click(), click(x=-5)), 400, "c[2].x"),
}


@pytest.mark.parametrize("name", list(BAD_BATCHES))
def test_invalid_batch_gets_400_with_a_reason_and_stores_nothing(ctx, client, site, name):
    body, status, reason = BAD_BATCHES[name]
    response = send(client, site.public_key, body)
    assert response.status_code == status, response.text
    assert reason in response.json()["detail"]
    assert click_count(ctx) == 0
    assert stored_pages(ctx, site) == {}


def test_declared_oversized_body_is_refused_before_reading(ctx, client, site):
    response = client.post(
        f"/b/{site.public_key}",
        content=b"{}",
        headers={"origin": "https://blog.example.org", "content-length": str(MAX_BODY_BYTES + 1)},
    )
    assert response.status_code == 400
    assert click_count(ctx) == 0


@pytest.mark.parametrize(
    ("key", "origin", "referer"),
    [
        ("AAAAAAAAAAAAAAAAAAAAAA", "https://blog.example.org", None),  # unknown key
        ("not-a-key", "https://blog.example.org", None),  # malformed key
        (None, None, None),  # neither Origin nor Referer: not a page of any site
        (None, "null", None),  # opaque origin and no referrer
        (None, "ftp://blog.example.org", None),  # not a web page
    ],
)
def test_unknown_sites_and_strangers_get_404_and_nothing_is_stored(
    ctx, client, site, key, origin, referer
):
    headers = {"referer": referer} if referer else {}
    response = send(client, key or site.public_key, batch(), origin=origin, headers=headers)
    assert response.status_code == 404
    assert "no such site" in response.json()["detail"]
    assert click_count(ctx) == 0


@pytest.mark.parametrize(
    ("origin", "referer"),
    [
        ("https://evil.example.com", None),
        ("https://evil.example.com", "https://blog.example.org/"),  # the Origin counts
        ("https://notblog.example.org", None),  # not a subdomain
        ("null", "https://evil.example.com/page"),  # origin hidden, referrer foreign
    ],
)
def test_pages_on_foreign_hosts_get_400_and_nothing_is_stored(ctx, client, site, origin, referer):
    headers = {"referer": referer} if referer else {}
    response = send(client, site.public_key, batch(), origin=origin, headers=headers)
    assert response.status_code == 400
    assert "foreign origin" in response.json()["detail"]
    assert click_count(ctx) == 0


def _set_options(ctx, site, **options: bool) -> None:
    with ctx.db.session() as session:
        service.save_recording_options(session, ctx.clock.now(), site, RecordingOptions(**options))
    ctx.beacons.forget_site(site.site_id)


@pytest.mark.parametrize("signal", [{"dnt": "1"}, {"sec-gpc": "1"}])
def test_do_not_track_is_honoured_only_when_the_owner_enables_it(ctx, client, site, signal):
    assert send(client, site.public_key, batch(), headers=signal).status_code == 204
    assert click_count(ctx, site) == 1
    _set_options(ctx, site, honour_dnt=True)
    assert send(client, site.public_key, batch(), headers=signal).status_code == 204
    assert click_count(ctx, site) == 1  # answered like a success, recorded nothing
    assert send(client, site.public_key, batch()).status_code == 204  # no signal: recorded
    assert click_count(ctx, site) == 2


def test_query_strings_are_kept_only_when_the_owner_opts_in(ctx, client, site):
    send(client, site.public_key, batch(path="/search?q=secret#top"))
    _set_options(ctx, site, keep_query=True)
    send(client, site.public_key, batch(path="/search?q=shoes#top"))
    assert [r.path for r in stored_clicks(ctx, site)] == ["/search", "/search?q=shoes#top"]


def test_new_hostname_is_accepted_once_added(ctx, client, site):
    shop = "https://shop.example.com"
    assert send(client, site.public_key, batch(), origin=shop).status_code == 400
    with ctx.db.session() as session:
        sites.add_hostname(session, site, "shop.example.com")
    ctx.ingest.sites.invalidate(site.public_key)  # what the hostname form does after commit
    assert send(client, site.public_key, batch(), origin=shop).status_code == 204


@pytest.mark.parametrize(
    ("width", "bucket"),
    [(1, "mobile"), (767, "mobile"), (768, "tablet"), (1279, "tablet"), (1280, "desktop")],
)
def test_buckets_by_viewport_width(width, bucket):
    assert bucket_for(width, Settings().width_buckets).name == bucket


def test_bucket_setting_is_checked():
    buckets = parse_width_buckets("small:0:360,large:1000:1440")
    assert [(b.name, b.min_width, b.reference_width) for b in buckets] == [
        ("small", 0, 360),
        ("large", 1000, 1440),
    ]
    for wrong in ("mobile:10:390", "a:0:390,b:0:800", "a:0:390,a:800:900", "A:0:390", "a:0:50"):
        with pytest.raises(SettingsError, match="HITMAP_HEATMAP_BUCKETS"):
            load_settings(heatmap_buckets=wrong)


def test_widget_script_stays_small():
    """Aim: at most 3 KB minified and gzipped (bench/README.md measures it with terser).
    The source with its comments, gzipped, is a looser bound that needs no Node."""
    source = (files("widgets") / "w.js").read_bytes()
    assert len(gzip.compress(source, 9)) <= 3 * 1024


def test_database_outage_spools_the_batch_and_replays_it_once(
    ctx, client, site, monkeypatch, caplog
):
    from sqlalchemy.exc import OperationalError

    from app.heatmaps import repository

    real = repository.insert_clicks

    def broken(*args, **kwargs):
        raise OperationalError("INSERT …", {}, Exception("server closed the connection"))

    monkeypatch.setattr(repository, "insert_clicks", broken)
    response = send(client, site.public_key, batch(click(s="#secret-button"), path="/private"))
    assert response.status_code == 204  # durable in the spool: the browser may forget it
    assert ctx.beacons.lost_batches == 0 and click_count(ctx) == 0
    assert "secret-button" not in caplog.text and "/private" not in caplog.text
    # The next batch does not even try the database while it is known to be down.
    assert send(client, site.public_key, batch(click(), path="/private")).status_code == 204

    monkeypatch.setattr(repository, "insert_clicks", real)
    assert ctx.ingest.writer.replay_once(now=True) == 2
    assert ctx.ingest.writer.replay_once(now=True) == 0
    assert click_count(ctx) == 2


def test_neither_database_nor_spool_answers_503_and_logs_no_click_data(
    ctx, client, site, monkeypatch, caplog
):
    from sqlalchemy.exc import OperationalError

    from app.heatmaps import repository

    def broken(*args, **kwargs):
        raise OperationalError("INSERT …", {}, Exception("server closed the connection"))

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(repository, "insert_clicks", broken)
    monkeypatch.setattr(ctx.ingest.writer.spool, "append", disk_full)
    response = send(client, site.public_key, batch(click(s="#secret-button"), path="/private"))
    assert response.status_code == 503
    assert ctx.beacons.lost_batches == 1
    assert "secret-button" not in caplog.text and "/private" not in caplog.text
    assert click_count(ctx) == 0


def test_steps_return_reasons_and_only_the_route_picks_statuses() -> None:
    from app.heatmaps.routes.beacon import BEACON_STATUS
    from app.heatmaps.validation import Beacon, Reason, check_body_size, check_key
    from app.ops.metrics import BEACON_RESULTS

    beacon = Beacon(
        key="not a key",
        body=b"",
        body_too_large=False,
        origin=None,
        referer=None,
        privacy_signal=False,
        received_at=dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
    )
    assert check_key(beacon) is not None and check_key(beacon).reason is Reason.UNKNOWN_SITE
    empty = check_body_size(beacon)
    assert empty is not None and (empty.reason, empty.detail) == (Reason.REJECTED, "empty body")
    # Every way a batch can end has one status and one metric label.
    assert set(BEACON_STATUS) == set(Reason) and set(Reason) <= set(BEACON_RESULTS)
