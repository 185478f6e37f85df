"""The exact minimum and maximum of the trilinear dose over a structure model.

The dose between grid nodes is trilinear within each grid cell, so its extremes over a
stack of prisms (:class:`rtcheck.dvh.structure.Layer`) lie on a finite set of points:

1. grid nodes inside a prism;
2. on a prism's top and bottom faces, the grid's columns ``(x_i, y_j)`` inside its
   outline (the dose there is bilinear in x and y);
3. on its side walls, at the faces' z and at the grid planes between them (the dose is
   linear in z between planes), the outline's vertices, the points where its edges cross
   grid lines, and where the dose along an edge within one cell (a quadratic) peaks.

Sampled doses and outline vertices miss the first kind: a dose peak on a node inside an
organ, between the samples, read 8 % low on a real Monaco export. No point of a cell can
be hotter than its hottest corner or colder than its coldest, so only cells with a corner
beyond the extremes found so far are searched, and the search is cheap.

Beyond the outermost nodes (the half voxel the grid's box adds on every side) the dose is
held constant along that axis; there the extremes are those of the points above only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from rtcheck.dvh.structure import FloatArray, Layer


class Grid(Protocol):
    """What the search needs of a dose grid (:class:`rtcheck.dvh.core.DoseGrid`)."""

    @property
    def x(self) -> FloatArray: ...

    @property
    def y(self) -> FloatArray: ...

    @property
    def z(self) -> FloatArray: ...

    @property
    def dose(self) -> NDArray[np.floating]: ...

    @property
    def dose_range(self) -> tuple[float, float]: ...

    def interpolate(self, points: NDArray[np.floating]) -> FloatArray: ...


#: Extremes are searched for only where the dose can exceed those already known by more
#: than this fraction of the grid's largest dose (0.006 Gy of 60 Gy, below the 0.01 Gy
#: reports show): a grid's many zero nodes around a structure whose samples read a
#: hair above zero are not searched.
TOLERANCE = 1e-4


def _inside_on_rows(
    qx: FloatArray,
    qrow: NDArray[np.intp],
    qlayer: NDArray[np.intp],
    edges: FloatArray,
    edge_layer: NDArray[np.intp],
    axis_y: FloatArray,
) -> NDArray[np.bool_]:
    """Even-odd test of points on grid rows (``y = axis_y[qrow]``), each against the
    outline of its layer (``edges`` of all layers, ``edge_layer`` naming each one's).

    Every edge's crossings with the rows are sorted once by layer, row and x; a point is
    inside when an odd number of its layer's crossings on its row lie to its right. A
    point exactly on an edge may fall either way: the walls' candidates hold it.
    """
    y0, y1 = edges[:, 1], edges[:, 3]
    # The half-open rule (y0 <= y) != (y1 <= y) takes rows with min <= y < max.
    first = np.searchsorted(axis_y, np.minimum(y0, y1), side="left")
    last = np.searchsorted(axis_y, np.maximum(y0, y1), side="left")
    counts = np.maximum(last - first, 0)
    which = np.repeat(np.arange(edges.shape[0]), counts)
    rows = np.repeat(first, counts) + (
        np.arange(which.size) - np.repeat(np.cumsum(counts) - counts, counts)
    )
    e = edges[which]
    xc = e[:, 0] + (axis_y[rows] - e[:, 1]) * (e[:, 2] - e[:, 0]) / (e[:, 3] - e[:, 1])
    left = min(float(xc.min()), float(qx.min())) if xc.size else float(qx.min())
    right = max(float(xc.max()), float(qx.max())) if xc.size else float(qx.max())
    span = right - left + 2.0
    group = edge_layer[which] * axis_y.size + rows
    keys = np.sort(group * span + (xc - left))
    qgroup = qlayer * axis_y.size + qrow
    at = np.searchsorted(keys, qgroup * span + (qx - left), side="right")
    group_end = np.searchsorted(keys, qgroup * span + (span - 1.0), side="right")
    return np.asarray((group_end - at) % 2 == 1)


def _node_index(axis: FloatArray, values: FloatArray) -> NDArray[np.intp]:
    """Index of the grid cell (lower node) holding each value, clamped to the grid."""
    idx = np.searchsorted(axis, values, side="right") - 1
    return np.clip(idx, 0, axis.size - 2).astype(np.intp)


def _crossings(edges: FloatArray, axis: FloatArray, column: int) -> tuple[FloatArray, FloatArray]:
    """Edge index and parameter t of every crossing of an edge with a grid line.

    ``column`` 0 takes the lines ``x = axis[i]``, 1 the lines ``y = axis[j]``.
    """
    a, b = edges[:, column], edges[:, column + 2]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    first = np.searchsorted(axis, lo, side="left")
    last = np.searchsorted(axis, hi, side="right")
    counts = np.where(b != a, last - first, 0)
    which = np.repeat(np.arange(edges.shape[0]), counts)
    offset = np.arange(which.size) - np.repeat(np.cumsum(counts) - counts, counts)
    lines = axis[np.repeat(first, counts) + offset]
    t = (lines - a[which]) / (b[which] - a[which])
    return which.astype(np.intp), t


def _wall_points(
    edges: FloatArray,
    edge_layer: NDArray[np.intp],
    lows: FloatArray,
    highs: FloatArray,
    grid: Grid,
    cells: NDArray[np.bool_],
) -> FloatArray:
    """Candidate points (n, 3) on the layers' side walls, in cells flagged in ``cells``.

    Every edge is cut at the grid lines it crosses, so that each piece lies in one cell
    column; each piece is looked at on its layer's faces and on the grid planes between
    them, at both ends and where the dose along it (a quadratic) is stationary.
    """
    # Edges whose box of cell columns holds a flagged column (a summed-area table).
    columns: NDArray[np.bool_] = np.asarray(cells.any(axis=0))
    table = np.zeros((columns.shape[0] + 1, columns.shape[1] + 1), dtype=np.int64)
    table[1:, 1:] = columns.cumsum(axis=0).cumsum(axis=1)
    ia = _node_index(grid.x, np.minimum(edges[:, 0], edges[:, 2]))
    ib = _node_index(grid.x, np.maximum(edges[:, 0], edges[:, 2])) + 1
    ja = _node_index(grid.y, np.minimum(edges[:, 1], edges[:, 3]))
    jb = _node_index(grid.y, np.maximum(edges[:, 1], edges[:, 3])) + 1
    near = table[jb, ib] - table[ja, ib] - table[jb, ia] + table[ja, ia] > 0
    edges, edge_layer = edges[near], edge_layer[near]
    n = edges.shape[0]
    if n == 0:
        return np.zeros((0, 3))
    ex, tx = _crossings(edges, grid.x, 0)
    ey, ty = _crossings(edges, grid.y, 1)
    which = np.concatenate([np.arange(n), np.arange(n), ex, ey])
    t = np.concatenate([np.zeros(n), np.ones(n), tx, ty])
    order = np.lexsort((t, which))
    which, t = which[order], t[order]
    same = which[1:] == which[:-1]
    e0, t0, t1 = which[:-1][same], t[:-1][same], t[1:][same]
    mid = 0.5 * (t0 + t1)
    ix = _node_index(grid.x, edges[e0, 0] + mid * (edges[e0, 2] - edges[e0, 0]))
    iy = _node_index(grid.y, edges[e0, 1] + mid * (edges[e0, 3] - edges[e0, 1]))
    keep = columns[iy, ix]  # a column flagged at some height
    e0, t0, t1, ix, iy = e0[keep], t0[keep], t1[keep], ix[keep], iy[keep]
    if e0.size == 0:
        return np.zeros((0, 3))
    # Levels of each layer: its faces and the grid planes strictly between them.
    layer = edge_layer[e0]
    first = np.searchsorted(grid.z, lows, side="right")
    last = np.searchsorted(grid.z, highs, side="left")
    per_layer = 2 + np.maximum(last - first, 0)
    level_start = np.cumsum(per_layer) - per_layer
    level_z = np.empty(int(per_layer.sum()))
    level_z[level_start] = lows
    level_z[level_start + 1] = highs
    between = per_layer - 2
    owner = np.repeat(np.arange(lows.size), between)
    offset = np.arange(owner.size) - np.repeat(np.cumsum(between) - between, between)
    level_z[level_start[owner] + 2 + offset] = grid.z[first[owner] + offset]
    # Every piece at every level of its layer, where a flagged cell holds it.
    reps = per_layer[layer]
    piece = np.repeat(np.arange(e0.size), reps)
    level = np.repeat(level_start[layer], reps) + (
        np.arange(piece.size) - np.repeat(np.cumsum(reps) - reps, reps)
    )
    zs = level_z[level]
    iz = _node_index(grid.z, zs)
    iz_below = _node_index(grid.z, zs - 1e-9)  # a level on a plane touches both cells
    flagged = cells[iz, iy[piece], ix[piece]] | cells[iz_below, iy[piece], ix[piece]]
    piece, zs = piece[flagged], zs[flagged]
    if piece.size == 0:
        return np.zeros((0, 3))
    e = e0[piece]
    ts = np.stack([t0[piece], 0.5 * (t0[piece] + t1[piece]), t1[piece]], axis=1)
    x0, y0 = edges[e, 0][:, None], edges[e, 1][:, None]
    dx, dy = edges[e, 2][:, None] - x0, edges[e, 3][:, None] - y0
    px, py = x0 + ts * dx, y0 + ts * dy
    pz = np.broadcast_to(zs[:, None], px.shape)
    f = grid.interpolate(np.column_stack([px.ravel(), py.ravel(), pz.ravel()])).reshape(-1, 3)
    # The quadratic through the piece's ends and middle, and where it is stationary.
    curve = 2.0 * (f[:, 0] - 2.0 * f[:, 1] + f[:, 2])
    slope = f[:, 2] - f[:, 0] - curve
    with np.errstate(divide="ignore", invalid="ignore"):
        u = -slope / (2.0 * curve)
    turn = np.isfinite(u) & (u > 0.0) & (u < 1.0)
    tt = ts[turn, 0] + u[turn] * (ts[turn, 2] - ts[turn, 0])
    turns = np.column_stack(
        [x0[turn, 0] + tt * dx[turn, 0], y0[turn, 0] + tt * dy[turn, 0], zs[turn]]
    )
    ends = np.column_stack([px[:, [0, 2]].ravel(), py[:, [0, 2]].ravel(), pz[:, [0, 2]].ravel()])
    return np.concatenate([ends, turns])


def _merged(layers: Sequence[Layer]) -> list[tuple[float, float, FloatArray]]:
    """Layers as ``(lo, hi, edges)``, neighbours sharing one outline joined (the shape
    model cuts a plane's outline into pieces): the region is the same."""
    out: list[tuple[float, float, FloatArray]] = []
    for layer in sorted(layers, key=lambda item: item.lo):
        if out and out[-1][2] is layer.edges and abs(out[-1][1] - layer.lo) <= 1e-9:
            out[-1] = (out[-1][0], layer.hi, layer.edges)
        else:
            out.append((layer.lo, layer.hi, layer.edges))
    return out


def _dilated(mask: NDArray[np.bool_], reach: tuple[int, int, int]) -> NDArray[np.bool_]:
    """``mask`` grown by ``reach`` cells along each axis, both ways."""
    out = mask.copy()
    for axis, steps in enumerate(reach):
        grown = out.copy()
        for step in range(1, steps + 1):
            if step >= out.shape[axis]:
                break
            ahead = [slice(None)] * 3
            behind = [slice(None)] * 3
            ahead[axis], behind[axis] = slice(step, None), slice(None, -step)
            grown[tuple(behind)] |= out[tuple(ahead)]
            grown[tuple(ahead)] |= out[tuple(behind)]
        out = grown
    return out


def refine_extremes(
    layers: Sequence[Layer],
    grid: Grid,
    low: float,
    high: float,
    touched: NDArray[np.bool_] | None = None,
    reach_z: int = 1,
) -> tuple[float, float]:
    """The minimum and maximum dose over ``layers``, given extremes found so far.

    Parameters
    ----------
    layers
        The structure model's prisms (those with an outline and a thickness count).
    grid
        The dose grid.
    low, high
        The lowest and highest dose of points known to lie in the structure (samples,
        outline vertices): the search looks only at cells with a corner beyond them.
    touched
        Grid cells (shaped as the dose, by lower corner node) that hold a sample, when
        known: the search then looks only at cells within one cell of them in x and y
        and ``reach_z`` cells in z (how far a sample's own lattice cell reaches).
    reach_z
        See ``touched``.

    Returns
    -------
    tuple of float
        The minimum and maximum of the trilinear dose over the prisms, exact to
        :data:`TOLERANCE` of the grid's largest dose where they lie within the grid's
        outermost nodes; otherwise ``low`` and ``high``.
    """
    merged = _merged([layer for layer in layers if layer.edges.size and layer.hi > layer.lo])
    if not merged:
        return low, high
    lows = np.array([m[0] for m in merged])
    highs = np.array([m[1] for m in merged])
    edges = np.concatenate([m[2] for m in merged])
    edge_layer = np.repeat(np.arange(len(merged)), [m[2].shape[0] for m in merged])
    xs = np.concatenate([edges[:, 0], edges[:, 2]])
    ys = np.concatenate([edges[:, 1], edges[:, 3]])
    # The structure's box of grid nodes, one node wider on every side.
    i0 = max(int(np.searchsorted(grid.x, xs.min())) - 1, 0)
    i1 = int(np.searchsorted(grid.x, xs.max(), side="right")) + 1
    j0 = max(int(np.searchsorted(grid.y, ys.min())) - 1, 0)
    j1 = int(np.searchsorted(grid.y, ys.max(), side="right")) + 1
    k0 = max(int(np.searchsorted(grid.z, lows.min())) - 1, 0)
    k1 = int(np.searchsorted(grid.z, highs.max(), side="right")) + 1
    box = np.asarray(grid.dose[k0:k1, j0:j1, i0:i1])
    grid_low, grid_high = grid.dose_range
    margin = TOLERANCE * max(abs(grid_low), abs(grid_high))
    beyond = (box > high + margin) | (box < low - margin)
    if not beyond.any():
        return low, high
    # Cells (by lower corner) with a corner beyond the known extremes: the box's and
    # those around it.
    padded = np.zeros(tuple(n + 1 for n in beyond.shape), dtype=bool)
    padded[1:, 1:, 1:] = beyond
    pooled = padded[:-1, :-1, :-1] | padded[1:, :-1, :-1] | padded[:-1, 1:, :-1]
    pooled |= padded[:-1, :-1, 1:] | padded[1:, 1:, :-1] | padded[1:, :-1, 1:]
    pooled |= padded[:-1, 1:, 1:] | padded[1:, 1:, 1:]
    # pooled[a, b, c] is the cell whose lower corner is the box's node (a-1, b-1, c-1).
    if touched is not None:
        held = np.zeros_like(pooled)
        starts = (k0 - 1, j0 - 1, i0 - 1)
        take = tuple(
            slice(max(a, 0), min(a + n, size))
            for a, n, size in zip(starts, pooled.shape, touched.shape, strict=True)
        )
        put = tuple(slice(t.start - a, t.stop - a) for t, a in zip(take, starts, strict=True))
        held[put] = touched[take]
        pooled &= _dilated(held, (reach_z, 1, 1))
        # Only the corners of those cells remain to be looked at: the box's node a is
        # the upper corner of cell pooled[a] and the lower corner of pooled[a + 1].
        grown = np.zeros(tuple(n + 1 for n in pooled.shape), dtype=bool)
        grown[:-1, :-1, :-1] = pooled
        corners = grown[:-1, :-1, :-1] | grown[1:, :-1, :-1] | grown[:-1, 1:, :-1]
        corners |= grown[:-1, :-1, 1:] | grown[1:, 1:, :-1] | grown[1:, :-1, 1:]
        corners |= grown[:-1, 1:, 1:] | grown[1:, 1:, 1:]
        beyond &= corners
        if not beyond.any():
            return low, high
    cells = np.zeros((grid.z.size - 1, grid.y.size - 1, grid.x.size - 1), dtype=bool)
    ka, ja, ia = k0 - 1, j0 - 1, i0 - 1
    src = pooled[max(0, -ka) :, max(0, -ja) :, max(0, -ia) :]
    ka, ja, ia = max(ka, 0), max(ja, 0), max(ia, 0)
    src = src[: cells.shape[0] - ka, : cells.shape[1] - ja, : cells.shape[2] - ia]
    cells[ka : ka + src.shape[0], ja : ja + src.shape[1], ia : ia + src.shape[2]] = src

    walls = _wall_points(edges, edge_layer, lows, highs, grid, cells)
    # Nodes beyond the extremes inside a layer, and the grid columns through them on the
    # layers' faces within a plane of them (the dose there involves the node).
    kk, jj, ii = np.nonzero(beyond)
    kk, jj, ii = kk + k0, jj + j0, ii + i0
    z_node = grid.z[kk]
    # What a node's plane holds depends on the plane only: look it up per plane.
    held_by_plane = np.searchsorted(lows, grid.z, side="right") - 1
    layer_of = held_by_plane[kk]
    ok = (layer_of >= 0) & (z_node <= highs[np.maximum(layer_of, 0)])
    node_pick, node_layer, node_z = np.flatnonzero(ok), layer_of[ok], z_node[ok]
    face_z = np.concatenate([lows, highs])
    face_layer = np.concatenate([np.arange(lows.size), np.arange(lows.size)])
    order = np.argsort(face_z, kind="stable")
    face_z, face_layer = face_z[order], face_layer[order]
    planes = np.arange(grid.z.size)
    first = np.searchsorted(face_z, grid.z[np.maximum(planes - 1, 0)], side="left")[kk]
    last = np.searchsorted(face_z, grid.z[np.minimum(planes + 1, grid.z.size - 1)], side="right")
    counts = np.maximum(last[kk] - first, 0)
    face_node = np.repeat(np.arange(kk.size), counts)
    face = np.repeat(first, counts) + (
        np.arange(face_node.size) - np.repeat(np.cumsum(counts) - counts, counts)
    )
    # A column's dose on a face: between the two planes around the face.
    fz = face_z[face]
    fk = _node_index(grid.z, fz)
    frac = (fz - grid.z[fk]) / (grid.z[fk + 1] - grid.z[fk])
    fj, fi = jj[face_node], ii[face_node]
    value = grid.dose[fk, fj, fi] * (1.0 - frac) + grid.dose[fk + 1, fj, fi] * frac
    keep = (value > high + margin) | (value < low - margin)
    pick = np.concatenate([node_pick, face_node[keep]])
    q_layer = np.concatenate([node_layer, face_layer[face][keep]]).astype(np.intp)
    q_z = np.concatenate([node_z, fz[keep]])
    candidates = [walls]
    if pick.size:
        # One test per column and layer (a layer's faces and nodes share its outline).
        key = (q_layer * grid.y.size + jj[pick]) * grid.x.size + ii[pick]
        _, first, back = np.unique(key, return_index=True, return_inverse=True)
        p0 = pick[first]
        inside = _inside_on_rows(grid.x[ii[p0]], jj[p0], q_layer[first], edges, edge_layer, grid.y)[
            back.reshape(-1)
        ]
        p = pick[inside]
        candidates.append(np.column_stack([grid.x[ii[p]], grid.y[jj[p]], q_z[inside]]))
    points = np.concatenate(candidates)
    if points.size == 0:
        return low, high
    values = grid.interpolate(points)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return low, high
    return min(low, float(values.min())), max(high, float(values.max()))
