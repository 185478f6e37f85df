"""SABR plan quality as the lung SABR trials score it: the pure NumPy core.

Arrays in, numbers out: nothing here knows about DICOM, protocols or printing.

Quantities (RTOG 0236, 0813 and 0915; definitions in ``docs/protocols.md``)
-----------------------------------------------------------------------------
- ``R100``: volume enclosed by the prescription isodose / PTV volume.
- ``R50``: volume enclosed by the 50 % isodose / PTV volume.
- ``D2cm``: highest dose (in % of the prescription) at 20 mm or more from the PTV, in
  any direction.
- the location of the hottest point: inside the PTV or how far outside it.
- Paddick's conformity index ``TV_PIV**2 / (TV * PIV)`` and gradient index
  ``PIV50 / PIV100`` (reported, not scored).

Geometry
--------
Structures are solids of the slab model of :mod:`rtcheck.dvh` (each contour plane
extruded halfway to its neighbours, flat end caps), so the volumes agree with the DVHs.
The distance of a point from a structure is exact for the slab model up to a raster:
the least over the slabs of ``sqrt(d_xy**2 + d_z**2)``, with ``d_xy`` the in-plane
distance to the slab's polygons read off a Euclidean distance transform
``FIELD_STEP_MM`` fine (about 0.2 mm at most either way).

Dose between grid nodes is trilinear (as for the DVHs). Isodose volumes are counted on a
lattice that cuts every dose voxel into sub-cells about ``LATTICE_STEP_MM`` wide, between
the outer nodes of the grid; an isodose that reaches the edge of the grid is reported as
incomplete (its volume there is unknown).

Several targets
---------------
Each target is scored on its own: every connected part of an isodose cloud (26-connected
on the dose voxels) belongs to the targets it touches, a part touching none to the
nearest target. When one part touches several targets (the 50 % clouds of two close
lesions merge), their isodose volumes cannot be told apart: the ratio of each of them is
that of the group (the clouds' volume over the targets' summed volume) and the result
says which targets were pooled. D2cm of one target is the highest dose at 20 mm or more
from every target and no nearer to another target than to this one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from rtcheck.dvh import ContourPlane, DoseGrid, points_in_polygon, polygon_edges, slab_bounds
from rtcheck.dvh.interpolation import inside_raster

if TYPE_CHECKING:
    from scipy.spatial import cKDTree

# SciPy is imported where it is used, not here: its import costs 0.1-0.3 s, which a
# check that scores no plan quality need not pay (nor scipy.spatial's, when no search
# among surface points is needed).

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

#: Spacing (mm) of the points sampled on a structure's surface for distances.
SURFACE_STEP_MM = 0.5
#: Largest spacing (mm) of the sub-cell lattice for isodose volumes and D2cm.
LATTICE_STEP_MM = 0.5
#: Largest spacing (mm) of the points at which D2cm is searched.
D2CM_STEP_MM = 0.5
#: Slack (fraction of the largest dose near the target) of the D2cm search's estimate
#: of the sampled dose, far above its error (see :func:`_lattice_values`).
LATTICE_DOSE_SLACK = 1e-4
#: Distance (mm) from the PTV at which the trials read D2cm.
D2CM_DISTANCE_MM = 20.0
MM3_PER_CC = 1000.0
#: Raster step (mm) of the in-plane distance fields, and how far they reach beyond a
#: structure (beyond, distances come from sampled surface points).
FIELD_STEP_MM = 0.25
FIELD_MARGIN_MM = 25.0
#: How near (mm) a distance may be to a limit for :meth:`Solid.compare` to leave the
#: answer to :meth:`Solid.distance` (far above the rounding of either).
COMPARE_TOLERANCE_MM = 1e-9


@dataclass(frozen=True)
class Solid:
    """A structure in the slab model: contour planes with the z range of each slab."""

    planes: tuple[ContourPlane, ...]
    lo: FloatArray
    hi: FloatArray

    @classmethod
    def from_planes(
        cls,
        planes: Sequence[ContourPlane],
        slice_positions: FloatArray | None = None,
        single_plane_thickness: float | None = None,
    ) -> Solid:
        """The slab model of a structure (the one :func:`rtcheck.dvh.compute_dvh` uses).

        Raises
        ------
        ValueError
            When the structure has no plane, or one plane and no known thickness.
        """
        ordered = tuple(sorted(planes, key=lambda p: p.z))
        if not ordered:
            raise ValueError("a structure needs at least one contour plane")
        zs = np.array([p.z for p in ordered], dtype=np.float64)
        lo, hi, _ = slab_bounds(zs, slice_positions, single_plane_thickness)
        return cls(ordered, lo, hi)

    @cached_property
    def volume_cc(self) -> float:
        """Volume of the slab model (cc)."""
        return float(
            sum(p.area * (b - a) for p, a, b in zip(self.planes, self.lo, self.hi, strict=True))
            / MM3_PER_CC
        )

    @cached_property
    def box(self) -> FloatArray:
        """Bounding box ``[[xlo, ylo, zlo], [xhi, yhi, zhi]]`` (mm)."""
        xy = np.concatenate([poly for p in self.planes for poly in p.polygons])
        return np.array(
            [
                [xy[:, 0].min(), xy[:, 1].min(), float(self.lo.min())],
                [xy[:, 0].max(), xy[:, 1].max(), float(self.hi.max())],
            ]
        )

    def contains(self, points: FloatArray) -> BoolArray:
        """Whether each point ``(n, 3)`` lies inside the solid (even-odd per plane)."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        out = np.zeros(pts.shape[0], dtype=bool)
        for plane, lo, hi in zip(self.planes, self.lo, self.hi, strict=True):
            sel = np.flatnonzero((pts[:, 2] >= lo) & (pts[:, 2] < hi))
            if sel.size == 0:
                continue
            inside = np.zeros(sel.size, dtype=bool)
            for poly in plane.polygons:
                inside ^= points_in_polygon(pts[sel, 0], pts[sel, 1], poly)
            out[sel] = inside
        return out

    @cached_property
    def surface(self) -> FloatArray:
        """Points on the solid's surface, about ``SURFACE_STEP_MM`` apart, ``(n, 3)``."""
        return self._surface(SURFACE_STEP_MM)

    def _surface(self, step: float) -> FloatArray:
        out: list[FloatArray] = []
        for k, plane in enumerate(self.planes):
            outline = _resample(plane.polygons, step)
            n_z = max(1, math.ceil((self.hi[k] - self.lo[k]) / step))
            for z in np.linspace(self.lo[k], self.hi[k], n_z + 1):
                out.append(np.column_stack([outline, np.full(len(outline), z)]))
        # Horizontal faces: where one slab meets the next (their outlines differ) and the
        # flat end caps of every stack.
        for k, plane in enumerate(self.planes):
            below = k > 0 and abs(self.hi[k - 1] - self.lo[k]) < 1e-6
            above = k + 1 < len(self.planes) and abs(self.hi[k] - self.lo[k + 1]) < 1e-6
            if not below:
                out.append(self._face(plane, None, float(self.lo[k]), step))
            if above:
                out.append(self._face(plane, self.planes[k + 1], float(self.hi[k]), step))
            else:
                out.append(self._face(plane, None, float(self.hi[k]), step))
        return np.concatenate(out) if out else np.zeros((0, 3))

    @staticmethod
    def _face(a: ContourPlane, b: ContourPlane | None, z: float, step: float) -> FloatArray:
        """Lattice points of the area inside ``a`` xor inside ``b`` at height ``z``."""
        polys = list(a.polygons) + (list(b.polygons) if b is not None else [])
        xy = np.concatenate(polys)
        xs = np.arange(xy[:, 0].min(), xy[:, 0].max() + step, step)
        ys = np.arange(xy[:, 1].min(), xy[:, 1].max() + step, step)
        inside = inside_raster(polygon_edges(a.polygons), xs, ys)
        if b is not None:
            inside ^= inside_raster(polygon_edges(b.polygons), xs, ys)
        iy, ix = np.nonzero(inside)
        return np.column_stack([xs[ix], ys[iy], np.full(ix.size, z)])

    @cached_property
    def _tree(self) -> cKDTree:
        from scipy.spatial import cKDTree

        return cKDTree(self.surface)

    @cached_property
    def _fields(self) -> tuple[FloatArray, FloatArray, NDArray[np.float32]]:
        """Per plane, the in-plane distance (mm) to its polygons on a raster around the
        solid (0 inside), ``FIELD_STEP_MM`` apart and ``FIELD_MARGIN_MM`` beyond it."""
        from scipy import ndimage

        (xlo, ylo, _), (xhi, yhi, _) = self.box
        step, margin = FIELD_STEP_MM, FIELD_MARGIN_MM
        xs = np.arange(xlo - margin, xhi + margin + step, step)
        ys = np.arange(ylo - margin, yhi + margin + step, step)
        fields = np.empty((len(self.planes), ys.size, xs.size), dtype=np.float32)
        for k, plane in enumerate(self.planes):
            inside = inside_raster(polygon_edges(plane.polygons), xs, ys)
            fields[k] = ndimage.distance_transform_edt(~inside, sampling=step)
        return xs, ys, fields

    def _raster_nodes(
        self, pts: FloatArray
    ) -> tuple[NDArray[np.intp], NDArray[np.intp], BoolArray]:
        """Column, row of the raster node nearest each point, and whether it is on it."""
        xs, ys, _ = self._fields
        step = FIELD_STEP_MM
        ix = np.rint((pts[:, 0] - xs[0]) / step).astype(np.intp)
        iy = np.rint((pts[:, 1] - ys[0]) / step).astype(np.intp)
        on = (ix >= 0) & (ix < xs.size) & (iy >= 0) & (iy < ys.size)
        return ix, iy, on

    def distance(self, points: FloatArray, *, upper: float = math.inf) -> FloatArray:
        """Distance (mm) of each point ``(n, 3)`` from the solid: 0 inside.

        The distance to slab ``k`` is ``sqrt(d_xy**2 + d_z**2)`` with ``d_xy`` the
        in-plane distance to its polygons (read off a raster ``FIELD_STEP_MM`` fine, to
        the nearest node inside them: at most about ``FIELD_STEP_MM`` off) and ``d_z``
        the distance to its z range; the solid's is the least over its slabs. Points
        beyond the raster take the distance to sampled surface points. Distances beyond
        ``upper`` come back as ``inf``.
        """
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        out = np.full(pts.shape[0], np.inf)
        if pts.shape[0] == 0:
            return out
        _, _, fields = self._fields
        ix, iy, on = self._raster_nodes(pts)
        sel = np.flatnonzero(on)
        if sel.size:
            z = pts[sel, 2]
            dz = np.maximum(np.maximum(self.lo[:, None] - z, z - self.hi[:, None]), 0.0)
            dxy = fields[:, iy[sel], ix[sel]]
            out[sel] = np.hypot(dxy, dz).min(axis=0)
        off = np.flatnonzero(~on)
        if off.size and math.isfinite(upper):
            # Points surely farther than ``upper`` (see :meth:`compare`) stay ``inf``
            # without a search among the surface points.
            off = off[~(self._box_lower_bounds(pts[off]) > upper)]
        if off.size:
            d, _ = self._tree.query(pts[off], distance_upper_bound=upper)
            out[off] = d
        out[out > upper] = np.inf
        return out

    def _box_lower_bounds(self, pts: FloatArray) -> FloatArray:
        """A lower bound of :meth:`distance` of each point ``(n, 3)`` from its distance to
        :attr:`box` (see :meth:`compare`)."""
        gap = np.maximum(np.maximum(self.box[0] - pts, pts - self.box[1]), 0.0)
        lower: FloatArray = np.asarray(
            self._lower_bound(np.sqrt(np.square(gap).sum(axis=1))), dtype=np.float64
        )
        return lower

    @cached_property
    def _fields_squared(self) -> FloatArray:
        """The in-plane distance fields squared in float64, one flat row per plane."""
        fields = self._fields[2]
        return np.square(fields.reshape(fields.shape[0], -1), dtype=np.float64)

    def compare(self, points: FloatArray, limit: float | FloatArray) -> NDArray[np.int8]:
        """Whether :meth:`distance` of each point ``(n, 3)`` is below or above ``limit``.

        Returns -1 where the distance is surely below ``limit``, +1 where surely above,
        0 where it cannot tell cheaply (within ``COMPARE_TOLERANCE_MM`` of the limit, or
        a point beyond the raster not far from the solid): the caller then takes
        :meth:`distance` itself.

        Exact, not an estimate. First a lower bound: the surface points and the raster
        nodes inside the polygons lie in :attr:`box`, and a point is at most
        ``FIELD_STEP_MM / sqrt(2)`` from the raster node it is read at, so the distance
        is at least the distance to the box less that (float32 fields: less 1e-7 of it
        too, as the slack below allows). Then, on the raster, :meth:`distance` is the
        least over the slabs of ``hypot(f_k, d_k)`` with ``f_k`` read off the same node
        and ``d_k`` the same z gap; here ``q_k = f_k**2 + d_k**2`` in float64, whose
        square root is within a few 1e-16 (relative) of that ``hypot``. A ``q_k`` at
        most ``(limit - tol)**2`` makes the distance below the limit; every ``q_k`` at
        least ``(limit + tol)**2`` makes it above. With ``tol`` 1e-9 mm the rounding
        (below 1e-12 mm for distances under a metre) cannot flip either answer.
        """
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        out = np.zeros(pts.shape[0], dtype=np.int8)
        if pts.shape[0] == 0:
            return out
        tol = COMPARE_TOLERANCE_MM
        scalar = np.ndim(limit) == 0
        lim = np.broadcast_to(np.asarray(limit, dtype=np.float64), (pts.shape[0],))
        # The whole set at once when its box is far from the solid's.
        gap = [
            max(self.box[0, a] - float(pts[:, a].max()), float(pts[:, a].min()) - self.box[1, a], 0)
            for a in range(3)
        ]
        top = float(limit) if scalar else float(lim.max())
        if self._lower_bound(math.hypot(*gap)) >= top + tol:
            out[:] = 1
            return out
        ix, iy, on = self._raster_nodes(pts)
        off = np.flatnonzero(~on)
        if off.size:
            lower = self._box_lower_bounds(pts[off])
            out[off[lower >= lim[off] + tol]] = 1
        sel = np.flatnonzero(on)
        if sel.size == 0:
            return out
        if scalar:
            value = float(lim[0])
            below2: float | FloatArray = (value - tol) ** 2 if value > tol else -1.0
            above2: float | FloatArray = (value + tol) ** 2
        else:
            part = lim[sel]
            below2 = np.where(part > tol, np.square(part - tol), -1.0)
            above2 = np.square(part + tol)
        z = pts[sel, 2]
        node = iy[sel] * self._fields[0].size + ix[sel]
        least = np.full(sel.size, np.inf)
        for k, squared in enumerate(self._fields_squared):
            dz = np.maximum(np.maximum(self.lo[k] - z, z - self.hi[k]), 0.0)
            np.minimum(least, squared[node] + dz * dz, out=least)
        out[sel] = np.where(least <= below2, -1, np.where(least >= above2, 1, 0))
        return out

    @staticmethod
    def _lower_bound(to_box: float | FloatArray) -> float | FloatArray:
        """A lower bound of :meth:`distance` from the distance to :attr:`box` (see
        :meth:`compare`)."""
        return (to_box - 0.7072 * FIELD_STEP_MM) * (1 - 1e-6) - COMPARE_TOLERANCE_MM


def _resample(polygons: Sequence[FloatArray], step: float) -> FloatArray:
    """Points along the polygons' edges, at most ``step`` apart (vertices included)."""
    edges = polygon_edges(polygons)
    length = np.hypot(edges[:, 2] - edges[:, 0], edges[:, 3] - edges[:, 1])
    counts = np.maximum(1, np.ceil(length / step).astype(np.intp))
    edge = np.repeat(np.arange(edges.shape[0]), counts)
    t = (np.arange(edge.size) - np.repeat(np.cumsum(counts) - counts, counts)) / counts[edge]
    return np.column_stack(
        [
            edges[edge, 0] + t * (edges[edge, 2] - edges[edge, 0]),
            edges[edge, 1] + t * (edges[edge, 3] - edges[edge, 1]),
        ]
    )


# -- isodose volumes ---------------------------------------------------------------------


@dataclass(frozen=True)
class IsodoseCloud:
    """The volume at or above one dose level, voxel by voxel.

    ``cells`` holds the covered volume (mm³) of each dose voxel (the cell between eight
    nodes) of the box starting at node ``origin`` (z, y, x); ``labels`` numbers its
    26-connected parts (0: none).
    """

    level_gy: float
    origin: tuple[int, int, int]
    cells: FloatArray
    labels: NDArray[np.intp]
    parts: int
    complete: bool

    @property
    def volume_cc(self) -> float:
        """Whole volume at or above the level (cc)."""
        return float(self.cells.sum()) / MM3_PER_CC

    def part_volumes_cc(self) -> FloatArray:
        """Volume of each part (cc), index ``label - 1``."""
        if self.parts == 0:  # the dose never reaches the level
            return np.zeros(0)
        from scipy import ndimage

        sums = ndimage.sum_labels(self.cells, self.labels, np.arange(1, self.parts + 1))
        return np.asarray(sums, dtype=np.float64) / MM3_PER_CC


def _steps(spacing: float, step: float = LATTICE_STEP_MM) -> int:
    return max(1, math.ceil(spacing / step - 1e-9))


def _sub_axis(axis: FloatArray, m: int) -> FloatArray:
    t = (np.arange(m) + 0.5) / m
    return (axis[:-1, None] + np.diff(axis)[:, None] * t[None, :]).ravel()


def isodose_cloud(grid: DoseGrid, level_gy: float, body: Solid | None = None) -> IsodoseCloud:
    """Where the dose is at least ``level_gy``: volume per dose voxel and connected parts.

    Parameters
    ----------
    grid
        The dose grid (trilinear between nodes).
    level_gy
        The dose level (Gy).
    body
        When given, only the volume inside it counts (dose outside the patient is not
        an isodose volume of the patient).
    """
    from scipy import ndimage

    dose = grid.dose
    hot = dose >= level_gy
    empty = np.zeros((0, 0, 0))
    if not hot.any():
        return IsodoseCloud(level_gy, (0, 0, 0), empty, np.zeros((0, 0, 0), np.intp), 0, True)
    edge = (
        hot[0].any()
        or hot[-1].any()
        or hot[:, 0].any()
        or hot[:, -1].any()
        or hot[:, :, 0].any()
        or hot[:, :, -1].any()
    )
    # The box of the hot nodes, one node wider, from the axes' projections.
    rows = [np.flatnonzero(hot.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)]
    lo = [max(int(r[0]) - 1, 0) for r in rows]
    hi = [min(int(r[-1]) + 1, n - 1) for r, n in zip(rows, dose.shape, strict=True)]
    block = np.asarray(dose[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1, lo[2] : hi[2] + 1], np.float64)
    xs, ys, zs = grid.x[lo[2] : hi[2] + 1], grid.y[lo[1] : hi[1] + 1], grid.z[lo[0] : hi[0] + 1]
    mx, my = _steps(grid.dx), _steps(grid.dy)
    sub_x, sub_y = _sub_axis(xs, mx), _sub_axis(ys, my)
    ncz, ncy, ncx = block.shape[0] - 1, block.shape[1] - 1, block.shape[2] - 1
    cells = np.zeros((ncz, ncy, ncx))
    area = grid.dx * grid.dy / (mx * my)
    rasters: dict[int, BoolArray] = {}
    inside_counts: dict[int, NDArray[np.intp]] = {}
    # Only voxels whose corners straddle the level are sampled. The sampled dose is a
    # chain of three linear interpolations (x, y, then z) between the voxel's corners,
    # so it lies between their least and greatest value up to a rounding below 1e-14 of
    # the largest dose: a voxel whose corners are all at least ``level + tol`` has every
    # sub-cell at or above the level, one whose corners are all below ``level - tol``
    # none, with ``tol`` 1e-9 of the largest dose. Straddling voxels are sampled with
    # the very operations of a whole-plane sampling, so every count (and every sum of
    # counts, added in the same order) is what sampling every voxel gives.
    lows = block[:-1, :-1, :-1]
    highs = block[:-1, :-1, :-1]
    for oz, oy, ox in np.ndindex(2, 2, 2):
        corner = block[oz : oz + ncz, oy : oy + ncy, ox : ox + ncx]
        lows, highs = np.minimum(lows, corner), np.maximum(highs, corner)
    tol = 1e-9 * max(float(np.abs(block).max()), abs(level_gy))
    whole = lows >= level_gy + tol
    straddle = ~whole & (highs >= level_gy - tol)
    u = (np.arange(mx) + 0.5) / mx
    v = ((np.arange(my) + 0.5) / my)[:, None]
    for k in range(ncz):
        if not (block[k] >= level_gy).any() and not (block[k + 1] >= level_gy).any():
            continue
        wj, wi = np.nonzero(whole[k])
        sj, si = np.nonzero(straddle[k])
        if wj.size == 0 and sj.size == 0:
            continue
        planes = []
        for p in (block[k], block[k + 1]):
            row0 = p[sj, si][:, None] * (1 - u) + p[sj, si + 1][:, None] * u
            row1 = p[sj + 1, si][:, None] * (1 - u) + p[sj + 1, si + 1][:, None] * u
            planes.append(row0[:, None, :] * (1 - v) + row1[:, None, :] * v)  # (n, my, mx)
        dz = float(zs[k + 1] - zs[k])
        mz = _steps(dz)
        for j in range(mz):
            t = (j + 0.5) / mz
            layer = planes[0] * (1 - t) + planes[1] * t >= level_gy
            whole_counts: NDArray[np.intp] | int = mx * my
            if body is not None:
                plane = _body_plane(body, float(zs[k]) + t * dz)
                raster = _body_raster(body, plane, sub_x, sub_y, rasters)
                layer &= raster.reshape(ncy, my, ncx, mx)[sj, :, si, :]
                if plane not in inside_counts:
                    inside_counts[plane] = (
                        np.full((ncy, ncx), mx * my, dtype=np.intp)
                        if raster.all()
                        else raster.reshape(ncy, my, ncx, mx).sum(axis=(1, 3))
                    )
                whole_counts = inside_counts[plane][wj, wi]
            scale = area * dz / mz
            cells[k, sj, si] += layer.sum(axis=(1, 2)) * scale
            cells[k, wj, wi] += whole_counts * scale
    labels, parts = ndimage.label(cells > 0, structure=np.ones((3, 3, 3), dtype=bool))
    return IsodoseCloud(
        level_gy, (lo[0], lo[1], lo[2]), cells, np.asarray(labels), int(parts), not edge
    )


def _body_plane(body: Solid, z: float) -> int:
    """Index of the body's slab holding height ``z`` (-1: none)."""
    found = np.flatnonzero((body.lo <= z) & (z < body.hi))
    return int(found[0]) if found.size else -1


def _body_raster(
    body: Solid, k: int, xs: FloatArray, ys: FloatArray, cache: dict[int, BoolArray]
) -> BoolArray:
    """Inside-``body`` mask of the raster ``(ys, xs)`` on slab ``k`` (-1: none), cached."""
    if k not in cache:
        cache[k] = (
            _inside_raster(polygon_edges(body.planes[k].polygons), xs, ys)
            if k >= 0
            else np.zeros((ys.size, xs.size), dtype=bool)
        )
    return cache[k]


def _inside_raster(edges: FloatArray, xs: FloatArray, ys: FloatArray) -> BoolArray:
    """:func:`rtcheck.dvh.interpolation.inside_raster`, at once when no edge comes near.

    When no edge's bounding box comes within ``margin`` of the raster's rectangle, the
    rectangle lies wholly inside or wholly outside the region, and ``inside_raster``
    gives every node the answer of its first node: on each row it counts the crossings
    left of a node, and every crossing lies left or right of the whole row by more than
    ``margin``, far above the rounding of its sort keys (below ``ny * width * 2.2e-16``
    mm; ``margin`` is ``1e-9`` of that, plus ``1e-9`` mm). The common answer is read off
    the first node alone. Otherwise the whole raster is computed.
    """
    if edges.shape[0] == 0 or xs.size == 0 or ys.size == 0:
        return inside_raster(edges, xs, ys)
    ex_lo = np.minimum(edges[:, 0], edges[:, 2])
    ex_hi = np.maximum(edges[:, 0], edges[:, 2])
    ey_lo = np.minimum(edges[:, 1], edges[:, 3])
    ey_hi = np.maximum(edges[:, 1], edges[:, 3])
    width = max(float(xs[-1]), float(ex_hi.max())) - min(float(xs[0]), float(ex_lo.min())) + 1
    margin = 1e-9 * (1.0 + ys.size * (abs(width) + 1.0))
    near = (
        (ex_hi >= xs[0] - margin)
        & (ex_lo <= xs[-1] + margin)
        & (ey_hi >= ys[0] - margin)
        & (ey_lo <= ys[-1] + margin)
    )
    if near.any():
        return inside_raster(edges, xs, ys)
    first = bool(inside_raster(edges, xs[:1], ys[:1])[0, 0])
    return np.full((ys.size, xs.size), first, dtype=bool)


# -- per-target quality ------------------------------------------------------------------


@dataclass
class TargetQuality:
    """Plan quality of one target (see the module docstring for the definitions).

    Volumes in cc, doses in Gy, ``d2cm_percent`` in % of the prescription. ``pooled``
    lists the other targets (indices) whose isodose clouds merged with this one's at
    50 % (``pooled_100`` at 100 %): their ratios are those of the group. ``problems``
    says why a quantity is unknown (by quantity name).
    """

    index: int
    volume_cc: float
    piv100_cc: float
    piv50_cc: float
    group_volume_100_cc: float
    group_volume_50_cc: float
    d2cm_gy: float | None
    d2cm_percent: float | None
    max_gy: float | None
    max_point: tuple[float, float, float] | None
    max_outside_mm: float | None
    pooled: tuple[int, ...] = ()
    pooled_100: tuple[int, ...] = ()
    problems: dict[str, str] = field(default_factory=dict)

    @property
    def r100(self) -> float:
        """Prescription isodose volume / PTV volume (of the group when pooled)."""
        return self.piv100_cc / self.group_volume_100_cc

    @property
    def r50(self) -> float:
        """50 % isodose volume / PTV volume (of the group when pooled)."""
        return self.piv50_cc / self.group_volume_50_cc


def paddick_ci(target_cc: float, covered_cc: float, piv_cc: float) -> float | None:
    """Paddick's conformity index ``TV_PIV**2 / (TV * PIV)``; None when a volume is nil."""
    if target_cc <= 0 or piv_cc <= 0:
        return None
    return covered_cc**2 / (target_cc * piv_cc)


def gradient_index(piv50_cc: float, piv100_cc: float) -> float | None:
    """Paddick's gradient index ``PIV50 / PIV100``; None without a prescription isodose."""
    return piv50_cc / piv100_cc if piv100_cc > 0 else None


def _cell_centres(grid: DoseGrid, cloud: IsodoseCloud, cells: NDArray[np.intp]) -> FloatArray:
    z0, y0, x0 = cloud.origin
    k, j, i = cells[:, 0] + z0, cells[:, 1] + y0, cells[:, 2] + x0
    return np.column_stack(
        [
            (grid.x[i] + grid.x[i + 1]) / 2,
            (grid.y[j] + grid.y[j + 1]) / 2,
            (grid.z[k] + grid.z[k + 1]) / 2,
        ]
    )


def _attribute(grid: DoseGrid, cloud: IsodoseCloud, targets: Sequence[Solid]) -> list[set[int]]:
    """For each part of the cloud, the targets it belongs to (see the module docstring)."""
    owners: list[set[int]] = [set() for _ in range(cloud.parts)]
    if cloud.parts == 0:
        return owners
    z0, y0, x0 = cloud.origin
    shape = np.array(cloud.labels.shape)
    for t, solid in enumerate(targets):
        pts = solid.surface
        cz = np.searchsorted(grid.z, pts[:, 2], side="right") - 1 - z0
        cy = np.searchsorted(grid.y, pts[:, 1], side="right") - 1 - y0
        cx = np.searchsorted(grid.x, pts[:, 0], side="right") - 1 - x0
        ok = (cz >= 0) & (cz < shape[0]) & (cy >= 0) & (cy < shape[1]) & (cx >= 0)
        ok &= cx < shape[2]
        for label in np.unique(cloud.labels[cz[ok], cy[ok], cx[ok]]):
            if label > 0:
                owners[int(label) - 1].add(t)
    for p, found in enumerate(owners):
        if found:
            continue
        cells = np.argwhere(cloud.labels == p + 1)
        centres = _cell_centres(grid, cloud, cells)
        inside = [t for t, s in enumerate(targets) if s.contains(centres[:1]).any()]
        if inside:
            found.add(inside[0])
        else:
            nearest = [float(s.distance(centres).min()) for s in targets]
            found.add(int(np.argmin(nearest)))
    return owners


def _groups(owners: list[set[int]], n: int) -> list[set[int]]:
    """Targets that share a part of a cloud, transitively: one set per target."""
    group = [{t} for t in range(n)]
    for found in owners:
        merged = set().union(*(group[t] for t in found))
        for t in merged:
            group[t] = merged
    return group


def _grouped_volumes(
    cloud: IsodoseCloud, owners: list[set[int]], groups: list[set[int]], t: int
) -> float:
    volumes = cloud.part_volumes_cc()
    members = groups[t]
    return float(sum(volumes[p] for p, found in enumerate(owners) if found & members))


@dataclass(frozen=True)
class QualityScan:
    """What the dose says about a set of targets before their volumes are known: the
    100 % and 50 % isodose clouds and which targets own each part, D2cm and the hottest
    point of each target (:func:`scan_quality`). :func:`score_quality` adds the volumes.
    """

    prescription_gy: float
    clouds: dict[float, IsodoseCloud]
    owners: dict[float, list[set[int]]]
    groups: dict[float, list[set[int]]]
    d2cm: tuple[tuple[float | None, str], ...]
    maxima: tuple[tuple[float, tuple[float, float, float], float] | None, ...]


def scan_quality(
    grid: DoseGrid,
    targets: Sequence[Solid],
    prescription_gy: float,
    *,
    body: Solid | None = None,
    distance_mm: float = D2CM_DISTANCE_MM,
) -> QualityScan:
    """The dose's part of :func:`target_quality`: all of its cost, none of the volumes.

    A check runs it while the DVHs (which give the targets' volumes) are computed.
    Parameters as for :func:`target_quality`.
    """
    if not prescription_gy > 0:
        raise ValueError("plan quality needs a positive prescription")
    n = len(targets)
    clouds = {
        1.0: isodose_cloud(grid, prescription_gy, body),
        0.5: isodose_cloud(grid, 0.5 * prescription_gy, body),
    }
    owners = {k: _attribute(grid, c, targets) for k, c in clouds.items()}
    groups = {k: _groups(o, n) for k, o in owners.items()}
    maxima = _maxima(grid, targets, 0.5 * prescription_gy, body)
    d2cm = tuple(_d2cm(grid, targets, t, distance_mm, body) for t in range(n))
    return QualityScan(prescription_gy, clouds, owners, groups, d2cm, tuple(maxima))


def score_quality(scan: QualityScan, volumes_cc: Sequence[float]) -> list[TargetQuality]:
    """R100, R50, D2cm and the hottest point of every target of ``scan``, with the
    targets' volumes ``volumes_cc`` (in the scan's order of targets)."""
    clouds, owners, groups = scan.clouds, scan.owners, scan.groups
    rx = scan.prescription_gy
    if len(volumes_cc) != len(scan.d2cm):
        raise ValueError(f"{len(volumes_cc)} volumes for {len(scan.d2cm)} targets")
    volumes = list(volumes_cc)
    out = []
    for t in range(len(volumes)):
        problems: dict[str, str] = {}
        for key, name in ((1.0, "R100"), (0.5, "R50")):
            if not clouds[key].complete:
                problems[name] = (
                    f"the {100 * key:g} % isodose ({key * rx:.4g} Gy) reaches the "
                    "edge of the dose grid: its volume is unknown"
                )
        d2cm, d2cm_problem = scan.d2cm[t]
        if d2cm_problem:
            problems["D2cm"] = d2cm_problem
        peak = scan.maxima[t]
        if peak is None:
            problems["max_in_target"] = (
                "no dose of 50 % of the prescription or more near the target"
            )
        out.append(
            TargetQuality(
                index=t,
                volume_cc=volumes[t],
                piv100_cc=_grouped_volumes(clouds[1.0], owners[1.0], groups[1.0], t),
                piv50_cc=_grouped_volumes(clouds[0.5], owners[0.5], groups[0.5], t),
                group_volume_100_cc=sum(volumes[g] for g in groups[1.0][t]),
                group_volume_50_cc=sum(volumes[g] for g in groups[0.5][t]),
                d2cm_gy=d2cm,
                d2cm_percent=None if d2cm is None else 100.0 * d2cm / rx,
                max_gy=None if peak is None else peak[0],
                max_point=None if peak is None else peak[1],
                max_outside_mm=None if peak is None else peak[2],
                pooled=tuple(sorted(groups[0.5][t] - {t})),
                pooled_100=tuple(sorted(groups[1.0][t] - {t})),
                problems=problems,
            )
        )
    return out


def target_quality(
    grid: DoseGrid,
    targets: Sequence[Solid],
    prescription_gy: float,
    *,
    body: Solid | None = None,
    target_volumes_cc: Sequence[float] | None = None,
    distance_mm: float = D2CM_DISTANCE_MM,
) -> list[TargetQuality]:
    """R100, R50, D2cm and the location of the hottest point of every target.

    Parameters
    ----------
    grid
        The dose grid.
    targets
        The targets (PTVs), each scored on its own (module docstring: several targets).
    prescription_gy
        The prescription (total Gy): the 100 % level.
    body
        The patient outline, when contoured: isodose volumes and D2cm count only inside.
    target_volumes_cc
        The targets' volumes (cc) as the DVHs measured them; by default the slab model's.
    distance_mm
        Distance from the target at which D2cm is read.
    """
    scan = scan_quality(grid, targets, prescription_gy, body=body, distance_mm=distance_mm)
    volumes = (
        list(target_volumes_cc) if target_volumes_cc is not None else [s.volume_cc for s in targets]
    )
    return score_quality(scan, volumes)


def _best_valid(
    pts: FloatArray,
    values: FloatArray,
    targets: Sequence[Solid],
    t: int,
    distance_mm: float,
    body: Solid | None,
    *,
    own_compared: bool = False,
) -> float:
    """Highest of ``values`` at points that count for target ``t``'s D2cm (else -inf).

    ``own_compared``: the points already passed ``targets[t].compare`` (not -1).
    """
    # Most points fail on a cheap test first: Solid.compare says -1 only where
    # Solid.distance is below distance_mm, and such a point fails the test of
    # _counts_for_d2cm (within distance_mm of target t or of another target).
    if pts.shape[0]:
        maybe = (
            np.ones(pts.shape[0], dtype=bool)
            if own_compared
            else targets[t].compare(pts, distance_mm) >= 0
        )
        for s, other in enumerate(targets):
            if s != t and maybe.any():
                maybe[maybe] = other.compare(pts[maybe], distance_mm) >= 0
        pts, values = pts[maybe], values[maybe]
    # The others take the full test hottest first, in growing batches: the first batch
    # holding a point that counts holds the highest such value (every later point is no
    # hotter), so the rest need not be tested.
    order = np.argsort(-values, kind="stable")
    start, size = 0, 256
    while start < order.size:
        sel = order[start : start + size]
        ok = _counts_for_d2cm(pts[sel], targets, t, distance_mm, body)
        if ok.any():
            return float(values[sel][ok].max())
        start, size = start + size, 2 * size
    return -math.inf


def _counts_for_d2cm(
    pts: FloatArray,
    targets: Sequence[Solid],
    t: int,
    distance_mm: float,
    body: Solid | None,
) -> BoolArray:
    """Whether each point counts for target ``t``'s D2cm: far enough from every target,
    no nearer to another target than to ``t``, inside the body (when given)."""
    # Within distance_mm of another target, or nearer to it than to target t: not t's.
    own = targets[t].distance(pts, upper=distance_mm)
    ok = ~np.isfinite(own)
    if len(targets) > 1 and ok.any():
        sel = np.flatnonzero(ok)
        own_full = targets[t].distance(pts[sel])
        # A point surely beyond both limits (its lower bound from the other target's box
        # exceeds them) passes as its true distance would: it needs no distance, and
        # no search among that target's surface points.
        limit = np.maximum(distance_mm, own_full)
        for s, other in enumerate(targets):
            if s != t:
                d = np.full(sel.size, np.inf)
                need = np.flatnonzero(~(other._box_lower_bounds(pts[sel]) > limit))
                if need.size:
                    d[need] = other.distance(pts[sel[need]])
                ok[sel] &= (d >= distance_mm) & (d >= own_full)
    if body is not None and ok.any():
        ok[ok] = body.contains(pts[ok])
    return ok


def _nodes(grid: DoseGrid, flat: NDArray[np.intp]) -> FloatArray:
    k, j, i = np.unravel_index(flat, grid.dose.shape)
    return np.column_stack([grid.x[i], grid.y[j], grid.z[k]])


def _maxima(
    grid: DoseGrid, targets: Sequence[Solid], floor_gy: float, body: Solid | None
) -> list[tuple[float, tuple[float, float, float], float] | None]:
    """Each target's hottest node among the nodes nearer to it than to any other target.

    The trilinear dose peaks at a node. Only nodes at ``floor_gy`` or more (inside
    ``body`` when given) are considered. Returns ``(dose, point, mm outside)`` or None.
    """
    flat = np.flatnonzero(grid.dose.ravel() >= floor_gy)
    out: list[tuple[float, tuple[float, float, float], float] | None] = [None] * len(targets)
    if flat.size == 0:
        return out
    points = _nodes(grid, flat)
    doses = grid.dose.ravel()[flat].astype(np.float64)
    order = np.argsort(-doses, kind="stable")
    missing = set(range(len(targets)))
    # Growing chunks: the hottest nodes usually settle every target in the first one.
    # The body is asked about a chunk's nodes only (the stable order of the nodes
    # inside it is the order of all nodes with those outside left out).
    start, chunk = 0, 256
    while start < order.size:
        sel = order[start : start + chunk]
        start, chunk = start + chunk, min(2 * chunk, 4096)
        if body is not None:
            sel = sel[body.contains(points[sel])]
            if sel.size == 0:
                continue
        if len(targets) == 1:
            nearest = np.zeros(sel.size, dtype=np.intp)
        else:
            nearest = _nearest_target(points[sel], targets)
        for t in sorted(missing):
            mine = sel[nearest == t]
            if mine.size == 0:
                continue
            best = mine[0]  # the hottest: ``sel`` is in descending dose
            p = points[best]
            outside = float(targets[t].distance(p[None, :])[0])
            out[t] = (float(doses[best]), (float(p[0]), float(p[1]), float(p[2])), outside)
            missing.discard(t)
        if not missing:
            break
    return out


def _nearest_target(points: FloatArray, targets: Sequence[Solid]) -> NDArray[np.intp]:
    """``np.argmin`` over the targets of :meth:`Solid.distance` of each point ``(n, 3)``.

    The same answer, with fewer searches among surface points: a point beyond a
    target's raster whose lower bound from the box (:meth:`Solid._box_lower_bounds`)
    exceeds its distance from a target it lies on the raster of is strictly farther
    from that target than from the nearest one, so leaving its distance at ``inf``
    changes neither the least distance nor the first target reaching it.
    """
    dist = np.full((len(targets), points.shape[0]), np.inf)
    beyond: list[NDArray[np.intp]] = []
    for s, solid in enumerate(targets):
        _, _, on = solid._raster_nodes(points)
        if on.any():
            dist[s, on] = solid.distance(points[on])
        beyond.append(np.flatnonzero(~on))
    nearest_on = dist.min(axis=0)
    for s, solid in enumerate(targets):
        rest = beyond[s]
        if rest.size:
            rest = rest[~(solid._box_lower_bounds(points[rest]) > nearest_on[rest])]
        if rest.size:
            dist[s, rest] = solid.distance(points[rest])
    nearest: NDArray[np.intp] = np.argmin(dist, axis=0)
    return nearest


def _d2cm(
    grid: DoseGrid,
    targets: Sequence[Solid],
    t: int,
    distance_mm: float,
    body: Solid | None,
) -> tuple[float | None, str]:
    """Highest dose at ``distance_mm`` or more from every target, nearest to target ``t``.

    Dose voxels are visited from the hottest corner down; each is sampled on the sub-cell
    lattice, and the search stops when no voxel left can beat the best dose found (the
    trilinear dose in a voxel never exceeds its hottest corner).
    """
    (xlo, ylo, zlo), (xhi, yhi, zhi) = targets[t].box
    reach = distance_mm
    if (
        xlo - reach < grid.x[0]
        or xhi + reach > grid.x[-1]
        or ylo - reach < grid.y[0]
        or yhi + reach > grid.y[-1]
        or zlo - reach < grid.z[0]
        or zhi + reach > grid.z[-1]
    ):
        return None, (
            f"the dose grid does not reach {distance_mm:g} mm beyond the target in every "
            "direction: the dose there is unknown"
        )
    margin = distance_mm + 2 * max(grid.dx, grid.dy, float(np.diff(grid.z).max()))
    lo_idx = [
        max(int(np.searchsorted(axis, low - margin)) - 1, 0)
        for axis, low in ((grid.z, zlo), (grid.y, ylo), (grid.x, xlo))
    ]
    hi_idx = [
        min(int(np.searchsorted(axis, high + margin)) + 1, axis.size - 1)
        for axis, high in ((grid.z, zhi), (grid.y, yhi), (grid.x, xhi))
    ]
    block = grid.dose[
        lo_idx[0] : hi_idx[0] + 1, lo_idx[1] : hi_idx[1] + 1, lo_idx[2] : hi_idx[2] + 1
    ]
    corner_max = block[:-1, :-1, :-1]
    for oz, oy, ox in np.ndindex(2, 2, 2):
        corner_max = np.maximum(
            corner_max,
            block[oz : oz + block.shape[0] - 1, oy : oy + block.shape[1] - 1, ox:][
                :, :, : block.shape[2] - 1
            ],
        )
    value_slack = LATTICE_DOSE_SLACK * float(np.abs(block).max()) if block.size else 0.0
    shape = corner_max.shape
    k, j, i = (a.ravel() for a in np.indices(shape))
    k, j, i = k + lo_idx[0], j + lo_idx[1], i + lo_idx[2]
    centres = np.column_stack(
        [
            (grid.x[i] + grid.x[i + 1]) / 2,
            (grid.y[j] + grid.y[j + 1]) / 2,
            (grid.z[k] + grid.z[k + 1]) / 2,
        ]
    )
    half_diag = 0.5 * np.sqrt(grid.dx**2 + grid.dy**2 + (grid.z[k + 1] - grid.z[k]) ** 2)
    flat_max = corner_max.ravel()
    nearest_allowed = distance_mm - FIELD_STEP_MM - half_diag

    def possible(cells: NDArray[np.intp]) -> BoolArray:
        """Whether each voxel may hold a candidate point: a voxel wholly nearer than
        distance_mm to a target holds none (with the raster's slack, so no voxel is
        dropped wrongly)."""
        # Solid.compare settles most voxels against ``nearest_allowed``: a distance surely below
        # it (by 1e-9 mm) makes ``d + half_diag + FIELD_STEP_MM`` below distance_mm,
        # surely above it makes that sum at least distance_mm (the rounding of the two
        # sums is below 1e-14 mm); the exact test decides the rest.
        ok = np.ones(cells.size, dtype=bool)
        for solid in targets:
            verdict = solid.compare(centres[cells], nearest_allowed[cells])
            ok &= verdict >= 0
            rest = np.flatnonzero(verdict == 0)
            if rest.size:
                far = solid.distance(centres[cells[rest]], upper=distance_mm)
                ok[rest] &= far + half_diag[cells[rest]] + FIELD_STEP_MM >= distance_mm
        return ok

    mx, my = _steps(grid.dx, D2CM_STEP_MM), _steps(grid.dy, D2CM_STEP_MM)
    mz_all = _steps(float(np.diff(grid.z).max()), D2CM_STEP_MM)
    # Points sampled this far apart may miss the boundary of the region by half a
    # sub-cell diagonal: points that much nearer count too, so D2cm is never low.
    slack = 0.5 * math.sqrt(
        (grid.dx / mx) ** 2 + (grid.dy / my) ** 2 + (float(np.diff(grid.z).max()) / mz_all) ** 2
    )
    threshold = distance_mm - slack
    best = -math.inf
    chunk = 512
    # The possible voxels, hottest first (ties in voxel order), in chunks of 512; which
    # voxels are possible is worked out only as far as the search gets.
    order = np.argsort(-flat_max, kind="stable")
    cand = np.zeros(0, dtype=np.intp)
    scanned = start = 0
    while True:
        while cand.size < start + chunk and scanned < order.size:
            part = order[scanned : scanned + 4 * chunk]
            scanned += part.size
            cand = np.concatenate([cand, part[possible(part)]])
        cells = cand[start : start + chunk]
        start += chunk
        if cells.size == 0 or flat_max[cells[0]] <= best:
            break
        cells = cells[flat_max[cells] > best]
        ck, cj, ci = k[cells], j[cells], i[cells]
        dz = grid.z[ck + 1] - grid.z[ck]
        mz = mz_all
        u = (np.arange(mx) + 0.5) / mx
        v = (np.arange(my) + 0.5) / my
        w = (np.arange(mz) + 0.5) / mz
        full = (cells.size, mz, my, mx)
        px = grid.x[ci][:, None, None, None] + grid.dx * u[None, None, None, :]
        py = grid.y[cj][:, None, None, None] + grid.dy * v[None, None, :, None]
        pz = grid.z[ck][:, None, None, None] + dz[:, None, None, None] * w[None, :, None, None]
        pts = np.column_stack(
            [
                np.broadcast_to(px, full).ravel(),
                np.broadcast_to(py, full).ravel(),
                np.broadcast_to(pz, full).ravel(),
            ]
        )
        # Only points hotter than the best so far can raise it, and points surely nearer
        # than the threshold to target t never count (see _best_valid). Both tests are
        # point by point. A cheap estimate of the dose (off by far less than
        # ``value_slack``, see _lattice_values) drops points surely not hotter; the
        # others are tested for distance and then take the dose of
        # DoseGrid.interpolate, as every point did before.
        if math.isfinite(best):
            guess = _lattice_values(grid.dose, ck, cj, ci, u, v, w).ravel()
            pts = pts[guess > best - value_slack]
        pts = pts[targets[t].compare(pts, threshold) >= 0]
        values = grid.interpolate(pts)
        keep = values > best
        if keep.any():
            found = _best_valid(
                pts[keep], values[keep], targets, t, threshold, body, own_compared=True
            )
            best = max(best, found)
    # Beyond the box every point is farther than distance_mm from target t: the trilinear
    # dose there peaks at nodes, so the hotter nodes outside the box finish the search.
    hotter = np.flatnonzero(grid.dose.ravel() > best)
    if hotter.size:
        nk, nj, ni = np.unravel_index(hotter, grid.dose.shape)
        outside = (
            (nk < lo_idx[0])
            | (nk > hi_idx[0])
            | (nj < lo_idx[1])
            | (nj > hi_idx[1])
            | (ni < lo_idx[2])
            | (ni > hi_idx[2])
        )
        if outside.any():
            nodes = _nodes(grid, hotter[outside])
            values = grid.dose.ravel()[hotter[outside]].astype(np.float64)
            best = max(best, _best_valid(nodes, values, targets, t, threshold, body))
    if best == -math.inf:
        return None, f"no point of the dose grid lies {distance_mm:g} mm or more from the target"
    return best, ""


def _lattice_values(
    dose: NDArray[np.floating],
    k: NDArray[np.intp],
    j: NDArray[np.intp],
    i: NDArray[np.intp],
    u: FloatArray,
    v: FloatArray,
    w: FloatArray,
) -> FloatArray:
    """Trilinear dose on the sub-cell lattice of voxels ``(k, j, i)``: ``(n, mz, my, mx)``.

    ``u``, ``v``, ``w`` are the lattice's fractions along x, y and z. The dose of
    :meth:`DoseGrid.interpolate` at those points but for the fractions: that method
    derives them from the points' coordinates, and they differ from ``u``, ``v``, ``w``
    by the grid's tolerated unevenness (below ``1e-6`` of a step; ``1e-9`` of a step
    per node from the first for the axes it treats as uniform, so below ``1e-5`` on
    any axis of fewer than 10,000 nodes) plus rounding. The dose changes across a voxel
    by at most twice the largest corner dose, so the two differ by less than ``2e-5``
    of it, well within ``LATTICE_DOSE_SLACK``: an estimate to drop points by, not the
    value reported.
    """

    def corner(a: int, b: int, c: int) -> FloatArray:
        return np.asarray(dose[k + a, j + b, i + c], dtype=np.float64)

    along_x = [
        [corner(a, b, 0)[:, None] * (1 - u) + corner(a, b, 1)[:, None] * u for b in (0, 1)]
        for a in (0, 1)
    ]  # (n, mx) each
    along_y = [
        row[0][:, None, :] * (1 - v)[:, None] + row[1][:, None, :] * v[:, None] for row in along_x
    ]  # (n, my, mx) each
    values: FloatArray = (
        along_y[0][:, None] * (1 - w)[:, None, None] + along_y[1][:, None] * w[:, None, None]
    )
    return values


def limits_by_volume(
    rows: Sequence[tuple[float, float, float | None]], volume_cc: float
) -> tuple[float, float | None, str]:
    """Limits for a target of ``volume_cc`` from rows ``(volume_cc, max, minor_max)``.

    Linear interpolation between the two rows around the volume (RTOG 0915/0813: "for
    values of PTV volume not specified, linear interpolation between table entries is
    required"); beyond the first or last row that row's limits are used, and the note
    says so.
    """
    volumes = np.array([r[0] for r in rows], dtype=np.float64)
    if volume_cc <= volumes[0] or volume_cc >= volumes[-1]:
        row = rows[0] if volume_cc <= volumes[0] else rows[-1]
        note = (
            ""
            if math.isclose(volume_cc, row[0], rel_tol=1e-9)
            else f"; {volume_cc:.3g} cc lies beyond the table: the {row[0]:g} cc row is used"
        )
        return row[1], row[2], note
    k = int(np.searchsorted(volumes, volume_cc, side="right")) - 1
    (v0, a0, m0), (v1, a1, m1) = rows[k], rows[k + 1]
    f = (volume_cc - v0) / (v1 - v0)
    minor = None if m0 is None or m1 is None else m0 + f * (m1 - m0)
    note = f"; interpolated between the {v0:g} and {v1:g} cc rows"
    return a0 + f * (a1 - a0), minor, note
