"""Validate the analytic DVH truth (``tests/fixtures/analytic.py``) against hand values.

The truth is what the DVH engine is tested against, so it is itself checked here by
independent means: hand formulas for boxes, a square with a hole, inclusion-exclusion
for a box in an oblique gradient, Sutherland-Hodgman clipping with numerical quadrature
for non-convex polygons, the Nelms closed forms for the ideal shapes, and symmetry.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Literal

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.integrate import quad

from tests.fixtures.analytic import (
    ContourPlane,
    LinearDose,
    SlabModel,
    SlabTruth,
    box_contours,
    circle_polygon,
    cone_contours,
    cone_parallel_fraction_above,
    cone_volume_cc,
    cylinder_contours,
    cylinder_parallel_fraction_above,
    cylinder_perpendicular_fraction_above,
    cylinder_volume_cc,
    dose_at_fraction,
    even_odd_signs,
    halfway_slab_bounds,
    shell_contours,
    shell_fraction_above,
    shell_volume_cc,
    signed_area,
    slice_positions,
    sphere_contours,
    sphere_fraction_above,
    sphere_volume_cc,
)

#: Every test runs with the C kernel of the DVH sampler and with its NumPy code.
pytestmark = pytest.mark.usefixtures("dvh_kernel")

FloatArray = NDArray[np.float64]
Apex = Literal["+", "-"]

#: The Nelms benchmark geometry: Ø24 mm shapes centred at (0, -6, 6) mm, 16 Gy there.
CENTER = (0.0, -6.0, 6.0)
RADIUS = 12.0


# --------------------------------------------------------------------------------------
# Independent reference helpers
# --------------------------------------------------------------------------------------


def clip_half_plane(poly: FloatArray, normal: tuple[float, float], offset: float) -> FloatArray:
    """Sutherland-Hodgman: the part of ``poly`` with ``normal . p >= offset``."""
    n = np.asarray(normal, dtype=np.float64)
    out: list[FloatArray] = []
    count = poly.shape[0]
    for i in range(count):
        p, q = poly[i], poly[(i + 1) % count]
        sp, sq = float(n @ p) - offset, float(n @ q) - offset
        if sp >= 0:
            out.append(p)
        if (sp >= 0) != (sq >= 0):
            out.append(p + (q - p) * (sp / (sp - sq)))
    return np.array(out) if out else np.zeros((0, 2))


def clipped_area(poly: FloatArray, normal: tuple[float, float], offset: float) -> float:
    """Area of ``poly`` on the side ``normal . p >= offset`` (shoelace of the clip)."""
    clipped = clip_half_plane(poly, normal, offset)
    if clipped.shape[0] < 3:
        return 0.0
    return abs(signed_area(clipped))


def box_volume_below(
    t: float, sides: tuple[float, float, float], g: tuple[float, float, float]
) -> float:
    """Volume of ``{r in [0, a] x [0, b] x [0, c]: g . r <= t}`` for positive ``g``.

    Inclusion-exclusion over the box corners:
    ``sum_S (-1)^|S| (t - sum_{i in S} g_i L_i)_+^3 / (6 gx gy gz)``.
    """
    total = 0.0
    for subset in itertools.product((0, 1), repeat=3):
        shift = sum(s * gi * li for s, gi, li in zip(subset, g, sides, strict=True))
        total += (-1) ** sum(subset) * max(t - shift, 0.0) ** 3
    return total / (6.0 * g[0] * g[1] * g[2])


def star_polygon(n_points: int = 7, r_out: float = 10.0, r_in: float = 4.0) -> FloatArray:
    """A non-convex star centred at (1, 2), counter-clockwise."""
    k = np.arange(2 * n_points)
    r = np.where(k % 2 == 0, r_out, r_in)
    theta = np.pi * k / n_points + 0.3
    return np.column_stack([1.0 + r * np.cos(theta), 2.0 + r * np.sin(theta)])


L_SHAPE = np.array([[0.0, 0.0], [8.0, 0.0], [8.0, 3.0], [3.0, 3.0], [3.0, 9.0], [0.0, 9.0]])


# --------------------------------------------------------------------------------------
# Boxes: volume, V(d), mean, min and max by hand
# --------------------------------------------------------------------------------------


@pytest.fixture
def box() -> SlabModel:
    """A 10 x 20 x 10 mm box: planes at z = 0.5 .. 9.5, slabs filling [0, 10]."""
    return SlabModel(box_contours((0.0, 10.0), (0.0, 20.0), np.arange(10) + 0.5))


def test_box_volume_and_slabs(box: SlabModel) -> None:
    assert box.volume_cc == pytest.approx(2.0, rel=1e-14)
    assert box.lo[0] == pytest.approx(0.0) and box.hi[-1] == pytest.approx(10.0)
    np.testing.assert_allclose(box.centroid, [5.0, 10.0, 5.0], rtol=1e-14)


@pytest.mark.parametrize(
    ("gradient", "hand"),
    [
        ((1.0, 0.0, 0.0), lambda t: 20 * 10 * np.clip(10 - t, 0, 10)),
        ((0.0, 1.0, 0.0), lambda t: 10 * 10 * np.clip(20 - t, 0, 20)),
        ((0.0, 0.0, 1.0), lambda t: 10 * 20 * np.clip(10 - t, 0, 10)),
        ((-2.0, 0.0, 0.0), lambda t: 20 * 10 * np.clip(-t / 2, 0, 10)),
        ((0.0, 0.0, -0.5), lambda t: 10 * 20 * np.clip(-2 * t, 0, 10)),
    ],
)
def test_box_volume_at_dose_axis_gradients(
    box: SlabModel, gradient: tuple[float, float, float], hand: Callable[[FloatArray], FloatArray]
) -> None:
    d0 = 3.0
    truth = SlabTruth(box, LinearDose(d0, gradient))
    doses = d0 + np.array([-25.0, -12.3, -4.0, -0.1, 0.0, 0.5, 3.0, 7.25, 9.9, 13.0, 19.5, 30])
    expected = hand(doses - d0) / 1000.0
    np.testing.assert_allclose(truth.volumes_at_doses(doses), expected, rtol=1e-12, atol=1e-14)


def test_box_mean_min_max(box: SlabModel) -> None:
    truth = SlabTruth(box, LinearDose(1.0, (0.5, -0.25, 2.0)))
    corners = np.array(list(itertools.product((0, 10), (0, 20), (0, 10))), dtype=float)
    values = 1.0 + corners @ np.array([0.5, -0.25, 2.0])
    assert truth.min_gy == pytest.approx(values.min(), rel=1e-14)
    assert truth.max_gy == pytest.approx(values.max(), rel=1e-14)
    assert truth.mean_gy == pytest.approx(1.0 + 0.5 * 5 - 0.25 * 10 + 2.0 * 5, rel=1e-14)


@pytest.mark.parametrize("gradient", [(1.0, 1.0, 1.0), (1.0, 2.0, 0.5), (0.3, 1.7, 2.9)])
def test_box_oblique_gradient_inclusion_exclusion(gradient: tuple[float, float, float]) -> None:
    sides = (10.0, 6.0, 8.0)
    model = SlabModel(box_contours((0.0, sides[0]), (0.0, sides[1]), np.arange(8) + 0.5))
    assert model.volume_mm3 == pytest.approx(480.0, rel=1e-14)
    truth = SlabTruth(model, LinearDose(0.0, gradient))
    top = float(np.dot(gradient, sides))
    for t in np.linspace(-1.0, top + 1.0, 37):
        expected = (480.0 - box_volume_below(t, sides, gradient)) / 1000.0
        assert truth.volume_at_dose(t) == pytest.approx(expected, rel=1e-10, abs=1e-13)


def test_nonuniform_slab_bounds() -> None:
    zs = np.array([0.0, 1.0, 3.0, 6.0])
    lo, hi = halfway_slab_bounds(zs)
    np.testing.assert_allclose(lo, [-0.5, 0.5, 2.0, 4.5])
    np.testing.assert_allclose(hi, [0.5, 2.0, 4.5, 7.5])
    # Explicit, uneven bounds (with a gap between the 2nd and 3rd slab).
    lo_x, hi_x = np.array([-1.0, 0.5, 2.5, 4.5]), np.array([0.5, 2.0, 4.5, 9.0])
    model = SlabModel(box_contours((0.0, 4.0), (0.0, 5.0), zs), lo_x, hi_x)
    assert model.volume_mm3 == pytest.approx(20.0 * 9.5, rel=1e-14)
    truth = SlabTruth(model, LinearDose(0.0, (0.0, 0.0, 1.0)))

    def hand(t: float) -> float:
        length = sum(
            max(float(h) - max(float(lo_), t), 0.0) for lo_, h in zip(lo_x, hi_x, strict=True)
        )
        return 20.0 * min(length, 9.5) / 1000.0

    for t in [-2.0, -0.3, 1.0, 2.2, 3.0, 8.99, 10.0]:
        assert truth.volume_at_dose(t) == pytest.approx(hand(t), rel=1e-12, abs=1e-15)
    # Mean over the union of slabs, weighted by thickness.
    expected_mean = float(np.sum((hi_x**2 - lo_x**2) / 2) / np.sum(hi_x - lo_x))
    assert truth.mean_gy == pytest.approx(expected_mean, rel=1e-13)


def test_single_plane_needs_thickness() -> None:
    plane = box_contours((0.0, 1.0), (0.0, 1.0), [2.0])
    with pytest.raises(ValueError, match="single"):
        SlabModel(plane)
    model = SlabModel(plane, single_plane_thickness=3.0)
    assert model.volume_mm3 == pytest.approx(3.0)


# --------------------------------------------------------------------------------------
# Holes and nesting
# --------------------------------------------------------------------------------------


def square(x0: float, x1: float, clockwise: bool = False, start: int = 0) -> FloatArray:
    poly = np.array([[x0, x0], [x1, x0], [x1, x1], [x0, x1]], dtype=np.float64)
    if clockwise:
        poly = poly[::-1]
    return np.roll(poly, start, axis=0)


@pytest.mark.parametrize("hole_clockwise", [False, True])
@pytest.mark.parametrize("hole_first", [False, True])
def test_square_with_square_hole(hole_clockwise: bool, hole_first: bool) -> None:
    outer = square(0.0, 10.0)
    hole = square(3.0, 7.0, clockwise=hole_clockwise, start=2)
    polys = (hole, outer) if hole_first else (outer, hole)
    assert even_odd_signs(polys) == ([-1, 1] if hole_first else [1, -1])
    model = SlabModel([ContourPlane(z=0.0, polygons=polys)], [-1.0], [1.0])
    assert model.plane_areas_mm2[0] == pytest.approx(84.0, rel=1e-14)
    assert model.volume_cc == pytest.approx(0.168, rel=1e-14)
    truth = SlabTruth(model, LinearDose(0.0, (1.0, 0.0, 0.0)))
    for t in [-1.0, 0.0, 1.5, 3.0, 4.2, 5.0, 6.9, 7.0, 8.5, 10.0]:
        area = 10 * np.clip(10 - t, 0, 10) - 4 * np.clip(7 - max(t, 3), 0, 4)
        assert truth.volume_at_dose(t) == pytest.approx(2 * area / 1000, rel=1e-12, abs=1e-15)
    assert truth.mean_gy == pytest.approx(5.0, rel=1e-14)
    assert truth.dose_at_percent(50) == pytest.approx(5.0, rel=1e-9)
    # A gradient along z: the hole changes nothing but the area.
    truth_z = SlabTruth(model, LinearDose(0.0, (0.0, 0.0, 1.0)))
    assert truth_z.volume_at_dose(0.5) == pytest.approx(84 * 0.5 / 1000, rel=1e-12)


def test_island_inside_hole() -> None:
    polys = (square(0.0, 10.0), square(2.0, 8.0, clockwise=True), square(4.0, 6.0))
    assert even_odd_signs(polys) == [1, -1, 1]
    model = SlabModel([ContourPlane(z=1.0, polygons=polys)], [0.0], [1.0])
    assert model.plane_areas_mm2[0] == pytest.approx(100 - 36 + 4, rel=1e-14)
    truth = SlabTruth(model, LinearDose(0.0, (0.0, 1.0, 0.0)))
    for t in [1.0, 3.0, 5.0, 7.0, 9.0]:
        area = (
            10 * np.clip(10 - t, 0, 10)
            - 6 * np.clip(8 - max(t, 2), 0, 6)
            + 2 * np.clip(6 - max(t, 4), 0, 2)
        )
        assert truth.volume_at_dose(t) == pytest.approx(area / 1000, rel=1e-12)


def test_two_separate_squares_are_both_counted() -> None:
    polys = (square(0.0, 2.0), square(5.0, 6.0))
    assert even_odd_signs(polys) == [1, 1]
    model = SlabModel([ContourPlane(z=0.0, polygons=polys)], [0.0], [10.0])
    assert model.volume_mm3 == pytest.approx(50.0)


# --------------------------------------------------------------------------------------
# Non-convex polygons against clipping and quadrature
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("poly", [star_polygon(), L_SHAPE, L_SHAPE[::-1]], ids=["star", "L", "Lcw"])
@pytest.mark.parametrize("angle", [0.0, 0.7, 2.0, math.pi / 2, 4.0])
def test_in_plane_gradient_matches_clipping(poly: FloatArray, angle: float) -> None:
    g = (math.cos(angle), math.sin(angle), 0.0)
    model = SlabModel([ContourPlane(z=0.0, polygons=(poly,))], [-1.5], [1.0])
    truth = SlabTruth(model, LinearDose(2.0, g))
    proj = poly @ np.array(g[:2])
    for t in np.linspace(proj.min() - 1, proj.max() + 1, 23):
        expected = 2.5 * clipped_area(poly, g[:2], float(t)) / 1000
        assert truth.volume_at_dose(2.0 + t) == pytest.approx(expected, rel=1e-11, abs=1e-14)


@pytest.mark.parametrize("poly", [star_polygon(), L_SHAPE], ids=["star", "L"])
@pytest.mark.parametrize("gradient", [(0.6, -0.8, 0.9), (0.1, 0.2, -3.0), (2.0, 1.0, 1e-3)])
def test_oblique_gradient_matches_quadrature(
    poly: FloatArray, gradient: tuple[float, float, float]
) -> None:
    lo, hi = -1.0, 2.5
    model = SlabModel([ContourPlane(z=0.7, polygons=(poly,))], [lo], [hi])
    truth = SlabTruth(model, LinearDose(0.0, gradient))
    gx, gy, gz = gradient
    proj = poly @ np.array([gx, gy])

    def reference(t: float) -> float:
        # Area above the moving line, integrated over z piece by piece between the z
        # at which the line passes a vertex (the integrand is smooth on each piece).
        cuts = (t - proj) / gz
        edges = np.unique(np.clip(np.concatenate([[lo, hi], cuts]), lo, hi))
        total = 0.0
        for a, b in itertools.pairwise(edges):
            if b - a > 0:
                value, _ = quad(
                    lambda z: clipped_area(poly, (gx, gy), t - gz * z), a, b, epsabs=1e-12
                )
                total += value
        return total / 1000

    dose_lo, dose_hi = truth.min_gy, truth.max_gy
    for d in np.linspace(dose_lo - 0.5, dose_hi + 0.5, 15):
        assert truth.volume_at_dose(d) == pytest.approx(reference(d), rel=1e-9, abs=1e-12)


def test_tiny_gradient_components_are_continuous() -> None:
    poly = star_polygon()
    model = SlabModel([ContourPlane(z=0.0, polygons=(poly,))], [-1.0], [1.0])
    for base, tiny in [((1.0, 0.5, 0.0), (1.0, 0.5, 1e-11)), ((0.0, 0.0, 1.0), (1e-11, 0, 1.0))]:
        a, b = SlabTruth(model, LinearDose(0, base)), SlabTruth(model, LinearDose(0, tiny))
        for d in np.linspace(a.min_gy, a.max_gy, 9)[1:-1]:
            assert b.volume_at_dose(d) == pytest.approx(a.volume_at_dose(d), rel=1e-8)


def test_zero_gradient() -> None:
    truth = SlabTruth(sphere_contours(5.0, spacing=2.0, n_vertices=32), LinearDose(7.0, (0, 0, 0)))
    assert truth.min_gy == truth.max_gy == truth.mean_gy == pytest.approx(7.0)
    assert truth.volume_at_dose(6.99) == pytest.approx(truth.volume_cc)
    assert truth.volume_at_dose(7.01) == 0.0
    assert truth.dose_at_percent(50) == pytest.approx(7.0)


# --------------------------------------------------------------------------------------
# Generators
# --------------------------------------------------------------------------------------


def test_slice_positions() -> None:
    np.testing.assert_allclose(slice_positions(-6.0, 18.0, 3.0), np.arange(-3.0, 16.0, 3.0))
    np.testing.assert_allclose(
        slice_positions(-6.0, 18.0, 3.0, inclusive=True), np.arange(-6.0, 19.0, 3.0)
    )
    np.testing.assert_allclose(slice_positions(0.0, 2.0, 1.0, origin=0.25), [0.25, 1.25])


def test_sphere_contours_lie_on_the_sphere() -> None:
    planes = sphere_contours(RADIUS, CENTER, 2.0, n_vertices=128)
    zs = np.array([p.z for p in planes])
    # Poles at z = -6 and 18 fall on slices but carry no contour (zero radius).
    np.testing.assert_allclose(zs, np.arange(-4.0, 17.0, 2.0))
    for plane in planes:
        (poly,) = plane.polygons
        assert poly.shape == (128, 2)
        r = np.sqrt(poly[:, 0] ** 2 + (poly[:, 1] + 6) ** 2 + (plane.z - 6) ** 2)
        np.testing.assert_allclose(r, RADIUS, rtol=1e-14)


def test_tangent_polygons_like_nelms() -> None:
    planes = sphere_contours(RADIUS, CENTER, 3.0, n_vertices=64, tangent_polygon_radius=0.5)
    assert planes[0].z == pytest.approx(-6.0)
    assert planes[-1].z == pytest.approx(18.0)
    assert planes[0].polygons[0].shape == (4, 2)
    # Diamond of radius 0.5: area 0.5 mm², slab -7.5 .. -4.5.
    model = SlabModel(planes)
    assert model.plane_areas_mm2[0] == pytest.approx(0.5)
    truth = SlabTruth(model, LinearDose.through(CENTER, 16.0, (0.0, 0.0, 1.0)))
    assert truth.min_gy == pytest.approx(2.5)
    cone = cone_contours(RADIUS, 24.0, CENTER, 3.0, apex="-", tangent_polygon_radius=0.01)
    assert cone[0].z == pytest.approx(-6.0) and cone[0].polygons[0].shape == (4, 2)
    assert len(cone_contours(RADIUS, 24.0, CENTER, 3.0, apex="-")) == 8


def test_cylinder_contours() -> None:
    along_z = cylinder_contours(RADIUS, 24.0, CENTER, 3.0, n_vertices=64)
    assert [p.z for p in along_z] == pytest.approx(np.arange(-6.0, 19.0, 3.0))
    assert len(cylinder_contours(RADIUS, 24.0, CENTER, 3.0, include_end_planes=False)) == 7
    along_y = cylinder_contours(RADIUS, 24.0, CENTER, 3.0, axis="y")
    for plane in along_y:
        (rect,) = plane.polygons
        assert rect.shape == (4, 2)
        np.testing.assert_allclose(np.sort(np.unique(rect[:, 1])), [-18.0, 6.0])
        half_w = np.abs(rect[:, 0])
        np.testing.assert_allclose(half_w**2 + (plane.z - 6) ** 2, RADIUS**2, rtol=1e-14)


@pytest.mark.parametrize("apex", ["+", "-"])
def test_cone_contours(apex: Apex) -> None:
    sgn = 1.0 if apex == "+" else -1.0
    planes = cone_contours(RADIUS, 24.0, CENTER, 2.0, apex=apex, n_vertices=64)
    zs = np.array([p.z for p in planes])
    assert zs.size == 12  # the base slice is kept, the apex slice is not
    assert (zs.min() if apex == "+" else zs.max()) == pytest.approx(6 - sgn * 12)
    for plane in planes:
        (poly,) = plane.polygons
        h = sgn * (plane.z - (6 - sgn * 12))
        np.testing.assert_allclose(
            np.hypot(poly[:, 0], poly[:, 1] + 6), RADIUS * (1 - h / 24), rtol=1e-12
        )
    across = cone_contours(RADIUS, 24.0, CENTER, 2.0, axis="y", apex=apex, n_vertices=64)
    for plane in across:
        (poly,) = plane.polygons
        dz = plane.z - 6
        height = sgn * (poly[:, 1] - (-6 - sgn * 12))
        assert height.min() == pytest.approx(0.0, abs=1e-12)
        assert np.all(height <= 24 * (1 - abs(dz) / RADIUS) + 1e-12)
        curved = height > 1e-9
        rho = np.sqrt(poly[curved, 0] ** 2 + dz**2)
        np.testing.assert_allclose(rho, RADIUS * (1 - height[curved] / 24), rtol=1e-12)


def test_shell_contours_have_holes() -> None:
    planes = shell_contours(12.0, 6.0, CENTER, 2.0, n_vertices=64)
    counts = {p.z: len(p.polygons) for p in planes}
    assert counts[6.0] == 2 and counts[0.0] == 1 and counts[10.0] == 2 and counts[12.0] == 1
    model = SlabModel(planes)
    plane = next(p for p in planes if p.z == 6.0)
    k = [p.z for p in planes].index(6.0)
    expected = abs(signed_area(plane.polygons[0])) - abs(signed_area(plane.polygons[1]))
    assert model.plane_areas_mm2[k] == pytest.approx(expected, rel=1e-14)


def test_linear_dose() -> None:
    dose = LinearDose.through(CENTER, 16.0, (0.0, -1.0, 0.0))
    assert dose.d0 == pytest.approx(10.0)
    assert dose(np.array([3.0, 2.0, 1.0])) == pytest.approx(8.0)
    grid = dose.on_grid([0.0, 1.0], [0.0, 1.0, 2.0], [5.0])
    assert grid.shape == (1, 3, 2)
    np.testing.assert_allclose(grid[0, :, 0], [10.0, 9.0, 8.0])


# --------------------------------------------------------------------------------------
# Convergence to the ideal closed forms
# --------------------------------------------------------------------------------------


def _max_fraction_error(
    truth: SlabTruth,
    ideal_cc: float,
    fraction: Callable[[FloatArray], FloatArray],
    doses: FloatArray,
) -> float:
    return float(np.max(np.abs(truth.volumes_at_doses(doses) - ideal_cc * fraction(doses))))


@pytest.mark.parametrize("gradient", [(0.0, -1.0, 0.0), (0.0, 0.0, 1.0), (0.6, 0.0, 0.8)])
def test_sphere_converges_to_closed_form(gradient: tuple[float, float, float]) -> None:
    dose = LinearDose.through(CENTER, 16.0, gradient)
    doses = np.linspace(3.0, 29.0, 27)
    ideal = sphere_volume_cc(RADIUS)

    def fraction(d: FloatArray) -> FloatArray:
        return sphere_fraction_above(d, 16.0, 1.0, RADIUS)

    fine = SlabTruth(sphere_contours(RADIUS, CENTER, 0.2, n_vertices=512), dose)
    assert fine.volume_cc == pytest.approx(ideal, rel=2e-3)
    err_fine = _max_fraction_error(fine, ideal, fraction, doses)
    assert err_fine < 2e-3 * ideal
    coarse = SlabTruth(sphere_contours(RADIUS, CENTER, 2.0, n_vertices=64), dose)
    assert _max_fraction_error(coarse, ideal, fraction, doses) > 3 * err_fine
    for pct in (95.0, 50.0, 5.0):
        exact = dose_at_fraction(lambda d: float(fraction(np.asarray(d))), pct / 100, 4.0, 28.0)
        assert fine.dose_at_percent(pct) == pytest.approx(exact, abs=2e-3 * 24)


def test_cylinder_across_slices_converges() -> None:
    planes = cylinder_contours(RADIUS, 24.0, CENTER, 0.5, n_vertices=512, slice_origin=0.25)
    # Planes at -5.75 .. 17.75 with half-spacing caps fill exactly the 24 mm length.
    model = SlabModel(planes)
    assert model.lo[0] == pytest.approx(-6.0) and model.hi[-1] == pytest.approx(18.0)
    ideal = cylinder_volume_cc(RADIUS, 24.0)
    doses = np.linspace(3.0, 29.0, 27)
    along = SlabTruth(model, LinearDose.through(CENTER, 16.0, (0.0, 0.0, 1.0)))
    # Along the axis the slab model of a polygonal cylinder is exactly linear in dose.
    np.testing.assert_allclose(
        along.volumes_at_doses(doses),
        model.volume_cc * cylinder_parallel_fraction_above(doses, 16.0, 1.0, 24.0),
        rtol=1e-11,
        atol=1e-14,
    )
    assert model.volume_cc == pytest.approx(ideal, rel=2e-4)
    across = SlabTruth(model, LinearDose.through(CENTER, 16.0, (0.0, -1.0, 0.0)))
    expected = ideal * cylinder_perpendicular_fraction_above(doses, 16.0, 1.0, RADIUS)
    np.testing.assert_allclose(across.volumes_at_doses(doses), expected, atol=2e-4 * ideal)


def test_cylinder_along_y_is_exact_along_its_axis() -> None:
    planes = cylinder_contours(RADIUS, 24.0, CENTER, 0.25, axis="y")
    model = SlabModel(planes)
    doses = np.linspace(-3.0, 23.0, 27)  # D = 10 - y: 28 Gy at y = -18, 4 Gy at y = 6
    truth = SlabTruth(model, LinearDose(10.0, (0.0, -1.0, 0.0)))
    # Every plane is a rectangle spanning the full length: V(d) is linear in d.
    np.testing.assert_allclose(
        truth.volumes_at_doses(doses),
        model.volume_cc * cylinder_parallel_fraction_above(doses, 16.0, 1.0, 24.0),
        rtol=1e-11,
        atol=1e-14,
    )
    ideal = cylinder_volume_cc(RADIUS, 24.0)
    assert model.volume_cc == pytest.approx(ideal, rel=2e-3)
    across = SlabTruth(model, LinearDose.through(CENTER, 16.0, (0.0, 0.0, 1.0)))
    expected = ideal * cylinder_perpendicular_fraction_above(doses + 6, 16.0, 1.0, RADIUS)
    np.testing.assert_allclose(across.volumes_at_doses(doses + 6), expected, atol=2e-3 * ideal)


@pytest.mark.parametrize("apex", ["+", "-"])
def test_cone_along_gradient_converges(apex: Apex) -> None:
    # Slices half a spacing off the base: the base cap ends exactly at the base.
    planes = cone_contours(RADIUS, 24.0, CENTER, 0.2, apex=apex, n_vertices=512, slice_origin=0.1)
    model = SlabModel(planes)
    base_face = model.lo[0] if apex == "+" else model.hi[-1]
    assert base_face == pytest.approx(-6.0 if apex == "+" else 18.0)
    truth = SlabTruth(model, LinearDose.through(CENTER, 16.0, (0.0, 0.0, 1.0)))
    ideal = cone_volume_cc(RADIUS, 24.0)
    assert truth.volume_cc == pytest.approx(ideal, rel=1e-3)
    apex_dose = 28.0 if apex == "+" else 4.0
    base_dose = 32.0 - apex_dose
    doses = np.linspace(3.0, 29.0, 27)
    expected = ideal * cone_parallel_fraction_above(doses, apex_dose, base_dose)
    np.testing.assert_allclose(truth.volumes_at_doses(doses), expected, atol=1e-3 * ideal)


def test_cone_across_slices_converges() -> None:
    planes = cone_contours(RADIUS, 24.0, CENTER, 0.25, axis="y", apex="-", n_vertices=256)
    truth = SlabTruth(planes, LinearDose(10.0, (0.0, -1.0, 0.0)))
    ideal = cone_volume_cc(RADIUS, 24.0)
    assert truth.volume_cc == pytest.approx(ideal, rel=3e-3)
    doses = np.linspace(3.0, 29.0, 27)
    # Apex at y = -18 (28 Gy), base at y = 6 (4 Gy).
    expected = ideal * cone_parallel_fraction_above(doses, 28.0, 4.0)
    np.testing.assert_allclose(truth.volumes_at_doses(doses), expected, atol=3e-3 * ideal)


def test_shell_converges() -> None:
    planes = shell_contours(RADIUS, 7.0, CENTER, 0.25, n_vertices=256)
    truth = SlabTruth(planes, LinearDose.through(CENTER, 16.0, (0.0, 0.0, 1.0)))
    ideal = shell_volume_cc(RADIUS, 7.0)
    assert truth.volume_cc == pytest.approx(ideal, rel=2e-3)
    doses = np.linspace(3.0, 29.0, 27)
    expected = ideal * shell_fraction_above(doses, 16.0, 1.0, RADIUS, 7.0)
    np.testing.assert_allclose(truth.volumes_at_doses(doses), expected, atol=2e-3 * ideal)


# --------------------------------------------------------------------------------------
# Symmetry and self-consistency
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("gradient", [(0.3, -1.0, 0.7), (0.0, 0.0, 2.0), (1.0, 0.0, 0.0)])
def test_mean_of_symmetric_shape_is_centre_dose(gradient: tuple[float, float, float]) -> None:
    # Centre on a slice and an even vertex count: the polygons are point-symmetric.
    planes = sphere_contours(RADIUS, CENTER, 1.5, n_vertices=96)
    truth = SlabTruth(planes, LinearDose.through(CENTER, 16.0, gradient))
    assert truth.mean_gy == pytest.approx(16.0, rel=1e-13)
    np.testing.assert_allclose(SlabModel(planes).centroid, CENTER, atol=1e-12)


def test_mean_equals_integral_of_cumulative() -> None:
    # mean = min + integral of V(d) / V over [min, max]: ties V(d) to the moment formula.
    planes = cone_contours(10.0, 15.0, (1.0, 2.0, 3.3), 1.7, n_vertices=40, phase=0.2)
    truth = SlabTruth(planes, LinearDose(4.0, (0.4, -0.9, 1.3)))
    # V(d) is a cubic between consecutive prism-vertex doses: 3-point Gauss-Legendre on
    # each piece integrates it exactly.
    model = SlabModel(planes)
    breaks = np.unique(truth.dose(model.prism_vertices()))
    nodes, weights = np.polynomial.legendre.leggauss(3)
    a, b = breaks[:-1, None], breaks[1:, None]
    doses = (a + b) / 2 + (b - a) / 2 * nodes[None, :]
    integral = float(np.sum((b - a) / 2 * weights[None, :] * truth.volumes_at_doses(doses)))
    mean = truth.min_gy + integral / truth.volume_cc
    assert mean == pytest.approx(truth.mean_gy, rel=1e-11)


@pytest.mark.parametrize(
    ("planes", "gradient"),
    [
        (sphere_contours(RADIUS, CENTER, 2.0, n_vertices=64), (0.0, 0.0, 1.0)),
        (sphere_contours(RADIUS, CENTER, 3.0, n_vertices=60), (0.0, -1.0, 0.0)),
        (cylinder_contours(RADIUS, 24.0, CENTER, 2.0, axis="y"), (0.0, 1.0, 0.0)),
        (cylinder_contours(RADIUS, 24.0, CENTER, 3.0, axis="y"), (2.0, 0.0, 0.0)),
        (shell_contours(RADIUS, 5.0, CENTER, 1.0, n_vertices=64), (0.0, 0.0, -1.0)),
    ],
    ids=["sphere-z", "sphere-y", "cylY-y", "cylY-x", "shell-z"],
)
def test_d50_of_symmetric_shape_is_centre_dose(
    planes: list[ContourPlane], gradient: tuple[float, float, float]
) -> None:
    truth = SlabTruth(planes, LinearDose.through(CENTER, 16.0, gradient))
    assert truth.dose_at_percent(50.0) == pytest.approx(16.0, rel=1e-10)
    # Symmetry of the whole curve about the centre dose.
    for pct in (1.0, 5.0, 30.0):
        hot, cold = truth.dose_at_percent(pct), truth.dose_at_percent(100 - pct)
        assert hot - 16.0 == pytest.approx(16.0 - cold, rel=1e-9)
    assert truth.max_gy - 16.0 == pytest.approx(16.0 - truth.min_gy, rel=1e-12)


def test_dose_at_volume_inverts_volume_at_dose() -> None:
    planes = shell_contours(10.0, 4.0, (2.0, 1.0, 0.4), 1.3, n_vertices=48, slice_origin=0.1)
    truth = SlabTruth(planes, LinearDose(5.0, (0.2, 0.5, -1.1)))
    total = truth.volume_cc
    for cc in (0.03, 0.1 * total, 0.5 * total, 0.99 * total):
        d = truth.dose_at_volume(cc)
        assert truth.volume_at_dose(d) == pytest.approx(cc, rel=1e-9)
        assert truth.dose_at_coldest_volume(total - cc) == pytest.approx(d, rel=1e-12)
    assert truth.dose_at_percent(95) == pytest.approx(truth.dose_at_volume(0.95 * total))
    assert truth.dose_at_coldest_percent(5) == pytest.approx(truth.dose_at_percent(95))
    assert truth.dose_at_volume(0.0) == truth.max_gy
    assert truth.dose_at_volume(total) == truth.min_gy
    assert truth.volume_at_dose(truth.min_gy) == pytest.approx(total)
    assert truth.volume_at_dose(truth.max_gy + 1e-9) == 0.0
    curve = truth.cumulative(np.linspace(truth.min_gy, truth.max_gy, 50))
    assert np.all(np.diff(curve) <= 1e-15)


def test_extremes_are_at_prism_vertices() -> None:
    poly = circle_polygon(0.0, 0.0, 5.0, 8)
    planes = [ContourPlane(z=z, polygons=(poly,)) for z in (0.0, 1.0, 2.0)]
    truth = SlabTruth(planes, LinearDose(0.0, (1.0, 0.0, 1.0)))
    # Vertex (5, 0) at z = 2.5 (top face of the last slab) and (-5, 0) at z = -0.5.
    assert truth.max_gy == pytest.approx(7.5)
    assert truth.min_gy == pytest.approx(-5.5)
