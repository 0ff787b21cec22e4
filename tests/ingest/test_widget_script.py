"""/w.js: the snippet's versioned URL is cached for a year, any other for an hour."""

from __future__ import annotations

import re

from tests.factories import make_account, make_site
from widgets import widget_source, widget_version


def test_the_snippets_versioned_url_is_immutable_and_others_are_short(ctx, client):
    site = make_site(ctx, make_account(ctx))
    with ctx.db.session() as session:
        from app.sites import authz, service

        scope = authz.site_for_job(session, site.site_id)
        assert scope is not None
        snippet = service.snippet("http://hitmap.test", scope).script_html
    src = re.search(r'src="http://hitmap\.test(/w\.js\?v=([0-9a-f]{12}))"', snippet)
    assert src is not None and src.group(2) == widget_version()

    versioned = client.get(src.group(1))
    stale = client.get("/w.js?v=000000000000")  # pasted before the script changed
    plain = client.get("/w.js")

    assert versioned.content == stale.content == plain.content == widget_source()
    assert versioned.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert stale.headers["cache-control"] == "public, max-age=3600"
    assert plain.headers["cache-control"] == "public, max-age=3600"
    assert versioned.headers["content-type"].startswith("text/javascript")
