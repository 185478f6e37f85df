"""Pieces shared by every report: JSON-safe numbers, the plan summary and the plan lines."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from rtcheck.dicom_io import DoseData, PlanInfo

if TYPE_CHECKING:
    from rtcheck.prescription import Prescription


def json_number(value: float | None, digits: int = 6) -> float | None:
    """A JSON-safe number: None for missing or non-finite values, rounded for reading."""
    if value is None or isinstance(value, bool) or not math.isfinite(float(value)):
        return None
    return round(float(value), digits)


def plan_summary(plan: PlanInfo | None) -> dict[str, Any] | None:
    """The plan as every report shows it (None without an RTPLAN).

    ``fractions`` is the course (every fraction group); ``total_dose_gy`` the plan's own
    prescription, never a sum of beam doses (that is ``beam_dose_total_gy``, a hint).
    """
    if plan is None:
        return None
    return {
        "file": str(plan.file),
        "label": plan.label,
        "name": plan.name or None,
        "sop_instance_uid": plan.sop_instance_uid,
        "intent": plan.intent or None,
        "approval": plan.approval or None,
        "radiation_type": plan.radiation_type or None,
        "fractions": plan.fractions,
        "fraction_groups": [g.as_dict() for g in plan.fraction_groups],
        "dose_per_fraction_gy": json_number(plan.dose_per_fraction_gy),
        "total_dose_gy": json_number(plan.total_dose_gy),
        "prescription_source": plan.prescription_source,
        "beam_dose_total_gy": json_number(plan.beam_dose_total_gy),
    }


def dose_summary(dose: DoseData) -> dict[str, Any]:
    """What every report says of the dose: files, summation, type and its scale evidence."""
    return {
        "files": [str(f) for f in dose.files],
        "sop_instance_uids": list(dose.sop_instance_uids),
        "summation": dose.summation,
        "dose_type": dose.dose_type or None,
        "scale": None if dose.scale is None else dose.scale.as_dict(),
    }


def _course(plan: PlanInfo) -> str:
    groups = plan.fraction_groups
    if plan.fractions is None:
        return "fractions not given"
    if len(groups) > 1:
        parts = " + ".join(str(g.fractions) for g in groups)
        return f"{plan.fractions} fractions in {len(groups)} groups ({parts})"
    return f"{plan.fractions} fraction{'s' if plan.fractions != 1 else ''}"


def plan_lines(
    plan: PlanInfo | None,
    dose: DoseData,
    prescription: Prescription | None = None,
    prescription_problem: str = "",
) -> list[str]:
    """The plan, its prescription and its dose as the terminal reports show them.

    Parameters
    ----------
    plan, dose
        From the loaded export.
    prescription
        The prescription a check used (:func:`rtcheck.prescription.resolve_prescription`);
        without one, the plan's own is shown.
    prescription_problem
        Why there is no prescription, when a check resolved none.
    """
    lines = []
    if plan is None:
        lines.append("No plan: dose used as stored")
    else:
        radiation = f", {plan.radiation_type}" if plan.radiation_type else ""
        lines.append(
            f"Plan {plan.label!r} ({plan.intent or 'intent not given'}, "
            f"{plan.approval or 'approval not given'}{radiation}): {_course(plan)}"
        )
        if prescription is not None:
            lines.append(f"Prescription: {prescription.schedule} ({prescription.detail})")
        elif plan.total_dose_gy is not None:
            schedule = (
                f"{plan.fractions} x {plan.dose_per_fraction_gy:.4g} Gy = "
                if plan.fractions and plan.dose_per_fraction_gy
                else ""
            )
            lines.append(
                f"Prescription: {schedule}{plan.total_dose_gy:.4g} Gy (the plan's Target "
                "Prescription Dose)"
            )
        else:
            what = "application setup doses" if plan.is_brachy else "beam doses"
            hint = (
                f"; the {what} add up to {plan.beam_dose_total_gy:.4g} Gy at their "
                "specification point (a hint, not used as a prescription)"
                if plan.beam_dose_total_gy is not None
                else ""
            )
            lines.append(
                f"Prescription: none stated in the plan{hint}"
                if not prescription_problem
                else f"Prescription: none ({prescription_problem})"
            )
    kind = f", {dose.dose_type}" if dose.dose_type else ", DoseType not given"
    files = ", ".join(f.name for f in dose.files)
    lines.append(f"Dose {dose.summation}{kind}: {files}")
    if dose.scale is not None:
        lines.append(f"Dose scale: {dose.scale.summary}")
        lines.extend(f"  {e.text}" for e in dose.scale.evidence)
    return lines
