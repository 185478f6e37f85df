"""Cross-section area of a structure between its contour planes: a smooth 1-D model.

The shape model (:mod:`rtcheck.interpolation`) takes the *outline* between two planes
from an interpolated field; this module gives the *area* that outline encloses, so the
volume of the model is the integral of one smooth curve through the planes' areas.

Model
-----
Inside a stack of planes, the area is a monotone cubic Hermite curve through the
planes' areas (centred slopes, the slope of the parabola through three planes at a
stack end, limited as Fritsch and Carlson do so the curve never overshoots: between two
planes the area stays between theirs). Reproduces an area quadratic in z, as a sphere's
or an ellipsoid's is.

A stack whose end plane holds almost nothing (area at most :data:`POLE_RATIO` of the
next plane's: the surface closes there, a *pole*) is modelled from that pole as

    ``A(s) = A_pole + (a s + b s**2) ** p``,   ``s = |z - z_pole|``,

fitted through the next three planes (two: ``b = 0``; one: ``p = 1``). This is exact for
a sphere or an ellipsoid (``p = 1``), a cone ending in its apex (``p = 2``) and a
cylinder lying across the planes (``p = 1/2``); a cone lying across them, its base on
the pole, comes out with ``p`` near 3/2. The exponent is found from the areas, so no
shape is assumed. A Hermite
curve through a near-zero area would close every such end alike (and a field
interpolated towards a point pinches where the pole sits on a flat face, see
``docs/dvh.md``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rtcheck.dvh import FloatArray

#: An end plane holding at most this fraction of its neighbour's area is a pole.
POLE_RATIO = 0.02
#: Exponents a pole fit may take.
POLE_EXPONENTS = (0.25, 4.0)


@dataclass(frozen=True)
class PoleFit:
    """``A(s) = base + (a s + b s**2) ** p``, ``s`` the distance (mm) from the pole."""

    base: float
    a: float
    b: float
    p: float

    def area(self, s: FloatArray) -> FloatArray:
        """Area (mm²) at distances ``s`` (mm) from the pole."""
        inner = np.maximum(self.a * s + self.b * s * s, 0.0)
        result: FloatArray = self.base + inner**self.p
        return result

    def slope(self, s: float) -> float:
        """dA/ds at distance ``s`` > 0."""
        inner = self.a * s + self.b * s * s
        return float(self.p * inner ** (self.p - 1) * (self.a + 2 * self.b * s))


def fit_pole(base: float, s: Sequence[float], areas: Sequence[float]) -> PoleFit:
    """The pole model through up to three planes at distances ``s`` (ascending, > 0).

    Parameters
    ----------
    base
        Area of the pole plane's own outline (mm²).
    s, areas
        Distances from the pole (mm) and areas (mm²) of the next planes.

    Returns
    -------
    PoleFit
        The three-plane fit when one exists that rises from the pole to the first
        plane, else the two-plane power law, else the straight line (``p = 1``).
    """
    y = [a - base for a in areas]
    line = PoleFit(base, y[0] / s[0], 0.0, 1.0)
    if y[0] <= 0:
        return PoleFit(base, 0.0, 0.0, 1.0)
    if len(s) < 2 or y[1] <= y[0]:
        return line
    p2 = math.log(y[1] / y[0]) / math.log(s[1] / s[0])
    power = PoleFit(base, y[0] ** (1 / p2) / s[0], 0.0, p2)
    if not POLE_EXPONENTS[0] <= p2 <= POLE_EXPONENTS[1]:
        return line
    if len(s) < 3:
        return power
    three = _three_plane_fit(base, s[:3], y[:3])
    return three if three is not None else power


def _three_plane_fit(base: float, s: Sequence[float], y: Sequence[float]) -> PoleFit | None:
    def coefficients(p: float) -> tuple[float, float]:
        m = np.array([[s[0], s[0] ** 2], [s[1], s[1] ** 2]])
        a, b = np.linalg.solve(m, np.array(y[:2]) ** (1 / p))
        return float(a), float(b)

    def miss(p: float) -> float:
        a, b = coefficients(p)
        return float(max(a * s[2] + b * s[2] ** 2, 0.0) ** p - y[2])

    grid = np.linspace(*POLE_EXPONENTS, 76)
    misses = np.array([miss(float(p)) for p in grid])
    ss = np.linspace(0.0, s[0], 65)
    for k in np.flatnonzero(np.sign(misses[:-1]) != np.sign(misses[1:])):
        lo, hi = float(grid[k]), float(grid[k + 1])
        for _ in range(60):  # bisection: the miss is smooth and changes sign here
            mid = 0.5 * (lo + hi)
            if np.sign(miss(mid)) == np.sign(miss(lo)):
                lo = mid
            else:
                hi = mid
        p = 0.5 * (lo + hi)
        a, b = coefficients(p)
        fit = PoleFit(base, a, b, p)
        # A usable fit rises from the pole all the way to the first plane.
        if a > 0 and not np.any(np.diff(fit.area(ss)) < 0):
            return fit
    return None


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
        #: Interval index -> (pole fit, the pole's z) for intervals next to a pole.
        self.poles: dict[int, tuple[PoleFit, float]] = {}
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
        d = np.diff(area[idx]) / h
        m = np.zeros(idx.size)
        if idx.size >= 3:
            m[1:-1] = (area[idx[2:]] - area[idx[:-2]]) / (z[idx[2:]] - z[idx[:-2]])
            m[0] = _parabola_slope(z[idx[:3]], area[idx[:3]])
            m[-1] = _parabola_slope(z[idx[::-1][:3]], area[idx[::-1][:3]])
        else:
            m[:] = d[0]
        low_pole = area[first] <= POLE_RATIO * area[first + 1]
        high_pole = area[last] <= POLE_RATIO * area[last - 1]
        if low_pole:
            nxt = idx[1:4]
            fit = fit_pole(float(area[first]), list(z[nxt] - z[first]), list(area[nxt]))
            self.poles[first] = (fit, float(z[first]))
            m[1] = fit.slope(float(z[first + 1] - z[first]))
        if high_pole and not (low_pole and idx.size == 2):
            prv = idx[::-1][1:4]
            fit = fit_pole(float(area[last]), list(z[last] - z[prv]), list(area[prv]))
            self.poles[last - 1] = (fit, float(z[last]))
            m[-2] = -fit.slope(float(z[last] - z[last - 1]))
        # Fritsch-Carlson: no overshoot between two planes.
        for k in range(d.size):
            if idx[k] in self.poles:
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
        if i in self.poles:
            fit, z_pole = self.poles[i]
            s = np.abs(z0 + t * gap - z_pole)
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
        return hermite

    def means(self, i: int, t: FloatArray) -> FloatArray:
        """Mean areas (mm²) between consecutive fractions ``t`` (ascending) of interval ``i``."""
        nodes, weights = _GAUSS
        lo, hi = t[:-1, None], t[1:, None]
        at = self.between(i, (lo + (hi - lo) * nodes[None, :]).ravel()).reshape(lo.size, -1)
        result: FloatArray = at @ weights
        return result


#: Gauss-Legendre nodes and weights on [0, 1] (8 points: exact for the cubic pieces,
#: and a pole's square root to well under 1 % of the thin layer next to it).
_GAUSS = (
    (np.polynomial.legendre.leggauss(8)[0] + 1) / 2,
    np.polynomial.legendre.leggauss(8)[1] / 2,
)


def _parabola_slope(z: FloatArray, a: FloatArray) -> float:
    """Slope at ``z[0]`` of the parabola through three points."""
    d1, d2 = z[1] - z[0], z[2] - z[0]
    return float(
        (a[1] * d2 * d2 - a[2] * d1 * d1 - a[0] * (d2 * d2 - d1 * d1)) / (d1 * d2 * (d2 - d1))
    )
