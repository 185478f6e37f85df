"""Dose-volume histograms from planar contours and a dose grid: the pure NumPy core.

Arrays in, arrays out: nothing here knows about DICOM, files or printing.

Geometry model (the Nelms 2015 convention, documented in ``docs/dvh.md``)
--------------------------------------------------------------------------
A structure is a stack of axial planes, each holding one or more closed polygons that
combine by the even-odd rule (a contour inside another is a hole, one inside a hole an
island). Each plane is extruded into a slab that reaches halfway to the neighbouring
planes of the structure; the first and last planes extend half a spacing beyond
themselves (flat end caps). The structure volume is therefore exactly
``sum(area_k * thickness_k)`` with polygon areas from the shoelace formula.

That is the slab model (``between_planes="slab"``). The default model
(``between_planes="shape"``, :mod:`rtcheck.dvh.interpolation`) starts from it and lets the
structure change smoothly between planes: the cross-section area follows one smooth curve
through the planes' areas, and where the outline changes much (the end of a stack, a
large change of size or position) the outline is interpolated too. Both models end every
stack with flat caps.

When the positions of all slices of the structure set are known (``slice_positions``),
a plane whose neighbouring *slice* carries no contour of the structure is an end plane
too: two lesions contoured on slices 10-20 and 40-50 of one ROI are two stacks, not one
long bridge.

Sampling
--------
Each slab is sampled on a lattice aligned with the dose grid: every dose voxel is cut
into ``k x k`` sub-cells in-plane and each slab into sub-slices, with ``k`` chosen so the
structure holds about ``target_samples`` samples (small structures get finer sampling,
at most 1/64 of a voxel). Points inside the polygons are found with a vectorised
even-odd scanline test; their weights are normalised so that every plane's sampled
area equals its exact polygon area. Dose is sampled by trilinear interpolation (exact
for linear fields). Minimum and maximum dose also consider the polygon vertices at the
slab faces, where the extremes of a smooth field over a prism lie.

Samples are accumulated plane by plane into a fine differential histogram (2**16 bins
over the dose grid's range), so memory stays bounded by one plane, and every dose or
volume lookup interpolates linearly inside a bin, never returning a bin edge.

The dose grid covers the box of its voxels, i.e. half a spacing beyond its outer nodes;
inside that outer half voxel the dose of the edge node is used. Structure volume beyond
the box is reported as ``volume_outside_cc`` and excluded from the histogram.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from rtcheck.dvh.extremes import refine_extremes
from rtcheck.dvh.interpolation import shape_layers
from rtcheck.dvh.kernel import active as active_kernel

# The model's types live in rtcheck.dvh.structure (shared with the shape model); they are
# re-exported here, where callers have always found them.
from rtcheck.dvh.structure import PLANE_TOLERANCE_MM as PLANE_TOLERANCE_MM
from rtcheck.dvh.structure import ContourPlane as ContourPlane
from rtcheck.dvh.structure import FloatArray as FloatArray
from rtcheck.dvh.structure import Layer as Layer
from rtcheck.dvh.structure import even_odd_area as even_odd_area
from rtcheck.dvh.structure import points_in_polygon as points_in_polygon
from rtcheck.dvh.structure import polygon_area as polygon_area
from rtcheck.dvh.structure import polygon_edges as polygon_edges

#: Samples a structure is given by default (about 0.3 mm spacing for a 7 cc sphere).
DEFAULT_TARGET_SAMPLES = 100_000
#: Number of bins of the fine differential histogram.
DEFAULT_BINS = 2**16
#: Finest in-plane subdivision of a dose voxel.
MAX_SUBDIVISION = 64
#: Relative disagreement between a layer's polygon area and the area its outline covers
#: (even-odd) beyond which its contours are ambiguous (and at least four lattice cells
#: plus half a cell per edge). A self-crossing or overlapping outline is off by its
#: whole crossed part: 40-100 % in the tests.
AREA_AGREEMENT = 0.10

MM3_PER_CC = 1000.0


@dataclass(frozen=True)
class DoseGrid:
    """Dose in Gy on an axis-aligned grid of nodes, every axis ascending.

    Parameters
    ----------
    x, y
        Node coordinates in mm (patient coordinates), uniformly spaced, ascending.
    z
        Plane coordinates in mm, ascending, spacing may vary.
    dose
        Dose in Gy, shape ``(len(z), len(y), len(x))``.
    """

    x: FloatArray
    y: FloatArray
    z: FloatArray
    dose: NDArray[np.floating]

    def __post_init__(self) -> None:
        for name in ("x", "y", "z"):
            axis = np.ascontiguousarray(getattr(self, name), dtype=np.float64)
            if axis.ndim != 1 or axis.size < 2:
                raise ValueError(f"dose grid axis {name} needs at least two nodes")
            if not np.all(np.isfinite(axis)) or not np.all(np.diff(axis) > 0):
                raise ValueError(f"dose grid axis {name} must be finite and strictly ascending")
            object.__setattr__(self, name, axis)
        if self.dose.shape != (self.z.size, self.y.size, self.x.size):
            raise ValueError(
                f"dose array shape {self.dose.shape} does not match the axes "
                f"({self.z.size}, {self.y.size}, {self.x.size})"
            )
        for name in ("x", "y"):
            steps = np.diff(getattr(self, name))
            if np.ptp(steps) > 1e-6 * max(1.0, float(steps.mean())):
                raise ValueError(f"dose grid axis {name} must be uniformly spaced")

    @property
    def dx(self) -> float:
        """In-plane spacing along x (mm)."""
        return float(self.x[1] - self.x[0])

    @property
    def dy(self) -> float:
        """In-plane spacing along y (mm)."""
        return float(self.y[1] - self.y[0])

    @cached_property
    def extent(self) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float]]:
        """Box covered by the voxels: ``((xlo, xhi), (ylo, yhi), (zlo, zhi))`` in mm."""
        return (
            _axis_extent(self.x),
            _axis_extent(self.y),
            _axis_extent(self.z),
        )

    @cached_property
    def inverse_z_steps(self) -> FloatArray:
        """``1 / (z[k + 1] - z[k])`` for every pair of neighbouring planes (1/mm)."""
        steps: FloatArray = 1.0 / np.diff(self.z)
        return steps

    @cached_property
    def dose_f64(self) -> FloatArray:
        """The dose as one C-contiguous float64 array (the C sampler reads it so)."""
        dose: FloatArray = np.ascontiguousarray(self.dose, dtype=np.float64)
        return dose

    @cached_property
    def uniform_axes(self) -> tuple[bool, bool, bool]:
        """Whether each axis (x, y, z) is uniformly spaced, as :func:`_axis_weights` tests."""
        return (_uniform(self.x), _uniform(self.y), _uniform(self.z))

    @cached_property
    def dose_range(self) -> tuple[float, float]:
        """Lowest and highest dose of the grid (Gy)."""
        return float(np.min(self.dose)), float(np.max(self.dose))

    def interpolate(self, points: NDArray[np.floating]) -> FloatArray:
        """Trilinear dose at points ``(n, 3)`` in mm; NaN outside the grid's box."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        compiled = active_kernel()
        if compiled is not None:
            result = np.empty(pts.shape[0])
            compiled.trilinear(
                self.dose_f64,
                self.x,
                self.y,
                self.z,
                *self.uniform_axes,
                tuple(v for pair in self.extent for v in pair),
                np.ascontiguousarray(pts),
                result,
            )
            return result
        (xlo, xhi), (ylo, yhi), (zlo, zhi) = self.extent
        inside = (
            (pts[:, 0] >= xlo)
            & (pts[:, 0] <= xhi)
            & (pts[:, 1] >= ylo)
            & (pts[:, 1] <= yhi)
            & (pts[:, 2] >= zlo)
            & (pts[:, 2] <= zhi)
        )
        out = np.full(pts.shape[0], np.nan)
        if not inside.any():
            return out
        p = pts[inside]
        ix, fx = _axis_weights(self.x, p[:, 0])
        iy, fy = _axis_weights(self.y, p[:, 1])
        iz, fz = _axis_weights(self.z, p[:, 2])
        d = self.dose
        c00 = d[iz, iy, ix] * (1 - fx) + d[iz, iy, ix + 1] * fx
        c01 = d[iz, iy + 1, ix] * (1 - fx) + d[iz, iy + 1, ix + 1] * fx
        c10 = d[iz + 1, iy, ix] * (1 - fx) + d[iz + 1, iy, ix + 1] * fx
        c11 = d[iz + 1, iy + 1, ix] * (1 - fx) + d[iz + 1, iy + 1, ix + 1] * fx
        out[inside] = (c00 * (1 - fy) + c01 * fy) * (1 - fz) + (c10 * (1 - fy) + c11 * fy) * fz
        return out


@dataclass(frozen=True)
class DVH:
    """Differential dose-volume histogram of one structure, with exact summary values.

    The histogram covers the part of the structure inside the dose grid. Volumes are
    in cc, doses in Gy. ``min_gy``, ``mean_gy`` and ``max_gy`` are NaN when no part of
    the structure lies inside the dose grid.
    """

    bin_edges: FloatArray
    differential_cc: FloatArray
    volume_cc: float
    volume_outside_cc: float
    min_gy: float
    mean_gy: float
    max_gy: float
    samples: int = 0
    notes: tuple[str, ...] = field(default=())
    #: z (mm) of planes whose polygon area disagrees with the area they cover by the
    #: even-odd rule: a contour crossing itself, or contours overlapping.
    ambiguous_planes: tuple[float, ...] = ()

    @property
    def volume_inside_cc(self) -> float:
        """Volume of the structure inside the dose grid (cc); 0 when its histogram is empty.

        The difference of two sums over the same samples: the rounding residue a
        structure wholly outside the grid can leave (1e-15 cc) counts as nothing.
        """
        inside = self.volume_cc - self.volume_outside_cc
        if inside <= 1e-9 * self.volume_cc or not self._has_histogram:
            return 0.0
        return inside

    @cached_property
    def _has_histogram(self) -> bool:
        """Whether any volume was binned (computed once: every lookup asks)."""
        return bool(np.any(self.differential_cc > 0))

    @property
    def complete(self) -> bool:
        """True when the whole structure lies inside the dose grid."""
        return self.volume_outside_cc <= 1e-6 * max(self.volume_cc, 1e-9)

    @cached_property
    def _cumulative(self) -> FloatArray:
        """Volume (cc) receiving at least each bin edge.

        Never rising with dose, never negative, never above ``volume_inside_cc``: the
        histogram's sum may exceed the volume by rounding (1e-12 of it), and a bin may
        hold -1e-14 cc where the spread of two samples cancels; the curve would then rise
        by that much just above the minimum dose or dip below nil near the maximum.
        """
        cum = np.zeros(self.bin_edges.size)
        cum[:-1] = np.cumsum(self.differential_cc[::-1])[::-1]
        cum = np.maximum.accumulate(np.maximum(cum, 0.0)[::-1])[::-1]
        result: FloatArray = np.minimum(cum, self.volume_inside_cc)
        return result

    def volume_at_dose(self, dose_gy: float) -> float:
        """Volume (cc) receiving at least ``dose_gy``."""
        if self.volume_inside_cc <= 0:
            return 0.0
        if dose_gy <= self.min_gy:
            return self.volume_inside_cc
        if dose_gy > self.max_gy:
            return 0.0
        return float(np.interp(dose_gy, self.bin_edges, self._cumulative))

    def dose_at_volume(self, volume_cc: float) -> float:
        """Minimum dose (Gy) to the hottest ``volume_cc`` of the structure.

        The highest dose ``d`` with ``volume_at_dose(d) >= volume_cc``, so a gap in the
        dose distribution resolves to its upper end. ``volume_cc`` at or above the
        structure's volume gives the minimum dose; zero or less the maximum dose.
        Callers that must refuse volumes outside ``(0, volume_inside_cc)`` check first.
        """
        total = self.volume_inside_cc
        if total <= 0:
            return math.nan
        if volume_cc <= 0:
            return self.max_gy
        if volume_cc >= total:
            return self.min_gy
        cum, edges = self._cumulative, self.bin_edges
        # Last edge still covered by at least volume_cc (cum is non-increasing).
        i = int(np.searchsorted(-cum, -volume_cc, side="right")) - 1
        i = min(max(i, 0), edges.size - 2)
        hi_v, lo_v = cum[i], cum[i + 1]
        dose = (
            edges[i] + (hi_v - volume_cc) / (hi_v - lo_v) * (edges[i + 1] - edges[i])
            if hi_v > lo_v
            else edges[i]
        )
        return min(max(float(dose), self.min_gy), self.max_gy)

    def dose_at_coldest_volume(self, volume_cc: float) -> float:
        """Maximum dose (Gy) to the coldest ``volume_cc`` of the structure.

        The lowest dose ``d`` below which ``volume_cc`` lies, so a gap in the dose
        distribution resolves to its lower end.
        """
        total = self.volume_inside_cc
        if total <= 0:
            return math.nan
        if volume_cc <= 0:
            return self.min_gy
        if volume_cc >= total:
            return self.max_gy
        cum, edges = self._cumulative, self.bin_edges
        remaining = total - volume_cc
        # First edge at which no more than the remaining volume is at or above it.
        j = int(np.searchsorted(-cum, -remaining, side="left"))
        j = min(max(j, 1), edges.size - 1)
        hi_v, lo_v = cum[j - 1], cum[j]
        dose = (
            edges[j - 1] + (hi_v - remaining) / (hi_v - lo_v) * (edges[j] - edges[j - 1])
            if hi_v > lo_v
            else edges[j]
        )
        return min(max(float(dose), self.min_gy), self.max_gy)

    def cumulative(self, step_gy: float | None = None) -> tuple[FloatArray, FloatArray]:
        """Cumulative DVH: doses (Gy) and volumes (cc) receiving at least each dose.

        Parameters
        ----------
        step_gy
            Dose step of the returned curve; by default the smallest of 0.01, 0.02,
            0.05, 0.1, 0.2, 0.5 and 1 Gy that keeps the curve under 2,001 points.
        """
        top = self.max_gy if math.isfinite(self.max_gy) else 0.0
        if step_gy is None:
            step_gy = next(
                (s for s in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0) if top / s <= 2000),
                top / 2000 if top > 0 else 1.0,
            )
        n = math.floor(top / step_gy) + 2
        doses = np.arange(n, dtype=np.float64) * step_gy
        total = self.volume_inside_cc
        volumes = np.interp(doses, self.bin_edges, self._cumulative)
        volumes = np.where(doses <= self.min_gy, total, volumes)
        volumes = np.where(doses > self.max_gy, 0.0, volumes)
        return doses, volumes


def _axis_extent(axis: FloatArray) -> tuple[float, float]:
    lo = axis[0] - (axis[1] - axis[0]) / 2
    hi = axis[-1] + (axis[-1] - axis[-2]) / 2
    return float(lo), float(hi)


def _uniform(axis: FloatArray) -> bool:
    """Whether an axis's nodes are uniformly spaced (to 1e-9 of the step)."""
    step = (axis[-1] - axis[0]) / (axis.size - 1)
    return bool(np.allclose(np.diff(axis), step, rtol=1e-9, atol=0.0))


def _axis_weights(axis: FloatArray, coords: FloatArray) -> tuple[NDArray[np.intp], FloatArray]:
    """Lower node index and linear weight along one axis, clamped at the ends."""
    if _uniform(axis):
        # Uniform axis: arithmetic instead of a search.
        step = (axis[-1] - axis[0]) / (axis.size - 1)
        u = (coords - axis[0]) / step
        idx = np.clip(np.floor(u), 0, axis.size - 2).astype(np.intp)
        return idx, np.clip(u - idx, 0.0, 1.0)
    idx = np.clip(np.searchsorted(axis, coords, side="right") - 1, 0, axis.size - 2)
    lo = axis[idx]
    frac = (coords - lo) / (axis[idx + 1] - lo)
    return idx.astype(np.intp), np.clip(frac, 0.0, 1.0)


def slab_bounds(
    zs: FloatArray,
    slice_positions: FloatArray | None = None,
    single_plane_thickness: float | None = None,
) -> tuple[FloatArray, FloatArray, list[str]]:
    """Lower and upper z (mm) of each plane's slab, with notes on what was assumed.

    Parameters
    ----------
    zs
        Plane positions of one structure, ascending, distinct.
    slice_positions
        Positions of the image slices the structure was drawn on (the CT), ascending.
        When every plane lies on one of them, each slab reaches halfway to the
        neighbouring *slice*, so a slice inside the structure's extent that carries no
        contour ends a stack with a flat cap (and a note says so). Otherwise the
        structure's own planes are the reference, and a gap much wider than the gaps
        next to it is taken as the end of a stack (noted; see :func:`_stack_breaks`).
    single_plane_thickness
        Slab thickness of a plane with no neighbouring slice at all.

    Returns
    -------
    lo, hi, notes
    """
    notes: list[str] = []
    reference: FloatArray | None = None
    if slice_positions is not None and slice_positions.size:
        ref = _merge_close(np.asarray(slice_positions, dtype=np.float64))
        nearest = np.abs(ref[np.clip(np.searchsorted(ref, zs), 0, ref.size - 1)] - zs)
        nearest = np.minimum(
            nearest, np.abs(ref[np.clip(np.searchsorted(ref, zs) - 1, 0, ref.size - 1)] - zs)
        )
        if np.all(nearest <= PLANE_TOLERANCE_MM):
            reference = ref
        else:
            notes.append(
                "contour planes do not lie on the image slices; slabs follow the "
                "structure's own planes"
            )
    if reference is not None:
        k = np.searchsorted(reference, zs - PLANE_TOLERANCE_MM)
        below = np.where(k > 0, reference[np.maximum(k - 1, 0)], np.nan)
        above = np.where(
            k + 1 < reference.size, reference[np.minimum(k + 1, reference.size - 1)], np.nan
        )
        inner = reference[
            (reference > zs[0] + PLANE_TOLERANCE_MM) & (reference < zs[-1] - PLANE_TOLERANCE_MM)
        ]
        missing = inner.size - max(zs.size - 2, 0)
        if missing > 0:
            notes.append(
                f"no contour on {missing} slice(s) inside the structure's extent: "
                "each gap is treated as the end of a stack (flat caps)"
            )
        half_below = (zs - below) / 2
        half_above = (above - zs) / 2
    else:
        below_gap = np.concatenate([[np.nan], np.diff(zs)])
        above_gap = np.concatenate([np.diff(zs), [np.nan]])
        if zs.size > 2:
            breaks = _stack_breaks(np.diff(zs))
            if breaks.any():
                notes.append(
                    f"{int(breaks.sum())} gap(s) between contour planes much wider than the "
                    "spacing next to them: taken as the ends of separate stacks (flat caps)"
                )
                gaps = np.diff(zs).astype(np.float64)
                gaps[breaks] = np.nan
                below_gap = np.concatenate([[np.nan], gaps])
                above_gap = np.concatenate([gaps, [np.nan]])
        half_below = below_gap / 2
        half_above = above_gap / 2
    # An end plane mirrors the half-gap of its other side (flat end cap).
    half_below = np.where(np.isnan(half_below), half_above, half_below)
    half_above = np.where(np.isnan(half_above), half_below, half_above)
    lonely = np.isnan(half_below)
    if lonely.any():
        if single_plane_thickness is None or not single_plane_thickness > 0:
            raise ValueError(
                "a structure on a single plane needs a slice thickness to have a volume"
            )
        half_below = np.where(lonely, single_plane_thickness / 2, half_below)
        half_above = np.where(lonely, single_plane_thickness / 2, half_above)
        notes.append(f"single plane: slab thickness {single_plane_thickness:g} mm assumed")
    return zs - half_below, zs + half_above, notes


def _stack_breaks(gaps: FloatArray) -> NDArray[np.bool_]:
    """Which gaps between a structure's own planes end a stack, judged locally.

    A gap wider than 1.5 times both its neighbouring gaps (a slice without a contour
    in an even run), or than 4 times the narrower of them (an island between two wide
    gaps), is a break. A change of slice thickness is not: 2 mm slices turning into
    5 mm ones give a gap as wide as the next.
    """
    wide = np.full(gaps.size, True)
    narrow = np.full(gaps.size, np.inf)
    left, right = gaps[:-1], gaps[1:]
    wide[1:] &= gaps[1:] > 1.5 * left
    wide[:-1] &= gaps[:-1] > 1.5 * right
    narrow[1:] = np.minimum(narrow[1:], left)
    narrow[:-1] = np.minimum(narrow[:-1], right)
    result: NDArray[np.bool_] = wide | (gaps > 4.0 * narrow)
    return result


def _merge_close(values: FloatArray) -> FloatArray:
    """Sorted values with neighbours closer than the plane tolerance merged."""
    v: FloatArray = np.sort(values)
    if v.size < 2:
        return v
    keep = np.concatenate([[True], np.diff(v) > PLANE_TOLERANCE_MM])
    merged: FloatArray = v[keep]
    return merged


#: Sub-rows per lattice row (Gauss-Legendre points) for the cell coverage integral.
_GAUSS_ROWS = (0.5 - 0.5 / math.sqrt(3.0), 0.5 + 0.5 / math.sqrt(3.0))
_GAUSS = np.array(_GAUSS_ROWS)


@dataclass(frozen=True)
class CellCoverage:
    """How the polygons of one plane cover the cells of a lattice.

    Arrays have shape ``(len(ys), len(xs))``; cell ``(i, j)`` is the rectangle of
    size ``hx x hy`` centred on ``(xs[j], ys[i])``.

    Attributes
    ----------
    fraction
        Covered fraction of each cell (0 to 1).
    cx, cy
        Centroid of the covered part (mm); the cell centre where nothing is covered.
    extent_x, extent_y
        Covered share of the cell's width and height, for the dose spread of a cell
        that is only partly inside.
    """

    fraction: FloatArray
    cx: FloatArray
    cy: FloatArray
    extent_x: FloatArray
    extent_y: FloatArray


def lattice_cells(
    polygons: Sequence[FloatArray], xs: FloatArray, ys: FloatArray, hx: float, hy: float
) -> CellCoverage:
    """Covered fraction and centroid of every lattice cell, polygons combined even-odd.

    Along x the coverage is exact: each scan line's crossings with the polygon edges
    are sorted, and the inside length (and its first moment) within every cell follows
    from running sums over the crossings. Along y the cell is integrated with two
    Gauss-Legendre scan lines, which never fall on the lattice or on the half-integer
    millimetre positions where planning systems put horizontal edges.
    """
    stack = lattice_cells_stack([polygons], xs, ys, hx, hy)
    return CellCoverage(
        *(
            np.asarray(a[0])
            for a in (stack.fraction, stack.cx, stack.cy, stack.extent_x, stack.extent_y)
        )
    )


def lattice_cells_stack(
    planes: Sequence[Sequence[FloatArray]], xs: FloatArray, ys: FloatArray, hx: float, hy: float
) -> CellCoverage:
    """:func:`lattice_cells` for several planes on one lattice at once.

    Returns arrays of shape ``(len(planes), len(ys), len(xs))``; each plane's polygons
    cover only that plane's layer.
    """
    return _edge_cells([polygon_edges(plane) for plane in planes], xs, ys, hx, hy)


def _edge_cells(
    edge_sets: Sequence[FloatArray], xs: FloatArray, ys: FloatArray, hx: float, hy: float
) -> CellCoverage:
    """Cell coverage of several layers given as edges of closed curves (even-odd)."""
    n_planes = len(edge_sets)
    shape = (n_planes, ys.size, xs.size)
    compiled = active_kernel()
    if compiled is not None:
        out = [np.empty(shape) for _ in range(5)]
        compiled.edge_cells(*_kernel_edges(edge_sets), *_f64(xs, ys), hx, hy, _GAUSS, *out)
        return CellCoverage(*out)
    fraction = np.zeros(shape)
    moment_x = np.zeros(shape)
    moment_y = np.zeros(shape)
    rows_hit = np.zeros(shape)
    if xs.size == 0 or ys.size == 0 or n_planes == 0:
        zero = np.zeros(shape)
        return CellCoverage(zero, zero, zero, zero, zero)
    edges = np.concatenate(edge_sets)
    plane_of_edge = np.repeat(np.arange(n_planes), [len(e) for e in edge_sets])
    x0, y0, x1, y1 = edges[:, 0], edges[:, 1], edges[:, 2], edges[:, 3]
    sloped = y0 != y1
    x0, y0, x1, y1 = x0[sloped], y0[sloped], x1[sloped], y1[sloped]
    edge_plane = plane_of_edge[sloped]
    ylo, yhi = np.minimum(y0, y1), np.maximum(y0, y1)
    n_rows = ys.size
    n_cols = xs.size
    n_lines = n_planes * n_rows
    n_cells = n_lines * n_cols
    e0 = float(xs[0]) - hx / 2  # left edge of the first cell column
    y_first = float(ys[0]) - hy / 2
    col_x = xs[None, None, :]
    for g in _GAUSS_ROWS:
        scan = y_first + (np.arange(n_rows) + g) * hy
        # Edge e crosses scan line i when ylo <= scan[i] < yhi: a contiguous range of i.
        first = np.clip(np.ceil((ylo - scan[0]) / hy), 0, n_rows).astype(np.intp)
        end = np.clip(np.ceil((yhi - scan[0]) / hy), 0, n_rows).astype(np.intp)
        per_edge = end - first
        total = int(per_edge.sum())
        if total == 0:
            continue
        edge = np.repeat(np.arange(per_edge.size), per_edge)
        row = first[edge] + (np.arange(total) - np.repeat(np.cumsum(per_edge) - per_edge, per_edge))
        line = edge_plane[edge] * n_rows + row
        t = (scan[row] - y0[edge]) / (y1[edge] - y0[edge])
        xc = np.clip(x0[edge] + t * (x1[edge] - x0[edge]), e0, e0 + n_cols * hx)
        # Sorted by scan line, then x: every line holds an even number of crossings, so
        # consecutive pairs are the inside intervals (even-odd rule).
        order = np.lexsort((xc, line))
        c = xc[order]
        a_x, b_x = c[0::2], c[1::2]
        pair_line = line[order][0::2]
        ja = np.minimum(np.floor((a_x - e0) / hx).astype(np.intp), n_cols - 1)
        jb = np.minimum(np.floor((b_x - e0) / hx).astype(np.intp), n_cols - 1)
        base = pair_line * n_cols
        same = ja == jb
        # Partial cells at both ends of each interval (or one cell holding all of it).
        a_end = np.where(same, b_x, e0 + (ja + 1) * hx)
        b_start = np.where(same, b_x, e0 + jb * hx)
        part_idx = np.concatenate([base + ja, (base + jb)[~same]])
        part_len = np.concatenate([a_end - a_x, (b_x - b_start)[~same]])
        part_mom = np.concatenate(
            [(a_end * a_end - a_x * a_x) / 2, ((b_x * b_x - b_start * b_start) / 2)[~same]]
        )
        length = np.bincount(part_idx, part_len, n_cells)
        moment = np.bincount(part_idx, part_mom, n_cells)
        # Whole cells strictly between the two ends: +1 / -1 marks, summed along x.
        full_from = (base + ja + 1)[~same]
        full_to = (base + jb)[~same]
        marks = np.bincount(full_from, minlength=n_cells + 1)[:n_cells].astype(np.float64)
        marks -= np.bincount(full_to, minlength=n_cells + 1)[:n_cells]
        full = np.cumsum(marks.reshape(n_lines, n_cols), axis=1).reshape(shape)
        length3 = length.reshape(shape) + full * hx
        fraction += 0.5 * length3 / hx
        moment_x += 0.5 * (moment.reshape(shape) + full * hx * col_x)
        moment_y += 0.5 * length3 * scan[None, :, None]
        rows_hit += 0.5 * (length3 > 0)
    covered = fraction > 0
    safe = np.where(covered, fraction * hx, 1.0)
    cx = np.where(covered, moment_x / safe, xs[None, None, :])
    cy = np.where(covered, moment_y / safe, ys[None, :, None])
    extent_x = np.where(rows_hit > 0, np.minimum(fraction / np.maximum(rows_hit, 1e-12), 1.0), 0.0)
    return CellCoverage(np.minimum(fraction, 1.0), cx, cy, extent_x, rows_hit)


def _covered_cells(
    edge_sets: Sequence[FloatArray], xs: FloatArray, ys: FloatArray, hx: float, hy: float
) -> tuple[NDArray[np.intp], FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """The covered cells of :func:`_edge_cells`, in (outline, row, column) order: the
    outline of each, its covered fraction, centroid ``(x, y)`` and the covered width and
    height over which its dose spreads (mm)."""
    compiled = active_kernel()
    if compiled is None:
        cells = _edge_cells(edge_sets, xs, ys, hx, hy)
        outline, rows, cols = np.nonzero(cells.fraction)
        return (
            outline,
            cells.fraction[outline, rows, cols],
            cells.cx[outline, rows, cols],
            cells.cy[outline, rows, cols],
            hx * cells.extent_x[outline, rows, cols],
            hy * cells.extent_y[outline, rows, cols],
        )
    n_cells = len(edge_sets) * ys.size * xs.size
    outline = np.empty(n_cells, dtype=np.intp)
    values = [np.empty(n_cells) for _ in range(5)]
    count = compiled.covered_cells(
        *_kernel_edges(edge_sets), *_f64(xs, ys), hx, hy, _GAUSS, outline, *values
    )
    share, px, py, wx, wy = (v[:count] for v in values)
    return outline[:count], share, px, py, wx, wy


def _f64(*arrays: NDArray[np.floating]) -> list[FloatArray]:
    """The arrays as C-contiguous float64 (copies only where they are not)."""
    return [np.ascontiguousarray(a, dtype=np.float64) for a in arrays]


def _kernel_edges(edge_sets: Sequence[FloatArray]) -> tuple[FloatArray, NDArray[np.intp], int]:
    """Edges of several layers as the C kernel takes them: one float64 array, the layer of
    every edge and the number of layers."""
    n = len(edge_sets)
    edges = np.ascontiguousarray(
        np.concatenate(edge_sets) if n else np.zeros((0, 4)), dtype=np.float64
    )
    plane = np.repeat(np.arange(n, dtype=np.intp), [len(e) for e in edge_sets])
    return edges, plane, n


def _covers_something(edges: FloatArray) -> bool:
    """Whether closed outlines cover more than a sliver by the even-odd rule."""
    if edges.shape[0] < 3:
        return False
    (x_lo, y_lo), (x_hi, y_hi) = edges[:, :2].min(axis=0), edges[:, :2].max(axis=0)
    h = max(x_hi - x_lo, y_hi - y_lo) / 64
    if h <= 0:
        return False
    xs = _lattice_axis(x_lo - h, h, x_lo - h, x_hi + h)
    ys = _lattice_axis(y_lo - h, h, y_lo - h, y_hi + h)
    covered = float(_edge_cells([edges], xs, ys, h, h).fraction.sum())
    return covered > 4.0


def _lattice_axis(start: float, step: float, lo: float, hi: float) -> FloatArray:
    """Sub-cell centres ``start + (j + 0.5) * step`` that fall within ``[lo, hi]``."""
    j0 = math.ceil((lo - start) / step - 0.5)
    j1 = math.floor((hi - start) / step - 0.5)
    return start + (np.arange(j0, j1 + 1, dtype=np.float64) + 0.5) * step


def _centroid(edges: FloatArray) -> tuple[float, float]:
    """Area centroid of closed outlines given as edges (a fallback sample for tiny ones)."""
    x0, y0, x1, y1 = edges[:, 0], edges[:, 1], edges[:, 2], edges[:, 3]
    cross = x0 * y1 - x1 * y0
    a = cross.sum() / 2
    if abs(a) < 1e-12:
        return float(x0.mean()), float(y0.mean())
    return (
        float(((x0 + x1) * cross).sum() / (6 * a)),
        float(((y0 + y1) * cross).sum() / (6 * a)),
    )


class _SpreadHistogram:
    """Differential histogram where each sample spreads uniformly over a dose interval.

    A sample of dose ``d``, width ``w`` and weight ``v`` adds ``v`` spread evenly over
    ``[d - w/2, d + w/2]`` (a point mass when narrower than a bin). The running sum of
    such boxes is piecewise linear in cumulative form, so it is kept exactly as slope and
    intercept changes at the box ends and integrated once at the end.
    """

    #: Samples buffered before they are binned (bounds memory, amortises the bincounts).
    #: Three float64 arrays, concatenated at each flush: 250 000 samples hold ~12 MB; at
    #: 2 000 000 the breast plan's BODY peaked 70 MB higher, no faster.
    BUFFER = 250_000

    def __init__(self, lower: float, bin_width: float, bins: int) -> None:
        self.lower = lower
        self.bin_width = bin_width
        self.bins = bins
        self._points = np.zeros(bins)
        self._slope = np.zeros(bins + 2)
        self._intercept = np.zeros(bins + 2)
        self._pending: list[tuple[FloatArray, FloatArray, FloatArray]] = []
        self._pending_size = 0

    def add(self, doses: FloatArray, widths: FloatArray, weights: FloatArray) -> None:
        """Add samples with their weights (mm³)."""
        compiled = active_kernel()
        if compiled is not None:
            compiled.spread_histogram(
                *(np.ascontiguousarray(a, dtype=np.float64) for a in (doses, widths, weights)),
                self.lower,
                self.bin_width,
                self._points,
                self._slope,
                self._intercept,
            )
            return
        self._pending.append((doses, widths, weights))
        self._pending_size += doses.size
        if self._pending_size >= self.BUFFER:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        doses = np.concatenate([p[0] for p in self._pending])
        widths = np.concatenate([p[1] for p in self._pending])
        weights = np.concatenate([p[2] for p in self._pending])
        self._pending, self._pending_size = [], 0
        a = (doses - widths / 2 - self.lower) / self.bin_width
        b = (doses + widths / 2 - self.lower) / self.bin_width
        narrow = (b - a) < 1.0
        if narrow.any():
            idx = np.clip(
                ((doses[narrow] - self.lower) / self.bin_width).astype(np.intp), 0, self.bins - 1
            )
            self._points += np.bincount(idx, weights[narrow], minlength=self.bins)
        wide = ~narrow
        if wide.any():
            a, b = np.clip(a[wide], 0, self.bins), np.clip(b[wide], 0, self.bins)
            w = weights[wide]
            keep = b > a
            a, b, w = a[keep], b[keep], w[keep]
            slope = w / (b - a)
            ends = np.concatenate([np.ceil(a), np.ceil(b)]).astype(np.intp)
            n = self.bins + 2
            self._slope += np.bincount(ends, np.concatenate([slope, -slope]), n)
            self._intercept += np.bincount(ends, np.concatenate([-slope * a, slope * b]), n)

    def counts(self) -> FloatArray:
        """Weight (mm³) in each bin."""
        self._flush()
        x = np.arange(self.bins + 2, dtype=np.float64)
        cumulative = np.cumsum(self._slope) * x + np.cumsum(self._intercept)
        return self._points + np.diff(cumulative[: self.bins + 1])


#: Lattice cells handled at once when sampling a stack of planes (bounds memory).
_CHUNK_CELLS = 100_000
#: Samples whose dose is interpolated at once (bounds the temporary arrays).
_SAMPLE_BLOCK = 32_768


def _layer_chunks(layers: Sequence[Layer], hx: float, hy: float) -> list[list[int]]:
    """Indices of consecutive layers grouped so that each group's lattice stays small."""
    chunks: list[list[int]] = []
    current: list[int] = []
    box = [math.inf, math.inf, -math.inf, -math.inf]
    for i, layer in enumerate(layers):
        if layer.area <= 0 or layer.hi <= layer.lo:
            continue
        verts = layer.vertices
        lo_x, lo_y = verts.min(axis=0)
        hi_x, hi_y = verts.max(axis=0)
        grown = [min(box[0], lo_x), min(box[1], lo_y), max(box[2], hi_x), max(box[3], hi_y)]
        cells = ((grown[2] - grown[0]) / hx + 2) * ((grown[3] - grown[1]) / hy + 2)
        if current and cells * (len(current) + 1) > _CHUNK_CELLS:
            chunks.append(current)
            current = []
            grown = [lo_x, lo_y, hi_x, hi_y]
        current.append(i)
        box = grown
    if current:
        chunks.append(current)
    return chunks


@dataclass(frozen=True)
class _Samples:
    doses: FloatArray
    spread: FloatArray
    weights: FloatArray
    outside_mm3: float
    ambiguous: tuple[int, ...] = ()  # layers (of the chunk) whose area is ambiguous


def _sample_layers(
    layers: Sequence[Layer],
    n_subs: NDArray[np.int_],
    grid: DoseGrid,
    xstart: float,
    ystart: float,
    hx: float,
    hy: float,
    touched: NDArray[np.bool_] | None = None,
) -> _Samples:
    """Dose samples of a stack of layers: one per covered lattice cell and sub-slice
    (the grid cells holding one set in ``touched``, when given)."""
    verts = np.concatenate([layer.vertices for layer in layers])
    areas = np.array([layer.area for layer in layers])
    lo = np.array([layer.lo for layer in layers])
    hi = np.array([layer.hi for layer in layers])
    # Every cell that touches the layers' bounding box.
    xs = _lattice_axis(
        xstart, hx, float(verts[:, 0].min()) - hx / 2, float(verts[:, 0].max()) + hx / 2
    )
    ys = _lattice_axis(
        ystart, hy, float(verts[:, 1].min()) - hy / 2, float(verts[:, 1].max()) + hy / 2
    )
    # Layers that share one outline (pieces of a plane's own) share its coverage.
    first_of: dict[int, int] = {}
    outline_of = np.array(
        [first_of.setdefault(id(layer.edges), len(first_of)) for layer in layers], dtype=np.intp
    )
    unique_edges = list({id(layer.edges): layer.edges for layer in layers}.values())
    outline, share, px, py, wx, wy = _covered_cells(unique_edges, xs, ys, hx, hy)
    if len(unique_edges) == len(layers):
        plane = outline
    else:  # every layer takes its outline's covered cells, in layer order
        per_outline = np.bincount(outline, minlength=len(unique_edges))
        first_cell = np.cumsum(per_outline) - per_outline
        reps = per_outline[outline_of]
        plane = np.repeat(np.arange(len(layers)), reps)
        pick = np.repeat(first_cell[outline_of], reps) + (
            np.arange(plane.size) - np.repeat(np.cumsum(reps) - reps, reps)
        )
        share, px, py, wx, wy = share[pick], px[pick], py[pick], wx[pick], wy[pick]
    covered = np.bincount(plane, share, minlength=len(layers))
    # A simple outline covers its own area (to the lattice's resolution); a self-
    # crossing or overlapping one covers something else by the even-odd rule.
    exact = np.array([layer.exact or layer.outline_area is not None for layer in layers])
    own_areas = np.array(
        [layer.area if layer.outline_area is None else layer.outline_area for layer in layers]
    )
    covered_mm2 = covered * hx * hy
    # The coverage integral (two scan lines per row) is off by up to a fraction of a
    # cell per edge on pixel-staircase outlines: allow half a cell per edge.
    n_edges = np.array([layer.edges.shape[0] for layer in layers])
    disagree = np.abs(covered_mm2 - own_areas) > np.maximum(
        AREA_AGREEMENT * np.maximum(covered_mm2, own_areas), (4 + 0.5 * n_edges) * hx * hy
    )
    ambiguous = tuple(int(i) for i in np.flatnonzero(exact & disagree & (covered > 0)))
    tiny = np.flatnonzero(covered <= 0)
    if tiny.size:  # outlines thinner than the scan lines: one sample at the centroid
        centroids = np.array([_centroid(layers[int(i)].edges) for i in tiny])
        plane = np.concatenate([plane, tiny])
        px = np.concatenate([px, centroids[:, 0]])
        py = np.concatenate([py, centroids[:, 1]])
        share = np.concatenate([share, np.ones(tiny.size)])
        wx = np.concatenate([wx, np.zeros(tiny.size)])
        wy = np.concatenate([wy, np.zeros(tiny.size)])
        covered[tiny] = 1.0
        if touched is not None:  # the outline reaches beyond its one sample's cell
            for i in tiny:
                _mark_outline(touched, grid, layers[int(i)])
    slab_dz = (hi - lo) / n_subs
    # mm³ per cell and sub-slice: each layer's exact area shared by coverage.
    weight = share * (areas * slab_dz / covered)[plane]
    # Every in-plane sample repeated over its layer's sub-slices, in blocks of cells
    # holding about _SAMPLE_BLOCK samples: the thirty-odd temporary arrays of a block
    # stay small (a long thin structure's chunk held 160,000 samples, 48 MB at once).
    reps = n_subs[plane]
    ends = np.cumsum(reps)
    total = int(ends[-1]) if ends.size else 0
    cuts = np.searchsorted(ends, np.arange(_SAMPLE_BLOCK, total, _SAMPLE_BLOCK))
    bounds = [0, *np.unique(cuts + 1).tolist()]
    if bounds[-1] < plane.size:
        bounds.append(plane.size)
    parts = [
        _sample_cells(
            grid,
            lo[plane[a:b]],
            slab_dz[plane[a:b]],
            reps[a:b],
            px[a:b],
            py[a:b],
            wx[a:b],
            wy[a:b],
            weight[a:b],
            touched,
        )
        for a, b in itertools.pairwise(bounds)
    ]
    outside_mm3 = sum(part[3] for part in parts)
    if not parts:
        empty = np.zeros(0)
        return _Samples(empty, empty, empty, 0.0, ambiguous)
    if len(parts) == 1:
        doses, spread, weights = parts[0][:3]
    else:
        doses, spread, weights = (np.concatenate([part[k] for part in parts]) for k in range(3))
    return _Samples(doses, spread, weights, outside_mm3, ambiguous)


def _mark_outline(touched: NDArray[np.bool_], grid: DoseGrid, layer: Layer) -> None:
    """Set in ``touched`` the grid cells a layer's outline passes through, at its
    middle height (points along every edge, closer than half a cell)."""
    edges = layer.edges
    step = 0.5 * min(grid.dx, grid.dy)
    lengths = np.hypot(edges[:, 2] - edges[:, 0], edges[:, 3] - edges[:, 1])
    counts = np.ceil(lengths / step).astype(np.intp) + 1
    edge = np.repeat(np.arange(edges.shape[0]), counts)
    t = (np.arange(edge.size) - np.repeat(np.cumsum(counts) - counts, counts)) / np.repeat(
        np.maximum(counts - 1, 1), counts
    )
    x = edges[edge, 0] + t * (edges[edge, 2] - edges[edge, 0])
    y = edges[edge, 1] + t * (edges[edge, 3] - edges[edge, 1])
    (xlo, xhi), (ylo, yhi), (zlo, zhi) = grid.extent
    z = 0.5 * (layer.lo + layer.hi)
    keep = (x >= xlo) & (x <= xhi) & (y >= ylo) & (y <= yhi)
    if not keep.any() or not zlo <= z <= zhi:
        return
    ix, _ = _axis_weights(grid.x, x[keep])
    iy, _ = _axis_weights(grid.y, y[keep])
    iz, _ = _axis_weights(grid.z, np.array([z]))
    touched[(iz[0] * grid.y.size + iy) * grid.x.size + ix] = True


def _sample_cells(
    grid: DoseGrid,
    lo: FloatArray,
    dz: FloatArray,
    reps: NDArray[np.int_],
    px: FloatArray,
    py: FloatArray,
    wx: FloatArray,
    wy: FloatArray,
    weight: FloatArray,
    touched: NDArray[np.bool_] | None = None,
) -> tuple[FloatArray, FloatArray, FloatArray, float]:
    """Dose, spread and weight of the samples of lattice cells, each cell repeated over
    ``reps`` sub-slices of thickness ``dz`` from ``lo`` (all per cell), with the volume
    that falls outside the dose grid. The grid cells holding a sample are set in
    ``touched`` (flat, by lower corner node) when given."""
    compiled = active_kernel()
    if compiled is not None:
        total = int(reps.sum())
        doses, spread, weights = np.empty(total), np.empty(total), np.empty(total)
        count, outside_mm3 = compiled.sample_cells(
            grid.dose_f64,
            grid.x,
            grid.y,
            grid.z,
            grid.inverse_z_steps,
            *grid.uniform_axes,
            grid.dx,
            grid.dy,
            tuple(v for pair in grid.extent for v in pair),
            *(np.ascontiguousarray(a, dtype=np.float64) for a in (lo, dz)),
            np.ascontiguousarray(reps, dtype=np.intp),
            *(np.ascontiguousarray(a, dtype=np.float64) for a in (px, py, wx, wy, weight)),
            doses,
            spread,
            weights,
            touched,
        )
        return doses[:count], spread[:count], weights[:count], outside_mm3
    sample = np.repeat(np.arange(px.size), reps)
    sub = np.arange(sample.size) - np.repeat(np.cumsum(reps) - reps, reps)
    pz = lo[sample] + (sub + 0.5) * dz[sample]
    x, y = px[sample], py[sample]
    weights = weight[sample]
    (xlo, xhi), (ylo, yhi), (zlo, zhi) = grid.extent
    inside = (x >= xlo) & (x <= xhi) & (y >= ylo) & (y <= yhi) & (pz >= zlo) & (pz <= zhi)
    outside_mm3 = float(weights[~inside].sum())
    if not inside.all():
        x, y, pz, weights, sample = (
            x[inside],
            y[inside],
            pz[inside],
            weights[inside],
            sample[inside],
        )
    if x.size == 0:
        empty = np.zeros(0)
        return empty, empty, empty, outside_mm3
    doses, gx, gy, gz, cell = _trilinear_with_gradient(grid, x, y, pz)
    if touched is not None:
        touched[cell] = True
    spread = np.sqrt((gx * wx[sample]) ** 2 + (gy * wy[sample]) ** 2 + (gz * dz[sample]) ** 2)
    return doses, spread, weights, outside_mm3


def _coalesced(layers: Sequence[Layer], step: float) -> list[Layer]:
    """``layers`` with neighbouring pieces of one outline joined where that takes fewer
    sub-slices of samples (``max(1, round(thickness / step))`` each, ``step`` the
    sampling step along z).

    The shape model cuts a plane's own outline into pieces that hold different areas
    (the smooth area curve's mean over each piece). Each piece takes at least one
    sub-slice, so a large organ (step 2-3 mm, two pieces of 1.5 mm per 3 mm plane) got
    twice the samples of the slab model for the same outlines. A joined piece holds the
    pieces' volume exactly (its area is their thickness-weighted mean) and is sampled
    as a slab is, in sub-slices of about ``step``: how the volume is shared along z is
    averaged only within a sub-slice. Pieces thinner than the step (small structures)
    are not joined: there each piece already has one sub-slice of its own thickness.
    """
    out: list[Layer] = []
    for layer in layers:
        last = out[-1] if out else None
        if (
            last is None
            or layer.edges is not last.edges
            or layer.plane_z != last.plane_z
            or abs(layer.lo - last.hi) > 1e-9
            or _sub_slices(layer.hi - last.lo, step)
            >= _sub_slices(layer.hi - layer.lo, step) + _sub_slices(last.hi - last.lo, step)
            or min(layer.area, last.area) <= 0
            or min(layer.hi - layer.lo, last.hi - last.lo) <= 0
        ):
            out.append(layer)
            continue
        own = [
            piece.area if piece.exact else piece.outline_area
            for piece in (last, layer)
            if piece.exact or piece.outline_area is not None
        ]
        volume = last.area * (last.hi - last.lo) + layer.area * (layer.hi - layer.lo)
        area = volume / (layer.hi - last.lo)
        exact = last.exact and layer.exact and last.area == layer.area
        out[-1] = Layer(
            last.lo,
            layer.hi,
            layer.edges,
            last.area if exact else area,
            exact=exact,
            outline_area=None if exact or not own else own[0],
            plane_z=layer.plane_z,
        )
    return out


def _sub_slices(thickness: float, step: float) -> int:
    """Sub-slices of samples a layer of ``thickness`` takes at sampling step ``step``."""
    return max(1, round(thickness / step))


def _layer_z(layer: Layer) -> float:
    """Where a layer's contour lies: its plane's z, or the middle of the layer."""
    return 0.5 * (layer.lo + layer.hi) if layer.plane_z is None else layer.plane_z


def _trilinear_with_gradient(
    grid: DoseGrid, x: FloatArray, y: FloatArray, z: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, NDArray[np.intp]]:
    """Trilinear dose and its gradient (Gy/mm) at points inside the grid's box, and the
    grid cell of each (the flat index of its lower corner node)."""
    ix, fx = _axis_weights(grid.x, x)
    iy, fy = _axis_weights(grid.y, y)
    iz, fz = _axis_weights(grid.z, z)
    nx, ny = grid.x.size, grid.y.size
    flat = grid.dose.reshape(-1)
    base = (iz * ny + iy) * nx + ix
    plane_step = nx * ny
    values = []
    for offset in (0, plane_step):
        b = base + offset
        d00, d01 = flat[b], flat[b + 1]
        d10, d11 = flat[b + nx], flat[b + nx + 1]
        step_lower = d01 - d00
        step_upper = d11 - d10
        lower_row = d00 + step_lower * fx
        across = d10 + step_upper * fx - lower_row
        values.append(
            (lower_row + across * fy, step_lower + (step_upper - step_lower) * fy, across)
        )
    (v0, gx0, gy0), (v1, gx1, gy1) = values
    rise = v1 - v0
    dose = v0 + rise * fz
    gx = (gx0 + (gx1 - gx0) * fz) * (1.0 / grid.dx)
    gy = (gy0 + (gy1 - gy0) * fz) * (1.0 / grid.dy)
    gz = rise * grid.inverse_z_steps[iz]
    return dose, gx, gy, gz, base


#: How a structure is modelled between its contour planes (see :func:`compute_dvh`).
BETWEEN_PLANES = ("slab", "shape")
#: The model :func:`compute_dvh` and every command use unless told otherwise.
DEFAULT_BETWEEN_PLANES = "shape"


def compute_dvh(
    planes: Sequence[ContourPlane],
    grid: DoseGrid,
    *,
    slice_positions: FloatArray | None = None,
    single_plane_thickness: float | None = None,
    target_samples: int = DEFAULT_TARGET_SAMPLES,
    bins: int = DEFAULT_BINS,
    between_planes: str = DEFAULT_BETWEEN_PLANES,
) -> DVH:
    """Dose-volume histogram of one structure.

    Parameters
    ----------
    planes
        The structure's contour planes (any order, distinct z).
    grid
        The dose grid.
    slice_positions
        z of the image slices the structure was drawn on, when known (see
        :func:`slab_bounds`).
    single_plane_thickness
        Slab thickness for a structure contoured on one plane only.
    target_samples
        About how many dose samples the structure gets; the sampling lattice is the
        dose grid cut into equal sub-cells (at most ``MAX_SUBDIVISION`` per voxel).
    bins
        Number of bins of the differential histogram over the grid's dose range.
    between_planes
        ``"shape"`` (default): the structure changes smoothly from one plane to the
        next (:mod:`rtcheck.dvh.interpolation`): its cross-section area follows one smooth
        curve through the planes' areas everywhere, and its outline is interpolated,
        in sub-layers as thick as the sampling step along z (at least 0.25 mm), where
        the outline changes (a stack's end whose area rises into it, or an area change
        of more than :data:`rtcheck.dvh.interpolation.OUTLINE_CHANGE`); elsewhere each
        plane keeps its own outline halfway to its neighbours. ``"slab"``: each plane's
        contour is extruded halfway to its neighbours with its own area (the exact
        slab model). Both end every stack with a flat cap of half a spacing.

    Returns
    -------
    DVH
        Histogram of the part inside the dose grid, the model's volume, the volume
        outside the grid, and minimum, mean and maximum dose.
    """
    if between_planes not in BETWEEN_PLANES:
        raise ValueError(
            f"between_planes must be one of {', '.join(BETWEEN_PLANES)}, not {between_planes!r}"
        )
    ordered = sorted(planes, key=lambda p: p.z)
    if not ordered:
        raise ValueError("a DVH needs at least one contour plane")
    zs = np.array([p.z for p in ordered], dtype=np.float64)
    if np.any(np.diff(zs) <= PLANE_TOLERANCE_MM):
        raise ValueError("contour planes must have distinct z; merge polygons of one plane first")
    lo, hi, notes = slab_bounds(zs, slice_positions, single_plane_thickness)
    if between_planes == "shape":
        # Sub-layers no thinner than the step the sampler takes along z anyway.
        slab_volume = sum(p.area * float(b - a) for p, a, b in zip(ordered, lo, hi, strict=True))
        step = (slab_volume / target_samples) ** (1.0 / 3.0) if slab_volume > 0 else 0.0
        layers = shape_layers(ordered, lo, hi, step)
    else:
        layers = [
            Layer.from_polygons(p.polygons, float(a), float(b), p.area)
            for p, a, b in zip(ordered, lo, hi, strict=True)
        ]
    return dvh_of_layers(layers, grid, notes, target_samples=target_samples, bins=bins)


def dvh_of_layers(
    layers: Sequence[Layer],
    grid: DoseGrid,
    notes: Sequence[str] = (),
    *,
    target_samples: int = DEFAULT_TARGET_SAMPLES,
    bins: int = DEFAULT_BINS,
) -> DVH:
    """Dose-volume histogram of a structure model given as prisms (see :class:`Layer`).

    Parameters
    ----------
    layers
        The prisms, not overlapping in z.
    grid
        The dose grid.
    notes
        Notes on how the model was built, carried into the result.
    target_samples, bins
        As for :func:`compute_dvh`.
    """
    notes = list(notes)
    areas = np.array([layer.area for layer in layers])
    thickness = np.array([layer.hi - layer.lo for layer in layers])
    volume_mm3 = float(np.sum(areas * thickness))
    # Layers the sampler never sees (no area) that still cover something: a contour
    # whose lobes cancel in the shoelace sum (a figure of eight).
    ambiguous = [
        _layer_z(layer)
        for layer in layers
        if (layer.exact and layer.area <= 0)
        or (layer.outline_area is not None and layer.outline_area <= 0)
        if _covers_something(layer.edges)
    ]

    dose_min, dose_max = grid.dose_range
    lower = min(0.0, dose_min)
    upper = dose_max if dose_max > lower else lower + 1.0
    bin_width = (upper - lower) / bins
    edges: FloatArray = lower + np.arange(bins + 1, dtype=np.float64) * bin_width

    if volume_mm3 <= 0:
        return DVH(
            edges,
            np.zeros(bins),
            0.0,
            0.0,
            math.nan,
            math.nan,
            math.nan,
            0,
            tuple(notes),
            tuple(sorted(set(ambiguous))),
        )

    h = (volume_mm3 / target_samples) ** (1.0 / 3.0)
    layers = _coalesced(layers, h)
    areas = np.array([layer.area for layer in layers])
    thickness = np.array([layer.hi - layer.lo for layer in layers])
    n_subs = np.maximum(1, np.round(thickness / h)).astype(int)
    # In-plane spacing chosen so that layers times sub-slices hold about target_samples.
    h_xy = math.sqrt(float(np.sum(areas * n_subs)) / target_samples)
    hx = grid.dx / min(max(math.ceil(grid.dx / h_xy), 1), MAX_SUBDIVISION)
    hy = grid.dy / min(max(math.ceil(grid.dy / h_xy), 1), MAX_SUBDIVISION)
    xstart = float(grid.x[0]) - grid.dx / 2
    ystart = float(grid.y[0]) - grid.dy / 2
    hist = _SpreadHistogram(lower, bin_width, bins)

    outside_mm3 = 0.0
    weighted_sum = 0.0
    inside_mm3 = 0.0
    d_min, d_max = math.inf, -math.inf
    n_samples = 0

    # Grid cells holding a sample: the extremes are searched for near them only.
    touched = np.zeros(grid.dose.size, dtype=bool)
    for chunk in _layer_chunks(layers, hx, hy):
        sampled = _sample_layers(
            [layers[i] for i in chunk],
            n_subs[chunk],
            grid,
            xstart,
            ystart,
            hx,
            hy,
            touched,
        )
        outside_mm3 += sampled.outside_mm3
        ambiguous.extend(_layer_z(layers[chunk[i]]) for i in sampled.ambiguous)
        if sampled.doses.size == 0:
            continue
        hist.add(sampled.doses, sampled.spread, sampled.weights)
        # Multiply and sum, not np.dot: a BLAS call wakes its thread pool for no gain.
        weighted_sum += float((sampled.doses * sampled.weights).sum())
        inside_mm3 += float(sampled.weights.sum())
        d_min = min(d_min, float(sampled.doses.min()))
        d_max = max(d_max, float(sampled.doses.max()))
        n_samples += sampled.doses.size

    if inside_mm3 > 0:
        # Extremes of a linear field over a prism lie on its vertices: look at the
        # outline vertices on both faces of every layer.
        solid = [layer for layer in layers if layer.area > 0 and layer.hi > layer.lo]
        vertices = np.concatenate(
            [
                np.column_stack([layer.vertices, np.full(len(layer.vertices), z)])
                for layer in solid
                for z in (layer.lo, layer.hi)
            ]
        )
        vd = grid.interpolate(vertices)
        vd = vd[np.isfinite(vd)]
        if vd.size:
            d_min = min(d_min, float(vd.min()))
            d_max = max(d_max, float(vd.max()))
        # The trilinear dose can peak between them: on a node, a face or a wall.
        # A sample stands for a lattice cell up to a voxel wide and a sub-slice thick:
        # the structure reaches that far from the cells that hold one.
        reach_z = math.ceil(float(np.max(thickness / n_subs)) / float(np.min(np.diff(grid.z))))
        d_min, d_max = refine_extremes(
            solid, grid, d_min, d_max, touched.reshape(grid.dose.shape), reach_z
        )
        mean = weighted_sum / inside_mm3
    else:
        d_min = d_max = mean = math.nan
        notes.append("no part of the structure lies inside the dose grid")

    # Volumes: the model's exact volume, split by what the samples found outside the grid.
    return DVH(
        bin_edges=edges,
        differential_cc=hist.counts() / MM3_PER_CC,
        volume_cc=volume_mm3 / MM3_PER_CC,
        volume_outside_cc=outside_mm3 / MM3_PER_CC,
        min_gy=d_min,
        mean_gy=mean,
        max_gy=d_max,
        samples=n_samples,
        notes=tuple(notes),
        ambiguous_planes=tuple(sorted(set(ambiguous))),
    )
