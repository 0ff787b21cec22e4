"""In real headless Chromium: sign up, register a site, paste the snippet into a
page on a second origin, load it, and watch the dashboard count rise."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.live import PageServer, live_hitmap

pytestmark = pytest.mark.browser

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>My blog</title></head>
<body><h1>Hello from my blog</h1>
{snippet}
</body></html>"""

FIREFOX_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0"
CHROME_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0 Safari/537.36"
)


def _sign_up_and_register(page: Page, base: str, domain: str) -> tuple[str, str]:
    page.goto(f"{base}/signup")
    page.fill("#email", "owner@example.org")
    page.fill("#password", "a long enough password")
    page.fill("#password_confirm", "a long enough password")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/sites")
    page.goto(f"{base}/sites/new")
    page.fill("#domain", domain)
    page.fill("#name", "My blog")
    page.click("form[action='/sites'] button[type=submit]")
    page.wait_for_url(f"{base}/sites/*")
    key = page.url.rsplit("/", 1)[1].split("?")[0]
    snippet = page.input_value("#snippet-counter") + "\n" + page.input_value("#snippet-script")
    return key, snippet


def _visit(browser: Browser, url: str, user_agent: str) -> None:
    context = browser.new_context(user_agent=user_agent)
    page = context.new_page()
    page.goto(url)
    counter = page.locator("img[src*='/c/']")
    expect(counter).to_have_count(1)
    page.wait_for_function(
        "() => { const i = document.querySelector(\"img[src*='/c/']\");"
        " return i && i.complete && i.naturalWidth > 0; }"
    )
    context.close()


def test_pasted_snippet_counts_visits(browser: Browser, database_url, tmp_path):
    with live_hitmap(database_url, tmp_path) as hitmap, PageServer() as pages:
        base = f"http://localhost:{hitmap.port}"
        owner = browser.new_context()
        page = owner.new_page()
        key, snippet = _sign_up_and_register(page, base, domain="127.0.0.1")
        assert f'src="{base}/c/{key}.png"' in snippet
        assert f'data-site="{key}"' in snippet
        pages.pages["/post.html"] = PAGE.format(snippet=snippet)

        page.goto(f"{base}/sites/{key}?range=today")
        expect(page.locator("#stat-today")).to_have_text("0")

        _visit(browser, f"{pages.origin}/post.html", FIREFOX_UA)
        page.reload()
        expect(page.locator("#stat-today")).to_have_text("1")

        _visit(browser, f"{pages.origin}/post.html", FIREFOX_UA)  # same visitor, same day
        page.reload()
        expect(page.locator("#stat-today")).to_have_text("1")

        _visit(browser, f"{pages.origin}/post.html", CHROME_UA)  # another visitor
        page.reload()
        expect(page.locator("#stat-today")).to_have_text("2")
        expect(page.locator("#stat-total")).to_have_text("2")
        owner.close()


def test_page_still_loads_when_hitmap_is_down(browser: Browser, database_url, tmp_path):
    """Hitmap stopped: the host page loads at once and the cached widget script hides
    the counter instead of leaving a broken image."""
    with PageServer() as pages:
        context = browser.new_context()
        page = context.new_page()
        with live_hitmap(database_url, tmp_path) as hitmap:
            base = f"http://localhost:{hitmap.port}"
            key, snippet = _sign_up_and_register(page, base, domain="127.0.0.1")
            pages.pages["/post.html"] = PAGE.format(snippet=snippet)
            page.goto(f"{pages.origin}/post.html")  # the browser caches /w.js here
            expect(page.locator(f"a[href$='/map/{key}']")).to_be_visible()
        page.goto(f"{pages.origin}/post.html", wait_until="load", timeout=5_000)
        expect(page.locator("h1")).to_have_text("Hello from my blog")
        link = page.locator(f"a[href$='/map/{key}']")
        expect(link).to_have_attribute("data-hitmap", "unavailable", timeout=10_000)
        expect(link).to_be_hidden()
        context.close()
