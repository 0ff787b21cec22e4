"""The snippet's Copy buttons in a real browser (app/static/copy.js under the real CSP)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from app.accounts import service as accounts
from app.sites import service as sites
from tests.live import LiveServer, live_hitmap

pytestmark = pytest.mark.browser


@pytest.fixture
def chromium(browser: Browser) -> Browser:
    return browser


@pytest.fixture
def live(tmp_path) -> Iterator[LiveServer]:
    # Browser behaviour, not SQL: one database kind is enough here.
    with live_hitmap("sqlite", tmp_path) as server:
        yield server


def _open_site_page(live: LiveServer, chromium: Browser, init_script: str | None = None):
    ctx = live.ctx
    with ctx.db.session() as session:
        account = accounts.sign_up(session, ctx.clock, "copy@example.org", "x" * 12)
        scope = sites.create_site(
            session, ctx.clock, account_id=account.id, domain="blog.example.org"
        )
        token = accounts.start_session(session, ctx.clock, ctx.login_policy, account)
    base = f"http://localhost:{live.port}"
    context = chromium.new_context()
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    context.add_cookies([{"name": "hitmap_session", "value": token, "url": base}])
    if init_script:
        context.add_init_script(init_script)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{base}/sites/{scope.public_key}")
    return page, errors, sites.snippet(base, scope)


def _clipboard(page: Page) -> str:
    return str(page.evaluate("navigator.clipboard.readText()"))


def test_copy_buttons_copy_and_announce(live, chromium):
    page, errors, snippet = _open_site_page(live, chromium)
    counter_button = page.locator('button[data-copy="snippet-counter"]')
    script_button = page.locator('button[data-copy="snippet-script"]')
    assert counter_button.is_visible() and script_button.is_visible()

    counter_button.click()
    expect(page.locator("#copy-status")).to_have_text("Copied")
    expect(counter_button).to_have_text("Copied")
    assert _clipboard(page) == snippet.counter_html

    script_button.click()
    expect(script_button).to_have_text("Copied")
    assert _clipboard(page) == snippet.script_html
    expect(counter_button).to_have_text("Copy")  # each label comes back after a moment
    assert errors == []


def test_copy_falls_back_to_select_and_exec_command(live, chromium):
    no_clipboard_api = "Object.defineProperty(navigator, 'clipboard', {value: undefined});"
    page, errors, snippet = _open_site_page(live, chromium, no_clipboard_api)

    page.locator('button[data-copy="snippet-script"]').click()

    expect(page.locator("#copy-status")).to_have_text(
        re.compile(r"^(Copied|Snippet selected: press Ctrl\+C \(or Command\+C\) to copy)$")
    )
    selected = page.evaluate(
        "(() => { const t = document.getElementById('snippet-script');"
        " return t.value.substring(t.selectionStart, t.selectionEnd); })()"
    )
    assert selected == snippet.script_html
    assert errors == []
