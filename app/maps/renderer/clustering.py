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
from functools import cache

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


@dataclass(frozen=True, slots=True)
class Cells:
    """Occupied grid cells (side ``radius / 2``) with their members summed: integer cell
    coordinates (any common origin), weighted centroids in pixels, total weights."""

    gx: np.ndarray  # intp
    gy: np.ndarray  # intp
    x: np.ndarray  # float64
    y: np.ndarray  # float64
    weight: np.ndarray  # float64 sums of integer weights (exact below 2**53)

    @classmethod
    def empty(cls) -> Cells:
        e = np.empty(0)
        return cls(np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp), e, e, e)


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
    return merge(bin_points(x, y, weight, radius / 2.0), radius, grow)


def bin_points(x: np.ndarray, y: np.ndarray, weight: np.ndarray, cell: float) -> Cells:
    """Step 1: sum points into square cells of side ``cell`` on a dense grid anchored at
    multiples of ``cell`` (not at the data, so cells do not move with the input).
    Points with a weight of 0 or less or a non-finite coordinate are left out.
    (``BaseMap.bin`` does the same from latitudes and longitudes in one pass.)"""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = np.asarray(weight, dtype=np.int64)
    if w.size == 0:
        return Cells.empty()
    fx = x * (1.0 / cell)
    fy = y * (1.0 / cell)
    lo_x, hi_x, lo_y, hi_y = fx.min(), fx.max(), fy.min(), fy.max()
    if not (np.isfinite(lo_x + hi_x + lo_y + hi_y) and w.min() >= 0):  # rare: clean up
        keep = (w > 0) & np.isfinite(fx) & np.isfinite(fy)
        if not keep.any():
            return Cells.empty()
        x, y, w, fx, fy = x[keep], y[keep], w[keep], fx[keep], fy[keep]
        lo_x, hi_x, lo_y, hi_y = fx.min(), fx.max(), fy.min(), fy.max()
    origin_x, origin_y = np.floor(lo_x), np.floor(lo_y)
    gx = (fx - origin_x).astype(np.intp)  # >= 0: truncation is floor
    gy = (fy - origin_y).astype(np.intp)
    nx = int(hi_x - origin_x) + 1
    ny = int(hi_y - origin_y) + 1
    key = gy * nx + gx
    wf = w.astype(np.float64)
    return cell_sums(key, nx * ny, nx, wf, wf * x, wf * y)


def cell_sums(
    key: np.ndarray,
    cells: int,
    nx: int,
    w: np.ndarray,
    wx: np.ndarray,
    wy: np.ndarray,
    unit: float = 1.0,
) -> Cells:
    """Cells from each point's cell ``key`` (``gy * nx + gx``, below ``cells``) and its
    weight, weight × x and weight × y (float64; x and y in pixels / ``unit``): three
    ``bincount``s."""
    total = np.bincount(key, weights=w, minlength=cells)
    occupied = np.flatnonzero(total)  # zero-weight points occupy nothing
    if occupied.size == 0:
        return Cells.empty()
    cw = total[occupied]
    cx = np.bincount(key, weights=wx, minlength=cells)[occupied] / cw
    cy = np.bincount(key, weights=wy, minlength=cells)[occupied] / cw
    if unit != 1.0:
        cx *= unit
        cy *= unit
    gy, gx = np.divmod(occupied, nx)
    return Cells(gx, gy, cx, cy, cw)


@cache
def _offsets(reach: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cell offsets (dx, dy) within ``reach`` cells, the centre left out, with the gap
    (in cells) between the nearest points of the two cells."""
    span = np.arange(-reach, reach + 1)
    grid_x, grid_y = np.meshgrid(span, span)
    odx, ody = grid_x.ravel(), grid_y.ravel()
    centre = (odx == 0) & (ody == 0)
    odx, ody = odx[~centre], ody[~centre]
    gap = np.hypot(np.maximum(np.abs(odx) - 1, 0), np.maximum(np.abs(ody) - 1, 0))
    return odx, ody, gap


def merge(cells: Cells, radius: float, grow: Callable[[np.ndarray], np.ndarray] | None) -> Clusters:
    """Steps 2 and 3: the greedy rule over the cells of :func:`bin_points` (side
    ``radius / 2``), then the weighted centroids of the clusters."""
    n = cells.weight.size
    cweight = cells.weight.round().astype(np.int64)  # exact: integer sums below 2**53
    if n <= 1:
        return Clusters(cells.x, cells.y, cweight)
    claim = np.full(n, float(radius))
    if grow is not None:
        claim = np.maximum(claim, np.asarray(grow(cweight), dtype=np.float64))
    # Strength: heavier first, then top-to-bottom, left-to-right (deterministic). Only
    # a stronger cell can claim a weaker one (the weaker is decided first).
    order = np.lexsort((cells.x, cells.y, -cweight))
    rank = np.empty(n, dtype=np.intp)
    rank[order] = np.arange(n)
    pi, pj, rj = _claims(cells, radius / 2.0, claim, rank)
    label, is_seed = _greedy(n, order, pi, pj, rj)
    return _centroids(cells, cweight, label, is_seed)


def _claims(
    cells: Cells, cell: float, claim: np.ndarray, rank: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate pairs (i, j) with j able to claim i, and j's rank, from neighbour cells:
    the cells sharing one claim radius look up, in one broadcast, every cell offset whose
    nearest point is within that radius."""
    n = cells.weight.size
    cx, cy = cells.x, cells.y
    reach = int(np.ceil(claim.max() / cell))
    ox = cells.gx - cells.gx.min()
    oy = cells.gy - cells.gy.min()
    pad = reach
    stride = int(ox.max()) + 1 + 2 * pad
    dense = np.full((int(oy.max()) + 1 + 2 * pad) * stride, -1, dtype=np.intp)
    at = (oy + pad) * stride + ox + pad
    dense[at] = np.arange(n)
    odx, ody, gap = _offsets(reach)
    shift = ody * stride + odx
    useful = gap * cell <= claim.max()
    if n * int(useful.sum()) <= 500_000:
        # Small: one broadcast over half the offsets (each neighbour pair once), the
        # stronger cell of a pair being the one that may claim the other.
        half = useful & ((ody > 0) | ((ody == 0) & (odx > 0)))
        found = dense[at[:, None] + shift[half][None, :]]  # (cells, offsets)
        a, col = np.nonzero(found >= 0)
        b = found[a, col]
        a_first = rank[a] < rank[b]
        pj = np.where(a_first, a, b)
        pi = np.where(a_first, b, a)
        near = (cx[a] - cx[b]) ** 2 + (cy[a] - cy[b]) ** 2 <= claim[pj] ** 2
        pi, pj = pi[near], pj[near]
        return pi, pj, rank[pj]
    # Large: cells grouped by claim radius, each with only the offsets it reaches.
    claims, group = np.unique(claim, return_inverse=True)
    src: list[np.ndarray] = []
    dst: list[np.ndarray] = []
    for g, c in enumerate(claims):
        j = np.flatnonzero(group == g)
        i = dense[at[j][:, None] + shift[gap * cell <= c][None, :]]  # (cells, offsets)
        ok = i >= 0
        jj = np.broadcast_to(j[:, None], i.shape)[ok]
        i = i[ok]
        near = (cx[i] - cx[jj]) ** 2 + (cy[i] - cy[jj]) ** 2 <= claim[jj] ** 2
        src.append(i[near])
        dst.append(jj[near])
    pi = np.concatenate(src)
    pj = np.concatenate(dst)
    rj = rank[pj]
    stronger = rj < rank[pi]
    return pi[stronger], pj[stronger], rj[stronger]


def _greedy(
    n: int, order: np.ndarray, pi: np.ndarray, pj: np.ndarray, rj: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's seed (``label``) and which cells are seeds, by parallel rounds of the
    sequential greedy rule. A cell is decided once every stronger cell that could claim
    it is: its strongest claimer that is not taken by another seed (a seed or undecided)
    is then its seed; with none, it is a seed."""
    label = np.full(n, -1, dtype=np.intp)
    undecided = np.ones(n, dtype=bool)
    is_seed = np.zeros(n, dtype=bool)
    big = n  # larger than any rank
    while True:
        best = np.full(n, big, dtype=np.intp)
        np.minimum.at(best, pi, rj)
        best[~undecided] = -1
        new_seed = best == big
        is_seed |= new_seed
        label[new_seed] = np.flatnonzero(new_seed)
        undecided &= ~new_seed
        found = np.flatnonzero(undecided)
        claimer = order[best[found]]
        taken = found[is_seed[claimer]]
        label[taken] = claimer[is_seed[claimer]]
        undecided[taken] = False
        if taken.size == found.size:
            return label, is_seed
        # Drop pairs that no longer matter: decided cells, claimers taken by a seed.
        still = undecided[pi] & (undecided[pj] | is_seed[pj])
        pi, pj, rj = pi[still], pj[still], rj[still]


def _centroids(
    cells: Cells, cweight: np.ndarray, label: np.ndarray, is_seed: np.ndarray
) -> Clusters:
    """Weighted centroids of each cluster (clusters numbered by their seed's index),
    heaviest first."""
    cx, cy, cw = cells.x, cells.y, cells.weight
    inverse = (np.cumsum(is_seed) - 1)[label]
    m = int(is_seed.sum())
    tw = np.bincount(inverse, weights=cw, minlength=m)
    out_x = np.bincount(inverse, weights=cw * cx, minlength=m) / tw
    out_y = np.bincount(inverse, weights=cw * cy, minlength=m) / tw
    out_w = np.bincount(inverse, weights=cweight, minlength=m).round().astype(np.int64)
    heavy = np.lexsort((out_x, out_y, -out_w))
    return Clusters(out_x[heavy], out_y[heavy], out_w[heavy])
