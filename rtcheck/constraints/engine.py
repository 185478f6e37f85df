"""Evaluating a protocol on a loaded export: facts first, then one result per rule.

Every rule gives a result with a status: ``pass``, ``minor`` (within the acceptable
variation), ``major`` (beyond it) or ``not_evaluated`` (with the reason). The verdict is
``fail`` when any result is major (or minor under ``strict``), ``error`` when something
could not be evaluated (a plan with an unknown part cannot pass), else ``pass``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from rtcheck.analysis import (
    ambiguous_contours,
    default_threads,
    fallback_thickness,
    in_threads,
    roi_dvh,
)
from rtcheck.constraints import radiobiology
from rtcheck.constraints.metrics import Metric
from rtcheck.constraints.protocol import (
    BUILTIN_FACTS,
    CountRule,
    CoverageRule,
    DoseRegionSpec,
    DoseVolumeRule,
    FractionationRule,
    GeometryRule,
    IntegrityRule,
    Limit,
    PlanQualityRule,
    Protocol,
    RadiobiologyRule,
    Requirement,
    RoleType,
    Rule,
    ScheduleFact,
    TargetVolumesRule,
)
from rtcheck.constraints.registry import Choice, require_external_beam
from rtcheck.constraints.structures import RoleMatch, match_roles
from rtcheck.constraints.targets import (
    TargetInfo,
    find_elective_volumes,
    parse_target_name,
)
from rtcheck.dicom_io import PlanExport, Roi
from rtcheck.dvh import DVH
from rtcheck.errors import EvaluationError
from rtcheck.geometry import Distance, structure_distance
from rtcheck.prescription import Prescription, resolve_prescription

if TYPE_CHECKING:
    from rtcheck.plan_quality import QualityScan

PASS, MINOR, MAJOR, NOT_EVALUATED = "pass", "minor", "major", "not_evaluated"

#: A dose below the prescription in a target's name is its level only when the target's
#: measured median lies within this range of it (an under- or over-dosed target at its
#: own level still shows within it; a name carrying a dose per fraction does not).
NAME_LEVEL_MEDIAN_RANGE = (0.85, 1.40)


@dataclass
class RuleResult:
    """The outcome of one rule (for one structure, when a role matches several)."""

    id: str
    kind: str
    status: str
    message: str
    structure: str | None = None
    metric: str | None = None
    measured: float | None = None
    limit: str | None = None
    source: str | None = None


@dataclass
class CheckResult:
    """Everything a report needs: protocol, plan, facts, role matches and results."""

    protocol: Protocol
    export: PlanExport
    roles: RoleMatch
    facts: dict[str, Any]
    results: list[RuleResult]
    skipped: list[dict[str, str]]
    warnings: list[str]
    strict: bool = False
    unmatched_rois: list[str] = field(default_factory=list)
    between_planes: str = "shape"
    prescription: Prescription | None = None
    prescription_problem: str = ""
    #: How ``--protocol auto`` chose the protocol (None when it was named).
    selection: Choice | None = None
    #: The DVHs the check computed, by ROI name, and why an ROI has none.
    dvhs: dict[str, DVH] = field(default_factory=dict)
    dvh_problems: dict[str, str] = field(default_factory=dict)
    #: When the check ran (UTC).
    checked_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    #: The planning system's DVHs (RTDOSE DVHSequence) beside rtcheck's, per ROI.
    tps_comparison: list[dict[str, Any]] = field(default_factory=list)

    @property
    def dose_rules_evaluated(self) -> bool:
        """True when at least one dose rule (dose-volume or dose coverage) gave a result.

        A protocol with dose rules cannot pass a plan on which none of them could be
        applied (every structure unmatched, for instance): that is not a checked plan.
        """
        has_dose_rules = any(
            isinstance(r, DoseVolumeRule) or (isinstance(r, CoverageRule) and r.metric)
            for r in self.protocol.rules
        )
        if not has_dose_rules:
            return True
        return any(
            r.kind in ("dose_volume", "coverage")
            and r.metric is not None
            and r.status != NOT_EVALUATED
            for r in self.results
        )

    @property
    def verdict(self) -> str:
        """``pass``, ``fail`` or ``error`` (see the module docstring)."""
        statuses = {r.status for r in self.results}
        if MAJOR in statuses or (self.strict and MINOR in statuses):
            return "fail"
        if NOT_EVALUATED in statuses or not self.dose_rules_evaluated:
            return "error"
        return "pass"

    @property
    def errors(self) -> list[str]:
        """Why the plan could not be fully evaluated, one line per problem."""
        out = [f"{r.id}: {r.message}" for r in self.results if r.status == NOT_EVALUATED]
        if not self.dose_rules_evaluated:
            unmatched = ", ".join(self.unmatched_rois) or "none"
            out.append(
                "no dose rule of the protocol could be applied (no ROI matched their "
                f"structures; ROIs not matched to any role: {unmatched}): the plan was not "
                "checked; name the structures with --aliases"
            )
        return out


@dataclass
class _Context:
    export: PlanExport
    protocol: Protocol
    roles: RoleMatch
    rois: dict[str, Roi]
    facts: dict[str, Any] = field(default_factory=dict)
    fact_values: dict[str, str | float | None] = field(default_factory=dict)
    fact_reasons: dict[str, str] = field(default_factory=dict)
    dvhs: dict[int, DVH | str] = field(default_factory=dict)
    #: DVHs computed ahead (:meth:`prefetch`), not yet asked for: by ROI number, the DVH
    #: or the ValueError that said why there is none.
    ahead: dict[int, DVH | ValueError] = field(default_factory=dict)
    #: DVHs computed at once by :meth:`prefetch` (None: :func:`rtcheck.analysis.default_threads`).
    threads: int | None = None
    distances: dict[tuple[str, str], Distance | str] = field(default_factory=dict)
    #: Plan-quality scans running alongside the DVHs (:func:`_scan_quality_ahead`), by
    #: the roles of their targets and body, until a rule with those roles takes them.
    quality_ahead: dict[tuple[str, str | None], Future[_QualityScan | str]] = field(
        default_factory=dict
    )
    notes: list[str] = field(default_factory=list)
    targets: list[TargetInfo] = field(default_factory=list)
    between_planes: str = "shape"
    rx: Prescription | None = None
    rx_problem: str = "no prescription"

    def dvh_of(self, roi: Roi) -> DVH | str:
        """The DVH of an ROI, or why there is none (cached by ROI number)."""
        if roi.number not in self.dvhs:
            if not roi.planes:
                what = (
                    "no contour with an area"
                    if roi.geometric_type == "CLOSED_PLANAR"
                    else "no contours"
                )
                self.dvhs[roi.number] = f"ROI '{roi.name}' has {what}"
            else:
                outcome = self.ahead.pop(roi.number, None)
                if outcome is None:
                    outcome = self._dvh_or_error(roi)
                if isinstance(outcome, ValueError):
                    self.dvhs[roi.number] = f"ROI '{roi.name}': {outcome}"
                else:
                    dvh = outcome
                    self.dvhs[roi.number] = (
                        f"ROI '{roi.name}': {ambiguous_contours(dvh)}"
                        if dvh.ambiguous_planes
                        else dvh
                    )
                    self.notes.extend(f"ROI '{roi.name}': {n}" for n in dvh.notes)
        return self.dvhs[roi.number]

    def _dvh_or_error(self, roi: Roi) -> DVH | ValueError:
        """The DVH of an ROI, or the ValueError that says why there is none."""
        try:
            return roi_dvh(self.export, roi, self.between_planes)
        except ValueError as exc:
            return exc

    def prefetch(self, rois: Iterable[Roi]) -> None:
        """Compute the DVHs of ``rois`` ahead of use, several at once (see
        :func:`rtcheck.analysis.in_threads`).

        :meth:`dvh_of` still takes each in the order the checks ask for it, with its
        notes, so the result is the same as without; only the time differs.
        """
        todo: dict[int, Roi] = {}
        for roi in rois:
            if roi.planes and roi.number not in self.dvhs and roi.number not in self.ahead:
                todo.setdefault(roi.number, roi)
        if len(todo) < 2:  # nothing to overlap: computed when asked for
            return
        chosen = list(todo.values())
        for roi, outcome in zip(
            chosen, in_threads(self._dvh_or_error, chosen, self.threads), strict=True
        ):
            self.ahead[roi.number] = outcome

    def dvh(self, name: str) -> DVH | str:
        """The DVH of the ROI filling a role (names of matched ROIs are unique)."""
        return self.dvh_of(self.rois[name])

    def distance(self, a: str, b: str) -> Distance | str:
        """Minimum 3-D distance between two ROIs, or why it cannot be measured."""
        key = (a, b) if a <= b else (b, a)
        if key not in self.distances:
            positions = self.export.structures.slice_positions
            try:
                self.distances[key] = structure_distance(
                    self.rois[a].planes,
                    self.rois[b].planes,
                    slice_positions_a=positions,
                    slice_positions_b=positions,
                    single_plane_thickness=fallback_thickness(self.export),
                )
            except ValueError as exc:
                self.distances[key] = f"distance between {a} and {b} not measurable: {exc}"
        return self.distances[key]

    def target_level(self, name: str) -> tuple[float | None, str]:
        """The dose level (Gy) of target ROI ``name`` and where it came from.

        In this order: the plan's TARGET dose reference for that ROI (by Referenced ROI
        Number or by description); the dose in its name (``PTV_5400``, ``PTV54``,
        ``PTV_54Gy``); a level word (``PTV_Low``) with the protocol's ``target_levels``;
        else the prescription. None (with the reason) without a prescription, for a level
        word the protocol does not give, for a name above the prescription, and for a
        name below it in a plan of several fraction groups (a sequential boost names its
        phases: ``PTV3_6 Gy`` is the third phase's dose, not the target's level).
        """
        roi = self.rois.get(name)
        plan = self.export.plan
        key = name.casefold().strip()
        if plan is not None and roi is not None:
            for ref in plan.dose_references:
                if ref.type != "TARGET" or not ref.prescription_gy:
                    continue
                if ref.roi_number == roi.number or ref.description.casefold().strip() == key:
                    return ref.prescription_gy, (
                        f"the plan's dose reference '{ref.description or name}'"
                    )
        if self.prescription is None:
            return None, self.rx_problem
        parsed = parse_target_name(name)
        groups = len(plan.fraction_groups) if plan is not None else 1
        if parsed is not None and parsed.dose_gy:
            if parsed.dose_gy > self.prescription * (1 + 1e-6):
                return None, (
                    f"the name of {name} says {parsed.dose_gy:g} Gy, above the prescription "
                    f"{self.prescription:g} Gy: its level is not known; check the names and "
                    "the prescription"
                )
            if groups > 1 and parsed.dose_gy < self.prescription * (1 - 1e-6):
                return None, (
                    f"in a plan of {groups} fraction groups the {parsed.dose_gy:g} Gy in the "
                    f"name of {name} may be one phase's dose, not its level over the course: "
                    "give its level with a dose reference for the ROI in the plan"
                )
            if parsed.dose_gy < self.prescription * (1 - 1e-6) and roi is not None:
                problem = self._name_level_problem(roi, parsed.dose_gy)
                if problem:
                    return None, problem
            return parsed.dose_gy, "its name"
        if parsed is not None and parsed.level is not None:
            if parsed.level in self.protocol.target_levels:
                level = self.protocol.target_levels[parsed.level]
                return level, f"the protocol's '{parsed.level}' level"
            if parsed.level != "high":
                return None, (
                    f"the dose level of {name} ('{parsed.level}') is not known: name it "
                    "with its dose (e.g. PTV_5400) or give the protocol's target_levels"
                )
        return self.prescription, "the prescription"

    def _name_level_problem(self, roi: Roi, level: float) -> str:
        """Why a dose below the prescription in ``roi``'s name is not its level, or "".

        A name can carry a dose per fraction (``PTV_18Gy`` in 3 x 18 Gy) or a phase's dose
        rather than the target's level; judged at it, a cold target would pass. The name
        is believed only when the target's measured median dose agrees with it
        (:data:`NAME_LEVEL_MEDIAN_RANGE` of it) and it is not the dose per fraction.
        """
        per_fraction = self.dose_per_fraction
        if per_fraction is not None and abs(level - per_fraction) <= 0.01 * per_fraction:
            return (
                f"the {level:g} Gy in the name of {roi.name} is the dose per fraction, not a "
                "level of the course: its level is not known"
            )
        dvh = self.dvh_of(roi)
        if not isinstance(dvh, DVH) or not dvh.complete or not dvh.volume_inside_cc > 0:
            return (
                f"the {level:g} Gy in the name of {roi.name} cannot be checked against its "
                "measured dose (no complete DVH): its level is not known"
            )
        median = dvh.dose_at_volume(dvh.volume_inside_cc / 2)
        low, high = NAME_LEVEL_MEDIAN_RANGE
        if not low * level <= median <= high * level:
            return (
                f"the name of {roi.name} says {level:g} Gy but its measured median dose is "
                f"{median:.4g} Gy ({100 * median / level:.0f} % of it, outside "
                f"{100 * low:.0f}-{100 * high:.0f} %): the name is not its level (a dose per "
                "fraction or a phase's dose?); give its level with a dose reference in the plan"
            )
        return ""

    def reference_dose(self, role: str, name: str) -> tuple[float | None, str]:
        """What a '%' dose of ROI ``name`` filling ``role`` is relative to, and a note.

        A target is judged at its own level (:meth:`target_level`); every other structure
        against the prescription. The note says where a target's level came from when it
        is not the prescription; without a reference dose it is the reason.
        """
        spec = self.protocol.roles.get(role)
        if spec is None or spec.type is not RoleType.TARGET:
            return self.prescription, "" if self.prescription is not None else self.rx_problem
        level, source = self.target_level(name)
        if level is None:
            return None, source
        if source == "the prescription" or (
            self.prescription is not None and abs(level - self.prescription) < 1e-6
        ):
            return level, ""
        return level, f" (% of {level:g} Gy, {name}'s own level from {source})"

    @property
    def name_doses(self) -> bool:
        """Whether doses in target names are target levels: not in a plan of several
        fraction groups (a sequential boost names its phases' doses)."""
        plan = self.export.plan
        return plan is None or len(plan.fraction_groups) <= 1

    @property
    def course_fractions(self) -> int | None:
        """Fractions of the course, for organ limits tabulated by fraction count: the
        prescription's, else the plan's (absolute organ limits need no prescription)."""
        if self.rx is not None and self.rx.fractions:
            return self.rx.fractions
        plan = self.export.plan
        return plan.fractions if plan is not None else None

    @property
    def plan_schedule_problem(self) -> str | None:
        """Why the course has no schedule (fractions and prescription), if so."""
        if self.rx is None:
            return self.rx_problem
        if not self.rx.fractions:
            return "the plan gives no number of fractions (Number of Fractions Planned)"
        return None

    @property
    def fractions(self) -> int | None:
        """Fractions of the course (every fraction group), when the schedule is known."""
        if self.plan_schedule_problem is not None or self.rx is None:
            return None
        return self.rx.fractions

    @property
    def dose_per_fraction(self) -> float | None:
        """Mean dose per fraction of the course, when the schedule is known."""
        if self.plan_schedule_problem is not None or self.rx is None:
            return None
        return self.rx.dose_per_fraction_gy

    @property
    def prescription(self) -> float | None:
        """Total prescribed dose (Gy): the plan's, else the one given; never derived."""
        return self.rx.total_gy if self.rx is not None else None


def check_plan(
    export: PlanExport,
    protocol: Protocol,
    aliases: Mapping[str, Sequence[str]] | None = None,
    *,
    strict: bool = False,
    between_planes: str = "shape",
    prescription: tuple[float, int] | None = None,
    selection: Choice | None = None,
    threads: int | None = None,
) -> CheckResult:
    """Evaluate ``protocol`` on ``export``.

    Parameters
    ----------
    export
        A loaded export (plan, dose and structures).
    protocol
        A loaded protocol.
    aliases
        Institution alias patterns by role, added to the protocol's.
    strict
        Minor deviations fail the plan too.
    between_planes
        Structure model between contour planes for the DVHs, ``"slab"`` or ``"shape"``
        (see :func:`rtcheck.dvh.compute_dvh`).
    prescription
        ``(total Gy, fractions)`` given by the user, used when the plan states no
        prescription (see :mod:`rtcheck.prescription`).
    selection
        How ``--protocol auto`` chose ``protocol``, for the report.
    threads
        DVHs computed at once (:func:`rtcheck.analysis.in_threads`; None: as many as
        the CPUs allow, at most 2). The result is the same for any number.

    Raises
    ------
    InputError
        For a brachytherapy plan: the protocols are for external-beam plans.
    """
    require_external_beam(export)
    checked_at = datetime.now(UTC)
    plan = export.plan
    rx, rx_warnings, rx_problem = resolve_prescription(plan, prescription)
    counts = Counter(r.name for r in export.structures.rois)
    duplicated = {name for name, n in counts.items() if n > 1}
    rois = {r.name: r for r in export.structures.rois if r.name not in duplicated}
    roles = match_roles(
        protocol,
        [r.name for r in export.structures.rois],
        aliases,
        no_volume={r.name: _no_volume(r) for r in export.structures.rois if not r.planes},
    )
    warnings: list[str] = []
    for name in sorted(duplicated):
        numbers = ", ".join(str(r.number) for r in export.structures.rois if r.name == name)
        warnings.append(
            f"{counts[name]} ROIs are named '{name}' (ROI numbers {numbers}): a role matching "
            "that name cannot tell which is meant, so its rules are not evaluated"
        )
    for role, names in list(roles.matched.items()):
        if any(n in duplicated for n in names):
            roles.ambiguous[role] = names
            del roles.matched[role]
    ctx = _Context(
        export,
        protocol,
        roles,
        rois,
        between_planes=between_planes,
        rx=rx,
        rx_problem=rx_problem,
        threads=threads,
    )
    warnings.extend(rx_warnings)
    for role, names in roles.ambiguous.items():
        warnings.append(
            f"role {role}: several ROIs match ({', '.join(names)}); name one with "
            "an institution alias file (--aliases)"
        )
    for names in roles.matched.values():
        for name in names:
            ctx.notes.extend(f"ROI '{name}': {n}" for n in rois[name].notes)
    # The DVHs the facts and the unconditional rules need, several at once; then those
    # of the rules the facts make apply.
    _plan_facts(ctx)
    _scan_quality_ahead(ctx)
    ctx.prefetch(_dvhs_wanted(ctx, conditional=False))
    _facts(ctx)
    ctx.prefetch(_dvhs_wanted(ctx, conditional=True))
    results: list[RuleResult] = []
    skipped: list[dict[str, str]] = []
    for rule in protocol.rules:
        absent = _absent_optional_roles(ctx, rule)
        if absent:
            patterns = "; ".join(
                f"{r}: {', '.join((*protocol.roles[r].names, *protocol.roles[r].aliases))}"
                for r in absent
            )
            skipped.append(
                {
                    "id": rule.id,
                    "reason": f"no ROI matched optional role(s) {patterns}",
                    "absent_roles": ", ".join(absent),
                }
            )
            continue
        applies, reason = _applies(ctx, rule)
        if applies is False:
            skipped.append({"id": rule.id, "reason": reason})
            continue
        if applies is None:
            results.append(
                _result(
                    rule,
                    NOT_EVALUATED,
                    f"cannot tell whether the rule applies: {reason}",
                    metric=_rule_metric(rule),
                    limit=_would_apply(ctx, rule, rule.id),
                )
            )
            continue
        for result in _evaluate(ctx, rule):
            if result.status == NOT_EVALUATED and not result.limit:
                result.limit = _would_apply(ctx, rule, result.id)  # what was not checked
            results.append(result)
    matched = {n for names in (*roles.matched.values(), *roles.ambiguous.values()) for n in names}
    unmatched = [r.name for r in export.structures.rois if r.name not in matched]
    tps = _tps_comparison(ctx)
    warnings.extend(dict.fromkeys(ctx.notes))
    by_number = {r.number: r for r in export.structures.rois}
    return CheckResult(
        protocol,
        export,
        roles,
        ctx.facts,
        results,
        skipped,
        warnings,
        strict,
        unmatched,
        between_planes,
        rx,
        rx_problem,
        selection,
        dvhs={
            by_number[n].name: d
            for n, d in ctx.dvhs.items()
            if isinstance(d, DVH) and by_number[n].name not in duplicated
        },
        dvh_problems={
            by_number[n].name: d
            for n, d in ctx.dvhs.items()
            if isinstance(d, str) and by_number[n].name not in duplicated
        },
        checked_at=checked_at,
        tps_comparison=tps,
    )


def _tps_comparison(ctx: _Context) -> list[dict[str, Any]]:
    """The planning system's DVHs beside rtcheck's, for every ROI it gives one for."""
    from rtcheck.tps_dvh import compare_dvh

    rois = {r.number: r for r in ctx.export.structures.rois}
    out: list[dict[str, Any]] = []
    for tps in ctx.export.dose.tps_dvhs:
        roi = rois.get(tps.roi_number)
        entry: dict[str, Any] = {
            "roi_number": tps.roi_number,
            "name": roi.name if roi is not None else None,
        }
        ours = ctx.dvh_of(roi) if roi is not None else "no ROI has this number"
        if isinstance(ours, str):
            entry.update(rows=[], notes=[f"not compared: {ours}"])
        else:
            entry.update(compare_dvh(tps, ours, ctx.prescription))
        out.append(entry)
    return out


def _no_volume(roi: Roi) -> str:
    """What an ROI without a volume is, for the report."""
    if roi.geometric_type == "POINT":
        return "POINT ROI"
    if roi.geometric_type == "CLOSED_PLANAR":
        return "no contour with an area"
    return "no contours"


def _dvhs_wanted(ctx: _Context, *, conditional: bool) -> list[Roi]:
    """ROIs whose DVHs the check will ask for, to compute ahead (:meth:`_Context.prefetch`).

    ``conditional=False``: the targets (the facts read their median dose), the ROIs the
    planning system gives DVHs for (compared in the report) and the structures of the
    DVH-based rules that apply whatever the facts, or that apply by the facts the plan
    states (:func:`_plan_facts`: e.g. ``when: {fractions: 3}``). ``conditional=True``:
    the structures of the DVH-based rules with ``when``/``unless`` that apply, once the
    facts are known. A guess too many costs time only; one too few is computed when
    asked for.
    """
    out: list[Roi] = []
    if not conditional:
        for roi in ctx.export.structures.rois:
            parsed = parse_target_name(roi.name)
            if parsed is not None and parsed.is_target:
                out.append(roi)
        by_number = {r.number: r for r in ctx.export.structures.rois}
        out.extend(
            by_number[t.roi_number] for t in ctx.export.dose.tps_dvhs if t.roi_number in by_number
        )
    for rule in ctx.protocol.rules:
        if not isinstance(rule, DoseVolumeRule | CoverageRule | PlanQualityRule):
            continue
        conditional_rule = rule.when is not None or rule.unless is not None
        if conditional_rule and _applies(ctx, rule)[0] is not True:
            continue  # not yet known to apply (or known not to)
        for name in ctx.roles.matched.get(rule.structure, []):
            if name in ctx.rois:
                out.append(ctx.rois[name])
    return out


def _absent_optional_roles(ctx: _Context, rule: Rule) -> list[str]:
    """The optional roles of a rule that no ROI fills (nor resembles): the rule is
    skipped, not evaluated."""
    roles = ctx.roles
    return [
        r
        for r in _rule_roles(rule)
        if ctx.protocol.roles[r].optional and r in roles.missing and r not in roles.candidates
    ]


def _rule_roles(rule: Rule) -> list[str]:
    """The structure roles a rule refers to."""
    if isinstance(rule, DoseVolumeRule | CountRule):
        return [rule.structure]
    if isinstance(rule, GeometryRule):
        return [rule.structure, *rule.others]
    if isinstance(rule, CoverageRule):
        return [rule.structure] + ([rule.inside] if rule.inside else [])
    if isinstance(rule, PlanQualityRule):
        return [rule.structure] + ([rule.body] if rule.body else [])
    return []


# -- facts -------------------------------------------------------------------------------


def _plan_facts(ctx: _Context) -> None:
    """The facts the plan states (intent, fractions): known before any DVH, so the DVHs
    of rules that depend on them only can be computed with the first ones."""
    plan = ctx.export.plan
    intent = (plan.intent or "").upper() if plan is not None else ""
    ctx.fact_values["intent"] = intent or None
    if not intent:
        ctx.fact_reasons["intent"] = "the plan gives no intent (PlanIntent)"
    n = ctx.course_fractions
    ctx.fact_values["fractions"] = n if n else None
    if n is None:
        ctx.fact_reasons["fractions"] = (
            "the plan gives no number of fractions (Number of Fractions Planned)"
        )


def _facts(ctx: _Context) -> None:
    """The remaining facts (after :func:`_plan_facts`): dose per fraction, proximity,
    BED/EQD2 and the targets' levels, which read the targets' DVHs."""
    per_fraction, why = _highest_dose_per_fraction(ctx)
    ctx.fact_values["dose_per_fraction_gy"] = per_fraction
    if per_fraction is None:
        ctx.fact_reasons["dose_per_fraction_gy"] = why

    distances: dict[str, float] = {}
    for fact in ctx.protocol.facts:
        if isinstance(fact, ScheduleFact):
            continue  # after the targets' doses are known, below
        value, reason = _proximity(ctx, fact.source, fact.targets, fact.within_mm, distances)
        ctx.fact_values[fact.name] = None if value is None else (fact.near if value else fact.far)
        if value is None:
            ctx.fact_reasons[fact.name] = reason
            ctx.facts[f"{fact.name}_reason"] = reason  # why it is unknown, for the reports
        ctx.facts[fact.name] = ctx.fact_values[fact.name]
    ctx.facts["distances_mm"] = distances

    bed: dict[str, float] = {}
    eqd2: dict[str, float] = {}
    if ctx.rx is not None and ctx.fractions:
        alpha_betas = {10.0} | {
            r.alpha_beta for r in ctx.protocol.rules if isinstance(r, RadiobiologyRule)
        }
        for ab in sorted(alpha_betas):
            b, e = ctx.rx.bed(ab), ctx.rx.eqd2(ab)
            if b is not None and e is not None:
                bed[f"{ab:g}"] = round(b, 3)
                eqd2[f"{ab:g}"] = round(e, 3)
    ctx.facts["bed_gy"] = bed
    ctx.facts["eqd2_gy"] = eqd2

    targets = []
    for roi in ctx.export.structures.rois:
        parsed = parse_target_name(roi.name)
        if parsed is None or not parsed.is_target or not roi.planes:
            continue
        dvh = ctx.dvh_of(roi)
        median = None
        if isinstance(dvh, DVH) and dvh.complete and dvh.volume_inside_cc > 0:
            median = dvh.dose_at_volume(dvh.volume_inside_cc / 2)
        elif isinstance(dvh, DVH):
            ctx.notes.append(
                f"target '{roi.name}' lies partly outside the dose grid: its measured median "
                "dose is not used to look for elective volumes"
            )
        targets.append(TargetInfo(name=roi.name, median_gy=median))
    ctx.targets = targets
    for fact in ctx.protocol.facts:
        if isinstance(fact, ScheduleFact):
            _schedule_fact(ctx, fact, per_fraction, why)
    ctx.facts["targets"] = []
    for t in targets:
        level, source = ctx.target_level(t.name)
        ctx.facts["targets"].append(
            {
                "name": t.name,
                "median_gy": None if t.median_gy is None else round(t.median_gy, 3),
                "level_gy": level,
                "level_from": source if level is not None else None,
            }
        )
    fraction = next(
        (r.median_fraction for r in ctx.protocol.rules if isinstance(r, TargetVolumesRule)), 0.9
    )
    suspects = find_elective_volumes(
        targets, ctx.prescription, dose_fraction=fraction, name_doses=ctx.name_doses
    )
    ctx.facts["elective_volumes"] = [dict(s.as_dict()) for s in suspects]
    count_rules = [r for r in ctx.protocol.rules if isinstance(r, CountRule)]
    if count_rules:
        ctx.facts["metastasis_count"] = len(ctx.roles.matched.get(count_rules[0].structure, []))
    else:
        ctx.facts["metastasis_count"] = None


def _proximity(
    ctx: _Context,
    source: str,
    targets: Sequence[str],
    within_mm: float,
    distances: dict[str, float],
) -> tuple[bool | None, str]:
    """Whether any ROI of ``source`` lies within ``within_mm`` of any ROI of ``targets``.

    A target role the protocol marks optional counts only when contoured: when no ROI
    fills it (and none resembles it), its distance is not measured and a note says so,
    so the answer can still be "far". A missing required role, or an optional one with a
    lookalike ROI, leaves the answer unknown.
    """
    sources = ctx.roles.matched.get(source, [])
    if not sources:
        return None, f"no ROI matches role {source}"
    near = False
    missing: list[str] = []
    not_contoured: list[str] = []
    problems: list[str] = []
    for target in targets:
        names = ctx.roles.matched.get(target, [])
        if not names:
            spec = ctx.protocol.roles[target]
            if spec.optional and not ctx.roles.candidates.get(target):
                not_contoured.append(target)
            else:
                missing.append(target)
            continue
        for other in names:
            measured = [ctx.distance(s, other) for s in sources]
            problems.extend(m for m in measured if isinstance(m, str))
            found = [m.mm for m in measured if isinstance(m, Distance)]
            if not found:
                continue
            best = min(found)
            distances[other] = round(best, 2)
            near = near or best <= within_mm
    if near:
        return True, ""
    if problems:
        return None, problems[0]
    if missing:
        return None, (
            f"no ROI for {', '.join(missing)}: the target could still lie within "
            f"{within_mm:g} mm of it"
        )
    if not_contoured:
        ctx.notes.append(
            f"{', '.join(not_contoured)} not contoured: the distance from {source} to "
            f"{'it' if len(not_contoured) == 1 else 'them'} was not measured, and counts "
            f"for nothing in the {within_mm:g} mm proximity"
        )
    return False, ""


def _highest_dose_per_fraction(ctx: _Context) -> tuple[float | None, str]:
    """The course's highest dose per fraction (Gy): of its fraction groups, from the
    prescription; with the reason when it is unknown."""
    if ctx.plan_schedule_problem is not None or ctx.rx is None:
        return None, ctx.plan_schedule_problem or "the plan states no prescription"
    plan = ctx.export.plan
    if plan is not None and len(plan.fraction_groups) > 1:
        if not ctx.rx.groups:
            return None, (
                "the dose per fraction of each of the plan's fraction groups is unknown "
                "(their beam doses are not stated at one common point)"
            )
        return max(d for _, d in ctx.rx.groups), ""
    return ctx.rx.dose_per_fraction_gy, ""


def _schedule_fact(ctx: _Context, fact: ScheduleFact, per_fraction: float | None, why: str) -> None:
    """Evaluate a ``schedule`` fact on the course, with its evidence in the facts.

    The dose per fraction is the prescription's (the highest of the fraction groups), or
    what a target receives if that is over 1.25 times more: a simultaneous boost the
    prescription does not state (a GTV at 8 Gy per fraction in a 4 Gy plan) is the course's
    dose per fraction too. A target's is its measured median over the course's fractions
    (within about 110 % of the prescription in a conventional plan, 125 % in SABR).
    """
    n, total = ctx.fractions, ctx.prescription
    if per_fraction is None or n is None or total is None:
        ctx.fact_values[fact.name] = None
        ctx.fact_reasons[fact.name] = f"{fact.name} is unknown: {why}"
        ctx.facts[fact.name] = None
        ctx.facts[f"{fact.name}_reason"] = ctx.fact_reasons[fact.name]
        return
    source = "the prescription"
    measured = [(t.median_gy / n, t.name) for t in ctx.targets if t.median_gy is not None]
    if measured:
        hottest, name = max(measured)
        if hottest > per_fraction * 1.25:
            per_fraction, source = hottest, f"{name}'s median dose"
    course = (
        f"{n} fraction{'' if n == 1 else 's'} of up to {per_fraction:.4g} Gy ({source}), "
        f"{total:.4g} Gy prescribed"
    )
    for s in fact.schedules:
        if (
            s.fractions.contains(n)
            and (s.dose_per_fraction_gy is None or s.dose_per_fraction_gy.contains(per_fraction))
            and (s.total_gy is None or s.total_gy.contains(total))
        ):
            value, reason = fact.match, f"{course}: within {s}"
            break
    else:
        ranges = "; ".join(str(s) for s in fact.schedules)
        value, reason = fact.otherwise, f"{course}: outside {ranges}"
    ctx.fact_values[fact.name] = value
    ctx.fact_reasons[fact.name] = reason
    ctx.facts[fact.name] = value
    ctx.facts[f"{fact.name}_reason"] = reason


def _applies(ctx: _Context, rule: Rule) -> tuple[bool | None, str]:
    """Whether a rule applies to the plan: True, False (with why), or None (unknown).

    ``when`` needs evidence to apply: an unknown fact makes the rule not evaluated.
    ``unless`` needs evidence to skip: an unknown fact leaves the rule applied.
    """
    if rule.unless is not None:
        known: list[tuple[Requirement, str | float]] = []
        for req in rule.unless.required:
            value = ctx.fact_values.get(req.fact)
            if value is not None and req.holds(value):
                known.append((req, value))
        if len(known) == len(rule.unless.required):
            facts = ", ".join(
                f"{req.fact} is {_show(value)}"
                + (
                    f" ({ctx.fact_reasons[req.fact]})"
                    if req.fact not in BUILTIN_FACTS and ctx.fact_reasons.get(req.fact)
                    else ""
                )
                for req, value in known
            )
            return False, f"{facts}; the rule is skipped when {rule.unless}"
    if rule.when is None:
        return True, ""
    for req in rule.when.required:
        value = ctx.fact_values.get(req.fact)
        if value is None:
            return None, ctx.fact_reasons.get(req.fact, f"fact {req.fact} is unknown")
        if not req.holds(value):
            detail = ctx.fact_reasons.get(req.fact, "")
            return False, (
                f"{req.fact} is {_show(value)}, the rule is for {req}"
                + (f" ({detail})" if detail and req.fact not in BUILTIN_FACTS else "")
            )
    return True, ""


def _show(value: str | float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# -- rules -------------------------------------------------------------------------------


def _result(rule: Rule, status: str, message: str, **kwargs: Any) -> RuleResult:
    return RuleResult(
        id=rule.id,
        kind=rule.kind.value,
        status=status,
        message=message,
        source=rule.source,
        **kwargs,
    )


def _evaluate(ctx: _Context, rule: Rule) -> list[RuleResult]:
    if isinstance(rule, FractionationRule):
        return [_fractionation(ctx, rule)]
    if isinstance(rule, RadiobiologyRule):
        return [_radiobiology(ctx, rule)]
    if isinstance(rule, DoseVolumeRule):
        return _dose_volume(ctx, rule)
    if isinstance(rule, GeometryRule):
        return _geometry(ctx, rule)
    if isinstance(rule, TargetVolumesRule):
        out = [_target_volumes(ctx, rule)]
        if rule.dose_region is not None:
            out.append(_elective_dose(ctx, rule, rule.dose_region))
        return out
    if isinstance(rule, CoverageRule):
        return _coverage(ctx, rule)
    if isinstance(rule, CountRule):
        return [_count(ctx, rule)]
    if isinstance(rule, IntegrityRule):
        return _integrity(ctx, rule)
    if isinstance(rule, PlanQualityRule):
        return _plan_quality(ctx, rule)
    raise AssertionError(f"unhandled rule kind {rule.kind}")


def _fractionation(ctx: _Context, rule: FractionationRule) -> RuleResult:
    n, d, total = ctx.fractions, ctx.dose_per_fraction, ctx.prescription
    if n is None or d is None or total is None or ctx.rx is None:
        return _result(rule, NOT_EVALUATED, ctx.plan_schedule_problem or "no schedule")
    schedule = ctx.rx.schedule
    plan = ctx.export.plan
    several = plan is not None and len(plan.fraction_groups) > 1
    # With several fraction groups, every group's dose per fraction must fit the schedule.
    per_fraction = [dg for _, dg in ctx.rx.groups] if several else [d]
    if several and not ctx.rx.groups and any(s.dose_per_fraction_gy for s in rule.schedules):
        return _result(
            rule,
            NOT_EVALUATED,
            "the dose per fraction of each of the plan's fraction groups is unknown (their "
            "beam doses are not stated at one common point), so the schedule's dose per "
            "fraction cannot be checked",
        )
    for s in rule.schedules:
        if (
            s.fractions.contains(n)
            and (
                s.dose_per_fraction_gy is None
                or all(s.dose_per_fraction_gy.contains(x) for x in per_fraction)
            )
            and (s.total_gy is None or s.total_gy.contains(total))
        ):
            return _result(
                rule, PASS, f"{schedule} matches the schedule {s}", measured=total, limit=str(s)
            )
    allowed = "; ".join(str(s) for s in rule.schedules)
    return _result(
        rule,
        MAJOR,
        f"{schedule} is not an allowed schedule ({allowed})",
        measured=total,
        limit=allowed,
    )


def _radiobiology(ctx: _Context, rule: RadiobiologyRule) -> RuleResult:
    rx = ctx.rx
    name = f"{rule.quantity}{rule.alpha_beta:g}"
    if rx is None or ctx.plan_schedule_problem is not None:
        return _result(rule, NOT_EVALUATED, ctx.plan_schedule_problem or "no schedule", metric=name)
    computed = rx.bed(rule.alpha_beta) if rule.quantity == "BED" else rx.eqd2(rule.alpha_beta)
    if computed is None:
        return _result(
            rule,
            NOT_EVALUATED,
            "how the prescription divides between the plan's fraction groups is unknown "
            "(a group gives no beam doses), so its BED cannot be computed",
            metric=name,
        )
    value = computed
    status, limit = _compare(
        value, rule.minimum, rule.maximum, rule.minor_minimum, rule.minor_maximum
    )
    what = {PASS: "meets", MINOR: "is within the acceptable variation of", MAJOR: "does not meet"}[
        status
    ]
    return _result(
        rule,
        status,
        f"{name} = {value:.1f} Gy for {rx.schedule} {what} {limit}",
        metric=name,
        measured=round(value, 3),
        limit=limit,
    )


def _compare(
    value: float,
    low: float | None,
    high: float | None,
    minor_low: float | None,
    minor_high: float | None,
    unit: str = "Gy",
) -> tuple[str, str]:
    parts = []
    if low is not None:
        parts.append(f">= {low:g} {unit}")
    if high is not None:
        parts.append(f"<= {high:g} {unit}")
    limit = " and ".join(parts)
    slack = 1e-9 * max(1.0, abs(value))
    ok_low = low is None or value >= low - slack
    ok_high = high is None or value <= high + slack
    if ok_low and ok_high:
        return PASS, limit
    minor_ok = (ok_low or (minor_low is not None and value >= minor_low - slack)) and (
        ok_high or (minor_high is not None and value <= minor_high + slack)
    )
    if minor_ok:
        variation = [f">= {minor_low:g}" for _ in [0] if not ok_low and minor_low is not None]
        variation += [f"<= {minor_high:g}" for _ in [0] if not ok_high and minor_high is not None]
        return MINOR, f"{limit} (acceptable variation {' '.join(variation)} {unit})"
    return MAJOR, limit


def _resolve_limit(
    ctx: _Context, rule: DoseVolumeRule, limit: Limit | None, *, upper: bool = True
) -> tuple[float | None, str]:
    """The limit for the plan's fractionation, converted with EQD2 where the rule says.

    An upper limit tabulated by fraction count is held at the last tabulated count for
    longer courses, never converted upward.
    """
    if limit is None:
        return None, ""
    n = ctx.course_fractions
    if limit.value is not None:
        if rule.reference_dose_per_fraction_gy is None or rule.alpha_beta is None:
            return limit.value, ""
        if n is None:
            raise EvaluationError(
                "the plan gives no number of fractions for the EQD2 conversion of the limit"
            )
        converted = radiobiology.isoeffective_total_dose(
            limit.value, rule.reference_dose_per_fraction_gy, n, rule.alpha_beta
        )
        return converted, (
            f" ({limit.value:g} Gy in {rule.reference_dose_per_fraction_gy:g} "
            f"Gy fractions, converted to {n} fractions with alpha/beta "
            f"{rule.alpha_beta:g})"
        )
    if n is None:
        raise EvaluationError("the plan gives no number of fractions to pick the limit")
    mixed = _mixed_fraction_sizes(ctx)
    if mixed:
        raise EvaluationError(
            f"the course mixes doses per fraction ({mixed}): a limit tabulated by fraction "
            "count does not apply to it; judge the organ doses biologically (EQD2)"
        )
    table = dict(limit.by_fractions)
    if n in table:
        return table[n], f" ({n}-fraction limit)"
    largest = max(table)
    if upper and n > largest:
        # Never extrapolate upward: the same dose over more fractions is less damaging, so
        # the last tabulated limit is conservative, and the linear-quadratic conversion to
        # more fractions gives limits above published ones (docs/protocols.md).
        return table[largest], (
            f" (the {largest}-fraction limit, held for {n} fractions: limits are never "
            "converted to more fractions than tabulated)"
        )
    if rule.alpha_beta is None:
        raise EvaluationError(
            f"the protocol has no limit for {n} fractions (it tabulates "
            f"{', '.join(str(k) for k in table)}) and gives no alpha/beta to convert one"
        )
    nearest = min(table, key=lambda k: (abs(k - n), k))
    ref_total = table[nearest]
    converted = radiobiology.isoeffective_total_dose(
        ref_total, ref_total / nearest, n, rule.alpha_beta
    )
    note = (
        f" (converted from the {nearest}-fraction limit {ref_total:g} Gy with "
        f"alpha/beta {rule.alpha_beta:g}"
    )
    if upper:
        # Fewer fractions never get a higher upper limit than the next tabulated count.
        above = min((k for k in table if k > n), default=None)
        if above is not None and table[above] < converted:
            return table[above], note + f", held at the {above}-fraction limit)"
    return converted, note + ")"


def _mixed_fraction_sizes(ctx: _Context) -> str:
    """The course's fraction groups (``5 x 2 + 1 x 16 Gy``) when one's dose per fraction is
    over 1.5 times another's (conventional and hypofractionated parts; 1.8 and 2 Gy
    phases are one conventional course), else ""."""
    rx = ctx.rx
    if rx is None or len(rx.groups) < 2:
        return ""
    sizes = [d for _, d in rx.groups]
    if max(sizes) <= 1.5 * min(sizes):
        return ""
    return " + ".join(f"{n} x {d:.4g}" for n, d in rx.groups) + " Gy"


def _dose_volume(ctx: _Context, rule: DoseVolumeRule) -> list[RuleResult]:
    metric = rule.metric
    assert metric is not None
    names, problem = _role_rois(ctx, rule.structure)
    if problem:
        return [
            _result(rule, NOT_EVALUATED, problem, metric=str(metric), limit=_would_apply(ctx, rule))
        ]
    out = []
    for name in names:
        result = _metric_result(ctx, rule, name, metric)
        if result.status == NOT_EVALUATED and result.limit is None:
            result.limit = _would_apply(ctx, rule)  # the limit that would have applied
        out.append(_stand_in_note(ctx, result))
    return out


def _stated(rule: DoseVolumeRule) -> str:
    """A rule's limits as the protocol states them (before any conversion); a limit
    tabulated by fraction count gives each run of equal values once (``50 (30-35 fx)``)."""
    unit = str(rule.metric.output_unit) if rule.metric is not None else ""
    parts = []
    for word, limit in (("<=", rule.maximum), (">=", rule.minimum)):
        if limit is None:
            continue
        if limit.value is not None:
            parts.append(f"{word} {limit.value:g} {unit}")
        else:
            runs: list[tuple[int, int, float]] = []
            for n, v in sorted(limit.by_fractions):
                if runs and runs[-1][2] == v and runs[-1][1] == n - 1:
                    runs[-1] = (runs[-1][0], n, v)
                else:
                    runs.append((n, n, v))
            table = ", ".join(
                f"{v:g} ({a} fx)" if a == b else f"{v:g} ({a}-{b} fx)" for a, b, v in runs
            )
            parts.append(f"{word} {table} {unit}")
    return " and ".join(parts)


def _bounds(low: float | None, high: float | None, unit: str) -> str:
    """``>= low unit and <= high unit``, as :func:`_compare` writes a limit."""
    parts = [
        f"{word} {v:g} {unit}".rstrip() for word, v in ((">=", low), ("<=", high)) if v is not None
    ]
    return " and ".join(parts)


#: The unit of each plan-quality quantity (R100 and R50 are ratios).
_QUALITY_UNIT = {"D2cm": "%", "max_in_target": "mm"}


def _quality_limit(rule: PlanQualityRule, volume_cc: float | None) -> str:
    """The limit a plan-quality rule sets: for a target of ``volume_cc`` when the rule
    tabulates it by volume (without a volume, the table's range)."""
    from rtcheck.plan_quality import limits_by_volume

    unit = _QUALITY_UNIT.get(rule.quantity, "")
    if not rule.table:
        return _bounds(None, rule.maximum, unit)
    if volume_cc is None or not volume_cc > 0:
        values = [row.maximum for row in rule.table]
        return (
            f"{_bounds(None, min(values), '')}-{max(values):g} {unit}".rstrip()
            + f" by target volume ({rule.table[0].volume_cc:g}-{rule.table[-1].volume_cc:g} cc)"
        )
    rows = [(r.volume_cc, r.maximum, r.minor_maximum) for r in rule.table]
    high, _, _ = limits_by_volume(rows, volume_cc)
    return f"{_bounds(None, round(high, 3), unit)} (for {volume_cc:.3g} cc)"


def _rule_metric(rule: Rule) -> str | None:
    """What a rule measures, as its results name it (``D0.035cc[Gy]``, ``BED10``, ``R50``)."""
    if isinstance(rule, DoseVolumeRule | CoverageRule) and rule.metric is not None:
        return str(rule.metric)
    if isinstance(rule, RadiobiologyRule):
        return f"{rule.quantity}{rule.alpha_beta:g}"
    if isinstance(rule, PlanQualityRule):
        return rule.quantity
    return None


def _would_apply(ctx: _Context, rule: Rule, result_id: str = "") -> str | None:
    """The limit a rule would have applied, for a result that could not be evaluated.

    Worded as the rule's evaluated results word it; a dose-volume limit tabulated by
    fraction count or converted with EQD2 is the one for the plan's course when the
    course is known, else the protocol's table. None for a check that states no limit
    (most integrity checks: a plan is approved or not).
    """
    if isinstance(rule, DoseVolumeRule):
        unit = str(rule.metric.output_unit) if rule.metric is not None else ""
        try:
            high, note_high = _resolve_limit(ctx, rule, rule.maximum)
            low, note_low = _resolve_limit(ctx, rule, rule.minimum, upper=False)
        except EvaluationError:
            return _stated(rule) or None
        return (_bounds(low, high, unit) + (note_high or note_low)) or None
    if isinstance(rule, CoverageRule):
        if rule.metric is not None:
            return _bounds(rule.minimum, None, str(rule.metric.output_unit)) or None
        return f"inside {rule.inside}" if rule.inside else None
    if isinstance(rule, PlanQualityRule):
        return _quality_limit(rule, None) or None
    if isinstance(rule, FractionationRule):
        return "; ".join(str(s) for s in rule.schedules) or None
    if isinstance(rule, RadiobiologyRule):
        return _bounds(rule.minimum, rule.maximum, "Gy") or None
    if isinstance(rule, GeometryRule):
        return _bounds(rule.minimum_mm, rule.maximum_mm, "mm") or None
    if isinstance(rule, CountRule):
        return _bounds(rule.minimum, rule.maximum, "") or None
    if isinstance(rule, TargetVolumesRule):
        spec = rule.dose_region
        if result_id == f"{rule.id}.dose" and spec is not None:
            return _region_limit(spec)
        return "no elective nodal volume"
    if isinstance(rule, IntegrityRule) and result_id == f"{rule.id}.prescription_matches_dose":
        return f"median {rule.target_median_percent} % of the prescription"
    return None


def _stand_in_note(ctx: _Context, result: RuleResult) -> RuleResult:
    """Say so in the result when its structure stands in for an uncontoured organ."""
    stand_in = ctx.roles.stand_in_for(result.structure or "")
    if stand_in is not None:
        result.message += f" [{stand_in.note}]"
    return result


def _metric_result(ctx: _Context, rule: DoseVolumeRule, name: str, metric: Metric) -> RuleResult:
    reference, level_note = None, ""
    if metric.needs_prescription:
        reference, level_note = ctx.reference_dose(rule.structure, name)
        if reference is None:
            return _result(rule, NOT_EVALUATED, level_note, structure=name, metric=str(metric))
    dvh = ctx.dvh(name)
    if isinstance(dvh, str):
        return _result(rule, NOT_EVALUATED, dvh, structure=name, metric=str(metric))
    if not dvh.complete:
        return _result(
            rule,
            NOT_EVALUATED,
            f"{dvh.volume_outside_cc:.3g} cc of {name} lies outside the dose grid: "
            "the metric would cover only part of it",
            structure=name,
            metric=str(metric),
        )
    try:
        value = metric.evaluate(dvh, reference)
        high, note_high = _resolve_limit(ctx, rule, rule.maximum)
        low, note_low = _resolve_limit(ctx, rule, rule.minimum, upper=False)
        minor_high, _ = _resolve_limit(ctx, rule, rule.minor_maximum)
        minor_low, _ = _resolve_limit(ctx, rule, rule.minor_minimum, upper=False)
    except EvaluationError as exc:
        return _result(rule, NOT_EVALUATED, str(exc), structure=name, metric=str(metric))
    unit = str(metric.output_unit)
    status, limit = _compare(value, low, high, minor_low, minor_high, unit)
    note = note_high or note_low
    verb = {
        PASS: "within",
        MINOR: "outside the goal but within the variation of",
        MAJOR: "violates",
    }[status]
    return _result(
        rule,
        status,
        f"{name} {metric} = {value:.2f} {unit}: {verb} {limit}{note}{level_note}",
        structure=name,
        metric=str(metric),
        measured=round(value, 4),
        limit=limit + note,
    )


def _role_rois(ctx: _Context, role: str) -> tuple[list[str], str]:
    if role in ctx.roles.ambiguous:
        return [], (
            f"several ROIs match role {role} ({', '.join(ctx.roles.ambiguous[role])}):"
            " name the right one with --aliases"
        )
    names = ctx.roles.matched.get(role, [])
    if not names:
        spec = ctx.protocol.roles[role]
        patterns = ", ".join((*spec.names, *spec.aliases))
        candidates = ctx.roles.candidates.get(role, [])
        if candidates:
            listed = "; ".join(f"{c.roi} ({c.reason})" for c in candidates)
            return [], (
                f"no ROI is {role}; resembling it but not evaluated as it: {listed}; "
                f"contour {role}, or map the ROI with --aliases if it is {role}"
            )
        return [], f"no ROI matches role {role} (looked for {patterns})"
    return names, ""


def _geometry(ctx: _Context, rule: GeometryRule) -> list[RuleResult]:
    sources, problem = _role_rois(ctx, rule.structure)
    if problem:
        return [_result(rule, NOT_EVALUATED, problem)]
    out = []
    for source in sources:
        for role in rule.others:
            others, problem = _role_rois(ctx, role)
            if problem:
                out.append(_result(rule, NOT_EVALUATED, problem, structure=source))
                continue
            for other in others:
                d = ctx.distance(source, other)
                if isinstance(d, str):
                    out.append(_result(rule, NOT_EVALUATED, d, structure=source))
                    continue
                status, limit = _compare(d.mm, rule.minimum_mm, rule.maximum_mm, None, None, "mm")
                out.append(
                    _result(
                        rule,
                        status,
                        f"{source} to {other}: {d.mm:.1f} mm "
                        f"({'overlap' if d.overlap else 'apart'}); limit {limit}",
                        structure=source,
                        metric=f"distance to {other}",
                        measured=round(d.mm, 2),
                        limit=limit,
                    )
                )
    return out


def _target_volumes(ctx: _Context, rule: TargetVolumesRule) -> RuleResult:
    found = find_elective_volumes(
        ctx.targets,
        ctx.prescription,
        dose_fraction=rule.median_fraction,
        name_doses=ctx.name_doses,
    )
    suspects = [(s.name, list(s.reasons)) for s in found]
    if not ctx.facts.get("targets"):
        return _result(rule, NOT_EVALUATED, "no target volumes (GTV/CTV/ITV/PTV) recognised")
    if not suspects:
        return _result(
            rule,
            PASS,
            "no elective (prophylactic) nodal volume found among "
            f"{len(ctx.facts['targets'])} target(s)",
        )
    listing = "; ".join(f"{name}: {', '.join(reasons)}" for name, reasons in suspects)
    return _result(
        rule,
        MAJOR,
        f"elective volume(s) suspected: {listing}",
        structure=", ".join(name for name, _ in suspects),
        measured=len(suspects),
        limit="no elective nodal volume",
    )


def _region_limit(spec: DoseRegionSpec) -> str:
    """The limit of an elective volume seen in the dose (``ID.dose`` results)."""
    return (
        f"<= {spec.max_cc:g} cc at >= {spec.low_percent:g} % of the prescription beyond "
        f"{spec.margin_mm:g} mm of the dose >= {spec.high_percent:g} %"
    )


def _elective_dose(ctx: _Context, rule: TargetVolumesRule, spec: DoseRegionSpec) -> RuleResult:
    """An elective volume seen in the dose, whatever the structures are called."""
    sub = f"{rule.id}.dose"
    rx = ctx.prescription
    limit = _region_limit(spec)
    if rx is None:
        reason = ctx.plan_schedule_problem or ctx.rx_problem
        return RuleResult(
            sub, rule.kind.value, NOT_EVALUATED, f"{reason}: the dose levels are unknown"
        )
    from rtcheck.dose_regions import direction_words, intermediate_dose

    high, low = rx * spec.high_percent / 100, rx * spec.low_percent / 100
    found = intermediate_dose(ctx.export.dose.grid, high, low, spec.margin_mm)
    if found.high_cc == 0:
        return RuleResult(
            sub,
            rule.kind.value,
            NOT_EVALUATED,
            f"no dose reaches {spec.high_percent:g} % of the prescription ({high:.4g} Gy): "
            "the gross disease's dose cannot be located",
        )
    regions: list[dict[str, Any]] = []
    for region in found.regions:
        if region.volume_cc < 0.5:
            continue
        centre = found.high_centroid_mm or region.centroid_mm
        offset = (
            region.centroid_mm[0] - centre[0],
            region.centroid_mm[1] - centre[1],
            region.centroid_mm[2] - centre[2],
        )
        regions.append(
            {
                "volume_cc": round(region.volume_cc, 1),
                "median_gy": round(region.median_gy, 2),
                "median_percent": round(100 * region.median_gy / rx, 1),
                "max_gy": round(region.max_gy, 2),
                "centroid_mm": [round(c, 1) for c in region.centroid_mm],
                "z_range_mm": [round(z, 1) for z in region.z_range_mm],
                "location": f"{direction_words(offset)} of the high dose's centre",
                "at_grid_edge": region.at_grid_edge,
                "rois": _rois_holding(ctx, region.points),
            }
        )
    ctx.facts["elective_dose"] = {
        "high_gy": round(high, 3),
        "low_gy": round(low, 3),
        "margin_mm": spec.margin_mm,
        "high_cc": round(found.high_cc, 1),
        "total_cc": round(found.total_cc, 1),
        "regions": regions,
    }
    total = found.total_cc
    if total <= spec.max_cc and found.at_grid_edge:
        return RuleResult(
            sub,
            rule.kind.value,
            NOT_EVALUATED,
            f"an intermediate dose ({low:.4g} Gy or more) away from the high dose reaches the "
            "edge of the dose grid: the grid was cut inside it, and how far it extends beyond "
            f"cannot be seen ({total:.1f} cc inside the grid); export the dose on a grid that "
            "covers it",
            measured=round(total, 2),
            limit=limit,
        )
    if total <= spec.max_cc:
        return RuleResult(
            sub,
            rule.kind.value,
            PASS,
            f"{total:.1f} cc receive {low:.4g} Gy or more beyond {spec.margin_mm:g} mm of the "
            f"high dose (>= {high:.4g} Gy): no elective volume in the dose",
            measured=round(total, 2),
            limit=limit,
        )

    def where(r: dict[str, Any]) -> str:
        """A region's dose and place, said once (its volume is said by the caller)."""
        held = (
            "; " + ", ".join(f"{x['percent']:.0f} % of it in {x['name']}" for x in r["rois"])
            if r["rois"]
            else "; in no contoured structure"
        )
        return (
            f"a median {r['median_gy']:.1f} Gy ({r['median_percent']:.0f} %), {r['location']}"
            + held
            + ("; it reaches the edge of the dose grid" if r["at_grid_edge"] else "")
        )

    if len(regions) == 1:
        described = f", at {where(regions[0])}"
    else:
        described = f", in {len(regions)} regions: " + " | ".join(
            f"{r['volume_cc']:.1f} cc at {where(r)}" for r in regions[:3]
        )
    return RuleResult(
        sub,
        rule.kind.value,
        MAJOR,
        f"intermediate dose away from the gross disease (found in the dose, whatever the "
        f"structures are called): {total:.1f} cc receive {low:.4g} Gy or more beyond "
        f"{spec.margin_mm:g} mm of the high dose (>= {high:.4g} Gy){described}",
        structure=", ".join(dict.fromkeys(x["name"] for r in regions for x in r["rois"])) or None,
        measured=round(total, 2),
        limit=limit,
    )


def _rois_holding(ctx: _Context, points: Any) -> list[dict[str, Any]]:
    """The contoured structures (not the patient outline) holding at least 10 % of a
    region's nodes, most first."""
    from rtcheck.plan_quality import Solid

    lo, hi = points.min(axis=0), points.max(axis=0)
    positions = ctx.export.structures.slice_positions
    out: list[dict[str, Any]] = []
    for roi in ctx.export.structures.rois:
        if not roi.planes or roi.geometric_type == "POINT" or roi.interpreted_type == "EXTERNAL":
            continue
        xy = [poly for plane in roi.planes for poly in plane.polygons]
        if not xy:
            continue
        allxy = np.concatenate(xy)
        zs = [plane.z for plane in roi.planes]
        if (
            allxy[:, 0].max() < lo[0]
            or allxy[:, 0].min() > hi[0]
            or allxy[:, 1].max() < lo[1]
            or allxy[:, 1].min() > hi[1]
            or max(zs) < lo[2] - 10
            or min(zs) > hi[2] + 10
        ):
            continue
        try:
            solid = Solid.from_planes(roi.planes, positions, fallback_thickness(ctx.export))
        except ValueError:
            continue
        share = 100.0 * float(solid.contains(points).mean())
        if share >= 10.0:
            out.append({"name": roi.name, "percent": round(share, 1)})
    out.sort(key=lambda x: -x["percent"])
    return out[:4]


def _coverage(ctx: _Context, rule: CoverageRule) -> list[RuleResult]:
    names, problem = _role_rois(ctx, rule.structure)
    if problem:
        return [_result(rule, NOT_EVALUATED, problem)]
    if rule.metric is not None:
        out = []
        for name in names:
            reference, level_note = None, ""
            if rule.metric.needs_prescription:
                reference, level_note = ctx.reference_dose(rule.structure, name)
                if reference is None:
                    out.append(
                        _result(
                            rule, NOT_EVALUATED, level_note, structure=name, metric=str(rule.metric)
                        )
                    )
                    continue
            dvh = ctx.dvh(name)
            if isinstance(dvh, str):
                out.append(_result(rule, NOT_EVALUATED, dvh, structure=name))
                continue
            if not dvh.complete:
                out.append(
                    _result(
                        rule,
                        NOT_EVALUATED,
                        f"{dvh.volume_outside_cc:.3g} cc of {name} lies outside the dose grid",
                        structure=name,
                        metric=str(rule.metric),
                    )
                )
                continue
            try:
                value = rule.metric.evaluate(dvh, reference)
            except EvaluationError as exc:
                out.append(
                    _result(rule, NOT_EVALUATED, str(exc), structure=name, metric=str(rule.metric))
                )
                continue
            unit = str(rule.metric.output_unit)
            status, limit = _compare(value, rule.minimum, None, rule.minor_minimum, None, unit)
            out.append(
                _result(
                    rule,
                    status,
                    f"{name} {rule.metric} = {value:.2f} {unit} (limit {limit}){level_note}",
                    structure=name,
                    metric=str(rule.metric),
                    measured=round(value, 4),
                    limit=limit,
                )
            )
        return out
    assert rule.inside is not None
    containers, problem = _role_rois(ctx, rule.inside)
    if problem:
        return [_result(rule, NOT_EVALUATED, problem)]
    out = []
    for name in names:
        if not ctx.rois[name].planes:
            out.append(_result(rule, NOT_EVALUATED, f"{name} has no contours", structure=name))
            continue
        best = min(
            (_outside_share(ctx, name, c, rule.tolerance_mm) for c in containers),
            key=lambda x: x[0],
        )
        share, container = best
        if share <= 0.0:
            out.append(
                _result(
                    rule,
                    PASS,
                    f"{name} lies inside {container}",
                    structure=name,
                    measured=0.0,
                    limit=f"inside {rule.inside}",
                )
            )
        else:
            out.append(
                _result(
                    rule,
                    MAJOR,
                    f"{100 * share:.0f} % of {name}'s surface lies "
                    f"more than {rule.tolerance_mm:g} mm outside every "
                    f"{rule.inside} ({', '.join(containers)}): a visible lesion "
                    "is not treated",
                    structure=name,
                    measured=round(100 * share, 1),
                    limit=f"inside {rule.inside}",
                )
            )
    return out


def _outside_share(ctx: _Context, inner: str, outer: str, tolerance_mm: float) -> tuple[float, str]:
    from rtcheck.containment import outside_fraction

    share = outside_fraction(
        ctx.rois[inner].planes,
        ctx.rois[outer].planes,
        tolerance_mm=tolerance_mm,
        slice_positions=ctx.export.structures.slice_positions,
    )
    return share, outer


def _count(ctx: _Context, rule: CountRule) -> RuleResult:
    if rule.structure in ctx.roles.ambiguous:
        count = len(ctx.roles.ambiguous[rule.structure])
    else:
        count = len(ctx.roles.matched.get(rule.structure, []))
    low = float(rule.minimum) if rule.minimum is not None else None
    high = float(rule.maximum) if rule.maximum is not None else None
    status, limit = _compare(float(count), low, high, None, None, "")
    return _result(
        rule,
        status,
        f"{count} {rule.structure} structure(s); limit {limit}".strip(),
        structure=rule.structure,
        measured=count,
        limit=limit.strip(),
    )


def _integrity(ctx: _Context, rule: IntegrityRule) -> list[RuleResult]:
    out = []
    plan = ctx.export.plan
    for check in rule.checks:
        sub = f"{rule.id}.{check}"
        if check == "approved":
            if plan is None:
                out.append(RuleResult(sub, rule.kind.value, NOT_EVALUATED, "no RTPLAN"))
            elif (plan.approval or "").upper() == "APPROVED":
                out.append(RuleResult(sub, rule.kind.value, PASS, "plan approved"))
            else:
                out.append(
                    RuleResult(
                        sub,
                        rule.kind.value,
                        MINOR,
                        f"plan not approved ({plan.approval or 'no status'}): "
                        "check again once it is approved",
                    )
                )
        elif check == "prescription":
            out.append(_prescription_present(ctx, sub, rule))
        elif check == "dose_scale_confirmed":
            out.append(_dose_scale_confirmed(ctx, sub, rule))
        elif check == "prescription_matches_dose":
            out.append(_prescription_matches_dose(ctx, sub, rule))
        elif check == "dose_type":
            out.append(_dose_type(ctx, sub, rule))
        elif check == "dose_absolute":
            out.append(
                RuleResult(
                    sub,
                    rule.kind.value,
                    PASS,
                    f"dose in {ctx.export.dose.units} ({ctx.export.dose.summation}); relative "
                    "doses are refused when the export is read",
                )
            )
        elif check == "frames_agree":
            out.append(
                RuleResult(
                    sub,
                    rule.kind.value,
                    PASS,
                    "structure set and dose share one frame of reference (checked when the "
                    "export is read: a mismatch stops the check)",
                )
            )
        elif check in ("grid_covers_targets", "grid_covers_constrained"):
            out.append(_grid_covers(ctx, rule, check))
        elif check == "no_empty_structures":
            empty = [
                n for names in ctx.roles.matched.values() for n in names if not ctx.rois[n].planes
            ]
            out.append(
                RuleResult(
                    sub,
                    rule.kind.value,
                    MAJOR if empty else PASS,
                    f"empty structure(s): {', '.join(empty)}"
                    if empty
                    else "every matched structure has contours",
                )
            )
    return out


def _prescription_present(ctx: _Context, sub: str, rule: IntegrityRule) -> RuleResult:
    rx = ctx.rx
    if rx is None:
        return RuleResult(sub, rule.kind.value, NOT_EVALUATED, ctx.rx_problem)
    if not rx.fractions:
        return RuleResult(
            sub,
            rule.kind.value,
            NOT_EVALUATED,
            f"prescription {rx.total_gy:g} Gy ({rx.detail}), but the plan gives no number of "
            "fractions (Number of Fractions Planned): the schedule and BED cannot be "
            "checked; give both with --prescription TOTAL/FRACTIONS",
        )
    if rx.source == "plan":
        message = f"prescription {rx.schedule}, from {rx.detail}"
    else:
        message = f"prescription {rx.schedule}, given with {rx.detail}: the plan states none"
    return RuleResult(sub, rule.kind.value, PASS, message, measured=rx.total_gy)


def _dose_scale_confirmed(ctx: _Context, sub: str, rule: IntegrityRule) -> RuleResult:
    scale = ctx.export.dose.scale
    kind = rule.kind.value
    if scale is None:
        return RuleResult(
            sub, kind, NOT_EVALUATED, "no RTPLAN: whether the dose holds the course is unknown"
        )
    points = "; ".join(e.text for e in scale.evidence)
    detail = f"{scale.summary}" + (f" ({points})" if points else "")
    if scale.confirmed:
        return RuleResult(sub, kind, PASS, detail)
    if scale.contradicted:
        return RuleResult(
            sub,
            kind,
            MAJOR,
            f"the export disagrees with itself: {detail}; check that the dose belongs to "
            "this plan version and export both again",
        )
    return RuleResult(
        sub, kind, MINOR, f"{detail}; check by hand that the dose is the plan's whole course"
    )


def _median_bounds(dvh: DVH) -> tuple[float, float] | None:
    """Lowest and highest possible median dose (Gy) of a structure.

    Equal for a structure inside the dose grid. For one partly outside, the part outside
    may receive anything: between none of it and all of it above a dose, the median lies
    between the dose covering half the structure inside the grid and the dose covering
    half less the part outside. None when half the structure or more lies outside.
    """
    half = dvh.volume_cc / 2
    inside = dvh.volume_inside_cc
    if not inside > 0 or half - dvh.volume_outside_cc <= 0 or half > inside:
        return None
    return dvh.dose_at_volume(half), dvh.dose_at_volume(half - dvh.volume_outside_cc)


def _main_target(ctx: _Context) -> tuple[str, tuple[float, float]] | None:
    """The target that carries the prescription, with the bounds of its median dose: the
    PTV (else CTV, GTV, ITV) with the highest median."""
    ranked: dict[str, list[tuple[str, tuple[float, float]]]] = {}
    for roi in ctx.export.structures.rois:
        parsed = parse_target_name(roi.name)
        if parsed is None or not parsed.is_target or parsed.helper or not roi.planes:
            continue
        if roi.name not in ctx.rois:  # a name shared by several ROIs: which is meant is unknown
            continue
        dvh = ctx.dvh_of(roi)
        bounds = _median_bounds(dvh) if isinstance(dvh, DVH) else None
        if bounds is not None:
            ranked.setdefault(parsed.type, []).append((roi.name, bounds))
    for kind in ("PTV", "CTV", "GTV", "ITV"):
        if ranked.get(kind):
            return max(ranked[kind], key=lambda t: t[1][1])
    return None


def _prescription_matches_dose(ctx: _Context, sub: str, rule: IntegrityRule) -> RuleResult:
    kind = rule.kind.value
    rx = ctx.rx
    if rx is None:
        return RuleResult(sub, kind, NOT_EVALUATED, ctx.rx_problem)
    found = _main_target(ctx)
    if found is None:
        names = ", ".join(t.name for t in ctx.targets) or "none recognised"
        return RuleResult(
            sub,
            kind,
            NOT_EVALUATED,
            "no target (PTV, CTV, GTV) with a measurable median dose to compare with the "
            f"prescription (targets: {names}); name the target so it is recognised",
        )
    name, (low, high) = found
    allowed = rule.target_median_percent
    limit = f"median {allowed} % of the prescription"
    lo_pct, hi_pct = 100.0 * low / rx.total_gy, 100.0 * high / rx.total_gy
    if f"{low:.4g}" == f"{high:.4g}":
        measured = f"median dose {low:.4g} Gy = {lo_pct:.1f} %"
    else:
        measured = f"median dose {low:.4g}-{high:.4g} Gy = {lo_pct:.1f}-{hi_pct:.1f} %"
    dvh = ctx.dvh(name)
    if isinstance(dvh, DVH) and not dvh.complete:
        measured += f" ({dvh.volume_outside_cc:.3g} cc of it lie outside the dose grid)"
    message = (
        f"{name} {measured} of the prescription {rx.total_gy:.4g} Gy ({rx.detail}); "
        f"allowed {allowed} %"
    )
    value = round(100.0 * (low + high) / 2 / rx.total_gy, 2)
    if allowed.contains(lo_pct) and allowed.contains(hi_pct):
        status = PASS
    elif (allowed.high is not None and lo_pct > allowed.high) or (
        allowed.low is not None and hi_pct < allowed.low
    ):
        status = MAJOR
        message += (
            ": the dose does not match the prescription (a dose of another plan version, a "
            "wrong dose scale, or a wrong prescription)"
        )
    else:
        status = NOT_EVALUATED
        message += ": the part outside the dose grid leaves it undecided"
    return RuleResult(sub, kind, status, message, structure=name, measured=value, limit=limit)


def _dose_type(ctx: _Context, sub: str, rule: IntegrityRule) -> RuleResult:
    dose, plan = ctx.export.dose, ctx.export.plan
    kind = rule.kind.value
    radiation = plan.radiation_type if plan is not None else ""
    stated = dose.dose_type or "not given (read as PHYSICAL)"
    if plan is not None and plan.is_ion and dose.dose_type != "EFFECTIVE":
        return RuleResult(
            sub,
            kind,
            NOT_EVALUATED,
            f"{radiation} plan with a dose of DoseType {stated}: the protocol's limits are "
            "for RBE-weighted dose (Gy(RBE)), which a physical proton dose understates by "
            "about 10 %; export the RBE-weighted dose (DoseType EFFECTIVE)",
        )
    return RuleResult(
        sub,
        kind,
        PASS,
        f"DoseType {stated}" + (f" for a {radiation} plan" if radiation else ""),
    )


def _grid_covers(ctx: _Context, rule: IntegrityRule, check: str) -> RuleResult:
    sub = f"{rule.id}.{check}"
    if check == "grid_covers_targets":
        roles = [r.name for r in ctx.protocol.roles.values() if r.type is RoleType.TARGET]
    else:
        roles = sorted({r.structure for r in ctx.protocol.rules if isinstance(r, DoseVolumeRule)})
    missing = []
    for role in roles:
        for name in ctx.roles.matched.get(role, []):
            dvh = ctx.dvh(name)
            if isinstance(dvh, DVH) and not dvh.complete:
                share = 100 * dvh.volume_outside_cc / dvh.volume_cc if dvh.volume_cc else 0
                missing.append(f"{name} ({dvh.volume_outside_cc:.3g} cc, {share:.0f} %)")
    if check == "grid_covers_targets":
        matched = {n for role in roles for n in ctx.roles.matched.get(role, [])}
        missing += _targets_outside_grid(ctx, matched)
    what = "targets" if check == "grid_covers_targets" else "constrained structures"
    if missing:
        return RuleResult(
            sub, rule.kind.value, MAJOR, f"the dose grid does not cover: {', '.join(missing)}"
        )
    return RuleResult(sub, rule.kind.value, PASS, f"the dose grid covers every {what[:-1]}")


#: DICOM RT ROI Interpreted Types of targets.
_TARGET_TYPES = ("PTV", "CTV", "GTV", "ITV")


def _targets_outside_grid(ctx: _Context, done: set[str]) -> list[str]:
    """Every other target (by its ROI type, or its name, whatever a role matched) with a
    contour point outside the dose grid: an irradiated volume the exported dose misses."""
    grid = ctx.export.dose.grid
    lo = (grid.x[0], grid.y[0], grid.z[0])
    hi = (grid.x[-1], grid.y[-1], grid.z[-1])
    out = []
    for roi in ctx.export.structures.rois:
        if roi.name in done or not roi.planes:
            continue
        parsed = parse_target_name(roi.name)
        typed = roi.interpreted_type.upper() in _TARGET_TYPES
        if not typed and (parsed is None or not parsed.is_target):
            continue
        points = np.concatenate([p for plane in roi.planes for p in plane.polygons])
        zs = np.array([plane.z for plane in roi.planes])
        tol = 1e-6
        outside = bool(
            points[:, 0].min() < lo[0] - tol
            or points[:, 0].max() > hi[0] + tol
            or points[:, 1].min() < lo[1] - tol
            or points[:, 1].max() > hi[1] + tol
            or zs.min() < lo[2] - tol
            or zs.max() > hi[2] + tol
        )
        if outside:
            what = f"ROI type {roi.interpreted_type}" if typed else "a target by its name"
            out.append(f"{roi.name} ({what}: contours outside the grid)")
    return out


def _plan_quality(ctx: _Context, rule: PlanQualityRule) -> list[RuleResult]:
    """R100, R50, D2cm or the hottest point's location, for each ROI of the role.

    The numbers of every target of the role are computed once (by the first rule that
    needs them) and kept in ``facts['plan_quality']`` with Paddick's indices.
    """
    from rtcheck.plan_quality import limits_by_volume

    if ctx.prescription is None:
        return [_result(rule, NOT_EVALUATED, ctx.rx_problem, metric=rule.quantity)]
    names, problem = _role_rois(ctx, rule.structure)
    if problem:
        return [_result(rule, NOT_EVALUATED, problem, metric=rule.quantity)]
    facts = _plan_quality_facts(ctx, rule, names)
    if isinstance(facts, str):
        return [_result(rule, NOT_EVALUATED, facts, metric=rule.quantity)]
    out = []
    for name in names:
        fact = facts["targets"][name]
        problem = fact["problems"].get(rule.quantity, "")
        value = {
            "R100": fact["R100"],
            "R50": fact["R50"],
            "D2cm": fact["D2cm_percent"],
            "max_in_target": fact["max_outside_mm"],
        }[rule.quantity]
        if problem or value is None:
            out.append(
                _result(
                    rule,
                    NOT_EVALUATED,
                    f"{name}: {problem or 'not computable'}",
                    structure=name,
                    metric=rule.quantity,
                    limit=_quality_limit(rule, fact["volume_cc"]) or None,
                )
            )
            continue
        pooled = fact["pooled_50" if rule.quantity == "R50" else "pooled_100"]
        volume = fact["group_volume_cc_50" if rule.quantity == "R50" else "group_volume_cc_100"]
        if rule.quantity not in ("R100", "R50"):
            pooled, volume = [], fact["volume_cc"]
        overlapping = [
            other
            for other in pooled
            if other in ctx.rois
            and isinstance(d := ctx.distance(name, other), Distance)
            and d.overlap
        ]
        if overlapping:
            # The group's volume is the sum of its PTVs: an overlap would count twice and
            # halve the ratio (a second copy of one PTV would hide poor conformity).
            out.append(
                _result(
                    rule,
                    NOT_EVALUATED,
                    f"{name} overlaps {', '.join(overlapping)}, whose isodose clouds merge "
                    "with its own: which is the lesion's PTV is unclear, and their summed "
                    "volume would count the overlap twice; keep one PTV per lesion in the "
                    "role (name the others as helpers, e.g. with a z prefix)",
                    structure=name,
                    metric=rule.quantity,
                    limit=_quality_limit(rule, volume) or None,
                )
            )
            continue
        high: float | None
        if rule.table:
            rows = [(r.volume_cc, r.maximum, r.minor_maximum) for r in rule.table]
            high, minor_high, note = limits_by_volume(rows, volume)
            high = round(high, 3)
            minor_high = None if minor_high is None else round(minor_high, 3)
            note = f"; limit for {volume:.3g} cc{note}"
        else:
            high, minor_high, note = rule.maximum, rule.minor_maximum, ""
        unit = {"D2cm": "%", "max_in_target": "mm"}.get(rule.quantity, "")
        status, limit = _compare(value, None, high, None, minor_high, unit)
        limit = " ".join(limit.replace(" )", ")").split())
        what = {
            "R100": "prescription isodose volume / PTV volume",
            "R50": "50 % isodose volume / PTV volume",
            "D2cm": "highest dose 2 cm or more from the PTV, % of the prescription",
            "max_in_target": "distance of the hottest point outside the PTV",
        }[rule.quantity]
        if pooled:
            note += (
                f"; its isodose merges with that of {', '.join(pooled)}: ratio of the group "
                "(their isodose volume over their summed volumes)"
            )
        if rule.quantity == "max_in_target":
            where = ", ".join(f"{c:.1f}" for c in fact["max_point"])
            note += f"; {fact['max_gy']:.2f} Gy at ({where}) mm"
        out.append(
            _result(
                rule,
                status,
                f"{name} {rule.quantity} ({what}) = {value:.2f} {unit}".rstrip()
                + f": limit {limit}{note}",
                structure=name,
                metric=rule.quantity,
                measured=round(value, 4),
                limit=limit + (f" (for {volume:.3g} cc)" if rule.table else ""),
            )
        )
    return out


@dataclass(frozen=True)
class _QualityScan:
    """The costly, volume-free part of a plan-quality role's numbers."""

    body_name: str | None
    solid_volumes_cc: list[float]
    scan: QualityScan


def _quality_scan(ctx: _Context, rule: PlanQualityRule, names: list[str]) -> _QualityScan | str:
    """The targets' solids and the dose's scan of them (isodose clouds, D2cm, hottest
    points: :func:`rtcheck.plan_quality.scan_quality`), or why there is none. Reads the
    context only, so it may run in a thread of its own."""
    from rtcheck.plan_quality import Solid, scan_quality

    assert ctx.prescription is not None
    positions = ctx.export.structures.slice_positions
    thickness = fallback_thickness(ctx.export)
    body_name: str | None = None
    if rule.body is not None:
        bodies, problem = _role_rois(ctx, rule.body)
        if problem or len(bodies) != 1:
            return problem or f"several ROIs fill {rule.body}"
        body_name = bodies[0]
    else:
        external = [
            r.name
            for r in ctx.export.structures.rois
            if r.interpreted_type.upper() == "EXTERNAL" and r.name in ctx.rois and r.planes
        ]
        body_name = external[0] if len(external) == 1 else None
    try:
        solids = [Solid.from_planes(ctx.rois[n].planes, positions, thickness) for n in names]
        body = (
            Solid.from_planes(ctx.rois[body_name].planes, positions, thickness)
            if body_name
            else None
        )
    except ValueError as exc:
        return f"plan quality not computable: {exc}"
    scan = scan_quality(ctx.export.dose.grid, solids, ctx.prescription, body=body)
    return _QualityScan(body_name, [s.volume_cc for s in solids], scan)


def _scan_quality_ahead(ctx: _Context) -> None:
    """Start the plan-quality scans of the unconditional plan-quality rules in a thread
    of their own, to run while the DVHs are computed (their isodose clouds and D2cm
    search need no DVH; only the ratios do, and :func:`_plan_quality_facts` adds them).

    A scan is taken only by a rule with the same target and body roles, so the result
    is the one computed when the rule comes (the same for any number of threads).
    Nothing starts with one thread allowed, without a prescription, for a rule skipped
    for an absent optional role, or for a role that does not resolve: the rule then
    computes (or reports) it when it comes.
    """
    threads = default_threads() if ctx.threads is None else ctx.threads
    if threads < 2 or ctx.prescription is None:
        return
    wanted: dict[tuple[str, str | None], tuple[PlanQualityRule, list[str]]] = {}
    for rule in ctx.protocol.rules:
        if not isinstance(rule, PlanQualityRule) or rule.when is not None:
            continue
        key = (rule.structure, rule.body)
        if rule.unless is not None or key in wanted or _absent_optional_roles(ctx, rule):
            continue
        names, problem = _role_rois(ctx, rule.structure)
        if not problem:
            wanted[key] = (rule, names)
    if not wanted:
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rtcheck-quality")
    for key, (rule, names) in wanted.items():
        ctx.quality_ahead[key] = pool.submit(_quality_scan, ctx, rule, names)
    pool.shutdown(wait=False)  # the scans run on; each rule waits for its own


def _plan_quality_facts(
    ctx: _Context, rule: PlanQualityRule, names: list[str]
) -> dict[str, Any] | str:
    """The plan-quality numbers of the role's targets (cached in the facts), or why not."""
    from rtcheck.plan_quality import gradient_index, paddick_ci, score_quality

    assert ctx.prescription is not None
    cache: dict[str, Any] = ctx.facts.setdefault("plan_quality", {})
    if rule.structure in cache:
        cached: dict[str, Any] | str = cache[rule.structure].get("problem") or cache[rule.structure]
        return cached
    pending = ctx.quality_ahead.pop((rule.structure, rule.body), None)
    scanned = pending.result() if pending is not None else _quality_scan(ctx, rule, names)
    if isinstance(scanned, str):
        cache[rule.structure] = {"problem": scanned}
        return scanned
    body_name = scanned.body_name
    volumes, covered = [], []
    for name, solid_cc in zip(names, scanned.solid_volumes_cc, strict=True):
        dvh = ctx.dvh(name)
        if isinstance(dvh, DVH) and dvh.complete:
            volumes.append(dvh.volume_cc)
            covered.append(dvh.volume_at_dose(ctx.prescription))
        else:
            volumes.append(solid_cc)
            covered.append(float("nan"))
    rx = ctx.prescription
    quality = score_quality(scanned.scan, volumes)
    targets: dict[str, Any] = {}
    for name, q, tv_piv in zip(names, quality, covered, strict=True):
        own_piv = q.piv100_cc if not q.pooled_100 else float("nan")
        ci = paddick_ci(q.volume_cc, tv_piv, own_piv) if tv_piv == tv_piv else None
        gi = gradient_index(q.piv50_cc, q.piv100_cc)

        def r(v: float | None, digits: int = 4) -> float | None:
            return None if v is None or v != v else round(v, digits)

        targets[name] = {
            "volume_cc": r(q.volume_cc),
            "piv100_cc": r(q.piv100_cc),
            "piv50_cc": r(q.piv50_cc),
            "R100": r(q.r100),
            "R50": r(q.r50),
            "D2cm_percent": r(q.d2cm_percent, 2),
            "max_gy": r(q.max_gy),
            "max_point": q.max_point,
            "max_outside_mm": r(q.max_outside_mm, 2),
            "paddick_ci": r(ci),
            "gradient_index": r(gi),
            "pooled_100": [names[i] for i in q.pooled_100],
            "pooled_50": [names[i] for i in q.pooled],
            "group_volume_cc_100": q.group_volume_100_cc,
            "group_volume_cc_50": q.group_volume_50_cc,
            "problems": q.problems,
        }
    found: dict[str, Any] = {"prescription_gy": rx, "body": body_name, "targets": targets}
    cache[rule.structure] = found
    return found
