"""Reports that speak plainly (issue 12): a rule that could not be evaluated shows the
limit that would have applied, in every report; tiny doses never print in exponent
notation; the verdict says why when rules were not evaluated.

The plan is the 3 x 18 Gy peripheral lung SABR plan of the golden tests, its RTPLAN
stripped of its Dose Reference Sequence: without a prescription the coverage, plan-quality,
schedule and BED rules of ``sabr-lung`` cannot be evaluated (their limits are those of
``rtcheck/protocols/sabr-lung.yaml``, copied here by hand), while the organ limits,
tabulated by fraction count, still are.
"""

from __future__ import annotations

import csv
import html as html_module
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from typer.testing import CliRunner

from rtcheck.cli.main import app
from rtcheck.reports.common import dose_text, number_text
from tests.fixtures.plans import write_plan_export
from tests.test_golden import GROSS, PERIPHERAL, PRIMARY, head_neck, lung

#: The limits of sabr-lung's rules that need a prescription, as the YAML states them.
EXPECTED_LIMITS = {
    "ptv-coverage": ("V100%[%]", ">= 95 %"),  # min: 95
    "gtv-coverage": ("V100%[%]", ">= 95 %"),  # min: 95
    "ptv-near-minimum": ("V90%[%]", ">= 99 %"),  # min: 99
    "ptv-r100": ("R100", "<= 1.2"),  # max: 1.2
    # Tables by PTV volume, 1.8 to 163 cc: R50 5.9 down to 2.9, D2cm 50 up to 77 %.
    "ptv-r50": ("R50", "<= 2.9-5.9 by target volume (1.8-163 cc)"),
    "ptv-d2cm": ("D2cm", "<= 50-77 % by target volume (1.8-163 cc)"),
    "ptv-max-inside": ("max_in_target", "<= 0 mm"),  # max: 0
    # One fraction of 16-30 Gy, three of 15-20 Gy, eight of 7.5 Gy.
    "schedule-peripheral": (None, "1 fx x 16-30 Gy; 3 fx x 15-20 Gy; 8 fx x 7.5 Gy"),
    "integrity.prescription_matches_dose": (None, "median 90-140 % of the prescription"),
}


@dataclass(frozen=True)
class Reports:
    terminal: str
    doc: dict[str, Any]
    html: str
    rows: list[dict[str, str]]
    code: int


def _run_check(folder: Path, protocol: str = "sabr-lung", columns: int = 100) -> Reports:
    out = folder.parent
    result = CliRunner().invoke(
        app,
        [
            "check",
            str(folder),
            "--protocol",
            protocol,
            "--json",
            str(out / "r.json"),
            "--html",
            str(out / "r.html"),
            "--csv",
            str(out / "r.csv"),
        ],
        env={"COLUMNS": str(columns)},
    )
    assert result.exit_code in (0, 1, 3), result.output
    return Reports(
        result.stdout,
        json.loads((out / "r.json").read_text(encoding="utf-8")),
        (out / "r.html").read_text(encoding="utf-8"),
        list(csv.DictReader(io.StringIO((out / "r.csv").read_text(encoding="utf-8")))),
        result.exit_code,
    )


def _strip_plan(folder: Path, *keywords: str) -> Path:
    """The export with these attributes deleted from its RTPLAN."""
    (rp,) = folder.glob("RP*.dcm")
    ds = pydicom.dcmread(rp)
    for keyword in keywords:
        delattr(ds, keyword)
    ds.save_as(rp, enforce_file_format=True)
    return folder


@pytest.fixture(scope="module")
def no_prescription(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = write_plan_export(tmp_path_factory.mktemp("norx") / "plan", lung(PERIPHERAL, 3, 18))
    return _strip_plan(folder, "DoseReferenceSequence")


@pytest.fixture(scope="module")
def reports(no_prescription: Path) -> Reports:
    return _run_check(no_prescription)


def _result(doc: dict[str, Any], rule_id: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [r for r in doc["results"] if r["id"] == rule_id]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("rule_id", list(EXPECTED_LIMITS))
def test_json_not_evaluated_results_carry_the_limit(reports: Reports, rule_id: str) -> None:
    metric, limit = EXPECTED_LIMITS[rule_id]
    r = _result(reports.doc, rule_id)
    assert r["status"] == "not_evaluated", r
    assert r["limit"] == limit
    assert r["measured"] is None
    if metric is not None:
        assert r["metric"] == metric


def test_bed_and_elective_dose_not_evaluated_show_their_limits(tmp_path: Path) -> None:
    # A 35 x 2 Gy H&N plan stating neither intent nor prescription: whether the curative
    # BED rule applies is unknown, and the dose levels of the elective-dose rule too.
    # hn-locoregional-metastatic: BED10 >= 72 Gy; at most 10 cc at 65 % of the
    # prescription farther than 20 mm from the 95 % dose.
    folder = write_plan_export(tmp_path / "plan", head_neck((PRIMARY, GROSS), 35, 2.0))
    got = _run_check(
        _strip_plan(folder, "DoseReferenceSequence", "PlanIntent"), "hn-locoregional-metastatic"
    )
    bed = _result(got.doc, "bed10-curative")
    assert bed["status"] == "not_evaluated" and "applies" in bed["message"]
    assert (bed["metric"], bed["limit"]) == ("BED10", ">= 72 Gy")
    dose = _result(got.doc, "no-elective-volume.dose")
    assert dose["status"] == "not_evaluated"
    assert (
        dose["limit"] == "<= 10 cc at >= 65 % of the prescription beyond 20 mm of the dose >= 95 %"
    )
    table = " ".join(got.terminal.split())
    assert "BED10 not measured, limit >= 72 Gy" in table


def test_every_not_evaluated_result_with_a_limit_shows_it(reports: Reports) -> None:
    """No N/E result of a rule that states a limit is left without one (issue 12)."""
    missing = [
        r["id"]
        for r in reports.doc["results"]
        if r["status"] == "not_evaluated" and not r["limit"] and r["kind"] != "integrity"
    ]
    assert not missing


@pytest.mark.parametrize("rule_id", list(EXPECTED_LIMITS))
def test_terminal_csv_and_html_show_the_same_limit(reports: Reports, rule_id: str) -> None:
    metric, limit = EXPECTED_LIMITS[rule_id]
    # Terminal: the CHECK column says it was not measured and what the limit was.
    table = " ".join(reports.terminal.split())
    assert f"{metric + ' ' if metric else ''}not measured, limit {limit}" in table
    # CSV: the limit column.
    (row,) = [r for r in reports.rows if r["rule_id"] == rule_id]
    assert row["status"] == "not_evaluated" and row["limit"] == limit and row["measured"] == ""
    # HTML: the Limit column of the rule's row, never "-".
    tr = re.search(rf'<tr class="rule[^"]*" data-rule="{re.escape(rule_id)}".*?</tr>', reports.html)
    assert tr is not None
    cell = re.search(r'<td class="limit">([^<]*)</td>', tr.group(0))
    assert cell is not None and html_module.unescape(cell.group(1)) == limit


def test_a_tabulated_organ_limit_not_evaluated_is_the_one_for_the_course(
    tmp_path: Path,
) -> None:
    # The grid stops inside the lungs: their 3-fraction volume rules are not evaluated,
    # and the cord limits by fraction count are those of 3 fractions (TG-101: 21.9 Gy
    # to 0.035 cc), not the whole table.
    from dataclasses import replace

    spec = replace(lung(PERIPHERAL, 3, 18), grid_crop_x=(-140.0, 80.0))
    got = _run_check(write_plan_export(tmp_path / "plan", spec))
    lungs = _result(got.doc, "lungs-1000cc-3fx")
    assert lungs["status"] == "not_evaluated" and lungs["limit"] == ">= 1000 cc"
    cord = _result(got.doc, "cord-max")
    assert cord["limit"] == "<= 21.9 Gy (3-fraction limit)"


def test_verdict_says_why_when_rules_are_not_evaluated(reports: Reports) -> None:
    doc = reports.doc
    missing = sum(1 for r in doc["results"] if r["status"] == "not_evaluated")
    assert missing >= len(EXPECTED_LIMITS)
    reason = f"{missing} results not evaluated: a plan is never passed on a part of it"
    assert doc["verdict"] == "error" and reports.code == 3
    assert doc["verdict_reason"] == reason
    *_, why, verdict = reports.terminal.rstrip().split("\n\n")[-1].split("\n")
    assert verdict == "VERDICT: ERROR"  # the last line
    assert why == reason[0].upper() + reason[1:] + "."
    assert html_module.escape(reason) in reports.html


def test_a_fail_with_rules_not_evaluated_says_it_stands(tmp_path: Path) -> None:
    # 3 x 18 Gy to a peripheral lesion without a prescription, and a grid cut through
    # the lungs: organ limits still fail or pass, the rest is not evaluated. A plan with
    # a major deviation fails whatever the rest would give (docs/protocols.md).
    from dataclasses import replace

    spec = replace(lung(PERIPHERAL, 3, 18), grid_crop_x=(-140.0, 80.0))
    folder = write_plan_export(tmp_path / "plan", spec)
    got = _run_check(folder)
    statuses = {r["status"] for r in got.doc["results"]}
    assert "major" in statuses and "not_evaluated" in statuses
    missing = sum(1 for r in got.doc["results"] if r["status"] == "not_evaluated")
    reason = (
        f"a major deviation; {missing} result{'s' if missing != 1 else ''} not evaluated "
        "as well, which cannot make the plan pass"
    )
    assert got.doc["verdict"] == "fail" and got.code == 1
    assert got.doc["verdict_reason"] == reason
    last = " ".join(got.terminal.rstrip().split("\n\n")[-1].split())
    assert last == f"{reason[0].upper()}{reason[1:]}. VERDICT: FAIL"
    assert got.terminal.rstrip().split("\n")[-1] == "VERDICT: FAIL"


# -- tiny doses ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (2.2e-05, "0.00"),
        (0.0, "0.00"),
        (0.004999, "0.00"),
        (0.005, "0.01"),
        (0.244, "0.24"),
        (66.8712, "66.87"),
        (None, "-"),
        (float("nan"), "-"),
    ],
)
def test_dose_text(value: float | None, shown: str) -> None:
    assert dose_text(value) == shown


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (2.2e-05, "0.000022"),
        (0.0, "0"),
        (96.3512, "96.35"),
        (1814.2, "1814"),
        (123456.7, "123457"),
        (0.03456, "0.03456"),
        (None, "-"),
    ],
)
def test_number_text(value: float | None, shown: str) -> None:
    assert number_text(value) == shown


EXPONENT = re.compile(r"\d[eE][-+]?\d")


def test_tiny_doses_are_never_in_exponent_notation(reports: Reports) -> None:
    stats = {s["name"]: s for s in reports.doc["dvh_statistics"] if s["computed"]}
    # The JSON keeps the exact numbers: some organ far from the lesion gets a dose below
    # 0.005 Gy that is not zero.
    tiny = [
        (name, value)
        for name, s in stats.items()
        for value in (s["mean_gy"], *s["doses_gy"].values())
        if value is not None and 0 < value < 0.005
    ]
    assert tiny
    section = reports.html.split('id="dvh-statistics"', 1)[1].split("</table>", 1)[0]
    assert not EXPONENT.search(section)
    for name, _ in tiny:
        row = re.search(rf"<tr><td>{re.escape(html_module.escape(name))}</td>(.*?)</tr>", section)
        assert row is not None
        cells = re.findall(r"<td>([^<]*)</td>", row.group(1))
        # Volume, then min, mean, max, D98, D95, D50, D2 to 0.01 Gy.
        assert all(re.fullmatch(r"\d+\.\d\d", c) for c in cells[1:]), cells
        assert cells[2] == dose_text(stats[name]["mean_gy"])
    assert not EXPONENT.search(reports.terminal)
    assert not any(EXPONENT.search(v) for row in reports.rows for v in row.values() if v)


def test_dvh_table_and_csv_have_no_exponent(no_prescription: Path, tmp_path: Path) -> None:
    out = tmp_path / "dvh.csv"
    result = CliRunner().invoke(
        app, ["dvh", str(no_prescription), "--csv", str(out), "--json", str(tmp_path / "d.json")]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "d.json").read_text(encoding="utf-8"))
    tiny = [
        v
        for s in doc["structures"]
        for v in (s["mean_gy"], *s["metrics"].values())
        if v is not None and 0 < v < 1e-4
    ]
    assert tiny  # exponent notation in Python's shortest form: 2.2e-05
    assert not EXPONENT.search(result.stdout)
    text = out.read_text(encoding="utf-8")
    assert not EXPONENT.search(text)
    numbers = [float(c) for row in csv.reader(io.StringIO(text)) for c in row[4:] if _num(c)]
    assert any(0 < v < 1e-4 for v in numbers)  # written positionally, still exact


def _num(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# -- agreement is a note -------------------------------------------------------------------


def _beam_doses_beside_the_plan_dose(folder: Path) -> Path:
    """One BEAM dose per beam of the plan, each its share of the PLAN dose: they agree."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import generate_uid

    (rd,) = folder.glob("RD*.dcm")
    plan = pydicom.dcmread(next(folder.glob("RP*.dcm")))
    beams = [int(b.BeamNumber) for b in plan.BeamSequence]
    for number in beams:
        ds = pydicom.dcmread(rd)
        ds.DoseSummationType = "BEAM"
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        beam = Dataset()
        beam.ReferencedBeamNumber = number
        group = Dataset()
        group.ReferencedFractionGroupNumber = 1
        group.ReferencedBeamSequence = Sequence([beam])
        ds.ReferencedRTPlanSequence[0].ReferencedFractionGroupSequence = Sequence([group])
        ds.DoseGridScaling = float(ds.DoseGridScaling) / len(beams)
        ds.save_as(folder / f"RD_beam{number}.dcm", enforce_file_format=True)
    return folder


def test_beam_doses_that_agree_are_a_note_not_a_warning(tmp_path: Path) -> None:
    folder = _beam_doses_beside_the_plan_dose(
        write_plan_export(tmp_path / "plan", lung(PERIPHERAL, 3, 18))
    )
    agreement = "PLAN dose used; the sum of the"
    result = CliRunner().invoke(
        app, ["check", str(folder), "--protocol", "sabr-lung", "--json", str(tmp_path / "c.json")]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "c.json").read_text(encoding="utf-8"))
    assert any(n.startswith(agreement) for n in doc["notes"])
    assert not any(agreement in w for w in doc["warnings"])
    assert any(line.startswith(f"note: {agreement}") for line in result.stderr.splitlines())
    assert not any(agreement in line for line in result.stderr.splitlines() if "warning" in line)
    dvh = CliRunner().invoke(app, ["dvh", str(folder), "--json", str(tmp_path / "d.json")])
    assert dvh.exit_code == 0, dvh.output
    dvh_doc = json.loads((tmp_path / "d.json").read_text(encoding="utf-8"))
    assert any(n.startswith(agreement) for n in dvh_doc["notes"])
    assert not any(agreement in w for w in dvh_doc["warnings"])
    assert f"note: {agreement}" in dvh.stderr


# -- converted limits ----------------------------------------------------------------------


def test_a_converted_limit_is_rounded_for_people_and_exact_in_json(tmp_path: Path) -> None:
    # Palliative 5 x 4 Gy: the cord's 50 Gy in 2 Gy fractions (alpha/beta 2) converted to
    # 5 fractions: d (1 + d/2) x 5 = 50 (1 + 2/2) gives d = -1 + sqrt(41), 5 d = 27.0156 Gy.
    from dataclasses import replace

    spec = replace(lung(PERIPHERAL, 5, 4), intent="PALLIATIVE", label="PALL_LUNG")
    got = _run_check(write_plan_export(tmp_path / "plan", spec), "palliative")
    exact = _result(got.doc, "cord-max-eqd2")["limit"]
    assert exact.startswith("<= 27.0156 Gy (50 Gy in 2 Gy fractions")
    rounded = exact.replace("27.0156", "27.0")
    assert rounded in " ".join(got.terminal.split())
    assert "27.0156" not in got.terminal
    (row,) = [r for r in got.rows if r["rule_id"] == "cord-max-eqd2"]
    assert row["limit"] == rounded and "27.0156" not in row["message"]
