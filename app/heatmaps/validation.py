"""The beacon pipeline: named steps that check a batch of clicks before anything is stored.

A step fills in what it learns (the site, the page, the clicks) or returns a
:class:`Verdict` that ends the batch, with a :class:`Reason` and a short, safe detail:
no such site (or a request that names no page: no usable ``Origin`` or ``Referer``),
rejected (a page on a foreign host, or anything invalid; nothing from the batch is
stored), or fine but not to be recorded (the visitor asked not to be tracked and the
owner honours that, or the batch is over its address's or site's click budget: shed
and counted, see ``budgets.py``). As the counter's pipeline does, steps know nothing of
HTTP: only the route turns a reason into a status. Cheap checks come first; the body
is parsed only after the site and the sender are known.

The wire format (``text/plain`` body holding JSON, so that browsers send it
without a CORS preflight)::

    {"p": "/pricing",
     "c": [{"x": 640, "y": 1210, "w": 1280, "h": 3400, "v": 1280, "r": 2,
            "s": "#plans>div:nth-of-type(2)>a.buy", "ox": 0.41, "oy": 0.5}]}

``p`` page path (query and fragment only when the owner opted in); per click:
``x``/``y`` page position in CSS px, ``w``/``h`` document size, ``v`` viewport
width, ``r`` device pixel ratio, ``s`` CSS selector of the clicked element
(optional) and ``ox``/``oy`` the click's offset inside that element's box as
fractions of its width and height.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from app.heatmaps.schemas import Click, RecordingOptions, bucket_for
from app.settings import WidthBucket
from app.sites.keys import host_matches, is_wellformed_key
from app.sites.scope import SiteScope

MAX_BODY_BYTES = 16 * 1024
MAX_CLICKS = 50
MAX_PATH_LENGTH = 512
MAX_SELECTOR_LENGTH = 256
MAX_PAGE_PX = 100_000  # x, y, document width and height
MAX_VIEWPORT_PX = 20_000
MAX_DPR = 16.0

# Percent-encoded URL paths are printable ASCII; no spaces, no control characters.
PATH_PATTERN = re.compile(r"/[\x21-\x7e]*")
# What the widget writes: #id, tag, .class, :nth-of-type(n), joined by ">".
SELECTOR_PATTERN = re.compile(r"[A-Za-z0-9_#.:()>-]+")
CLICK_FIELDS = frozenset({"x", "y", "w", "h", "v", "r", "s", "ox", "oy"})
BATCH_FIELDS = frozenset({"p", "c"})


class Reason(StrEnum):
    """How a batch ended; the values are the ``hitmap_beacon_batches`` results."""

    ACCEPTED = "accepted"  # stored (or spooled): the service's, never a step's
    UNKNOWN_SITE = "unknown_site"  # no such site, or a request naming no page
    REJECTED = "rejected"  # a foreign page or invalid input: nothing stored
    NOT_TRACKED = "not_tracked"  # the visitor asked not to be, and the owner honours it
    SHED = "shed"  # over a click budget: counted, not stored
    UNAVAILABLE = "unavailable"  # neither the database nor the spool took it: the service's


@dataclass(frozen=True, slots=True)
class Verdict:
    """How a batch ended: its reason and a short detail safe to show the sender
    (``shed``: the counted reason of a batch shed over budget, see ``budgets.py``)."""

    reason: Reason
    detail: str
    shed: str | None = None


def rejected(detail: str) -> Verdict:
    return Verdict(Reason.REJECTED, detail)


UNKNOWN_SITE = Verdict(Reason.UNKNOWN_SITE, "no such site")
NOT_FROM_SITE = Verdict(
    Reason.UNKNOWN_SITE, "no such site: the request names no page (no Origin or Referer)"
)
FOREIGN_PAGE = rejected("foreign origin: the page is not on one of the site's hostnames")
NOT_TRACKED = Verdict(Reason.NOT_TRACKED, "not recorded: the visitor asked not to be tracked")


@dataclass(frozen=True, slots=True)
class SiteEntry:
    scope: SiteScope
    hostnames: frozenset[str]
    options: RecordingOptions


@dataclass(slots=True)
class Beacon:
    key: str
    body: bytes
    body_too_large: bool
    origin: str | None
    referer: str | None
    privacy_signal: bool  # the browser sent DNT: 1 or Sec-GPC: 1
    received_at: dt.datetime
    # The socket peer and X-Forwarded-For: the client, behind trusted proxies (never stored).
    peer_ip: str | None = None
    forwarded_for: str | None = None
    site: SiteEntry | None = None
    page_origin: str | None = None
    payload: dict[str, Any] | None = None
    path: str | None = None
    clicks: list[Click] = field(default_factory=list)

    @property
    def day(self) -> dt.date:
        return self.received_at.astimezone(dt.UTC).date()


Step = Callable[[Beacon], Verdict | None]


class _Invalid(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_key(beacon: Beacon) -> Verdict | None:
    return None if is_wellformed_key(beacon.key) else UNKNOWN_SITE


def check_body_size(beacon: Beacon) -> Verdict | None:
    if beacon.body_too_large or len(beacon.body) > MAX_BODY_BYTES:
        return rejected(f"body too large (at most {MAX_BODY_BYTES} bytes)")
    if not beacon.body:
        return rejected("empty body")
    return None


def find_site(lookup: Callable[[str], SiteEntry | None]) -> Step:
    def step(beacon: Beacon) -> Verdict | None:
        beacon.site = lookup(beacon.key)
        return None if beacon.site is not None else UNKNOWN_SITE

    step.__name__ = "find_site"
    return step


def page_origin(source: str | None, hostnames: frozenset[str]) -> str | None:
    """``scheme://host[:port]`` of an Origin or Referer on one of the hostnames, else None."""
    if not source or source == "null":
        return None
    try:
        parts = urlsplit(source.strip())
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host or not host_matches(host, hostnames):
        return None
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown}" + (f":{port}" if port is not None else "")


def _sender(beacon: Beacon) -> str | None:
    """The page that sent the batch: ``Origin``, or ``Referer`` when the origin is hidden."""
    if beacon.origin and beacon.origin != "null":
        return beacon.origin
    return beacon.referer or None


def check_origin(beacon: Beacon) -> Verdict | None:
    """Only pages on the site's hostnames (or their subdomains) may send clicks.

    Browsers send ``Origin`` with every POST; ``Referer`` is the fallback when a
    strict referrer policy made the origin ``null``. A request that names no page
    at all is no browser page of any site, a stranger: 404, as every site route
    answers strangers. A page on another host is a bad request with a reason the
    owner can act on (add the hostname on the site page): 400.
    """
    assert beacon.site is not None
    sender = _sender(beacon)
    beacon.page_origin = page_origin(sender, beacon.site.hostnames)
    if beacon.page_origin:
        return None
    return FOREIGN_PAGE if _is_web_page(sender) else NOT_FROM_SITE


def _is_web_page(url: str | None) -> bool:
    try:
        parts = urlsplit(url or "")
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


def honour_privacy(beacon: Beacon) -> Verdict | None:
    assert beacon.site is not None
    if beacon.site.options.honour_dnt and beacon.privacy_signal:
        return NOT_TRACKED
    return None


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def parse_body(beacon: Beacon) -> Verdict | None:
    try:
        text = beacon.body.decode("utf-8")
        data = json.loads(text, parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return rejected("body is not JSON text")
    if not isinstance(data, dict):
        return rejected("body must be a JSON object")
    unknown = set(data) - BATCH_FIELDS
    if unknown:
        return rejected(f"unknown field {sorted(unknown)[0][:20]!r}")
    beacon.payload = data
    return None


def normalise_path(raw: str, keep_query: bool) -> str:
    """The page path as stored: without query and fragment unless the owner keeps them."""
    if keep_query:
        return raw
    return raw.split("#", 1)[0].split("?", 1)[0] or "/"


def check_page(beacon: Beacon) -> Verdict | None:
    assert beacon.payload is not None and beacon.site is not None
    path = beacon.payload.get("p")
    if not isinstance(path, str):
        return rejected("p: the page path must be a string")
    if len(path) > MAX_PATH_LENGTH:
        return rejected(f"p: the page path is too long (at most {MAX_PATH_LENGTH})")
    if not PATH_PATTERN.fullmatch(path):
        return rejected("p: the page path must start with / and be URL-encoded")
    beacon.path = normalise_path(path, beacon.site.options.keep_query)
    return None


def _number(item: dict[str, Any], name: str, where: str, low: float, high: float) -> float:
    value = item.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"{where}.{name}: must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise _Invalid(f"{where}.{name}: must be a finite number")
    if not low <= value <= high:
        raise _Invalid(f"{where}.{name}: out of range ({low:g} to {high:g})")
    return float(value)


def _click(item: Any, where: str, buckets: tuple[WidthBucket, ...]) -> Click:
    if not isinstance(item, dict):
        raise _Invalid(f"{where}: must be an object")
    unknown = set(item) - CLICK_FIELDS
    if unknown:
        raise _Invalid(f"{where}: unknown field {sorted(unknown)[0][:20]!r}")
    x = _number(item, "x", where, 0, MAX_PAGE_PX)
    y = _number(item, "y", where, 0, MAX_PAGE_PX)
    width = _number(item, "w", where, 1, MAX_PAGE_PX)
    height = _number(item, "h", where, 1, MAX_PAGE_PX)
    viewport = _number(item, "v", where, 1, MAX_VIEWPORT_PX)
    dpr = _number(item, "r", where, 0.1, MAX_DPR)
    selector = item.get("s")
    offset_x = offset_y = None
    if selector is not None:
        if not isinstance(selector, str):
            raise _Invalid(f"{where}.s: the selector must be a string")
        if len(selector) > MAX_SELECTOR_LENGTH:
            raise _Invalid(f"{where}.s: the selector is too long (at most {MAX_SELECTOR_LENGTH})")
        if not SELECTOR_PATTERN.fullmatch(selector):
            raise _Invalid(f"{where}.s: the selector has characters outside A-Z a-z 0-9 _#.:()>-")
        offset_x = _number(item, "ox", where, 0, 1)
        offset_y = _number(item, "oy", where, 0, 1)
    elif "ox" in item or "oy" in item:
        raise _Invalid(f"{where}: ox and oy need a selector s")
    vw = round(viewport)
    return Click(
        x=round(x),
        y=round(y),
        doc_width=max(1, round(width)),
        doc_height=max(1, round(height)),
        viewport_width=max(1, vw),
        dpr=round(dpr, 3),
        selector=selector,
        offset_x=None if offset_x is None else round(offset_x, 4),
        offset_y=None if offset_y is None else round(offset_y, 4),
        bucket=bucket_for(vw, buckets).name,
    )


def check_clicks(buckets: tuple[WidthBucket, ...]) -> Step:
    def step(beacon: Beacon) -> Verdict | None:
        assert beacon.payload is not None
        items = beacon.payload.get("c")
        if not isinstance(items, list) or not items:
            return rejected("c: must be a non-empty list of clicks")
        if len(items) > MAX_CLICKS:
            return rejected(f"c: too many clicks in one batch (at most {MAX_CLICKS})")
        try:
            beacon.clicks = [_click(item, f"c[{i}]", buckets) for i, item in enumerate(items)]
        except _Invalid as exc:
            beacon.clicks = []
            return rejected(exc.reason)
        return None

    step.__name__ = "check_clicks"
    return step


def build_pipeline(
    lookup: Callable[[str], SiteEntry | None],
    buckets: tuple[WidthBucket, ...],
    within_budgets: Step,
) -> tuple[Step, ...]:
    """The steps in order; the budget comes last, as it charges the batch's clicks."""
    return (
        check_key,
        check_body_size,
        find_site(lookup),
        check_origin,
        honour_privacy,
        parse_body,
        check_page,
        check_clicks(buckets),
        within_budgets,
    )


def run(steps: Sequence[Step], beacon: Beacon) -> Verdict | None:
    for step in steps:
        verdict = step(beacon)
        if verdict is not None:
            return verdict
    return None
