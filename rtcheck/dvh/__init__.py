"""Dose-volume histograms from planar contours and a dose grid: the DVH model.

The package is pure NumPy: arrays in, arrays out; nothing here knows about DICOM, files
or printing. Its modules import one way only::

    core -> interpolation -> area_profile -> structure

* :mod:`rtcheck.dvh.structure`: the structure model's types (contour planes, layers,
  polygon areas and point-in-polygon tests);
* :mod:`rtcheck.dvh.area_profile`: a structure's cross-section area between planes;
* :mod:`rtcheck.dvh.interpolation`: outlines between planes where they change (the
  ``shape`` model);
* :mod:`rtcheck.dvh.core`: the dose grid, the sampler and the :class:`DVH` itself.

The names below are the public API; ``docs/dvh.md`` documents the models.
"""

from rtcheck.dvh.core import (
    BETWEEN_PLANES,
    DEFAULT_BETWEEN_PLANES,
    DEFAULT_BINS,
    DEFAULT_TARGET_SAMPLES,
    DVH,
    CellCoverage,
    DoseGrid,
    compute_dvh,
    dvh_of_layers,
    lattice_cells,
    lattice_cells_stack,
    slab_bounds,
)
from rtcheck.dvh.structure import (
    PLANE_TOLERANCE_MM,
    ContourPlane,
    FloatArray,
    Layer,
    even_odd_area,
    points_in_polygon,
    polygon_area,
    polygon_edges,
)

__all__ = [
    "BETWEEN_PLANES",
    "DEFAULT_BETWEEN_PLANES",
    "DEFAULT_BINS",
    "DEFAULT_TARGET_SAMPLES",
    "DVH",
    "PLANE_TOLERANCE_MM",
    "CellCoverage",
    "ContourPlane",
    "DoseGrid",
    "FloatArray",
    "Layer",
    "compute_dvh",
    "dvh_of_layers",
    "even_odd_area",
    "lattice_cells",
    "lattice_cells_stack",
    "points_in_polygon",
    "polygon_area",
    "polygon_edges",
    "slab_bounds",
]
