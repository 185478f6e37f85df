"""The C kernel of the DVH sampler against its NumPy code and against hand-computed values.

The analytic DVH tests (test_dvh, test_dvh_accuracy, test_analytic, test_dvh_properties,
test_dvh_extremes, test_interpolation, test_nelms) run with both; here each kernel
function is compared with the NumPy function it replaces on inputs where both are known,
and the kernel's checks of its inputs are exercised.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np
import pytest

from rtcheck.dvh import kernel
from rtcheck.dvh.core import (
    DoseGrid,
    _covered_cells,
    _edge_cells,
    _sample_cells,
    _SpreadHistogram,
    lattice_cells,
)
from rtcheck.dvh.interpolation import SignedDistance, inside_raster
from tests import conftest

needs_kernel = pytest.mark.usefixtures("c_kernel")


def test_the_kernel_is_built_where_a_c_compiler_exists(c_kernel: None) -> None:
    assert kernel.built()  # (RTCHECK_DVH_KERNEL=numpy may leave it unused)


@pytest.mark.parametrize(
    ("ci", "compiler", "outcome"),
    [
        ("true", None, pytest.fail.Exception),
        ("", "/usr/bin/cc", pytest.fail.Exception),
        ("", None, pytest.skip.Exception),
    ],
)
def test_a_missing_kernel_fails_under_ci_or_beside_a_compiler_and_skips_only_without_one(
    monkeypatch: pytest.MonkeyPatch, ci: str, compiler: str | None, outcome: type
) -> None:
    monkeypatch.setattr(kernel, "_BUILT", None)
    monkeypatch.setenv("CI", ci)
    monkeypatch.setattr(conftest, "c_compiler", lambda: compiler)
    with pytest.raises(outcome, match="not built"):
        conftest.require_c_kernel()


def test_using_switches_and_restores() -> None:
    before = kernel.active()
    with kernel.using(False):
        assert kernel.active() is None
        assert kernel.name() == "NumPy"
    assert kernel.active() is before
    if kernel.built():
        with kernel.using(True):
            assert kernel.name() == "C"
    else:
        with pytest.raises(RuntimeError, match="pip install"), kernel.using(True):
            pass


def _polygon_edges(points: np.ndarray) -> np.ndarray:
    return np.column_stack([points, np.roll(points, -1, axis=0)])


def _random_outlines(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    outlines = []
    for _ in range(n):
        k = int(rng.integers(3, 40))
        angles = np.sort(rng.uniform(0, 2 * math.pi, k))
        radii = rng.uniform(2.0, 12.0, k)
        centre = rng.uniform(-5, 5, 2)
        pts = centre + np.column_stack([radii * np.cos(angles), radii * np.sin(angles)])
        outlines.append(_polygon_edges(pts))
    return outlines


@needs_kernel
def test_a_rectangle_covers_exactly_its_area_with_its_centroid() -> None:
    # The rectangle x 0.2..3.5, y 0..3 on a 1 mm lattice whose cells end at whole mm:
    # coverage is exact along x, and along y (two scan lines per row) whenever the
    # horizontal edges lie on cell boundaries. Area 9.9 mm², centroid (1.85, 1.5).
    xs = np.arange(-2.0, 6.0) + 0.5
    ys = np.arange(-2.0, 6.0) + 0.5
    points = np.array([[0.2, 0.0], [3.5, 0.0], [3.5, 3.0], [0.2, 3.0]])
    with kernel.using(True):
        cells = lattice_cells([points], xs, ys, 1.0, 1.0)
    assert cells.fraction.sum() == pytest.approx(9.9, rel=1e-12)
    covered = cells.fraction > 0
    cx = (cells.cx * cells.fraction)[covered].sum() / cells.fraction.sum()
    cy = (cells.cy * cells.fraction)[covered].sum() / cells.fraction.sum()
    assert (cx, cy) == pytest.approx((1.85, 1.5), abs=1e-12)
    # The cell centred on (0.5, 0.5) is covered from x = 0.2: 0.8 of it, centroid x 0.6.
    i, j = list(ys).index(0.5), list(xs).index(0.5)
    assert cells.fraction[i, j] == pytest.approx(0.8, rel=1e-12)
    assert cells.cx[i, j] == pytest.approx(0.6, abs=1e-12)
    assert cells.extent_x[i, j] == pytest.approx(0.8, rel=1e-12)
    assert cells.extent_y[i, j] == 1.0
    # An uncovered cell keeps its centre and has no extent.
    assert (cells.cx[0, 0], cells.cy[0, 0], cells.extent_x[0, 0]) == (xs[0], ys[0], 0.0)


@needs_kernel
@pytest.mark.parametrize(("count", "seed", "hx", "hy"), [(12, 7, 0.7, 0.9), (5, 11, 0.5, 0.5)])
def test_cell_coverage_agrees_with_numpy_on_random_outlines(
    count: int, seed: int, hx: float, hy: float
) -> None:
    # Dense coverage (lattice_cells, _covers_something) and the covered cells alone, in
    # numpy.nonzero order (the sampler): both against the NumPy code.
    outlines = _random_outlines(np.random.default_rng(seed), count)
    xs = np.arange(-18.0, 18.0, hx) + hx / 2
    ys = np.arange(-17.0, 19.0, hy) + hy / 2
    results = {}
    for use_c in (False, True):
        with kernel.using(use_c):
            results[use_c] = (
                _edge_cells(outlines, xs, ys, hx, hy),
                _covered_cells(outlines, xs, ys, hx, hy),
            )
    (dense_n, sparse_n), (dense_c, sparse_c) = results[False], results[True]
    for name in ("fraction", "cx", "cy", "extent_x", "extent_y"):
        np.testing.assert_allclose(
            getattr(dense_c, name), getattr(dense_n, name), rtol=1e-12, atol=1e-12
        )
    np.testing.assert_array_equal(sparse_c[0], sparse_n[0])
    for c, n in zip(sparse_c[1:], sparse_n[1:], strict=True):
        np.testing.assert_allclose(c, n, rtol=1e-12, atol=1e-12)


def _linear_grid(nonuniform_z: bool) -> DoseGrid:
    x = np.arange(0.0, 20.0, 2.0)
    y = np.arange(0.0, 16.0, 2.0)
    z = np.array([0.0, 2.5, 5.0, 9.0, 10.0, 13.0]) if nonuniform_z else np.arange(6.0) * 2.5
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    return DoseGrid(x, y, z, 1.0 + 0.1 * xx + 0.2 * yy + 0.3 * zz)


@needs_kernel
@pytest.mark.parametrize("nonuniform_z", [False, True])
def test_samples_of_a_linear_dose_are_exact(nonuniform_z: bool) -> None:
    # Trilinear interpolation of a linear dose is the dose itself, its gradient the
    # coefficients; samples outside the grid's box (here x = 30) are counted as outside.
    grid = _linear_grid(nonuniform_z)
    px = np.array([3.3, 7.1, 30.0, 12.9])
    py = np.array([4.4, 1.2, 5.0, 13.0])
    lo = np.array([1.0, 6.0, 1.0, 11.5])
    dz = np.array([0.5, 0.75, 0.5, 2.0])
    reps = np.array([3, 2, 4, 1], dtype=np.intp)
    wx = np.array([1.0, 0.5, 1.0, 0.25])
    wy = np.array([1.0, 1.0, 1.0, 0.5])
    weight = np.array([2.0, 3.0, 5.0, 7.0])
    touched_c = np.zeros(grid.dose.size, dtype=bool)
    touched_n = np.zeros(grid.dose.size, dtype=bool)
    with kernel.using(True):
        doses, spread, weights, outside = _sample_cells(
            grid, lo, dz, reps, px, py, wx, wy, weight, touched_c
        )
    with kernel.using(False):
        reference = _sample_cells(grid, lo, dz, reps, px, py, wx, wy, weight, touched_n)
    cells = np.repeat([0, 1, 3], [3, 2, 1])
    subs = np.array([0, 1, 2, 0, 1, 0])
    z = lo[cells] + (subs + 0.5) * dz[cells]
    expected = 1.0 + 0.1 * px[cells] + 0.2 * py[cells] + 0.3 * z
    np.testing.assert_allclose(doses, expected, rtol=1e-13)
    np.testing.assert_allclose(
        spread,
        np.sqrt((0.1 * wx[cells]) ** 2 + (0.2 * wy[cells]) ** 2 + (0.3 * dz[cells]) ** 2),
        rtol=1e-12,
    )
    np.testing.assert_array_equal(weights, weight[cells])
    assert outside == pytest.approx(4 * 5.0)
    for a, b in zip((doses, spread, weights), reference[:3], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13)
    assert outside == pytest.approx(reference[3], rel=1e-13)
    np.testing.assert_array_equal(touched_c, touched_n)
    assert touched_c.sum() >= 3


@needs_kernel
def test_spread_histogram_agrees_with_numpy_and_keeps_every_sample() -> None:
    rng = np.random.default_rng(3)
    doses = rng.uniform(-1.0, 12.0, 5000)
    widths = np.where(rng.random(5000) < 0.3, 0.0, rng.uniform(0.0, 3.0, 5000))
    weights = rng.uniform(0.1, 2.0, 5000)
    counts = {}
    for use_c in (True, False):
        with kernel.using(use_c):
            hist = _SpreadHistogram(0.0, 0.1, 100)
            hist.add(doses[:2000], widths[:2000], weights[:2000])
            hist.add(doses[2000:], widths[2000:], weights[2000:])
            counts[use_c] = hist.counts()
    np.testing.assert_allclose(counts[True], counts[False], rtol=1e-11, atol=1e-11)
    # A point mass outside the bins is clipped into the first or last bin; a box is
    # squeezed into the bins' range with its whole weight, and dropped only when it lies
    # entirely outside: all the rest of the weight is counted.
    wide = widths >= 0.1
    dropped = wide & ((doses + widths / 2 <= 0.0) | (doses - widths / 2 >= 10.0))
    assert counts[True].sum() == pytest.approx(weights[~dropped].sum(), rel=1e-12)
    assert dropped.any()


@needs_kernel
def test_the_kernel_refuses_buffers_of_the_wrong_size() -> None:
    compiled = kernel.active() or kernel._BUILT
    assert compiled is not None
    edges = _polygon_edges(np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]))
    plane = np.zeros(4, dtype=np.intp)
    xs = ys = np.arange(3.0)
    gauss = np.array([0.25, 0.75])
    short = [np.empty(8) for _ in range(5)]
    with pytest.raises(ValueError, match="fraction: expected 9 float64 items, got 8"):
        compiled.edge_cells(edges, plane, 1, xs, ys, 1.0, 1.0, gauss, *short)
    with pytest.raises(ValueError, match="plane index out of range"):
        compiled.edge_cells(
            edges, plane + 1, 1, xs, ys, 1.0, 1.0, gauss, *[np.empty(9) for _ in range(5)]
        )
    with pytest.raises(ValueError, match="plane: expected intp items"):
        compiled.edge_cells(edges, plane.astype(np.int32), 1, xs, ys, 1.0, 1.0, gauss, *short)
    with pytest.raises(ValueError, match="positive"):
        compiled.edge_cells(
            edges, plane, 1, xs, ys, 0.0, 1.0, gauss, *[np.empty(9) for _ in range(5)]
        )
    with pytest.raises(ValueError, match="bins of positive width"):
        compiled.spread_histogram(
            np.zeros(1),
            np.zeros(1),
            np.zeros(1),
            0.0,
            0.0,
            np.zeros(4),
            np.zeros(6),
            np.zeros(6),
        )


@needs_kernel
def test_signed_distance_agrees_with_numpy_and_with_every_edge() -> None:
    # The block search must find the nearest edge: compare with the distance to every
    # edge (brute force), and with the NumPy code, at every raster node.
    rng = np.random.default_rng(5)
    edges = np.concatenate(_random_outlines(rng, 3))
    xs = np.arange(-20.0, 20.0, 0.37)
    ys = np.arange(-19.0, 21.0, 0.41)
    nodes = np.arange(xs.size * ys.size, dtype=np.intp)
    with kernel.using(True):
        compiled = SignedDistance(edges, xs, ys).at(nodes)
    with kernel.using(False):
        reference = SignedDistance(edges, xs, ys).at(nodes)
    np.testing.assert_allclose(compiled, reference, rtol=1e-12, atol=1e-12)
    px, py = xs[nodes % xs.size], ys[nodes // xs.size]
    x0, y0, x1, y1 = (edges[:, k][:, None] for k in range(4))
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((px - x0) * dx + (py - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    brute = np.sqrt(((px - x0 - t * dx) ** 2 + (py - y0 - t * dy) ** 2).min(axis=0))
    np.testing.assert_allclose(np.abs(compiled), brute, rtol=1e-12, atol=1e-12)


@needs_kernel
def test_inside_raster_agrees_with_numpy_and_with_a_point_test() -> None:
    # Three overlapping star outlines, even-odd: every raster node against the NumPy
    # code and, away from the outlines, against a ray-casting test of each point.
    rng = np.random.default_rng(9)
    outlines = _random_outlines(rng, 3)
    edges = np.concatenate(outlines)
    xs = np.arange(-20.0, 20.0, 0.3)
    ys = np.arange(-19.0, 21.0, 0.35)
    with kernel.using(True):
        compiled = inside_raster(edges, xs, ys)
    with kernel.using(False):
        reference = inside_raster(edges, xs, ys)
    np.testing.assert_array_equal(compiled, reference)
    gx, gy = np.meshgrid(xs, ys)
    crossings = np.zeros(gx.shape, dtype=int)
    for x0, y0, x1, y1 in edges:
        if y0 == y1:
            continue
        straddles = (np.minimum(y0, y1) <= gy) & (gy < np.maximum(y0, y1))
        xc = x0 + (gy - y0) / (y1 - y0) * (x1 - x0)
        crossings += straddles & (xc < gx)
    assert compiled.sum() > 1000
    np.testing.assert_array_equal(compiled, crossings % 2 == 1)


@needs_kernel
@pytest.mark.parametrize("nonuniform_z", [False, True])
def test_interpolate_is_exact_for_a_linear_dose_and_nan_outside(nonuniform_z: bool) -> None:
    grid = _linear_grid(nonuniform_z)
    rng = np.random.default_rng(2)
    points = np.column_stack(
        [rng.uniform(-2, 21, 500), rng.uniform(-2, 17, 500), rng.uniform(-2, 15, 500)]
    )
    with kernel.using(True):
        compiled = grid.interpolate(points)
    with kernel.using(False):
        reference = grid.interpolate(points)
    (xlo, xhi), (ylo, yhi), (zlo, zhi) = grid.extent
    inside = (
        (points[:, 0] >= xlo)
        & (points[:, 0] <= xhi)
        & (points[:, 1] >= ylo)
        & (points[:, 1] <= yhi)
        & (points[:, 2] >= zlo)
        & (points[:, 2] <= zhi)
    )
    assert 100 < inside.sum() < 500
    np.testing.assert_array_equal(np.isnan(compiled), ~inside)
    # Inside the nodes' span the linear dose itself; in the half cell beyond the last
    # node the value is held (clamped weights), as in the NumPy code.
    np.testing.assert_allclose(compiled[inside], reference[inside], rtol=1e-13)
    span = (
        inside
        & (points[:, 0] <= grid.x[-1])
        & (points[:, 0] >= grid.x[0])
        & (points[:, 1] <= grid.y[-1])
        & (points[:, 1] >= grid.y[0])
        & (points[:, 2] <= grid.z[-1])
        & (points[:, 2] >= grid.z[0])
    )
    expected = 1.0 + points[:, 0] * 0.1 + points[:, 1] * 0.2 + points[:, 2] * 0.3
    np.testing.assert_allclose(compiled[span], expected[span], rtol=1e-13)


@needs_kernel
def test_integer_and_strided_axes_give_what_float_axes_give() -> None:
    # Axes given as integers or as a strided view are read as numbers, never as raw
    # bytes: the kernel refuses any buffer that is not float64, and the callers convert.
    points = np.array([[1.0, 1.0], [4.0, 1.0], [4.0, 4.0], [1.0, 4.0]])
    ints: Any = np.arange(6)  # outside the typed API: what an untyped caller may pass
    with kernel.using(True):
        cells = lattice_cells([points], ints[1:5], ints[1:5], 1, 1)
        assert cells.fraction.sum() == pytest.approx(9.0, rel=1e-12)
        distances = SignedDistance(_polygon_edges(points), ints, ints)
        assert distances.at(np.array([0, 7, 14], dtype=np.intp)) == pytest.approx(
            [-math.sqrt(2.0), 0.0, 1.0]
        )
        axis = np.arange(20.0)[::2]
        grid = DoseGrid(axis, axis, axis, np.ones((10, 10, 10)))
        assert grid.interpolate(np.array([[3.0, 5.0, 7.0]])) == pytest.approx([1.0])
    compiled = kernel._BUILT
    assert compiled is not None
    with pytest.raises(ValueError, match="xs: expected float64 items"):
        compiled.inside_raster(
            _polygon_edges(points), np.arange(6), np.arange(6.0), np.zeros(36, dtype=bool)
        )


def test_a_kernel_of_another_version_or_lacking_a_function_is_not_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import types

    old = types.ModuleType("_rtcheck_dvh")
    monkeypatch.setattr(old, "API_VERSION", kernel.API_VERSION - 1, raising=False)
    monkeypatch.setitem(sys.modules, "_rtcheck_dvh", old)
    assert kernel._load() is None
    partial = types.ModuleType("_rtcheck_dvh")
    monkeypatch.setattr(partial, "API_VERSION", kernel.API_VERSION, raising=False)
    for name in kernel.FUNCTIONS[:-1]:
        setattr(partial, name, lambda *args: None)
    monkeypatch.setitem(sys.modules, "_rtcheck_dvh", partial)
    assert kernel._load() is None
    setattr(partial, kernel.FUNCTIONS[-1], lambda *args: None)
    assert kernel._load() is partial
