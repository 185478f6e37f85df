"""Accuracy of the DVH engine on analytic phantoms against the exact slab-model truth.

The truth (tests/fixtures/analytic.py) integrates the slab model of the very contours the
engine sees, in closed form, for a linear dose field; trilinear interpolation of a
linear field is exact, so every difference is a geometric error of the engine.
Targets (issue 2): volume within 0.5 %, Dmean within 0.5 %, D98/D95/D50/D5/D2 within 1 %.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from rtcheck.dvh.core import DVH, ContourPlane, DoseGrid, compute_dvh
from tests.fixtures.analytic import (
    LinearDose,
    SlabTruth,
    cone_contours,
    cylinder_contours,
    shell_contours,
    sphere_contours,
)

#: Every test runs with the C kernel of the DVH sampler and with its NumPy code.
pytestmark = pytest.mark.usefixtures("dvh_kernel")

CENTER = (3.2, -7.9, 11.4)  # deliberately off every grid


@dataclass(frozen=True)
class Case:
    """One phantom: shape, size, gradient axis, contour spacing, dose grid and offset."""

    shape: str
    size_mm: float
    axis: int  # gradient along x (0), y (1) or z (2)
    contour_mm: float
    grid_mm: float
    grid_offset_mm: float

    def __str__(self) -> str:
        return (
            f"{self.shape}{self.size_mm:g}-g{'xyz'[self.axis]}-c{self.contour_mm:g}"
            f"-d{self.grid_mm:g}+{self.grid_offset_mm:g}"
        )


CASES = [
    Case("sphere", 4, 0, 1.0, 1.0, 0.37),
    Case("sphere", 4, 2, 1.0, 2.0, 0.5),
    Case("sphere", 6, 1, 2.0, 2.0, 1.0),
    Case("sphere", 10, 2, 3.0, 3.0, 1.5),
    Case("sphere", 10, 1, 1.0, 3.0, 2.0),
    Case("sphere", 15, 0, 2.0, 1.0, 0.25),
    Case("sphere", 25, 2, 3.0, 2.5, 1.1),
    Case("sphere", 25, 1, 2.0, 3.0, 0.7),
    Case("cylinder_z", 8, 0, 2.0, 2.0, 1.0),
    Case("cylinder_z", 12, 2, 3.0, 3.0, 0.3),
    Case("cylinder_y", 10, 1, 2.0, 2.0, 0.9),
    Case("cylinder_y", 10, 2, 1.0, 3.0, 1.3),
    Case("cone_z", 12, 2, 1.0, 2.0, 0.6),
    Case("cone_z", 12, 0, 2.0, 3.0, 2.2),
    Case("cone_y", 10, 1, 3.0, 2.0, 1.0),
    Case("shell", 20, 0, 2.0, 2.5, 0.8),
    Case("shell", 20, 2, 3.0, 3.0, 1.7),
    Case("shell", 12, 1, 1.0, 1.0, 0.45),
]


def phantom(case: Case) -> list[ContourPlane]:
    """Contours of the phantom on planes every ``contour_mm`` (a TPS export)."""
    r, s = case.size_mm, case.contour_mm
    if case.shape == "sphere":
        return sphere_contours(r, CENTER, s)
    if case.shape == "cylinder_z":
        return cylinder_contours(r, 2 * r, CENTER, s, axis="z")
    if case.shape == "cylinder_y":
        return cylinder_contours(r, 2 * r, CENTER, s, axis="y")
    if case.shape == "cone_z":
        return cone_contours(r, 2 * r, CENTER, s, axis="z", apex="-")
    if case.shape == "cone_y":
        return cone_contours(r, 2 * r, CENTER, s, axis="y", apex="+")
    if case.shape == "shell":
        return shell_contours(r, r / 2, CENTER, s)
    raise AssertionError(case.shape)


def linear_field(case: Case) -> LinearDose:
    """25 Gy at the centre, ±15 Gy across the phantom along the gradient axis."""
    gradient = [0.0, 0.0, 0.0]
    gradient[case.axis] = 15.0 / case.size_mm
    return LinearDose.through(CENTER, 25.0, gradient)


def dose_grid(case: Case, planes: list[ContourPlane], field: LinearDose) -> DoseGrid:
    """A grid of spacing ``grid_mm`` covering the phantom with a margin, shifted off it."""
    verts = np.concatenate([np.concatenate(p.polygons) for p in planes])
    zs = np.array([p.z for p in planes])
    h, o = case.grid_mm, case.grid_offset_mm
    margin = 2 * h + case.contour_mm

    def axis(lo: float, hi: float) -> np.ndarray:
        start = np.floor((lo - margin) / h) * h + o
        return np.arange(start, hi + margin, h)

    x = axis(verts[:, 0].min(), verts[:, 0].max())
    y = axis(verts[:, 1].min(), verts[:, 1].max())
    z = axis(zs.min(), zs.max())
    return DoseGrid(x, y, z, field.on_grid(x, y, z))


@pytest.fixture(scope="module", params=CASES, ids=str)
def computed(request: pytest.FixtureRequest) -> tuple[Case, DVH, SlabTruth]:
    case: Case = request.param
    planes = phantom(case)
    field = linear_field(case)
    grid = dose_grid(case, planes, field)
    dvh = compute_dvh(planes, grid, between_planes="slab")  # the truth is the slab model's
    return case, dvh, SlabTruth(sorted(planes, key=lambda p: p.z), field)


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def test_volume_within_half_percent(computed: tuple[Case, DVH, SlabTruth]) -> None:
    _, dvh, truth = computed
    assert rel(dvh.volume_cc, truth.volume_cc) < 0.005
    assert dvh.volume_outside_cc == 0.0


def test_mean_within_half_percent(computed: tuple[Case, DVH, SlabTruth]) -> None:
    _, dvh, truth = computed
    assert rel(dvh.mean_gy, truth.mean_gy) < 0.005


@pytest.mark.parametrize("percent", [98, 95, 50, 5, 2])
def test_dose_at_volume_within_one_percent(
    computed: tuple[Case, DVH, SlabTruth], percent: float
) -> None:
    _, dvh, truth = computed
    measured = dvh.dose_at_volume(percent / 100 * dvh.volume_cc)
    assert rel(measured, truth.dose_at_percent(percent)) < 0.01


def test_extremes_match_the_prism_vertices(computed: tuple[Case, DVH, SlabTruth]) -> None:
    # For a linear field the extremes over the slab model lie on prism vertices exactly.
    _, dvh, truth = computed
    assert dvh.min_gy == pytest.approx(truth.min_gy, abs=1e-6)
    assert dvh.max_gy == pytest.approx(truth.max_gy, abs=1e-6)
