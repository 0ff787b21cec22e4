"""The embeddable JavaScript served at /w.js (shipped as package data)."""

import hashlib
from functools import cache
from importlib.resources import files


def widget_source() -> bytes:
    return (files(__name__) / "w.js").read_bytes()


@cache
def widget_version() -> str:
    """The ``v`` of the snippet's ``/w.js?v=…``: a digest of the script, so the URL a
    snippet names never changes its bytes while this release serves it."""
    return hashlib.sha256(widget_source()).hexdigest()[:12]
