"""Shape interpolation between contour planes: the ``"shape"`` structure model.

The slab model (:func:`rtcheck.dvh.slab_bounds`) extrudes every contour halfway to its
neighbours, so a structure between two planes is one contour or the other. This module
lets the structure change smoothly instead, as a surface drawn through the contours
would: the *area* of each cross-section comes from :mod:`rtcheck.dvh.area_profile` (one
smooth curve through the planes' areas), its *outline* from a field interpolated
between the planes.

Model
-----
On each plane P the field is ``F_P = phi_P (2 R - phi_P)``: ``phi_P`` is the in-plane
signed distance to P's outline (positive inside; polygons combine by the even-odd rule)
and ``R`` the largest such distance on the planes an interval uses (the radius of the
largest inscribed circle). ``F`` is a monotone transform of ``phi`` with the same zero
set, crossing zero with the same slope on every plane of the interval; for a circle of
radius ``R`` it is ``R**2 - rho**2``. Between planes A and B of one stack ``F`` follows
a cubic Hermite curve in z (at each plane the slope of the parabola through it and its
neighbours), limited to lie between ``F_A`` and ``F_B`` so the outline never leaves the
union of the two outlines nor cuts into their overlap. The outline at height z is where
that field equals the level at which it encloses the profile's area, and the prism
carries the profile's area exactly.

The outline is interpolated only where it changes (:func:`outline_changes`): over the
end interval of a stack whose area rises into it (where the surface closes: the pole
of a round structure, the apex of a cone) and where the outlines' symmetric difference,
estimated from their areas and centroids, exceeds :data:`OUTLINE_CHANGE` of the larger
area. Elsewhere each plane keeps its own outline
halfway to its neighbours, as in the slab model, but holds the profile's mean area over
that half, so the volume is the same smooth curve's everywhere. A plane's outline is
kept unchanged, with its own area, between two planes whose outlines are identical or
no farther apart than a sub-layer is thick (the sampling step along z). Beyond the
first and last plane of each stack the structure ends with a flat cap, as in the slab
model (the Nelms convention).

Numerics
--------
Each interval is cut into sub-layers no thicker than the sampling step the structure gets
along z anyway (``sub_layer_mm``, at least :data:`SUB_LAYER_MM`); a sub-layer is a prism
whose outline is traced at its middle and whose area is the profile's mean over it.
``F`` is sampled on one raster per structure over the outlines involved (at most
:data:`MAX_RASTER_POINTS` nodes, spacing at least :data:`MIN_RASTER_MM`); see
:func:`signed_distance`. The level is found by counting raster cells. Outlines are
traced by marching squares, with crossings shared between neighbouring cells so the
traced outlines are closed, and oriented with the inside on their left.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from rtcheck.dvh.area_profile import AreaProfile, parabola_slope
from rtcheck.dvh.kernel import active as active_kernel
from rtcheck.dvh.structure import (
    PLANE_TOLERANCE_MM,
    ContourPlane,
    FloatArray,
    Layer,
    polygon_edges,
)

#: Thinnest sub-layer (mm) an interval between two planes is cut into.
SUB_LAYER_MM = 0.25
#: Most raster points per interval for the signed distance.
MAX_RASTER_POINTS = 5_000
#: Most raster steps along either side (an elongated structure gets a finer raster
#: than a square root of :data:`MAX_RASTER_POINTS` per side would give it).
MAX_RASTER_SIDE = 1000
#: Finest raster spacing (mm).
MIN_RASTER_MM = 0.05
#: Relative change of area between two planes above which the outline between them is
#: interpolated (see :func:`outline_changes`).
OUTLINE_CHANGE = 0.3
#: Raster nodes per side of the blocks that share one list of candidate nearest edges
#: in the signed distance (:class:`SignedDistance`), coarsest first: each size divides
#: the one before it.
BLOCK_LEVELS = (32, 8)


def shape_layers(
    planes: Sequence[ContourPlane],
    lo: FloatArray,
    hi: FloatArray,
    sub_layer_mm: float = SUB_LAYER_MM,
    change: float = OUTLINE_CHANGE,
) -> list[Layer]:
    """The prisms of the shape-interpolated model of one structure.

    Parameters
    ----------
    planes
        Contour planes in ascending z.
    lo, hi
        Their slab bounds (:func:`rtcheck.dvh.slab_bounds`): two neighbouring planes
        belong to one stack when the upper bound of one is the lower bound of the next;
        otherwise both end a stack and keep their flat caps.
    sub_layer_mm
        Thickest sub-layer (mm); values below :data:`SUB_LAYER_MM` count as that. Planes
        no farther apart keep their own outlines halfway, as slabs.

    Returns
    -------
    list of Layer
        Flat caps, the planes' own outlines, interpolated sub-layers and unchanged
        stretches, in ascending z; neighbouring pieces of one plane's outline are one
        layer.
    """
    n = len(planes)
    edges = [polygon_edges(p.polygons) for p in planes]
    joined = [abs(float(hi[i]) - float(lo[i + 1])) <= PLANE_TOLERANCE_MM for i in range(n - 1)]
    profile = AreaProfile([p.z for p in planes], [p.area for p in planes], joined)
    thickest = max(sub_layer_mm, SUB_LAYER_MM)
    subs = [
        max(1, math.ceil((planes[i + 1].z - planes[i].z) / thickest - 1e-9))
        if joined[i]
        and planes[i + 1].z - planes[i].z > thickest
        and not _same_outline(planes[i], planes[i + 1])
        and outline_changes(planes[i], planes[i + 1], i in profile.ends, change)
        else 1
        for i in range(n - 1)
    ]
    fields = _Fields(planes, edges, [i for i in range(n - 1) if subs[i] > 1], joined)
    layers: list[Layer] = []

    def outline(near: int, far: int) -> FloatArray:
        """Plane ``near``'s edges, or ``far``'s when ``near`` has none (no polygons)."""
        return edges[near] if edges[near].shape[0] else edges[far]

    def own(i: int, z0: float, z1: float, area: float, other: int | None = None) -> None:
        """Plane i's outline from z0 to z1, merged with the layer below if that is the same."""
        drawn = outline(i, i if other is None else other)
        exact = area == planes[i].area  # the plane's own area: the sampler checks it
        if drawn.shape[0] == 0 or (area <= 0 and not exact):
            return
        last = layers[-1] if layers else None
        if (
            last is not None
            and last.edges is drawn
            and last.area == area
            and abs(last.hi - z0) < 1e-9
        ):
            layers.pop()
            z0 = last.lo
        mine = drawn is edges[i]
        layers.append(
            Layer(
                z0,
                z1,
                drawn,
                area,
                exact=exact,
                outline_area=planes[i].area if mine and not exact else None,
                plane_z=planes[i].z if mine else None,
            )
        )

    for i, plane in enumerate(planes):
        if i == 0 or not joined[i - 1]:
            own(i, float(lo[i]), plane.z, plane.area)
        if i == n - 1 or not joined[i]:
            own(i, plane.z, float(hi[i]), plane.area)
            continue
        nxt = planes[i + 1]
        m = subs[i]
        if m == 1:
            gap = nxt.z - plane.z
            if gap <= thickest or (_same_outline(plane, nxt) and i not in profile.bulges):
                # Close planes, or identical outlines with a flat area curve between
                # them: slabs. (Identical outlines where the curve bulges, at the
                # equator of a sphere centred between two planes, take its mean area
                # in pieces, below.)
                own(i, plane.z, plane.z + 0.5 * gap, plane.area)
                own(i + 1, plane.z + 0.5 * gap, nxt.z, nxt.area)
                continue
            # Outlines that change little: each plane's own up to halfway, in pieces no
            # thicker than a sub-layer, each holding the profile's mean area over it
            # (the volume and its spread along z of the smooth model).
            q = max(1, math.ceil(0.5 * gap / thickest - 1e-9))
            t = np.arange(2 * q + 1) / (2 * q)
            bounds = plane.z + gap * t
            areas = profile.means(i, t)
            for k in range(2 * q):
                near, far = (i, i + 1) if k < q else (i + 1, i)
                own(near, float(bounds[k]), float(bounds[k + 1]), float(areas[k]), far)
            continue
        # Outlines at t = k/m, each the middle of its layer, the planes' own at both ends;
        # each layer holds the mean area of the profile over its thickness.
        t = np.clip((np.arange(m + 2) - 0.5) / m, 0.0, 1.0)
        bounds = plane.z + (nxt.z - plane.z) * t
        areas = profile.means(i, t)
        own(i, plane.z, float(bounds[1]), float(areas[0]), i + 1)
        traced = fields.between(i, m, profile.between(i, np.arange(1, m) / m))
        for k, drawn in enumerate(traced):
            if drawn.shape[0] == 0:  # thinner than the raster: the nearer plane's
                drawn = outline(i, i + 1) if 2 * (k + 1) <= m else outline(i + 1, i)
            if areas[k + 1] > 0:
                layers.append(
                    Layer(
                        float(bounds[k + 1]),
                        float(bounds[k + 2]),
                        drawn,
                        float(areas[k + 1]),
                        exact=False,
                    )
                )
        own(i + 1, float(bounds[m]), nxt.z, float(areas[m]), i)
    return layers


def outline_changes(a: ContourPlane, b: ContourPlane, pole: bool, change: float) -> bool:
    """Whether the outline between two planes is interpolated (the rule of the model).

    The outlines' symmetric difference, where interpolating can move anything, is
    estimated from their areas and centroids as for two discs: ``|A_a - A_b|`` for a
    change of size plus ``4 r d`` for a shift ``d`` of the centroid, ``r`` the radius of
    a disc of the larger area.

    Parameters
    ----------
    a, b
        The two planes.
    pole
        The interval ends a stack whose area rises into it (its area is an end fit).
    change
        Smallest estimated symmetric difference, as a fraction of the larger area,
        that is interpolated.

    Returns
    -------
    bool
        True at the ends of a stack whose area rises into it, and where the estimated
        symmetric difference exceeds ``change`` of the larger area.
    """
    larger = max(a.area, b.area)
    if pole or larger <= 0 or min(a.area, b.area) <= 0:
        return True
    (ax, ay), (bx, by) = _plane_centroid(a), _plane_centroid(b)
    shift = math.hypot(ax - bx, ay - by)
    moved = abs(a.area - b.area) + 4.0 * math.sqrt(larger / math.pi) * shift
    return moved > change * larger


def _plane_centroid(plane: ContourPlane) -> tuple[float, float]:
    """Area centroid of a plane's polygons, a polygon inside another's box a hole (mm).

    An estimate for :func:`outline_changes`: nesting is judged from bounding boxes,
    which is exact for the usual holes and islands and cheap.
    """
    polygons = plane.polygons
    boxes = np.array([[*p.min(axis=0), *p.max(axis=0)] for p in polygons])
    total = sx = sy = 0.0
    for i, poly in enumerate(polygons):
        x, y = poly[:, 0], poly[:, 1]
        x1, y1 = np.concatenate([x[1:], x[:1]]), np.concatenate([y[1:], y[:1]])
        cross = x * y1 - x1 * y
        area = 0.5 * float(cross.sum())
        if area == 0:
            continue
        cx = float(((x + x1) * cross).sum()) / (6 * area)
        cy = float(((y + y1) * cross).sum()) / (6 * area)
        box = boxes[i]
        depth = int(
            np.count_nonzero(
                (boxes[:, 0] <= box[0])
                & (boxes[:, 1] <= box[1])
                & (boxes[:, 2] >= box[2])
                & (boxes[:, 3] >= box[3])
            )
            - 1
        )
        weight = abs(area) * (1 if depth % 2 == 0 else -1)
        total += weight
        sx += weight * cx
        sy += weight * cy
    if total <= 0:
        return float(polygons[0][:, 0].mean()), float(polygons[0][:, 1].mean())
    return sx / total, sy / total


class _Fields:
    """The field F of the planes next to interpolated intervals, on one raster.

    The raster spans those planes' outlines (at most :data:`MAX_RASTER_POINTS` nodes).
    Each plane's signed distance is computed once, and only at the nodes some interval
    reads: where the outlines of an interval disagree, the nodes next to them where the
    outline is traced, and those that may hold the plane's largest distance.
    """

    def __init__(
        self,
        planes: Sequence[ContourPlane],
        edges: Sequence[FloatArray],
        intervals: Sequence[int],
        joined: Sequence[bool],
    ) -> None:
        self.planes, self.edges, self.joined = planes, edges, joined
        self.cache: dict[int, SignedDistance] = {}
        self.radii: dict[int, float] = {}
        needed = sorted({j for i in intervals for j in (i - 1, i, i + 1, i + 2)})
        needed = [j for j in needed if 0 <= j < len(planes)]
        if not needed:
            self.xs = self.ys = np.zeros(0)
            self.step = 0.0
            return
        verts = np.concatenate([edges[j][:, :2] for j in needed])
        (x_lo, y_lo), (x_hi, y_hi) = verts.min(axis=0), verts.max(axis=0)
        self.step = max(
            math.sqrt((x_hi - x_lo) * (y_hi - y_lo) / MAX_RASTER_POINTS),
            (x_hi - x_lo) / MAX_RASTER_SIDE,
            (y_hi - y_lo) / MAX_RASTER_SIDE,
            MIN_RASTER_MM,
        )
        # Two empty raster steps around the outlines, so every traced curve closes.
        self.xs = np.arange(x_lo - 2 * self.step, x_hi + 2.5 * self.step, self.step)
        self.ys = np.arange(y_lo - 2 * self.step, y_hi + 2.5 * self.step, self.step)

    def distance(self, j: int) -> SignedDistance:
        """Plane j's signed distance ``phi`` on the raster (computed where asked)."""
        if j not in self.cache:
            self.cache[j] = SignedDistance(self.edges[j], self.xs, self.ys)
        return self.cache[j]

    def radius(self, j: int) -> float:
        """Plane j's largest signed distance ``R`` (at least one raster step)."""
        if j not in self.radii:
            self.radii[j] = max(self.distance(j).largest(), self.step)
        return self.radii[j]

    def between(self, i: int, m: int, areas: FloatArray) -> list[FloatArray]:
        """Outlines at t = k/m, k = 1 ... m-1, between planes i and i + 1, enclosing ``areas``."""
        planes, joined = self.planes, self.joined
        z = [p.z for p in planes]
        gap = z[i + 1] - z[i]
        before = i > 0 and joined[i - 1]
        after = i + 2 < len(planes) and joined[i + 1]
        used = [j for j, use in ((i - 1, before), (i, True), (i + 1, True), (i + 2, after)) if use]
        # F = phi (2 R - phi) with one R for all planes of the interval (the largest of
        # theirs): every plane's field then crosses zero with the same slope 2 R, so
        # where two fields meet (the union and overlap that bound the outline) marching
        # squares places the crossing right even next to a pole contour, whose own R
        # is nil. For a circle of radius R it is R**2 - rho**2.
        radius = max(self.radius(j) for j in used)
        t = (np.arange(1, m) / m)[:, None]
        h00, h10 = 2 * t**3 - 3 * t**2 + 1, t**3 - 2 * t**2 + t
        h01, h11 = -2 * t**3 + 3 * t**2, t**3 - t**2

        def hermite(nodes: NDArray[np.intp]) -> tuple[FloatArray, FloatArray, FloatArray]:
            """The Hermite field (m - 1 rows) and its limits at flat raster nodes."""
            fields = {}
            for j in used:
                phi = self.distance(j).at(nodes)
                fields[j] = phi * (2 * radius - phi)
            f_a, f_b = fields[i], fields[i + 1]
            # Slopes dF/dz at both planes: the slope of the parabola through three
            # planes, centred inside a stack, one-sided at its ends (exact for F
            # quadratic in z).
            if before:
                slope_a = parabola_slope(z[i], z[i - 1], z[i + 1], f_a, fields[i - 1], f_b)
            elif after:
                slope_a = parabola_slope(z[i], z[i + 1], z[i + 2], f_a, f_b, fields[i + 2])
            else:
                slope_a = (f_b - f_a) / gap
            if after:
                slope_b = parabola_slope(z[i + 1], z[i], z[i + 2], f_b, f_a, fields[i + 2])
            elif before:
                slope_b = parabola_slope(z[i + 1], z[i], z[i - 1], f_b, f_a, fields[i - 1])
            else:
                slope_b = (f_b - f_a) / gap
            stack = h00 * f_a + h10 * gap * slope_a + h01 * f_b + h11 * gap * slope_b
            # Limiter: between the two planes the field stays within their values, so
            # the outline never leaves the union of the two outlines nor cuts into
            # their overlap.
            return stack, np.minimum(f_a, f_b), np.maximum(f_a, f_b)

        in_a, in_b = self.distance(i).positive, self.distance(i + 1).positive
        overlap = in_a & in_b
        # Only where the two outlines disagree does the level matter: elsewhere the
        # limiter decides (inside both: inside; outside both: outside).
        disagree = np.flatnonzero(in_a != in_b)
        stack, low, high = hermite(disagree)
        # The level of the Hermite field enclosing the wanted area (as many raster cells
        # as the area holds), the outline kept between the overlap and the union.
        values = -np.sort(-stack, axis=1)
        counts = np.asarray(areas) / self.step**2
        ranks = int(np.count_nonzero(overlap)) + np.arange(disagree.size) + 0.5
        levels = np.array(
            [
                np.interp(c, ranks, v) if disagree.size else 0.0
                for c, v in zip(counts, values, strict=True)
            ]
        )
        # Which nodes are inside each sub-layer's outline: the overlap, and the nodes
        # where the outlines disagree whose field is above the level. Only raster cells
        # with a corner where they disagree, or corners on both sides of the overlap's
        # outline, can be crossed: the rest of the raster is never looked at.
        ny, nx = self.ys.size, self.xs.size
        above = np.clip(stack - levels[:, None], low, high) > 0
        flag = np.zeros(ny * nx, dtype=bool)
        flag[disagree] = True
        f2, o2 = flag.reshape(ny, nx), overlap.reshape(ny, nx)
        candidate = f2[:-1, :-1] | f2[:-1, 1:] | f2[1:, 1:] | f2[1:, :-1]
        candidate |= (
            (o2[:-1, :-1] != o2[:-1, 1:])
            | (o2[:-1, :-1] != o2[1:, 1:])
            | (o2[:-1, :-1] != o2[1:, :-1])
        )
        ci, cj = np.nonzero(candidate)
        corner = _cell_corners(ci, cj, nx)
        where = np.full(ny * nx, -1, dtype=np.intp)
        where[disagree] = np.arange(disagree.size)
        pos = where[corner]
        if disagree.size:
            inside = np.where(pos >= 0, above[:, np.maximum(pos, 0)], overlap[corner])
        else:
            inside = np.broadcast_to(overlap[corner], (m - 1, *corner.shape))
        mixed = inside.any(axis=1) & ~inside.all(axis=1)
        # The exact field at the corners of every cell the outline crosses in some
        # sub-layer (marching squares reads no other value).
        nodes = _distinct(corner[:, mixed.any(axis=0)].ravel(), ny * nx)
        stack, low, high = hermite(nodes)
        limited = np.clip(stack - levels[:, None], low, high)
        column = np.full(ny * nx, -1, dtype=np.intp)
        column[nodes] = np.arange(nodes.size)
        layer, cell = np.nonzero(mixed)
        values = limited[layer[None, :], column[corner[:, cell]]]
        return _trace_cells(layer, ci[cell], cj[cell], values, m - 1, self.xs, self.ys)


def _same_outline(a: ContourPlane, b: ContourPlane) -> bool:
    return len(a.polygons) == len(b.polygons) and all(
        p.shape == q.shape and np.array_equal(p, q)
        for p, q in zip(a.polygons, b.polygons, strict=True)
    )


def signed_distance(edges: FloatArray, xs: FloatArray, ys: FloatArray) -> FloatArray:
    """Signed distance (mm, positive inside) from raster nodes to closed outlines.

    Parameters
    ----------
    edges
        ``(n, 4)`` edges of closed curves, combined by the even-odd rule.
    xs, ys
        Raster node coordinates, ascending and evenly spaced.

    Returns
    -------
    ndarray, shape ``(len(ys), len(xs))``

    Notes
    -----
    Exact: each node's distance is the smallest of its distances to the edges that can
    be nearest to it (see :class:`SignedDistance`, which computes the same values only
    at the nodes asked for). The sign comes from the even-odd scan-line test
    (:func:`inside_raster`); a node on the outline is inside with distance 0. Outlines
    without edges are infinitely far (a large negative value).
    """
    lazy = SignedDistance(edges, xs, ys)
    return lazy.at(np.arange(xs.size * ys.size)).reshape(ys.size, xs.size)


class SignedDistance:
    """:func:`signed_distance` of one outline, computed only at the nodes asked for.

    The raster is cut into blocks of nodes (:data:`BLOCK_LEVELS`, finest last).
    For each block, the distance ``D`` from its centre to every edge is computed once;
    a node of the block lies within ``r`` (the block's half diagonal) of the centre, so
    its nearest edge is among those at most ``D_min + 2 r`` from the centre. A node's
    distance is the smallest of its exact distances to those edges: exact, and the same
    whichever other nodes are asked for (asking for all of them gives
    :func:`signed_distance`). Values are kept once computed.

    Parameters
    ----------
    edges, xs, ys
        As for :func:`signed_distance`.
    """

    def __init__(self, edges: FloatArray, xs: FloatArray, ys: FloatArray) -> None:
        self.edges, self.xs, self.ys = edges, xs, ys
        nx, ny = xs.size, ys.size
        size = nx * ny
        self.values = np.full(size, np.nan)
        self.known = np.zeros(size, dtype=bool)
        if edges.shape[0] == 0:
            far_away = 10.0 * (float(np.ptp(xs)) + float(np.ptp(ys)) + 1.0)
            self.values[:] = -far_away
            self.known[:] = True
            self.inside = self.positive = np.zeros(size, dtype=bool)
            return
        inside = inside_raster(edges, xs, ys)
        self.inside = inside.ravel()
        self.segments = _segments(edges)
        # The edges that can be nearest to some node of each block (CSR lists).
        (
            self.block_of,
            self.block_nearest,
            self.reach,
            self.candidates,
            self.candidates_start,
            self.candidates_count,
        ) = _block_candidates(self.segments, xs, ys)
        # A node on the outline is inside by the scan test but has distance 0, so its
        # field is not positive: look among the inside nodes next to an outside one.
        beside = np.zeros_like(inside)
        beside[:, 1:] |= ~inside[:, :-1]
        beside[:, :-1] |= ~inside[:, 1:]
        beside[1:, :] |= ~inside[:-1, :]
        beside[:-1, :] |= ~inside[1:, :]
        edge_nodes = np.flatnonzero(inside & beside)
        self.positive = self.inside.copy()
        self.positive[edge_nodes] = self.at(edge_nodes) > 0

    def at(self, nodes: NDArray[np.intp]) -> FloatArray:
        """Signed distances at flat node indices (row-major), computing the missing ones."""
        todo = nodes[~self.known[nodes]]
        if todo.size:
            todo = _distinct(todo, self.known.size)
            self.values[todo] = self._compute(todo)
            self.known[todo] = True
        result: FloatArray = self.values[nodes]
        return result

    def _compute(self, nodes: NDArray[np.intp]) -> FloatArray:
        """Signed distances at distinct nodes: each to its block's candidate edges."""
        compiled = active_kernel()
        if compiled is not None:
            distance = np.empty(nodes.size)
            compiled.nearest_distance(
                np.ascontiguousarray(self.segments, dtype=np.float64),
                *(
                    np.asarray(a, dtype=np.intp)
                    for a in (self.candidates, self.candidates_start, self.candidates_count)
                ),
                np.asarray(self.block_of[nodes], dtype=np.intp),
                np.asarray(self.xs[nodes % self.xs.size], dtype=np.float64),
                np.asarray(self.ys[nodes // self.xs.size], dtype=np.float64),
                distance,
            )
            return np.where(self.inside[nodes], distance, -distance)
        block = self.block_of[nodes]
        order = np.argsort(block, kind="stable")
        ordered, block = nodes[order], block[order]
        count = self.candidates_count[block]
        start = self.candidates_start[block]
        px = self.xs[ordered % self.xs.size]
        py = self.ys[ordered // self.xs.size]
        # Chunks of about _PAIRS_AT_ONCE node-edge pairs (bounds memory).
        ends = np.cumsum(count)
        cuts = np.searchsorted(ends, np.arange(_PAIRS_AT_ONCE, int(ends[-1]), _PAIRS_AT_ONCE))
        bounds = np.unique(np.concatenate([[0], cuts, [nodes.size]]))
        distance = np.empty(nodes.size)
        for a, z in itertools.pairwise(bounds):
            c = count[a:z]
            first = np.cumsum(c) - c
            owner = np.repeat(np.arange(z - a), c)
            pick = np.arange(owner.size) - first[owner] + start[a:z][owner]
            d2 = _distance2(self.segments[self.candidates[pick]], px[a:z][owner], py[a:z][owner])
            distance[order[a:z]] = np.sqrt(np.minimum.reduceat(d2, first))
        signed: FloatArray = np.where(self.inside[nodes], distance, -distance)
        return signed

    def largest(self) -> float:
        """The largest signed distance of a node inside, 0.0 when no node is inside.

        Only nodes that can reach it are computed: a node's distance is at most its
        block centre's plus the block's half diagonal; the nodes of the block with the
        highest such bound give a first maximum, and only blocks whose bound reaches it
        are searched.
        """
        inner = np.flatnonzero(self.inside)
        if inner.size == 0:
            return 0.0
        blocks = self.block_of[inner]
        bound = (self.block_nearest + self.reach)[blocks]
        top = blocks[np.argmax(bound)]
        best = float(self.at(inner[blocks == top]).max())
        return max(best, float(self.at(inner[bound >= best]).max()))


def _blocks(
    xs: FloatArray, ys: FloatArray, size: int
) -> tuple[FloatArray, FloatArray, FloatArray, int, int]:
    """Blocks of ``size`` x ``size`` nodes: centres, half diagonals, blocks per row, per column."""
    nx, ny = xs.size, ys.size
    nbx, nby = -(-nx // size), -(-ny // size)
    first_x, first_y = np.arange(nbx) * size, np.arange(nby) * size
    lo_x, hi_x = xs[first_x], xs[np.minimum(first_x + size - 1, nx - 1)]
    lo_y, hi_y = ys[first_y], ys[np.minimum(first_y + size - 1, ny - 1)]
    cx = np.broadcast_to(0.5 * (lo_x + hi_x), (nby, nbx)).ravel()
    cy = np.broadcast_to((0.5 * (lo_y + hi_y))[:, None], (nby, nbx)).ravel()
    reach = np.hypot(
        np.broadcast_to(0.5 * (hi_x - lo_x), (nby, nbx)),
        np.broadcast_to((0.5 * (hi_y - lo_y))[:, None], (nby, nbx)),
    ).ravel()
    return cx, cy, reach, nbx, nby


def _block_candidates(
    segments: FloatArray, xs: FloatArray, ys: FloatArray
) -> tuple[
    NDArray[np.intp], FloatArray, FloatArray, NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]
]:
    """For blocks of raster nodes, the edges that can be nearest to any of their nodes.

    A node lies within ``r`` (its block's half diagonal) of the block's centre, so its
    nearest edge is among those at most ``D + 2 r`` from the centre, ``D`` the centre's
    distance to the nearest of the edges searched. Coarse blocks are searched first
    (:data:`BLOCK_LEVELS`), each finer block only among its coarse block's candidates:
    those hold the nearest edge of every node of the coarse block, so the test stays
    exact (``D`` is then at least the centre's true distance, still a bound).

    Returns
    -------
    tuple
        Block of every node (flat, row-major); per finest block the centre's distance
        to its nearest candidate and its half diagonal (mm); the candidate edges of
        all blocks, one list after another, and where each block's list starts and how
        long it is.
    """
    nx, ny = xs.size, ys.size
    n_edges = segments.shape[0]
    sizes = BLOCK_LEVELS
    count = start = candidates = np.zeros(0, dtype=np.intp)
    nearest = reach = np.zeros(0)
    for level, size in enumerate(sizes):
        cx, cy, reach, nbx, nby = _blocks(xs, ys, size)
        n_blocks = cx.size
        if level == 0:
            per_block = np.full(n_blocks, n_edges, dtype=np.intp)
        else:
            ratio = sizes[level - 1] // size
            parent_columns = -(-nx // sizes[level - 1])
            parent = (
                (np.arange(nby) // ratio)[:, None] * parent_columns
                + (np.arange(nbx) // ratio)[None, :]
            ).ravel()
            per_block = count[parent]
        owner = np.repeat(np.arange(n_blocks), per_block)
        first = np.cumsum(per_block) - per_block
        if level == 0:
            edge = np.tile(np.arange(n_edges), n_blocks)
        else:
            edge = candidates[np.arange(owner.size) - first[owner] + start[parent][owner]]
        d = np.sqrt(_distance2(segments[edge], cx[owner], cy[owner]))
        nearest = np.minimum.reduceat(d, first)
        # (a hair of slack for rounding: an extra candidate costs nothing but time)
        bound = nearest + 2.0 * reach + 1e-9 * (1.0 + nearest + reach)
        keep = d <= bound[owner]
        count = np.add.reduceat(keep, first).astype(np.intp)
        candidates = edge[keep]
        start = np.cumsum(count) - count
    finest = sizes[-1]
    nbx = -(-nx // finest)
    block_of = (
        (np.arange(ny) // finest)[:, None] * nbx + (np.arange(nx) // finest)[None, :]
    ).ravel()
    return block_of, nearest, reach, candidates, start, count


def _distinct(nodes: NDArray[np.intp], size: int) -> NDArray[np.intp]:
    """The distinct node indices below ``size``, ascending (``np.unique`` without sorting)."""
    mark = np.zeros(size, dtype=bool)
    mark[nodes] = True
    return np.flatnonzero(mark)


#: Node-edge pairs measured at once by :class:`SignedDistance` (bounds memory).
_PAIRS_AT_ONCE = 1 << 17


def _segments(edges: FloatArray) -> FloatArray:
    """Per edge ``(x0, y0, dx, dy, 1 / length**2)`` (0 for an edge of no length)."""
    x0, y0 = edges[:, 0], edges[:, 1]
    dx, dy = edges[:, 2] - x0, edges[:, 3] - y0
    length2 = dx * dx + dy * dy
    inverse = np.divide(1.0, length2, out=np.zeros_like(length2), where=length2 > 0)
    return np.column_stack([x0, y0, dx, dy, inverse])


def _distance2(segments: FloatArray, px: FloatArray, py: FloatArray) -> FloatArray:
    """Squared distance from points ``(px, py)`` to segments (:func:`_segments`), broadcast."""
    x0, y0, dx, dy, inverse = (segments[..., k] for k in range(5))
    ex, ey = px - x0, py - y0
    t = np.clip((ex * dx + ey * dy) * inverse, 0.0, 1.0)
    ex = ex - t * dx
    ey = ey - t * dy
    result: FloatArray = ex * ex + ey * ey
    return result


def inside_raster(edges: FloatArray, xs: FloatArray, ys: FloatArray) -> NDArray[np.bool_]:
    """Even-odd inside test of every raster node ``(xs[j], ys[i])``: shape ``(ny, nx)``."""
    compiled = active_kernel()
    if compiled is not None:
        out = np.empty((ys.size, xs.size), dtype=bool)
        compiled.inside_raster(
            np.ascontiguousarray(edges, dtype=np.float64),
            np.ascontiguousarray(xs, dtype=np.float64),
            np.ascontiguousarray(ys, dtype=np.float64),
            out,
        )
        return out
    x0, y0, x1, y1 = edges[:, 0], edges[:, 1], edges[:, 2], edges[:, 3]
    sloped = y0 != y1
    x0, y0, x1, y1 = x0[sloped], y0[sloped], x1[sloped], y1[sloped]
    ylo, yhi = np.minimum(y0, y1), np.maximum(y0, y1)
    # Edge e crosses row i when ylo <= ys[i] < yhi: a contiguous range of rows.
    first = np.searchsorted(ys, ylo, side="left")
    end = np.searchsorted(ys, yhi, side="left")
    per_edge = end - first
    edge = np.repeat(np.arange(per_edge.size), per_edge)
    row = first[edge] + (np.arange(edge.size) - np.repeat(np.cumsum(per_edge) - per_edge, per_edge))
    t = (ys[row] - y0[edge]) / (y1[edge] - y0[edge])
    xc = x0[edge] + t * (x1[edge] - x0[edge])
    # Count the crossings left of every node, all rows at once: rows are offset so the
    # keys of one row never reach the next.
    width = float(max(xs[-1], xc.max(initial=xs[-1])) - min(xs[0], xc.min(initial=xs[0]))) + 1.0
    origin = float(min(xs[0], xc.min(initial=xs[0])))
    keys = np.sort(row * width + (xc - origin))
    nodes = (np.arange(ys.size)[:, None] * width + (xs[None, :] - origin)).ravel()
    row_start = np.searchsorted(keys, np.arange(ys.size) * width, side="left")
    left = np.searchsorted(keys, nodes, side="left") - np.repeat(row_start, xs.size)
    return np.asarray((left % 2 == 1).reshape(ys.size, xs.size))


def _cell_tables() -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Marching-squares segments of every corner case, as (start edge, end edge) pairs.

    Corners 0-3 are (i, j), (i, j+1), (i+1, j+1), (i+1, j): counter-clockwise; cell edge
    k joins corner k to corner k+1. A segment starts where the walk round the cell
    leaves the inside and ends at the nearest re-entry walking back (clockwise), so the
    inside lies on its left. Saddles get both readings: table index 16 + case holds the
    one where the two inside corners connect through the cell's centre.
    """
    pairs = np.full((32, 2, 2), -1, dtype=np.intp)
    for case in range(16):
        inside = [(case >> k) & 1 for k in range(4)]
        leaving = [k for k in range(4) if inside[k] and not inside[(k + 1) % 4]]
        entering = [k for k in range(4) if not inside[k] and inside[(k + 1) % 4]]
        for n, k in enumerate(leaving):
            back = next((k - s) % 4 for s in range(1, 4) if (k - s) % 4 in entering)
            pairs[case, n] = (k, back)
            forward = next((k + s) % 4 for s in range(1, 4) if (k + s) % 4 in entering)
            pairs[16 + case, n] = (k, forward)
    return pairs[..., 0], pairs[..., 1]


_START, _END = _cell_tables()


def marching_squares(fields: FloatArray, xs: FloatArray, ys: FloatArray) -> list[FloatArray]:
    """Edges of the region ``field > 0`` of every layer of ``fields`` ``(m, ny, nx)``.

    Returns one ``(n, 4)`` array of oriented edges ``(x0, y0, x1, y1)`` per layer, inside
    on the left. Crossings are computed once per raster edge, so neighbouring cells share
    their end points exactly. The field must be non-positive on the raster's border.
    """
    m, _ny, nx = fields.shape
    inside = fields > 0
    crossed = (
        (inside[:, :-1, :-1] != inside[:, :-1, 1:])
        | (inside[:, :-1, :-1] != inside[:, 1:, 1:])
        | (inside[:, :-1, :-1] != inside[:, 1:, :-1])
    )
    layer, i, j = np.nonzero(crossed)
    flat = fields.reshape(m, -1)
    values = flat[layer[None, :], _cell_corners(i, j, nx)]
    return _trace_cells(layer, i, j, values, m, xs, ys)


def _cell_corners(i: NDArray[np.intp], j: NDArray[np.intp], nx: int) -> NDArray[np.intp]:
    """Flat node indices ``(4, n)`` of the corners of raster cells ``(i, j)``.

    Corners 0-3 are (i, j), (i, j+1), (i+1, j+1), (i+1, j): counter-clockwise.
    """
    base = i * nx + j
    return np.stack([base, base + 1, base + nx + 1, base + nx])


def _trace_cells(
    layer: NDArray[np.intp],
    i: NDArray[np.intp],
    j: NDArray[np.intp],
    values: FloatArray,
    m: int,
    xs: FloatArray,
    ys: FloatArray,
) -> list[FloatArray]:
    """Marching squares on the crossed cells only (see :func:`marching_squares`).

    ``layer``, ``i``, ``j``: the cells, in ascending (layer, i, j); ``values`` ``(4, n)``
    the field at their corners (:func:`_cell_corners`). Each crossing is computed from
    the raster edge's two values in one order (left or lower node first), so the two
    cells sharing an edge get bit for bit the same point.
    """
    f0, f1, f2, f3 = values
    case = (f0 > 0) * 1 + (f1 > 0) * 2 + (f2 > 0) * 4 + (f3 > 0) * 8
    saddle = (case == 5) | (case == 10)
    centre = (f0 + f1 + f2 + f3) > 0
    table = case + 16 * (saddle & centre)
    x0, x1 = xs[j], xs[j + 1]
    y0, y1 = ys[i], ys[i + 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        # Cell edge k joins corner k to corner k + 1 (only read where they differ in sign).
        crossings = (
            (x0 + (x1 - x0) * f0 / (f0 - f1), y0),  # lower edge, row i
            (x1, y0 + (y1 - y0) * f1 / (f1 - f2)),  # right edge, column j + 1
            (x0 + (x1 - x0) * f3 / (f3 - f2), y1),  # upper edge, row i + 1
            (x0, y0 + (y1 - y0) * f0 / (f0 - f3)),  # left edge, column j
        )

    def point(edge: NDArray[np.intp], sel: NDArray[np.bool_]) -> tuple[FloatArray, FloatArray]:
        px = np.empty(edge.size)
        py = np.empty(edge.size)
        for k, (cx, cy) in enumerate(crossings):
            on = edge == k
            px[on] = cx[sel][on]
            py[on] = cy[sel][on]
        return px, py

    out_layer = []
    out = []
    for n in range(2):
        start, end = _START[table, n], _END[table, n]
        has = start >= 0
        ax, ay = point(start[has], has)
        bx, by = point(end[has], has)
        out.append(np.column_stack([ax, ay, bx, by]))
        out_layer.append(layer[has])
    edges = np.concatenate(out)
    owner = np.concatenate(out_layer)
    order = np.argsort(owner, kind="stable")
    counts = np.bincount(owner, minlength=m)
    return list(np.split(edges[order], np.cumsum(counts)[:-1]))


def outline_area(edges: FloatArray) -> float:
    """Area (mm²) enclosed by oriented closed outlines (inside on the left of each edge)."""
    return 0.5 * float(np.sum(edges[:, 0] * edges[:, 3] - edges[:, 2] * edges[:, 1]))
