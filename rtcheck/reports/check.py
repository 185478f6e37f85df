"""Renderings of a protocol check: versioned JSON (``rtcheck.report/1``) and a table."""

from __future__ import annotations

import textwrap
from typing import Any

from rtcheck import __version__
from rtcheck.analysis import split_dose_notes
from rtcheck.constraints.engine import CheckResult, RuleResult
from rtcheck.constraints.protocol import ScheduleFact
from rtcheck.dvh import kernel
from rtcheck.reports.common import (
    dose_summary,
    json_number,
    measured_text,
    plan_lines,
    plan_summary,
    round_text,
)

SCHEMA = "rtcheck.report/1"

#: Terminal width used when none is given.
DEFAULT_WIDTH = 100
_STATUS_COLOUR = {"pass": "32", "minor": "33", "major": "31", "not_evaluated": "35"}
_VERDICT_COLOUR = {"pass": "32", "fail": "31", "error": "35"}

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
        "checked_at": result.checked_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "checked_at_local": result.checked_at.astimezone().isoformat(timespec="seconds"),
        "patient_id": export.patient_id,
        "plan": plan_summary(plan),
        "plan_record": None if plan is None or plan.record is None else plan.record.as_dict(),
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
        "dvh_statistics": dvh_statistics(result),
        "tps_dvh_comparison": result.tps_comparison,
        "skipped": result.skipped,
        "verdict": result.verdict,
        "verdict_reason": verdict_reason(result) or None,
        "strict": result.strict,
        "between_planes": result.between_planes,
        "dvh_kernel": kernel.name(),
        "warnings": list(export.warnings) + split_dose_notes(export.dose)[1] + result.warnings,
        "notes": split_dose_notes(export.dose)[0],
        "errors": result.errors,
    }


#: Near-minimum, median and near-maximum doses every ROI's statistics give (ICRU 83).
STANDARD_DOSES = (98.0, 95.0, 50.0, 2.0)


def dvh_statistics(result: CheckResult) -> list[dict[str, Any]]:
    """One entry per ROI: volume, minimum, mean and maximum dose, D98/D95/D50/D2, and the
    metrics the protocol's rules measured on it; or why it has no DVH.

    The DVHs are the check's own (the ones the rules were evaluated on); an ROI no rule
    used is listed without numbers, as ``computed: false``, so the table never suggests
    an ROI was looked at when it was not.
    """
    out: list[dict[str, Any]] = []
    for roi in result.export.structures.rois:
        entry: dict[str, Any] = {
            "name": roi.name,
            "number": roi.number,
            "type": roi.interpreted_type or None,
            "computed": False,
            "volume_cc": None,
            "min_gy": None,
            "mean_gy": None,
            "max_gy": None,
        }
        dvh = result.dvhs.get(roi.name)
        if dvh is None:
            entry["reason"] = result.dvh_problems.get(roi.name) or (
                "no DVH: no rule of the protocol uses this ROI"
            )
            out.append(entry)
            continue
        inside = dvh.volume_inside_cc
        entry.update(
            computed=True,
            volume_cc=json_number(dvh.volume_cc),
            volume_outside_dose_cc=json_number(dvh.volume_outside_cc),
            min_gy=json_number(dvh.min_gy),
            mean_gy=json_number(dvh.mean_gy),
            max_gy=json_number(dvh.max_gy),
            doses_gy={
                f"D{p:g}%": json_number(dvh.dose_at_volume(p / 100 * inside))
                if inside > 0 and dvh.complete
                else None
                for p in STANDARD_DOSES
            },
            protocol_metrics={
                r.metric: json_number(r.measured)
                for r in result.results
                if r.structure == roi.name and r.metric and r.measured is not None
            },
        )
        out.append(entry)
    return out


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
    """The skipped rules grouped by their reason, in the protocol's order; the rules of
    optional structures that are not contoured in one group (the names each role looks
    for are in the JSON report's ``skipped``)."""
    groups: dict[str, list[str]] = {}
    absent: dict[str, None] = {}
    absent_ids: list[str] = []
    for s in result.skipped:
        if s.get("absent_roles"):
            absent.update(dict.fromkeys(s["absent_roles"].split(", ")))
            absent_ids.append(s["id"])
            continue
        groups.setdefault(s["reason"], []).append(s["id"])
    out = list(groups.items())
    if absent_ids:
        out.insert(
            0,
            (
                f"optional structures not contoured (no ROI resembles them): {', '.join(absent)}",
                absent_ids,
            ),
        )
    return out


def format_report(result: CheckResult, *, width: int = DEFAULT_WIDTH, colour: bool = False) -> str:
    """A readable report: plan facts, role mapping, one row per rule result, the verdict
    last.

    Parameters
    ----------
    result
        The check.
    width
        Terminal columns: no line is longer (long names are cut, long lines wrapped).
    colour
        Colour the statuses and the verdict with ANSI codes (for a terminal).
    """
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
    distances = ", ".join(f"{k} {v:.1f} mm" for k, v in facts.get("distances_mm", {}).items())
    for fact in result.protocol.facts:
        # A distance fact (a lung lesion's location) only where the protocol derives one.
        if not isinstance(fact, ScheduleFact):
            why = facts.get(f"{fact.name}_reason")
            value = facts.get(fact.name) or ("unknown" + (f" ({why})" if why else ""))
            lines.append(
                f"{fact.name.capitalize()}: {value}"
                + (f"; distances: {distances}" if distances else "")
            )
            distances = ""
    for e in facts.get("elective_volumes", []):
        lines.append(f"Elective volume suspected: {e['name']} ({'; '.join(e['reasons'])})")
    lines.extend(plan_quality_lines(facts))
    mapping = ", ".join(
        f"{role} = {', '.join(names)}" for role, names in result.roles.matched.items()
    )
    lines.append(f"Structures: {mapping or 'none matched'}")
    required_missing = [r for r in result.roles.missing if not result.protocol.roles[r].optional]
    if required_missing:
        lines.append(f"Missing roles: {', '.join(required_missing)}")
    if result.unmatched_rois:
        lines.append(f"ROIs not matched to any role: {', '.join(result.unmatched_rois)}")
    lines.extend(not_checked_lines(result))
    lines.append("")
    body = [_wrap(line, width) for line in lines]
    table = _rule_table(result, width, colour)
    details = [
        _wrap(f"  {r.id}: {_rounded_message(r)}", width)
        for r in result.results
        if r.status != "pass"
    ]
    verdict = (
        f"VERDICT: {result.verdict.upper()}"
        + (" (strict: minor deviations fail)" if result.strict else "")
        + (" (DVHs: slab model between planes)" if result.between_planes == "slab" else "")
    )
    if colour:
        verdict = _paint(verdict, _VERDICT_COLOUR[result.verdict], bold=True)
    out = [*body, *table]
    if details:
        out += ["", *details]
    out.append("")
    if why := verdict_reason(result):
        # Said on the line before, so the verdict stays the last line, and one line.
        out.append(_wrap(f"{why[0].upper()}{why[1:]}.", width))
    out.append(verdict)
    return "\n".join(out)


def verdict_reason(result: CheckResult) -> str:
    """Why the verdict is what it is when something was not evaluated, in the words the
    terminal, the JSON (``verdict_reason``) and the HTML banner all use; "" otherwise.

    A fail stands whatever the results not evaluated would give (a failing plan cannot
    pass); without a fail, anything not evaluated makes the verdict ``error``: a plan is
    never passed on a part of it.
    """
    missing = sum(1 for r in result.results if r.status == "not_evaluated")
    counted = f"{missing} result{'s' if missing != 1 else ''} not evaluated"
    if result.verdict == "fail":
        if not missing:
            return ""
        worst = (
            "a major deviation"
            if any(r.status == "major" for r in result.results)
            else ("a minor deviation (strict)")
        )
        return f"{worst}; {counted} as well, which cannot make the plan pass"
    if result.verdict == "error":
        if missing:
            return f"{counted}: a plan is never passed on a part of it"
        return "no dose rule of the protocol could be applied: the plan was not checked"
    return ""


def _rounded_message(r: RuleResult) -> str:
    """A result's message with its limit rounded as the table shows it."""
    if r.limit and r.limit in r.message:
        return r.message.replace(r.limit, round_text(r.limit))
    return r.message


def _paint(text: str, code: str, *, bold: bool = False) -> str:
    """``text`` in an ANSI colour (for a terminal that shows colour)."""
    return f"\x1b[{'1;' if bold else ''}{code}m{text}\x1b[0m"


def _wrap(line: str, width: int) -> str:
    """A line folded to ``width`` columns, continuation lines indented under it."""
    if len(line) <= width:
        return line
    indent = " " * (len(line) - len(line.lstrip(" ")) + 2)
    return "\n".join(
        textwrap.wrap(
            line,
            width,
            subsequent_indent=indent,
            break_on_hyphens=False,
            break_long_words=True,
        )
    )


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 1)] + "~"


def _check_cell(r: RuleResult) -> str:
    """What was measured against what: ``D0.035cc[Gy] 24.63 <= 14 Gy (1-fraction limit)``;
    for a rule not evaluated, the limit that would have applied (the reason is under the
    table). Doses to 0.01 Gy, long decimals of limits rounded (the JSON keeps them)."""
    measured = measured_text(r)
    limit = round_text(r.limit) if r.limit else ""
    if r.status == "not_evaluated" and not measured:
        if limit:
            return " ".join(x for x in (r.metric, "not measured, limit", limit) if x)
        return r.message
    if r.metric:
        # The metric names the unit ("D2%[Gy] 4.22 <= 45 Gy"): it is not repeated.
        number = measured.split(" ")[0] if measured and "[" in r.metric else measured
        return " ".join(x for x in (r.metric, number or "-", limit) if x)
    if limit:
        return f"{measured} ({limit})" if measured else limit
    return measured or r.message


def _rule_table(result: CheckResult, width: int, colour: bool) -> list[str]:
    """One row per result, fitted to ``width``: long rule ids and structure names are cut
    (with ``~``; failing rules are spelled out in full below the table), the CHECK column
    wraps under itself."""
    rows = [
        (_MARK[r.status], r.id, r.structure or "-", _check_cell(r), r.status)
        for r in result.results
    ]
    head = ("STATUS", "RULE", "STRUCTURE", "CHECK")
    natural = [max([len(head[i])] + [len(row[i]) for row in rows]) for i in range(3)]
    rule_w = min(natural[1], max(16, width // 4))
    structure_w = min(natural[2], max(10, width // 6))
    widths = [natural[0], rule_w, structure_w]
    check_x = sum(widths) + 2 * len(widths)
    check_w = max(width - check_x, 20)
    out = []
    for i, row in enumerate([(*head, ""), *rows]):
        cells = [_cut(row[k], widths[k]).ljust(widths[k]) for k in range(3)]
        wrapped = textwrap.wrap(row[3], check_w, break_on_hyphens=False) or [""]
        if colour and i > 0:
            cells[0] = _paint(cells[0], _STATUS_COLOUR[row[4]])
        out.append(("  ".join(cells) + "  " + wrapped[0]).rstrip())
        out += [" " * check_x + part for part in wrapped[1:]]
    return out
