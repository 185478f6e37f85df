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
DEFAULT_TARGET_SAMPLES = 100_000
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
            raise ValueError(
                "a structure on a single plane needs a slice thickness to have a volume"
            )
        half_below = np.where(lonely, single_plane_thickness / 2, half_below)
        half_above = np.where(lonely, single_plane_thickness / 2, half_above)
        notes.append(f"single plane: slab thickness {single_plane_thickness:g} mm assumed")
    return zs - half_below, zs + half_above, notes


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
    shape = (ys.size, xs.size)
    fraction = np.zeros(shape)
    moment_x = np.zeros(shape)
    moment_y = np.zeros(shape)
    rows_hit = np.zeros(shape)
    if xs.size == 0 or ys.size == 0:
        return CellCoverage(
            fraction, fraction.copy(), fraction.copy(), fraction.copy(), fraction.copy()
        )
    x0 = np.concatenate([p[:, 0] for p in polygons])
    y0 = np.concatenate([p[:, 1] for p in polygons])
    x1 = np.concatenate([np.roll(p[:, 0], -1) for p in polygons])
    y1 = np.concatenate([np.roll(p[:, 1], -1) for p in polygons])
    sloped = y0 != y1
    x0, y0, x1, y1 = x0[sloped], y0[sloped], x1[sloped], y1[sloped]
    ylo, yhi = np.minimum(y0, y1), np.maximum(y0, y1)
    n_rows = ys.size
    # Cell edges along x, and the key range each scan line occupies.
    edges_x = np.concatenate([xs - hx / 2, [xs[-1] + hx / 2]])
    left = float(edges_x[0]) - hx
    width = float(edges_x[-1]) + hx - left
    stride = width + 1.0
    row_offsets = np.arange(n_rows, dtype=np.float64) * stride
    queries = ((edges_x - left)[None, :] + row_offsets[:, None]).ravel()
    y_first = float(ys[0]) - hy / 2
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
        t = (scan[row] - y0[edge]) / (y1[edge] - y0[edge])
        xc = np.clip(x0[edge] + t * (x1[edge] - x0[edge]), left, left + width)
        order = np.argsort(row * stride + (xc - left), kind="stable")
        keys = (row * stride + (xc - left))[order]
        c = xc[order]
        r = row[order]
        counts = np.bincount(r, minlength=n_rows)
        row_start = np.cumsum(counts) - counts
        local = np.arange(total) - row_start[r]
        closing = local % 2 == 1
        prev = np.concatenate([[0.0], c[:-1]])
        cum_len = np.cumsum(np.where(closing, c - prev, 0.0))
        cum_mom = np.cumsum(np.where(closing, (c * c - prev * prev) / 2, 0.0))
        m = np.searchsorted(keys, queries, side="right")  # crossings at or left of edge
        qx = np.tile(edges_x, n_rows)
        q_row = np.repeat(np.arange(n_rows), edges_x.size)
        inside = (m - row_start[q_row]) % 2 == 1
        last = np.maximum(m - 1, 0)
        base_len = np.where(m > 0, cum_len[last], 0.0)
        base_mom = np.where(m > 0, cum_mom[last], 0.0)
        c_last = c[last]
        f_len = base_len + np.where(inside, qx - c_last, 0.0)
        f_mom = base_mom + np.where(inside, (qx * qx - c_last * c_last) / 2, 0.0)
        f_len = f_len.reshape(n_rows, edges_x.size)
        f_mom = f_mom.reshape(n_rows, edges_x.size)
        length = np.maximum(np.diff(f_len, axis=1), 0.0)
        fraction += 0.5 * length / hx
        moment_x += 0.5 * np.diff(f_mom, axis=1)
        moment_y += 0.5 * length * scan[:, None]
        rows_hit += 0.5 * (length > 0)
    covered = fraction > 0
    safe = np.where(covered, fraction * hx, 1.0)
    cx = np.where(covered, moment_x / safe, xs[None, :])
    cy = np.where(covered, moment_y / safe, ys[:, None])
    extent_x = np.where(rows_hit > 0, np.minimum(fraction / np.maximum(rows_hit, 1e-12), 1.0), 0.0)
    return CellCoverage(np.minimum(fraction, 1.0), cx, cy, extent_x, rows_hit)


def _lattice_axis(start: float, step: float, lo: float, hi: float) -> FloatArray:
    """Sub-cell centres ``start + (j + 0.5) * step`` that fall within ``[lo, hi]``."""
    j0 = math.ceil((lo - start) / step - 0.5)
    j1 = math.floor((hi - start) / step - 0.5)
    return start + (np.arange(j0, j1 + 1, dtype=np.float64) + 0.5) * step


def _centroid(polygons: Sequence[FloatArray]) -> tuple[float, float]:
    """Area centroid of the largest polygon (a fallback sample for tiny contours)."""
    poly = max(polygons, key=polygon_area)
    x, y = poly[:, 0], poly[:, 1]
    cross = x * np.roll(y, -1) - np.roll(x, -1) * y
    a = cross.sum() / 2
    if abs(a) < 1e-12:
        return float(x.mean()), float(y.mean())
    cx = float(((x + np.roll(x, -1)) * cross).sum() / (6 * a))
    cy = float(((y + np.roll(y, -1)) * cross).sum() / (6 * a))
    return cx, cy


class _SpreadHistogram:
    """Differential histogram where each sample spreads uniformly over a dose interval.

    A sample of dose ``d``, width ``w`` and weight ``v`` adds ``v`` spread evenly over
    ``[d - w/2, d + w/2]`` (a point mass when narrower than a bin). The running sum of
    such boxes is piecewise linear in cumulative form, so it is kept exactly as slope and
    intercept changes at the box ends and integrated once at the end.
    """

    def __init__(self, lower: float, bin_width: float, bins: int) -> None:
        self.lower = lower
        self.bin_width = bin_width
        self.bins = bins
        self._points = np.zeros(bins)
        self._slope = np.zeros(bins + 2)
        self._intercept = np.zeros(bins + 2)

    def add(self, doses: FloatArray, widths: FloatArray, weights: FloatArray) -> None:
        """Add samples with their weights (mm³)."""
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
            ia = np.ceil(a).astype(np.intp)
            ib = np.ceil(b).astype(np.intp)
            n = self.bins + 2
            self._slope += np.bincount(ia, slope, n) - np.bincount(ib, slope, n)
            self._intercept += np.bincount(ib, slope * b, n) - np.bincount(ia, slope * a, n)

    def counts(self) -> FloatArray:
        """Weight (mm³) in each bin."""
        x = np.arange(self.bins + 2, dtype=np.float64)
        cumulative = np.cumsum(self._slope) * x + np.cumsum(self._intercept)
        return self._points + np.diff(cumulative[: self.bins + 1])


def compute_dvh(
    planes: Sequence[ContourPlane],
    grid: DoseGrid,
    *,
    slice_positions: FloatArray | None = None,
    single_plane_thickness: float | None = None,
    target_samples: int = DEFAULT_TARGET_SAMPLES,
    bins: int = DEFAULT_BINS,
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

    Returns
    -------
    DVH
        Histogram of the part inside the dose grid, exact slab volume, the volume
        outside the grid, and minimum, mean and maximum dose.
    """
    ordered = sorted(planes, key=lambda p: p.z)
    if not ordered:
        raise ValueError("a DVH needs at least one contour plane")
    zs = np.array([p.z for p in ordered], dtype=np.float64)
    if np.any(np.diff(zs) <= PLANE_TOLERANCE_MM):
        raise ValueError("contour planes must have distinct z; merge polygons of one plane first")
    lo, hi, notes = slab_bounds(zs, slice_positions, single_plane_thickness)
    areas = np.array([p.area for p in ordered])
    thickness = hi - lo
    volume_mm3 = float(np.sum(areas * thickness))

    dose_min, dose_max = grid.dose_range
    lower = min(0.0, dose_min)
    upper = dose_max if dose_max > lower else lower + 1.0
    bin_width = (upper - lower) / bins
    edges: FloatArray = lower + np.arange(bins + 1, dtype=np.float64) * bin_width

    if volume_mm3 <= 0:
        return DVH(edges, np.zeros(bins), 0.0, 0.0, math.nan, math.nan, math.nan, 0, tuple(notes))

    h = (volume_mm3 / target_samples) ** (1.0 / 3.0)
    n_subs = np.maximum(1, np.round(thickness / h)).astype(int)
    # In-plane spacing chosen so that planes times sub-slices hold about target_samples.
    h_xy = math.sqrt(float(np.sum(areas * n_subs)) / target_samples)
    hx = grid.dx / min(max(math.ceil(grid.dx / h_xy), 1), MAX_SUBDIVISION)
    hy = grid.dy / min(max(math.ceil(grid.dy / h_xy), 1), MAX_SUBDIVISION)
    (xlo, xhi), (ylo, yhi), (zlo, zhi) = grid.extent
    xstart = float(grid.x[0]) - grid.dx / 2
    ystart = float(grid.y[0]) - grid.dy / 2
    nx = grid.x.size
    dose = grid.dose
    hist = _SpreadHistogram(lower, bin_width, bins)

    outside_mm3 = 0.0
    weighted_sum = 0.0
    inside_mm3 = 0.0
    d_min, d_max = math.inf, -math.inf
    n_samples = 0

    for plane, area, z_lo, z_hi, n_sub in zip(ordered, areas, lo, hi, n_subs, strict=True):
        if area <= 0:
            continue
        verts = np.concatenate(plane.polygons)
        # Every cell that touches the polygons' bounding box.
        xs = _lattice_axis(
            xstart, hx, float(verts[:, 0].min()) - hx / 2, float(verts[:, 0].max()) + hx / 2
        )
        ys = _lattice_axis(
            ystart, hy, float(verts[:, 1].min()) - hy / 2, float(verts[:, 1].max()) + hy / 2
        )
        cells = lattice_cells(plane.polygons, xs, ys, hx, hy)
        rows, cols = np.nonzero(cells.fraction)
        if rows.size:
            px, py = cells.cx[rows, cols], cells.cy[rows, cols]
            share = cells.fraction[rows, cols]
            ext_x, ext_y = cells.extent_x[rows, cols], cells.extent_y[rows, cols]
        else:  # contour thinner than the scan lines: one sample at its centroid
            cx, cy = _centroid(plane.polygons)
            px, py, share = np.array([cx]), np.array([cy]), np.ones(1)
            ext_x = ext_y = np.zeros(1)
        slab_dz = (z_hi - z_lo) / n_sub
        # mm³ per sample: the plane's exact area shared by coverage, times the sub-slice.
        point_weight = share * (area * slab_dz / float(share.sum()))
        z_sub = z_lo + (np.arange(n_sub) + 0.5) * slab_dz
        in_xy = (px >= xlo) & (px <= xhi) & (py >= ylo) & (py <= yhi)
        in_z = (z_sub >= zlo) & (z_sub <= zhi)
        n_in_xy, n_in_z = int(in_xy.sum()), int(in_z.sum())
        outside_mm3 += float(point_weight.sum()) * n_sub - float(point_weight[in_xy].sum()) * n_in_z
        if n_in_xy == 0 or n_in_z == 0:
            continue
        weights = np.tile(point_weight[in_xy], n_in_z)
        cell_wx, cell_wy = hx * ext_x[in_xy], hy * ext_y[in_xy]
        ix, fx = _axis_weights(grid.x, px[in_xy])
        iy, fy = _axis_weights(grid.y, py[in_xy])
        flat = iy * nx + ix
        iz, fz = _axis_weights(grid.z, z_sub[in_z])
        # Per dose frame: bilinear value and in-plane gradient at the sample points.
        value: dict[int, FloatArray] = {}
        grad_x: dict[int, FloatArray] = {}
        grad_y: dict[int, FloatArray] = {}
        for f in np.unique(np.concatenate([iz, iz + 1])).tolist():
            frame = dose[f].ravel()
            d00, d01 = frame[flat], frame[flat + 1]
            d10, d11 = frame[flat + nx], frame[flat + nx + 1]
            lower_row = d00 + (d01 - d00) * fx
            upper_row = d10 + (d11 - d10) * fx
            value[f] = lower_row + (upper_row - lower_row) * fy
            grad_x[f] = ((d01 - d00) * (1 - fy) + (d11 - d10) * fy) / grid.dx
            grad_y[f] = (upper_row - lower_row) / grid.dy
        samples = np.empty((iz.size, value[int(iz[0])].size))
        spread = np.empty_like(samples)
        for s, (k, t) in enumerate(zip(iz.tolist(), fz.tolist(), strict=True)):
            samples[s] = value[k] * (1 - t) + value[k + 1] * t
            gx = grad_x[k] * (1 - t) + grad_x[k + 1] * t
            gy = grad_y[k] * (1 - t) + grad_y[k + 1] * t
            gz = (value[k + 1] - value[k]) / (grid.z[k + 1] - grid.z[k])
            # Dose spread over the sample's own cell (hx x hy x slab_dz) under the local
            # gradient: a box with the same variance as the exact cell distribution.
            spread[s] = np.sqrt((gx * cell_wx) ** 2 + (gy * cell_wy) ** 2 + (gz * slab_dz) ** 2)
        hist.add(samples.ravel(), spread.ravel(), weights)
        weighted_sum += float(np.dot(samples.ravel(), weights))
        inside_mm3 += float(weights.sum())
        d_min = min(d_min, float(samples.min()))
        d_max = max(d_max, float(samples.max()))
        n_samples += samples.size

    if inside_mm3 > 0:
        # Extremes of a smooth field over a prism lie on its vertices: look at the
        # polygon vertices on both slab faces and on the plane itself.
        faces = [
            (np.concatenate(p.polygons), (a, p.z, b))
            for p, a, b in zip(ordered, lo, hi, strict=True)
        ]
        vertices = np.concatenate(
            [np.column_stack([xy, np.full(len(xy), z)]) for xy, zz in faces for z in zz]
        )
        vd = grid.interpolate(vertices)
        vd = vd[np.isfinite(vd)]
        if vd.size:
            d_min = min(d_min, float(vd.min()))
            d_max = max(d_max, float(vd.max()))
        mean = weighted_sum / inside_mm3
    else:
        d_min = d_max = mean = math.nan
        notes.append("no part of the structure lies inside the dose grid")

    # Volumes: the exact slab volume, split by what the samples found outside the grid.
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
    )
