"""Map images with cache validators, the public page's map, the counter thumbnail, and
the owner's style form (validation, tenancy, and the re-render it asks for)."""

from __future__ import annotations

import datetime as dt
import io
import re

import pytest
from PIL import Image
from sqlalchemy import text

from app.clock import utc_today
from app.ingest.counter_image import etag_for, render_total
from app.maps import repository as repo
from app.maps import styles
from app.maps.service import MAP, THUMBNAIL_KEY
from app.maps.styles import Style
from app.maps.tasks import render_site_job
from app.sites import authz
from app.sites import service as sites
from tests.factories import csrf_from, hit, login, make_account, make_site
from tests.maps.helpers import LONDON, PARIS, add_visits
from workers.procrastinate_app import apply_schema

HTML = {"accept": "text/html"}


def _size(png: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(png)).size


@pytest.fixture
def job_queue(engine) -> bool:
    """Procrastinate's schema in the session's test database (PostgreSQL only)."""
    apply_schema(engine)
    return engine.dialect.name == "postgresql"


def _private(ctx, owner, site) -> None:
    with ctx.db.session() as session:
        scope = authz.owned_site(session, owner.id, site.public_key)
        sites.update_settings(session, scope, name=scope.name, is_public=False)


def test_the_map_page_shows_the_range_map_with_its_2x_variant(ctx, client):
    site = make_site(ctx, make_account(ctx))
    add_visits(ctx, site, utc_today(ctx.clock), LONDON, 3)
    add_visits(ctx, site, utc_today(ctx.clock) - dt.timedelta(days=20), PARIS, 2)

    page = client.get(f"/map/{site.public_key}", headers=HTML)
    assert page.status_code == 200
    img = re.search(r'<img id="world-map"[^>]*>', page.text, re.S).group(0)
    key = site.public_key
    assert f'src="/map/{key}/all.png"' in img
    assert f'srcset="/map/{key}/all.png 1x, /map/{key}/all@2x.png 2x"' in img
    assert 'width="1200" height="600"' in img
    assert re.search(r'alt="World map of the visitors of [^"]+all time"', img)
    for value in ("24h", "7d", "30d", "365d", "all"):
        assert f'data-range="{value}"' in page.text
    assert f'href="/map/{key}/all.png" download=' in page.text
    assert f'href="/map/{key}/all@2x.png" download=' in page.text
    assert re.search(r'id="world-visits">5<', page.text)

    week = client.get(f"/map/{key}?range=7d", headers=HTML)
    assert f'src="/map/{key}/7d.png"' in week.text
    assert re.search(r'id="world-visits">3<', week.text)
    assert 'data-range="7d" ' in week.text and 'aria-current="page">7 days' in week.text
    assert client.get(f"/map/{key}?range=bogus", headers=HTML).status_code == 200


def test_map_images_answer_with_validators_and_304(ctx, client, clock):
    site = make_site(ctx, make_account(ctx))
    add_visits(ctx, site, utc_today(clock), LONDON)
    key = site.public_key

    first = client.get(f"/map/{key}/30d.png")
    assert first.status_code == 200 and first.headers["content-type"] == "image/png"
    assert _size(first.content) == (1200, 600)
    assert first.headers["cache-control"] == "public, max-age=300"
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert modified == clock.now().strftime("%a, %d %b %Y %H:%M:%S GMT")

    again = client.get(f"/map/{key}/30d.png", headers={"if-none-match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    since = client.get(f"/map/{key}/30d.png", headers={"if-modified-since": modified})
    assert since.status_code == 304
    other = client.get(f"/map/{key}/30d.png", headers={"if-none-match": '"other"'})
    assert other.status_code == 200

    hidpi = client.get(f"/map/{key}/30d@2x.png")
    assert hidpi.status_code == 200 and _size(hidpi.content) == (2400, 1200)
    for bad in ("30d@3x", "1y", "30D", "all@1x"):
        assert client.get(f"/map/{key}/{bad}.png").status_code == 404, bad

    # The nightly job redraws the map after a new visit: new ETag, the old one is a 200.
    clock.advance(hours=1)
    add_visits(ctx, site, utc_today(clock), PARIS)
    assert render_site_job(ctx, site.site_id).status == "rendered"
    fresh = client.get(f"/map/{key}/30d.png", headers={"if-none-match": etag})
    assert fresh.status_code == 200 and fresh.headers["etag"] != etag


def test_a_private_map_and_its_images_are_404_to_strangers(ctx, client):
    owner = make_account(ctx)
    site = make_site(ctx, owner)
    add_visits(ctx, site, utc_today(ctx.clock), LONDON)
    _private(ctx, owner, site)
    key = site.public_key
    for path in (f"/map/{key}", f"/map/{key}/all.png", f"/map/{key}/24h@2x.png"):
        assert client.get(path, headers=HTML).status_code == 404, path
    stranger = make_account(ctx)
    login(client, stranger.email)
    assert client.get(f"/map/{key}/all.png").status_code == 404
    assert client.get(f"/sites/{key}/thumbnail.png").status_code == 404

    client.cookies.clear()
    login(client, owner.email)
    mine = client.get(f"/map/{key}/all.png")
    assert mine.status_code == 200 and mine.headers["cache-control"] == "private, no-cache"
    assert client.get(f"/sites/{key}/thumbnail.png").status_code == 200


def test_the_counter_serves_the_stored_thumbnail(ctx, client):
    site = make_site(ctx, make_account(ctx))
    before = hit(client, site.public_key)
    assert before.content == render_total(1)  # no thumbnail yet: the plain total

    assert render_site_job(ctx, site.site_id).status == "rendered"
    with ctx.db.session() as session:
        thumbnail = repo.image(session, site, *THUMBNAIL_KEY)
        png, etag = bytes(thumbnail.png), thumbnail.etag
    counter = hit(client, site.public_key)
    assert counter.content == png and _size(png) == (160, 80)
    assert counter.headers["etag"] == etag
    assert counter.headers["cache-control"] == "private, no-cache"
    cached = hit(client, site.public_key, headers={"if-none-match": etag})
    assert cached.status_code == 304


def _style_form(client, key: str) -> str:
    page = client.get(f"/sites/{key}", headers=HTML)
    assert page.status_code == 200
    return page.text


def test_the_site_page_shows_the_style_form(ctx, client):
    owner = make_account(ctx)
    site = make_site(ctx, owner)
    login(client, owner.email)
    page = _style_form(client, site.public_key)
    section = page[page.index('id="map-style"') :]
    assert f'action="/sites/{site.public_key}/map-style"' in section
    assert 'type="color" id="style-color" name="dot_color" value="#e11d48"' in section
    assert '<option value="small" selected>' in section
    assert '<option value="transparent">' in section
    assert 'name="show_count" value="1" checked' in section
    assert f'src="/sites/{site.public_key}/thumbnail.png"' in section


def _post_style(client, key, csrf, **fields):
    data = {"size": "small", "dot_color": "#e11d48", "background": "light", "show_count": "1"}
    data.update(fields)
    return client.post(
        f"/sites/{key}/map-style",
        data={**{k: v for k, v in data.items() if v is not None}, "csrf_token": csrf},
        headers=HTML,
        follow_redirects=False,
    )


def _queued_style_jobs(connection, site_id: int) -> list:
    return list(
        connection.execute(
            text(
                "SELECT task_name, args FROM procrastinate_jobs "
                "WHERE queueing_lock = :lock AND status = 'todo'"
            ),
            {"lock": f"maps:style:{site_id}"},
        )
    )


def test_a_new_style_redraws_the_thumbnail_soon(ctx, client, connection, job_queue):
    owner = make_account(ctx)
    site = make_site(ctx, owner)
    add_visits(ctx, site, utc_today(ctx.clock), LONDON, 12)
    render_site_job(ctx, site.site_id)
    login(client, owner.email)
    csrf = csrf_from(_style_form(client, site.public_key))

    saved = _post_style(
        client,
        site.public_key,
        csrf,
        size="large",
        dot_color="#1D4ED8",
        background="transparent",
        show_count=None,  # unchecked box: not sent
    )
    assert saved.status_code == 303
    assert saved.headers["location"].startswith(f"/sites/{site.public_key}?flash=")
    with ctx.db.session() as session:
        assert styles.current_style(session, site) == Style(
            "large", "#1d4ed8", "transparent", False
        )

    if job_queue:  # PostgreSQL: a job, queued in the same transaction as the style
        jobs = _queued_style_jobs(connection, site.site_id)
        assert [(name, args["site_id"], args["spans"]) for name, args in jobs] == [
            ("hitmap.maps.render_site", site.site_id, [])
        ]
        assert render_site_job(ctx, site.site_id, spans=[]).status == "rendered"
    # SQLite: the response's background task has redrawn it already.
    counter = hit(client, site.public_key)
    image = Image.open(io.BytesIO(counter.content)).convert("RGBA")
    assert image.size == (320, 160)
    assert image.getextrema()[3][0] == 0  # transparent ocean
    with ctx.db.session() as session:
        assert repo.image(session, site, MAP, "all", "1x").rendered_at is not None

    unchanged = _post_style(
        client, site.public_key, csrf, size="large", dot_color="#1d4ed8", background="transparent"
    )
    assert unchanged.status_code == 303  # show_count on: a change again
    if job_queue:
        # The first job has not run in the queue's eyes: the second one is not queued twice.
        assert len(_queued_style_jobs(connection, site.site_id)) == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"size": "huge"}, "size must be one of small, medium, large"),
        ({"dot_color": "red"}, "dot colour must be a colour like #e11d48"),
        ({"dot_color": "#12345"}, "dot colour must be a colour like #e11d48"),
        ({"background": "plaid"}, "background must be one of light, dark, transparent"),
        ({"show_count": "maybe"}, "show count must be on or off"),
        ({"size": None}, "size must be one of"),
    ],
)
def test_a_bad_style_is_refused_and_changes_nothing(ctx, client, fields, message):
    owner = make_account(ctx)
    site = make_site(ctx, owner)
    login(client, owner.email)
    csrf = csrf_from(_style_form(client, site.public_key))
    refused = _post_style(client, site.public_key, csrf, **fields)
    assert refused.status_code == 400
    assert 'id="map-style-error"' in refused.text and message in refused.text
    with ctx.db.session() as session:
        assert repo.style(session, site) is None
        assert repo.image_metas(session, site) == []


def test_the_style_form_is_404_for_another_account(ctx, client):
    owner = make_account(ctx)
    site = make_site(ctx, owner)
    stranger = make_account(ctx)
    login(client, stranger.email)
    csrf = csrf_from(client.get("/account", headers=HTML).text)
    response = _post_style(client, site.public_key, csrf, size="large")
    assert response.status_code == 404
    with ctx.db.session() as session:
        assert repo.style(session, site) is None


def test_a_map_without_dots_is_stored_without_bytes_and_served_whole(ctx, client):
    site = make_site(ctx, make_account(ctx))
    add_visits(ctx, site, utc_today(ctx.clock) - dt.timedelta(days=20), PARIS)
    render_site_job(ctx, site.site_id)
    with ctx.db.session() as session:
        empty = repo.image(session, site, MAP, "24h", "1x")
        full = repo.image(session, site, MAP, "30d", "1x")
        assert bytes(empty.png) == b"" and len(bytes(full.png)) > 0
        etag = empty.etag
    day = client.get(f"/map/{site.public_key}/24h.png")
    assert day.status_code == 200 and _size(day.content) == (1200, 600)
    assert day.headers["etag"] == etag == etag_for(day.content)
    assert client.get(f"/map/{site.public_key}/7d.png").content == day.content
