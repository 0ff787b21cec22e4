"""The heatmap colour ramp: a 256-entry RGBA lookup table, blue → green → yellow → red.

Index 0 means "no clicks here" and is fully transparent (0, 0, 0, 0). From index 1 up the
colour runs through the stops below and the opacity rises with intensity: it fades in over
the first few levels (so a blob's edge is soft, not a hard ring) and then climbs from about
half to nearly opaque, so the coolest clicked area is still clearly visible over a page.
"""

from __future__ import annotations

import numpy as np

# (position in [0, 1], (r, g, b)) — blue, green, yellow, red.
STOPS: tuple[tuple[float, tuple[int, int, int]], ...] = (
    (0.00, (40, 70, 255)),
    (0.30, (0, 200, 110)),
    (0.50, (60, 225, 40)),
    (0.70, (255, 230, 0)),
    (0.85, (255, 130, 0)),
    (1.00, (230, 20, 10)),
)

FADE_IN = 0.08  # intensity over which alpha ramps up from 0 (the soft edge of a blob)
ALPHA_LOW = 0.5  # opacity at the fade-in's end, the coolest fully drawn colour
ALPHA_HIGH = 0.85  # opacity of the hottest colour; the page stays readable underneath


def build_lut() -> np.ndarray:
    """The (256, 4) uint8 RGBA table; row 0 is transparent."""
    t = np.linspace(0.0, 1.0, 256)
    positions = [p for p, _ in STOPS]
    rgb = np.stack(
        [np.interp(t, positions, [c[channel] for _, c in STOPS]) for channel in range(3)],
        axis=1,
    )
    fade = np.clip(t / FADE_IN, 0.0, 1.0)
    alpha = fade * (ALPHA_LOW + (ALPHA_HIGH - ALPHA_LOW) * t)
    lut = np.empty((256, 4), dtype=np.uint8)
    lut[:, :3] = np.rint(rgb)
    lut[:, 3] = np.rint(alpha * 255)
    lut[0] = 0
    return lut


LUT: np.ndarray = build_lut()
LUT.setflags(write=False)
