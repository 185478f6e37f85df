"""The prescription a check may use, and where it came from.

A rule that needs the prescription (schedule, BED/EQD2, percent-of-prescription metrics,
the prescription-against-dose check) uses, in this order:

1. the plan's own prescription: the highest Target Prescription Dose of its TARGET dose
   references (:attr:`rtcheck.dicom_io.PlanInfo.total_dose_gy`);
2. the prescription the user gives (``--prescription 70/35``);
3. nothing: those rules are not evaluated, and the verdict is ``error``.

A sum of beam doses is never a prescription: it is the dose at a specification point that
may lie anywhere (outside the target, in a gradient). It is shown as a hint only.

With several fraction groups (a sequential boost) the course is their sum; BED and EQD2
add up the groups, each with its own dose per fraction. The prescription gives the total;
how it divides between the groups comes from the groups' Beam Doses, and only when every
beam of every group states its dose at one common specification point (the planning
system's statement of each group's dose per fraction there). Otherwise the division is
unknown: BED, EQD2 and dose-per-fraction schedule limits are not evaluated.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from rtcheck.constraints import radiobiology
from rtcheck.dicom_io import PlanInfo
from rtcheck.errors import UsageError

__all__ = ["Prescription", "parse_prescription", "resolve_prescription"]

#: How the user gives a prescription, quoted in every message that asks for one.
PRESCRIPTION_HINT = "give it with --prescription TOTAL/FRACTIONS (e.g. --prescription 70/35)"

#: Relative difference between a given prescription and the plan's that is reported.
_AGREEMENT = 0.005

_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:gy)?\s*/\s*(\d+)\s*$", re.IGNORECASE)


def parse_prescription(text: str) -> tuple[float, int]:
    """Parse ``TOTAL/FRACTIONS`` (Gy, e.g. ``70/35`` or ``54Gy/3``).

    Raises
    ------
    UsageError
        When the text is not of that form, or the numbers are not positive.
    """
    match = _PATTERN.match(text)
    if match is None:
        raise UsageError(
            f"--prescription '{text}' is not TOTAL/FRACTIONS: give the total dose in Gy and "
            "the number of fractions, e.g. --prescription 70/35"
        )
    total, fractions = float(match.group(1)), int(match.group(2))
    if not total > 0 or fractions <= 0:
        raise UsageError(
            f"--prescription '{text}': the total dose and the number of fractions must be positive"
        )
    return total, fractions


@dataclass(frozen=True)
class Prescription:
    """The prescription used by a check.

    Attributes
    ----------
    total_gy
        Total dose of the course (Gy).
    fractions
        Fractions of the course (all fraction groups), or None when unknown.
    source
        ``"plan"`` or ``"given"`` (on the command line).
    detail
        Where exactly it came from, for the reader.
    groups
        ``(fractions, dose per fraction)`` of each fraction group, when the division of the
        total between the groups is known (always, with one group).
    """

    total_gy: float
    fractions: int | None
    source: str
    detail: str
    groups: tuple[tuple[int, float], ...] = ()

    @property
    def dose_per_fraction_gy(self) -> float | None:
        """Mean dose per fraction over the course."""
        return self.total_gy / self.fractions if self.fractions else None

    @property
    def schedule(self) -> str:
        """``35 x 2 Gy = 70 Gy``, or the groups: ``25 x 2 + 10 x 2 Gy = 70 Gy``."""
        if not self.fractions:
            return f"{self.total_gy:.4g} Gy, fractions not given"
        if len(self.groups) > 1:
            parts = " + ".join(f"{n} x {d:.4g}" for n, d in self.groups)
            return f"{parts} Gy = {self.total_gy:.4g} Gy"
        per_fraction = self.total_gy / self.fractions
        return f"{self.fractions} x {per_fraction:.4g} Gy = {self.total_gy:.4g} Gy"

    def bed(self, alpha_beta: float) -> float | None:
        """BED (Gy) summed over the fraction groups; None when the division is unknown."""
        if not self.groups:
            return None
        return sum(radiobiology.bed(n, d, alpha_beta) for n, d in self.groups)

    def eqd2(self, alpha_beta: float) -> float | None:
        """EQD2 (Gy) summed over the fraction groups; None when the division is unknown."""
        value = self.bed(alpha_beta)
        return None if value is None else value / (1.0 + 2.0 / alpha_beta)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "total_gy": round(self.total_gy, 4),
            "fractions": self.fractions,
            "dose_per_fraction_gy": None
            if self.dose_per_fraction_gy is None
            else round(self.dose_per_fraction_gy, 4),
            "source": self.source,
            "detail": self.detail,
            "groups": [
                {"fractions": n, "dose_per_fraction_gy": round(d, 4)} for n, d in self.groups
            ],
        }


def _groups(
    plan: PlanInfo | None, total: float, fractions: int | None
) -> tuple[tuple[tuple[int, float], ...], str]:
    """How ``total`` divides between the plan's fraction groups, and a note when unknown."""
    groups = plan.fraction_groups if plan is not None else ()
    if len(groups) <= 1:
        return (((fractions, total / fractions),) if fractions else ()), ""
    weights = [(g.fractions or 0) * (g.beam_dose_gy or 0.0) for g in groups]
    points = {b.point for g in groups for b in g.beams}
    if (
        not all(g.fractions and g.beam_dose_gy for g in groups)
        or not sum(weights) > 0
        or len(points) != 1
        or None in points
    ):
        return (), (
            f"the plan's {len(groups)} fraction groups do not all state their beam doses at "
            "one common specification point, so how the prescription divides between them "
            "(for BED and the dose per fraction) is unknown"
        )
    share = total / sum(weights)
    return (
        tuple(
            ((g.fractions or 0), w * share / (g.fractions or 1))
            for g, w in zip(groups, weights, strict=True)
        ),
        "",
    )


def resolve_prescription(
    plan: PlanInfo | None, given: tuple[float, int] | None = None
) -> tuple[Prescription | None, list[str], str]:
    """The prescription a check uses (see the module docstring for the order).

    Parameters
    ----------
    plan
        The plan, when there is one.
    given
        ``(total Gy, fractions)`` from ``--prescription``, when given.

    Returns
    -------
    tuple
        The prescription or None; warnings for the reader; and, when there is no
        prescription, why and how to give one (else "").
    """
    warnings: list[str] = []
    if plan is not None and plan.total_dose_gy is not None:
        fractions = plan.fractions
        if given is not None:
            total, count = given
            if abs(total - plan.total_dose_gy) > _AGREEMENT * plan.total_dose_gy or (
                fractions is not None and count != fractions
            ):
                warnings.append(
                    f"--prescription {total:g}/{count} differs from the plan's own "
                    f"prescription ({plan.total_dose_gy:g} Gy in {fractions or '?'} "
                    "fractions): the plan's is used"
                )
            if fractions is None:
                fractions = count
        groups, note = _groups(plan, plan.total_dose_gy, fractions)
        if note:
            warnings.append(note)
        return (
            Prescription(
                plan.total_dose_gy,
                fractions,
                "plan",
                "the plan's Target Prescription Dose",
                groups,
            ),
            warnings,
            "",
        )
    if given is not None:
        total, count = given
        if plan is not None and plan.fractions is not None and plan.fractions != count:
            return (
                None,
                warnings,
                f"--prescription {total:g}/{count} gives {count} fractions but the plan "
                f"plans {plan.fractions}: the prescription is not used; give the plan's "
                "number of fractions",
            )
        groups, note = _groups(plan, total, count)
        if note:
            warnings.append(note)
        return (
            Prescription(total, count, "given", f"--prescription {total:g}/{count}", groups),
            warnings,
            "",
        )
    if plan is None:
        why = "there is no RTPLAN, so no prescription"
    elif plan.prescription_problem:
        why = plan.prescription_problem
    else:
        why = (
            "the plan states no prescription (no Target Prescription Dose in its Dose "
            "Reference Sequence)"
        )
    if (
        plan is not None
        and plan.beam_dose_total_gy is not None
        and math.isfinite(plan.beam_dose_total_gy)
    ):
        why += (
            f"; its beam doses add up to {plan.beam_dose_total_gy:.4g} Gy at their "
            "specification point, which is not a prescription"
        )
    return None, warnings, f"{why}: {PRESCRIPTION_HINT}"
