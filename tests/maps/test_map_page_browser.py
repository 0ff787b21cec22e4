"""The public map page in real headless Chromium: the world map loads (1x and, on a
high-DPI screen, 2x), the range selector switches images, a private map is 404 to
strangers, and the owner's counter style form redraws the thumbnail."""

from __future__ import annotations

import datetime as dt

import pytest
from playwright.sync_api import Browser, Page, expect

from app.clock import utc_today
from app.sites import authz
from app.sites import service as sites
from tests.factories import DEFAULT_PASSWORD, make_account, make_site
from tests.live import live_hitmap
from tests.maps.helpers import LONDON, PARIS, SYDNEY, add_visits

pytestmark = pytest.mark.browser

LOADED = (
    "([selector, width]) => { const i = document.querySelector(selector);"
    " return i && i.complete && i.naturalWidth === width; }"
)


def _wait_loaded(page: Page, selector: str, width: int) -> None:
    page.wait_for_function(LOADED, arg=[selector, width], timeout=15_000)


def test_map_page_in_chromium(browser: Browser, database_url, tmp_path):
    with live_hitmap(database_url, tmp_path) as hitmap:
        ctx, base = hitmap.ctx, f"http://localhost:{hitmap.port}"
        owner = make_account(ctx)
        site = make_site(ctx, owner, name="Travel notes")
        today = utc_today(ctx.clock)
        add_visits(ctx, site, today, LONDON, 3)
        add_visits(ctx, site, today - dt.timedelta(days=20), PARIS, 2)
        add_visits(ctx, site, today - dt.timedelta(days=200), SYDNEY, 4)
        key = site.public_key

        visitor = browser.new_context()
        page = visitor.new_page()
        page.goto(f"{base}/map/{key}")
        _wait_loaded(page, "#world-map", 1200)
        assert page.get_attribute("#world-map", "src") == f"/map/{key}/all.png"
        expect(page.locator("#world-visits")).to_have_text("9")

        page.click("#map-ranges a[data-range='30d']")
        expect(page.locator("#world-map")).to_have_attribute("src", f"/map/{key}/30d.png")
        _wait_loaded(page, "#world-map", 1200)
        expect(page.locator("#map-ranges a[aria-current='page']")).to_have_text("30 days")
        expect(page.locator("#world-visits")).to_have_text("5")
        expect(page.locator("#world-range")).to_have_text("30 days")
        expect(page.locator("#download-1x")).to_have_attribute("href", f"/map/{key}/30d.png")
        expect(page.locator("#download-2x")).to_have_attribute("href", f"/map/{key}/30d@2x.png")
        assert page.url.endswith(f"/map/{key}?range=30d")

        page.click("#map-ranges a[data-range='24h']")
        expect(page.locator("#world-map")).to_have_attribute("src", f"/map/{key}/24h.png")
        _wait_loaded(page, "#world-map", 1200)
        expect(page.locator("#world-visits")).to_have_text("3")
        page.reload()  # the link works without the script too
        assert page.get_attribute("#world-map", "src") == f"/map/{key}/24h.png"
        visitor.close()

        retina = browser.new_context(device_scale_factor=2)
        page = retina.new_page()
        page.goto(f"{base}/map/{key}?range=365d")
        # The srcset's 2x image (naturalWidth is in CSS pixels: the density is applied).
        _wait_loaded(page, "#world-map", 1200)
        assert page.evaluate("document.querySelector('#world-map').currentSrc").endswith(
            f"/map/{key}/365d@2x.png"
        )
        box = page.locator("#world-map").bounding_box()
        assert box is not None and box["width"] <= 1200
        retina.close()

        with ctx.db.session() as session:
            scope = authz.owned_site(session, owner.id, key)
            sites.update_settings(session, scope, name=scope.name, is_public=False)
        stranger = browser.new_context()
        page = stranger.new_page()
        response = page.goto(f"{base}/map/{key}")
        assert response is not None and response.status == 404
        assert page.locator("#world-map").count() == 0
        image = page.request.get(f"{base}/map/{key}/all.png")
        assert image.status == 404
        stranger.close()

        mine = browser.new_context()
        page = mine.new_page()
        page.goto(f"{base}/login")
        page.fill("#email", owner.email)
        page.fill("#password", DEFAULT_PASSWORD)
        page.click("main button[type=submit]")
        page.wait_for_url(f"{base}/sites")
        page.goto(f"{base}/map/{key}")
        _wait_loaded(page, "#world-map", 1200)  # the owner's private preview

        page.goto(f"{base}/sites/{key}")
        _wait_loaded(page, "#thumb-preview", 160)
        page.select_option("#style-size", "large")
        page.fill("#style-color", "#2563eb")
        page.select_option("#style-background", "dark")
        page.click("#map-style button[type=submit]")
        expect(page.locator("p.notice")).to_contain_text("Counter style saved")
        _wait_loaded(page, "#thumb-preview", 320)
        mine.close()
