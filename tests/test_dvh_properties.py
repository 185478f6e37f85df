"""Property-based tests of the DVH model's invariants (hypothesis).

Random structures and dose fields, each property checked against a quantity computed
here, independently of :mod:`rtcheck.dvh`:

- **Structures** are stacks of star-shaped polygons (random radii at jittered, sorted
  angles: always simple), some with a hole (a smaller star well inside the outer one)
  and some with a separate island, on random plane stacks: either on CT slices with
  random spacing, some of them without a contour (ends of stacks), or on the
  structure's own planes with a spacing that changes slowly (no gap wide enough to end a
  stack, docs/dvh.md "Gaps").
- **Volumes** come from :class:`tests.fixtures.analytic.SlabModel` (shoelace areas signed
  by even-odd nesting, its own point-in-polygon test) with slab bounds worked out here
  from the rule of docs/dvh.md: halfway to the neighbouring slice, an end plane
  mirroring its other half-gap (flat end caps). For the shape model only what docs/dvh.md
  guarantees is asserted: its volume is the integral of the area curve plus the flat
  caps, so a stack of equal areas (prisms, even with outlines moving from plane to
  plane) has exactly the slab volume, and an area quadratic or linear in z (scaled copies
  of one polygon) has the closed-form integral of that polynomial.
- **Doses**: smooth random fields (a floor, a linear ramp and Gaussian bumps), uniform
  fields, linear fields. For a linear field along z the mean dose is the dose at the
  volume's centroid to rounding (each layer is sampled on equal sub-slices whose weights
  sum to its exact area). Along x it is so only to the accuracy of the in-plane coverage
  integral (docs/dvh.md section 2: exact along each scan line, two Gauss-Legendre scan
  lines per cell row, so a row holding a polygon vertex is not integrated exactly); on
  these polygons it stays within 1e-4 of the dose range over the structure, asserted
  within 1e-3. The minimum and maximum of a linear field are its extremes over the prism
  vertices (docs/dvh.md section 4), exactly.

Every ``@settings`` is derandomised (the same examples on every run, so CI is
reproducible; the seed comes from each test's source, so editing a test draws new ones),
keeps no example database (nothing is written to the repository) and prints the
``@reproduce_failure`` blob of a failure. The faults listed in docs/reliability.md were
found by running a copy of this file with ``derandomize=False`` and ten times the
examples; do that after changing the DVH model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtcheck.dvh import DVH, ContourPlane, DoseGrid, compute_dvh
from tests.fixtures.analytic import MM3_PER_CC, SlabModel

#: Every test runs with the C kernel of the DVH sampler and with its NumPy code.
pytestmark = pytest.mark.usefixtures("dvh_kernel")

FloatArray = np.ndarray
#: Angular jitter of a star polygon's vertices, as a share of the angular step: under
#: one half, so the angles stay sorted and the polygon simple.
JITTER = 0.3
#: Fractions of the volume at which Dx and DCx are read.
FRACTIONS = np.linspace(0.0, 1.0, 41)[1:-1]
MODELS = ("slab", "shape")


def examples(n: int) -> settings:
    """Hypothesis settings: ``n`` examples, reproducible, no deadline, no database."""
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# -- polygons ---------------------------------------------------------------------------------


def star_polygon(
    cx: float, cy: float, radii: Sequence[float], jitter: Sequence[float], clockwise: bool
) -> FloatArray:
    """A polygon star-shaped about ``(cx, cy)``: vertex k at angle ``(k + jitter_k) * step``."""
    n = len(radii)
    angles = 2 * math.pi / n * (np.arange(n) + np.asarray(jitter, dtype=np.float64))
    r = np.asarray(radii, dtype=np.float64)
    pts = np.column_stack([cx + r * np.cos(angles), cy + r * np.sin(angles)])
    return pts[::-1].copy() if clockwise else pts


def distance_to_outline(poly: FloatArray, cx: float, cy: float) -> float:
    """Smallest distance (mm) from ``(cx, cy)`` to the edges of a closed polygon."""
    p0 = poly - np.array([cx, cy])
    d = np.roll(p0, -1, axis=0) - p0
    t = np.clip(-(p0 * d).sum(axis=1) / (d * d).sum(axis=1), 0.0, 1.0)
    return float(np.hypot(*(p0 + t[:, None] * d).T).min())


@st.composite
def stars(
    draw: st.DrawFn, r_min: float, r_max: float, n_min: int = 6, n_max: int = 12
) -> tuple[list[float], list[float], bool]:
    """Radii, angular jitters and orientation of a star polygon."""
    n = draw(st.integers(n_min, n_max))
    radii = draw(st.lists(st.floats(r_min, r_max), min_size=n, max_size=n))
    jitter = draw(st.lists(st.floats(-JITTER, JITTER), min_size=n, max_size=n))
    return radii, jitter, draw(st.booleans())


@st.composite
def plane_polygons(draw: st.DrawFn, cx: float, cy: float) -> tuple[FloatArray, ...]:
    """An outer star about ``(cx, cy)``, maybe a hole well inside it, maybe an island."""
    radii, jitter, cw = draw(stars(3.0, 15.0))
    outer = star_polygon(cx, cy, radii, jitter, cw)
    polygons = [outer]
    if draw(st.booleans()):
        h_radii, h_jitter, h_cw = draw(stars(0.3, 1.0, 5, 10))
        # Every hole vertex within 80 % of the outer outline's nearest approach.
        scale = 0.8 * distance_to_outline(outer, cx, cy) / max(h_radii)
        polygons.append(star_polygon(cx, cy, [scale * r for r in h_radii], h_jitter, h_cw))
    if draw(st.booleans()):
        i_radii, i_jitter, i_cw = draw(stars(1.0, 4.0, 5, 8))
        angle = draw(st.floats(0.0, 2 * math.pi))
        reach = max(radii) + max(i_radii) + 1.0  # the two discs holding them are apart
        ix, iy = cx + reach * math.cos(angle), cy + reach * math.sin(angle)
        polygons.append(star_polygon(ix, iy, i_radii, i_jitter, i_cw))
    return tuple(polygons)


# -- plane stacks and their exact slab bounds -------------------------------------------------


def halfway_bounds(slices: FloatArray, zs: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Slab bounds of planes lying on ``slices``: halfway to the neighbouring slice, an end
    slice mirroring its other half-gap (docs/dvh.md, "Gaps" and the flat end caps)."""
    lo, hi = np.empty(zs.size), np.empty(zs.size)
    for k, z in enumerate(zs):
        (j,) = np.flatnonzero(slices == z)
        below = (z - slices[j - 1]) / 2 if j > 0 else None
        above = (slices[j + 1] - z) / 2 if j + 1 < slices.size else None
        lo[k] = z - (below if below is not None else above)
        hi[k] = z + (above if above is not None else below)
    return lo, hi


@dataclass(frozen=True)
class Stack:
    """A structure, the CT slices it was drawn on (None: its own planes decide) and its
    exact slab bounds."""

    planes: tuple[ContourPlane, ...]
    slices: FloatArray | None
    lo: FloatArray
    hi: FloatArray

    @property
    def model(self) -> SlabModel:
        """The independent slab model of the stack."""
        return SlabModel(self.planes, self.lo, self.hi)

    def translated(self, shift: Sequence[float]) -> Stack:
        """The same stack moved by ``shift`` (mm)."""
        sx, sy, sz = shift
        planes = tuple(
            ContourPlane(p.z + sz, tuple(q + np.array([sx, sy]) for q in p.polygons))
            for p in self.planes
        )
        slices = None if self.slices is None else self.slices + sz
        return Stack(planes, slices, self.lo + sz, self.hi + sz)

    def dvh(self, grid: DoseGrid, model: str, **options: int) -> DVH:
        """``compute_dvh`` of the stack."""
        return compute_dvh(
            self.planes, grid, slice_positions=self.slices, between_planes=model, **options
        )


@st.composite
def slice_stacks(draw: st.DrawFn, min_slices: int = 2) -> tuple[FloatArray, FloatArray, bool]:
    """Slice positions, the planes holding a contour, and whether the slices are known.

    With the CT known, slices are 1-3.5 mm apart at random and any of them may lack a
    contour (a gap ends a stack); without it, every slice holds a contour and each gap
    (1-3.5 mm) is 0.8-1.25 times the one before, so none ends a stack.
    """
    n = draw(st.integers(min_slices, 10))
    z0 = draw(st.floats(-60.0, 60.0))
    with_ct = draw(st.booleans())
    if with_ct:
        gaps = draw(st.lists(st.floats(1.0, 3.5), min_size=n - 1, max_size=n - 1))
        contoured = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        contoured[draw(st.integers(0, n - 1))] = True
    else:
        gaps = [draw(st.floats(1.0, 3.5))]
        for ratio in draw(st.lists(st.floats(0.8, 1.25), min_size=n - 2, max_size=n - 2)):
            gaps.append(min(max(gaps[-1] * ratio, 1.0), 3.5))
        contoured = [True] * n
    slices = z0 + np.concatenate([[0.0], np.cumsum(gaps)])
    return slices, slices[np.asarray(contoured)], with_ct


def make_stack(
    slices: FloatArray, zs: FloatArray, with_ct: bool, planes: list[ContourPlane]
) -> Stack:
    lo, hi = halfway_bounds(slices, zs)
    return Stack(tuple(planes), slices if with_ct else None, lo, hi)


@st.composite
def structures(draw: st.DrawFn, prism: bool = False) -> Stack:
    """A random structure. ``prism``: one polygon set on every plane, each plane's copy
    moved in-plane by up to 6 mm (so the shape model interpolates some outlines)."""
    slices, zs, with_ct = draw(slice_stacks())
    cx, cy = draw(st.floats(-20.0, 20.0)), draw(st.floats(-20.0, 20.0))
    planes = []
    if prism:
        polygons = draw(plane_polygons(cx, cy))
        for z in zs:
            dx, dy = draw(st.floats(-6.0, 6.0)), draw(st.floats(-6.0, 6.0))
            moved = tuple(p + np.array([dx, dy]) for p in polygons)
            planes.append(ContourPlane(float(z), moved))
    else:
        for z in zs:
            dx, dy = draw(st.floats(-2.0, 2.0)), draw(st.floats(-2.0, 2.0))
            planes.append(ContourPlane(float(z), draw(plane_polygons(cx + dx, cy + dy))))
    return make_stack(slices, zs, with_ct, planes)


# -- dose grids and fields --------------------------------------------------------------------


Field = Callable[[FloatArray, FloatArray, FloatArray], FloatArray]


@dataclass(frozen=True)
class GridSpec:
    """Node spacing (mm) and where the nodes fall within a spacing (0-1) on each axis."""

    spacing: tuple[float, float, float]
    phase: tuple[float, float, float]

    def around(self, stack: Stack, margin: int = 2) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Axes whose nodes reach ``margin`` spacings beyond the structure on every side,
        so the structure lies inside the nodes' range (not in the outer half voxel)."""
        verts = np.concatenate([p for plane in stack.planes for p in plane.polygons])
        bounds = [
            (float(verts[:, 0].min()), float(verts[:, 0].max())),
            (float(verts[:, 1].min()), float(verts[:, 1].max())),
            (float(stack.lo.min()), float(stack.hi.max())),
        ]
        axes = []
        for (lo, hi), h, f in zip(bounds, self.spacing, self.phase, strict=True):
            k0, k1 = math.floor(lo / h - f) - margin, math.ceil(hi / h - f) + margin
            axes.append((np.arange(k0, k1 + 1) + f) * h)
        return axes[0], axes[1], axes[2]


@st.composite
def grid_specs(draw: st.DrawFn) -> GridSpec:
    h_xy = draw(st.floats(1.5, 4.0))
    spacing = (h_xy, draw(st.sampled_from([h_xy, h_xy * 1.25])), draw(st.floats(1.5, 4.0)))
    phase = (draw(st.floats(0.0, 1.0)), draw(st.floats(0.0, 1.0)), draw(st.floats(0.0, 1.0)))
    return GridSpec(spacing, phase)


@dataclass(frozen=True)
class SmoothField:
    """``floor + g . (r - centre) + sum of Gaussian bumps`` (Gy, r in mm)."""

    floor: float
    gradient: tuple[float, float, float]
    centre: tuple[float, float, float]
    bumps: tuple[tuple[float, float, float, float, float], ...]  # x, y, z, sigma, amplitude

    def __call__(self, x: FloatArray, y: FloatArray, z: FloatArray) -> FloatArray:
        (gx, gy, gz), (cx, cy, cz) = self.gradient, self.centre
        dose = self.floor + gx * (x - cx) + gy * (y - cy) + gz * (z - cz)
        for bx, by, bz, sigma, amp in self.bumps:
            r2 = (x - bx) ** 2 + (y - by) ** 2 + (z - bz) ** 2
            dose = dose + amp * np.exp(-r2 / (2 * sigma * sigma))
        return np.asarray(dose, dtype=np.float64)


@st.composite
def smooth_fields(draw: st.DrawFn, stack: Stack) -> SmoothField:
    """A field with a ramp and up to three bumps near the structure, positive over it."""
    verts = np.concatenate([p for plane in stack.planes for p in plane.polygons])
    centre = (
        float(verts[:, 0].mean()),
        float(verts[:, 1].mean()),
        float((stack.lo.min() + stack.hi.max()) / 2),
    )
    gradient = tuple(draw(st.floats(-1.0, 1.0)) for _ in range(3))
    n = draw(st.integers(0, 3))
    bumps = tuple(
        (
            centre[0] + draw(st.floats(-15.0, 15.0)),
            centre[1] + draw(st.floats(-15.0, 15.0)),
            centre[2] + draw(st.floats(-10.0, 10.0)),
            draw(st.floats(2.0, 10.0)),
            draw(st.floats(0.0, 40.0)),
        )
        for _ in range(n)
    )
    reach = 60.0  # beyond any node of the grids here: the field stays positive
    floor = draw(st.floats(0.5, 20.0)) + reach * sum(abs(g) for g in gradient)
    return SmoothField(floor, (gradient[0], gradient[1], gradient[2]), centre, bumps)


def grid_of(axes: tuple[FloatArray, FloatArray, FloatArray], field: Field) -> DoseGrid:
    """The grid of ``field`` on ``axes`` (x, y, z)."""
    x, y, z = axes
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    return DoseGrid(x, y, z, field(xx, yy, zz))


# -- DVH read-outs ----------------------------------------------------------------------------


def readouts(dvh: DVH) -> dict[str, FloatArray]:
    """Every summary a DVH gives: extremes and mean, Dx and DCx at :data:`FRACTIONS`."""
    total = dvh.volume_inside_cc
    return {
        "min": np.array([dvh.min_gy]),
        "mean": np.array([dvh.mean_gy]),
        "max": np.array([dvh.max_gy]),
        "D": np.array([dvh.dose_at_volume(f * total) for f in FRACTIONS]),
        "DC": np.array([dvh.dose_at_coldest_volume(f * total) for f in FRACTIONS]),
    }


# -- volume -----------------------------------------------------------------------------------


@examples(150)
@given(structures(), grid_specs())
def test_slab_volume_is_areas_times_slab_thickness(stack: Stack, spec: GridSpec) -> None:
    """Slab model: the DVH's volume, the histogram's total and the cumulative DVH's first
    point are the exact slab volume, sum of even-odd areas times slab thicknesses."""
    exact = stack.model.volume_mm3 / MM3_PER_CC
    dvh = stack.dvh(grid_of(spec.around(stack), lambda x, y, z: 10.0 + 0 * x), "slab")
    assert dvh.volume_cc == pytest.approx(exact, rel=1e-9)
    assert dvh.volume_outside_cc == 0.0 and dvh.volume_inside_cc == pytest.approx(exact, rel=1e-9)
    assert float(dvh.differential_cc.sum()) == pytest.approx(exact, rel=1e-9)
    assert dvh.cumulative()[1][0] == pytest.approx(exact, rel=1e-9)


@examples(40)
@given(structures(prism=True), grid_specs())
def test_shape_volume_of_equal_areas_is_the_slab_volume(stack: Stack, spec: GridSpec) -> None:
    """Shape model, one polygon set on every plane, moved from plane to plane: the area
    curve is flat, so the volume (and the histogram's total) is area times thickness
    however the outlines are interpolated between the planes."""
    exact = stack.model.volume_mm3 / MM3_PER_CC
    dvh = stack.dvh(grid_of(spec.around(stack), lambda x, y, z: 10.0 + 0 * x), "shape")
    assert dvh.volume_cc == pytest.approx(exact, rel=1e-9)
    assert float(dvh.differential_cc.sum()) == pytest.approx(exact, rel=1e-9)
    assert dvh.volume_outside_cc == 0.0


@dataclass(frozen=True)
class Profile:
    """``q(z) = 1 - ((z - vertex) / radius)**2`` (sphere-like) or ``1 + slope * (z - z0)``."""

    kind: str
    a: float  # the vertex, or z0
    b: float  # the radius, or the slope

    def __call__(self, z: float) -> float:
        if self.kind == "quadratic":
            return 1.0 - ((z - self.a) / self.b) ** 2
        return 1.0 + self.b * (z - self.a)

    def integral(self, z0: float, z1: float) -> float:
        """Closed-form integral of q from z0 to z1."""
        if self.kind == "quadratic":
            cube = ((z1 - self.a) ** 3 - (z0 - self.a) ** 3) / 3
            return (z1 - z0) - cube / self.b**2
        return (z1 - z0) + self.b * ((z1 - self.a) ** 2 - (z0 - self.a) ** 2) / 2


@st.composite
def scaled_stacks(draw: st.DrawFn) -> tuple[Stack, Profile, float]:
    """One polygon set scaled about its centre so that plane areas follow a polynomial
    profile q(z) (a concave parabola whose top lies between the second and the last but
    one plane, or a line); the stack is one stack of at least 4 planes. Returns the
    stack, q, and the unscaled polygon set's area."""
    slices, _, with_ct = draw(slice_stacks(min_slices=4))
    zs = slices  # every slice holds a contour: one stack
    if not draw(st.booleans()):
        vertex = zs[1] + draw(st.floats(0.0, 1.0)) * (zs[-2] - zs[1])
        far = max(vertex - zs[0], zs[-1] - vertex)
        profile = Profile("quadratic", float(vertex), far * draw(st.floats(1.05, 3.0)))
    else:
        rise = draw(st.floats(-0.8, 3.0)) / float(zs[-1] - zs[0])
        profile = Profile("linear", float(zs[0]), rise)
    cx, cy = draw(st.floats(-20.0, 20.0)), draw(st.floats(-20.0, 20.0))
    base = draw(plane_polygons(cx, cy))
    planes = []
    for z in zs:
        s = math.sqrt(profile(float(z)))
        planes.append(ContourPlane(float(z), tuple((p - [cx, cy]) * s + [cx, cy] for p in base)))
    base_area = SlabModel([ContourPlane(0.0, base)], [0.0], [1.0]).volume_mm3
    return make_stack(slices, zs, with_ct, planes), profile, base_area


@examples(40)
@given(scaled_stacks(), grid_specs())
def test_shape_volume_of_a_polynomial_area_is_its_integral(
    case: tuple[Stack, Profile, float], spec: GridSpec
) -> None:
    """Shape model, plane areas A q(z) with q quadratic (sphere-like) or linear: the area
    curve reproduces q exactly (docs/dvh.md 1b), so the volume is A times the integral
    of q between the end planes plus the two flat half-spacing caps of the end planes'
    own areas. (The slab volume differs from it by the curvature of q.)"""
    stack, q, area = case
    z0, z1 = float(stack.planes[0].z), float(stack.planes[-1].z)
    caps = q(z0) * (z0 - stack.lo[0]) + q(z1) * (stack.hi[-1] - z1)
    exact = area * (q.integral(z0, z1) + caps) / MM3_PER_CC
    # Precondition of the rule: planes farther apart than a sub-layer is thick (docs/dvh.md
    # "Where the outline is interpolated"), else they are left as slabs.
    sub_layer = max((stack.model.volume_mm3 / 100_000) ** (1 / 3), 0.25)
    assert np.diff([p.z for p in stack.planes]).min() > sub_layer
    dvh = stack.dvh(grid_of(spec.around(stack), lambda x, y, z: 10.0 + 0 * x), "shape")
    assert dvh.volume_cc == pytest.approx(exact, rel=1e-9)
    assert float(dvh.differential_cc.sum()) == pytest.approx(exact, rel=1e-9)


# -- the histogram and its read-outs -----------------------------------------------------------


@st.composite
def dosed(draw: st.DrawFn) -> tuple[Stack, DoseGrid]:
    """A structure in a smooth random field."""
    stack = draw(structures())
    field = draw(smooth_fields(stack))
    return stack, grid_of(draw(grid_specs()).around(stack), field)


@pytest.mark.parametrize("model", MODELS)
@examples(30)
@given(case=dosed())
def test_cumulative_dvh_and_dose_read_outs_are_monotone(
    case: tuple[Stack, DoseGrid], model: str
) -> None:
    """The cumulative DVH never rises with dose; Dx never rises with x, DCx never falls;
    every read-out lies between the minimum and the maximum, and so does the mean; V at
    Dx is at least x (Dx is the highest dose that x receives)."""
    stack, grid = case
    dvh = stack.dvh(grid, model)
    total = dvh.volume_inside_cc
    assert total > 0
    span = dvh.max_gy - dvh.min_gy
    tol = 1e-9 * max(span, 1.0)
    _doses, volumes = dvh.cumulative()
    assert np.all(np.diff(volumes) <= 1e-12 * total)
    assert volumes[0] == pytest.approx(total, rel=1e-12) and volumes[-1] == 0.0
    steps = np.linspace(dvh.min_gy - 1.0, dvh.max_gy + 1.0, 301)
    v_at = np.array([dvh.volume_at_dose(float(d)) for d in steps])
    assert np.all(np.diff(v_at) <= 1e-12 * total)
    r = readouts(dvh)
    assert np.all(np.diff(r["D"]) <= tol), "Dx rose with x"
    assert np.all(np.diff(r["DC"]) >= -tol), "DCx fell with x"
    assert dvh.min_gy <= dvh.mean_gy + tol and dvh.mean_gy <= dvh.max_gy + tol
    for values in (r["D"], r["DC"]):
        assert np.all(values >= dvh.min_gy) and np.all(values <= dvh.max_gy)
    for f, d in zip(FRACTIONS, r["D"], strict=True):
        assert dvh.volume_at_dose(float(d)) >= f * total * (1 - 1e-9)


# -- invariance and linearity ------------------------------------------------------------------


@st.composite
def translated(draw: st.DrawFn) -> tuple[Stack, Stack, DoseGrid, DoseGrid]:
    """A structure in a field and the same moved together with the field: by whole voxels
    on the same grid nodes (the field re-evaluated there), or by any offset, the grid's
    nodes moving along."""
    stack = draw(structures())
    field = draw(smooth_fields(stack))
    spec = draw(grid_specs())
    if draw(st.booleans()):
        steps = [draw(st.integers(-3, 3)) for _ in range(3)]
        shift = tuple(k * h for k, h in zip(steps, spec.spacing, strict=True))
        moved = stack.translated(shift)
        x, y, z = spec.around(stack, margin=2 + 3)  # room for both
        before = grid_of((x, y, z), field)
        after = grid_of(
            (x, y, z), lambda xx, yy, zz: field(xx - shift[0], yy - shift[1], zz - shift[2])
        )
    else:
        shift = tuple(draw(st.floats(-100.0, 100.0)) for _ in range(3))
        moved = stack.translated(shift)
        x, y, z = spec.around(stack)
        before = grid_of((x, y, z), field)
        after = replace(before, x=x + shift[0], y=y + shift[1], z=z + shift[2])
    return stack, moved, before, after


@pytest.mark.parametrize("model", MODELS)
@examples(25)
@given(case=translated())
def test_moving_structure_and_dose_together_changes_nothing(
    case: tuple[Stack, Stack, DoseGrid, DoseGrid], model: str
) -> None:
    """Volume, extremes and mean are those of the structure before it moved, to rounding.
    Dx and DCx agree within 1e-4 of the dose range over the structure, plus two bin
    widths when the whole-voxel move brought other doses into the grid (the histogram's
    bins span the grid's dose range, docs/dvh.md section 4): a sample lying exactly on a
    plane of grid nodes takes the dose gradient of the cell on one side or the other
    after rounding (the dose is continuous there, its gradient is not), and the
    gradient sets how far the sample's volume is spread in dose (docs/dvh.md section 3).
    For the shape model "to rounding" is 1e-6 of the dose range: a raster node lying on
    an interpolated outline to rounding may fall on either side once the coordinates are
    shifted, which moves the traced outline by a raster cell there (the layer's area, and
    so the volume, stay exact); seen: a mean 3e-8 of itself apart."""
    stack, moved, grid, moved_grid = case
    a, b = stack.dvh(grid, model), moved.dvh(moved_grid, model)
    assert b.volume_cc == pytest.approx(a.volume_cc, rel=1e-9)
    assert b.volume_outside_cc == a.volume_outside_cc == 0.0
    span = max(a.max_gy - a.min_gy, 1e-3)
    exact = (1e-9 if model == "slab" else 1e-6) * max(span, 1.0)
    widths = [float(d.bin_edges[1] - d.bin_edges[0]) for d in (a, b)]
    binned = 1e-4 * span + (0 if grid.dose_range == moved_grid.dose_range else 2 * max(widths))
    for name, values in readouts(a).items():
        tol = binned if name in ("D", "DC") else exact
        np.testing.assert_allclose(readouts(b)[name], values, rtol=0, atol=tol, err_msg=name)


@pytest.mark.parametrize("model", MODELS)
@examples(25)
@given(case=dosed(), c=st.floats(0.05, 20.0))
def test_scaling_the_dose_scales_every_dose_read_out(
    case: tuple[Stack, DoseGrid], c: float, model: str
) -> None:
    """Dose times c > 0: minimum, mean, maximum, Dx and DCx times c; V(c d) = V(d)."""
    stack, grid = case
    a = stack.dvh(grid, model)
    b = stack.dvh(replace(grid, dose=grid.dose * c), model)
    assert b.volume_cc == a.volume_cc
    for name, values in readouts(a).items():
        np.testing.assert_allclose(readouts(b)[name], c * values, rtol=1e-9, err_msg=name)
    # V(c d) = V(d) inside the dose range; not for a field (nearly) uniform over the
    # structure, where c d and the scaled minimum differ by rounding on either side.
    if a.max_gy - a.min_gy > 1e-9 * max(abs(a.max_gy), 1.0):
        for d in np.linspace(a.min_gy, a.max_gy, 11)[1:-1]:
            # To rounding of the whole volume (a V near the maximum dose is a small part
            # of it, and its rounding is that of the histogram's sum).
            assert b.volume_at_dose(c * d) == pytest.approx(
                a.volume_at_dose(d), rel=1e-9, abs=1e-9 * a.volume_inside_cc
            )


@pytest.mark.parametrize("model", MODELS)
@examples(20)
@given(stack=structures(), spec=grid_specs(), dose=st.floats(0.01, 100.0))
def test_uniform_dose_is_every_read_out(
    stack: Stack, spec: GridSpec, dose: float, model: str
) -> None:
    """A uniform dose d: minimum, mean, maximum, every Dx and DCx are d; the whole
    volume receives just under d, none receives more. (V at exactly d is the step of
    the cumulative DVH: trilinear rounding can put the minimum 1 ulp below d, and V(d)
    is then read inside the histogram's last bin.)"""
    dvh = stack.dvh(grid_of(spec.around(stack), lambda x, y, z: dose + 0 * x), model)
    for name, values in readouts(dvh).items():
        np.testing.assert_allclose(values, dose, rtol=1e-12, err_msg=name)
    assert dvh.volume_at_dose(dose * (1 - 1e-9)) == dvh.volume_inside_cc > 0
    assert dvh.volume_at_dose(dose * (1 + 1e-9)) == 0.0


@pytest.mark.parametrize(
    ("axis", "model", "prism"),
    [("z", "slab", False), ("x", "slab", False), ("z", "shape", True)],
    ids=["z-slab", "x-slab", "z-shape-prisms"],
)
@examples(25)
@given(
    data=st.data(),
    spec=grid_specs(),
    slope=st.floats(0.05, 3.0),
    falling=st.booleans(),
    d0=st.floats(0.0, 50.0),
)
def test_linear_field_mean_is_the_dose_at_the_centroid(
    data: st.DataObject,
    spec: GridSpec,
    slope: float,
    falling: bool,
    d0: float,
    axis: str,
    model: str,
    prism: bool,
) -> None:
    """Linear dose along z or x: the mean is the dose at the volume's centroid (along x
    to the coverage integral's accuracy, see the module docstring); the minimum and the
    maximum are the field's extremes over the prism vertices. The shape model on prisms
    only (equal areas: its volume lies along z as the slab model's, so has its centroid
    z; elsewhere its centroid is not known independently)."""
    stack = data.draw(structures(prism=prism))
    g = -slope if falling else slope
    column = {"x": 0, "z": 2}[axis]
    slab = stack.model
    corners = slab.prism_vertices()[:, column]
    reach = float(np.ptp(corners))
    base = d0 + slope * reach + 1.0  # positive over the structure

    def field(x: FloatArray, y: FloatArray, z: FloatArray) -> FloatArray:
        r = {"x": x, "z": z}[axis]
        return np.asarray(base + g * (r - corners.mean()), dtype=np.float64)

    def at(r: FloatArray) -> FloatArray:
        return np.asarray(base + g * (r - corners.mean()), dtype=np.float64)

    dvh = stack.dvh(grid_of(spec.around(stack), field), model)
    span = slope * reach
    tol = 1e-3 * span if axis == "x" else 1e-9 * max(span, 1.0)
    assert dvh.mean_gy == pytest.approx(float(at(slab.centroid[column])), abs=tol)
    assert dvh.min_gy == pytest.approx(float(at(corners).min()), abs=1e-9 * base)
    assert dvh.max_gy == pytest.approx(float(at(corners).max()), abs=1e-9 * base)
