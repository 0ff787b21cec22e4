"""The embeddable JavaScript served at /w.js (shipped as package data)."""

from importlib.resources import files


def widget_source() -> bytes:
    return (files(__name__) / "w.js").read_bytes()
