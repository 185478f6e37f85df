"""The shortcuts taken for the speed of ``rtcheck check`` against brute force (issue 11).

Each fast path of :mod:`rtcheck.geometry` and :mod:`rtcheck.plan_quality` is compared on
generated data with an independent reference that visits every point, every pair or the
whole grid: a bound is checked against every value it bounds, a skipped search against
the full search. Nothing here is timed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import rtcheck.geometry as geometry
from rtcheck.dvh import slab_bounds
from rtcheck.dvh.core import ContourPlane, DoseGrid, FloatArray
from rtcheck.dvh.interpolation import inside_raster
from rtcheck.dvh.structure import points_in_polygon, polygon_edges
from rtcheck.plan_quality import (
    D2CM_STEP_MM,
    LATTICE_DOSE_SLACK,
    Solid,
    _counts_for_d2cm,
    _d2cm,
    _inside_raster,
    _lattice_values,
    _nearest_target,
    _steps,
)

# -- shapes -------------------------------------------------------------------------------


def star(
    rng: np.random.Generator, centre: tuple[float, float], radius: float, n: int = 24
) -> FloatArray:
    """A random star-shaped polygon around ``centre`` (radii within 40 % of ``radius``)."""
    t = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = radius * rng.uniform(0.6, 1.4, n)
    return np.column_stack([centre[0] + r * np.cos(t), centre[1] + r * np.sin(t)])


def blob(
    rng: np.random.Generator,
    centre: tuple[float, float, float],
    radius: float,
    spacing: float = 2.5,
    holes: bool = False,
) -> list[ContourPlane]:
    """A random roundish structure: star polygons on planes ``spacing`` apart, some planes
    with a second island or a hole."""
    out = []
    for z in np.arange(centre[2] - radius, centre[2] + radius + 1e-9, spacing):
        a = radius * math.sqrt(max(1 - ((z - centre[2]) / (radius + spacing)) ** 2, 0.05))
        polys = [star(rng, (centre[0] + rng.uniform(-2, 2), centre[1]), a)]
        if holes and rng.uniform() < 0.5:
            polys.append(star(rng, (centre[0], centre[1]), 0.25 * a, 8))
        elif rng.uniform() < 0.3:
            polys.append(star(rng, (centre[0] + 2.5 * a, centre[1] + a), 0.4 * a, 9))
        out.append(ContourPlane(float(z), tuple(polys)))
    return out


# -- brute-force in-plane distance --------------------------------------------------------


def point_segment_distance(p: FloatArray, edges: FloatArray) -> FloatArray:
    """Distance from each point ``(n, 2)`` to each segment ``(m, 4)``: ``(n, m)``."""
    x0, y0, x1, y1 = (edges[:, k][None, :] for k in range(4))
    px, py = p[:, 0][:, None], p[:, 1][:, None]
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((px - x0) * dx + (py - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    return np.asarray(np.hypot(px - x0 - t * dx, py - y0 - t * dy))


def segments_cross(a: FloatArray, b: FloatArray) -> bool:
    """Whether any segment of ``a`` meets any of ``b`` (orientation test, all pairs)."""

    def orient(px: FloatArray, py: FloatArray, qx: FloatArray, qy: FloatArray, rx: FloatArray,
               ry: FloatArray) -> FloatArray:  # fmt: skip
        return np.asarray((qx - px) * (ry - py) - (qy - py) * (rx - px))

    ax0, ay0, ax1, ay1 = (a[:, k][:, None] for k in range(4))
    bx0, by0, bx1, by1 = (b[:, k][None, :] for k in range(4))
    d1 = orient(bx0, by0, bx1, by1, ax0, ay0)
    d2 = orient(bx0, by0, bx1, by1, ax1, ay1)
    d3 = orient(ax0, ay0, ax1, ay1, bx0, by0)
    d4 = orient(ax0, ay0, ax1, ay1, bx1, by1)
    return bool(np.any((d1 * d2 < 0) & (d3 * d4 < 0)))


def inside_any(points: FloatArray, polygons: tuple[FloatArray, ...]) -> FloatArray:
    inside = np.zeros(points.shape[0], dtype=bool)
    for poly in polygons:
        inside ^= points_in_polygon(points[:, 0], points[:, 1], poly)
    return inside


def region_distance(a: ContourPlane, b: ContourPlane) -> float:
    """In-plane distance of two even-odd regions: 0 when they meet, else the least
    vertex-edge distance either way round (every pair computed)."""
    ea, eb = polygon_edges(a.polygons), polygon_edges(b.polygons)
    va, vb = ea[:, :2], eb[:, :2]
    if inside_any(va, b.polygons).any() or inside_any(vb, a.polygons).any():
        return 0.0
    if segments_cross(ea, eb):
        return 0.0
    return float(min(point_segment_distance(va, eb).min(), point_segment_distance(vb, ea).min()))


def brute_distance(a: list[ContourPlane], b: list[ContourPlane], thickness: float) -> float:
    """The slab model's distance: the least over every pair of planes."""
    za = np.array([p.z for p in a])
    zb = np.array([p.z for p in b])
    lo_a, hi_a, _ = slab_bounds(za, None, thickness)
    lo_b, hi_b, _ = slab_bounds(zb, None, thickness)
    best = math.inf
    for i, pa in enumerate(a):
        for j, pb in enumerate(b):
            gz = max(lo_b[j] - hi_a[i], lo_a[i] - hi_b[j], 0.0)
            best = min(best, math.hypot(region_distance(pa, pb), gz))
    return best


# -- geometry -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_disc_bound_never_exceeds_the_distance_of_a_pair_of_slabs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = blob(rng, (0.0, 0.0, 0.0), rng.uniform(5, 15), holes=True)
    b = blob(rng, (rng.uniform(-40, 40), rng.uniform(-40, 40), rng.uniform(-30, 30)), 12.0)
    sa = geometry._stack(a, None, 2.5, "a")
    sb = geometry._stack(b, None, 2.5, "b")
    gz = np.maximum(
        0.0, np.maximum(sb.lo[None, :] - sa.hi[:, None], sa.lo[:, None] - sb.hi[None, :])
    )
    bound = geometry._disk_bound(sa, sb, gz)
    for i, pa in enumerate(a):
        for j, pb in enumerate(b):
            exact = math.hypot(region_distance(pa, pb), float(gz[i, j]))
            assert bound[i, j] <= exact


@pytest.mark.parametrize("seed", range(8))
def test_structure_distance_is_the_least_over_every_pair_of_slabs(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    a = blob(rng, (0.0, 0.0, 0.0), rng.uniform(4, 10))
    far = rng.uniform(20, 70)
    angle = rng.uniform(0, 2 * np.pi)
    b = blob(rng, (far * math.cos(angle), far * math.sin(angle), rng.uniform(-20, 20)), 14.0)
    found = geometry.structure_distance(a, b, single_plane_thickness=2.5)
    assert found.mm == pytest.approx(brute_distance(a, b, 2.5), abs=1e-9)
    assert math.dist(found.point_a, found.point_b) == pytest.approx(found.mm, abs=1e-9)


def test_closest_vertices_is_the_least_over_every_pair() -> None:
    rng = np.random.default_rng(7)
    va, vb = rng.uniform(-50, 50, (300, 2)), rng.uniform(0, 90, (170, 2))
    every = min(math.dist(p, q) for p in va for q in vb)
    assert geometry._closest_vertices(va, vb) == pytest.approx(every, rel=1e-12)


# -- plan quality: rasters, bounds and nearest targets ------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_inside_raster_shortcut_equals_the_whole_raster(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    polys = (star(rng, (0.0, 0.0), 60.0, 40), star(rng, (10.0, 5.0), 12.0, 12))
    edges = polygon_edges(polys)
    for x0, y0, size in ((-10.0, -10.0, 8.0), (-30.0, 20.0, 25.0), (150.0, 0.0, 10.0),
                         (3.0, 2.0, 6.0), (-200.0, -200.0, 400.0)):  # fmt: skip
        xs = np.arange(x0, x0 + size, 0.5)
        ys = np.arange(y0, y0 + size, 0.5)
        assert np.array_equal(_inside_raster(edges, xs, ys), inside_raster(edges, xs, ys))


def random_grid(rng: np.random.Generator, spacing: float = 2.5, n: int = 14) -> DoseGrid:
    x = np.arange(n, dtype=np.float64) * spacing - 10.0
    y = np.arange(n + 2, dtype=np.float64) * spacing - 20.0
    z = np.cumsum(np.r_[0.0, rng.uniform(1.5, 3.0, n - 3)]) - 5.0
    dose = rng.uniform(0, 60, (z.size, y.size, x.size))
    return DoseGrid(x, y, z, dose)


def lattice_points(
    grid: DoseGrid, k: np.ndarray, j: np.ndarray, i: np.ndarray, mx: int, my: int, mz: int
) -> FloatArray:
    """Every sub-cell centre of voxels ``(k, j, i)``, voxel by voxel, as _d2cm builds them."""
    u = (np.arange(mx) + 0.5) / mx
    v = (np.arange(my) + 0.5) / my
    w = (np.arange(mz) + 0.5) / mz
    dz = grid.z[k + 1] - grid.z[k]
    full = (k.size, mz, my, mx)
    px = grid.x[i][:, None, None, None] + grid.dx * u[None, None, None, :]
    py = grid.y[j][:, None, None, None] + grid.dy * v[None, None, :, None]
    pz = grid.z[k][:, None, None, None] + dz[:, None, None, None] * w[None, :, None, None]
    return np.column_stack([np.broadcast_to(a, full).ravel() for a in (px, py, pz)])


@pytest.mark.parametrize("seed", range(3))
def test_lattice_values_against_every_sampled_dose(seed: int) -> None:
    rng = np.random.default_rng(300 + seed)
    grid = random_grid(rng)
    mx, my = _steps(grid.dx, D2CM_STEP_MM), _steps(grid.dy, D2CM_STEP_MM)
    mz = _steps(float(np.diff(grid.z).max()), D2CM_STEP_MM)
    shape = (grid.z.size - 1, grid.y.size - 1, grid.x.size - 1)
    k, j, i = (a.ravel() for a in np.indices(shape))
    sampled = grid.interpolate(lattice_points(grid, k, j, i, mx, my, mz)).reshape(
        k.size, mz, my, mx
    )
    u, v, w = ((np.arange(m) + 0.5) / m for m in (mx, my, mz))
    guess = _lattice_values(grid.dose, k, j, i, u, v, w)
    top = float(np.abs(grid.dose).max())
    # Far within the slack the D2cm search allows the estimate.
    assert np.abs(guess - sampled).max() <= 1e-12 * top < LATTICE_DOSE_SLACK * top


def ball(centre: tuple[float, float, float], radius: float, spacing: float = 2.5) -> Solid:
    planes = []
    for z in np.arange(centre[2] - radius, centre[2] + radius + 1e-9, spacing):
        a = math.sqrt(max(radius**2 - (z - centre[2]) ** 2, 1.0))
        t = 2 * np.pi * np.arange(48) / 48
        planes.append(
            ContourPlane(
                float(z),
                (np.column_stack([centre[0] + a * np.cos(t), centre[1] + a * np.sin(t)]),),
            )
        )
    return Solid.from_planes(planes, single_plane_thickness=spacing)


def test_nearest_target_equals_the_least_of_every_distance() -> None:
    rng = np.random.default_rng(400)
    targets = [ball((0, 0, 0), 10), ball((70, 10, 5), 8), ball((-20, 80, -30), 12)]
    pts = np.concatenate(
        [
            rng.uniform(-120, 150, (3000, 3)),
            rng.normal((0, 0, 0), 20, (500, 3)),
            rng.normal((35, 5, 2), 10, (500, 3)),  # halfway between two targets
        ]
    )
    every = np.argmin(np.stack([s.distance(pts) for s in targets]), axis=0)
    assert np.array_equal(_nearest_target(pts, targets), every)


# -- plan quality: D2cm against the whole grid --------------------------------------------


@pytest.mark.parametrize("seed", range(2))
def test_d2cm_is_the_hottest_valid_point_of_the_whole_lattice(seed: int) -> None:
    """The grid reaches just past 20 mm around the target, so the whole of it is searched
    (no node lies beyond the search box): D2cm must be the highest dose of all the
    lattice points of all voxels that count for it, found here by brute force."""
    rng = np.random.default_rng(500 + seed)
    target = ball((0.0, 0.0, 0.0), 8.0)
    body = ball((4.0, -3.0, 0.0), 60.0)  # cuts through the grid's corners
    (xlo, ylo, zlo), (xhi, yhi, zhi) = target.box
    step = 2.5
    x = np.arange(xlo - 21.0, xhi + 21.0 + step, step)
    y = np.arange(ylo - 21.0, yhi + 21.0 + step, step)
    z = np.arange(zlo - 21.0, zhi + 21.0 + step, step)
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    rho = np.sqrt(xx**2 + yy**2 + zz**2)
    # A dose falling from the target (6.5 Gy at 20 mm, 10.5 Gy at 16 mm) with noise and
    # a hot spot of about 8.4 Gy in a corner: the answer lies behind thousands of
    # voxels hotter near the target that the search must look at first.
    corner = rng.choice([-1.0, 1.0], 3) * 24.0
    spot = np.sqrt((xx - corner[0]) ** 2 + (yy - corner[1]) ** 2 + (zz - corner[2]) ** 2)
    dose = (
        60.0 * np.exp(-(rho - 8.0) / 9.0)
        + 7.0 * np.exp(-((spot / 4.0) ** 2))
        + rng.uniform(0, 0.5, rho.shape)
    )
    grid = DoseGrid(x, y, z, dose)
    found, problem = _d2cm(grid, [target], 0, 20.0, body)
    assert not problem and found is not None

    mx, my = _steps(grid.dx, D2CM_STEP_MM), _steps(grid.dy, D2CM_STEP_MM)
    mz = _steps(float(np.diff(grid.z).max()), D2CM_STEP_MM)
    k, j, i = (a.ravel() for a in np.indices((z.size - 1, y.size - 1, x.size - 1)))
    pts = lattice_points(grid, k, j, i, mx, my, mz)
    slack = 0.5 * math.sqrt((grid.dx / mx) ** 2 + (grid.dy / my) ** 2 + (step / mz) ** 2)
    valid = _counts_for_d2cm(pts, [target], 0, 20.0 - slack, body)
    assert valid.any()
    values = grid.interpolate(pts[valid])
    assert found == float(values.max())
    # The hottest valid point is the spot's, not one near the target.
    assert math.dist(pts[valid][np.argmax(values)], corner) < 10.0


def test_distance_with_an_upper_limit_and_d2cm_validity_against_full_distances() -> None:
    rng = np.random.default_rng(600)
    targets = [ball((0, 0, 0), 10), ball((60, 10, 5), 8), ball((-20, 70, -30), 12)]
    body = ball((10, 20, 0), 90.0, spacing=5.0)
    pts = np.concatenate([rng.uniform(-100, 130, (4000, 3)), rng.normal(0, 30, (1000, 3))])
    full = [s.distance(pts) for s in targets]
    for s, solid in enumerate(targets):
        for upper in (5.0, 20.0, 40.0):
            expected = np.where(full[s] > upper, np.inf, full[s])
            assert np.array_equal(solid.distance(pts, upper=upper), expected)
    inside = body.contains(pts)
    for t in range(len(targets)):
        ok = full[t] > 20.0
        for s in range(len(targets)):
            if s != t:
                ok &= (full[s] >= 20.0) & (full[s] >= full[t])
        assert np.array_equal(_counts_for_d2cm(pts, targets, t, 20.0, body), ok & inside)
