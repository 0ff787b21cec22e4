"""8-bit palette PNGs written from separately compressed pieces of scanlines.

Each :class:`Piece` is raw deflate data that refers to nothing before it, so pieces
made once per process (a base map's strips, a legend band) and pieces compressed per
image join into one valid zlib stream; the Adler-32 of the whole is combined from the
pieces'. :class:`Palette` maps RGBA pixels onto a fixed palette.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

PNG_COMPRESS_LEVEL = 1  # per image (see deflate); pieces made once: level 9
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ZLIB_HEADER = b"\x78\x01"  # deflate, 32 KiB window, "fastest" (check bits: 0x7801 % 31 == 0)
_FINAL_EMPTY_BLOCK = b"\x03\x00"  # zlib.compressobj(1, zlib.DEFLATED, -15).flush()


@dataclass(frozen=True, slots=True)
class Piece:
    """Raw deflate data of a run of PNG scanlines, compressed on its own (no reference
    to earlier data) and ending byte-aligned, not final: pieces concatenate into one
    valid zlib stream in any combination."""

    data: bytes
    adler: int  # Adler-32 of the uncompressed bytes
    size: int  # uncompressed bytes


def deflate(raw: np.ndarray) -> Piece:
    """Scanlines (a C-contiguous uint8 array) compressed as one piece, fast: zlib level
    1 with the run-length strategy. On these images (large flat areas, short
    anti-aliased ramps) it is both faster and ~25 % smaller than the default strategy
    at level 1 (figures in bench/README.md)."""
    data = raw.data
    z = zlib.compressobj(PNG_COMPRESS_LEVEL, zlib.DEFLATED, -15, 9, zlib.Z_RLE)
    return Piece(z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH), zlib.adler32(data), raw.nbytes)


def deflate_small(raw: np.ndarray) -> Piece:
    """The smallest of a few level-9 settings: for pieces compressed once and reused."""
    data = raw.data
    tries = []
    for strategy in (zlib.Z_DEFAULT_STRATEGY, zlib.Z_RLE, zlib.Z_FILTERED):
        z = zlib.compressobj(9, zlib.DEFLATED, -15, 9, strategy)
        tries.append(z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH))
    return Piece(min(tries, key=len), zlib.adler32(data), raw.nbytes)


def adler32_combine(first: int, second: int, second_size: int) -> int:
    """Adler-32 of two byte strings joined, from theirs (zlib's adler32_combine)."""
    mod = 65521
    rem = second_size % mod
    s1 = first & 0xFFFF
    s2 = (rem * s1 + (first >> 16) + (second >> 16) + mod - rem) % mod
    s1 = (s1 + (second & 0xFFFF) + mod - 1) % mod
    return s1 | (s2 << 16)


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


class Palette:
    """A fixed palette (RGBA, up to 256 entries) with a memo of the nearest entry of
    every colour seen (premultiplied RGBA distance: fully transparent pixels match a
    transparent entry whatever their colour)."""

    MEMO_MAX = 1 << 16

    def __init__(self, rgba: np.ndarray) -> None:
        rgba = np.asarray(rgba, dtype=np.uint8).reshape(-1, 4)
        self.plte = rgba[:, :3].tobytes()
        alpha = rgba[:, 3].tobytes()
        self.trns = alpha.rstrip(b"\xff")  # entries past the last translucent one: opaque
        self._points = self._premultiplied(rgba)
        self._memo = (np.empty(0, dtype="<u4"), np.empty(0, dtype=np.uint8))

    @staticmethod
    def _premultiplied(rgba: np.ndarray) -> np.ndarray:
        c = rgba.astype(np.float32)
        c[:, :3] *= c[:, 3:] / 255.0
        return c

    def lookup(self, words: np.ndarray) -> np.ndarray:
        """Palette indices (uint8) of RGBA pixels given as :func:`pixel_words`."""
        keys, values = self._memo
        pos = np.searchsorted(keys, words)
        np.minimum(pos, keys.size - 1, out=pos)
        if keys.size and (keys[pos] == words).all():
            return values[pos]
        new = np.unique(words if keys.size == 0 else words[keys[pos] != words])
        rgba = new.view(np.uint8).reshape(-1, 4)
        d = ((self._premultiplied(rgba)[:, None, :] - self._points[None]) ** 2).sum(axis=2)
        found = d.argmin(axis=1).astype(np.uint8)
        if keys.size + new.size > self.MEMO_MAX:
            keys, values = keys[:0], values[:0]
        keys = np.concatenate([keys, new])
        values = np.concatenate([values, found])
        order = np.argsort(keys, kind="stable")
        keys, values = keys[order], values[order]
        self._memo = (keys, values)  # one assignment: readers see old or new, whole
        pos = np.minimum(np.searchsorted(keys, words), keys.size - 1)
        return values[pos]


def indexed_png(width: int, height: int, palette: Palette, pieces: list[Piece]) -> bytes:
    """An 8-bit palette PNG from the compressed pieces of its scanlines (each scanline
    filter byte 0, "none", as Pillow writes palette images)."""
    adler = 1  # of nothing
    for piece in pieces:
        adler = adler32_combine(adler, piece.adler, piece.size)
    idat = b"".join(
        [_ZLIB_HEADER, *(p.data for p in pieces), _FINAL_EMPTY_BLOCK, adler.to_bytes(4, "big")]
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    return b"".join(
        [
            _PNG_SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"PLTE", palette.plte),
            *([_chunk(b"tRNS", palette.trns)] if palette.trns else []),
            _chunk(b"IDAT", idat),
            _chunk(b"IEND", b""),
        ]
    )


def pixel_words(pixels: np.ndarray) -> np.ndarray:
    """RGBA pixels (contiguous, any shape ending in 4) as one little-endian 32-bit word
    each (red in the low byte), a view: 1-D gathers and scatters are the fast path."""
    return np.ascontiguousarray(pixels).reshape(-1).view("<u4")
