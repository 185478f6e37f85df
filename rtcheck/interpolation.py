"""Shape interpolation between contour planes: the ``"shape"`` structure model.

The slab model (:func:`rtcheck.dvh.slab_bounds`) extrudes every contour halfway to its
neighbours, so a structure between two planes is one contour or the other. This module
lets the structure change smoothly instead, as a surface drawn through the contours
would: the *area* of each cross-section comes from :mod:`rtcheck.area_profile` (one
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

A plane's outline is kept unchanged between two planes whose outlines are identical.
Beyond the first and last plane of each stack the structure ends with a flat cap, as in
the slab model (the Nelms convention).

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

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import distance_transform_edt
from scipy.spatial import cKDTree

from rtcheck.area_profile import AreaProfile, parabola_slope
from rtcheck.dvh import PLANE_TOLERANCE_MM, ContourPlane, FloatArray, Layer, polygon_edges

#: Thinnest sub-layer (mm) an interval between two planes is cut into.
SUB_LAYER_MM = 0.25
#: Most raster points per interval for the signed distance.
MAX_RASTER_POINTS = 20_000
#: Most raster steps along either side (an elongated structure gets a finer raster
#: than a square root of :data:`MAX_RASTER_POINTS` per side would give it).
MAX_RASTER_SIDE = 1000
#: Finest raster spacing (mm).
MIN_RASTER_MM = 0.05
#: Raster nodes within this many steps of an outline get its distance exactly.
BAND_STEPS = 2.5
#: How far (raster steps) along the outline either side of its starting edge a node far
#: from the outline looks for its nearest edge (at least 3 edges, at most 24).
FAR_REACH_STEPS = 2.0


def shape_layers(
    planes: Sequence[ContourPlane],
    lo: FloatArray,
    hi: FloatArray,
    sub_layer_mm: float = SUB_LAYER_MM,
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
    thickest = max(sub_layer_mm, SUB_LAYER_MM)
    subs = [
        max(1, math.ceil((planes[i + 1].z - planes[i].z) / thickest - 1e-9))
        if joined[i] and not _same_outline(planes[i], planes[i + 1])
        else 1
        for i in range(n - 1)
    ]
    fields = _Fields(planes, edges, [i for i in range(n - 1) if subs[i] > 1], joined)
    profile = AreaProfile([p.z for p in planes], [p.area for p in planes], joined)
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
        layers.append(Layer(z0, z1, drawn, area, exact=exact))

    for i, plane in enumerate(planes):
        if i == 0 or not joined[i - 1]:
            own(i, float(lo[i]), plane.z, plane.area)
        if i == n - 1 or not joined[i]:
            own(i, plane.z, float(hi[i]), plane.area)
            continue
        nxt = planes[i + 1]
        m = subs[i]
        if m == 1:  # identical outlines or close planes: slabs
            own(i, plane.z, 0.5 * (plane.z + nxt.z), plane.area)
            own(i + 1, 0.5 * (plane.z + nxt.z), nxt.z, nxt.area)
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


class _Fields:
    """The field F of the planes next to interpolated intervals, on one raster.

    The raster spans those planes' outlines (at most :data:`MAX_RASTER_POINTS` nodes),
    so each plane's field is computed once however many intervals use it.
    """

    def __init__(
        self,
        planes: Sequence[ContourPlane],
        edges: Sequence[FloatArray],
        intervals: Sequence[int],
        joined: Sequence[bool],
    ) -> None:
        self.planes, self.edges, self.joined = planes, edges, joined
        self.cache: dict[int, FloatArray] = {}  # plane -> signed distance on the raster
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

    def distance(self, j: int) -> tuple[FloatArray, float]:
        """Plane j's signed distance ``phi`` on the raster and its largest value ``R``."""
        if j not in self.cache:
            phi = signed_distance(self.edges[j], self.xs, self.ys, self.step / 4)
            self.cache[j] = phi
        phi = self.cache[j]
        return phi, max(float(phi.max()), self.step)

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
        radius = max(self.distance(j)[1] for j in used)
        fields = {j: self.distance(j)[0] * (2 * radius - self.distance(j)[0]) for j in used}
        f_a, f_b = fields[i], fields[i + 1]
        # Slopes dF/dz at both planes: the slope of the parabola through three planes,
        # centred inside a stack, one-sided at its ends (exact for F quadratic in z).
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
        t = (np.arange(1, m) / m)[:, None, None]
        h00, h10 = 2 * t**3 - 3 * t**2 + 1, t**3 - 2 * t**2 + t
        h01, h11 = -2 * t**3 + 3 * t**2, t**3 - t**2
        stack = h00 * f_a + h10 * gap * slope_a + h01 * f_b + h11 * gap * slope_b
        # Limiter: between the two planes the field stays within their values, so the
        # outline never leaves the union of the two outlines nor cuts into their overlap.
        low, high = np.minimum(f_a, f_b), np.maximum(f_a, f_b)
        # The level of the Hermite field enclosing the wanted area (as many raster cells
        # as the area holds), the outline kept between the overlap and the union.
        values = np.where(low > 0, np.inf, np.where(high > 0, stack, -np.inf))
        values = -np.sort(-values.reshape(m - 1, -1), axis=1)
        finite = np.isfinite(values)
        counts = np.asarray(areas) / self.step**2
        ranks = np.arange(values.shape[1]) + 0.5
        levels = np.array(
            [
                np.interp(c, ranks[ok], v[ok]) if ok.any() else 0.0
                for c, v, ok in zip(counts, values, finite, strict=True)
            ]
        )
        limited = np.clip(stack - levels[:, None, None], low, high)
        return marching_squares(limited, self.xs, self.ys)


def _same_outline(a: ContourPlane, b: ContourPlane) -> bool:
    return len(a.polygons) == len(b.polygons) and all(
        p.shape == q.shape and np.array_equal(p, q)
        for p, q in zip(a.polygons, b.polygons, strict=True)
    )


def signed_distance(
    edges: FloatArray, xs: FloatArray, ys: FloatArray, spacing: float
) -> FloatArray:
    """Signed distance (mm, positive inside) from raster nodes to closed outlines.

    Parameters
    ----------
    edges
        ``(n, 4)`` edges of closed curves, combined by the even-odd rule.
    xs, ys
        Raster node coordinates, ascending and evenly spaced.
    spacing
        Largest gap between the points the outline is sampled at for nodes near it.

    Returns
    -------
    ndarray, shape ``(len(ys), len(xs))``

    Notes
    -----
    A node within :data:`BAND_STEPS` raster steps of the outline (a distance transform
    of the inside tells which) finds its nearest outline point among points
    ``spacing`` apart in a k-d tree, and measures its distance to that point's edge and
    the edges either side: exact but for rare nodes next to a sharp corner. A node
    farther away measures to the edges near the one its nearest node across the
    outline found (:data:`FAR_REACH_STEPS` either side): near the medial axis, where
    two parts of the outline are almost equally near, or behind a sharp corner, that
    can miss the nearest part by up to about a raster step; the distance is never too
    short. Outlines without edges are infinitely far (a large negative value).
    """
    if edges.shape[0] == 0:
        far_away = 10.0 * (float(np.ptp(xs)) + float(np.ptp(ys)) + 1.0)
        return np.full((ys.size, xs.size), -far_away)
    inside = inside_raster(edges, xs, ys)
    gx, gy = np.meshgrid(xs, ys)
    hx = float(xs[1] - xs[0]) if xs.size > 1 else spacing
    hy = float(ys[1] - ys[0]) if ys.size > 1 else spacing
    near_points, near_edge = _outline_points(edges, spacing)
    tree = cKDTree(near_points)
    if not inside.any() or inside.all():  # nothing across the outline: every node exactly
        _, found = tree.query(np.column_stack([gx.ravel(), gy.ravel()]))
        nearest = near_edge[found].reshape(inside.shape)
        distance = _nearby_edges_distance(edges, nearest, gx, gy, 1)
        return np.where(inside, distance, -distance)
    # Distance from every node to the nearest node across the outline, and that node.
    across_in, feature_in = distance_transform_edt(inside, sampling=(hy, hx), return_indices=True)
    across_out, feature_out = distance_transform_edt(
        ~inside, sampling=(hy, hx), return_indices=True
    )
    across = np.where(inside, across_in, across_out)
    band = across <= BAND_STEPS * max(hx, hy)
    edge_of = np.full(inside.shape, -1, dtype=np.intp)
    _, found = tree.query(np.column_stack([gx[band], gy[band]]))
    edge_of[band] = near_edge[found]
    distance = np.empty(inside.shape)
    distance[band] = _nearby_edges_distance(edges, edge_of[band], gx[band], gy[band], 1)
    # A far node starts from the edge nearest to its nearest node across the outline
    # (which is in the band).
    far = ~band
    fi = np.where(inside, feature_in[0], feature_out[0])[far]
    fj = np.where(inside, feature_in[1], feature_out[1])[far]
    start = edge_of[fi, fj]
    lost = start < 0  # a feature outside the band (thin slivers): ask the tree
    if lost.any():
        _, found = tree.query(np.column_stack([gx[far][lost], gy[far][lost]]))
        start[lost] = near_edge[found]
    lengths = np.hypot(edges[:, 2] - edges[:, 0], edges[:, 3] - edges[:, 1])
    typical = float(np.median(lengths)) or max(hx, hy)
    reach = min(max(3, math.ceil(FAR_REACH_STEPS * max(hx, hy) / typical)), 24)
    distance[far] = _nearby_edges_distance(edges, start, gx[far], gy[far], reach)
    signed: FloatArray = np.where(inside, distance, -distance)
    return signed


def _nearby_edges_distance(
    edges: FloatArray, start: NDArray[np.intp], px: FloatArray, py: FloatArray, reach: int
) -> FloatArray:
    """Distance from each point to the nearest edge within ``reach`` of its ``start`` edge."""
    n = edges.shape[0]
    best = np.full(px.shape, np.inf)
    for offset in range(-reach, reach + 1):
        candidate = np.clip(start + offset, 0, n - 1)
        np.minimum(best, _segment_distance(edges[candidate], px, py), out=best)
    return best


def _outline_points(edges: FloatArray, spacing: float) -> tuple[FloatArray, NDArray[np.intp]]:
    """Points along the edges at most ``spacing`` apart, and the edge each lies on."""
    x0, y0, x1, y1 = edges[:, 0], edges[:, 1], edges[:, 2], edges[:, 3]
    length = np.hypot(x1 - x0, y1 - y0)
    pieces = np.maximum(1, np.ceil(length / spacing)).astype(np.intp)
    edge = np.repeat(np.arange(edges.shape[0]), pieces)
    frac = (np.arange(edge.size) - np.repeat(np.cumsum(pieces) - pieces, pieces)) / pieces[edge]
    points = np.column_stack([x0[edge] + frac * (x1 - x0)[edge], y0[edge] + frac * (y1 - y0)[edge]])
    return points, edge


def _segment_distance(segments: FloatArray, px: FloatArray, py: FloatArray) -> FloatArray:
    """Distance from points ``(px, py)`` to segments ``(x0, y0, x1, y1)``, row by row."""
    x0, y0 = segments[..., 0], segments[..., 1]
    dx, dy = segments[..., 2] - x0, segments[..., 3] - y0
    length2 = dx * dx + dy * dy
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(length2 > 0, ((px - x0) * dx + (py - y0) * dy) / length2, 0.0)
    t = np.clip(t, 0.0, 1.0)
    result: FloatArray = np.hypot(px - x0 - t * dx, py - y0 - t * dy)
    return result


def inside_raster(edges: FloatArray, xs: FloatArray, ys: FloatArray) -> NDArray[np.bool_]:
    """Even-odd inside test of every raster node ``(xs[j], ys[i])``: shape ``(ny, nx)``."""
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
    m, _ny, _nx = fields.shape
    inside = fields > 0
    hx = np.diff(xs)
    hy = np.diff(ys)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Crossing on the horizontal raster edge (i, j)-(i, j+1) and the vertical edge
        # (i, j)-(i+1, j); only read where the two ends differ in sign.
        hcross = xs[None, None, :-1] + hx * fields[:, :, :-1] / (
            fields[:, :, :-1] - fields[:, :, 1:]
        )
        vcross = ys[None, :-1, None] + hy[:, None] * fields[:, :-1, :] / (
            fields[:, :-1, :] - fields[:, 1:, :]
        )
    case = (
        inside[:, :-1, :-1] * 1
        + inside[:, :-1, 1:] * 2
        + inside[:, 1:, 1:] * 4
        + inside[:, 1:, :-1] * 8
    )
    saddle = (case == 5) | (case == 10)
    centre = (fields[:, :-1, :-1] + fields[:, :-1, 1:] + fields[:, 1:, 1:] + fields[:, 1:, :-1]) > 0
    table = case + 16 * (saddle & centre)
    layer, i, j = np.nonzero((case != 0) & (case != 15))
    table = table[layer, i, j]

    def point(
        edge: NDArray[np.intp], layer: NDArray[np.intp], i: NDArray[np.intp], j: NDArray[np.intp]
    ) -> tuple[FloatArray, FloatArray]:
        px = np.empty(edge.size)
        py = np.empty(edge.size)
        for k, (di, dj, horizontal) in enumerate(
            ((0, 0, True), (0, 1, False), (1, 0, True), (0, 0, False))
        ):
            sel = edge == k
            li, ii, jj = layer[sel], i[sel] + di, j[sel] + dj
            if horizontal:
                px[sel], py[sel] = hcross[li, ii, jj], ys[ii]
            else:
                px[sel], py[sel] = xs[jj], vcross[li, ii, jj]
        return px, py

    out_layer = []
    out = []
    for n in range(2):
        start, end = _START[table, n], _END[table, n]
        has = start >= 0
        sl, si, sj = layer[has], i[has], j[has]
        x0, y0 = point(start[has], sl, si, sj)
        x1, y1 = point(end[has], sl, si, sj)
        out.append(np.column_stack([x0, y0, x1, y1]))
        out_layer.append(sl)
    edges = np.concatenate(out)
    owner = np.concatenate(out_layer)
    order = np.argsort(owner, kind="stable")
    counts = np.bincount(owner, minlength=m)
    return list(np.split(edges[order], np.cumsum(counts)[:-1]))


def outline_area(edges: FloatArray) -> float:
    """Area (mm²) enclosed by oriented closed outlines (inside on the left of each edge)."""
    return 0.5 * float(np.sum(edges[:, 0] * edges[:, 3] - edges[:, 2] * edges[:, 1]))
