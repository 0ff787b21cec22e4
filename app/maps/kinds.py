"""What a site's stored images are called: ``(kind, span, variant)`` in ``rendered_images``.

Its own module because the counter (``app.ingest.images``) reads the stored thumbnail
by this key and must not import the maps service (nor, through it, anything heavier)
to learn it.
"""

from __future__ import annotations

THUMBNAIL = "thumbnail"
MAP = "map"
THUMBNAIL_KEY = (THUMBNAIL, "all", "1x")  # the counter's image: owner's style, all-time
