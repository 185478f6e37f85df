"""The area of a structure between its planes (rtcheck.dvh.area_profile), against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rtcheck.dvh.area_profile import AreaProfile, fit_end


def test_pole_fit_of_a_sphere_is_exact() -> None:
    # Sphere r 12: A(s) = pi (24 s - s^2) from its pole, i.e. p = 1, a = 24 pi, b = -pi.
    s = [3.0, 6.0, 9.0]
    fit = fit_end(0.0, s, [math.pi * (24 * x - x * x) for x in s])
    assert fit.p == pytest.approx(1.0, abs=1e-6)
    assert fit.a == pytest.approx(24 * math.pi, rel=1e-6)
    assert fit.b == pytest.approx(-math.pi, rel=1e-5)
    assert fit.slope(3.0) == pytest.approx(math.pi * (24 - 6), rel=1e-6)


def test_pole_fit_of_a_cone_apex_is_exact() -> None:
    # Cone with its axis across the planes, apex at the pole: A(s) = pi (s / 2)^2.
    s = [2.0, 4.0, 6.0]
    fit = fit_end(0.0, s, [math.pi * x * x / 4 for x in s])
    assert fit.p == pytest.approx(2.0, abs=1e-6)
    assert fit.a == pytest.approx(math.sqrt(math.pi) / 2, rel=1e-6)
    assert fit.b == pytest.approx(0.0, abs=1e-6)


def test_pole_fit_of_a_cylinder_lying_across_the_planes_is_close() -> None:
    # Cylinder r 12, length 24, axis in the plane: A(s) = 48 sqrt(s (24 - s)), i.e.
    # p = 1/2, a = 48^2 * 24, b = -48^2.
    s = [3.0, 6.0, 9.0]
    fit = fit_end(0.0, s, [48 * math.sqrt(x * (24 - x)) for x in s])
    assert fit.p == pytest.approx(0.5, abs=1e-6)
    assert (fit.a, fit.b) == pytest.approx((48**2 * 24, -(48**2)), rel=1e-5)


def test_end_fit_falls_back_to_fewer_planes() -> None:
    # Two planes: the parabola through the end plane and both (here a sphere's pole,
    # A = pi (20 s - s^2), exact).
    fit = fit_end(0.0, [2.0, 4.0], [math.pi * 36, math.pi * 64])
    assert (fit.a, fit.b, fit.p) == pytest.approx((20 * math.pi, -math.pi, 1.0))
    # ... unless that parabola dips below the end plane's area: then a power law
    # through both (here A = s^3).
    fit = fit_end(0.0, [1.0, 2.0], [1.0, 8.0])
    assert (fit.a, fit.b, fit.p) == pytest.approx((1.0, 0.0, 3.0))
    # One plane: a straight line from the end plane's own area.
    fit = fit_end(1.0, [2.0], [9.0])
    assert (fit.base, fit.a, fit.p) == pytest.approx((1.0, 4.0, 1.0))
    # The area peaking between the next two planes: the parabola through them.
    fit = fit_end(0.0, [1.0, 2.0], [6.0, 3.0])
    assert float(fit.area(np.array(2.0))) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="rise"):
        fit_end(5.0, [1.0], [5.0])


def test_end_fit_of_a_barely_growing_tube_is_finite() -> None:
    # A tiny end contour, then areas 100, 100.3, 100.6: no exponent near 0 is tried
    # (it would overflow); the fit rises and stays between the planes' areas.
    fit = fit_end(0.03, [2.0, 4.0, 6.0], [100.0, 100.3, 100.6])
    values = fit.area(np.linspace(0.0, 2.0, 21))
    assert np.all(np.isfinite(values)) and values[0] == pytest.approx(0.03)
    assert values[-1] == pytest.approx(100.0) and np.all(np.diff(values) >= 0)


def test_hermite_areas_are_exact_for_a_sphere_between_its_planes() -> None:
    # Circles of a sphere r 10 every 3 mm from -9 to 9: A = pi (100 - z^2), quadratic.
    zs = np.arange(-9.0, 9.01, 3.0)
    profile = AreaProfile(zs, math.pi * (100 - zs**2), [True] * (zs.size - 1))
    t = np.linspace(0, 1, 7)
    for i in range(zs.size - 1):
        z = zs[i] + 3 * t
        assert profile.between(i, t) == pytest.approx(math.pi * (100 - z**2), rel=1e-12)


def test_hermite_areas_are_exact_for_a_sphere_on_uneven_planes() -> None:
    # Gaps of 1, 2, 3, 5, 2 and 3 mm: the slopes are those of the parabola through each
    # plane and its neighbours, exact for a quadratic, and the equator between -3 and 2
    # bulges past both planes as the sphere does.
    zs = np.array([-9.0, -8.0, -6.0, -3.0, 2.0, 4.0, 7.0])
    profile = AreaProfile(zs, math.pi * (100 - zs**2), [True] * (zs.size - 1))
    t = np.linspace(0, 1, 9)
    assert list(profile.bulges) == [3]
    for i in range(zs.size - 1):
        z = zs[i] + (zs[i + 1] - zs[i]) * t
        assert profile.between(i, t) == pytest.approx(math.pi * (100 - z**2), rel=1e-9)


def test_a_bulge_is_held_to_what_both_neighbouring_parabolas_allow() -> None:
    # Areas 100, 101, 100.5 then a step down to 10: the areas rise before the interval
    # 101 -> 100.5 and fall after it, but only the parabola through 100, 101, 100.5
    # sees a smooth top (at 101.02); the one through 101, 100.5, 10 would put it at 112.
    zs = np.arange(5.0) * 3
    profile = AreaProfile(zs, [100.0, 101.0, 100.5, 10.0, 10.5], [True] * 4)
    values = profile.between(1, np.linspace(0, 1, 101))
    assert values.max() == pytest.approx(101 + 1 / 48, rel=1e-9)
    assert values.min() >= 100.5


def test_a_small_end_plane_has_no_threshold() -> None:
    # The end model applies wherever the area rises into the stack, so a slightly
    # larger end contour changes the areas next to it slightly, never by a jump.
    zs = [0.0, 3.0, 6.0, 9.0]
    results = []
    for end in (1.99, 2.0, 2.01):
        profile = AreaProfile(zs, [end, 100.0, 160.0, 190.0], [True] * 3)
        results.append(profile.means(0, np.linspace(0.0, 1.0, 9)))
    assert np.abs(results[0] - results[1]).max() < 0.02
    assert np.abs(results[2] - results[1]).max() < 0.02


def test_areas_never_overshoot_the_planes() -> None:
    # A step in area: a cubic with centred slopes would dip below 10 and rise above 100.
    zs = np.arange(5.0)
    areas = np.array([100.0, 100.0, 100.0, 10.0, 10.0])
    profile = AreaProfile(zs, areas, [True] * 4)
    t = np.linspace(0, 1, 101)
    for i in range(4):
        values = profile.between(i, t)
        lo, hi = min(areas[i], areas[i + 1]), max(areas[i], areas[i + 1])
        assert values.min() >= lo - 1e-9 and values.max() <= hi + 1e-9
    assert profile.between(2, t) == pytest.approx(np.sort(profile.between(2, t))[::-1])


def test_stacks_are_modelled_apart_and_a_pole_is_seen_at_either_end() -> None:
    # Two stacks: a cone apex at z = 0 rising to z = 6 (A = pi s^2 / 4), then a separate
    # stack from z = 20 ending in a sphere's pole at z = 29 (A = pi (18 s - s^2), r 9).
    zs = [0.0, 2.0, 4.0, 6.0, 20.0, 23.0, 26.0, 29.0]
    s_top = [29 - z for z in zs[4:]]
    # The pole contours hold 0.01 mm^2, a floor under every area.
    areas = [0.01 + math.pi * (z * z) / 4 for z in zs[:4]]
    areas += [0.01 + math.pi * (18 * s - s * s) for s in s_top]
    joined = [True, True, True, False, True, True, True]
    profile = AreaProfile(zs, areas, joined)
    t = np.array([0.25, 0.5, 0.75])
    assert profile.between(0, t) == pytest.approx(0.01 + math.pi * (2 * t) ** 2 / 4, rel=1e-4)
    s = 3 * (1 - t)
    assert profile.between(6, t) == pytest.approx(0.01 + math.pi * (18 * s - s * s), rel=1e-3)
