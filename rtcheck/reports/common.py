"""Pieces shared by every report: JSON-safe numbers, the plan summary and the plan lines."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from rtcheck.constraints.metrics import parse_metric
from rtcheck.dicom_io import DoseData, PlanInfo
from rtcheck.errors import MetricSyntaxError

if TYPE_CHECKING:
    from rtcheck.constraints.engine import RuleResult
    from rtcheck.prescription import Prescription


def json_number(value: float | None, digits: int = 6) -> float | None:
    """A JSON-safe number: None for missing or non-finite values, rounded for reading."""
    if value is None or isinstance(value, bool) or not math.isfinite(float(value)):
        return None
    return round(float(value), digits)


def _finite(value: float | None) -> float | None:
    if value is None or isinstance(value, bool) or not math.isfinite(float(value)):
        return None
    return float(value)


def dose_text(value: float | None, missing: str = "-") -> str:
    """A dose in Gy as people read it: to 0.01 Gy (1 cGy), never in exponent notation.

    Parameters
    ----------
    value
        The dose in Gy.
    missing
        The text for None or a value that is not finite.

    Returns
    -------
    str
        ``0.00`` for a dose below 0.005 Gy (not ``2.2e-05``), ``0.24``, ``66.87``.
    """
    v = _finite(value)
    if v is None:
        return missing
    return f"{0.0 if abs(v) < 0.005 else v:.2f}"


def number_text(value: float | None, digits: int = 4, missing: str = "-") -> str:
    """A number as people read it: ``digits`` significant digits, never in exponent
    notation (``2.2e-05`` is ``0.000022``), whole numbers beyond them kept whole.

    Parameters
    ----------
    value
        Any number (a volume, a percentage, a ratio).
    digits
        Significant digits.
    missing
        The text for None or a value that is not finite.
    """
    v = _finite(value)
    if v is None:
        return missing
    if v == 0:
        return "0"
    if abs(v) >= 10**digits:
        return f"{v:.0f}"
    return str(
        np.format_float_positional(v, precision=digits, unique=False, fractional=False, trim="-")
    )


def measured_unit(r: RuleResult) -> str:
    """The unit of a rule result's measured value (``Gy``, ``%``, ``cc``...), "" for a
    count or a ratio."""
    if r.kind in ("fractionation", "radiobiology"):
        return "Gy"
    if r.kind == "geometry":
        return "mm"
    if r.metric is not None and r.kind in ("dose_volume", "coverage"):
        try:
            return str(parse_metric(r.metric).output_unit)
        except MetricSyntaxError:
            return ""
    if r.kind == "coverage" and r.measured is not None:
        return "% outside"
    if r.kind == "plan_quality":
        return {"D2cm": "%", "max_in_target": "mm"}.get(r.metric or "", "")
    if r.kind == "target_volumes" and r.id.endswith(".dose"):
        return "cc"
    if r.kind == "integrity":
        return {"prescription": "Gy", "prescription_matches_dose": "%"}.get(
            r.id.rpartition(".")[2], ""
        )
    return ""


def measured_text(r: RuleResult, missing: str = "") -> str:
    """A rule result's measured value with its unit (``0.03 Gy``, ``96.35 %``, ``1``);
    ``missing`` when nothing was measured."""
    if r.measured is None or isinstance(r.measured, bool):
        return missing
    unit = measured_unit(r)
    number = dose_text(r.measured) if unit == "Gy" else number_text(r.measured)
    return f"{number} {unit}" if unit else number


_NUMBER_RE = re.compile(r"(?<![\w.])[-+]?\d+\.(\d+)(?![\w]|\.\d)")


def _round_number(match: re.Match[str]) -> str:
    """A decimal number of a limit as people read it: 3 significant digits.

    Integer digits are never dropped, and a number of at most 2 decimals and 4
    significant digits is left as written (a tabulated 21.95 stays 21.95; a converted
    27.0156 becomes 27.0, an interpolated 4.971 becomes 4.97).
    """
    text = match.group(0)
    decimals = len(match.group(1))
    digits = len(text.lstrip("+-").replace(".", "").lstrip("0"))
    if decimals <= 2 and digits <= 4:
        return text
    value = float(text)
    if abs(value) >= 1:
        whole = len(str(int(abs(value))))
        return f"{value:.{max(0, 3 - whole)}f}"
    return f"{value:.3g}"


def round_text(text: str) -> str:
    """``text`` with its long decimal numbers rounded for people (a limit converted with
    EQD2, ``<= 27.7547 Gy``, reads ``<= 27.8 Gy``); the JSON keeps the exact text.

    Parameters
    ----------
    text
        A limit or a message.

    Returns
    -------
    str
        The text, each decimal number of more than 2 decimals or 4 significant digits
        rounded to 3 significant digits (integer digits are never dropped).
    """
    return _NUMBER_RE.sub(_round_number, text)


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
