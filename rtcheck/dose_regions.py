"""Where a plan puts an intermediate dose far from its high dose: elective volumes by dose.

An elective (prophylactic) nodal volume is irradiated to a plateau well below the gross
disease's dose (50-56 Gy against 70 Gy). Whatever its ROI is called, or if it was deleted,
the dose shows it: nodes receiving at least ``low_gy`` that lie farther than ``margin_mm``
from every node receiving ``high_gy`` or more. Near the high dose, the dose falls off
through every intermediate level over a few millimetres (the penumbra of the high-dose
target); an intermediate dose beyond the margin is a plateau of its own.

Arrays in, numbers out: nothing here knows about DICOM, protocols or names. Volumes are
counted on the dose grid's nodes (each node stands for its voxel), so they carry about a
voxel's uncertainty along the region's surface.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from rtcheck.dvh import DoseGrid

FloatArray = NDArray[np.float64]
MM3_PER_CC = 1000.0


@dataclass(frozen=True)
class DoseRegion:
    """One connected part of the intermediate dose beyond the margin.

    Attributes
    ----------
    volume_cc
        Its volume (nodes times their voxel volumes).
    median_gy, max_gy
        Median and highest dose over its nodes: the plateau it is treated to.
    centroid_mm
        Volume-weighted centre ``(x, y, z)`` in patient coordinates.
    z_range_mm
        Lowest and highest z of its nodes.
    at_grid_edge
        True when it reaches the border of the dose grid (it may extend beyond).
    points
        Coordinates ``(n, 3)`` of its nodes, for asking which structures hold it.
    """

    volume_cc: float
    median_gy: float
    max_gy: float
    centroid_mm: tuple[float, float, float]
    z_range_mm: tuple[float, float]
    at_grid_edge: bool
    points: FloatArray


@dataclass(frozen=True)
class IntermediateDose:
    """The intermediate dose beyond the margin: every region, largest first."""

    high_gy: float
    low_gy: float
    margin_mm: float
    high_cc: float
    high_centroid_mm: tuple[float, float, float] | None
    regions: tuple[DoseRegion, ...]

    @property
    def at_grid_edge(self) -> bool:
        """True when a region reaches the border of the grid: it may extend beyond."""
        return any(r.at_grid_edge for r in self.regions)

    @property
    def total_cc(self) -> float:
        """Summed volume of the regions (cc)."""
        return float(sum(r.volume_cc for r in self.regions))


def _node_volumes_mm3(grid: DoseGrid) -> FloatArray:
    """Volume (mm3) each node stands for, by plane: ``dx * dy * dz`` with ``dz`` half the
    gaps to the neighbouring planes (a whole gap at the first and last plane)."""
    dx = float(grid.x[1] - grid.x[0])
    dy = float(grid.y[1] - grid.y[0])
    z = grid.z
    gaps = np.diff(z)
    dz = np.empty_like(z)
    dz[0], dz[-1] = gaps[0], gaps[-1]
    dz[1:-1] = (gaps[:-1] + gaps[1:]) / 2
    return dx * dy * dz


def intermediate_dose(
    grid: DoseGrid, high_gy: float, low_gy: float, margin_mm: float
) -> IntermediateDose:
    """Regions receiving at least ``low_gy`` and lying over ``margin_mm`` from ``high_gy``.

    Parameters
    ----------
    grid
        The dose of the course.
    high_gy
        The high dose (the gross disease's level, e.g. 90 % of the prescription).
    low_gy
        The lowest dose of interest (e.g. 65 % of the prescription), below ``high_gy``.
    margin_mm
        Distance from the nearest high-dose node beyond which an intermediate dose counts.

    Returns
    -------
    IntermediateDose
        The regions (26-connected on the grid's nodes), largest first.
    """
    from scipy import ndimage
    from scipy.spatial import cKDTree

    if not 0 < low_gy < high_gy:
        raise ValueError("need 0 < low_gy < high_gy")
    dose = np.asarray(grid.dose, dtype=np.float64)
    volumes = _node_volumes_mm3(grid)
    high = dose >= high_gy
    kz, ky, kx = np.nonzero(high)
    high_cc = float(volumes[kz].sum() / MM3_PER_CC)
    high_centroid = None
    if kz.size:
        w = volumes[kz]
        high_centroid = (
            float(np.average(grid.x[kx], weights=w)),
            float(np.average(grid.y[ky], weights=w)),
            float(np.average(grid.z[kz], weights=w)),
        )
    candidate = (dose >= low_gy) & ~high
    cz, cy, cx = np.nonzero(candidate)
    if cz.size == 0:
        return IntermediateDose(high_gy, low_gy, margin_mm, high_cc, high_centroid, ())
    points = np.column_stack([grid.x[cx], grid.y[cy], grid.z[cz]])
    if kz.size:
        tree = cKDTree(np.column_stack([grid.x[kx], grid.y[ky], grid.z[kz]]))
        distance, _ = tree.query(points, distance_upper_bound=margin_mm)
        beyond = distance > margin_mm
    else:
        beyond = np.ones(cz.size, dtype=bool)
    mask = np.zeros(dose.shape, dtype=bool)
    mask[cz[beyond], cy[beyond], cx[beyond]] = True
    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    regions = []
    shape = dose.shape
    for index in range(1, count + 1):
        rz, ry, rx = np.nonzero(labels == index)
        w = volumes[rz]
        values = dose[rz, ry, rx]
        edge = bool(
            rz.min() == 0
            or ry.min() == 0
            or rx.min() == 0
            or rz.max() == shape[0] - 1
            or ry.max() == shape[1] - 1
            or rx.max() == shape[2] - 1
        )
        regions.append(
            DoseRegion(
                volume_cc=float(w.sum() / MM3_PER_CC),
                median_gy=float(np.median(values)),
                max_gy=float(values.max()),
                centroid_mm=(
                    float(np.average(grid.x[rx], weights=w)),
                    float(np.average(grid.y[ry], weights=w)),
                    float(np.average(grid.z[rz], weights=w)),
                ),
                z_range_mm=(float(grid.z[rz].min()), float(grid.z[rz].max())),
                at_grid_edge=edge,
                points=np.column_stack([grid.x[rx], grid.y[ry], grid.z[rz]]),
            )
        )
    regions.sort(key=lambda r: -r.volume_cc)
    return IntermediateDose(high_gy, low_gy, margin_mm, high_cc, high_centroid, tuple(regions))


def direction_words(offset_mm: tuple[float, float, float]) -> str:
    """An offset in patient coordinates (DICOM: +x left, +y posterior, +z superior) in
    words, largest component first: ``62 mm inferior, 35 mm right``."""
    names = (("right", "left"), ("anterior", "posterior"), ("inferior", "superior"))
    parts = sorted(
        ((abs(v), names[a][v > 0]) for a, v in enumerate(offset_mm) if abs(v) >= 5.0),
        reverse=True,
    )
    return ", ".join(f"{v:.0f} mm {w}" for v, w in parts) or "at the same place"
