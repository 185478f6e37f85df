"""Minimum 3-D distance between two structures under the slab model of :mod:`rtcheck.dvh`.

Arrays in, numbers out: nothing here knows about DICOM.

Geometry
--------
A structure is the union of the slabs of :func:`rtcheck.dvh.slab_bounds`: each axial
plane's polygons (combined by the even-odd rule) extruded from ``lo_k`` to ``hi_k``, so
a slab is a prism ``R_k x [lo_k, hi_k]``. The distance between two such prisms splits
exactly into an in-plane and an axial part, because the squared 3-D distance is the sum
of the squared (x, y) and z distances and the two can be minimised independently::

    d(R x I, S x J) = sqrt(d_xy(R, S)**2 + d_z(I, J)**2)

and the distance between two unions of prisms is the smallest distance between a prism
of one and a prism of the other. This is a true 3-D distance, not a plane-by-plane one:
a target whose lowest slab ends 15 mm above the top of a bronchus is 15 mm away, one
diagonal to it the Euclidean combination of the in-plane and axial gaps, and the flat
end caps and the steps between slabs of different size are taken into account exactly.

In-plane, two even-odd regions are at distance zero when they meet: a vertex of one lies
inside the other, or two of their edges cross. Otherwise the closest points lie on their
boundaries, and the distance between two edges that do not cross is reached at an end
point of one of them, so the distance is the smallest distance from a vertex of one
region to an edge of the other.

Accuracy
--------
Nothing is sampled: the result is the exact minimum over the slab model, up to
floating-point rounding (well below 1e-9 mm; the tests compare hand values to 1e-9 mm).
There is therefore no resolution to choose, and a distance just under or just over a
threshold such as 20 mm lands on the right side of it. The slab model itself differs
from the smooth shape a planning system may display between planes (see
``docs/dvh.md``): near the poles of a round structure contoured every 3 mm its slabs'
corners stick out by up to about half a spacing; that difference is the model's, not
this computation's.

Speed and memory
----------------
Each pair of planes gets a lower bound from the z gap of their slabs and the gap between
their bounding boxes; pairs are visited in increasing order of that bound and the search
stops when the bound reaches the best distance found, so far-away planes are never
looked at; a second bound (each region lies in a disc around its structure's centre)
skips most of the remaining far pairs without changing the result. Within a pair, the
closest pair of vertices bounds the answer from above, and only vertex-edge and
edge-edge pairs whose bounding boxes come within the best distance are computed, in
chunks of about a million pairs, so memory stays bounded whatever the size of the
polygons. Two 30 mm spheres contoured every 1 mm as 128-gons take about 2 ms; a
3,000-vertex BODY on 121 planes against a target about 40 ms.

Overlap and touching
--------------------
Structures closer than :data:`TOUCH_TOLERANCE_MM` touch (distance 0.0). They *overlap*
when their volumes share a region of positive thickness: two slabs whose z ranges
overlap by more than the tolerance and whose polygons' interiors meet. Structures that
only share a face, an edge or a corner touch without overlapping. Interiors meet when a
vertex of one polygon set lies inside the other clear of its boundary, when two edges
cross, or, for boundaries that run along each other, when a point just beside a piece
of one boundary (each boundary cut where the other meets it) lies inside both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from rtcheck.dvh import PLANE_TOLERANCE_MM, ContourPlane, FloatArray, slab_bounds

__all__ = ["TOUCH_TOLERANCE_MM", "Distance", "structure_distance"]

#: Structures closer than this (mm) touch: their distance is reported as 0.0.
TOUCH_TOLERANCE_MM = 1e-6
#: How far (mm) beside a boundary the overlap test probes the two regions.
_PROBE_MM = 1e-4
#: Largest number of point-edge pairs held in memory at once.
_CHUNK = 1 << 20

BoolArray = NDArray[np.bool_]
Point3 = tuple[float, float, float]


@dataclass(frozen=True)
class Distance:
    """Minimum distance between two structures.

    Attributes
    ----------
    mm
        Smallest distance between the two volumes (mm); 0.0 when they overlap or touch.
    overlap
        True when the volumes share a region of positive thickness.
    point_a, point_b
        A closest pair of points (mm), ``point_a`` on structure a and ``point_b`` on b;
        ``|point_b - point_a| == mm``. When the structures overlap both are the same
        point, inside both.
    """

    mm: float
    overlap: bool
    point_a: Point3
    point_b: Point3


@dataclass(frozen=True)
class _Plane:
    """One plane's polygons as edges, with one vertex of each polygon and a bounding box."""

    edges: FloatArray  # (m, 4): x0, y0, x1, y1; each vertex starts one edge
    anchors: FloatArray  # (p, 2): the first vertex of each polygon
    box: FloatArray  # (4,): xmin, ymin, xmax, ymax


@dataclass(frozen=True)
class _Stack:
    """A structure's slabs: z range and polygons of each, and all bounding boxes."""

    lo: FloatArray
    hi: FloatArray
    box: FloatArray  # (n, 4): xmin, ymin, xmax, ymax of each plane
    planes: tuple[_Plane, ...]


def structure_distance(
    a: Sequence[ContourPlane],
    b: Sequence[ContourPlane],
    *,
    slice_positions_a: FloatArray | None = None,
    slice_positions_b: FloatArray | None = None,
    single_plane_thickness: float | None = None,
) -> Distance:
    """Minimum 3-D distance between two structures under the slab model.

    Parameters
    ----------
    a, b
        Contour planes of the two structures (any order, distinct z within each).
    slice_positions_a, slice_positions_b
        z of the image slices each structure was drawn on, when known: a slice without
        a contour inside the structure's extent ends a stack (see
        :func:`rtcheck.dvh.slab_bounds`).
    single_plane_thickness
        Slab thickness (mm) of a plane with no neighbouring slice, e.g. a structure
        contoured on one plane only.

    Returns
    -------
    Distance
        The distance in mm (0.0 when the structures overlap or touch), whether they
        overlap, and a closest pair of points.

    Raises
    ------
    ValueError
        When a structure has no planes, two planes at the same z, a malformed polygon,
        or a lone plane without ``single_plane_thickness``.
    """
    sa = _stack(a, slice_positions_a, single_plane_thickness, "a")
    sb = _stack(b, slice_positions_b, single_plane_thickness, "b")

    # Lower bound of every pair of slabs: z gap and gap between bounding boxes.
    gz = np.maximum(
        0.0, np.maximum(sb.lo[None, :] - sa.hi[:, None], sa.lo[:, None] - sb.hi[None, :])
    )
    gx = np.maximum(
        0.0,
        np.maximum(
            sb.box[None, :, 0] - sa.box[:, None, 2], sa.box[:, None, 0] - sb.box[None, :, 2]
        ),
    )
    gy = np.maximum(
        0.0,
        np.maximum(
            sb.box[None, :, 1] - sa.box[:, None, 3], sa.box[:, None, 1] - sb.box[None, :, 3]
        ),
    )
    bound = np.sqrt(gx**2 + gy**2 + gz**2).ravel()
    order = np.argsort(bound, kind="stable")
    n_b = sb.lo.size
    # The second bound is worked out only when the first pair visited does not settle
    # the search (overlapping and touching structures end there).
    tighter: list[float] | None = None

    best = math.inf
    best_pair = (0, 0)
    best_xy: tuple[tuple[float, float], tuple[float, float]] = ((0.0, 0.0), (0.0, 0.0))
    for flat, lower in zip(order.tolist(), bound[order].tolist(), strict=True):
        if lower >= best:
            break
        if tighter is None and math.isfinite(best):
            tighter = _disk_bound(sa, sb, gz).ravel().tolist()
        if tighter is not None and tighter[flat] >= best:
            # This pair cannot give a distance below the best (only a strictly smaller
            # one replaces it), so skipping it changes nothing, not even which pair of
            # points is reported.
            continue
        ka, kb = divmod(flat, n_b)
        g = float(gz[ka, kb])
        limit = math.sqrt(best * best - g * g) if math.isfinite(best) else math.inf
        found = _region_distance(sa.planes[ka], sb.planes[kb], limit)
        if found is None:
            continue
        d_xy, pa, pb = found
        d = math.hypot(d_xy, g)
        if d < best:
            best, best_pair, best_xy = d, (ka, kb), (pa, pb)
            if best <= TOUCH_TOLERANCE_MM:
                break

    ka, kb = best_pair
    if best <= TOUCH_TOLERANCE_MM:
        witness = _find_overlap(sa, sb, best_pair)
        if witness is not None:
            return Distance(0.0, True, witness, witness)
    za, zb = _facing_z(float(sa.lo[ka]), float(sa.hi[ka]), float(sb.lo[kb]), float(sb.hi[kb]))
    (ax, ay), (bx, by) = best_xy
    mm = 0.0 if best <= TOUCH_TOLERANCE_MM else best
    return Distance(mm, False, (ax, ay, za), (bx, by, zb))


# -- preparation --------------------------------------------------------------------------


def _stack(
    planes: Sequence[ContourPlane],
    slice_positions: FloatArray | None,
    single_plane_thickness: float | None,
    label: str,
) -> _Stack:
    """Slab bounds, bounding boxes and edges of one structure's planes."""
    ordered = sorted(planes, key=lambda p: p.z)
    if not ordered:
        raise ValueError(f"structure {label} has no contour planes")
    zs = np.array([p.z for p in ordered], dtype=np.float64)
    if not np.all(np.isfinite(zs)):
        raise ValueError(f"structure {label} has a plane at a non-finite z")
    if np.any(np.diff(zs) <= PLANE_TOLERANCE_MM):
        raise ValueError(
            f"contour planes of structure {label} must have distinct z; "
            "merge polygons of one plane first"
        )
    positions = None if slice_positions is None else np.asarray(slice_positions, np.float64)
    lo, hi, _notes = slab_bounds(zs, positions, single_plane_thickness)
    keep: list[int] = []
    prepared: list[_Plane] = []
    for i, plane in enumerate(ordered):
        p = _plane(plane.polygons, label)
        if p is not None:
            keep.append(i)
            prepared.append(p)
    if not prepared:
        raise ValueError(f"structure {label} has no polygon with an extent")
    box = np.array([p.box for p in prepared])
    return _Stack(lo[keep], hi[keep], box, tuple(prepared))


@dataclass(frozen=True)
class _Discs:
    """A structure's planes as one edge list, and a disc around each plane's region."""

    edges: FloatArray  # (m, 4): the edges of all planes, plane after plane
    starts: NDArray[np.intp]  # (n,): index in ``edges`` of each plane's first edge
    centre: FloatArray  # (2,): middle of the union of the planes' boxes
    radius: FloatArray  # (n,): distance from ``centre`` to each plane's farthest vertex

    @classmethod
    def of(cls, stack: _Stack) -> _Discs:
        """The discs of a stack: each region lies in the convex hull of its vertices,
        so in the disc around the centre reaching its farthest vertex."""
        edges = np.concatenate([p.edges for p in stack.planes])
        starts = np.cumsum([0] + [p.edges.shape[0] for p in stack.planes[:-1]])
        centre = (stack.box[:, :2].min(axis=0) + stack.box[:, 2:].max(axis=0)) / 2
        far2 = np.maximum.reduceat(np.square(edges[:, :2] - centre).sum(axis=1), starts)
        return cls(edges, starts, centre, np.sqrt(far2))

    def reach(self, point: FloatArray) -> FloatArray:
        """Distance from ``point`` (2,) to each plane's closed even-odd region (0 inside)."""
        x0, y0, x1, y1 = self.edges.T
        qx, qy = float(point[0]), float(point[1])
        with np.errstate(divide="ignore", invalid="ignore"):
            xc = x0 + (qy - y0) * (x1 - x0) / (y1 - y0)
        crossings = ((y0 <= qy) != (y1 <= qy)) & (xc > qx)
        inside = np.add.reduceat(crossings.astype(np.intp), self.starts) % 2 == 1
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((qx - x0) * dx + (qy - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
        d2 = np.minimum.reduceat((qx - x0 - t * dx) ** 2 + (qy - y0 - t * dy) ** 2, self.starts)
        reach: FloatArray = np.where(inside, 0.0, np.sqrt(d2))
        return reach


#: Absolute slack (mm) of :func:`_disk_bound`, far above the rounding of any distance
#: below a kilometre (so the bound never exceeds a distance the search computes).
_BOUND_SLACK_MM = 1e-6


def _disk_bound(sa: _Stack, sb: _Stack, gz: FloatArray) -> FloatArray:
    """A lower bound of the distance between every pair of slabs ``(n_a, n_b)``.

    Each region lies in the disc of its plane's :attr:`_Discs.radius` around its
    structure's centre, so by the triangle inequality its in-plane distance to a region
    of the other structure is at least that region's distance from the centre less the
    radius (either way round). The bound is lowered by
    ``_BOUND_SLACK_MM`` so that rounding cannot lift it above the computed distance.
    """
    da, db = _Discs.of(sa), _Discs.of(sb)
    reach_b = db.reach(da.centre)  # (n_b,)
    reach_a = da.reach(db.centre)  # (n_a,)
    d_xy = np.maximum(
        np.maximum(reach_b[None, :] - da.radius[:, None], reach_a[:, None] - db.radius[None, :]),
        0.0,
    )
    bound: FloatArray = np.sqrt(d_xy**2 + gz**2) * (1 - 1e-12) - _BOUND_SLACK_MM
    return bound


def _plane(polygons: Sequence[FloatArray], label: str) -> _Plane | None:
    """Edges of one plane's polygons, zero-length ones dropped; None when none is left."""
    parts = []
    anchors = []
    for poly in polygons:
        p = np.asarray(poly, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != 2 or p.shape[0] < 3:
            raise ValueError(f"structure {label}: a polygon needs an (n, 2) array, n >= 3")
        if not np.all(np.isfinite(p)):
            raise ValueError(f"structure {label}: polygon vertices must be finite")
        following = np.concatenate([p[1:], p[:1]])
        e = np.concatenate([p, following], axis=1)[np.any(p != following, axis=1)]
        if e.shape[0]:
            parts.append(e)
            anchors.append(e[0, :2])
    if not parts:
        return None
    edges = np.concatenate(parts)
    box = np.array([edges[:, 0].min(), edges[:, 1].min(), edges[:, 0].max(), edges[:, 1].max()])
    return _Plane(edges, np.array(anchors), box)


def _facing_z(lo_a: float, hi_a: float, lo_b: float, hi_b: float) -> tuple[float, float]:
    """z of the closest points of two slabs: facing faces, or the middle of their overlap."""
    if lo_b >= hi_a:
        return hi_a, lo_b
    if lo_a >= hi_b:
        return lo_a, hi_b
    z = (max(lo_a, lo_b) + min(hi_a, hi_b)) / 2
    return z, z


# -- in-plane primitives ------------------------------------------------------------------


def _inside(px: FloatArray, py: FloatArray, edges: FloatArray) -> BoolArray:
    """Even-odd test of many points against all edges of one plane."""
    out = np.zeros(px.size, dtype=bool)
    if px.size == 0 or edges.shape[0] == 0:
        return out
    x0, y0, x1, y1 = edges.T
    step = max(1, _CHUNK // edges.shape[0])
    for s in range(0, px.size, step):
        qx, qy = px[s : s + step, None], py[s : s + step, None]
        crosses = (y0 <= qy) != (y1 <= qy)
        with np.errstate(divide="ignore", invalid="ignore"):
            xc = x0 + (qy - y0) * (x1 - x0) / (y1 - y0)
        out[s : s + step] = np.count_nonzero(crosses & (xc > qx), axis=1) % 2 == 1
    return out


def _nearest_on_edges(px: FloatArray, py: FloatArray, edges: FloatArray) -> FloatArray:
    """For each point, the squared distance to the nearest edge."""
    d2 = np.full(px.size, np.inf)
    if px.size == 0 or edges.shape[0] == 0:
        return d2
    x0, y0, x1, y1 = edges.T
    dx, dy = x1 - x0, y1 - y0
    inv = 1.0 / (dx * dx + dy * dy)  # zero-length edges were dropped
    step = max(1, _CHUNK // edges.shape[0])
    for s in range(0, px.size, step):
        qx, qy = px[s : s + step, None], py[s : s + step, None]
        t = np.clip(((qx - x0) * dx + (qy - y0) * dy) * inv, 0.0, 1.0)
        d2[s : s + step] = np.min((qx - x0 - t * dx) ** 2 + (qy - y0 - t * dy) ** 2, axis=1)
    return d2


def _closest_vertices(va: FloatArray, vb: FloatArray) -> float:
    """Smallest distance between a point of ``va`` and one of ``vb`` (both ``(n, 2)``).

    Brute force in chunks of at most ``_CHUNK`` pairs: a few milliseconds for a plane of
    a target against one of a BODY, some 30 ms for two planes of 3,000 vertices. It is
    needed once per pair of structures (for the first pair of planes visited).
    """
    best = math.inf
    step = max(1, _CHUNK // vb.shape[0])
    for s in range(0, va.shape[0], step):
        chunk = va[s : s + step]
        d2 = (chunk[:, None, 0] - vb[None, :, 0]) ** 2 + (chunk[:, None, 1] - vb[None, :, 1]) ** 2
        best = min(best, float(d2.min()))
    return math.sqrt(best)


def _closest_vertex_edge(
    vertices: FloatArray, edges: FloatArray, limit: float
) -> tuple[float, tuple[float, float], tuple[float, float]] | None:
    """Closest pair (vertex, point on an edge) closer than ``limit``, or None.

    Returns the distance, the vertex and the nearest point on the edge. Only the
    vertex-edge pairs whose bounding boxes come within ``limit`` are computed.
    """
    if vertices.shape[0] == 0 or edges.shape[0] == 0:
        return None
    ex_lo = np.minimum(edges[:, 0], edges[:, 2])
    ex_hi = np.maximum(edges[:, 0], edges[:, 2])
    ey_lo = np.minimum(edges[:, 1], edges[:, 3])
    ey_hi = np.maximum(edges[:, 1], edges[:, 3])
    best = limit
    found: tuple[float, tuple[float, float], tuple[float, float]] | None = None
    step = max(1, _CHUNK // edges.shape[0])
    for s in range(0, vertices.shape[0], step):
        vx, vy = vertices[s : s + step, 0], vertices[s : s + step, 1]
        if math.isfinite(best):
            near = (
                (vx[:, None] >= ex_lo - best)
                & (vx[:, None] <= ex_hi + best)
                & (vy[:, None] >= ey_lo - best)
                & (vy[:, None] <= ey_hi + best)
            )
            i, j = np.nonzero(near)
        else:
            i = np.repeat(np.arange(vx.size), edges.shape[0])
            j = np.tile(np.arange(edges.shape[0]), vx.size)
        if i.size == 0:
            continue
        px, py = vx[i], vy[i]
        x0, y0, x1, y1 = (edges[j, c] for c in range(4))
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((px - x0) * dx + (py - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
        fx, fy = x0 + t * dx, y0 + t * dy
        d2 = (px - fx) ** 2 + (py - fy) ** 2
        k = int(np.argmin(d2))
        d = math.sqrt(float(d2[k]))
        if d < best:
            best = d
            found = (d, (float(px[k]), float(py[k])), (float(fx[k]), float(fy[k])))
    return found


def _crossing(ea: FloatArray, eb: FloatArray, margin: float) -> tuple[float, float] | None:
    """A point where an edge of ``ea`` crosses one of ``eb``, or None.

    Each edge's end points must lie strictly on opposite sides of the other edge's line,
    by more than ``margin`` mm (0 for any sign change). Only pairs of edges whose
    bounding boxes overlap are computed.
    """
    if ea.shape[0] == 0 or eb.shape[0] == 0:
        return None
    bx_lo = np.minimum(eb[:, 0], eb[:, 2])
    bx_hi = np.maximum(eb[:, 0], eb[:, 2])
    by_lo = np.minimum(eb[:, 1], eb[:, 3])
    by_hi = np.maximum(eb[:, 1], eb[:, 3])
    step = max(1, _CHUNK // eb.shape[0])
    for s in range(0, ea.shape[0], step):
        chunk = ea[s : s + step]
        near = (
            (np.maximum(chunk[:, 0], chunk[:, 2])[:, None] >= bx_lo)
            & (np.minimum(chunk[:, 0], chunk[:, 2])[:, None] <= bx_hi)
            & (np.maximum(chunk[:, 1], chunk[:, 3])[:, None] >= by_lo)
            & (np.minimum(chunk[:, 1], chunk[:, 3])[:, None] <= by_hi)
        )
        i, j = np.nonzero(near)
        if i.size == 0:
            continue
        ax0, ay0, ax1, ay1 = (chunk[i, c] for c in range(4))
        bx0, by0, bx1, by1 = (eb[j, c] for c in range(4))
        adx, ady, bdx, bdy = ax1 - ax0, ay1 - ay0, bx1 - bx0, by1 - by0
        alen, blen = np.hypot(adx, ady), np.hypot(bdx, bdy)
        # Signed distances of a's end points from b's line and of b's from a's line.
        s1 = (bdx * (ay0 - by0) - bdy * (ax0 - bx0)) / blen
        s2 = (bdx * (ay1 - by0) - bdy * (ax1 - bx0)) / blen
        s3 = (adx * (by0 - ay0) - ady * (bx0 - ax0)) / alen
        s4 = (adx * (by1 - ay0) - ady * (bx1 - ax0)) / alen
        proper = (s1 * s2 < 0) & (s3 * s4 < 0)
        if margin > 0:
            proper &= (np.minimum(np.abs(s1), np.abs(s2)) > margin) & (
                np.minimum(np.abs(s3), np.abs(s4)) > margin
            )
        hits = np.flatnonzero(proper)
        if hits.size:
            k = hits[0]
            t = s1[k] / (s1[k] - s2[k])
            return float(ax0[k] + t * adx[k]), float(ay0[k] + t * ady[k])
    return None


def _near_box(edges: FloatArray, box: FloatArray, margin: float) -> FloatArray:
    """Edges whose bounding box comes within ``margin`` of ``box``."""
    if not math.isfinite(margin):
        return edges
    near = (
        (np.maximum(edges[:, 0], edges[:, 2]) >= box[0] - margin)
        & (np.minimum(edges[:, 0], edges[:, 2]) <= box[2] + margin)
        & (np.maximum(edges[:, 1], edges[:, 3]) >= box[1] - margin)
        & (np.minimum(edges[:, 1], edges[:, 3]) <= box[3] + margin)
    )
    selected: FloatArray = edges[near]
    return selected


def _points_in_box(points: FloatArray, box: FloatArray, margin: float) -> FloatArray:
    """Points ``(n, 2)`` within ``margin`` of ``box``."""
    if not math.isfinite(margin):
        return points
    near = (
        (points[:, 0] >= box[0] - margin)
        & (points[:, 0] <= box[2] + margin)
        & (points[:, 1] >= box[1] - margin)
        & (points[:, 1] <= box[3] + margin)
    )
    selected: FloatArray = points[near]
    return selected


def _box_intersection(box_a: FloatArray, box_b: FloatArray) -> FloatArray | None:
    """The intersection of two bounding boxes, None when they do not meet."""
    box = np.concatenate([np.maximum(box_a[:2], box_b[:2]), np.minimum(box_a[2:], box_b[2:])])
    if box[2] < box[0] or box[3] < box[1]:
        return None
    return box


# -- in-plane distance --------------------------------------------------------------------


def _region_distance(
    pa: _Plane, pb: _Plane, limit: float
) -> tuple[float, tuple[float, float], tuple[float, float]] | None:
    """Distance between two even-odd regions and a closest pair of points.

    Returns None when the distance is not below ``limit`` (which may be infinite).
    """
    common = _box_intersection(pa.box, pb.box)
    if common is not None:
        meet = _closed_regions_meet(pa, pb, common)
        if meet is not None:
            return 0.0, meet, meet
    if not math.isfinite(limit):
        # The closest pair of vertices bounds the answer from above (a vertex lies on
        # its edges), so the vertex-edge pairs compared below can be narrowed at once.
        limit = _closest_vertices(pa.edges[:, :2], pb.edges[:, :2]) * (1 + 1e-9) + 1e-12
    best: tuple[float, tuple[float, float], tuple[float, float]] | None = None
    for src, dst, flip in ((pa, pb, False), (pb, pa, True)):
        bound = limit if best is None else best[0]
        found = _closest_vertex_edge(
            _points_in_box(src.edges[:, :2], dst.box, bound),
            _near_box(dst.edges, src.box, bound),
            bound,
        )
        if found is not None:
            d, p, q = found
            best = (d, q, p) if flip else found
    return best


def _closed_regions_meet(pa: _Plane, pb: _Plane, common: FloatArray) -> tuple[float, float] | None:
    """A point common to two closed even-odd regions, or None.

    Either a polygon of one lies (by one of its vertices) inside the other, or two edges
    cross. When neither holds, each polygon's boundary lies wholly inside or wholly
    outside the other region unless the boundaries touch, and then their distance is
    zero anyway: the caller's boundary distance settles it.
    """
    for src, dst in ((pa, pb), (pb, pa)):
        v = _points_in_box(src.anchors, dst.box, 0.0)
        hit = np.flatnonzero(_inside(v[:, 0], v[:, 1], dst.edges))
        if hit.size:
            return float(v[hit[0], 0]), float(v[hit[0], 1])
    return _crossing(_near_box(pa.edges, common, 0.0), _near_box(pb.edges, common, 0.0), 0.0)


def _interiors_meet(pa: _Plane, pb: _Plane) -> tuple[float, float] | None:
    """A point where the interiors of two even-odd regions meet, or None.

    Quick tests first: a vertex of one region inside the other (farther than the touch
    tolerance from its boundary), or two edges crossing at a clear angle. Otherwise each
    boundary is cut where the other boundary crosses or touches it; if the interiors
    meet, the intersection's boundary is made of such pieces, and beside one of them (on
    the side of its own region) lies a point of both regions.
    """
    ea, eb = pa.edges, pb.edges
    tol2 = TOUCH_TOLERANCE_MM**2
    for src, dst in ((pa, pb), (pb, pa)):
        v = _points_in_box(src.edges[:, :2], dst.box, 0.0)
        v = v[_inside(v[:, 0], v[:, 1], dst.edges)]
        if v.shape[0]:
            d2 = _nearest_on_edges(v[:, 0], v[:, 1], dst.edges)
            clear = np.flatnonzero(d2 > tol2)
            if clear.size:
                i = clear[0]
                radius = min(_PROBE_MM, math.sqrt(float(d2[i])) / 2)
                return _interior_witness(float(v[i, 0]), float(v[i, 1]), ea, eb, radius)
    near_a = _near_box(ea, pb.box, 2 * _PROBE_MM)
    near_b = _near_box(eb, pa.box, 2 * _PROBE_MM)
    crossing = _crossing(near_a, near_b, TOUCH_TOLERANCE_MM)
    if crossing is not None:
        return _interior_witness(*crossing, ea, eb, _PROBE_MM)
    for cut, cutting in ((near_a, near_b), (near_b, near_a)):
        probes = _probes(cut, cutting)
        both = _inside(probes[:, 0], probes[:, 1], ea) & _inside(probes[:, 0], probes[:, 1], eb)
        hit = np.flatnonzero(both)
        if hit.size:
            return float(probes[hit[0], 0]), float(probes[hit[0], 1])
    return None


def _interior_witness(
    x: float, y: float, ea: FloatArray, eb: FloatArray, radius: float
) -> tuple[float, float]:
    """A point within ``radius`` of ``(x, y)`` inside both regions, else ``(x, y)`` itself.

    ``(x, y)`` lies on the boundary of the regions' intersection (a vertex of one inside
    the other, or a crossing of their edges); a point of the intersection's interior lies
    next to it in some direction. 64 directions are tried.
    """
    angle = np.linspace(0.0, 2 * np.pi, 64, endpoint=False)
    px, py = x + radius * np.cos(angle), y + radius * np.sin(angle)
    hit = np.flatnonzero(_inside(px, py, ea) & _inside(px, py, eb))
    if hit.size:
        return float(px[hit[0]]), float(py[hit[0]])
    return x, y


def _probes(src: FloatArray, other: FloatArray) -> FloatArray:
    """Points beside the pieces of ``src``'s edges cut where ``other``'s edges meet them.

    Each piece contributes the two points at :data:`_PROBE_MM` on either side of its
    middle. Shape ``(n, 2)``.
    """
    if src.shape[0] == 0:
        return np.zeros((0, 2))
    x0, y0, x1, y1 = src.T
    dx, dy = x1 - x0, y1 - y0
    length = np.hypot(dx, dy)
    cut_edge: list[NDArray[np.intp]] = [np.arange(src.shape[0]), np.arange(src.shape[0])]
    cut_t: list[FloatArray] = [np.zeros(src.shape[0]), np.ones(src.shape[0])]
    if other.shape[0]:
        ox0, oy0, ox1, oy1 = other.T
        odx, ody = ox1 - ox0, oy1 - oy0
        olen = np.hypot(odx, ody)
        step = max(1, _CHUNK // other.shape[0])
        for s in range(0, src.shape[0], step):
            sl = slice(s, s + step)
            cx0, cy0 = x0[sl, None], y0[sl, None]
            cdx, cdy, clen = dx[sl, None], dy[sl, None], length[sl, None]
            # Vertices of the other boundary lying on this edge.
            t = ((ox0 - cx0) * cdx + (oy0 - cy0) * cdy) / (clen * clen)
            off = np.abs((ox0 - cx0) * cdy - (oy0 - cy0) * cdx) / clen
            on = (t > 0) & (t < 1) & (off <= TOUCH_TOLERANCE_MM)
            i, _ = np.nonzero(on)
            cut_edge.append(i + s)
            cut_t.append(t[on])
            # Edges of the other boundary crossing this edge.
            s1 = (odx * (cy0 - oy0) - ody * (cx0 - ox0)) / olen
            s2 = (odx * (cy0 + cdy - oy0) - ody * (cx0 + cdx - ox0)) / olen
            s3 = (cdx * (oy0 - cy0) - cdy * (ox0 - cx0)) / clen
            s4 = (cdx * (oy1 - cy0) - cdy * (ox1 - cx0)) / clen
            cross = (s1 * s2 < 0) & (s3 * s4 <= 0)
            i, _ = np.nonzero(cross)
            cut_edge.append(i + s)
            cut_t.append(s1[cross] / (s1[cross] - s2[cross]))
    edge = np.concatenate(cut_edge)
    tt = np.concatenate(cut_t)
    order = np.lexsort((tt, edge))
    edge, tt = edge[order], tt[order]
    same = edge[1:] == edge[:-1]
    e, t_lo, t_hi = edge[:-1][same], tt[:-1][same], tt[1:][same]
    keep = (t_hi - t_lo) * length[e] > 1e-9
    e, tm = e[keep], (t_lo[keep] + t_hi[keep]) / 2
    mx, my = x0[e] + tm * dx[e], y0[e] + tm * dy[e]
    nx, ny = -dy[e] / length[e] * _PROBE_MM, dx[e] / length[e] * _PROBE_MM
    return np.concatenate(
        [np.column_stack([mx + nx, my + ny]), np.column_stack([mx - nx, my - ny])]
    )


# -- overlap ------------------------------------------------------------------------------


def _find_overlap(sa: _Stack, sb: _Stack, first: tuple[int, int]) -> Point3 | None:
    """A point inside both structures' volumes, or None when they only touch."""
    z_lo = np.maximum(sa.lo[:, None], sb.lo[None, :])
    z_hi = np.minimum(sa.hi[:, None], sb.hi[None, :])
    x_over = np.minimum(sa.box[:, None, 2], sb.box[None, :, 2]) - np.maximum(
        sa.box[:, None, 0], sb.box[None, :, 0]
    )
    y_over = np.minimum(sa.box[:, None, 3], sb.box[None, :, 3]) - np.maximum(
        sa.box[:, None, 1], sb.box[None, :, 1]
    )
    candidate = (
        (z_hi - z_lo > TOUCH_TOLERANCE_MM)
        & (x_over > TOUCH_TOLERANCE_MM)
        & (y_over > TOUCH_TOLERANCE_MM)
    )
    pairs = [first] if candidate[first] else []
    pairs += [(int(ka), int(kb)) for ka, kb in np.argwhere(candidate) if (ka, kb) != first]
    for ka, kb in pairs:
        meet = _interiors_meet(sa.planes[ka], sb.planes[kb])
        if meet is not None:
            z = float(z_lo[ka, kb] + z_hi[ka, kb]) / 2
            return meet[0], meet[1], z
    return None
