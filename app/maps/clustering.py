"""Clustering visit locations into map dots, in map space (pixels at the output size).

Why pixels: a fixed lat/lon grid merges all of dense Europe into a few cells and keeps a
sparse Pacific as specks; merging by distance on the finished image makes every dot
mean "everything within a few pixels of here", whatever the region or the image size.

Algorithm (all vectorised with numpy; no Python loop over points):

1. **Bin.** Points (already projected to pixel coordinates) are hashed into square cells
   of side ``radius / 2`` with one ``bincount`` over a dense grid; each occupied cell
   becomes a weighted point at the weighted centroid of its members (points in one
   cell are at most 0.71 × ``radius`` apart). This caps the work at the number of
   occupied cells, however many points there are.
2. **Greedy agglomeration.** The classic sequential rule is: take the heaviest remaining
   cell as a seed; it absorbs every remaining cell within its *claim radius*; repeat.
   The claim radius is ``max(radius, grow(seed weight))``: a heavy seed, drawn as a
   big dot, also absorbs the small neighbours its dot would cover anyway. The rule is
   computed in parallel rounds that give exactly the sequential result: candidate
   pairs come from the grid (neighbour cells up to the largest claim radius); in each
   round, an undecided cell looks at the stronger cells that could claim it and are
   not already taken by a seed: with none, it is a seed; if the strongest of them is a
   seed, it joins that seed (exactly what the sequential loop would do); otherwise it
   waits for the next round. Every round decides at least the strongest undecided
   cell; in practice a handful of rounds decide all. Strength is the weight, ties
   broken by position, so the result is deterministic (a test checks the equivalence
   with the sequential loop).
3. **Centroids.** A cluster sits at the weighted centroid of its members and weighs
   their sum (``sum(cluster weights) == sum(input weights)``).

Antimeridian rule: the map is cut at 180° (Robinson puts lon 179.9 at the right edge and
-179.9 at the left one), so clusters never span it. Points on either side stay separate
dots at their own edge — never one dot averaged into the middle of the map. Callers
wrap longitudes to [-180, 180) before projecting (``BaseMap.project`` does).

Approximate locations: GeoIP places IPs it cannot locate on a country centroid with a
huge accuracy radius (e.g. the US at 37.751, -97.822 ± 1000 km, ~30% of random IPs).
Those rows are not clustered here: :func:`approximate_mask` splits them off and the
renderer draws them apart — a faint dashed ring the size of the uncertainty, not a dot
sized by count — so they neither become one fake hot spot nor swallow the real
locations nearby. The legend calls them "approximate location".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

APPROXIMATE_KM = 500.0
"""Accuracy radius from which a location is only "somewhere in this country"."""


@dataclass(frozen=True, slots=True)
class Clusters:
    """Dots: weighted centroids in pixel coordinates, heaviest first."""

    x: np.ndarray  # float64
    y: np.ndarray  # float64
    weight: np.ndarray  # int64

    def __len__(self) -> int:
        return int(self.weight.shape[0])

    @classmethod
    def empty(cls) -> Clusters:
        return cls(np.empty(0), np.empty(0), np.empty(0, dtype=np.int64))


def approximate_mask(accuracy_km: np.ndarray, threshold_km: float = APPROXIMATE_KM) -> np.ndarray:
    """True where the accuracy radius is at least ``threshold_km`` (NaN/0: unknown, False)."""
    with np.errstate(invalid="ignore"):  # NaN compares False
        return np.asarray(accuracy_km, dtype=np.float64) >= threshold_km


def cluster(
    x: np.ndarray,
    y: np.ndarray,
    weight: np.ndarray,
    radius: float,
    grow: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Clusters:
    """Merge weighted points closer than ``radius`` pixels (see the module docstring).

    ``grow`` maps cell weights to a larger claim radius for heavy seeds (e.g. the radius
    of the dot that will be drawn); without it every seed claims ``radius``.
    """
    if radius <= 0:
        raise ValueError("radius must be positive")
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = np.asarray(weight, dtype=np.int64)
    if w.size == 0:
        return Clusters.empty()

    # 1. Bin into cells of radius/2 on a dense grid (with a margin for neighbour lookups).
    # The grid is anchored at multiples of ``cell`` (not at the data), so cells do not
    # move with the input.
    cell = radius / 2.0
    fx = x * (1.0 / cell)
    fy = y * (1.0 / cell)
    lo_x, hi_x, lo_y, hi_y = fx.min(), fx.max(), fy.min(), fy.max()
    if not (np.isfinite(lo_x + hi_x + lo_y + hi_y) and w.min() >= 0):  # rare: clean up
        keep = (w > 0) & np.isfinite(fx) & np.isfinite(fy)
        if not keep.any():
            return Clusters.empty()
        x, y, w, fx, fy = x[keep], y[keep], w[keep], fx[keep], fy[keep]
        lo_x, hi_x, lo_y, hi_y = fx.min(), fx.max(), fy.min(), fy.max()
    origin_x, origin_y = np.floor(lo_x), np.floor(lo_y)
    gx = (fx - origin_x).astype(np.int64)  # >= 0: truncation is floor
    gy = (fy - origin_y).astype(np.int64)
    nx = int(hi_x - origin_x) + 1
    ny = int(hi_y - origin_y) + 1
    key = gy * nx + gx
    wf = w.astype(np.float64)
    cell_w = np.bincount(key, weights=wf, minlength=nx * ny)
    occupied = np.flatnonzero(cell_w)  # zero-weight points occupy nothing
    if occupied.size == 0:
        return Clusters.empty()
    cw = cell_w[occupied]
    cx = np.bincount(key, weights=wf * x, minlength=nx * ny)[occupied] / cw
    cy = np.bincount(key, weights=wf * y, minlength=nx * ny)[occupied] / cw
    cweight = cw.round().astype(np.int64)  # exact: integer sums below 2**53
    n = occupied.size
    if n == 1:
        return Clusters(cx, cy, cweight)

    claim = np.full(n, float(radius))
    if grow is not None:
        claim = np.maximum(claim, np.asarray(grow(cweight), dtype=np.float64))
    reach = int(np.ceil(claim.max() / cell))

    # Candidate pairs (i, j) with j able to claim i, from neighbour cells: the cells
    # sharing one claim radius look up, in one broadcast, every cell offset whose
    # nearest point is within that radius.
    ox, oy = occupied % nx, occupied // nx
    pad = reach
    stride = nx + 2 * pad
    dense = np.full((ny + 2 * pad) * stride, -1, dtype=np.int64)
    at = (oy + pad) * stride + ox + pad
    dense[at] = np.arange(n)
    span = np.arange(-reach, reach + 1)
    grid_x, grid_y = np.meshgrid(span, span)
    odx, ody = grid_x.ravel(), grid_y.ravel()
    centre = (odx == 0) & (ody == 0)
    odx, ody = odx[~centre], ody[~centre]
    gap = cell * np.hypot(np.maximum(np.abs(odx) - 1, 0), np.maximum(np.abs(ody) - 1, 0))
    shift = ody * stride + odx
    src: list[np.ndarray] = []
    dst: list[np.ndarray] = []
    if n * shift.size <= 100_000:  # small: one broadcast, every offset for every cell
        batches = [(np.arange(n), shift)]
    else:  # large: cells grouped by claim radius, each with only the offsets it reaches
        claims, group = np.unique(claim, return_inverse=True)
        batches = [(np.flatnonzero(group == g), shift[gap <= c]) for g, c in enumerate(claims)]
    for j, offsets in batches:
        i = dense[at[j][:, None] + offsets[None, :]]  # (cells, offsets)
        jj = np.broadcast_to(j[:, None], i.shape)
        ok = i >= 0
        i, jj = i[ok], jj[ok]
        d2 = (cx[i] - cx[jj]) ** 2 + (cy[i] - cy[jj]) ** 2
        near = d2 <= claim[jj] ** 2
        src.append(i[near])
        dst.append(jj[near])
    pi = np.concatenate(src)
    pj = np.concatenate(dst)

    # Strength: heavier first, then top-to-bottom, left-to-right (deterministic).
    order = np.lexsort((cx, cy, -cweight))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    # Only a stronger cell can claim a weaker one (the weaker is decided first).
    stronger = rank[pj] < rank[pi]
    pi, pj = pi[stronger], pj[stronger]

    # 2. Parallel rounds of the sequential greedy rule. A cell is decided once every
    # stronger cell that could claim it is: its strongest claimer that is not taken
    # by another seed (a seed or undecided) is then its seed; with none, it is a seed.
    label = np.full(n, -1, dtype=np.int64)
    undecided = np.ones(n, dtype=bool)
    is_seed = np.zeros(n, dtype=bool)
    big = n  # larger than any rank
    while undecided.any():
        best = np.full(n, big, dtype=np.int64)
        np.minimum.at(best, pi, rank[pj])
        best[~undecided] = -1
        new_seed = best == big
        is_seed |= new_seed
        label[new_seed] = np.flatnonzero(new_seed)
        found = best >= 0
        found &= ~new_seed
        claimer = order[best[found]]
        taken = np.flatnonzero(found)[is_seed[claimer]]
        label[taken] = order[best[taken]]
        undecided[new_seed] = False
        undecided[taken] = False
        # Drop pairs that no longer matter: decided cells, claimers taken by a seed.
        still = undecided[pi] & (undecided[pj] | is_seed[pj])
        pi, pj = pi[still], pj[still]

    # 3. Weighted centroids of each cluster.
    roots, inverse = np.unique(label, return_inverse=True)
    m = roots.size
    tw = np.bincount(inverse, weights=cw, minlength=m)
    out_x = np.bincount(inverse, weights=cw * cx, minlength=m) / tw
    out_y = np.bincount(inverse, weights=cw * cy, minlength=m) / tw
    out_w = np.bincount(inverse, weights=cweight, minlength=m).round().astype(np.int64)
    heavy = np.lexsort((out_x, out_y, -out_w))
    return Clusters(out_x[heavy], out_y[heavy], out_w[heavy])
