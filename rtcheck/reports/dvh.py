"""Renderings of a DVH analysis: versioned JSON data first, then a table and CSV.

The JSON document (schema ``rtcheck.dvh/1``) is the source of truth; the terminal table
and the CSV are views of the same numbers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rtcheck import __version__
from rtcheck.analysis import DvhAnalysis, StructureResult, shared_names
from rtcheck.dvh import kernel
from rtcheck.reports.common import json_number, plan_summary
from rtcheck.reports.csv_writer import Cell, render_csv

SCHEMA = "rtcheck.dvh/1"
#: Table cell of a metric that cannot be computed for a structure (the reason is a warning).
NOT_COMPUTABLE = "n/a"


def to_json(analysis: DvhAnalysis, *, curves: bool = True) -> dict[str, Any]:
    """The analysis as a JSON-ready dictionary (schema ``rtcheck.dvh/1``).

    Parameters
    ----------
    analysis
        The computed analysis.
    curves
        Include each structure's cumulative DVH (``dose_gy`` and ``volume_cc`` arrays).
    """
    export = analysis.export
    plan = export.plan
    dose = export.dose
    grid = dose.grid
    z_steps = [float(b - a) for a, b in zip(grid.z[:-1], grid.z[1:], strict=True)]
    return {
        "schema": SCHEMA,
        "rtcheck_version": __version__,
        "patient_id": export.patient_id,
        "between_planes": analysis.between_planes,
        "dvh_kernel": kernel.name(),
        "prescription_gy": json_number(analysis.prescription_gy),
        "plan": plan_summary(plan),
        "dose": {
            "file": [str(f) for f in dose.files] if len(dose.files) > 1 else str(dose.files[0]),
            "sop_instance_uids": list(dose.sop_instance_uids),
            "summation": dose.summation,
            "dose_type": dose.dose_type or None,
            "scale": None if dose.scale is None else dose.scale.as_dict(),
            "grid": {
                "size": [int(grid.x.size), int(grid.y.size), int(grid.z.size)],
                "origin_mm": [
                    json_number(grid.x[0]),
                    json_number(grid.y[0]),
                    json_number(grid.z[0]),
                ],
                "spacing_mm": [
                    json_number(grid.dx),
                    json_number(grid.dy),
                    json_number(z_steps[0]) if max(z_steps) - min(z_steps) < 1e-6 else None,
                ],
                "max_gy": json_number(grid.dose_range[1]),
            },
        },
        "structure_set": {
            "file": str(export.structures.file),
            "sop_instance_uid": export.structures.sop_instance_uid,
        },
        "structures": [_structure_json(s, curves) for s in analysis.structures],
        "warnings": analysis.warnings,
        "notes": analysis.notes,
        "errors": analysis.problems,
    }


def _structure_json(result: StructureResult, curves: bool) -> dict[str, Any]:
    roi, dvh = result.roi, result.dvh
    entry: dict[str, Any] = {
        "name": roi.name,
        "number": roi.number,
        "type": roi.interpreted_type,
        "volume_cc": None,
        "volume_outside_dose_cc": None,
        "volume_outside_dose_percent": None,
        "complete": result.complete,
        "min_gy": None,
        "mean_gy": None,
        "max_gy": None,
        "metrics": {k: json_number(v) for k, v in result.metrics.items()},
        "metrics_not_computable": dict(result.not_computable),
    }
    if dvh is not None:
        entry.update(
            volume_cc=json_number(dvh.volume_cc),
            volume_outside_dose_cc=json_number(dvh.volume_outside_cc),
            volume_outside_dose_percent=json_number(
                100.0 * dvh.volume_outside_cc / dvh.volume_cc if dvh.volume_cc > 0 else None
            ),
            min_gy=json_number(dvh.min_gy),
            mean_gy=json_number(dvh.mean_gy),
            max_gy=json_number(dvh.max_gy),
        )
        if curves:
            doses, volumes = dvh.cumulative()
            entry["dvh"] = {
                "type": "cumulative",
                "dose_gy": [round(float(d), 4) for d in doses],
                "volume_cc": [round(float(v), 5) for v in volumes],
            }
    return entry


def format_table(analysis: DvhAnalysis) -> str:
    """A fixed-width table for the terminal: one row per structure.

    Structures that leave the dose grid are marked ``!`` (explained under the table, the
    details are warnings); a metric that does not fit a structure is ``n/a``, with one
    line under the table per such value saying why.
    """
    metric_names = [str(m) for m in analysis.metrics]
    header = ["ROI", "Volume[cc]", "Min[Gy]", "Mean[Gy]", "Max[Gy]", *metric_names]
    rows: list[list[str]] = []
    shared = shared_names([s.roi for s in analysis.structures])
    for s in analysis.structures:
        dvh = s.dvh
        name = s.roi.name + (f" #{s.roi.number}" if s.roi.name.casefold() in shared else "")
        name += "" if s.complete or dvh is None else " !"
        if dvh is None:
            rows.append([name, "-", "-", "-", "-", *["-"] * len(metric_names)])
            continue
        values = [
            NOT_COMPUTABLE if m in s.not_computable else _fmt(s.metrics.get(m))
            for m in metric_names
        ]
        rows.append(
            [
                name,
                _fmt(dvh.volume_cc),
                _fmt(dvh.min_gy),
                _fmt(dvh.mean_gy),
                _fmt(dvh.max_gy),
                *values,
            ]
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if any(not s.complete and s.dvh is not None for s in analysis.structures):
        lines.append("! part of the structure lies outside the dose grid (see warnings)")
    for s in analysis.structures:
        for metric, why in s.not_computable.items():
            lines.append(f"{NOT_COMPUTABLE} {s.roi.name!r} {metric} not computable: {why}")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def to_csv(analysis: DvhAnalysis) -> str:
    """CSV with one row per structure: volumes, min/mean/max and every metric.

    A metric that cannot be computed for a structure is empty; the last column,
    ``metrics_not_computable``, then says which and why (``metric: reason``, joined by
    ``; ``).
    """
    metric_names = [str(m) for m in analysis.metrics]
    header = [
        "patient_id",
        "roi",
        "number",
        "type",
        "volume_cc",
        "volume_outside_dose_cc",
        "complete",
        "min_gy",
        "mean_gy",
        "max_gy",
        *metric_names,
        "metrics_not_computable",
    ]
    rows: list[list[Cell]] = []
    for s in analysis.structures:
        dvh = s.dvh
        rows.append(
            [
                analysis.export.patient_id,
                s.roi.name,
                s.roi.number,
                s.roi.interpreted_type,
                *(
                    [None] * 6
                    if dvh is None
                    else [
                        _float(dvh.volume_cc),
                        _float(dvh.volume_outside_cc),
                        s.complete,
                        _float(dvh.min_gy),
                        _float(dvh.mean_gy),
                        _float(dvh.max_gy),
                    ]
                ),
                *(_float(s.metrics.get(m)) for m in metric_names),
                "; ".join(f"{k}: {why}" for k, why in s.not_computable.items()),
            ]
        )
    return render_csv(header, rows, number=_csv_number)


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _csv_number(value: float) -> str:
    """6 significant digits, never in exponent notation (``2.2e-05`` is ``0.000022``)."""
    return str(
        np.format_float_positional(value, precision=6, unique=False, fractional=False, trim="-")
    )
