"""Pieces shared by every report: JSON-safe numbers and the plan summary."""

from __future__ import annotations

import math
from typing import Any

from rtcheck.dicom_io import PlanInfo


def json_number(value: float | None, digits: int = 6) -> float | None:
    """A JSON-safe number: None for missing or non-finite values, rounded for reading."""
    if value is None or isinstance(value, bool) or not math.isfinite(float(value)):
        return None
    return round(float(value), digits)


def plan_summary(plan: PlanInfo | None) -> dict[str, Any] | None:
    """The plan as every report shows it (None without an RTPLAN)."""
    if plan is None:
        return None
    return {
        "file": str(plan.file),
        "label": plan.label,
        "name": plan.name or None,
        "sop_instance_uid": plan.sop_instance_uid,
        "intent": plan.intent or None,
        "approval": plan.approval or None,
        "fractions": plan.fractions,
        "fraction_groups": plan.fraction_groups,
        "dose_per_fraction_gy": json_number(plan.dose_per_fraction_gy),
        "total_dose_gy": json_number(plan.total_dose_gy),
        "prescription_source": plan.prescription_source,
    }
