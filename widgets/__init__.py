"""The embeddable JavaScript (shipped as package data).

Snippets name ``/w.js``: a small loader, cached for an hour, since pasted snippets are
never updated. It loads the widget itself from ``/w/<version>.js``, whose bytes never
change for that version (cached for a year).
"""

import hashlib
from functools import cache
from importlib.resources import files


def widget_source() -> bytes:
    return (files(__name__) / "w.js").read_bytes()


@cache
def widget_version() -> str:
    """A digest of the widget: the name of its never-changing URL."""
    return hashlib.sha256(widget_source()).hexdigest()[:12]


@cache
def loader_source() -> bytes:
    template = (files(__name__) / "loader.js").read_bytes()
    return template.replace(b"__VERSION__", widget_version().encode())
