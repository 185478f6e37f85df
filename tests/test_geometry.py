"""Minimum distance between structures (``rtcheck.geometry``) against hand values.

Every expected value comes from the slab model's geometry worked out by hand: slab faces
half a spacing beyond the planes, regular polygons with a vertex at angle 0 (so their
extent along x is the vertex radius, and two concentric ones are ``(q - p) cos(pi/n)``
apart), boxes whose gaps add up by Pythagoras. Where the closest slabs are not obvious
(a sphere in a spherical hole, a tube diagonal to a sphere), the hand formula is
evaluated for every pair of planes and the smallest value taken: the minimum over the
slab model by definition, computed without any of the code under test.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from scipy.optimize import brentq

import rtcheck.geometry as geometry
from rtcheck.dvh.core import ContourPlane, FloatArray, points_in_polygon
from rtcheck.geometry import Distance, structure_distance
from rtcheck.synthetic import circle_polygon, shell_planes, sphere_planes

#: Results are exact up to rounding; the issue asks for 1 mm and the brief for 0.5 mm.
EXACT = 1e-9
REQUIRED = 0.5

Planes = list[ContourPlane]


def rect(x0: float, x1: float, y0: float, y1: float) -> FloatArray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def box(
    x: tuple[float, float], y: tuple[float, float], z: tuple[float, float], spacing: float
) -> Planes:
    """Planes of an axis-aligned box whose slabs span exactly ``z``."""
    n = round((z[1] - z[0]) / spacing)
    zs = z[0] + spacing / 2 + spacing * np.arange(n)
    return [ContourPlane(float(zz), (rect(*x, *y),)) for zz in zs]


def spacing_grid(lo: float, hi: float, spacing: float) -> list[float]:
    """Plane positions lo, lo + spacing, ... up to hi (0 among them when spacing divides lo)."""
    return [lo + spacing * i for i in range(round((hi - lo) / spacing) + 1)]


def planes_z(planes: Sequence[ContourPlane]) -> FloatArray:
    return np.array(sorted(p.z for p in planes))


def check_points(d: Distance) -> None:
    """The reported closest points are ``mm`` apart."""
    gap = math.dist(d.point_a, d.point_b)
    assert gap == pytest.approx(d.mm, abs=1e-9)


def inside_slab_model(point: tuple[float, float, float], planes: Planes, spacing: float) -> bool:
    """Even-odd test of a point against a uniformly spaced contiguous slab stack."""
    x, y, z = point
    for p in planes:
        if p.z - spacing / 2 <= z <= p.z + spacing / 2:
            inside = [
                bool(points_in_polygon(np.array([x]), np.array([y]), poly)[0])
                for poly in p.polygons
            ]
            return sum(inside) % 2 == 1
    return False


def assert_distance(a: Planes, b: Planes, expected: float, **kwargs: Any) -> Distance:
    d = structure_distance(a, b, **kwargs)
    back = structure_distance(b, a, **kwargs)
    assert abs(d.mm - expected) <= EXACT
    assert abs(d.mm - expected) < REQUIRED
    assert back.mm == d.mm  # symmetric to the last bit
    assert not d.overlap and not back.overlap
    check_points(d)
    check_points(back)
    return d


# -- spheres -------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [64, 128])
@pytest.mark.parametrize(("spacing_a", "spacing_b"), [(1.0, 1.0), (3.0, 3.0), (1.0, 3.0)])
def test_spheres_side_by_side(n: int, spacing_a: float, spacing_b: float) -> None:
    # Both have a plane at z = 0, where their sections are largest: the polygons' vertices
    # at angle 0 and pi face each other along x; every other pair of planes is farther.
    a = sphere_planes((0, 0, 0), 10.0, spacing_grid(-12, 12, spacing_a), n)
    b = sphere_planes((40, 0, 0), 8.0, spacing_grid(-12, 12, spacing_b), n)
    d = assert_distance(a, b, 40.0 - 10.0 - 8.0)
    assert d.point_a == pytest.approx((10.0, 0.0, 0.0), abs=1e-9)
    assert d.point_b == pytest.approx((32.0, 0.0, 0.0), abs=1e-9)


@pytest.mark.parametrize("n", [64, 128])
@pytest.mark.parametrize("spacing", [1.0, 3.0])
def test_spheres_one_above_the_other(n: int, spacing: float) -> None:
    # Centres 40 mm apart along z: the top cap of a faces the bottom cap of b, and the
    # two caps overlap in (x, y), so the distance is the z gap between the slab faces.
    zs = spacing_grid(-15, 60, spacing)
    a = sphere_planes((0, 0, 0), 10.0, zs, n)
    b = sphere_planes((0, 0, 40), 8.0, zs, n)
    top_a = planes_z(a)[-1] + spacing / 2
    bottom_b = planes_z(b)[0] - spacing / 2
    d = assert_distance(a, b, bottom_b - top_a)
    assert d.point_a[2] == top_a
    assert d.point_b[2] == bottom_b
    # 1 mm: last planes 9 and 33 -> 32.5 - 9.5; 3 mm: 9 and 33 -> 31.5 - 10.5.
    assert d.mm == {1.0: 23.0, 3.0: 21.0}[spacing]


@pytest.mark.parametrize("spacing", [1.0, 3.0])
def test_overlapping_spheres(spacing: float) -> None:
    zs = spacing_grid(-15, 15, spacing)
    a = sphere_planes((0, 0, 0), 10.0, zs)
    b = sphere_planes((15, 0, 0), 8.0, zs)
    for first, second in ((a, b), (b, a)):
        d = structure_distance(first, second)
        assert d.mm == 0.0
        assert d.overlap
        assert d.point_a == d.point_b
        assert inside_slab_model(d.point_a, a, spacing)
        assert inside_slab_model(d.point_a, b, spacing)


def test_identical_structures_overlap() -> None:
    # No vertex lies strictly inside the other and no edges cross: the overlap is found
    # beside the shared boundary.
    a = sphere_planes((0, 0, 0), 10.0, spacing_grid(-12, 12, 2.0))
    d = structure_distance(a, a)
    assert d.mm == 0.0 and d.overlap
    boxes = box((0, 10), (0, 10), (0, 10), 1.0)
    assert structure_distance(boxes, boxes).overlap


def test_boxes_sharing_part_of_their_boundary_overlap() -> None:
    # [0, 10]^2 and [0, 10] x [5, 15]: every vertex of one is on the other's boundary.
    a = box((0, 10), (0, 10), (0, 10), 1.0)
    b = box((0, 10), (5, 15), (0, 10), 1.0)
    d = structure_distance(a, b)
    assert d.mm == 0.0 and d.overlap
    assert 5.0 < d.point_a[1] < 10.0


def test_crossing_bars_overlap() -> None:
    # A plus sign: the bars cross, no vertex of one lies inside the other.
    a = box((-20, 20), (-2, 2), (0, 4), 1.0)
    b = box((-2, 2), (-20, 20), (2, 6), 2.0)
    d = structure_distance(a, b)
    assert d.mm == 0.0 and d.overlap
    assert 2.0 < d.point_a[2] < 4.0


# -- a sphere inside a spherical hole ------------------------------------------------------


def concentric_distance(p: float, q: float | None, n: int) -> float:
    """In-plane distance from a regular n-gon of vertex radius p to a concentric ring.

    ``q`` is the vertex radius of the ring's hole (None: a plane without a hole, i.e. a
    solid disc, which overlaps the n-gon). Aligned regular polygons have parallel edges
    ``(q - p) cos(pi / n)`` apart.
    """
    if q is None or p >= q:
        return 0.0
    return (q - p) * math.cos(math.pi / n)


@pytest.mark.parametrize("n", [64, 128])
@pytest.mark.parametrize("spacing", [1.0, 3.0])
def test_sphere_inside_a_shell(n: int, spacing: float) -> None:
    zs = spacing_grid(-24, 24, spacing)
    inner_r, hole_r, outer_r = 8.0, 12.0, 20.0
    ball = sphere_planes((0, 0, 0), inner_r, zs, n)
    shell = shell_planes((0, 0, 0), outer_r, hole_r, zs, n)
    # Hand value: every pair of planes, in-plane distance to the hole wall (0 where the
    # shell plane is solid) combined with the z gap of the slabs.
    best = math.inf
    for p_plane in ball:
        p = math.sqrt(inner_r**2 - p_plane.z**2)
        for s_plane in shell:
            rr = hole_r**2 - s_plane.z**2
            q = math.sqrt(rr) if len(s_plane.polygons) == 2 else None
            gz = max(0.0, abs(s_plane.z - p_plane.z) - spacing)
            best = min(best, math.hypot(concentric_distance(p, q, n), gz))
    d = assert_distance(ball, shell, best)
    # The slab model's staircase brings the hole's floor closer than the smooth 4 mm.
    assert 2.0 < d.mm <= (hole_r - inner_r) * math.cos(math.pi / n) + EXACT


# -- boxes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spacing", [1.0, 2.5])
def test_box_10mm_above_another(spacing: float) -> None:
    a = box((-5, 5), (-5, 5), (0, 10), spacing)
    b = box((-3, 3), (-3, 3), (20, 30), spacing)
    d = assert_distance(a, b, 10.0)
    assert d.point_a[2] == 10.0 and d.point_b[2] == 20.0


def test_diagonal_boxes() -> None:
    # x gap 11 - 5 = 6, z gap 18 - 10 = 8: Euclidean 10, not the larger gap alone.
    a = box((-5, 5), (-5, 5), (0, 10), 1.0)
    b = box((11, 21), (-5, 5), (18, 30), 2.0)
    d = assert_distance(a, b, 10.0)
    assert d.point_a[0] == 5.0 and d.point_a[2] == 10.0
    assert d.point_b[0] == 11.0 and d.point_b[2] == 18.0
    # Diagonal in all three axes: gaps 6, 2 and 3 -> 7.
    c = box((11, 21), (7, 9), (13, 20), 1.0)
    assert_distance(a, c, 7.0)


@pytest.mark.parametrize(
    "other",
    [
        box((5, 15), (-5, 5), (0, 10), 1.0),  # shared face x = 5
        box((-5, 5), (-5, 5), (10, 20), 2.5),  # shared face z = 10
        box((5, 15), (5, 15), (10, 20), 1.0),  # shared corner (5, 5, 10)
        box((5, 15), (-2, 2), (3, 4), 0.5),  # shared part of a face
    ],
)
def test_touching_boxes(other: Planes) -> None:
    a = box((-5, 5), (-5, 5), (0, 10), 1.0)
    for first, second in ((a, other), (other, a)):
        d = structure_distance(first, second)
        assert d.mm == 0.0
        assert not d.overlap
        assert d.point_a == pytest.approx(d.point_b, abs=1e-9)


def test_two_lesions_in_one_roi() -> None:
    # Structure a has two islands on every plane; b sits between them, 3 mm from the
    # nearer one and 5 mm from the other.
    two = [
        ContourPlane(z, (rect(-20, -10, -5, 5), rect(10, 20, -5, 5)))
        for z in (0.5 + np.arange(10)).tolist()
    ]
    between = box((-7, 5), (-1, 1), (2, 8), 1.0)
    d = assert_distance(two, between, 3.0)
    assert d.point_a[0] == -10.0


# -- the 20 mm central / peripheral boundary -----------------------------------------------


def tube_along_y(x_lo: float, z_lo: float, spacing: float, width: float = 8.0) -> Planes:
    """A bar along y (rectangles in axial planes) whose slabs start at ``z_lo``."""
    return box((x_lo, x_lo + width), (-40, 40), (z_lo, z_lo + 8), spacing)


@pytest.mark.parametrize("spacing", [1.0, 3.0])
@pytest.mark.parametrize("gap", [19.7, 20.3])
def test_tube_beside_sphere_resolves_20mm(gap: float, spacing: float) -> None:
    # The sphere's equator plane reaches x = 10 (vertex at angle 0); the tube's side wall
    # is at 10 + gap over the sphere's whole height.
    sphere = sphere_planes((0, 0, 0), 10.0, spacing_grid(-12, 12, spacing))
    tube = tube_along_y(10.0 + gap, -4.0 - spacing / 2, 1.0)
    d = assert_distance(sphere, tube, gap)
    assert (d.mm < 20.0) == (gap < 20.0)


@pytest.mark.parametrize("spacing", [1.0, 3.0])
@pytest.mark.parametrize("gap", [19.7, 20.3])
def test_tube_diagonal_to_sphere_resolves_20mm(gap: float, spacing: float) -> None:
    # The tube's lower inner edge runs along y at (c, c): diagonal to the sphere. Slab k
    # of the sphere reaches x = r_k and z = z_k + spacing / 2, and the tube lies beyond
    # both, so the distance is min_k hypot(c - r_k, c - top_k); c is chosen so that this
    # hand value is ``gap``.
    sphere = sphere_planes((0, 0, 0), 10.0, spacing_grid(-12, 12, spacing))

    def hand(c: float) -> float:
        return min(
            math.hypot(max(0.0, c - math.sqrt(100.0 - p.z**2)), max(0.0, c - p.z - spacing / 2))
            for p in sphere
        )

    c = float(brentq(lambda c: hand(c) - gap, 10.0, 40.0, xtol=1e-13))
    tube = tube_along_y(c, c, 2.0)
    d = assert_distance(sphere, tube, hand(c))
    assert (d.mm < 20.0) == (gap < 20.0)


# -- slab model options and errors ----------------------------------------------------------


def test_slice_positions_decide_between_touching_and_overlap() -> None:
    # a is contoured on every other 1 mm slice: with the slices known its slabs are 1 mm
    # thick with gaps, and b's slab [0.5, 1.5] fills a gap exactly (touching); without
    # them a's slabs are 2 mm thick and b overlaps.
    a = box((-5, 5), (-5, 5), (-1, 5), 2.0)  # planes 0, 2, 4
    b = [ContourPlane(1.0, (rect(-1, 1, -1, 1),))]
    slices = np.arange(-5.0, 10.0)
    d = structure_distance(
        a, b, slice_positions_a=slices, slice_positions_b=slices, single_plane_thickness=1.0
    )
    assert d.mm == 0.0 and not d.overlap
    d = structure_distance(a, b, single_plane_thickness=1.0)
    assert d.mm == 0.0 and d.overlap


def test_single_plane_structure_uses_the_given_thickness() -> None:
    a = [ContourPlane(0.0, (circle_polygon(0, 0, 5, 64),))]
    b = box((-5, 5), (-5, 5), (5, 10), 1.0)
    assert structure_distance(a, b, single_plane_thickness=2.0).mm == pytest.approx(4.0)
    with pytest.raises(ValueError, match="single plane"):
        structure_distance(a, b)


@pytest.mark.parametrize(
    ("a", "kwargs", "message"),
    [
        ([], {}, "no contour planes"),
        (
            [ContourPlane(0.0, (rect(0, 1, 0, 1),)), ContourPlane(0.0, (rect(2, 3, 0, 1),))],
            {},
            "distinct",
        ),
        ([ContourPlane(0.0, (np.zeros((2, 2)),))], {"single_plane_thickness": 1.0}, "n >= 3"),
    ],
)
def test_invalid_input(a: Planes, kwargs: dict[str, Any], message: str) -> None:
    b = box((0, 1), (0, 1), (5, 6), 1.0)
    with pytest.raises(ValueError, match=message):
        structure_distance(a, b, **kwargs)


def test_repeated_closing_vertex_is_harmless() -> None:
    square = rect(-5, 5, -5, 5)
    closed = np.vstack([square, square[:1]])
    a = [ContourPlane(z, (closed,)) for z in (0.5, 1.5)]
    b = box((-5, 5), (-5, 5), (4, 6), 1.0)
    assert_distance(a, b, 2.0)


# -- implementation limits -------------------------------------------------------------------


CASES: list[tuple[str, Callable[[], tuple[Planes, Planes]]]] = [
    (
        "shell",
        lambda: (
            sphere_planes((0, 0, 0), 8.0, spacing_grid(-24, 24, 1.0)),
            shell_planes((0, 0, 0), 20.0, 12.0, spacing_grid(-24, 24, 1.0)),
        ),
    ),
    (
        "overlap",
        lambda: (
            sphere_planes((0, 0, 0), 10.0, spacing_grid(-12, 12, 1.0)),
            sphere_planes((15, 0, 0), 8.0, spacing_grid(-12, 12, 1.0)),
        ),
    ),
    (
        "identical",
        lambda: (box((0, 10), (0, 10), (0, 10), 1.0), box((0, 10), (0, 10), (0, 10), 1.0)),
    ),
    (
        "touching",
        lambda: (box((-5, 5), (-5, 5), (0, 10), 1.0), box((5, 15), (-2, 2), (3, 4), 0.5)),
    ),
]


@pytest.mark.parametrize("case", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_chunking_does_not_change_the_result(
    case: Callable[[], tuple[Planes, Planes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = case()
    whole = structure_distance(a, b)
    monkeypatch.setattr(geometry, "_CHUNK", 7)
    chunked = structure_distance(a, b)
    assert chunked.mm == whole.mm
    assert chunked.overlap == whole.overlap


def test_large_polygons_are_fast_enough() -> None:
    # A BODY-like outline (2,000 vertices, 100 planes) against a target deep inside it,
    # and against one just outside its surface.
    zs = spacing_grid(-100, 100, 2.0)
    body = [
        ContourPlane(float(z), (circle_polygon(0, 0, 150.0, 2000) * np.array([1.0, 0.7]),))
        for z in zs
    ]
    target = sphere_planes((20, 0, 0), 15.0, spacing_grid(-20, 20, 2.0), 128)
    d = structure_distance(body, target)
    assert d.mm == 0.0 and d.overlap
    outside = sphere_planes((175, 0, 0), 15.0, spacing_grid(-20, 20, 2.0), 128)
    d = structure_distance(body, outside)
    # The ellipse's vertex at angle 0 is at x = 150, the sphere's at x = 175 - 15.
    assert d.mm == pytest.approx(10.0, abs=EXACT)
