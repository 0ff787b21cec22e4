"""The sites list and registering a site through HTTP, on both databases."""

from __future__ import annotations

import re

from app.sites import service as sites
from tests.factories import hit, login, make_account, make_site
from tests.sites.helpers import (
    HTML,
    csrf,
    hostnames_of,
    post,
    sign_in,
    sites_of,
    stat,
    textarea,
)


def test_sites_pages_need_a_login(client):
    for path in ("/sites", "/sites/new"):
        response = client.get(path, headers=HTML, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == f"/login?next={path}"


def test_empty_list_explains_the_next_step(ctx, client):
    sign_in(ctx, client, make_account(ctx))
    page = client.get("/sites", headers=HTML)
    assert page.status_code == 200
    assert "Register your first site" in page.text
    assert 'href="/sites/new"' in page.text
    assert "Paste the snippet" in page.text


def test_register_a_site_and_see_both_snippets(ctx, client):
    account = make_account(ctx)
    login(client, account.email)  # the real login form, this once
    form = client.get("/sites/new", headers=HTML)
    assert form.status_code == 200
    assert 'name="domain"' in form.text

    response = post(
        client,
        "/sites",
        {"domain": "https://Blog.Example.org/about?x=1", "name": "My blog"},
        csrf(client, "/sites/new"),
    )

    assert response.status_code == 303
    [site] = sites_of(ctx, account)
    assert (site.domain, site.name, site.is_public) == ("blog.example.org", "My blog", True)
    location = response.headers["location"]
    assert location.startswith(f"/sites/{site.public_key}?flash=")
    assert hostnames_of(ctx, site.id) == ["blog.example.org"]

    page = client.get(location, headers=HTML)
    assert page.status_code == 200
    assert "blog.example.org is registered" in page.text  # the flash message
    assert "<h1>My blog</h1>" in page.text
    counter = textarea(page.text, "snippet-counter")
    script = textarea(page.text, "snippet-script")
    assert f'src="http://hitmap.test/c/{site.public_key}.png"' in counter
    assert f'href="http://hitmap.test/map/{site.public_key}"' in counter
    assert script == (
        f'<script async src="http://hitmap.test/w.js" data-site="{site.public_key}"></script>'
    )
    assert 'data-copy="snippet-counter"' in page.text
    assert 'data-copy="snippet-script"' in page.text
    assert '<script src="/static/copy.js" defer></script>' in page.text
    assert 'aria-live="polite"' in page.text
    assert "works without JavaScript" in page.text
    assert "optional" in page.text


def test_name_defaults_to_the_domain(ctx, client):
    account = make_account(ctx)
    sign_in(ctx, client, account)
    response = post(client, "/sites", {"domain": "shop.example.com"}, csrf(client))
    assert response.status_code == 303
    [site] = sites_of(ctx, account)
    assert site.name == "shop.example.com"


def test_invalid_domain_is_shown_and_nothing_is_created(ctx, client):
    account = make_account(ctx)
    sign_in(ctx, client, account)
    token = csrf(client, "/sites/new")

    response = post(client, "/sites", {"domain": "not a domain!", "name": "Kept"}, token)
    assert response.status_code == 400
    assert "is not a valid domain name" in response.text
    assert 'role="alert"' in response.text
    assert 'value="not a domain!"' in response.text  # the form keeps what was typed
    assert 'value="Kept"' in response.text

    empty = post(client, "/sites", {"domain": "   "}, token)
    assert empty.status_code == 400
    assert "enter a domain such as blog.example.org" in empty.text

    too_long = post(client, "/sites", {"domain": "ok.example.org", "name": "x" * 101}, token)
    assert too_long.status_code == 400
    assert "the site name is too long" in too_long.text
    assert sites_of(ctx, account) == []


def test_register_needs_the_csrf_token(ctx, client):
    account = make_account(ctx)
    sign_in(ctx, client, account)
    csrf(client)  # the browser has its CSRF cookie
    response = client.post(
        "/sites", data={"domain": "blog.example.org"}, headers=HTML, follow_redirects=False
    )
    assert response.status_code == 403
    forged = post(client, "/sites", {"domain": "blog.example.org"}, "0" * 64)
    assert forged.status_code == 403
    assert sites_of(ctx, account) == []


def test_list_shows_each_site_with_its_numbers(ctx, client, clock):
    account = make_account(ctx)
    blog = make_site(ctx, account, "blog.example.org", name="The blog")
    shop = make_site(ctx, account, "shop.example.org", name="The shop")
    with ctx.db.session() as session:
        sites.update_settings(session, shop, name="The shop", is_public=False)
    hit(client, blog.public_key, ip="81.2.69.142")
    clock.advance(days=1)
    hit(client, blog.public_key, ip="81.2.69.142")
    hit(client, blog.public_key, ip="89.160.20.112")
    other = make_site(ctx, make_account(ctx), "other.example.org", name="Not mine")
    sign_in(ctx, client, account)

    page = client.get("/sites", headers=HTML)

    assert page.status_code == 200
    assert "Not mine" not in page.text and other.public_key not in page.text
    assert 'href="/sites/new"' in page.text
    cards = re.findall(r'<li class="card site-card">(.*?)</li>', page.text, re.S)
    assert len(cards) == 2
    blog_card, shop_card = cards
    assert f'href="/sites/{blog.public_key}"' in blog_card
    assert "The blog" in blog_card and "blog.example.org" in blog_card
    assert "Public map" in blog_card
    assert "<dt>Today</dt><dd>2</dd>" in blog_card
    assert "<dt>Total</dt><dd>3</dd>" in blog_card
    assert "The shop" in shop_card and "Private" in shop_card
    assert "<dt>Today</dt><dd>0</dd>" in shop_card


def test_site_page_shows_the_new_site_empty(ctx, client):
    account = make_account(ctx)
    site = make_site(ctx, account)
    sign_in(ctx, client, account)
    page = client.get(f"/sites/{site.public_key}", headers=HTML)
    assert page.status_code == 200
    assert stat(page.text, "stat-today") == 0
    assert stat(page.text, "stat-total") == 0
    assert "No visitors yet" in page.text
    assert "Nothing was dropped" in page.text
    assert f'href="/map/{site.public_key}"' in page.text
