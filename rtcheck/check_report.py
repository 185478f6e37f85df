"""Renderings of a protocol check: versioned JSON (``rtcheck.report/1``) and a table."""

from __future__ import annotations

from typing import Any

from rtcheck import __version__
from rtcheck.constraints.engine import CheckResult
from rtcheck.constraints.protocol import ScheduleFact
from rtcheck.report_common import dose_summary, json_number, plan_lines, plan_summary

SCHEMA = "rtcheck.report/1"

#: Facts with a structure of their own in the report; every other fact is a plain value.
STRUCTURED_FACTS = (
    "distances_mm",
    "bed_gy",
    "eqd2_gy",
    "elective_volumes",
    "targets",
    "metastasis_count",
    "plan_quality",
)


def plan_quality_lines(facts: dict[str, Any]) -> list[str]:
    """One line per target scored for SABR plan quality (R100, R50, D2cm, Paddick)."""

    def num(value: Any, spec: str = ".2f") -> str:
        return "n/a" if value is None else format(value, spec)

    out = []
    for role, found in (facts.get("plan_quality") or {}).items():
        for name, q in (found.get("targets") or {}).items():
            pooled = q.get("pooled_50") or []
            out.append(
                f"Plan quality {name} ({role}, {num(q.get('volume_cc'), '.3g')} cc): "
                f"R100 {num(q.get('R100'))}, R50 {num(q.get('R50'))}, D2cm "
                f"{num(q.get('D2cm_percent'), '.1f')} %, Paddick CI {num(q.get('paddick_ci'))}, "
                f"GI {num(q.get('gradient_index'))}"
                + (f" (50 % isodose pooled with {', '.join(pooled)})" if pooled else "")
            )
    return out


_MARK = {"pass": "PASS", "minor": "MINOR", "major": "MAJOR", "not_evaluated": "N/E"}


def to_json(result: CheckResult) -> dict[str, Any]:
    """The check as a JSON-ready dictionary (schema ``rtcheck.report/1``)."""
    export, protocol, plan = result.export, result.protocol, result.export.plan
    return {
        "schema": SCHEMA,
        "rtcheck_version": __version__,
        "protocol": {
            "id": protocol.id,
            "version": protocol.version,
            "sha256": protocol.sha256,
            "title": protocol.title,
            "file": protocol.file,
        },
        "selection": None if result.selection is None else result.selection.as_dict(),
        "patient_id": export.patient_id,
        "plan": plan_summary(plan),
        "prescription": None if result.prescription is None else result.prescription.as_dict(),
        "prescription_problem": result.prescription_problem or None,
        "inputs": {
            "structure_set": {
                "file": str(export.structures.file),
                "sop_instance_uid": export.structures.sop_instance_uid,
            },
            "dose": dose_summary(export.dose),
            "plan": None
            if plan is None
            else {"file": str(plan.file), "sop_instance_uid": plan.sop_instance_uid},
        },
        "facts": {
            **{k: v for k, v in result.facts.items() if k not in STRUCTURED_FACTS},
            "location": result.facts.get("location"),
            "distances_mm": result.facts.get("distances_mm", {}),
            "bed_gy": result.facts.get("bed_gy", {}),
            "eqd2_gy": result.facts.get("eqd2_gy", {}),
            "elective_volumes": result.facts.get("elective_volumes", []),
            "targets": result.facts.get("targets", []),
            "metastasis_count": result.facts.get("metastasis_count"),
            "plan_quality": result.facts.get("plan_quality", {}),
        },
        "structures": {
            role: names[0] if len(names) == 1 else names
            for role, names in result.roles.matched.items()
        },
        "structures_matched_by": dict(result.roles.how),
        "missing_roles": list(result.roles.missing),
        "unmatched_rois": list(result.unmatched_rois),
        "excluded_rois": [dict(e.as_dict()) for e in result.roles.excluded],
        "stand_ins": [
            {"roi": s.roi, "role": s.role, "note": s.note} for s in result.roles.stand_ins
        ],
        "role_notes": dict(result.roles.notes),
        "ambiguous_roles": dict(result.roles.ambiguous),
        "results": [
            {
                "id": r.id,
                "kind": r.kind,
                "status": r.status,
                "structure": r.structure,
                "metric": r.metric,
                "measured": json_number(r.measured),
                "limit": r.limit,
                "message": r.message,
                "source": r.source,
            }
            for r in result.results
        ],
        "skipped": result.skipped,
        "verdict": result.verdict,
        "strict": result.strict,
        "between_planes": result.between_planes,
        "warnings": list(export.warnings) + list(export.dose.notes) + result.warnings,
        "errors": result.errors,
    }


def not_checked_lines(result: CheckResult) -> list[str]:
    """What the check did not look at, for the first screen of a report.

    Every rule skipped (an optional structure missing, a ``when`` that does not apply),
    every ROI a role's names matched or that resembles a role but that was not evaluated as
    it, and every stand-in and note on how a role was filled.
    """
    roles = result.roles
    lines: list[str] = []
    for stand_in in roles.stand_ins:
        lines.append(f"Stand-in: {stand_in.note}")
    for role, note in roles.notes.items():
        if not any(s.role == role for s in roles.stand_ins):
            lines.append(f"Role {role}: {note}")
    if roles.excluded:
        lines.append(f"Not evaluated as a role ({len(roles.excluded)}):")
        lines.extend(f"  {e.roi}: {e.reason}" for e in roles.excluded)
    if result.skipped:
        lines.append(f"Rules skipped ({len(result.skipped)}):")
        lines.extend(f"  {', '.join(ids)}: {reason}" for reason, ids in skipped_by_reason(result))
    return lines


def skipped_by_reason(result: CheckResult) -> list[tuple[str, list[str]]]:
    """The skipped rules grouped by their reason, in the protocol's order."""
    groups: dict[str, list[str]] = {}
    for s in result.skipped:
        groups.setdefault(s["reason"], []).append(s["id"])
    return list(groups.items())


def format_report(result: CheckResult) -> str:
    """A readable verdict, plan facts, role mapping and one row per rule result."""
    plan, facts = result.export.plan, result.facts
    lines = [
        f"Protocol {result.protocol.id} v{result.protocol.version}: {result.protocol.title}",
        *(result.selection.lines() if result.selection is not None else []),
        f"Patient {result.export.patient_id}",
    ]
    lines.extend(
        plan_lines(plan, result.export.dose, result.prescription, result.prescription_problem)
    )
    if facts.get("bed_gy"):
        lines.append(
            "BED: " + ", ".join(f"{v:.1f} Gy (a/b {k})" for k, v in facts["bed_gy"].items())
        )
    for fact in result.protocol.facts:
        if isinstance(fact, ScheduleFact):
            value = facts.get(fact.name) or "unknown"
            lines.append(f"{fact.name.capitalize()}: {value} ({facts.get(f'{fact.name}_reason')})")
    if facts.get("location") is not None or facts.get("distances_mm"):
        lines.append(
            f"Location: {facts.get('location') or 'unknown'}; distances: "
            + ", ".join(f"{k} {v:.1f} mm" for k, v in facts.get("distances_mm", {}).items())
        )
    for e in facts.get("elective_volumes", []):
        lines.append(f"Elective volume suspected: {e['name']} ({'; '.join(e['reasons'])})")
    lines.extend(plan_quality_lines(facts))
    mapping = ", ".join(
        f"{role} = {', '.join(names)}" for role, names in result.roles.matched.items()
    )
    lines.append(f"Structures: {mapping or 'none matched'}")
    if result.roles.missing:
        lines.append(f"Missing roles: {', '.join(result.roles.missing)}")
    if result.unmatched_rois:
        lines.append(f"ROIs not matched to any role: {', '.join(result.unmatched_rois)}")
    lines.extend(not_checked_lines(result))
    lines.append("")
    rows = [("STATUS", "RULE", "STRUCTURE", "MEASURED", "LIMIT")]
    for r in result.results:
        measured = "-" if r.measured is None else f"{r.measured:.4g}"
        rows.append((_MARK[r.status], r.id, r.structure or "-", measured, r.limit or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    details = [f"  {r.id}: {r.message}" for r in result.results if r.status != "pass"]
    if details:
        lines.append("")
        lines.extend(details)
    lines.append("")
    lines.append(
        f"VERDICT: {result.verdict.upper()}"
        + (" (strict: minor deviations fail)" if result.strict else "")
        + (" (DVHs: shape model between planes)" if result.between_planes == "shape" else "")
    )
    return "\n".join(lines)
