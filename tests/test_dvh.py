"""Unit tests of the DVH core with hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rtcheck.dvh.core import (
    ContourPlane,
    DoseGrid,
    compute_dvh,
    even_odd_area,
    lattice_cells,
    slab_bounds,
)

#: Every test runs with the C kernel of the DVH sampler and with its NumPy code.
pytestmark = pytest.mark.usefixtures("dvh_kernel")


def square(cx: float, cy: float, half: float) -> np.ndarray:
    return np.array(
        [
            [cx - half, cy - half],
            [cx + half, cy - half],
            [cx + half, cy + half],
            [cx - half, cy + half],
        ]
    )


def box_planes(
    half_xy: float, zs: list[float], cx: float = 0.0, cy: float = 0.0
) -> list[ContourPlane]:
    return [ContourPlane(z, (square(cx, cy, half_xy),)) for z in zs]


def grid_1mm(x0: float, n: int, field: str = "x") -> DoseGrid:
    """Nodes x0, x0+1, ... along every axis; dose = coordinate along ``field`` + 50 Gy."""
    ax = x0 + np.arange(n, dtype=np.float64)
    z, y, x = np.meshgrid(ax, ax, ax, indexing="ij")
    value = {"x": x, "y": y, "z": z}[field] + 50.0
    return DoseGrid(ax, ax, ax, value)


# -- polygons -----------------------------------------------------------------------------


def test_even_odd_area_of_hole_and_island() -> None:
    outer, hole, island = square(0, 0, 5), square(0, 0, 3), square(0, 0, 1)
    assert even_odd_area([outer]) == pytest.approx(100.0)
    assert even_odd_area([outer, hole]) == pytest.approx(100.0 - 36.0)
    # Order and orientation do not matter.
    assert even_odd_area([hole[::-1], outer]) == pytest.approx(64.0)
    assert even_odd_area([outer, hole, island]) == pytest.approx(100.0 - 36.0 + 4.0)
    # Two separate islands add.
    assert even_odd_area([square(-10, 0, 1), square(10, 0, 2)]) == pytest.approx(4.0 + 16.0)


def test_cell_coverage_of_a_triangle_is_exact() -> None:
    # Right triangle (0,0)-(3,0)-(0,3): area 4.5 mm², centroid (1, 1). Along x the
    # coverage is exact; along y the chord is linear within each cell row (rows break at
    # the vertices' y here), which two Gauss rows integrate exactly, and the x-moment is
    # quadratic in y, also exact.
    tri = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    h = 0.75
    xs = -0.375 + h * np.arange(7, dtype=np.float64)
    ys = -0.375 + h * np.arange(7, dtype=np.float64)
    cells = lattice_cells([tri], xs, ys, h, h)
    area = cells.fraction * h * h
    assert area.sum() == pytest.approx(4.5, rel=1e-12)
    assert (area * cells.cx).sum() / area.sum() == pytest.approx(1.0, rel=1e-12)
    assert (area * cells.cy).sum() / area.sum() == pytest.approx(1.0, rel=1e-12)


def test_cell_coverage_of_cells_on_polygon_edges() -> None:
    # A 2 x 2 mm square whose edges lie exactly on cell borders: covered cells are full,
    # the others empty, with no half rows from the edges.
    sq = square(1.0, 1.0, 1.0)
    xs = ys = np.arange(-1.5, 4.0, 1.0)
    cells = lattice_cells([sq], xs, ys, 1.0, 1.0)
    expected = np.zeros((6, 6))
    expected[2:4, 2:4] = 1.0
    np.testing.assert_allclose(cells.fraction, expected, atol=1e-12)


# -- slabs --------------------------------------------------------------------------------


def test_slabs_reach_halfway_with_half_spacing_end_caps() -> None:
    lo, hi, notes = slab_bounds(np.array([0.0, 2.0, 4.0, 7.0]))
    np.testing.assert_allclose(lo, [-1.0, 1.0, 3.0, 5.5])
    np.testing.assert_allclose(hi, [1.0, 3.0, 5.5, 8.5])
    assert notes == []


def test_slabs_end_at_slices_without_contour() -> None:
    slices = np.arange(0.0, 11.0, 1.0)  # CT slices every mm
    lo, hi, notes = slab_bounds(np.array([2.0, 3.0, 7.0, 8.0]), slices)
    np.testing.assert_allclose(lo, [1.5, 2.5, 6.5, 7.5])
    np.testing.assert_allclose(hi, [2.5, 3.5, 7.5, 8.5])
    assert any("3 slice(s)" in n for n in notes)


def test_wide_gap_without_slices_is_two_stacks() -> None:
    lo, hi, notes = slab_bounds(np.array([0.0, 2.0, 4.0, 20.0, 22.0]))
    np.testing.assert_allclose(lo, [-1.0, 1.0, 3.0, 19.0, 21.0])
    np.testing.assert_allclose(hi, [1.0, 3.0, 5.0, 21.0, 23.0])
    assert any("gap" in n for n in notes)


def test_single_plane_needs_a_thickness() -> None:
    with pytest.raises(ValueError, match="single plane"):
        slab_bounds(np.array([5.0]))
    lo, hi, notes = slab_bounds(np.array([5.0]), single_plane_thickness=3.0)
    assert (lo[0], hi[0]) == (3.5, 6.5)
    assert notes


# -- whole DVHs ---------------------------------------------------------------------------


def test_box_in_a_linear_field() -> None:
    # 10 x 10 mm squares on planes 0..9 mm: slabs -0.5..9.5, volume 1 cc exactly.
    # Dose = x + 50 Gy, x uniform over [-5, 5]: V(d) falls linearly from 1 cc at 45 Gy
    # to 0 at 55 Gy, so D50% = 50, D95% = 45.5, D2% = 54.8 and the mean is 50 Gy.
    planes = box_planes(5.0, [float(z) for z in range(10)])
    dvh = compute_dvh(planes, grid_1mm(-20.0, 41))
    assert dvh.volume_cc == pytest.approx(1.0, rel=1e-12)
    assert dvh.volume_outside_cc == 0.0 and dvh.complete
    assert dvh.mean_gy == pytest.approx(50.0, abs=1e-9)
    assert dvh.min_gy == pytest.approx(45.0) and dvh.max_gy == pytest.approx(55.0)
    assert dvh.dose_at_volume(0.5) == pytest.approx(50.0, abs=0.01)
    assert dvh.dose_at_volume(0.95) == pytest.approx(45.5, abs=0.01)
    assert dvh.dose_at_volume(0.02) == pytest.approx(54.8, abs=0.01)
    assert dvh.volume_at_dose(47.5) == pytest.approx(0.75, abs=1e-3)
    assert dvh.dose_at_coldest_volume(0.02) == pytest.approx(45.2, abs=0.01)
    doses, volumes = dvh.cumulative()
    assert doses[0] == 0.0 and doses[-1] > dvh.max_gy
    assert volumes[0] == pytest.approx(1.0) and volumes[-1] == 0.0
    assert np.all(np.diff(volumes) <= 1e-12)


def test_part_outside_the_grid_is_measured_and_flagged() -> None:
    # Grid nodes 0.5 .. 40.5 mm: its voxels cover x >= 0. The 20 mm box spans x in
    # [-10, 10]: exactly half of its 8 cc lies outside.
    planes = box_planes(10.0, [float(z) for z in range(10, 30)], cx=0.0, cy=20.0)
    dvh = compute_dvh(planes, grid_1mm(0.5, 41))
    assert dvh.volume_cc == pytest.approx(8.0, rel=1e-12)
    assert dvh.volume_outside_cc == pytest.approx(4.0, rel=1e-9)
    assert not dvh.complete
    assert dvh.volume_inside_cc == pytest.approx(4.0, rel=1e-9)
    # Inside part: x in [0, 10], dose x + 50 Gy, except in the grid's outer half voxel
    # x in [0, 0.5] which takes the edge node's 50.5 Gy:
    # mean = (0.5 * 50.5 + [x²/2 + 50 x] from 0.5 to 10) / 10 = 55.0125 Gy.
    assert dvh.mean_gy == pytest.approx(55.0125, abs=2e-3)


def test_structure_entirely_outside_the_grid() -> None:
    planes = box_planes(2.0, [100.0, 101.0])
    dvh = compute_dvh(planes, grid_1mm(0.0, 11))
    assert dvh.volume_cc == pytest.approx(0.032)
    assert dvh.volume_outside_cc == pytest.approx(0.032)
    assert math.isnan(dvh.mean_gy) and math.isnan(dvh.dose_at_volume(0.01))
    assert "no part" in " ".join(dvh.notes)


@pytest.mark.parametrize("offset", [0.0, 0.37, 1.1, 3.3, 7.77, 12.9])
def test_structure_entirely_outside_has_nothing_inside_whatever_the_rounding(
    offset: float,
) -> None:
    # Squares of odd sizes well outside the grid: the volume outside is a different sum
    # of the same samples, so volume - outside can leave 1e-15 cc; it must count as 0.
    planes = box_planes(3.3 + offset, [float(z) for z in range(4, 15, 2)], cx=110.0 + offset)
    dvh = compute_dvh(planes, grid_1mm(0.0, 11))
    assert dvh.volume_inside_cc == 0.0
    assert not dvh.complete


BOW_TIE = np.array([[-10.0, -10.0], [10.0, 10.0], [10.0, -10.0], [-10.0, 10.0]])
#: Edges (0,0)-(30,20) and (30,0)-(0,10) cross at (10, 20/3): lobes of 50 and 200 mm²,
#: shoelace 150, even-odd 250.
EIGHT = np.array([[0.0, 0.0], [30.0, 20.0], [30.0, 0.0], [0.0, 10.0]])


@pytest.mark.parametrize(
    ("polygons", "ambiguous"),
    [
        ((BOW_TIE,), True),  # shoelace 0: the lobes cancel
        ((EIGHT,), True),
        ((square(0, 0, 10.0), square(5, 5, 10.0)), True),  # overlapping, not nested
        ((square(0, 0, 10.0), square(0, 0, 5.0)), False),  # a hole
        ((square(0, 0, 10.0), square(30, 0, 5.0)), False),  # two islands
        ((square(0, 0, 10.0),), False),
    ],
    ids=["bow-tie", "figure-of-eight", "overlap", "hole", "islands", "square"],
)
def test_contours_whose_area_is_ambiguous_are_flagged(
    polygons: tuple[np.ndarray, ...], ambiguous: bool
) -> None:
    planes = [ContourPlane(float(z), polygons) for z in (10.0, 11.0, 12.0)]
    planes[0] = ContourPlane(10.0, (square(0, 0, 10.0),))  # a simple plane is not flagged
    for model in ("slab", "shape"):
        dvh = compute_dvh(planes, grid_1mm(-30.0, 61), between_planes=model)
        flagged = dvh.ambiguous_planes
        assert (len(flagged) > 0) == ambiguous, model
        assert all(10.5 < z < 12.75 for z in flagged), flagged


def test_hollow_structure_excludes_its_hole() -> None:
    # Square ring (outer 10 mm half-width, hole 5 mm) in dose = y + 50: volume
    # (400 - 100) mm² x 10 mm = 3 cc; symmetric, so the mean is 50 Gy.
    ring = (square(0, 0, 10.0), square(0, 0, 5.0))
    planes = [ContourPlane(float(z), ring) for z in range(10)]
    dvh = compute_dvh(planes, grid_1mm(-20.0, 41, "y"))
    assert dvh.volume_cc == pytest.approx(3.0, rel=1e-12)
    assert dvh.mean_gy == pytest.approx(50.0, abs=1e-9)
    # Dose 47..53 Gy lies in the hole band |y| < 5 only partly: V(>=55) = the strip
    # y in [5, 10] = 20 x 5 x 10 = 1 cc.
    assert dvh.volume_at_dose(55.0) == pytest.approx(1.0, abs=2e-3)


def test_uniform_dose_gives_one_value_everywhere() -> None:
    ax = np.arange(-10.0, 11.0, 2.0)
    grid = DoseGrid(ax, ax, ax, np.full((ax.size,) * 3, 18.0))
    dvh = compute_dvh(box_planes(3.0, [-2.0, 0.0, 2.0]), grid)
    for value in (dvh.min_gy, dvh.mean_gy, dvh.max_gy, dvh.dose_at_volume(0.1)):
        assert value == pytest.approx(18.0)


def test_trilinear_interpolation() -> None:
    ax = np.arange(0.0, 5.0)
    z, y, x = np.meshgrid(ax, ax, ax, indexing="ij")
    grid = DoseGrid(ax, ax, ax, x * y + 2 * z)  # bilinear in x, y: exact in trilinear
    pts = np.array([[1.5, 2.5, 3.25], [0.0, 0.0, 0.0], [4.0, 4.0, 4.0], [9.0, 0.0, 0.0]])
    out = grid.interpolate(pts)
    np.testing.assert_allclose(out[:3], [1.5 * 2.5 + 6.5, 0.0, 16.0 + 8.0])
    assert math.isnan(out[3])


def test_dose_grid_rejects_bad_axes() -> None:
    ax = np.arange(3.0)
    with pytest.raises(ValueError, match="ascending"):
        DoseGrid(ax[::-1].copy(), ax, ax, np.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match="shape"):
        DoseGrid(ax, ax, ax, np.zeros((3, 3, 2)))
    with pytest.raises(ValueError, match="uniformly"):
        DoseGrid(np.array([0.0, 1.0, 3.0]), ax, ax, np.zeros((3, 3, 3)))


def test_neither_model_needs_scipy() -> None:
    # Not even where outlines are interpolated (circles of a sphere r 5 on planes 2 mm
    # apart: every interval). A fresh interpreter: nothing imported before. (That the
    # model's modules import one way is tests/test_layering.py.)
    import subprocess
    import sys

    no_scipy = (
        "import sys, math, numpy as np;"
        "from rtcheck.dvh.core import ContourPlane, DoseGrid, compute_dvh;"
        "from rtcheck.dvh.interpolation import shape_layers;"
        "a = np.linspace(0, 2 * math.pi, 90, endpoint=False);"
        "ring = lambda r: np.column_stack([r * np.cos(a), r * np.sin(a)]);"
        "zs = (-4., -2., 0., 2., 4.);"
        "planes = [ContourPlane(z, (ring(math.sqrt(25 - z * z)),)) for z in zs];"
        "ax = np.arange(-8., 9.);"
        "g = DoseGrid(ax, ax, ax, np.ones((17, 17, 17)));"
        "d = compute_dvh(planes, g);"
        "assert 0.5 < d.volume_cc < 0.6, d.volume_cc;"
        "assert not any(m.startswith('scipy') for m in sys.modules), 'scipy imported'"
    )
    run = subprocess.run([sys.executable, "-c", no_scipy], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
