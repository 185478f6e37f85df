"""What a planning system writes about its dose, read as the system meant it.

Each case is a synthetic export (:mod:`tests.fixtures.trust`) reproducing one real
vendor behaviour, with a uniform dose so the expected numbers are the stored value times
the factor a physicist would apply by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from typer.testing import CliRunner

from rtcheck.cli.main import app
from rtcheck.constraints.engine import check_plan
from rtcheck.constraints.registry import resolve_protocol
from rtcheck.dicom_io import load_path
from rtcheck.errors import InputError
from tests.fixtures.trust import SPEC_POINT, TrustPlan, write_trust_export


def run(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def results(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in doc["results"]}


def rx_match(doc: dict[str, Any]) -> dict[str, Any]:
    """The one prescription-against-dose result (palliative has a conventional and a
    stereotactic range, by the course's fractionation)."""
    (match,) = [r for r in doc["results"] if r["id"].endswith(".prescription_matches_dose")]
    return dict(match)


# -- dose scale --------------------------------------------------------------------------


def test_fraction_label_on_a_whole_course_is_read_at_its_true_scale(tmp_path: Path) -> None:
    # Pinnacle 9.10: DoseSummationType FRACTION, yet at the specification point the grid
    # equals 5 fractions x (3 + 3) Gy = 30 Gy: it already holds the course.
    export = load_path(write_trust_export(tmp_path, TrustPlan(grid_gy=30.0, summation="FRACTION")))
    assert float(export.dose.grid.dose.max()) == pytest.approx(30.0, rel=1e-6)
    scale = export.dose.scale
    assert scale is not None
    assert (scale.label, scale.label_reads, scale.holds) == ("FRACTION", "fraction", "course")
    assert scale.confirmed and scale.factor == 1.0
    (point,) = scale.evidence
    assert point.point.position == SPEC_POINT
    assert point.point.course_gy == pytest.approx(30.0)
    assert point.point.fraction_gy == pytest.approx(6.0)
    assert point.grid_gy == pytest.approx(30.0, rel=1e-6)
    assert "although its label FRACTION" in scale.summary
    assert any("dose scale" in n for n in export.dose.notes)


def test_per_fraction_grid_labelled_plan_is_multiplied(tmp_path: Path) -> None:
    # The reverse, which read by its label would make every organ dose 5 times too low.
    export = load_path(write_trust_export(tmp_path, TrustPlan(grid_gy=6.0, summation="PLAN")))
    assert float(export.dose.grid.dose.max()) == pytest.approx(30.0, rel=1e-6)
    scale = export.dose.scale
    assert scale is not None and scale.holds == "fraction" and scale.factor == 5.0
    assert scale.confirmed


def test_fraction_label_on_one_fraction_is_multiplied(tmp_path: Path) -> None:
    export = load_path(write_trust_export(tmp_path, TrustPlan(grid_gy=6.0, summation="FRACTION")))
    assert float(export.dose.grid.dose.max()) == pytest.approx(30.0, rel=1e-6)
    scale = export.dose.scale
    assert scale is not None and scale.confirmed and scale.holds == "fraction"
    assert not any("dose scale" in n for n in export.dose.notes)  # label and data agree


def test_without_a_point_the_label_is_kept_and_unconfirmed(tmp_path: Path) -> None:
    folder = write_trust_export(
        tmp_path,
        TrustPlan(
            grid_gy=6.0, summation="FRACTION", specification_point=None, prescription_gy=30.0
        ),
    )
    export = load_path(folder)
    assert float(export.dose.grid.dose.max()) == pytest.approx(30.0, rel=1e-6)
    scale = export.dose.scale
    assert scale is not None and not scale.confirmed and scale.evidence == ()
    assert "no point where the plan states the dose" in scale.summary
    code, out, _ = run("check", folder, "--protocol", "palliative", "--json", "-")
    assert results(json.loads(out))["integrity.dose_scale_confirmed"]["status"] == "minor"
    assert code == 0  # minor: a caveat for the reader, not a failure without --strict


def test_a_grid_matching_neither_reading_is_an_inconsistent_export(tmp_path: Path) -> None:
    # Beam doses say 30 Gy over the course (6 Gy a fraction) at the point; the grid 18 Gy.
    folder = write_trust_export(
        tmp_path, TrustPlan(grid_gy=18.0, prescription_gy=30.0, summation="PLAN")
    )
    export = load_path(folder)
    assert export.dose.scale is not None and export.dose.scale.contradicted
    assert float(export.dose.grid.dose.max()) == pytest.approx(18.0, rel=1e-6)
    code, out, _ = run("check", folder, "--protocol", "palliative", "--json", "-")
    doc = json.loads(out)
    assert code == 1
    assert results(doc)["integrity.dose_scale_confirmed"]["status"] == "major"
    # ... and the targets' median (18 Gy = 60 % of 30 Gy) fails the prescription check.
    match = rx_match(doc)
    assert match["status"] == "major" and match["measured"] == pytest.approx(60.0, abs=0.01)


def test_a_fraction_dose_of_one_group_of_a_boost_is_refused(tmp_path: Path) -> None:
    # Group 2 (3 fractions) only: not the course of the 28-fraction plan.
    plan = TrustPlan(
        grid_gy=12.0,
        summation="FRACTION",
        groups=((25, (1.0, 1.0)), (3, (2.0, 2.0))),
        referenced_fraction_group=2,
    )
    with pytest.raises(InputError, match=r"holds fraction group\(s\) \[2\] only"):
        load_path(write_trust_export(tmp_path, plan))


def test_a_fraction_dose_of_a_group_the_plan_lacks_is_refused(tmp_path: Path) -> None:
    plan = TrustPlan(grid_gy=6.0, summation="FRACTION", referenced_fraction_group=7)
    with pytest.raises(InputError, match="does not have"):
        load_path(write_trust_export(tmp_path, plan))


def test_fraction_dose_of_groups_with_equal_dose_per_fraction(tmp_path: Path) -> None:
    # 25 + 10 fractions of 2 Gy at the point; the grid holds one fraction (2 Gy).
    plan = TrustPlan(grid_gy=2.0, summation="FRACTION", groups=((25, (1.0, 1.0)), (10, (1.0, 1.0))))
    export = load_path(write_trust_export(tmp_path, plan))
    scale = export.dose.scale
    assert scale is not None and scale.confirmed and scale.factor == 35.0
    assert float(export.dose.grid.dose.max()) == pytest.approx(70.0, rel=1e-6)


def test_points_that_disagree_fail_the_plan(tmp_path: Path) -> None:
    # A per-fraction grid (3 Gy) labelled PLAN: the beams' point reads one fraction of
    # 10 x 3 Gy, a target dose reference point written per fraction (3 Gy) reads course.
    plan = TrustPlan(
        grid_gy=3.0,
        groups=((10, (1.5, 1.5)),),
        dose_references=[("PTV", "TARGET", 3.0, (0.0, 0.0, 0.0))],
    )
    folder = write_trust_export(tmp_path, plan)
    scale = load_path(folder).dose.scale
    assert scale is not None and scale.contradicted and not scale.confirmed
    code, out, _ = run("check", folder, "--protocol", "palliative", "--json", "-")
    doc = json.loads(out)
    assert results(doc)["integrity.dose_scale_confirmed"]["status"] == "major"
    assert doc["verdict"] == "fail" and code == 1


# -- fraction groups and prescriptions -------------------------------------------------


def boost(prescription_gy: float | None) -> TrustPlan:
    # 25 x 2 Gy then 10 x 3 Gy: 80 Gy in 35 fractions at the specification point.
    return TrustPlan(
        grid_gy=80.0,
        groups=((25, (1.0, 1.0)), (10, (1.5, 1.5))),
        prescription_gy=prescription_gy,
        intent="CURATIVE",
    )


def test_several_fraction_groups_make_one_course(tmp_path: Path) -> None:
    export = load_path(write_trust_export(tmp_path, boost(80.0)))
    plan = export.plan
    assert plan is not None
    assert plan.fractions == 35
    assert [(g.number, g.fractions) for g in plan.fraction_groups] == [(1, 25), (2, 10)]
    assert [g.beam_dose_gy for g in plan.fraction_groups] == [2.0, 3.0]
    assert plan.total_dose_gy == 80.0
    assert export.dose.scale is not None and export.dose.scale.confirmed
    result = check_plan(export, resolve_protocol("palliative"))
    rx = result.prescription
    assert rx is not None and rx.groups == ((25, pytest.approx(2.0)), (10, pytest.approx(3.0)))
    # BED10 = 25 x 2 x 1.2 + 10 x 3 x 1.3 = 60 + 39 = 99 Gy; EQD2 = 99 / 1.2 = 82.5 Gy.
    assert result.facts["bed_gy"]["10"] == pytest.approx(99.0)
    assert result.facts["eqd2_gy"]["10"] == pytest.approx(82.5)


def test_boost_plan_json_lists_every_group(tmp_path: Path) -> None:
    folder = write_trust_export(tmp_path, boost(80.0))
    code, out, _ = run("check", folder, "--protocol", "palliative", "--json", "-")
    doc = json.loads(out)
    assert doc["plan"]["fractions"] == 35
    assert doc["plan"]["fraction_groups"] == [
        {"number": 1, "fractions": 25, "beams": [1, 2], "beam_dose_per_fraction_gy": 2.0},
        {"number": 2, "fractions": 10, "beams": [3, 4], "beam_dose_per_fraction_gy": 3.0},
    ]
    assert doc["prescription"]["fractions"] == 35
    assert doc["prescription"]["groups"] == [
        {"fractions": 25, "dose_per_fraction_gy": 2.0},
        {"fractions": 10, "dose_per_fraction_gy": 3.0},
    ]
    code, out, _ = run("check", folder, "--protocol", "palliative")
    assert code == 0
    assert "35 fractions in 2 groups (25 + 10)" in out
    assert "Prescription: 25 x 2 + 10 x 3 Gy = 80 Gy" in out


def test_no_rule_uses_beam_doses_as_a_prescription(tmp_path: Path) -> None:
    folder = write_trust_export(tmp_path, TrustPlan(grid_gy=30.0, prescription_gy=None))
    export = load_path(folder)
    assert export.plan is not None
    assert export.plan.total_dose_gy is None and export.plan.beam_dose_total_gy == 30.0
    result = check_plan(export, resolve_protocol("palliative"))
    assert result.verdict == "error"
    by_id = {r.id: r for r in result.results}
    assert by_id["integrity.prescription"].status == "not_evaluated"
    assert "--prescription TOTAL/FRACTIONS" in by_id["integrity.prescription"].message
    assert by_id["integrity-rx.prescription_matches_dose"].status == "not_evaluated"
    # ptv-coverage is V95%: a percentage of the prescription, not evaluated without one.
    assert by_id["ptv-coverage"].status == "not_evaluated"
    assert result.facts["bed_gy"] == {}
    code, out, _ = run("check", folder, "--protocol", "palliative")
    assert code == 3
    assert "beam doses add up to 30 Gy" in out and "not a prescription" in out


def test_prescription_given_on_the_command_line(tmp_path: Path) -> None:
    folder = write_trust_export(tmp_path, TrustPlan(grid_gy=30.0, prescription_gy=None))
    code, out, _ = run(
        "check", folder, "--protocol", "palliative", "--prescription", "30/5", "--json", "-"
    )
    doc = json.loads(out)
    assert doc["prescription"]["source"] == "given"
    assert doc["prescription"]["total_gy"] == 30.0
    by_id = results(doc)
    assert by_id["integrity.prescription"]["status"] == "pass"
    assert rx_match(doc)["measured"] == pytest.approx(100.0)
    assert by_id["ptv-coverage"]["status"] == "pass"
    # 5 x 6 Gy: BED10 = 30 x 1.6 = 48 Gy.
    assert doc["facts"]["bed_gy"]["10"] == pytest.approx(48.0)
    assert doc["verdict"] == "pass" and code == 0


def test_given_prescription_with_other_fractions_is_not_used(tmp_path: Path) -> None:
    folder = write_trust_export(tmp_path, TrustPlan(grid_gy=30.0, prescription_gy=None))
    code, out, _ = run(
        "check", folder, "--protocol", "palliative", "--prescription", "30/10", "--json", "-"
    )
    doc = json.loads(out)
    assert doc["prescription"] is None
    assert "gives 10 fractions but the plan plans 5" in doc["prescription_problem"]
    assert code == 3


def test_malformed_prescription_is_a_usage_error(tmp_path: Path) -> None:
    folder = write_trust_export(tmp_path, TrustPlan(grid_gy=30.0))
    code, _, err = run("check", folder, "--prescription", "seventy")
    assert code == 2 and "TOTAL/FRACTIONS" in err


def test_dose_that_does_not_match_its_prescription_fails(tmp_path: Path) -> None:
    # The Eclipse case: the plan says 5 x 2 Gy = 10 Gy, the grid holds 18.5 Gy.
    folder = write_trust_export(
        tmp_path,
        TrustPlan(
            grid_gy=18.5, groups=((5, (1.0, 1.0)),), prescription_gy=10.0, specification_point=None
        ),
    )
    code, out, _ = run("check", folder, "--protocol", "palliative", "--json", "-")
    doc = json.loads(out)
    match = rx_match(doc)
    assert match["status"] == "major"
    assert match["structure"] == "PTV"
    assert match["measured"] == pytest.approx(185.0, abs=0.01)
    assert "18.5 Gy" in match["message"] and "10 Gy" in match["message"]
    assert doc["verdict"] == "fail" and code == 1


# -- protons and brachytherapy ---------------------------------------------------------


@pytest.mark.parametrize(
    ("dose_type", "status"), [("EFFECTIVE", "pass"), ("PHYSICAL", "not_evaluated")]
)
def test_proton_plan_says_its_radiation_and_dose_type(
    tmp_path: Path, dose_type: str, status: str
) -> None:
    folder = write_trust_export(
        tmp_path,
        TrustPlan(grid_gy=30.0, prescription_gy=30.0, radiation="PROTON", dose_type=dose_type),
    )
    export = load_path(folder)
    assert export.plan is not None and export.plan.radiation_type == "PROTON"
    assert export.plan.is_ion and export.plan.treatment_beams == [1, 2]
    assert export.dose.dose_type == dose_type
    code, out, _ = run("check", folder, "--protocol", "palliative", "--json", "-")
    doc = json.loads(out)
    assert doc["plan"]["radiation_type"] == "PROTON"
    assert doc["inputs"]["dose"]["dose_type"] == dose_type
    assert results(doc)["integrity.dose_type"]["status"] == status
    code, out, _ = run("dvh", folder)
    assert code == 0
    assert "PROTON): 5 fractions" in out and f"Dose PLAN, {dose_type}" in out


def test_error_dose_type_is_refused(tmp_path: Path) -> None:
    folder = write_trust_export(tmp_path, TrustPlan(grid_gy=30.0, dose_type="ERROR"))
    with pytest.raises(InputError, match="DoseType ERROR"):
        load_path(folder)


def brachy() -> TrustPlan:
    # Oncentra HDR: the PLAN-labelled grid holds one fraction (5 Gy at the reference
    # points, which carry a per-fraction prescription equal to the setup dose).
    points = [("-", "UNSPECIFIED", 5.0, (0.0, 0.0, z)) for z in (-5.0, 0.0, 5.0)]
    return TrustPlan(
        grid_gy=5.0,
        groups=((5, ()),),
        specification_point=None,
        brachy_setup_dose_gy=5.0,
        dose_references=points,
        intent="CURATIVE",
    )


def test_brachytherapy_check_is_refused_and_dvh_computes(tmp_path: Path) -> None:
    folder = write_trust_export(tmp_path, brachy())
    export = load_path(folder)
    assert export.plan is not None and export.plan.is_brachy
    scale = export.dose.scale
    assert scale is not None and scale.holds == "fraction" and scale.factor == 5.0
    assert len(scale.evidence) == 3 and all(e.reading == "fraction" for e in scale.evidence)
    with pytest.raises(InputError, match="brachytherapy"):
        check_plan(export, resolve_protocol("palliative"))
    code, _, err = run("check", folder, "--protocol", "palliative")
    assert code == 3 and "brachytherapy" in err
    code, out, _ = run("dvh", folder, "--roi", "PTV", "--metric", "Mean[Gy]")
    assert code == 0
    assert "BRACHY" in out and "holds one fraction" in out
    assert "25.00" in out  # 5 fractions x 5 Gy


def test_html_report_shows_the_evidence(tmp_path: Path) -> None:
    plan = TrustPlan(
        grid_gy=80.0,
        summation="FRACTION",
        groups=((25, (1.0, 1.0)), (10, (1.5, 1.5))),
        prescription_gy=80.0,
        radiation="PROTON",
        dose_type="EFFECTIVE",
    )
    folder = write_trust_export(tmp_path / "x", plan)
    page = tmp_path / "report.html"
    code, _, _ = run("check", folder, "--protocol", "palliative", "--html", page)
    assert code == 0
    text = page.read_text()
    assert "35 in 2 fraction groups (25 + 10)" in text
    assert "PROTON" in text and "FRACTION, EFFECTIVE" in text
    assert "the grid holds the course, although its label FRACTION reads as one fraction" in text
    assert "grid 80 Gy; plan: course 80 Gy" in text
    assert "80 Gy (25 x 2 Gy + 10 x 3 Gy)" in text


def test_dvh_takes_a_prescription_for_percent_doses(tmp_path: Path) -> None:
    folder = write_trust_export(tmp_path, TrustPlan(grid_gy=30.0, prescription_gy=None))
    code, _, err = run("dvh", folder, "--roi", "PTV", "--metric", "V100%[%]")
    assert code == 3 and "no prescription dose is known" in err
    code, out, _ = run(
        "dvh",
        folder,
        "--roi",
        "PTV",
        "--metric",
        "V100%[%]",
        "--metric",
        "Mean[%]",
        "--prescription",
        "25/5",
        "--json",
        "-",
    )
    doc = json.loads(out)
    assert code == 0 and doc["prescription_gy"] == 25.0
    (ptv,) = doc["structures"]
    # 30 Gy everywhere: all of the PTV gets 100 % of 25 Gy; the mean is 120 %.
    assert ptv["metrics"] == pytest.approx({"V100%[%]": 100.0, "Mean[%]": 120.0}, rel=1e-6)
    assert doc["dose"]["scale"]["holds"] == "course"


@pytest.mark.parametrize("command", ["batch", "watch"])
def test_batch_and_watch_take_a_prescription(tmp_path: Path, command: str) -> None:
    root, out = tmp_path / "archive", tmp_path / "out"
    write_trust_export(root / "P1", TrustPlan(grid_gy=30.0, prescription_gy=None))
    extra = ("--once", "--settle", "0") if command == "watch" else ("--workers", "1")
    code, _, _ = run(command, root, "--out", out, "--protocol", "palliative", *extra)
    assert code == 3  # no prescription: the plan cannot pass
    (report,) = out.rglob("*.json")
    assert json.loads(report.read_text())["prescription"] is None
    for old in out.rglob("*.json"):
        old.unlink()
    # A new output folder: watch's ledger remembers the plan, batch refuses an earlier run.
    out = tmp_path / "out2"
    code, _, _ = run(
        command, root, "--out", out, "--protocol", "palliative", "--prescription", "30/5", *extra
    )
    assert code == 0
    (report,) = out.rglob("*.json")
    doc = json.loads(report.read_text())
    assert doc["prescription"]["source"] == "given" and doc["verdict"] == "pass"


def test_malformed_prescription_is_a_usage_error_in_batch(tmp_path: Path) -> None:
    code, _, err = run("batch", tmp_path, "--out", tmp_path / "out", "--prescription", "70")
    assert code == 2 and "TOTAL/FRACTIONS" in err


def test_brachytherapy_told_by_its_application_setups_alone(tmp_path: Path) -> None:
    folder = write_trust_export(tmp_path, brachy())
    ds = dcmread(folder / "RP.dcm")
    del ds.BrachyTreatmentType, ds.BrachyTreatmentTechnique, ds.ApplicationSetupSequence
    ds.save_as(folder / "RP.dcm", enforce_file_format=True)
    export = load_path(folder)
    assert export.plan is not None and export.plan.is_brachy
    code, _, err = run("check", folder, "--protocol", "palliative")
    assert code == 3 and "brachytherapy" in err


def test_ion_plan_without_radiation_type_is_still_an_ion_plan(tmp_path: Path) -> None:
    folder = write_trust_export(
        tmp_path, TrustPlan(grid_gy=30.0, prescription_gy=30.0, radiation="PROTON")
    )
    ds = dcmread(folder / "RP.dcm")
    for beam in ds.IonBeamSequence:
        del beam.RadiationType
    ds.save_as(folder / "RP.dcm", enforce_file_format=True)
    export = load_path(folder)
    assert export.plan is not None and export.plan.radiation_type == "ION" and export.plan.is_ion
    code, out, _ = run("check", folder, "--protocol", "palliative", "--json", "-")
    assert results(json.loads(out))["integrity.dose_type"]["status"] == "not_evaluated"
    assert code == 3


def test_per_phase_prescriptions_are_not_the_course(tmp_path: Path) -> None:
    # 25 x 2 Gy (50 Gy) then 10 x 2 Gy (20 Gy boost), each with its own TARGET dose reference.
    plan = TrustPlan(
        grid_gy=70.0,
        groups=((25, (1.0, 1.0)), (10, (1.0, 1.0))),
        dose_references=[("PTV_50", "TARGET", 50.0), ("PTV_boost", "TARGET", 20.0)],
    )
    folder = write_trust_export(tmp_path, plan)
    export = load_path(folder)
    assert export.plan is not None and export.plan.total_dose_gy is None
    assert "several target prescriptions (50, 20 Gy)" in export.plan.prescription_problem
    result = check_plan(export, resolve_protocol("palliative"))
    assert result.prescription is None and result.verdict == "error"
    assert "several target prescriptions" in result.prescription_problem
    result = check_plan(export, resolve_protocol("palliative"), prescription=(70.0, 35))
    assert result.prescription is not None and result.prescription.total_gy == 70.0


def test_a_boost_phase_named_with_its_own_dose_is_not_judged_at_it(tmp_path: Path) -> None:
    # Sequential boost: PTV_boost_20Gy receives the whole course (70 Gy), not 20 Gy.
    plan = TrustPlan(
        grid_gy=70.0, groups=((25, (1.0, 1.0)), (10, (1.0, 1.0))), prescription_gy=70.0
    )
    folder = write_trust_export(tmp_path, plan)
    ds = dcmread(folder / "RS.dcm")
    ds.StructureSetROISequence[0].ROIName = "PTV_boost_20Gy"
    ds.save_as(folder / "RS.dcm", enforce_file_format=True)
    result = check_plan(load_path(folder), resolve_protocol("palliative"))
    (coverage,) = [r for r in result.results if r.id == "ptv-coverage"]
    assert coverage.status == "not_evaluated"
    assert "may be one phase's dose" in coverage.message


def test_a_plan_without_fractions_cannot_pass(tmp_path: Path) -> None:
    folder = write_trust_export(tmp_path, TrustPlan(grid_gy=30.0, prescription_gy=30.0))
    ds = dcmread(folder / "RP.dcm")
    del ds.FractionGroupSequence[0].NumberOfFractionsPlanned
    ds.save_as(folder / "RP.dcm", enforce_file_format=True)
    code, out, _ = run("check", folder, "--protocol", "palliative", "--json", "-")
    doc = json.loads(out)
    assert results(doc)["integrity.prescription"]["status"] == "not_evaluated"
    assert doc["verdict"] == "error" and code == 3
    code, out, _ = run(
        "check", folder, "--protocol", "palliative", "--prescription", "30/5", "--json", "-"
    )
    doc = json.loads(out)
    assert results(doc)["integrity.prescription"]["status"] == "pass"
    assert doc["prescription"]["fractions"] == 5
