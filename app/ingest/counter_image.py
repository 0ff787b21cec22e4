"""The counter image: the site's total unique visitors, drawn with Pillow.

Rendered images are cached per total, so a busy counter renders once per new visitor.
"""

from __future__ import annotations

import hashlib
import io
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 160, 40
BACKGROUND = (17, 52, 84, 255)
ACCENT = (74, 222, 128, 255)
TEXT = (255, 255, 255, 255)
MUTED = (186, 206, 226, 255)


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")  # optimize: 4× the time for 3% fewer bytes
    return buffer.getvalue()


def format_count(total: int) -> str:
    return f"{total:,}".replace(",", "\u202f")


@lru_cache(maxsize=4096)
def render_total(total: int) -> bytes:
    image = Image.new("RGBA", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.ellipse((10, 14, 22, 26), fill=ACCENT)
    draw.text((30, 4), "visitors", font=_font(11), fill=MUTED)
    draw.text((30, 16), format_count(total), font=_font(18), fill=TEXT)
    return _png(image)


def _neutral() -> bytes:
    return _png(Image.new("RGBA", (WIDTH, HEIGHT), (0, 0, 0, 0)))


# Unknown keys get a transparent image of the same size: nothing shows, nothing breaks.
NEUTRAL_PNG = _neutral()


def etag_for(png: bytes) -> str:
    return '"' + hashlib.blake2b(png, digest_size=12).hexdigest() + '"'
