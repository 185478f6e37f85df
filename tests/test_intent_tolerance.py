"""Organ tolerance follows the dose per fraction, not the plan's intent (issue 15).

The palliative protocol applies AAPM TG-101's stereotactic organ limits to any course in
its stereotactic range (fact ``fractionation``), and the SABR protocols skip only their
curative rules (schedule, every lesion treated) for a PALLIATIVE plan. Expected values are
the clinical rules and hand calculations: a 3 x 18 Gy central lesion abutting the proximal
bronchial tree puts more than TG-101's 30 Gy (3 fractions) on it; QUANTEC's 50 Gy in 2 Gy
fractions at alpha/beta 2 is -1 + sqrt(201) = 13.18 Gy in one fraction.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rtcheck.cli.main import app
from rtcheck.constraints import radiobiology
from rtcheck.constraints.engine import NOT_EVALUATED, check_plan
from rtcheck.constraints.protocol import DoseVolumeRule, load_protocol_text
from rtcheck.constraints.registry import resolve_protocol
from rtcheck.dicom_io import load_path
from rtcheck.errors import ProtocolError
from tests.fixtures.plans import PlanSpec, cylinder, sphere, write_plan_export
from tests.fixtures.trust import TrustPlan, write_trust_export
from tests.test_golden import lesion, lung_anatomy

# GTV (r 8) centre 20 mm from the bronchial tree's axis (r 6): 6 mm between surfaces
# (central); the PTV (r 13) reaches within 1 mm of the bronchus, which receives about the
# prescription there: far above TG-101's 3-fraction maximum of 30 Gy.
ABUTTING = lesion(20, 10)


def central_lung(intent: str) -> PlanSpec:
    return PlanSpec(
        shapes=ABUTTING + lung_anatomy(),
        target_levels=(("PTV", 54.0),),
        fractions=3,
        dose_per_fraction_gy=18.0,
        label="LUNG_SABR",
        intent=intent,
    )


def spine(fractions: int, dose: float, cord_axis_mm: float, peak: float) -> PlanSpec:
    """A vertebral PTV (r 15 mm) and the spinal cord (r 5 mm) along z, its axis
    ``cord_axis_mm`` behind the PTV's centre."""
    return PlanSpec(
        shapes=(
            sphere("PTV", (0, 0, 0), 15, "PTV"),
            cylinder("SpinalCord", (0, cord_axis_mm, 0), 5, 80),
        ),
        target_levels=(("PTV", fractions * dose),),
        fractions=fractions,
        dose_per_fraction_gy=dose,
        label="SPINE_T8",
        intent="PALLIATIVE",
        peak=peak,
    )


PLANS = {
    "central-palliative": central_lung("PALLIATIVE"),
    "central-curative": central_lung("CURATIVE"),
    # Conventional single 8 Gy through the cord (cord axis inside the PTV): cord ~8-10 Gy.
    "spine-1x8-cord-in-field": spine(1, 8.0, 12.0, 1.04),
    # The same geometry at 1 x 20 Gy: the cord receives about 20-25 Gy.
    "spine-1x20-cord-in-field": spine(1, 20.0, 12.0, 1.25),
    # Spine SABR sparing the cord: its nearest point is 30 mm from the PTV's centre, where
    # the dose is 20 x 1.25 ** (1 - (30 / 17.25) ** 4) = 3.2 Gy at most.
    "spine-1x20-cord-spared": spine(1, 20.0, 35.0, 1.25),
    # The standard palliative 5 x 5 Gy through the cord: conventional, cord ~26 Gy.
    "spine-5x5-cord-in-field": spine(5, 5.0, 12.0, 1.04),
    # 5 x 4 Gy prescribed to the PTV, a GTV (r 6 mm) boosted to 40 Gy: 8 Gy per fraction.
    "spine-5x4-gtv-boost": replace(
        spine(5, 4.0, 35.0, 1.04),
        shapes=(*spine(5, 4.0, 35.0, 1.04).shapes, sphere("GTV", (0, 0, 0), 6, "GTV")),
        target_levels=(("PTV", 20.0), ("GTV", 40.0)),
    ),
}


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("intent")
    return {name: write_plan_export(root / name, spec) for name, spec in PLANS.items()}


def run(folder: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    """Exit code, JSON report and the terminal report of ``rtcheck check``."""
    result = CliRunner().invoke(app, ["check", str(folder), "--json", "-", *args])
    report = json.loads(result.stdout)
    text = CliRunner().invoke(app, ["check", str(folder), *args]).stdout
    return result.exit_code, report, text


def by_id(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in report["results"]:
        out.setdefault(r["id"], []).append(r)
    return out


def skipped(report: dict[str, Any]) -> dict[str, str]:
    return {s["id"]: s["reason"] for s in report["skipped"]}


def test_palliative_central_lung_fails_on_organ_limits_not_schedule(
    exports: dict[str, Path],
) -> None:
    code, report, text = run(exports["central-palliative"])
    assert report["protocol"]["id"] == "palliative"
    assert report["verdict"] == "fail" and code == 1
    results = by_id(report)
    assert not [r for r in report["results"] if r["kind"] == "fractionation"]
    (bronchus,) = results["sabr-bronchus-max"]
    assert bronchus["status"] == "major"
    assert bronchus["measured"] > 30
    assert bronchus["limit"] == "<= 30 Gy (3-fraction limit)"
    failing = {r["id"] for r in report["results"] if r["status"] in ("major", "minor")}
    assert failing and all(i.startswith("sabr-") for i in failing), failing
    assert report["facts"]["fractionation"] == "stereotactic"
    # Intent alone decided between palliative and sabr-lung: said in the first lines.
    selection = report["selection"]
    assert selection["chosen"] == "palliative"
    assert "sabr-lung" in selection["intent_decided"]
    head = text.split("\nPatient ")[0]
    assert "Intent: the plan's intent decided" in head and "sabr-lung" in head


def test_curative_central_lung_fails_its_schedule_and_organs(exports: dict[str, Path]) -> None:
    code, report, _ = run(exports["central-curative"])
    assert report["protocol"]["id"] == "sabr-lung"
    assert code == 1
    results = by_id(report)
    assert [r["status"] for r in results["schedule-central"]] == ["major"]
    assert [r["status"] for r in results["bronchus-max"]] == ["major"]
    # A curative plan: palliative was not chosen, for its intent alone.
    assert "palliative (for intent PALLIATIVE)" in report["selection"]["intent_decided"]


def test_sabr_protocol_named_for_a_palliative_plan_skips_only_curative_rules(
    exports: dict[str, Path],
) -> None:
    code, report, _ = run(exports["central-palliative"], "--protocol", "sabr-lung")
    assert code == 1
    assert report["selection"] is None
    reasons = skipped(report)
    assert "intent is PALLIATIVE" in reasons["schedule-central"]
    assert "all-lesions-treated" in reasons
    assert [r["status"] for r in by_id(report)["bronchus-max"]] == ["major"]


def test_conventional_single_8gy_through_the_cord_passes(exports: dict[str, Path]) -> None:
    code, report, _ = run(exports["spine-1x8-cord-in-field"])
    assert report["protocol"]["id"] == "palliative"
    assert report["verdict"] == "pass", [
        (r["id"], r["message"]) for r in report["results"] if r["status"] != "pass"
    ]
    assert code == 0
    assert report["facts"]["fractionation"] == "conventional"
    (cord,) = by_id(report)["cord-max-eqd2"]
    # QUANTEC 50 Gy in 2 Gy fractions at alpha/beta 2, in one fraction: d (d + 2) = 200.
    limit = float(cord["limit"].split()[1])
    assert limit == pytest.approx(-1 + math.sqrt(201), abs=1e-3)
    assert 8.0 <= cord["measured"] <= limit
    reasons = skipped(report)
    for rule in ("sabr-cord-d035cc", "sabr-cord-d12cc", "sabr-cord-max"):
        assert "fractionation is conventional" in reasons[rule]
    # The intent decided against sabr-bone (its label and fractions fit): said so.
    assert "sabr-bone" in report["selection"]["intent_decided"]


def test_palliative_1x20_spine_is_checked_against_tg101_single_fraction_cord_limits(
    exports: dict[str, Path],
) -> None:
    code, report, _ = run(exports["spine-1x20-cord-in-field"])
    assert report["protocol"]["id"] == "palliative"
    assert report["facts"]["fractionation"] == "stereotactic"
    results = by_id(report)
    expected = {
        "sabr-cord-d035cc": "<= 10 Gy (1-fraction limit)",
        "sabr-cord-d12cc": "<= 7 Gy (1-fraction limit)",
        "sabr-cord-max": "<= 14 Gy (1-fraction limit)",
    }
    for rule, limit in expected.items():
        (r,) = results[rule]
        assert r["limit"] == limit
        assert r["status"] == "major", r
    assert "cord-max-eqd2" in skipped(report)
    assert code == 1

    code, report, _ = run(exports["spine-1x20-cord-spared"])
    results = by_id(report)
    for rule, limit in expected.items():
        (r,) = results[rule]
        assert r["limit"] == limit
        assert r["status"] == "pass" and r["measured"] < 3.3
    assert report["verdict"] == "pass" and code == 0


def test_without_a_prescription_the_stereotactic_limits_cannot_pass(
    exports: dict[str, Path],
) -> None:
    export = load_path(exports["spine-1x20-cord-spared"])
    assert export.plan is not None
    plan = replace(export.plan, total_dose_gy=None, dose_references=[])
    result = check_plan(replace(export, plan=plan), resolve_protocol("palliative"))
    statuses = {r.id: r for r in result.results}
    cord = statuses["sabr-cord-max"]
    assert cord.status == NOT_EVALUATED
    assert "cannot tell whether the rule applies" in cord.message
    assert result.facts["fractionation"] is None
    # The conventional cord limit needs no prescription: unknown is not "stereotactic".
    assert statuses["cord-max-eqd2"].status == "pass"
    assert result.verdict == "error"


def test_palliative_tg101_values_are_the_sabr_protocols_values() -> None:
    palliative = resolve_protocol("palliative")
    sabr = [resolve_protocol(p) for p in ("sabr-lung", "sabr-liver", "sabr-bone")]

    def tables(rules: Any) -> dict[tuple[str, str], dict[int, float]]:
        return {
            (r.structure, str(r.metric)): dict(r.maximum.by_fractions)
            for r in rules
            if isinstance(r, DoseVolumeRule) and r.maximum is not None and r.maximum.by_fractions
        }

    ours = tables(palliative.rules)
    compared = 0
    for protocol in sabr:
        for key, table in tables(protocol.rules).items():
            if key in ours:
                for n in (1, 3, 5):
                    assert ours[key][n] == table[n], (protocol.id, key, n)
                    compared += 1
    assert compared >= 60
    # A few by hand from clinical-rules.md (TG-101, 1/3/5 fractions).
    assert ours[("SpinalCord", "D0.35cc[Gy]")] == {1: 10, 3: 18, 5: 23}
    assert ours[("Esophagus", "D5cc[Gy]")] == {1: 11.9, 3: 17.7, 5: 19.5}
    assert ours[("GreatVes", "D10cc[Gy]")] == {1: 31, 3: 39, 5: 47}
    every_sabr_role = {r for p in sabr for r in p.roles if p.roles[r].type.value == "oar"}
    constrained = {r.structure for r in palliative.rules if isinstance(r, DoseVolumeRule)}
    reported_only = {"Lung_L", "Lung_R", "PhrenicNerve", "RecurrentLaryngealNerve"}
    assert every_sabr_role - reported_only <= constrained


# -- the protocol language ---------------------------------------------------------------

BASE = """\
id: lang
title: Language
version: "1"
sources: {hand: "hand"}
structures:
  PTV: {type: target, names: [PTV]}
  Cord: {type: oar, names: [SpinalCord]}
facts:
  fractionation:
    kind: schedule
    schedules:
      - {fractions: {min: 1, max: 2}, dose_per_fraction_gy: {min: 9}}
      - {fractions: {min: 3}, dose_per_fraction_gy: {min: 5}}
    match: stereotactic
    otherwise: conventional
rules:
"""


def check_text(folder: Path, rules: str) -> dict[str, Any]:
    protocol = load_protocol_text(BASE + rules)
    result = check_plan(load_path(folder), protocol)
    return {
        "results": {r.id: r for r in result.results},
        "skipped": {s["id"]: s["reason"] for s in result.skipped},
        "facts": result.facts,
    }


def test_when_on_dose_per_fraction_ranges_and_unless(exports: dict[str, Path]) -> None:
    rules = """\
  - {id: sabr-dose, kind: count, structure: PTV, min: 1, when: {dose_per_fraction_gy: {min: 5}}}
  - {id: low-dose, kind: count, structure: PTV, min: 1, when: {dose_per_fraction_gy: {max: 5}}}
  - {id: exact, kind: count, structure: PTV, min: 1, when: {dose_per_fraction_gy: 20}}
  - {id: few, kind: count, structure: PTV, min: 1, when: {fractions: {min: 1, max: 5}}}
  - {id: listed, kind: count, structure: PTV, min: 1, when: {fractions: [3, 5]}}
  - {id: stereo, kind: count, structure: PTV, min: 1, when: {fractionation: stereotactic}}
  - {id: not-stereo, kind: count, structure: PTV, min: 1,
     unless: {fractionation: stereotactic}}
  - {id: not-curative, kind: count, structure: PTV, min: 1, unless: {intent: CURATIVE}}
  - {id: not-palliative, kind: count, structure: PTV, min: 1, unless: {intent: PALLIATIVE}}
"""
    out = check_text(exports["spine-1x20-cord-spared"], rules)
    applied = set(out["results"])
    assert {"sabr-dose", "exact", "few", "stereo", "not-curative"} <= applied
    assert {"low-dose", "listed", "not-stereo", "not-palliative"} <= set(out["skipped"])
    assert "dose_per_fraction_gy is 20" in out["skipped"]["low-dose"]
    assert "intent is PALLIATIVE" in out["skipped"]["not-palliative"]
    assert out["facts"]["fractionation_reason"].startswith(
        "1 fraction of up to 20 Gy (the prescription)"
    )


def test_unless_on_an_unknown_fact_applies_the_rule(exports: dict[str, Path]) -> None:
    export = load_path(exports["spine-1x20-cord-spared"])
    assert export.plan is not None
    plan = replace(export.plan, intent="")
    rules = """\
  - {id: curative-only, kind: count, structure: PTV, min: 1, unless: {intent: PALLIATIVE}}
  - {id: palliative-only, kind: count, structure: PTV, min: 1, when: {intent: PALLIATIVE}}
"""
    result = check_plan(replace(export, plan=plan), load_protocol_text(BASE + rules))
    found = {r.id: r.status for r in result.results}
    assert found["curative-only"] == "pass"
    assert found["palliative-only"] == NOT_EVALUATED


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (
            "  - {id: a, kind: count, structure: PTV, min: 1, when: {fractionation: ablative}}\n",
            "takes conventional or stereotactic",
        ),
        (
            "  - {id: a, kind: count, structure: PTV, min: 1, "
            "when: {dose_per_fraction_gy: [5, 6]}}\n",
            "expected a number",
        ),
        (
            "  - {id: a, kind: count, structure: PTV, min: 1, when: {fractions: 2.5}}\n",
            "expected a whole number",
        ),
        (
            "  - {id: a, kind: count, structure: PTV, min: 1, unless: {nothing: x}}\n",
            "unknown key 'nothing'",
        ),
    ],
)
def test_condition_errors_are_located(rules: str, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        load_protocol_text(BASE + rules)


def test_a_schedule_fact_needs_its_keys() -> None:
    text = BASE.replace("    otherwise: conventional\n", "") + (
        "  - {id: a, kind: count, structure: PTV, min: 1}\n"
    )
    with pytest.raises(ProtocolError, match="missing required key 'otherwise'"):
        load_protocol_text(text)


# -- limits tabulated by fraction count ------------------------------------------------------


def cord_limit(folder: Path, fractions: int) -> tuple[float, str]:
    """The cord maximum limit of a {1, 3, 5, 8}-fraction table for a plan of ``fractions``."""
    spec = spine(fractions, 6.0, 35.0, 1.25)
    plan_folder = write_plan_export(folder / f"n{fractions}", spec)
    rules = """\
  - {id: cord, kind: dose_volume, structure: Cord, metric: "Max[Gy]",
     max: {1: 14, 3: 21.9, 5: 30, 8: 32}, alpha_beta: 2}
"""
    r = check_text(plan_folder, rules)["results"]["cord"]
    assert r.limit is not None
    return float(r.limit.split()[1]), r.limit


def test_limits_are_converted_between_counts_but_never_upward_past_the_table(
    tmp_path: Path,
) -> None:
    # 2 fractions, from the 1-fraction 14 Gy: EQD2 equal, 2 d (d + 2) = 14 x 16 -> d = -1 +
    # sqrt(113); below the 3-fraction 21.9 Gy, so used as converted.
    value, text = cord_limit(tmp_path, 2)
    assert value == pytest.approx(2 * (-1 + math.sqrt(113)), abs=1e-3)
    assert "converted from the 1-fraction limit" in text
    # 6 fractions, from the 5-fraction 30 Gy: 6 d (d + 2) = 30 x 8 -> 6 x (-1 + sqrt(41)) =
    # 32.42 Gy, above the 8-fraction 32 Gy: held at 32.
    converted = radiobiology.isoeffective_total_dose(30.0, 6.0, 6, 2.0)
    assert converted == pytest.approx(6 * (-1 + math.sqrt(41)), abs=1e-6)
    value, text = cord_limit(tmp_path, 6)
    assert value == 32
    assert "held at the 8-fraction limit" in text
    # 10 fractions: beyond the table, the 8-fraction limit is held, never converted upward.
    value, text = cord_limit(tmp_path, 10)
    assert value == 32
    assert "held for 10 fractions" in text


def test_standard_palliative_5x5_through_the_cord_is_conventional(
    exports: dict[str, Path],
) -> None:
    code, report, _ = run(exports["spine-5x5-cord-in-field"])
    assert report["facts"]["fractionation"] == "conventional"
    (cord,) = by_id(report)["cord-max-eqd2"]
    # QUANTEC 50 Gy in 2 Gy fractions in 5 fractions: 5 d (d + 2) = 200 -> d = -1 + sqrt(41).
    assert float(cord["limit"].split()[1]) == pytest.approx(5 * (-1 + math.sqrt(41)), abs=1e-3)
    assert cord["status"] == "pass" and cord["measured"] > 25
    assert report["verdict"] == "pass" and code == 0


def test_a_boost_the_prescription_does_not_state_makes_the_course_stereotactic(
    exports: dict[str, Path],
) -> None:
    _, report, _ = run(exports["spine-5x4-gtv-boost"])
    assert report["prescription"]["total_gy"] == 20
    assert report["facts"]["fractionation"] == "stereotactic"
    assert "GTV's median dose" in report["facts"]["fractionation_reason"]
    assert "sabr-cord-max" in by_id(report)


def test_a_course_mixing_fraction_sizes_gets_no_tabulated_limit(tmp_path: Path) -> None:
    # 5 x 2 Gy + 1 x 16 Gy, each group's beams stating their dose at the common point.
    folder = write_trust_export(
        tmp_path,
        TrustPlan(grid_gy=26.0, groups=((5, (1.0, 1.0)), (1, (8.0, 8.0))), prescription_gy=26.0),
    )
    rules = """\
  - {id: table, kind: dose_volume, structure: PTV, metric: "Max[Gy]",
     max: {1: 14, 3: 21.9, 5: 30}, alpha_beta: 2}
  - {id: plain, kind: dose_volume, structure: PTV, metric: "Max[Gy]", max: 30}
"""
    found = check_text(folder, rules)
    table = found["results"]["table"]
    assert table.status == NOT_EVALUATED
    assert "mixes doses per fraction (5 x 2 + 1 x 16 Gy)" in table.message
    assert found["results"]["plain"].status == "pass"
    assert found["facts"]["fractionation"] == "stereotactic"
