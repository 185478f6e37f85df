"""decide_scale on grids whose value at every point is known in closed form."""

from __future__ import annotations

import numpy as np
import pytest

from rtcheck.dose_scale import POINT_TOLERANCE, ScalePoint, decide_scale
from rtcheck.dvh.core import DoseGrid


def linear_grid() -> DoseGrid:
    """D = 10 + x / 10 Gy (trilinear interpolation is exact for it)."""
    axis = np.arange(-50.0, 50.0 + 1e-9, 5.0)
    xx = np.broadcast_to(axis[None, None, :], (axis.size,) * 3)
    return DoseGrid(axis, axis, axis, 10.0 + xx / 10.0)


def point(x: float, course: float, fraction: float | None) -> ScalePoint:
    return ScalePoint("p", (x, 1.0, -2.0), course, fraction)


def test_course_read_at_a_point_between_nodes() -> None:
    # D(12.5) = 11.25 Gy: the course of 5 fractions of 2.25 Gy.
    scale = decide_scale(linear_grid(), "PLAN", [point(12.5, 11.25, 2.25)], 5)
    assert (scale.holds, scale.confirmed, scale.factor) == ("course", True, 1.0)
    assert scale.evidence[0].grid_gy == pytest.approx(11.25)


def test_fraction_read_and_multiplied_whatever_the_label() -> None:
    # D(-30) = 7 Gy is one fraction of a 5 x 7 = 35 Gy course.
    scale = decide_scale(linear_grid(), "PLAN", [point(-30.0, 35.0, 7.0)], 5)
    assert (scale.holds, scale.confirmed, scale.factor) == ("fraction", True, 5.0)
    assert "although its label PLAN" in scale.summary


def test_tolerance_edge() -> None:
    # D(0) = 10 Gy; a stated course just inside / outside the tolerance.
    inside = 10.0 / (1 + POINT_TOLERANCE * 0.99)
    outside = 10.0 / (1 + POINT_TOLERANCE * 1.01)
    assert decide_scale(linear_grid(), "PLAN", [point(0, inside, None)], 3).confirmed
    scale = decide_scale(linear_grid(), "PLAN", [point(0, outside, None)], 3)
    assert not scale.confirmed and scale.contradicted and scale.holds == "course"


def test_points_that_disagree_contradict_the_export() -> None:
    points = [point(0.0, 10.0, 2.0), point(0.0, 50.0, 10.0)]  # course at one, fraction at other
    scale = decide_scale(linear_grid(), "FRACTION", points, 5)
    assert not scale.confirmed and scale.contradicted
    assert scale.holds == "fraction" and scale.factor == 5.0  # the label, reported as such
    assert "(1 course, 1 fraction)" in scale.summary


def test_a_point_matching_neither_is_never_ignored() -> None:
    # One point reads course, the other matches nothing: not "confirmed".
    points = [point(0.0, 10.0, 2.0), point(0.0, 17.0, 3.4)]
    scale = decide_scale(linear_grid(), "PLAN", points, 5)
    assert not scale.confirmed and scale.contradicted
    assert "(1 course, 1 neither)" in scale.summary


def test_points_outside_the_grid_do_not_count() -> None:
    scale = decide_scale(linear_grid(), "PLAN", [point(400.0, 10.0, 2.0)], 5)
    assert not scale.confirmed and not scale.contradicted
    assert scale.evidence[0].reading == "outside the grid"
    assert "outside the dose grid" in scale.summary


def test_one_fraction_is_the_course() -> None:
    scale = decide_scale(linear_grid(), "FRACTION", [point(0.0, 10.0, 10.0)], 1)
    assert (scale.holds, scale.factor) == ("course", 1.0)


def test_fraction_without_a_number_of_fractions_keeps_the_grid() -> None:
    scale = decide_scale(linear_grid(), "FRACTION", [], None, " (no fractions)")
    assert scale.holds == "fraction" and scale.factor == 1.0 and not scale.confirmed
    assert "no point where the plan states the dose (no fractions)" in scale.summary
