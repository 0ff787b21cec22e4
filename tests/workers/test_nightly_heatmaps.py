"""The nightly run renders each site's page heatmaps along with its maps."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from app.jobs import nightly
from app.maps import tasks
from app.models import HeatmapRender
from tests.factories import make_account, make_site
from tests.heatmaps.beacons import batch, click, send


def test_nightly_run_renders_heatmaps_of_sites_with_clicks(ctx, client, clock):
    quiet = make_site(ctx, make_account(ctx), domain="quiet.example.org")
    busy = make_site(ctx, make_account(ctx))
    assert send(client, busy.public_key, batch(click(), click(x=200, y=900))).status_code == 204

    clock.set(dt.datetime(2026, 11, 23, 3, 0, 1, tzinfo=dt.UTC))
    report = nightly.run_in_process(ctx, tasks.NIGHT, dt.date(2026, 11, 23))
    assert report is not None and report.failed == 0

    with ctx.db.session() as session:
        renders = session.scalars(select(HeatmapRender)).all()
    assert {r.site_id for r in renders} == {busy.site_id}
    assert all(r.path == "/pricing" for r in renders)
    assert quiet.site_id not in {r.site_id for r in renders}
