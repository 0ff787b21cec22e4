"""The owner's heatmap pages, rendered heatmaps, downloads and the nightly job (both databases)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from app.heatmaps import tasks
from app.models import HeatmapRender
from tests.factories import make_account, make_site
from tests.heatmaps.beacons import batch, click, send, stored_clicks
from tests.sites.helpers import HTML, csrf, other_client, post, sign_in, table_rows, textarea


@pytest.fixture
def owner(ctx):
    return make_account(ctx)


@pytest.fixture
def site(ctx, owner):
    return make_site(ctx, owner)


@pytest.fixture
def signed_in(ctx, client, owner):
    sign_in(ctx, client, owner)
    return client


def _cluster(client, key, n, x, y, *, path="/pricing", w=1280, v=1280, s="#buy"):
    for start in range(0, n, 50):
        size = min(50, n - start)
        clicks = [click(x, y, w=w, h=2000, v=v, s=s) for _ in range(size)]
        assert send(client, key, batch(*clicks, path=path)).status_code == 204


def _alpha(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    return np.asarray(image.convert("RGBA"))[:, :, 3]


def _renders(ctx) -> int:
    with ctx.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(HeatmapRender)) or 0)


def test_heatmap_pages_need_a_login(client, site):
    for path in (
        f"/sites/{site.public_key}/heatmaps",
        f"/sites/{site.public_key}/heatmaps/page?path=/",
        f"/sites/{site.public_key}/heatmaps/clicks.csv?path=/",
    ):
        response = client.get(path, headers=HTML, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=")


def test_site_page_links_to_heatmaps(signed_in, site):
    page = signed_in.get(f"/sites/{site.public_key}", headers=HTML)
    assert f'href="/sites/{site.public_key}/heatmaps"' in page.text


def test_overview_lists_pages_with_clicks_per_bucket(signed_in, site):
    empty = signed_in.get(f"/sites/{site.public_key}/heatmaps", headers=HTML)
    assert empty.status_code == 200
    assert 'id="no-clicks"' in empty.text
    assert f'data-site="{site.public_key}"></script>' in textarea(empty.text, "heatmap-script")

    _cluster(signed_in, site.public_key, 3, 100, 100, path="/a")
    _cluster(signed_in, site.public_key, 2, 100, 100, path="/a", w=900, v=900)
    _cluster(signed_in, site.public_key, 1, 100, 100, path="/b?x=1", w=390, v=390)
    page = signed_in.get(f"/sites/{site.public_key}/heatmaps", headers=HTML)
    assert table_rows(page.text, "heatmap-pages") == [
        ["/a", "5", "0", "2", "3"],
        ["/b", "1", "1", "0", "0"],
    ]
    assert f"/sites/{site.public_key}/heatmaps/page?path=%2Fa&amp;range=30d" in page.text


def test_page_view_renders_heatmaps_with_hot_spots_where_the_clicks_were(ctx, signed_in, site):
    key = site.public_key
    _cluster(signed_in, key, 60, 640, 300)  # dense, desktop at the reference width
    _cluster(signed_in, key, 3, 200, 1500)  # sparse
    _cluster(signed_in, key, 4, 700, 1000, w=1400, v=1400)  # a wider window: scaled to 1280

    page = signed_in.get(f"/sites/{key}/heatmaps/page", params={"path": "/pricing"}, headers=HTML)
    assert page.status_code == 200
    assert "67 clicks" in page.text
    assert 'width="1280" height="2000"' in page.text  # the desktop overlay at document size
    assert "No clicks at this width" in page.text  # mobile and tablet
    assert _renders(ctx) == 1  # rendered on demand with the page, and stored

    match = re.search(r'<img src="([^"]+)"', page.text)
    assert match
    response = signed_in.get(match.group(1).replace("&amp;", "&"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    alpha = _alpha(response.content)
    assert alpha.shape == (2000, 1280)
    y, x = np.unravel_index(np.argmax(alpha), alpha.shape)
    assert abs(x - 640) <= 3 and abs(y - 300) <= 3
    assert alpha[1500, 200] > 0  # the sparse cluster stays visible
    assert alpha[914, 640] > 0  # (700, 1000) * 1280 / 1400
    assert alpha[914, 700] < alpha[914, 640]
    assert alpha[1800, 1200] == 0 and alpha[50, 50] == 0  # no clicks: fully transparent
    assert _renders(ctx) == 1  # the image request used the stored render

    download = signed_in.get(match.group(1).replace("&amp;", "&") + "&download=1")
    assert download.headers["content-disposition"].startswith('attachment; filename="heatmap-')


def test_stored_render_is_reused_until_its_clicks_change(ctx, signed_in, site, clock):
    key = site.public_key
    _cluster(signed_in, key, 5, 100, 100)
    clock.advance(days=2)
    url = f"/sites/{key}/heatmaps/heatmap.png"
    params = {"path": "/pricing", "bucket": "desktop", "from": "2026-11-20", "to": "2026-11-22"}
    first = signed_in.get(url, params=params)
    assert first.status_code == 200 and first.headers["x-hitmap-clicks"] == "5"
    with ctx.db.session() as session:
        stamp = session.scalars(select(HeatmapRender.rendered_at)).one()
    clock.advance(hours=1)
    assert signed_in.get(url, params=params).content == first.content
    with ctx.db.session() as session:
        assert session.scalars(select(HeatmapRender.rendered_at)).one() == stamp  # not redrawn

    # A click stored late for that range (as a job might): the render follows.
    with ctx.db.session() as session:
        from app.heatmaps import repository
        from app.heatmaps.schemas import Click

        repository.insert_clicks(
            session,
            site,
            dt.date(2026, 11, 21),
            "/pricing",
            [Click(900, 900, 1280, 2000, 1280, 1.0, None, None, None, "desktop")],
        )
    again = signed_in.get(url, params=params)
    assert again.headers["x-hitmap-clicks"] == "6"
    assert _alpha(again.content)[900, 900] > 0


def test_range_including_today_is_redrawn_at_most_every_few_minutes(ctx, signed_in, site, clock):
    key = site.public_key
    url = f"/sites/{key}/heatmaps/heatmap.png"
    params = {"path": "/pricing", "bucket": "desktop"}
    _cluster(signed_in, key, 2, 100, 100)
    assert signed_in.get(url, params=params).headers["x-hitmap-clicks"] == "2"
    _cluster(signed_in, key, 1, 500, 500)
    assert signed_in.get(url, params=params).headers["x-hitmap-clicks"] == "2"  # still fresh
    clock.advance(seconds=ctx.settings.heatmap_fresh_seconds + 1)
    assert signed_in.get(url, params=params).headers["x-hitmap-clicks"] == "3"


def test_csv_download_neutralises_formulas_from_visitors(signed_in, site):
    """A visitor picks the selector; the owner's spreadsheet must not run it (OWASP)."""
    key = site.public_key
    clicks = [click(10, 20, s="-SUM(A1:A2)"), click(30, 40, s="#buy")]
    assert send(signed_in, key, batch(*clicks)).status_code == 204
    base = f"/sites/{key}/heatmaps"
    response = signed_in.get(f"{base}/clicks.csv", params={"path": "/pricing"})
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["selector"] for r in rows] == ["'-SUM(A1:A2)", "#buy"]
    assert '"desktop",10,20,' in response.text  # numbers stay bare numbers
    data = signed_in.get(f"{base}/clicks.json", params={"path": "/pricing"})
    assert json.loads(data.text)["clicks"][0]["selector"] == "-SUM(A1:A2)"  # JSON is data


def test_raw_clicks_download_as_csv_and_json(signed_in, site):
    key = site.public_key
    send(
        signed_in,
        key,
        batch(
            click(10, 20, w=1280, v=1280, s="#a", ox=0.5, oy=0.25),
            click(30, 40, w=800, v=800, s=None),
        ),
    )
    base = f"/sites/{key}/heatmaps"
    response = signed_in.get(f"{base}/clicks.csv", params={"path": "/pricing"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["bucket"], r["x"], r["y"], r["selector"], r["offset_y"]) for r in rows] == [
        ("desktop", "10", "20", "#a", "0.25"),
        ("tablet", "30", "40", "", ""),
    ]
    assert rows[0]["day"] == "2026-11-22" and rows[0]["doc_width"] == "1280"

    data = signed_in.get(f"{base}/clicks.json", params={"path": "/pricing", "bucket": "desktop"})
    assert data.status_code == 200
    body = json.loads(data.text)
    assert (body["site"], body["path"], body["bucket"]) == (key, "/pricing", "desktop")
    assert body["clicks"] == [
        {
            "day": "2026-11-22",
            "path": "/pricing",
            "bucket": "desktop",
            "x": 10,
            "y": 20,
            "doc_width": 1280,
            "doc_height": 3000,
            "viewport_width": 1280,
            "dpr": 1.0,
            "selector": "#a",
            "offset_x": 0.5,
            "offset_y": 0.25,
        }
    ]
    empty = signed_in.get(f"{base}/clicks.json", params={"path": "/nothing"})
    assert json.loads(empty.text)["clicks"] == []


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("heatmaps", {"range": "1y"}, "unknown range"),
        ("heatmaps", {"from": "2026-11-30", "to": "2026-11-01"}, "must not be after"),
        ("heatmaps", {"from": "2020-01-01", "to": "2026-11-01"}, "at most"),
        ("heatmaps", {"from": "yesterday"}, "use a date"),
        ("heatmaps/page", {}, "choose a page"),
        ("heatmaps/page", {"path": "no-slash"}, "not a page path"),
        ("heatmaps/heatmap.png", {"path": "/", "bucket": "watch"}, "bucket: use one of"),
        ("heatmaps/clicks.csv", {"path": "/", "bucket": "x"}, "bucket: use one of"),
    ],
)
def test_bad_parameters_get_400_with_a_reason(signed_in, site, path, params, message):
    response = signed_in.get(f"/sites/{site.public_key}/{path}", params=params, headers=HTML)
    assert response.status_code == 400
    assert message in response.text


def test_custom_range_selects_days(signed_in, site, clock):
    _cluster(signed_in, site.public_key, 2, 100, 100, path="/old")
    clock.advance(days=3)
    _cluster(signed_in, site.public_key, 1, 100, 100, path="/new")
    base = f"/sites/{site.public_key}/heatmaps"
    old = signed_in.get(base, params={"from": "2026-11-22", "to": "2026-11-23"}, headers=HTML)
    assert [r[0] for r in table_rows(old.text, "heatmap-pages")] == ["/old"]
    week = signed_in.get(base, params={"range": "7d"}, headers=HTML)
    assert [r[0] for r in table_rows(week.text, "heatmap-pages")] == ["/old", "/new"]


def test_options_form_changes_what_the_next_beacon_records(ctx, signed_in, site):
    key = site.public_key
    response = post(
        signed_in,
        f"/sites/{key}/heatmaps/options",
        {"keep_query": "1", "honour_dnt": "1"},
        csrf(signed_in, f"/sites/{key}/heatmaps"),
    )
    assert response.status_code == 303
    page = signed_in.get(response.headers["location"], headers=HTML)
    assert "Recording options saved." in page.text
    assert 'data-query="1" data-dnt="1"' in textarea(page.text, "heatmap-script")
    assert (
        'id="keep-query" name="keep_query" value="1" aria-describedby="keep-query-hint" checked'
        in (page.text)
    )
    send(signed_in, key, batch(path="/s?q=1"))
    send(signed_in, key, batch(path="/s?q=2"), headers={"sec-gpc": "1"})
    assert [c.path for c in stored_clicks(ctx, site)] == ["/s?q=1"]


def test_other_accounts_get_404_for_every_heatmap_page(ctx, client, site):
    _cluster(client, site.public_key, 2, 100, 100)
    stranger = other_client(client)
    sign_in(ctx, stranger, make_account(ctx))
    base = f"/sites/{site.public_key}/heatmaps"
    for path in (
        base,
        f"{base}/page?path=/pricing",
        f"{base}/heatmap.png?path=/pricing&bucket=desktop",
        f"{base}/clicks.csv?path=/pricing",
        f"{base}/clicks.json?path=/pricing",
    ):
        response = stranger.get(path, headers=HTML)
        assert response.status_code == 404, path
        assert "/pricing" not in response.text


def test_nightly_job_renders_default_heatmaps_once_and_discards_gone_sites(ctx, client, site):
    _cluster(client, site.public_key, 3, 100, 100, path="/a")
    _cluster(client, site.public_key, 2, 100, 100, path="/a", w=390, v=390)
    _cluster(client, site.public_key, 1, 100, 100, path="/b")
    first = tasks.render_site_heatmaps(ctx, site.site_id)
    assert (first.status, first.rendered, first.unchanged) == ("rendered", 3, 0)
    with ctx.db.session() as session:
        stored = session.execute(
            select(HeatmapRender.path, HeatmapRender.bucket, HeatmapRender.clicks).order_by(
                HeatmapRender.path, HeatmapRender.bucket
            )
        ).all()
    assert [tuple(r) for r in stored] == [
        ("/a", "desktop", 3),
        ("/a", "mobile", 2),
        ("/b", "desktop", 1),
    ]
    again = tasks.render_site_heatmaps(ctx, site.site_id)
    assert (again.status, again.rendered, again.unchanged) == ("unchanged", 0, 3)
    assert _renders(ctx) == 3

    gone = tasks.render_site_heatmaps(ctx, 999_999)
    assert gone.status == "discarded"


def test_on_sqlite_the_nightly_heatmaps_draw_without_holding_the_write_lock(
    settings, clock, tmp_path
):
    """As for maps: the counter's writer must not wait while a heatmap is drawn."""
    from fastapi.testclient import TestClient

    from app.context import build_context
    from app.db import Database, make_engine
    from app.heatmaps import service
    from app.main import create_app
    from app.migrate import upgrade
    from tests.databases import try_sqlite_write_lock

    path = tmp_path / "own.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    own = build_context(settings, db=Database(engine), clock=clock)
    scope = make_site(own, make_account(own))
    attempts: list[str] = []
    real = service.render_points

    def draw_while_another_connection_writes(*args):
        attempts.append(try_sqlite_write_lock(path))
        return real(*args)

    try:
        with TestClient(create_app(own), base_url="http://hitmap.test") as client:
            _cluster(client, scope.public_key, 3, 100, 100, path="/a")
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(service, "render_points", draw_while_another_connection_writes)
            result = tasks.render_site_heatmaps(own, scope.site_id)
        assert attempts == ["took the write lock"]
        assert (result.status, result.rendered) == ("rendered", 1)
        assert _renders(own) == 1
    finally:
        engine.dispose()
