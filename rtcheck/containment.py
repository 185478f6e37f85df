"""Whether one structure lies inside another (every visible lesion inside a treated PTV).

Both structures follow the slab model of :mod:`rtcheck.dvh`. The inner structure's surface
is represented by its polygon vertices on both faces of every slab (and by the vertices of
its edges resampled every 0.5 mm); a surface point counts as inside when it lies in the
outer structure's slab at its height (even-odd rule), or within ``tolerance_mm`` of it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from rtcheck.dvh import ContourPlane, FloatArray, slab_bounds

#: Spacing (mm) at which the inner structure's polygon edges are resampled.
EDGE_STEP_MM = 0.5


def _resample(poly: FloatArray, step: float) -> FloatArray:
    """Polygon vertices plus points every ``step`` mm along its edges."""
    nxt = np.roll(poly, -1, axis=0)
    lengths = np.hypot(*(nxt - poly).T)
    counts = np.maximum(1, np.ceil(lengths / step).astype(int))
    # k / c for k = 0 .. c - 1 along each edge, all edges at once.
    first = np.repeat(np.cumsum(counts) - counts, counts)
    t = (np.arange(int(counts.sum())) - first) / np.repeat(counts, counts)
    start = np.repeat(poly, counts, axis=0)
    end = np.repeat(nxt, counts, axis=0)
    return np.asarray(start + (end - start) * t[:, None])


def _inside(px: FloatArray, py: FloatArray, polygons: Sequence[FloatArray]) -> NDArray[np.bool_]:
    """Even-odd inside test of points against a plane's polygons."""
    inside = np.zeros(px.size, dtype=bool)
    for poly in polygons:
        x0, y0 = poly[:, 0], poly[:, 1]
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        crosses = (y0 <= py[:, None]) != (y1 <= py[:, None])
        with np.errstate(divide="ignore", invalid="ignore"):
            xc = x0 + (py[:, None] - y0) * (x1 - x0) / (y1 - y0)
        inside ^= (np.count_nonzero(crosses & (xc > px[:, None]), axis=1) % 2) == 1
    return inside


def _edge_distance(px: FloatArray, py: FloatArray, polygons: Sequence[FloatArray]) -> FloatArray:
    """Distance (mm) from points to the nearest polygon edge of a plane."""
    best = np.full(px.size, np.inf)
    for poly in polygons:
        a = poly
        b = np.roll(poly, -1, axis=0)
        ab = b - a
        length2 = np.maximum((ab**2).sum(axis=1), 1e-12)
        rel_x = px[:, None] - a[:, 0]
        rel_y = py[:, None] - a[:, 1]
        t = np.clip((rel_x * ab[:, 0] + rel_y * ab[:, 1]) / length2, 0.0, 1.0)
        dx = rel_x - t * ab[:, 0]
        dy = rel_y - t * ab[:, 1]
        best = np.minimum(best, np.sqrt(dx * dx + dy * dy).min(axis=1))
    return best


def outside_fraction(
    inner: Sequence[ContourPlane],
    outer: Sequence[ContourPlane],
    *,
    tolerance_mm: float = 1.0,
    slice_positions: FloatArray | None = None,
) -> float:
    """Share (0 to 1) of ``inner``'s surface points lying outside ``outer`` + tolerance."""
    if not inner:
        return 0.0
    if not outer:
        return 1.0
    inner_sorted = sorted(inner, key=lambda p: p.z)
    outer_sorted = sorted(outer, key=lambda p: p.z)
    zi = np.array([p.z for p in inner_sorted])
    zo = np.array([p.z for p in outer_sorted])
    thickness = float(np.median(np.diff(zi))) if zi.size > 1 else None
    lo_i, hi_i, _ = slab_bounds(zi, slice_positions, thickness or 1.0)
    lo_o, hi_o, _ = slab_bounds(zo, slice_positions, thickness or 1.0)
    total = 0
    outside = 0
    for plane, z_lo, z_hi in zip(inner_sorted, lo_i, hi_i, strict=True):
        points = np.concatenate([_resample(poly, EDGE_STEP_MM) for poly in plane.polygons])
        for z in (z_lo + 1e-6, z_hi - 1e-6):
            total += len(points)
            # The outer slab at this height, or the nearest one within the tolerance.
            k = int(np.searchsorted(hi_o, z))
            candidates = [i for i in (k - 1, k, k + 1) if 0 <= i < zo.size]
            gaps = [max(lo_o[i] - z, z - hi_o[i], 0.0) for i in candidates]
            reach = [(g, i) for g, i in zip(gaps, candidates, strict=True) if g <= tolerance_mm]
            if not reach:
                outside += len(points)
                continue
            ok = np.zeros(len(points), dtype=bool)
            for gap, i in reach:
                polys = outer_sorted[i].polygons
                # In the outer contour, at most `gap` (<= tolerance) above or below it.
                # Each test is point by point: only points not yet inside take it.
                rest = np.flatnonzero(~ok)
                ok[rest] = _inside(points[rest, 0], points[rest, 1], polys)
                planar = np.sqrt(max(tolerance_mm**2 - gap**2, 0.0))
                rest = np.flatnonzero(~ok)
                ok[rest] = _edge_distance(points[rest, 0], points[rest, 1], polys) <= planar
            outside += int((~ok).sum())
    return outside / total if total else 0.0
