"""Sign-up → site → snippet → counter fetch → dashboard and public page, all through HTTP."""

from __future__ import annotations

import html
import re

from tests.factories import csrf_from

HTML = {"accept": "text/html"}
VISITOR = {
    "user-agent": "Mozilla/5.0 (Macintosh) Safari/605.1.15",
    "x-forwarded-for": "89.160.20.112",  # Linköping, SE in the test database
}


def test_owner_signs_up_pastes_the_snippet_and_sees_the_visit(client):
    signup = client.get("/signup", headers=HTML)
    response = client.post(
        "/signup",
        data={
            "email": "Ada@Example.org",
            "password": "a long enough password",
            "password_confirm": "a long enough password",
            "csrf_token": csrf_from(signup.text),
        },
        headers=HTML,
    )
    assert response.status_code == 200 and response.url.path == "/sites"

    created = client.post(
        "/sites",
        data={
            "domain": "https://www.ada.example/blog",
            "name": "Ada's notes",
            "csrf_token": csrf_from(response.text),
        },
        headers=HTML,
    )
    assert created.status_code == 200
    key = created.url.path.rsplit("/", 1)[1]
    page = html.unescape(created.text)
    assert f'<img src="http://hitmap.test/c/{key}.png"' in page
    assert f'<a href="http://hitmap.test/map/{key}"' in page
    assert f'<script async src="http://hitmap.test/w.js" data-site="{key}"></script>' in page

    # A visitor's browser loads a page of the site carrying the snippet.
    image = client.get(
        f"/c/{key}.png", headers={**VISITOR, "referer": "https://www.ada.example/blog/post"}
    )
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    # The same visitor again, and a crawler: neither adds a visit.
    client.get(f"/c/{key}.png", headers={**VISITOR, "referer": "https://www.ada.example/"})
    client.get(
        f"/c/{key}.png",
        headers={"user-agent": "Googlebot/2.1", "referer": "https://www.ada.example/"},
    )

    dashboard = client.get(f"/sites/{key}?range=today", headers=HTML).text
    assert re.search(r'id="stat-today">\s*1\s*<', dashboard)
    assert re.search(r'id="stat-total">\s*1\s*<', dashboard)
    assert "Sweden" in dashboard
    assert "Bot or crawler" in dashboard

    public = client.get(f"/map/{key}", headers=HTML)
    assert public.status_code == 200
    assert "Linköping" in public.text and "Sweden" in public.text
