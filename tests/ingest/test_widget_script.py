"""/w.js, the loader snippets name (an hour's cache), and /w/<digest>.js, the widget
(a year, immutable): a new release reaches every pasted snippet within the hour."""

from __future__ import annotations

import re

from widgets import loader_source, widget_source, widget_version

HOUR = "public, max-age=3600"
YEAR = "public, max-age=31536000, immutable"


def test_the_loader_names_this_releases_widget_and_is_cached_an_hour(client):
    loader = client.get("/w.js")

    assert loader.status_code == 200 and loader.content == loader_source()
    assert loader.headers["cache-control"] == HOUR
    assert loader.headers["content-type"].startswith("text/javascript")
    named = re.findall(rb'"/w/([0-9a-f]{12})\.js"', loader.content)
    assert named == [widget_version().encode()]
    assert widget_version().encode() not in widget_source()  # no digest of itself


def test_the_widget_is_immutable_under_its_digest_and_current_under_any_other(client):
    current = client.get(f"/w/{widget_version()}.js")
    older = client.get("/w/000000000000.js")  # a loader cached before a release asks

    assert current.content == older.content == widget_source()
    assert current.headers["cache-control"] == YEAR
    assert older.headers["cache-control"] == HOUR
    assert current.headers["cross-origin-resource-policy"] == "cross-origin"
