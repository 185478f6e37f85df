"""The structure model's types, shared by the DVH engine and the shape model.

:mod:`rtcheck.dvh.core` (the sampler), :mod:`rtcheck.dvh.interpolation` (outlines between planes)
and :mod:`rtcheck.dvh.area_profile` (areas between planes) all import from here and never
from each other in a circle: ``core -> interpolation -> area_profile -> structure``.
Nothing here knows about DICOM, doses or sampling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "PLANE_TOLERANCE_MM",
    "ContourPlane",
    "FloatArray",
    "Layer",
    "even_odd_area",
    "points_in_polygon",
    "polygon_area",
    "polygon_edges",
]

FloatArray = NDArray[np.float64]

#: Planes closer than this (mm) are one plane.
PLANE_TOLERANCE_MM = 0.01


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
class Layer:
    """One prism of a structure model: closed outlines extruded from ``lo`` to ``hi``.

    The outlines are given as edges (any order, any orientation) of closed curves that
    combine by the even-odd rule, so both polygons read from a structure set and
    outlines traced from an interpolated shape fit.

    Parameters
    ----------
    lo, hi
        Lower and upper z of the prism (mm).
    edges
        ``(n, 4)`` array of edges ``(x0, y0, x1, y1)`` in mm.
    area
        Area (mm²) enclosed by the outlines.
    exact
        Whether ``area`` is the outlines' own area (then checked against the coverage).
    outline_area
        The outlines' own polygon area when ``area`` is taken from elsewhere but the
        outlines are a contour's (checked against the coverage instead of ``area``).
    plane_z
        z (mm) of the plane whose contour the outlines are, when the layer is one of
        several pieces of it (reported for an ambiguous contour).
    """

    lo: float
    hi: float
    edges: FloatArray
    area: float
    #: ``area`` is the outlines' own polygon area, so the even-odd coverage the sampler
    #: measures must agree with it (False for an area taken from elsewhere).
    exact: bool = True
    #: A contour's own area, checked against the coverage when ``area`` is not it.
    outline_area: float | None = None
    #: The plane whose contour this is, when known.
    plane_z: float | None = None

    @classmethod
    def from_polygons(
        cls, polygons: Sequence[FloatArray], lo: float, hi: float, area: float | None = None
    ) -> Layer:
        """The layer of closed polygons (vertices not repeating the first at the end)."""
        edges = polygon_edges(polygons)
        return cls(lo, hi, edges, even_odd_area(polygons) if area is None else area)

    @property
    def vertices(self) -> FloatArray:
        """Start points of the edges, ``(n, 2)``: every vertex of the outlines."""
        return self.edges[:, :2]


def polygon_edges(polygons: Sequence[FloatArray]) -> FloatArray:
    """Edges ``(x0, y0, x1, y1)`` of closed polygons, each vertex to its successor."""
    if not polygons:
        return np.zeros((0, 4))
    start = np.concatenate([np.asarray(p, dtype=np.float64) for p in polygons])
    sizes = np.array([len(p) for p in polygons])
    successor = np.arange(1, start.shape[0] + 1)
    ends = np.cumsum(sizes) - 1
    successor[ends] = ends - sizes + 1
    return np.column_stack([start, start[successor]])


def polygon_area(poly: FloatArray) -> float:
    """Unsigned shoelace area (mm²) of one closed polygon given without repeating its start."""
    x, y = poly[:, 0], poly[:, 1]
    # Shoelace with the closing edge written out (np.roll is slow for small arrays).
    twice = float((x[:-1] * y[1:] - x[1:] * y[:-1]).sum()) + float(x[-1] * y[0] - x[0] * y[-1])
    return 0.5 * abs(twice)


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
    # Only a polygon whose bounding box holds the probe can contain it: the boxes are
    # compared all at once, so a plane of many separate contours costs no polygon tests.
    lo = np.array([p.min(axis=0) for p in polygons])
    hi = np.array([p.max(axis=0) for p in polygons])
    total = 0.0
    for i, poly in enumerate(polygons):
        probe_x, probe_y = poly[:1, 0], poly[:1, 1]
        px, py = float(probe_x[0]), float(probe_y[0])
        boxed = np.flatnonzero(
            (lo[:, 0] <= px) & (px <= hi[:, 0]) & (lo[:, 1] <= py) & (py <= hi[:, 1])
        )
        depth = 0
        for j in boxed.tolist():
            if j != i and points_in_polygon(probe_x, probe_y, polygons[j])[0]:
                depth += 1
        total += areas[i] if depth % 2 == 0 else -areas[i]
    return max(total, 0.0)
