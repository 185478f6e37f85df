"""Whether a dose grid holds the whole course or one fraction, decided from the data.

The DICOM label does not settle it. Dose Summation Type FRACTION means "dose calculated
for a single Fraction Group within RT Plan" (PS3.3 C.8.8.3): some planning systems write
the dose of one fraction under it, others (Pinnacle) the whole course of the group. And
nothing stops a per-fraction grid from being labelled PLAN. Read by its label alone, a
grid can come out N times too high or, worse for a compliance check, N times too low.

So the grid is sampled where the plan itself says what the dose is:

- a beam dose specification point (RT Plan, Referenced Beam Sequence): the dose there
  per fraction is the sum of the Beam Dose of the beams specified at that point, and
  over the course that sum times the fractions planned, added over fraction groups;
- a dose reference point with coordinates and a Target Prescription Dose.

Each point reads *course* when the grid there is within :data:`POINT_TOLERANCE` of the
course dose, *fraction* when it is within it of one fraction's dose, else *neither*.
When every tested point gives the same reading, that reading decides the scale (and
overrides a label that says otherwise). When there is no point to test, the label is kept
and the scale is reported as not confirmed; when the tested points do not agree (or one
matches neither), the label is kept and the export is reported as contradicting itself. Nothing here
reads DICOM: :mod:`rtcheck.dicom_io` gathers the points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rtcheck.dvh import DoseGrid

__all__ = [
    "POINT_TOLERANCE",
    "DoseScale",
    "PointEvidence",
    "ScalePoint",
    "decide_scale",
]

#: Largest relative difference between the grid at a point and the dose the plan states
#: there for the point to read as that dose. Course and fraction differ by a factor of
#: at least 2, so this separates them with a wide margin while still catching a grid that
#: matches neither.
POINT_TOLERANCE = 0.05

COURSE, FRACTION, NEITHER, OUTSIDE = "course", "fraction", "neither", "outside the grid"


@dataclass(frozen=True)
class ScalePoint:
    """A point where the plan states the dose.

    Parameters
    ----------
    label
        What the point is, for the reader (``"beam dose specification point (beams 1,
        2)"``).
    position
        Patient coordinates in mm.
    course_gy
        The dose the plan states there for the whole course (of the fraction groups the
        dose covers).
    fraction_gy
        The dose of one fraction there, when one fraction is defined (one fraction group,
        or groups of equal dose per fraction); None otherwise.
    """

    label: str
    position: tuple[float, float, float]
    course_gy: float
    fraction_gy: float | None


@dataclass(frozen=True)
class PointEvidence:
    """What the grid holds at one :class:`ScalePoint`, and how it reads."""

    point: ScalePoint
    grid_gy: float | None
    reading: str

    @property
    def text(self) -> str:
        """One line: the point, the grid there and what the plan says."""
        p = self.point
        where = ", ".join(f"{c:g}" for c in p.position)
        if self.grid_gy is None:
            return f"{p.label} at ({where}) mm: outside the dose grid"
        states = f"course {p.course_gy:.4g} Gy"
        if p.fraction_gy is not None and not math.isclose(p.fraction_gy, p.course_gy):
            states += f", one fraction {p.fraction_gy:.4g} Gy"
        return f"{p.label} at ({where}) mm: grid {self.grid_gy:.4g} Gy; plan: {states}"


@dataclass(frozen=True)
class DoseScale:
    """The scale of a stored grid: what it holds, how sure that is, and the evidence.

    Attributes
    ----------
    label
        The Dose Summation Type of the files (PLAN, BEAM, FRACTION).
    label_reads
        What the label was taken to mean without evidence: ``course`` for PLAN and BEAM,
        ``fraction`` for FRACTION.
    holds
        What the grid holds: ``course`` or ``fraction``.
    confirmed
        True when tested points agree on ``holds``.
    factor
        What the stored grid is multiplied by to give the course (the fractions planned
        for a per-fraction grid, else 1).
    evidence
        Every point tested, with its reading.
    summary
        One sentence for the reader: the decision and why.
    contradicted
        True when the tested points do not all read the same (some course, some one
        fraction, or a point matching neither): the export disagrees with itself.
    """

    label: str
    label_reads: str
    holds: str
    confirmed: bool
    factor: float
    evidence: tuple[PointEvidence, ...]
    summary: str
    contradicted: bool = False

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "label": self.label,
            "label_reads": self.label_reads,
            "holds": self.holds,
            "confirmed": self.confirmed,
            "factor": self.factor,
            "summary": self.summary,
            "points": [
                {
                    "label": e.point.label,
                    "position_mm": list(e.point.position),
                    "grid_gy": None if e.grid_gy is None else round(e.grid_gy, 4),
                    "course_gy": round(e.point.course_gy, 4),
                    "fraction_gy": None
                    if e.point.fraction_gy is None
                    else round(e.point.fraction_gy, 4),
                    "reading": e.reading,
                }
                for e in self.evidence
            ],
        }


def _reading(grid_gy: float, point: ScalePoint) -> str:
    def near(expected: float | None) -> bool:
        return (
            expected is not None
            and expected > 0
            and (abs(grid_gy - expected) <= POINT_TOLERANCE * expected)
        )

    if near(point.course_gy):
        return COURSE
    if near(point.fraction_gy):
        return FRACTION
    return NEITHER


def decide_scale(
    grid: DoseGrid,
    label: str,
    points: Sequence[ScalePoint],
    fractions: int | None,
    no_points: str = "",
) -> DoseScale:
    """Decide whether ``grid`` (as stored) holds the course or one fraction.

    Parameters
    ----------
    grid
        The dose as stored in the files (BEAM doses already summed), in Gy.
    label
        Dose Summation Type of the files.
    points
        Where the plan states the dose (see :class:`ScalePoint`); may be empty.
    fractions
        Fractions of the course the grid belongs to, when known: the factor for a
        per-fraction grid.
    no_points
        Why the plan's points could not be used, when ``points`` is empty (e.g.
        ``" (the beams are specified at different points)"``).

    Returns
    -------
    DoseScale
        The decision with its evidence. A grid that holds one fraction of a course whose
        number of fractions is unknown keeps factor 1 (the caller refuses it).
    """
    label_reads = FRACTION if label == "FRACTION" else COURSE
    words = {COURSE: "the course", FRACTION: "one fraction"}
    evidence = []
    if points:
        values = grid.interpolate(np.array([p.position for p in points], dtype=np.float64))
        for point, value in zip(points, values, strict=True):
            if not math.isfinite(float(value)):
                evidence.append(PointEvidence(point, None, OUTSIDE))
            else:
                evidence.append(PointEvidence(point, float(value), _reading(float(value), point)))
    tested = [e for e in evidence if e.reading != OUTSIDE]
    readings = {e.reading for e in tested}
    single = fractions == 1
    contradicted = False
    if len(readings) == 1 and NEITHER not in readings:
        holds = readings.pop()
        confirmed = True
        how = f"{len(tested)} of {len(tested)} point(s) tested agree"
        if single:
            why = f"the grid holds the course (1 fraction): {how}"
        elif holds == label_reads:
            why = f"the grid holds {words[holds]}, as its label {label} says: {how}"
        else:
            why = (
                f"the grid holds {words[holds]}, although its label {label} reads as "
                f"{words[label_reads]}: {how}"
            )
    else:
        holds = label_reads
        confirmed = False
        kept = f"the label {label} is taken to mean {words[holds]}"
        if not evidence:
            why = f"no point where the plan states the dose{no_points}: {kept}, unconfirmed"
        elif not tested:
            why = (
                "every point where the plan states the dose lies outside the dose grid: "
                f"{kept}, unconfirmed"
            )
        else:
            contradicted = True
            counts = ", ".join(
                f"{sum(1 for e in tested if e.reading == r)} {r}"
                for r in (COURSE, FRACTION, NEITHER)
                if any(e.reading == r for e in tested)
            )
            why = (
                f"the points where the plan states the dose do not agree on one reading "
                f"({counts}): the export disagrees with itself; {kept}"
            )
    factor = 1.0
    if holds == FRACTION and not single and fractions:
        factor = float(fractions)
        why += f"; multiplied by the {fractions} fractions planned"
    return DoseScale(
        label, label_reads, holds, confirmed, factor, tuple(evidence), why, contradicted
    )
