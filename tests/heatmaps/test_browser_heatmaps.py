"""In real headless Chromium: the widget records clicks on a centred page served from a
second origin, the desktop heatmap has its hot spots where the clicks were, and the live
overlay puts the hot spots on the clicked elements at a third window width."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Page, expect

from app.accounts import service as accounts
from app.deps import SESSION_COOKIE
from app.sites import service as sites
from tests.factories import make_account, make_site
from tests.heatmaps.beacons import stored_clicks
from tests.live import PageServer, live_hitmap

pytestmark = pytest.mark.browser

# An 800 px column centred in the window: the same element sits at different page
# coordinates at every window width.
SHOP = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Shop</title>
<style>
  body {{ margin: 0; font: 16px sans-serif; }}
  main {{ width: 800px; margin: 0 auto; padding-top: 20px; }}
  .hero {{ height: 200px; background: #eef; }}
  #buy {{ display: block; border: 0; width: 200px; height: 60px; margin: 40px auto; }}
  ul.links {{ list-style: none; padding: 0; display: flex; gap: 20px; }}
  ul.links li {{ width: 150px; height: 40px; background: #ddd; }}
  .gone {{ height: 30px; }}
  footer {{ height: 1200px; }}
</style></head>
<body><main>
<div class="hero"><h1>Shop</h1></div>
<button id="buy">Buy now</button>
<ul class="links"><li>One</li><li>Two</li><li>Three</li></ul>
{banner}
</main><footer></footer>
{snippet}
</body></html>"""
BANNER = '<p class="gone">Spring sale</p>'
LI = "body>main>ul.links>li:nth-of-type(3)"

# (selector, where to click inside the element in CSS px, its box size)
TARGETS = {"#buy": ((50, 15), (200, 60)), LI: ((30, 20), (150, 40))}


def _context(browser: Browser, width: int) -> BrowserContext:
    return browser.new_context(viewport={"width": width, "height": 900})


def _page_position(page: Page, selector: str, offset: tuple[int, int]) -> tuple[float, float]:
    box = page.evaluate(
        "s => { const r = document.querySelector(s).getBoundingClientRect();"
        " return [r.left + scrollX, r.top + scrollY]; }",
        selector,
    )
    return box[0] + offset[0], box[1] + offset[1]


def _click_all(browser: Browser, url: str, width: int, blank_url: str) -> dict[str, object]:
    """Click the targets at one window width; leave the page so that the batch is sent."""
    context = _context(browser, width)
    page = context.new_page()
    page.goto(url)
    expected: dict[str, object] = {
        "doc_width": page.evaluate("document.documentElement.scrollWidth"),
        "viewport": page.evaluate("innerWidth"),
    }
    for selector, (offset, _) in TARGETS.items():
        expected[selector] = _page_position(page, selector, offset)
        page.click(selector, position={"x": offset[0], "y": offset[1]})
    if width >= 1280:
        expected[".gone"] = _page_position(page, ".gone", (10, 10))
        page.click(".gone", position={"x": 10, "y": 10})
        page.mouse.click(40, 100)  # a blank area beside the column: the body
    page.goto(blank_url)  # pagehide: the widget sends its batch with sendBeacon
    context.close()
    return expected


def _wait_for_clicks(ctx, site, count: int):
    deadline = time.monotonic() + 15
    while True:
        rows = stored_clicks(ctx, site)
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def _peak(window: np.ndarray) -> tuple[float, float]:
    """(row, column) of the centre of the hottest plateau (8-bit values have flat tops)."""
    rows, cols = np.nonzero(window == window.max())
    return float(rows.mean()), float(cols.mean())


def _canvas_alpha(page: Page, x: float, y: float, half: int) -> np.ndarray:
    """Alpha of the overlay canvas around viewport point (x, y), in CSS px."""
    values = page.evaluate(
        """([x, y, half]) => {
            const c = document.getElementById('hitmap-overlay-canvas'), r = devicePixelRatio;
            const d = c.getContext('2d').getImageData(
                Math.round((x - half) * r), Math.round((y - half) * r),
                Math.round((2 * half + 1) * r), Math.round((2 * half + 1) * r)).data;
            const out = [];
            for (let i = 3; i < d.length; i += 4) out.push(d[i]);
            return [Math.round((2 * half + 1) * r), out];
        }""",
        [x, y, half],
    )
    side, alpha = values
    return np.array(alpha, dtype=np.uint8).reshape(side, side)


def test_clicks_heatmap_and_live_overlay_in_chromium(browser: Browser, database_url, tmp_path):
    with PageServer() as pages:
        with live_hitmap(database_url, tmp_path) as hitmap:
            ctx = hitmap.ctx
            base = f"http://localhost:{hitmap.port}"
            owner = make_account(ctx)
            site = make_site(ctx, owner, domain="127.0.0.1")
            snippet = sites.snippet(base, site).full_html
            pages.pages["/shop.html"] = SHOP.format(banner=BANNER, snippet=snippet)
            pages.pages["/blank.html"] = "<!doctype html><title>Elsewhere</title><p>Bye</p>"
            shop, blank = f"{pages.origin}/shop.html", f"{pages.origin}/blank.html"

            # 1. Visitors click at two window widths.
            wide = _click_all(browser, shop, 1400, blank)
            narrow = _click_all(browser, shop, 900, blank)
            rows = _wait_for_clicks(ctx, site, 6)
            assert len(rows) == 6, [(r.selector, r.viewport_width) for r in rows]
            by_key = {(r.selector, r.viewport_width): r for r in rows}
            for expected, bucket in ((wide, "desktop"), (narrow, "tablet")):
                viewport = expected["viewport"]
                for selector, (offset, size) in TARGETS.items():
                    row = by_key[(selector, viewport)]
                    assert row.bucket == bucket and row.path == "/shop.html"
                    # Within a pixel: layout positions may be fractional, mouse events are not.
                    assert row.offset_x == pytest.approx(offset[0] / size[0], abs=1 / size[0])
                    assert row.offset_y == pytest.approx(offset[1] / size[1], abs=1 / size[1])
                    x, y = expected[selector]  # type: ignore[misc]
                    assert abs(row.x - x) <= 1 and abs(row.y - y) <= 1
                    assert row.doc_width == expected["doc_width"]
            assert by_key[("#buy", 1400)].x - by_key[("#buy", 900)].x > 200  # the layout moved
            assert ("body", 1400) in by_key and (".gone", 1400) not in by_key
            gone = next(r for r in rows if r.selector == "body>main>p.gone")
            assert (gone.offset_x, gone.viewport_width) == (pytest.approx(10 / 800, abs=0.01), 1400)

            # 2. The owner's desktop heatmap has its hot spots where the desktop clicks were.
            with ctx.db.session() as session:
                login = accounts.start_session(session, ctx.clock, ctx.login_policy, owner)
            owner_context = browser.new_context()
            owner_context.add_cookies([{"name": SESSION_COOKIE, "value": login, "url": base}])
            owner_page = owner_context.new_page()
            owner_page.goto(f"{base}/sites/{site.public_key}/heatmaps")
            expect(owner_page.locator("#heatmap-pages a")).to_have_text("/shop.html")
            owner_page.click("#heatmap-pages a")
            expect(owner_page.locator("#bucket-desktop img")).to_be_visible()
            png_url = owner_page.locator("#bucket-desktop img").get_attribute("src")
            assert png_url
            png = owner_context.request.get(base + png_url).body()
            alpha = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))[:, :, 3]
            scale = 1280 / int(wide["doc_width"])  # type: ignore[call-overload]
            for selector in TARGETS:
                x, y = (round(v * scale) for v in wide[selector])  # type: ignore[attr-defined]
                window = alpha[y - 30 : y + 31, x - 30 : x + 31]
                hot = _peak(window)
                assert abs(hot[0] - 30) <= 3 and abs(hot[1] - 30) <= 3, (selector, hot)
                assert alpha[y, x] > 0
            assert alpha[1000:, :].max() == 0  # nobody clicked below the fold
            assert alpha[:150, 900:].max() == 0

            # 3. A bookmarklet, made on the heatmap page, draws the overlay on the real page at a
            #    third width, with the element that no longer exists drawn apart.
            owner_page.goto(f"{base}/sites/{site.public_key}/heatmaps")
            owner_page.click("#create-bookmarklet")
            code = owner_page.locator("#bookmarklet-link").get_attribute("href")
            assert code and code.startswith("javascript:")
            pages.pages["/shop.html"] = SHOP.format(banner="", snippet=snippet)  # banner removed
            third = _context(browser, 1100)
            page = third.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(shop)
            page.evaluate(code.removeprefix("javascript:"))
            overlay = page.locator("#hitmap-overlay")
            expect(overlay).to_have_attribute("data-state", "ready", timeout=10_000)
            expect(overlay).to_have_attribute("data-anchored", "5")  # buy ×2, item ×2, body
            expect(overlay).to_have_attribute("data-loose", "1")  # the banner is gone
            page.wait_for_timeout(200)  # one animation frame at least
            for selector, (offset, _) in TARGETS.items():
                x, y = _page_position(page, selector, offset)  # scrollY is 0: viewport = page
                window = _canvas_alpha(page, x, y, 30)
                assert window.max() > 150, selector
                hot = _peak(window)
                centre = window.shape[0] // 2
                assert abs(hot[0] - centre) <= 3 and abs(hot[1] - centre) <= 3, (selector, hot)
                # Where the page coordinates of the 1400-px clicks would put it: nothing.
                old_x = wide[selector][0]  # type: ignore[index]
                assert _canvas_alpha(page, old_x, y, 3).max() == 0, selector
            assert _canvas_alpha(page, 1050, 850, 10).max() == 0  # an empty spot
            page.click("#buy")  # the owner's clicks while the overlay is open are not recorded
            page.goto(blank)
            page.wait_for_timeout(500)
            assert len(stored_clicks(ctx, site)) == 6
            assert errors == []

            # The heatmap page's "Open with overlay" opens the page itself with the overlay, on
            # the listed hostname: plain http because the owner says so on the site page.
            owner_page.goto(f"{base}/sites/{site.public_key}")
            owner_page.get_by_role("button", name="Pages on 127.0.0.1 use plain http").click()
            expect(owner_page.get_by_role("button", name="Use https for 127.0.0.1")).to_be_visible()
            owner_page.goto(f"{base}/sites/{site.public_key}/heatmaps/page?path=/shop.html")
            owner_page.click("#open-live")
            href = owner_page.locator("#live-link").get_attribute("href")
            listed = "http://127.0.0.1/shop.html#hitmap-overlay="
            assert href and href.startswith(listed), href  # the default port, as listed
            # The test's page server stands in for the owner's on a port of its own.
            live = owner_context.new_page()
            live.goto(shop + href.removeprefix("http://127.0.0.1/shop.html"))
            live_overlay = live.locator("#hitmap-overlay")
            expect(live_overlay).to_have_attribute("data-state", "ready", timeout=10_000)
            expect(live_overlay).to_have_attribute("data-anchored", "5")
            assert live.url == shop  # w.js removed the token from the address
            owner_context.close()

        # 4. Hitmap stopped: the page still loads at once, shows the fallback, clicks are harmless.
        page.goto(shop, wait_until="load", timeout=5_000)
        expect(page.locator("h1")).to_have_text("Shop")
        link = page.locator(f"a[href$='/map/{site.public_key}']")
        expect(link).to_have_attribute("data-hitmap", "unavailable", timeout=10_000)
        expect(link).to_be_hidden()
        page.click("#buy")
        page.goto(blank)  # the batch's beacon fails quietly
        assert errors == []
        third.close()


def test_one_page_view_sends_at_most_ten_batches(browser: Browser, database_url, tmp_path):
    """Someone (or something) clicking on and on: the widget stops after 10 batches of 20."""
    with PageServer() as pages, live_hitmap(database_url, tmp_path) as hitmap:
        ctx = hitmap.ctx
        site = make_site(ctx, make_account(ctx), domain="127.0.0.1")
        snippet = sites.snippet(f"http://localhost:{hitmap.port}", site).full_html
        pages.pages["/shop.html"] = SHOP.format(banner="", snippet=snippet)
        pages.pages["/blank.html"] = "<!doctype html><title>Elsewhere</title><p>Bye</p>"
        context = _context(browser, 1400)
        page = context.new_page()
        sent: list[str] = []  # beacons as the browser saw them (a Blob body is not shown)

        def note(request) -> None:
            if request.method == "POST" and f"/b/{site.public_key}" in request.url:
                sent.append(request.url)

        context.on("request", note)
        page.goto(f"{pages.origin}/shop.html")
        for n in range(300):  # 15 batches' worth, with a timer flush in between
            page.mouse.click(300 + n % 50, 260)
            if n == 104:
                page.wait_for_timeout(5_500)  # the 5 s timer sends the 5 clicks queued
        page.goto(f"{pages.origin}/blank.html")  # pagehide: nothing left to send
        page.wait_for_timeout(500)
        context.close()
        assert len(sent) == 10
        rows = _wait_for_clicks(ctx, site, 185)
        assert len(rows) == 185  # 5 full batches, the timer's 5 clicks, 4 full batches
