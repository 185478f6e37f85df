"""Real planning-system exports (../shared/data/real-exports), read as their systems meant.

Skipped when the shared data folder is absent. What is asserted is known from the files
independently of rtcheck: the Beam Dose values and fractions of each RTPLAN (read with
pydicom here, by hand in the README of the folder), the vendors' documented behaviour.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydicom import dcmread
from typer.testing import CliRunner

from rtcheck.cli.main import app
from rtcheck.dicom_io import load_path

pytestmark = pytest.mark.shared_data

EXPORTS = (
    "eclipse_phantom_1",
    "monaco_hn_1",
    "oncentra_gyn_1",
    "pinnacle_brain_6",
    "pinnacle_hn_2",
    "pinnacle_hn_4",
    "raystation_protonphantom_1",
)


def run(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def real(shared_data: Path) -> Path:
    return shared_data / "real-exports"


def course_at_point(folder: Path) -> float:
    """Sum over fraction groups of the Beam Doses times the fractions, from the RTPLAN."""
    (rp,) = folder.glob("RP*.dcm")
    ds = dcmread(rp, force=True)
    return sum(
        float(b.BeamDose) * int(g.NumberOfFractionsPlanned)
        for g in ds.FractionGroupSequence
        for b in g.ReferencedBeamSequence
    )


@pytest.mark.parametrize("name", EXPORTS)
def test_every_export_gives_dvhs(real: Path, name: str) -> None:
    code, out, err = run("dvh", real / name, "--json", "-")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["structures"]
    assert any(s["volume_cc"] and s["volume_cc"] > 0 for s in doc["structures"])


@pytest.mark.parametrize(
    ("name", "label", "fractions"),
    [
        ("pinnacle_brain_6", "FRACTION", 5),
        ("pinnacle_hn_2", "PLAN", 35),
        ("pinnacle_hn_4", "PLAN", 35),
        ("monaco_hn_1", "PLAN", 30),
        ("raystation_protonphantom_1", "PLAN", 1),
    ],
)
def test_dose_scale_confirmed_at_the_specification_point(
    real: Path, name: str, label: str, fractions: int
) -> None:
    export = load_path(real / name)
    assert export.plan is not None and export.plan.fractions == fractions
    scale = export.dose.scale
    assert scale is not None
    assert scale.label == label and scale.holds == "course" and scale.confirmed
    assert scale.factor == 1.0
    (point,) = scale.evidence
    expected = course_at_point(real / name)
    assert point.point.course_gy == pytest.approx(expected)
    assert point.grid_gy == pytest.approx(expected, rel=0.01)


def test_pinnacle_fraction_label_is_not_multiplied(real: Path) -> None:
    export = load_path(real / "pinnacle_brain_6")
    # 31.0 Gy at the point = (3.21741 + 2.98305) Gy x 5: the grid's 35 Gy maximum is the
    # course (read by its label it would have been 175 Gy).
    assert float(export.dose.grid.dose.max()) == pytest.approx(35.04, abs=0.01)


def test_boost_plan_reads_as_35_fractions(real: Path) -> None:
    export = load_path(real / "pinnacle_hn_2")
    plan = export.plan
    assert plan is not None
    assert [g.fractions for g in plan.fraction_groups] == [25, 7, 3]
    assert plan.fractions == 35
    assert plan.total_dose_gy is None  # no Target Prescription Dose in the plan
    assert plan.beam_dose_total_gy == pytest.approx(course_at_point(real / "pinnacle_hn_2"))
    code, out, _ = run("check", real / "pinnacle_hn_2", "--protocol", "palliative")
    assert code == 3
    assert "35 fractions in 3 groups (25 + 7 + 3)" in out
    assert "not a prescription" in out
    code, out, _ = run("check", real / "pinnacle_hn_2", "--protocol", "palliative", "--json", "-")
    doc = json.loads(out)
    assert doc["verdict"] == "error" and doc["prescription"] is None
    # No rule relative to the prescription ran: PTV1_50Gy, PTV3_6 Gy are not judged at the
    # phase doses in their names.
    relative = [r for r in doc["results"] if r["metric"] and "%" in r["metric"].split("[")[0]]
    assert relative and all(r["status"] == "not_evaluated" for r in relative)
    code, out, _ = run(
        "check", real / "pinnacle_hn_2", "--protocol", "hn-locoregional-metastatic", "--json", "-"
    )
    results = json.loads(out)["results"]
    # The phases' names (PTV2_14 G, PTV3_6 Gy) are not read as elective dose levels (a
    # measured median well below the boost's may still be, by dose)...
    (elective,) = [r for r in results if r["id"] == "no-elective-volume"]
    assert "in the name" not in elective["message"]
    # ... and absolute organ limits need the course's 35 fractions, not a prescription.
    (cord,) = [r for r in results if r["id"] == "cord-max"]
    assert cord["status"] != "not_evaluated" and "35-fraction" in cord["limit"]


def test_eclipse_dose_does_not_match_its_prescription(real: Path) -> None:
    code, out, _ = run(
        "check", real / "eclipse_phantom_1", "--protocol", "palliative", "--json", "-"
    )
    doc = json.loads(out)
    (match,) = [r for r in doc["results"] if r["id"].endswith(".prescription_matches_dose")]
    assert match["status"] == "major"
    # PTV_High median about 19.4 Gy against 10 Gy (the TPS's own DVH gives a mean of 18.5).
    assert match["measured"] == pytest.approx(194, abs=3)
    assert doc["verdict"] == "fail" and code == 1


def test_proton_plan_is_named_as_such(real: Path) -> None:
    export = load_path(real / "raystation_protonphantom_1")
    assert export.plan is not None and export.plan.radiation_type == "PROTON"
    assert export.dose.dose_type == "PHYSICAL"
    code, out, _ = run("dvh", real / "raystation_protonphantom_1")
    assert code == 0 and "PROTON" in out and "Dose PLAN, PHYSICAL" in out


def test_brachytherapy_refused_by_check_computed_by_dvh(real: Path) -> None:
    code, _, err = run("check", real / "oncentra_gyn_1")
    assert code == 3 and "brachytherapy" in err
    export = load_path(real / "oncentra_gyn_1")
    scale = export.dose.scale
    assert scale is not None and scale.holds == "fraction" and scale.factor == 5.0
    assert all(e.reading == "fraction" for e in scale.evidence)


def test_pinnacle_elective_neck_is_seen_in_the_dose(real: Path) -> None:
    # A conventional 70 Gy head-and-neck plan with an elective neck (its structure set
    # names H&N PTV_54Gy): the dose shows the elective plateau whatever the names say.
    code, out, _ = run(
        "check",
        real / "pinnacle_hn_4",
        "--protocol",
        "hn-locoregional-metastatic",
        "--prescription",
        "70/35",
        "--json",
        "-",
    )
    doc = json.loads(out)
    (dose,) = [r for r in doc["results"] if r["id"] == "no-elective-volume.dose"]
    assert dose["status"] == "major" and code == 1
    largest = doc["facts"]["elective_dose"]["regions"][0]
    assert largest["volume_cc"] > 500
    # The plateau: the 54-56 Gy elective levels, not the 70 Gy of the gross disease.
    assert 50 <= largest["median_gy"] <= 60
    assert any(r["name"] == "H&N PTV_54Gy" for r in largest["rois"])
