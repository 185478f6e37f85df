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

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

#: Samples a structure is given by default (about 0.3 mm spacing for a 7 cc sphere).
DEFAULT_TARGET_SAMPLES = 300_000
#: Number of bins of the fine differential histogram.
DEFAULT_BINS = 2**16
#: Finest in-plane subdivision of a dose voxel.
MAX_SUBDIVISION = 64
#: Planes closer than this (mm) are one plane.
PLANE_TOLERANCE_MM = 0.01

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
            axis = np.asarray(getattr(self, name), dtype=np.float64)
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
    def dose_range(self) -> tuple[float, float]:
        """Lowest and highest dose of the grid (Gy)."""
        return float(np.min(self.dose)), float(np.max(self.dose))

    def interpolate(self, points: NDArray[np.floating]) -> FloatArray:
        """Trilinear dose at points ``(n, 3)`` in mm; NaN outside the grid's box."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        (xlo, xhi), (ylo, yhi), (zlo, zhi) = self.extent
        inside = (
            (pts[:, 0] >= xlo) & (pts[:, 0] <= xhi)
            & (pts[:, 1] >= ylo) & (pts[:, 1] <= yhi)
            & (pts[:, 2] >= zlo) & (pts[:, 2] <= zhi)
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
class ContourPlane:
    """The closed polygons of one structure on one axial plane.

    Parameters
    ----------
    z
        Plane position in mm.
    polygons
        Each an ``(n, 2)`` array of (x, y) vertices in mm, n >= 3, not repeating the
        first vertex at the end. Several polygons combine by the even-odd rule.
    """

    z: float
    polygons: tuple[FloatArray, ...]

    @cached_property
    def area(self) -> float:
        """Exact even-odd area in mm² (shoelace areas signed by nesting depth)."""
        return even_odd_area(self.polygons)


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

    @property
    def volume_inside_cc(self) -> float:
        """Volume of the structure inside the dose grid (cc)."""
        return max(self.volume_cc - self.volume_outside_cc, 0.0)

    @property
    def complete(self) -> bool:
        """True when the whole structure lies inside the dose grid."""
        return self.volume_outside_cc <= 1e-6 * max(self.volume_cc, 1e-9)

    @cached_property
    def _cumulative(self) -> FloatArray:
        """Volume (cc) receiving at least each bin edge."""
        cum = np.zeros(self.bin_edges.size)
        cum[:-1] = np.cumsum(self.differential_cc[::-1])[::-1]
        return cum

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

        ``volume_cc`` at or above the structure's volume gives the minimum dose; zero
        or less gives the maximum dose.
        """
        total = self.volume_inside_cc
        if total <= 0:
            return math.nan
        if volume_cc <= 0:
            return self.max_gy
        if volume_cc >= total:
            return self.min_gy
        cum = self._cumulative
        # cum is non-increasing along the edges: interpolate on the reversed arrays.
        dose = float(np.interp(volume_cc, cum[::-1], self.bin_edges[::-1]))
        # Bins that hold no volume make plateaus of cum: take the highest such dose.
        return min(max(dose, self.min_gy), self.max_gy)

    def dose_at_coldest_volume(self, volume_cc: float) -> float:
        """Maximum dose (Gy) to the coldest ``volume_cc`` of the structure."""
        total = self.volume_inside_cc
        if total <= 0:
            return math.nan
        return self.dose_at_volume(total - volume_cc)

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
        n = int(math.floor(top / step_gy)) + 2
        doses = np.arange(n) * step_gy
        volumes = np.array([self.volume_at_dose(float(d)) for d in doses])
        return doses, volumes


def _axis_extent(axis: FloatArray) -> tuple[float, float]:
    lo = axis[0] - (axis[1] - axis[0]) / 2
    hi = axis[-1] + (axis[-1] - axis[-2]) / 2
    return float(lo), float(hi)


def _axis_weights(axis: FloatArray, coords: FloatArray) -> tuple[NDArray[np.intp], FloatArray]:
    """Lower node index and linear weight along one axis, clamped at the ends."""
    idx = np.searchsorted(axis, coords, side="right") - 1
    idx = np.clip(idx, 0, axis.size - 2)
    lo = axis[idx]
    frac = (coords - lo) / (axis[idx + 1] - lo)
    return idx.astype(np.intp), np.clip(frac, 0.0, 1.0)


def polygon_area(poly: FloatArray) -> float:
    """Unsigned shoelace area (mm²) of one closed polygon given without repeating its start."""
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def points_in_polygon(px: FloatArray, py: FloatArray, poly: FloatArray) -> NDArray[np.bool_]:
    """Even-odd point-in-polygon test for many points against one polygon."""
    x0, y0 = poly[:, 0], poly[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    py_ = py[:, None]
    crosses = (y0 <= py_) != (y1 <= py_)
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = x0 + (py_ - y0) * (x1 - x0) / (y1 - y0)
    left = crosses & (xc > px[:, None])
    return np.asarray(np.count_nonzero(left, axis=1) % 2 == 1)


def even_odd_area(polygons: Sequence[FloatArray]) -> float:
    """Area (mm²) of polygons combined by the even-odd rule.

    Exact for polygons that do not cross one another (the DICOM case: holes and
    islands nested inside each other); each polygon's area counts with the sign
    ``(-1) ** depth`` where depth is how many other polygons contain it.
    """
    areas = [polygon_area(p) for p in polygons]
    if len(polygons) == 1:
        return areas[0]
    total = 0.0
    for i, poly in enumerate(polygons):
        depth = 0
        probe_x, probe_y = poly[:1, 0], poly[:1, 1]
        for j, other in enumerate(polygons):
            if j != i and points_in_polygon(probe_x, probe_y, other)[0]:
                depth += 1
        total += areas[i] if depth % 2 == 0 else -areas[i]
    return max(total, 0.0)


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
        structure's own planes are the reference, and a gap wider than 1.5 times the
        structure's median spacing is taken as the end of a stack (noted).
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
            notes.append("contour planes do not lie on the image slices; slabs follow the "
                         "structure's own planes")
    if reference is not None:
        k = np.searchsorted(reference, zs - PLANE_TOLERANCE_MM)
        below = np.where(k > 0, reference[np.maximum(k - 1, 0)], np.nan)
        above = np.where(k + 1 < reference.size, reference[np.minimum(k + 1, reference.size - 1)],
                         np.nan)
        inner = reference[(reference > zs[0] + PLANE_TOLERANCE_MM)
                          & (reference < zs[-1] - PLANE_TOLERANCE_MM)]
        missing = inner.size - max(zs.size - 2, 0)
        if missing > 0:
            notes.append(f"no contour on {missing} slice(s) inside the structure's extent: "
                         "each gap is treated as the end of a stack (flat caps)")
        half_below = (zs - below) / 2
        half_above = (above - zs) / 2
    else:
        below_gap = np.concatenate([[np.nan], np.diff(zs)])
        above_gap = np.concatenate([np.diff(zs), [np.nan]])
        if zs.size > 1:
            typical = float(np.median(np.diff(zs)))
            breaks = np.diff(zs) > 1.5 * typical
            if breaks.any():
                notes.append(
                    f"{int(breaks.sum())} gap(s) wider than 1.5 x the {typical:g} mm plane "
                    "spacing: taken as separate stacks with flat caps"
                )
                gaps = np.diff(zs).copy()
                gaps[breaks] = typical
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
            raise ValueError("a structure on a single plane needs a slice thickness to have a volume")
        half_below = np.where(lonely, single_plane_thickness / 2, half_below)
        half_above = np.where(lonely, single_plane_thickness / 2, half_above)
        notes.append(f"single plane: slab thickness {single_plane_thickness:g} mm assumed")
    return zs - half_below, zs + half_above, notes


def _merge_close(values: FloatArray) -> FloatArray:
    """Sorted values with neighbours closer than the plane tolerance merged."""
    v = np.sort(values)
    if v.size < 2:
        return v
    keep = np.concatenate([[True], np.diff(v) > PLANE_TOLERANCE_MM])
    return v[keep]
