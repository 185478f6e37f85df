"""Cross-section area of a structure between its contour planes: a smooth 1-D model.

The shape model (:mod:`rtcheck.dvh.interpolation`) takes the *outline* between two planes
from an interpolated field; this module gives the *area* that outline encloses, so the
volume of the model is the integral of one smooth curve through the planes' areas.

Model
-----
Inside a stack of planes, the area is a cubic Hermite curve through the planes' areas:
at each plane the slope of the parabola through it and its two neighbours, limited as
Fritsch and Carlson do so the curve does not overshoot (between two planes the area
stays between theirs) -- except over an interval where the areas rise on one side and
fall on the other, which holds the widest (or narrowest) section of a smooth structure:
there the curve may bulge past both planes. An area quadratic in z, as a sphere's or an
ellipsoid's is, is reproduced exactly, equator included, on evenly or unevenly spaced
planes, unless the limiter of a neighbouring interval trims a slope.

Where a stack ends with its area rising into the stack (the surface closes beyond the
end plane: at a *pole* when the end plane holds almost nothing), the first interval is

    ``A(s) = A_end + (a s + b s**2) ** p``,   ``s = |z - z_end|``,

fitted through the next three planes, or with two the parabola (``p = 1``) or a power
law (``b = 0``), with one a straight line. The fit is exact for a sphere or an
ellipsoid (``p = 1``), a cone ending in its apex (``p = 2``) and a cylinder lying across
the planes with the end plane at its tangent (``p = 1/2``); a cone lying across them, its
base on the pole, comes out with ``p`` near 3/2. The exponent is found from the areas,
so no shape is assumed. A Hermite curve through a near-zero area would close every end
alike (and a field interpolated towards a point pinches where the pole sits on a flat
face; ``docs/dvh.md``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from rtcheck.dvh.structure import FloatArray

ArrayOrFloat = TypeVar("ArrayOrFloat", float, FloatArray)

#: Exponents an end fit may take.
END_EXPONENTS = (0.25, 4.0)


@dataclass(frozen=True)
class EndFit:
    """``A(s) = base + (a s + b s**2) ** p``, ``s`` the distance (mm) from the end plane."""

    base: float
    a: float
    b: float
    p: float

    def area(self, s: FloatArray) -> FloatArray:
        """Area (mm²) at distances ``s`` (mm) from the end plane."""
        inner = np.maximum(self.a * s + self.b * s * s, 0.0)
        result: FloatArray = self.base + inner**self.p
        return result

    def slope(self, s: float) -> float:
        """dA/ds at distance ``s`` > 0."""
        inner = self.a * s + self.b * s * s
        return float(self.p * inner ** (self.p - 1) * (self.a + 2 * self.b * s))


def fit_end(base: float, s: Sequence[float], areas: Sequence[float]) -> EndFit:
    """The end model through up to three planes at distances ``s`` (ascending, > 0).

    Parameters
    ----------
    base
        Area of the end plane's own outline (mm²), below ``areas[0]``.
    s, areas
        Distances from the end plane (mm) and areas (mm²) of the next planes.

    Returns
    -------
    EndFit
        The first that rises from the end plane to the first plane, of: the three-plane
        fit, the parabola through two planes, the power law through two planes, the
        straight line to the first plane.
    """
    y = [a - base for a in areas]
    if y[0] <= 0:
        raise ValueError("an end fit needs the area to rise from the end plane")
    line = EndFit(base, y[0] / s[0], 0.0, 1.0)
    if len(s) >= 3 and min(y[:3]) > 0:
        three = _three_plane_fit(base, s[:3], y[:3])
        if three is not None:
            return three
    if len(s) < 2:
        return line
    b = (y[1] / s[1] - y[0] / s[0]) / (s[1] - s[0])
    parabola = EndFit(base, y[0] / s[0] - b * s[0], b, 1.0)
    if _rises(parabola, s[0]):
        return parabola
    if y[1] > y[0]:
        p = math.log(y[1] / y[0]) / math.log(s[1] / s[0])
        if END_EXPONENTS[0] <= p <= END_EXPONENTS[1]:
            return EndFit(base, y[0] ** (1 / p) / s[0], 0.0, p)
    return line


def _rises(fit: EndFit, s0: float) -> bool:
    """Whether the fit rises from the end plane all the way to the first plane.

    A fall within rounding (1e-12 of the area) is no fall: a parabola whose vertex lies
    exactly on the first plane rises all the way, although its last two samples may
    differ by a unit in the last place either way.
    """
    ss = np.linspace(0.0, s0, 65)
    area = fit.area(ss)
    rounding = 1e-12 * float(np.abs(area).max())
    return fit.a > 0 and not np.any(np.diff(area) < -rounding)


def _three_plane_fit(base: float, s: Sequence[float], y: Sequence[float]) -> EndFit | None:
    """The fit through three planes: ``p`` where the curve through the first two meets the third.

    For each exponent ``p`` the coefficients come from the first two planes (a 2 x 2
    linear system, solved in closed form); the exponents where the third plane's miss
    changes sign on a grid of 76 are refined by bisection (60 halvings); a grid point
    where it is nil within rounding is a root as it stands. Of the roots whose curve rises
    from the end plane to the first plane, the one nearest ``p = 1``.
    """
    s0, s1, s2 = float(s[0]), float(s[1]), float(s[2])
    y0, y1, y2 = float(y[0]), float(y[1]), float(y[2])
    det = s0 * s1 * (s1 - s0)

    def coefficients(p: float) -> tuple[float, float]:
        u0, u1 = y0 ** (1 / p), y1 ** (1 / p)
        return (u0 * s1 * s1 - u1 * s0 * s0) / det, (s0 * u1 - s1 * u0) / det

    def miss(p: float) -> float:
        a, b = coefficients(p)
        return float(max(a * s2 + b * s2 * s2, 0.0) ** p - y2)

    grid = np.linspace(*END_EXPONENTS, 76)
    u0, u1 = y0 ** (1 / grid), y1 ** (1 / grid)
    inner = ((u0 * s1 * s1 - u1 * s0 * s0) * s2 + (s0 * u1 - s1 * u0) * s2 * s2) / det
    misses = np.maximum(inner, 0.0) ** grid - y2
    # A miss within rounding of nil is a root on the grid itself (p = 1 for an area
    # quadratic in z): taken as it is, since the sign of a rounding error says nothing
    # about the side the root lies on.
    rounding = 1e-12 * max(y0, y1, y2)
    on_grid = np.abs(misses) <= rounding
    crossing = np.flatnonzero(np.sign(misses[:-1]) != np.sign(misses[1:]))
    fits: list[EndFit] = []
    for k in sorted({*np.flatnonzero(on_grid).tolist(), *crossing.tolist()}):
        if on_grid[k]:
            p = float(grid[k])
        elif on_grid[k + 1]:
            continue  # that root is grid[k + 1], tried next
        else:
            lo, hi = float(grid[k]), float(grid[k + 1])
            sign_lo = math.copysign(1.0, float(misses[k]))
            for _ in range(60):  # bisection: the miss is smooth and changes sign here
                mid = 0.5 * (lo + hi)
                if math.copysign(1.0, miss(mid)) == sign_lo:
                    lo = mid
                else:
                    hi = mid
            p = 0.5 * (lo + hi)
        a, b = coefficients(p)
        fit = EndFit(base, a, b, p)
        if _rises(fit, s0):
            fits.append(fit)
    # Three planes can be met by more than one exponent: the one nearest a parabola
    # (p = 1) is the least bent, and keeps an area quadratic in z exact.
    return min(fits, key=lambda f: abs(math.log(f.p)), default=None)


class AreaProfile:
    """Areas between the planes of one structure (see the module docstring).

    Parameters
    ----------
    zs, areas
        Plane positions (ascending) and the areas (mm²) of their outlines.
    joined
        ``joined[i]``: planes ``i`` and ``i + 1`` belong to one stack.
    """

    def __init__(self, zs: Sequence[float], areas: Sequence[float], joined: Sequence[bool]):
        self.z = np.asarray(zs, dtype=np.float64)
        self.area = np.asarray(areas, dtype=np.float64)
        self.joined = list(joined)
        n = self.z.size
        self.slope = np.zeros(n)
        #: Interval index -> (lowest, highest) area of an interval allowed to bulge.
        self.bulges: dict[int, tuple[float, float]] = {}
        #: Interval index -> (end fit, the end plane's z) for the end intervals fitted.
        self.ends: dict[int, tuple[EndFit, float]] = {}
        start = 0
        for i in range(n):
            if i == n - 1 or not self.joined[i]:
                self._stack(start, i)
                start = i + 1

    def _stack(self, first: int, last: int) -> None:
        z, area = self.z, self.area
        if last == first:
            return
        idx = np.arange(first, last + 1)
        h = np.diff(z[idx])
        # Areas equal to rounding are equal: the same outline moved (1e-15 apart after a
        # translation) must give the same curve, not a rising end or a tiny bulge.
        step = np.diff(area[idx])
        step[np.abs(step) <= 1e-12 * float(np.abs(area[idx]).max())] = 0.0
        d = step / h
        m = np.zeros(idx.size)
        if idx.size >= 3:
            # The slope of the parabola through each plane and its neighbours.
            m[1:-1] = (h[:-1] * d[1:] + h[1:] * d[:-1]) / (h[:-1] + h[1:])
            za, aa = z[idx], area[idx]
            m[0] = parabola_slope(za[0], za[1], za[2], aa[0], aa[1], aa[2])
            m[-1] = parabola_slope(za[-1], za[-2], za[-3], aa[-1], aa[-2], aa[-3])
        else:
            m[:] = d[0]
        if step[0] > 0:
            nxt = idx[1:4]
            fit = fit_end(float(area[first]), list(z[nxt] - z[first]), list(area[nxt]))
            self.ends[first] = (fit, float(z[first]))
            m[1] = fit.slope(float(z[first + 1] - z[first]))
        if step[-1] < 0:
            prv = idx[::-1][1:4]
            fit = fit_end(float(area[last]), list(z[last] - z[prv]), list(area[prv]))
            self.ends[last - 1] = (fit, float(z[last]))
            m[-2] = -fit.slope(float(z[last] - z[last - 1]))
        # Fritsch-Carlson: no overshoot between two planes, except over an interval
        # where the area rises on one side and falls on the other, and the slopes at
        # its two planes both point into it (the widest or narrowest section of a
        # smooth structure lies there): those slopes stand.
        for k in range(d.size):
            if idx[k] in self.ends:
                continue
            if (
                0 < k < d.size - 1
                and d[k - 1] * d[k + 1] < 0
                and m[k] * d[k - 1] > 0
                and m[k + 1] * d[k + 1] > 0
            ):
                self.bulges[int(idx[k])] = _bulge_bounds(
                    z[idx[k - 1 : k + 3]], area[idx[k - 1 : k + 3]]
                )
                continue
            if d[k] == 0:
                m[k] = m[k + 1] = 0.0
                continue
            alpha, beta = m[k] / d[k], m[k + 1] / d[k]
            if alpha < 0:
                m[k], alpha = 0.0, 0.0
            if beta < 0:
                m[k + 1], beta = 0.0, 0.0
            if alpha**2 + beta**2 > 9:
                tau = 3 / math.hypot(alpha, beta)
                m[k], m[k + 1] = tau * alpha * d[k], tau * beta * d[k]
        self.slope[idx] = m

    def between(self, i: int, t: FloatArray) -> FloatArray:
        """Areas (mm²) at fractions ``t`` of the way from plane ``i`` to plane ``i + 1``."""
        z0, z1 = float(self.z[i]), float(self.z[i + 1])
        gap = z1 - z0
        if i in self.ends:
            fit, z_end = self.ends[i]
            s = np.abs(z0 + t * gap - z_end)
            result: FloatArray = np.clip(
                fit.area(s),
                min(self.area[i], self.area[i + 1]),
                max(self.area[i], self.area[i + 1]),
            )
            return result
        a0, a1 = self.area[i], self.area[i + 1]
        h00, h10 = 2 * t**3 - 3 * t**2 + 1, t**3 - 2 * t**2 + t
        h01, h11 = -2 * t**3 + 3 * t**2, t**3 - t**2
        hermite: FloatArray = (
            h00 * a0 + h10 * gap * self.slope[i] + h01 * a1 + h11 * gap * self.slope[i + 1]
        )
        low, high = self.bulges.get(i, (min(a0, a1), max(a0, a1)))
        result = np.clip(hermite, low, high)
        return result

    def means(self, i: int, t: FloatArray) -> FloatArray:
        """Mean areas (mm²) between consecutive fractions ``t`` (ascending) of interval ``i``."""
        nodes, weights = _gauss()
        lo, hi = t[:-1, None], t[1:, None]
        at = self.between(i, (lo + (hi - lo) * nodes[None, :]).ravel()).reshape(lo.size, -1)
        result: FloatArray = at @ weights
        return result


@functools.cache
def _gauss() -> tuple[FloatArray, FloatArray]:
    """Gauss-Legendre nodes and weights on [0, 1], 8 points (computed on first use).

    Exact for the cubic pieces, and a pole's square root to well under 1 % of the thin
    layer next to it. Not at import: ``numpy.polynomial`` costs ~30 ms to import.
    """
    from numpy.polynomial.legendre import leggauss

    nodes, weights = leggauss(8)
    return (nodes + 1) / 2, weights / 2


def _bulge_bounds(z: FloatArray, a: FloatArray) -> tuple[float, float]:
    """Area bounds over the interval ``z[1]``-``z[2]`` whose neighbours rise and fall.

    The curve may pass its two planes' areas by as much as *both* parabolas (through
    planes 0-2 and 1-3) do within the interval, and no more: for a smooth widest section
    they agree, after a step in area one of them stays put.
    """
    inner_lo, inner_hi = min(a[1], a[2]), max(a[1], a[2])
    extremes = [_parabola_extreme(z[j : j + 3], a[j : j + 3], z[1], z[2]) for j in (0, 1)]
    if a[1] > a[0]:  # a widest section
        return float(inner_lo), float(max(inner_hi, min(extremes)))
    return float(max(0.0, min(inner_lo, max(extremes)))), float(inner_hi)


def _parabola_extreme(z: FloatArray, a: FloatArray, lo: float, hi: float) -> float:
    """The parabola through three points: its value at its vertex, if within [lo, hi]."""
    c = ((a[2] - a[0]) / (z[2] - z[0]) - (a[1] - a[0]) / (z[1] - z[0])) / (z[2] - z[1])
    b = (a[1] - a[0]) / (z[1] - z[0]) - c * (z[0] + z[1])
    if c == 0:
        return float(a[1])
    vertex = -b / (2 * c)
    vertex = min(max(vertex, lo), hi)
    return float(
        a[0]
        + (a[1] - a[0]) / (z[1] - z[0]) * (vertex - z[0])
        + c * (vertex - z[0]) * (vertex - z[1])
    )


def parabola_slope(
    z0: float, z1: float, z2: float, f0: ArrayOrFloat, f1: ArrayOrFloat, f2: ArrayOrFloat
) -> ArrayOrFloat:
    """Slope at ``z0`` of the parabola through ``(z0, f0)``, ``(z1, f1)``, ``(z2, f2)``.

    The three positions must be distinct, in any order; ``f`` may be arrays (fields).
    """
    d1, d2 = z1 - z0, z2 - z0
    result: ArrayOrFloat = (f1 * d2 * d2 - f2 * d1 * d1 - f0 * (d2 * d2 - d1 * d1)) / (
        d1 * d2 * (d2 - d1)
    )
    return result
