"""Clustering in map space: merge what is near, keep what is far, never lose a visit."""

from __future__ import annotations

import numpy as np
import pytest

from app.maps.renderer.clustering import APPROXIMATE_KM, Clusters, approximate_mask, cluster
from app.maps.renderer.render import world_base


def _xy(*points: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    arr = np.array(points, dtype=np.float64)
    return arr[:, 0], arr[:, 1]


def test_nearby_points_merge_into_one_weighted_centroid() -> None:
    x, y = _xy((100.0, 100.0), (102.0, 101.0))
    c = cluster(x, y, np.array([3, 1]), radius=6.0)
    assert len(c) == 1
    assert c.weight.tolist() == [4]
    assert c.x[0] == pytest.approx(100.5)  # (3*100 + 1*102) / 4
    assert c.y[0] == pytest.approx(100.25)


def test_far_points_stay_apart() -> None:
    x, y = _xy((100.0, 100.0), (200.0, 100.0), (100.0, 150.0))
    c = cluster(x, y, np.array([5, 7, 9]), radius=6.0)
    assert len(c) == 3
    assert c.weight.tolist() == [9, 7, 5]  # heaviest first
    assert sorted(zip(c.x.tolist(), c.y.tolist(), strict=True)) == [
        (100.0, 100.0),
        (100.0, 150.0),
        (200.0, 100.0),
    ]


def test_counts_add_up() -> None:
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.normal(300, 20, 5000), rng.uniform(0, 1200, 5000)])
    y = np.concatenate([rng.normal(200, 10, 5000), rng.uniform(0, 550, 5000)])
    w = rng.integers(1, 1000, x.size)
    c = cluster(x, y, w, radius=5.0, grow=lambda v: 2.0 + np.log10(v) * 2)
    assert c.weight.sum() == w.sum()
    assert 1 < len(c) < x.size
    assert (c.weight > 0).all()
    assert np.all(np.diff(c.weight) <= 0)


def test_heaviest_point_claims_its_neighbours_without_chaining() -> None:
    # A greedy seed absorbs what is within its radius, not what is near a neighbour:
    # 100 at 0, 1 at 4 (joins), 1 at 8 (too far from the seed: its own dot).
    x, y = _xy((0.0, 0.0), (4.0, 0.0), (8.0, 0.0))
    c = cluster(x, y, np.array([100, 1, 1]), radius=5.0)
    assert c.weight.tolist() == [101, 1]
    # A long line of equally spaced points is not one big chain.
    line_x = np.arange(0.0, 200.0, 4.0)
    c = cluster(line_x, np.zeros_like(line_x), np.ones(line_x.size, dtype=np.int64), 5.0)
    assert len(c) >= line_x.size // 3
    assert c.weight.max() <= 3


def test_grow_lets_heavy_seeds_absorb_what_their_dot_covers() -> None:
    x, y = _xy((0.0, 0.0), (10.0, 0.0))
    w = np.array([10_000, 3])
    assert len(cluster(x, y, w, radius=5.0)) == 2
    big = cluster(x, y, w, radius=5.0, grow=lambda v: np.where(v >= 1000, 12.0, 5.0))
    assert big.weight.tolist() == [10_003]


def _grow(v: np.ndarray) -> np.ndarray:
    return 3.0 + 3.0 * np.log10(v)


def _sequential_greedy(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, r: float, grow: bool
) -> Clusters:
    """Reference: the textbook loop the vectorised version must reproduce."""
    order = np.lexsort((x, y, -w))
    label = np.full(x.size, -1)
    claim = np.maximum(r, _grow(w)) if grow else np.full(x.size, r)
    for s in order:
        if label[s] >= 0:
            continue
        free = (label < 0) & (np.hypot(x - x[s], y - y[s]) <= claim[s])
        label[free] = s
    roots = np.unique(label)
    out_w = np.array([w[label == k].sum() for k in roots])
    out_x = np.array([(w * x)[label == k].sum() for k in roots]) / out_w
    out_y = np.array([(w * y)[label == k].sum() for k in roots]) / out_w
    heavy = np.lexsort((out_x, out_y, -out_w))
    return Clusters(out_x[heavy], out_y[heavy], out_w[heavy])


@pytest.mark.parametrize(("seed", "grow"), [(1, False), (2, False), (3, True), (4, True)])
def test_parallel_rounds_equal_the_sequential_greedy_rule(seed: int, grow: bool) -> None:
    # Points on distinct cells of the binning grid (cell = radius / 2), so the only
    # merging is the greedy one.
    rng = np.random.default_rng(seed)
    radius = 6.0
    cells = rng.choice(60 * 40, size=700, replace=False)
    x = (cells % 60 + 0.5) * radius / 2
    y = (cells // 60 + 0.5) * radius / 2
    w = rng.permutation(np.arange(1, cells.size + 1))  # distinct weights: no ties
    got = cluster(x, y, w, radius, _grow if grow else None)
    want = _sequential_greedy(x, y, w, radius, grow)
    assert got.weight.tolist() == want.weight.tolist()
    np.testing.assert_allclose(got.x, want.x)
    np.testing.assert_allclose(got.y, want.y)


def test_result_does_not_depend_on_input_order() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.uniform(0, 300, 2000), rng.uniform(0, 150, 2000)
    w = rng.integers(1, 50, 2000)
    a = cluster(x, y, w, 4.0)
    p = rng.permutation(2000)
    b = cluster(x[p], y[p], w[p], 4.0)
    assert a.weight.tolist() == b.weight.tolist()
    np.testing.assert_allclose(a.x, b.x)


def test_empty_input_and_a_single_point() -> None:
    empty = cluster(np.empty(0), np.empty(0), np.empty(0, dtype=np.int64), 5.0)
    assert len(empty) == 0
    one = cluster(np.array([12.5]), np.array([7.25]), np.array([42]), 5.0)
    assert (one.x.tolist(), one.y.tolist(), one.weight.tolist()) == ([12.5], [7.25], [42])


def test_zero_weights_and_non_finite_points_are_ignored() -> None:
    x = np.array([1.0, np.nan, 50.0, 80.0])
    y = np.array([1.0, 2.0, np.inf, 80.0])
    c = cluster(x, y, np.array([2, 5, 5, 0]), 5.0)
    assert c.weight.tolist() == [2]
    assert len(cluster(np.array([1.0]), np.array([1.0]), np.array([0]), 5.0)) == 0
    with pytest.raises(ValueError, match="radius"):
        cluster(x, y, np.ones(4, dtype=np.int64), 0.0)


def test_antimeridian_points_stay_at_their_own_edges() -> None:
    """Rule: the map is cut at 180°; lon 179.9 and -179.9 are opposite edges of the
    Robinson map and are never merged (no dot in the middle of the map)."""
    base = world_base(1)
    lat = np.array([-17.0, -17.0, -17.0])
    lon = np.array([179.9, -179.9, 180.0])  # 180 wraps to -180: the left edge
    x, y = base.project(lat, lon)
    c = cluster(x, y, np.array([10, 10, 5]), radius=5.0)
    assert len(c) == 2
    assert c.weight.sum() == 25
    left, _, right, _ = base.box
    assert sorted(c.x.tolist())[0] < left + 0.1 * (right - left)
    assert sorted(c.x.tolist())[1] > right - 0.1 * (right - left)
    assert c.weight[np.argmin(c.x)] == 15  # -179.9 and 180 (= -180) together


def test_approximate_mask() -> None:
    acc = np.array([np.nan, 0.0, 5.0, 200.0, APPROXIMATE_KM, 1000.0])
    assert approximate_mask(acc).tolist() == [False, False, False, False, True, True]


def test_binning_from_degrees_equals_projecting_then_binning() -> None:
    """BaseMap.bin (projection table scaled to cells, one pass) gives the cells of
    project + bin_points, and so the same clusters."""
    from app.maps.renderer.clustering import bin_points, merge
    from app.maps.renderer.render import ThumbnailStyle, thumbnail_base, thumbnail_dots

    rng = np.random.default_rng(11)
    for base in (world_base(1), thumbnail_base(ThumbnailStyle())):
        n = 60_000  # enough for the whole-image grid
        lat = np.round(rng.uniform(-60, 85, n), 2)
        lon = np.round(rng.uniform(-180, 179.99, n), 2)
        w = rng.integers(0, 50, n).astype(np.float64)  # zeros: left out
        cell = thumbnail_dots(base.width).merge_px / 2 if base.width < 400 else 2.5
        fused = base.bin(lat, lon, w, cell)
        plain = bin_points(*base.project(lat, lon), w.astype(np.int64), cell)
        a = np.lexsort((fused.gx, fused.gy))
        b = np.lexsort((plain.gx, plain.gy))
        assert np.array_equal(fused.weight[a], plain.weight[b])
        assert np.allclose(fused.x[a], plain.x[b], atol=1e-9)
        assert np.allclose(fused.y[a], plain.y[b], atol=1e-9)
        one, two = merge(fused, 2 * cell, None), merge(plain, 2 * cell, None)
        assert one.weight.tolist() == two.weight.tolist()
        assert np.allclose(one.x, two.x) and np.allclose(one.y, two.y)
        # Out of range or few points: the general way, same cells.
        few = base.bin(lat[:50], lon[:50] + 360.0, w[:50], cell)
        assert few.weight.sum() == w[:50].sum()
