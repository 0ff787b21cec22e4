"""The counter and the beacon, fuzzed: odd keys, headers and bodies never make a 5xx.

The counter answers an image whatever goes wrong inside it (and logs the error),
so an error log counts as a failure here too. Both run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from tests.factories import make_account, make_site
from tests.fuzz import FAST, TROUBLE, examples, header_bytes, mostly, short_text

DOMAIN = "fuzz-target.example.net"
ORIGIN = f"https://{DOMAIN}"
COUNTER_HEADERS = ("referer", "user-agent", "x-forwarded-for", "if-none-match", "sec-purpose")
BEACON_HEADERS = ("origin", "referer", "content-type", "dnt", "sec-gpc")


def _errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def _headers(names: tuple[str, ...], usual: dict[str, bytes]) -> st.SearchStrategy:
    """The usual headers, mostly with their usual value; each other header absent or anything."""
    return st.fixed_dictionaries(
        {n: mostly(v, header_bytes) for n, v in usual.items()},
        optional={n: header_bytes for n in names if n not in usual},
    )


def _key(real: str) -> st.SearchStrategy[str]:
    return mostly(real, short_text)


# --- the counter ------------------------------------------------------------------------


def test_the_counter_never_fails_whatever_the_key_and_headers(ctx, client, caplog):
    site = make_site(ctx, make_account(ctx), domain=DOMAIN)
    usual = {
        "referer": f"{ORIGIN}/post/1".encode(),
        "user-agent": b"Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0",
        "x-forwarded-for": b"81.2.69.142",
    }
    caplog.set_level(logging.WARNING)

    @settings(parent=FAST, max_examples=examples(100))
    @given(key=_key(site.public_key), headers=_headers(COUNTER_HEADERS, usual))
    def run(key: str, headers: dict[str, bytes]) -> None:
        caplog.clear()
        url = f"/c/{quote(key, safe='')}.png"
        note(f"GET {url} headers={headers!r:.1000}")
        response = client.get(url, headers=headers)
        assert response.status_code in (200, 304, 404), response.status_code
        assert response.headers["content-type"] == "image/png"
        assert _errors_logged(caplog) == []

    run()


# --- the beacon -------------------------------------------------------------------------

ODD_NUMBERS = [0, -1, 1.5, 10**30, -(10**30), 2**63, 1e308, -1e308, 5e-324, math.nan, math.inf]
odd_value = st.one_of(
    st.sampled_from(ODD_NUMBERS),
    st.sampled_from([None, True, False, [], {}, "", "\x00", "\ud800", "a\udfff", "1e400"]),
    st.sampled_from(TROUBLE),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
)


def _click(draw_value: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    good: dict[str, Any] = {"x": 640, "y": 300, "w": 1400, "h": 3000, "v": 1400, "r": 1}
    good_with_selector = {**good, "s": "#buy", "ox": 0.25, "oy": 0.5}
    return st.one_of(st.just(good), st.just(good_with_selector)).flatmap(
        lambda base: st.fixed_dictionaries(
            {k: mostly(v, draw_value) for k, v in base.items()},
            optional={k: draw_value for k in ("s", "zz") if k not in base},
        )
    )


def _json_bytes(value: Any) -> bytes:
    # ensure_ascii: a lone surrogate travels as "\ud800", as a hostile client would send it.
    return json.dumps(value).encode()


beacon_json = st.fixed_dictionaries(
    {
        "p": mostly("/pricing", odd_value),
        "c": st.integers(0, 3).flatmap(
            lambda i: odd_value if i == 0 else st.lists(_click(odd_value), min_size=1, max_size=3)
        ),
    },
)
any_json = st.recursive(
    odd_value,
    lambda inner: st.one_of(st.lists(inner), st.dictionaries(st.text(), inner)),
    max_leaves=20,
)
beacon_body = st.one_of(
    beacon_json.map(_json_bytes),
    beacon_json.map(_json_bytes),
    any_json.map(_json_bytes),
    st.binary(max_size=200),
    st.sampled_from([b"", b"{", b"[" * 10_000, b'{"p":"/","c":[' + b"{}," * 6000 + b"{}]}"]),
    st.just(b"x" * 20_000),
)


def test_the_beacon_never_fails_whatever_the_key_headers_and_body(ctx, client, caplog):
    site = make_site(ctx, make_account(ctx), domain=DOMAIN)
    usual = {"origin": ORIGIN.encode(), "content-type": b"text/plain;charset=UTF-8"}
    caplog.set_level(logging.WARNING)

    @settings(parent=FAST, max_examples=examples(100))
    @given(
        key=_key(site.public_key),
        headers=_headers(BEACON_HEADERS, usual),
        body=beacon_body,
    )
    def run(key: str, headers: dict[str, bytes], body: bytes) -> None:
        caplog.clear()
        url = f"/b/{quote(key, safe='')}"
        note(f"POST {url} headers={headers!r:.1000} body={body!r:.1000}")
        response = client.post(url, content=body, headers=headers)
        assert response.status_code in (204, 400, 404), (response.status_code, response.text)
        assert _errors_logged(caplog) == []

    run()
