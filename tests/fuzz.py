"""Hostile values and route discovery for the fuzz tests (zero 5xx allowed).

The strategies mix a list of known troublemakers (NUL and other control
characters, ids and numbers no column holds, days at the ends of the calendar,
odd Unicode, very long strings) with Hypothesis' own text, and glue pairs of them
together so that a troublemaker also hides inside an otherwise valid value.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

T = TypeVar("T")

TROUBLE = [
    # control characters, alone and inside otherwise valid values
    "",
    " ",
    "\x00",
    "x@example.org\x00",
    "\x00blog.example.org",
    "\t",
    "\r\n",
    "\x1b[31m",
    "\x7f",
    "\x85",
    "\x9f",
    "\u2028",
    # Unicode that is valid but odd
    "\ufeff",
    "\u200b",
    "\u202e",
    "\ufffd",
    "\uffff",
    "😀",
    "👩‍💻",
    "İ",
    "ß",
    "e\u0301",
    "日本語",
    "Ａ",
    "１２",
    # numbers no column holds
    "0",
    "-1",
    "18446744073709551616",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "1e400",
    "nan",
    "inf",
    "0x10",
    "1" * 5000,
    # days at and beyond the ends of the calendar
    "0001-01-01",
    "1999-12-31",
    "9998-12-31",
    "9999-12-31",
    "10000-01-01",
    "2026-02-30",
    "2026-11-22",
    # values the forms and queries know, so that deeper code runs too
    "7d",
    "30d",
    "90d",
    "all",
    "today",
    "days",
    "forever",
    "default",
    "on",
    "mobile",
    "desktop",
    "small",
    "dark",
    "#ff0000",
    "blog.example.org",
    "www.example.org",
    "http://[::1",
    "https://x.example.org:99999/",
    "xn--",
    "a..b",
    "com",
    "/",
    "//evil.example",
    "/pricing",
    "/%00",
    "x@example.org",
    "correct horse battery staple",
]
LONG = ["x" * 300, "é" * 2000, "a" * 50_000]

_pairs = st.tuples(st.sampled_from(TROUBLE), st.sampled_from(TROUBLE)).map("".join)
text = st.one_of(st.sampled_from(TROUBLE), st.sampled_from(LONG), st.text(max_size=40), _pairs)
# Query strings stay within what a client sends (httpx refuses URLs over 64 KB).
query_text = st.one_of(
    st.sampled_from(TROUBLE), st.sampled_from(LONG[:2]), st.text(max_size=40), _pairs
)
# Path segments stay short: a URL of 100 KB is refused by any server before the app.
short_text = st.one_of(
    st.sampled_from([t for t in TROUBLE if len(t) < 100]),
    st.text(min_size=1, max_size=40),
)
header_bytes = st.one_of(
    st.sampled_from([t.encode("utf-8") for t in TROUBLE if len(t) < 1000]),
    st.binary(max_size=300).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
)


def mostly(usual: T, other: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """``usual`` three times in four, else ``other``: most examples get past the first check."""
    return st.integers(0, 3).flatmap(lambda i: other if i == 0 else st.just(usual))


def examples(n: int) -> int:
    """``n`` examples in the suite; HITMAP_FUZZ_SCALE=20 multiplies them for a deeper hunt."""
    return n * int(os.environ.get("HITMAP_FUZZ_SCALE", "1"))


FAST = settings(
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)


# --- the routes of the app ---------------------------------------------------------


def calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    """Every dependency function a route runs, at any depth."""
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from calls(sub)


def all_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """Every endpoint with its full path, descending into included routers."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        elif hasattr(route, "original_router"):  # FastAPI's included-router node
            yield from all_routes(
                route.original_router.routes, prefix + route.include_context.prefix
            )


def page_routes(app: FastAPI) -> list[tuple[str, APIRoute]]:
    """The routes of the pages: everything but the JSON API (which its schema covers)."""
    found = [(path, r) for path, r in all_routes(app.routes) if not path.startswith("/api/")]
    assert found, "no routes found: has FastAPI's routing structure changed?"
    return found


def dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from dependants(sub)


def field_names(route: APIRoute) -> tuple[list[str], list[str], list[str]]:
    """Names of the route's path parameters, query parameters and form fields."""
    found: tuple[list[str], list[str], list[str]] = ([], [], [])
    for d in dependants(route.dependant):
        for names, params in zip(
            found, (d.path_params, d.query_params, d.body_params), strict=True
        ):
            names.extend(p.alias for p in params if p.alias not in names)
    return found
