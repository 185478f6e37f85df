"""End-to-end tests of the ``rtcheck`` command line.

Inputs are synthetic exports written with :mod:`rtcheck.synthetic` into ``tmp_path`` (bad
ones made by editing a good file with pydicom or by cutting its bytes), pydicom's bundled
RT files, and the real exports of ``../shared/data`` (those tests skip when it is absent).
Most tests run the typer app in-process with ``CliRunner``; a few start the installed
``rtcheck`` console script in a real process.

Hand values: a 20 x 20 x 20 mm box drawn on 8 planes 2.5 mm apart (slab model: exactly
8 cc) and a sphere of 64-gons in a uniform 54 Gy dose, prescription 3 x 18 Gy = 54 Gy.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import io
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread, examples
from typer.testing import CliRunner, Result

import rtcheck.analysis
from rtcheck.cli.main import app
from rtcheck.dvh.core import ContourPlane, DoseGrid
from rtcheck.synthetic import (
    SyntheticBeam,
    SyntheticRoi,
    circle_polygon,
    sphere_planes,
    synthetic_uid,
)
from tests.fixtures.exports import Export, patch
from tests.fixtures.exports import write_export as write_shared_export

FOR = synthetic_uid("cli", "frame")
STUDY = synthetic_uid("cli", "study")
PATIENT = "CLI-PATIENT"
RX_GY = 54.0
FRACTIONS = 3
#: Dose grid nodes (mm) on every axis: -30 ... 30, so the grid's box is -31.25 ... 31.25.
AXIS = np.arange(-30.0, 30.0 + 1e-9, 2.5)
#: Contour planes (mm): 8 planes 2.5 mm apart, slabs from -10 to 10 mm.
PLANES_Z = [-8.75 + 2.5 * k for k in range(8)]
SPHERE_R = 10.0
SPHERE_N = 64


# ----------------------------------------------------------------------------- builders


def box_roi(
    number: int = 1, name: str = "PTV", x0: float = -10.0, x1: float = 10.0
) -> SyntheticRoi:
    """A box x0..x1 x -10..10 x -10..10 mm (one square per plane, slabs of 2.5 mm)."""
    square = np.array([[x0, -10.0], [x1, -10.0], [x1, 10.0], [x0, 10.0]])
    return SyntheticRoi(number, name, "PTV", [ContourPlane(z, (square,)) for z in PLANES_Z])


def sphere_roi(number: int = 2, name: str = "Sphere") -> SyntheticRoi:
    return SyntheticRoi(
        number, name, "ORGAN", sphere_planes((0.0, 0.0, 0.0), SPHERE_R, PLANES_Z, n=SPHERE_N)
    )


def sphere_volume_cc() -> float:
    """Slab volume of the sphere: sum of the 64-gon areas times 2.5 mm, by hand."""
    area = [
        0.5 * SPHERE_N * (SPHERE_R**2 - z**2) * math.sin(2 * math.pi / SPHERE_N) for z in PLANES_Z
    ]
    return sum(area) * 2.5 / 1000.0


def uniform_grid(value: float = RX_GY, x: Any = AXIS) -> DoseGrid:
    x = np.asarray(x, dtype=np.float64)
    return DoseGrid(x, AXIS, AXIS, np.full((AXIS.size, AXIS.size, x.size), value))


def write_export(
    folder: Path,
    *,
    name: str = "A",
    rois: Sequence[SyntheticRoi] | None = None,
    grid: DoseGrid | None = None,
    write_rs: bool = True,
    **dose_kwargs: Any,
) -> Export:
    """RS, RP (3 x 18 Gy = 54 Gy) and RD (PLAN, 32 bits) of one plan in ``folder``."""
    dose_kwargs.setdefault("bits", 32)
    dose_kwargs.setdefault("sop_instance_uid", synthetic_uid("cli", name, "rd"))
    return write_shared_export(
        folder,
        tag="cli",
        name=name,
        rois=[box_roi(), sphere_roi()] if rois is None else rois,
        grid=uniform_grid() if grid is None else grid,
        fractions=FRACTIONS,
        dose_per_fraction_gy=RX_GY / FRACTIONS,
        prescription_gy=RX_GY,
        beams=[
            SyntheticBeam(1, "ARC1", "TREATMENT", 300.0, 9.0),
            SyntheticBeam(2, "ARC2", "TREATMENT", 280.0, 9.0),
            SyntheticBeam(3, "SETUP", "SETUP", 0.0, None),
        ],
        frame_uid=FOR,
        study_uid=STUDY,
        patient_id=PATIENT,
        write_rs=write_rs,
        **dose_kwargs,
    )


# ----------------------------------------------------------------------------- running


def run(*args: Any) -> Result:
    """Invoke the CLI in-process; stdout and stderr are kept apart."""
    return CliRunner().invoke(app, [str(a) for a in args])


def lines(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


def assert_clean(result: Result) -> None:
    """No traceback and no uncaught exception, whatever the exit code."""
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )


def report(result: Result) -> dict[str, Any]:
    """The JSON document a ``--json -`` run printed on stdout."""
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def by_name(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in document["structures"]}


# ----------------------------------------------------------------------------- 1. dvh FOLDER


@pytest.fixture
def export(tmp_path: Path) -> Export:
    return write_export(tmp_path / "export")


METRICS = ("V100%[%]", "D95%[Gy]", "D0.03cc[Gy]", "Mean[Gy]", "V54Gy[cc]", "DC2%[Gy]")


def test_dvh_folder_prints_a_table(export: Export) -> None:
    # Hand values of the slab model (the default shape model has its own tests).
    result = run("dvh", export.folder, "--between-planes", "slab")
    assert result.exit_code == 0, result.output
    assert_clean(result)
    out = result.stdout
    assert f"Patient {PATIENT}" in out
    assert "Plan 'PLAN_A'" in out and "3 x 18 Gy = 54 Gy" in out
    assert "Dose PLAN, PHYSICAL: RD_A.dcm" in out
    header = next(line for line in out.splitlines() if line.startswith("ROI"))
    for column in ("Volume[cc]", "Min[Gy]", "Mean[Gy]", "Max[Gy]", "D98%[Gy]", "D0.03cc[Gy]"):
        assert column in header
    rows = {
        line.split()[0]: line.split() for line in out.splitlines() if line[:3] in ("PTV", "Sph")
    }
    assert rows["PTV"][1:] == ["8.00", *["54.00"] * 8]
    assert rows["Sphere"][1] == f"{sphere_volume_cc():.2f}"
    assert "!" not in out
    assert lines(result.stderr, "error:") == []


def test_dvh_json_matches_hand_values(export: Export) -> None:
    args = [a for m in METRICS for a in ("--metric", m)]
    result = run("dvh", export.folder, *args, "--between-planes", "slab", "--json", "-")
    assert result.exit_code == 0, result.output
    assert_clean(result)
    assert "ROI" not in result.stdout.splitlines()[0]  # JSON only on stdout, no table
    doc = report(result)
    assert doc["schema"] == "rtcheck.dvh/1"
    assert doc["patient_id"] == PATIENT
    plan = doc["plan"]
    assert plan["label"] == "PLAN_A"
    assert plan["fractions"] == FRACTIONS
    assert plan["dose_per_fraction_gy"] == pytest.approx(18.0)
    assert plan["total_dose_gy"] == pytest.approx(RX_GY)
    assert plan["prescription_source"] == "DoseReferenceSequence"
    assert Path(plan["file"]) == export.rp
    dose = doc["dose"]
    assert Path(dose["file"]) == export.rd
    assert dose["summation"] == "PLAN"
    assert dose["grid"]["size"] == [AXIS.size] * 3
    assert dose["grid"]["spacing_mm"] == pytest.approx([2.5, 2.5, 2.5])
    assert dose["grid"]["origin_mm"] == pytest.approx([-30.0, -30.0, -30.0])
    assert dose["grid"]["max_gy"] == pytest.approx(RX_GY, abs=1e-6)
    assert isinstance(doc["warnings"], list)
    assert doc["errors"] == []

    structures = by_name(doc)
    assert list(structures) == ["PTV", "Sphere"]
    expected_volume = {"PTV": 8.0, "Sphere": sphere_volume_cc()}
    for name, s in structures.items():
        assert s["number"] == (1 if name == "PTV" else 2)
        assert s["type"] == ("PTV" if name == "PTV" else "ORGAN")
        assert s["volume_cc"] == pytest.approx(expected_volume[name], rel=1e-6)
        assert s["volume_outside_dose_cc"] == pytest.approx(0.0, abs=1e-6)
        assert s["complete"] is True
        for key in ("min_gy", "mean_gy", "max_gy"):
            assert s[key] == pytest.approx(RX_GY, abs=1e-5), key
        metrics = s["metrics"]
        assert list(metrics) == list(METRICS)
        assert metrics["V100%[%]"] == pytest.approx(100.0, abs=1e-3)
        assert metrics["V54Gy[cc]"] == pytest.approx(expected_volume[name], rel=1e-4)
        for key in ("D95%[Gy]", "D0.03cc[Gy]", "Mean[Gy]", "DC2%[Gy]"):
            assert metrics[key] == pytest.approx(RX_GY, abs=1e-3), key

        curve = s["dvh"]
        doses, volumes = np.array(curve["dose_gy"]), np.array(curve["volume_cc"])
        assert curve.get("type", "cumulative") == "cumulative"
        assert doses.size == volumes.size >= 2
        assert np.all(np.diff(doses) > 0)
        assert np.all(np.diff(volumes) <= 0)
        assert volumes[0] == pytest.approx(s["volume_cc"], abs=1e-4)
        assert volumes[-1] == pytest.approx(0.0, abs=1e-4)
        # Uniform dose: the whole volume gets 54 Gy, nothing gets more than 54 Gy.
        below, above = volumes[doses <= RX_GY], volumes[doses > RX_GY]
        np.testing.assert_allclose(below, s["volume_cc"], atol=1e-4)
        assert above.size >= 1 and np.all(above == 0.0)


def test_no_curves_leaves_the_dvh_out(export: Export) -> None:
    result = run("dvh", export.folder, "--no-curves", "--json", "-")
    assert result.exit_code == 0, result.output
    assert all("dvh" not in s for s in report(result)["structures"])


# ----------------------------------------------------------------------------- 2. options


def test_roi_is_case_insensitive(export: Export) -> None:
    result = run("dvh", export.folder, "--roi", "sphere", "--roi", "ptv", "--json", "-")
    assert result.exit_code == 0, result.output
    assert [s["name"] for s in report(result)["structures"]] == ["Sphere", "PTV"]


def test_unknown_roi_is_a_usage_error_listing_the_rois(export: Export) -> None:
    result = run("dvh", export.folder, "--roi", "Rectum")
    assert result.exit_code == 2, result.output
    assert_clean(result)
    errors = lines(result.stderr, "error:")
    assert len(errors) == 1
    assert "'Rectum'" in errors[0] and "'PTV'" in errors[0] and "'Sphere'" in errors[0]


def test_a_name_two_rois_share_lists_both_with_their_numbers(tmp_path: Path) -> None:
    # Two ROIs called PTV: the 20 mm box (number 1) and a 10 mm one (number 3).
    e = write_export(tmp_path / "x", rois=[box_roi(), box_roi(3, "ptv", -5.0, 5.0)])
    result = run("dvh", e.folder, "--roi", "PTV", "--json", "-")
    assert result.exit_code == 0, result.output
    listed = [(s["name"], s["number"]) for s in report(result)["structures"]]
    assert listed == [("PTV", 1), ("ptv", 3)]
    volumes = [s["volume_cc"] for s in report(result)["structures"]]
    assert volumes[0] == pytest.approx(2 * volumes[1], rel=1e-9)
    assert sum("ROIs 1, 3 share this name" in w for w in report(result)["warnings"]) == 2
    table = run("dvh", e.folder, "--roi", "PTV")
    assert "PTV #1" in table.stdout and "ptv #3" in table.stdout


def test_an_roi_asked_for_without_contours_cannot_be_evaluated(tmp_path: Path) -> None:
    e = write_export(tmp_path / "x", rois=[box_roi(), SyntheticRoi(5, "Empty", "ORGAN", [])])
    assert run("dvh", e.folder).exit_code == 0  # listed among all ROIs: a warning
    result = run("dvh", e.folder, "--roi", "Empty")
    assert result.exit_code == 3, result.output
    assert "ROI 'Empty'" in lines(result.stderr, "error:")[0]


def test_the_plan_line_says_what_the_prescription_rests_on(tmp_path: Path) -> None:
    e = write_export(tmp_path / "x")
    ds = dcmread(e.rp)
    del ds.FractionGroupSequence  # the target dose stands, the fractions are unknown
    ds.save_as(e.rp, enforce_file_format=True)
    result = run("dvh", e.folder, "--metric", "V100%[%]")
    assert "fractions not given" in result.stdout, result.output
    assert (
        "Prescription: 54 Gy, fractions not given (the plan's Target Prescription Dose)"
        in result.stdout
    )

    e = write_export(tmp_path / "y")
    ds = dcmread(e.rp)
    del ds.DoseReferenceSequence  # no target dose: 3 fractions x (9 + 9) Gy of beam dose
    ds.save_as(e.rp, enforce_file_format=True)
    result = run("dvh", e.folder)
    assert (
        "Prescription: none stated in the plan; the beam doses add up to 54 Gy at their "
        "specification point (a hint, not used as a prescription)" in result.stdout
    ), result.output
    # V100% needs a prescription: not computable, never taken from the beam doses.
    result = run("dvh", e.folder, "--metric", "V100%[%]")
    assert result.exit_code == 3, result.output


def test_a_contour_crossing_itself_cannot_be_evaluated(tmp_path: Path) -> None:
    bow_tie = np.array([[-10.0, -10.0], [10.0, 10.0], [10.0, -10.0], [-10.0, 10.0]])
    crossed = SyntheticRoi(3, "Crossed", "ORGAN", [ContourPlane(z, (bow_tie,)) for z in PLANES_Z])
    e = write_export(tmp_path / "x", rois=[box_roi(), crossed])
    result = run("dvh", e.folder, "--json", "-")
    assert result.exit_code == 3, result.output
    (error,) = lines(result.stderr, "error:")
    assert "ROI 'Crossed'" in error and "crosses itself" in error
    assert by_name(report(result))["PTV"]["volume_cc"] == pytest.approx(8.0, rel=1e-6)


def test_several_metrics(export: Export) -> None:
    result = run("dvh", export.folder, "--metric", "Max[Gy]", "--metric", "V20Gy[%]", "--json", "-")
    assert result.exit_code == 0, result.output
    for s in report(result)["structures"]:
        assert s["metrics"] == pytest.approx({"Max[Gy]": RX_GY, "V20Gy[%]": 100.0}, abs=1e-3)


@pytest.mark.parametrize("bad", ["Q95%[Gy]", "D95%", "D95%[Gy"])
def test_malformed_metric_is_a_usage_error(export: Export, bad: str) -> None:
    result = run("dvh", export.folder, "--metric", "Mean[Gy]", "--metric", bad)
    assert result.exit_code == 2, result.output
    assert_clean(result)
    errors = lines(result.stderr, "error:")
    assert len(errors) == 1 and f"'{bad}'" in errors[0], result.stderr
    assert "ROI" not in result.stdout  # refused before any work


def test_csv_file(export: Export, tmp_path: Path) -> None:
    target = tmp_path / "out" / "table.csv"
    target.parent.mkdir()
    result = run(
        "dvh",
        export.folder,
        "--metric",
        "Mean[Gy]",
        "--metric",
        "V100%[%]",
        "--between-planes",
        "slab",
        "--csv",
        target,
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8"))))
    assert [r["roi"] for r in rows] == ["PTV", "Sphere"]
    assert list(rows[0]) == [
        "patient_id", "roi", "number", "type", "volume_cc", "volume_outside_dose_cc",
        "complete", "min_gy", "mean_gy", "max_gy", "Mean[Gy]", "V100%[%]",
        "metrics_not_computable",
    ]  # fmt: skip
    assert rows[0]["patient_id"] == PATIENT
    assert float(rows[0]["volume_cc"]) == pytest.approx(8.0, rel=1e-5)
    assert float(rows[1]["volume_cc"]) == pytest.approx(sphere_volume_cc(), rel=1e-5)
    assert all(float(r["Mean[Gy]"]) == pytest.approx(RX_GY, abs=1e-3) for r in rows)
    assert all(float(r["V100%[%]"]) == pytest.approx(100.0, abs=1e-3) for r in rows)


def test_dvh_between_planes_shape(export: Export) -> None:
    result = run("dvh", export.folder, "--between-planes", "shape", "--json", "-")
    assert result.exit_code == 0, result.output
    doc = report(result)
    assert doc["between_planes"] == "shape"
    # What computed the samples is on record (the C kernel where it was built).
    from rtcheck.dvh import kernel

    assert doc["dvh_kernel"] == kernel.name() == ("C" if kernel.built() else "NumPy")
    structures = by_name(doc)
    # The PTV's contours are all the same square: nothing changes between planes.
    assert structures["PTV"]["volume_cc"] == pytest.approx(8.0, rel=1e-9)
    # The sphere's 64-gons (area k r^2) change smoothly: between the end planes the
    # model follows k (R^2 - z^2); flat 1.25 mm caps beyond them.
    k = 0.5 * SPHERE_N * math.sin(2 * math.pi / SPHERE_N)
    z0, z1 = PLANES_Z[0], PLANES_Z[-1]
    between = SPHERE_R**2 * (z1 - z0) - (z1**3 - z0**3) / 3
    caps = 1.25 * ((SPHERE_R**2 - z0**2) + (SPHERE_R**2 - z1**2))
    expected = k * (between + caps) / 1000.0
    assert structures["Sphere"]["volume_cc"] == pytest.approx(expected, rel=5e-3)
    assert abs(expected - sphere_volume_cc()) > 0.01 * expected  # the slab model differs
    # The shape model is the default (docs/dvh.md).
    assert run("dvh", export.folder, "--json", "-").stdout.count('"between_planes": "shape"') == 1


def test_json_file_and_table_together(export: Export, tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    result = run("dvh", export.folder, "--json", target)
    assert result.exit_code == 0, result.output
    assert "PTV" in result.stdout and "Volume[cc]" in result.stdout  # table still printed
    doc = json.loads(target.read_text(encoding="utf-8"))
    assert doc["schema"] == "rtcheck.dvh/1"
    assert by_name(doc)["PTV"]["volume_cc"] == pytest.approx(8.0, rel=1e-6)
    assert list(by_name(doc)["PTV"]["metrics"]) == [
        "D98%[Gy]", "D95%[Gy]", "D50%[Gy]", "D2%[Gy]", "D0.03cc[Gy]",
    ]  # fmt: skip


# ----------------------------------------------------------------------------- 3. explicit mode


def test_explicit_mode_with_plan_matches_folder_mode(export: Export) -> None:
    folder = report(run("dvh", export.folder, "--json", "-", "--no-curves"))
    result = run(
        "dvh",
        "--structures",
        export.rs,
        "--dose",
        export.rd,
        "--plan",
        export.rp,
        "--json",
        "-",
        "--no-curves",
    )
    assert result.exit_code == 0, result.output
    explicit = report(result)
    assert explicit["plan"]["label"] == "PLAN_A"
    assert explicit["plan"]["total_dose_gy"] == pytest.approx(RX_GY)
    assert explicit["structures"] == folder["structures"]


def test_explicit_mode_without_plan(export: Export) -> None:
    result = run("dvh", "--structures", export.rs, "--dose", export.rd, "--json", "-")
    assert result.exit_code == 0, result.output
    doc = report(result)
    assert doc["plan"] is None
    assert doc["patient_id"] == PATIENT
    assert by_name(doc)["PTV"]["volume_cc"] == pytest.approx(8.0, rel=1e-6)
    table = run("dvh", "--structures", export.rs, "--dose", export.rd)
    assert "No plan" in table.stdout


def test_path_and_structures_together_is_a_usage_error(export: Export) -> None:
    result = run("dvh", export.folder, "--structures", export.rs, "--dose", export.rd)
    assert result.exit_code == 2, result.output
    assert_clean(result)
    assert "not both" in result.stderr


@pytest.mark.parametrize("which", ["structures only", "dose only", "nothing"])
def test_incomplete_explicit_mode_is_a_usage_error(export: Export, which: str) -> None:
    args = {
        "structures only": ["--structures", export.rs],
        "dose only": ["--dose", export.rd],
        "nothing": [],
    }[which]
    result = run("dvh", *args)
    assert result.exit_code == 2, result.output
    assert_clean(result)
    assert "--structures" in result.stderr and "--dose" in result.stderr


# ----------------------------------------------------------------------------- 4. bad input


def _empty(tmp: Path) -> tuple[list[Any], Path, str]:
    folder = tmp / "empty"
    folder.mkdir()
    return [folder], folder, "empty"


def _junk(tmp: Path) -> tuple[list[Any], Path, str]:
    folder = tmp / "junk"
    folder.mkdir()
    (folder / "notes.txt").write_text("not DICOM\n")
    (folder / "image.dcm").write_bytes(bytes(range(256)) * 4)
    return [folder], folder, "no DICOM files"


def _truncated(tmp: Path) -> tuple[list[Any], Path, str]:
    e = write_export(tmp / "x")
    e.rd.write_bytes(e.rd.read_bytes()[:-1001])  # the copy stopped short
    return [e.folder], e.rd, "truncated DICOM file"


def _missing_rs(tmp: Path) -> tuple[list[Any], Path, str]:
    e = write_export(tmp / "x", write_rs=False)
    return [e.folder], e.rp, "missing referenced structure set"


def _frames_disagree(tmp: Path) -> tuple[list[Any], Path, str]:
    e = write_export(tmp / "x", frame_of_reference_uid=synthetic_uid("cli", "other frame"))
    return [e.folder], e.rs, "frame of reference"


def _relative(tmp: Path) -> tuple[list[Any], Path, str]:
    e = write_export(tmp / "x", units="RELATIVE")
    return [e.folder], e.rd, "relative dose"


def _oblique(tmp: Path) -> tuple[list[Any], Path, str]:
    e = write_export(tmp / "x")
    c, s = math.cos(0.3), math.sin(0.3)
    patch(e.rd, ImageOrientationPatient=[f"{c:.8f}", f"{s:.8f}", "0", f"{-s:.8f}", f"{c:.8f}", "0"])
    return [e.folder], e.rd, "oblique dose grid"


def _not_triples(tmp: Path) -> tuple[list[Any], Path, str]:
    bad = SyntheticRoi(3, "Cord", "ORGAN", [ContourPlane(0.0, (circle_polygon(0, 0, 3, 8),))])
    e = write_export(tmp / "x", rois=[box_roi(), bad])
    ds = dcmread(e.rs)
    contour = ds.ROIContourSequence[1].ContourSequence[0]
    contour.ContourData = contour.ContourData[:-1]  # 8 points: 23 values
    ds.save_as(e.rs, enforce_file_format=True)
    return [e.folder], e.rs, "has 23 values, not a non-empty multiple of 3"


def _nan(tmp: Path) -> tuple[list[Any], Path, str]:
    poly = np.array([[0.0, 0.0], [123.25, 0.0], [0.0, 5.0]])
    e = write_export(
        tmp / "x", rois=[box_roi(), SyntheticRoi(3, "Cord", "ORGAN", [ContourPlane(0.0, (poly,))])]
    )
    data = e.rs.read_bytes()
    assert data.count(b"123.25") == 1
    e.rs.write_bytes(data.replace(b"123.25", b"NaN   "))  # same length: the file stays valid
    return [e.folder], e.rs, "NaN"


def _zero_pixel_spacing(tmp: Path) -> tuple[list[Any], Path, str]:
    e = write_export(tmp / "x")
    patch(e.rd, PixelSpacing=["0", "0"])
    return [e.folder], e.rd, "PixelSpacing"


def _zero_frame_spacing(tmp: Path) -> tuple[list[Any], Path, str]:
    e = write_export(tmp / "x")
    offsets = [f"{2.5 * k:g}" for k in range(AXIS.size)]
    offsets[3] = offsets[2]
    patch(e.rd, GridFrameOffsetVector=offsets)
    return [e.folder], e.rd, "zero frame spacing"


def _explicit_relative(tmp: Path) -> tuple[list[Any], Path, str]:
    e = write_export(tmp / "x", units="RELATIVE")
    return ["--structures", e.rs, "--dose", e.rd, "--plan", e.rp], e.rd, "relative dose"


def _explicit_nan(tmp: Path) -> tuple[list[Any], Path, str]:
    args, rs, words = _nan(tmp)
    folder = args[0]
    return ["--structures", rs, "--dose", folder / "RD_A.dcm"], rs, words


BAD_INPUTS = {
    "empty folder": _empty,
    "non-DICOM junk only": _junk,
    "truncated pixel data": _truncated,
    "missing referenced structure set": _missing_rs,
    "frames of reference disagree": _frames_disagree,
    "relative dose": _relative,
    "oblique dose grid": _oblique,
    "contour data not x, y, z triples": _not_triples,
    "NaN in contour data": _nan,
    "zero pixel spacing": _zero_pixel_spacing,
    "zero frame spacing": _zero_frame_spacing,
    "explicit: relative dose": _explicit_relative,
    "explicit: NaN in contour data": _explicit_nan,
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_one_line_naming_the_file(tmp_path: Path, case: str) -> None:
    args, culprit, words = BAD_INPUTS[case](tmp_path)
    result = run("dvh", *args)
    assert result.exit_code == 3, result.output
    assert_clean(result)
    errors = lines(result.stderr, "error:")
    assert len(errors) == 1, result.stderr
    assert str(culprit) in errors[0], errors[0]
    assert words.lower() in errors[0].lower(), errors[0]
    assert "ROI  " not in result.stdout  # no table for input that cannot be read


# ----------------------------------------------------------------------------- 5. partly outside


def test_structure_partly_outside_the_dose_grid(tmp_path: Path) -> None:
    # Dose nodes x = 1.25 ... 28.75: the grid's box starts at x = 0, so the half x < 0 of
    # the 20 mm box PTV (4 cc) is outside; the sphere at x = 20 is wholly inside.
    x = 1.25 + 2.5 * np.arange(12)
    inside = SyntheticRoi(
        2, "Inside", "ORGAN", sphere_planes((15.0, 0.0, 0.0), 8.0, PLANES_Z, n=SPHERE_N)
    )
    e = write_export(tmp_path / "x", rois=[box_roi(), inside], grid=uniform_grid(x=x))
    result = run("dvh", e.folder, "--json", "-", "--metric", "Mean[Gy]", "--metric", "D50%[Gy]")
    assert result.exit_code == 0, result.output
    assert_clean(result)
    doc = report(result)
    ptv, other = by_name(doc)["PTV"], by_name(doc)["Inside"]
    assert ptv["volume_cc"] == pytest.approx(8.0, rel=1e-6)
    assert ptv["volume_outside_dose_cc"] == pytest.approx(4.0, abs=1e-3)
    assert ptv["volume_outside_dose_percent"] == pytest.approx(50.0, abs=1e-2)
    assert ptv["complete"] is False
    assert other["complete"] is True and other["volume_outside_dose_cc"] == pytest.approx(0.0)
    ptv_warnings = [w for w in doc["warnings"] if "'PTV'" in w and "outside" in w]
    assert ptv_warnings, doc["warnings"]
    assert not any("'Inside'" in w for w in doc["warnings"])
    assert any("'PTV'" in w and "outside" in w for w in lines(result.stderr, "warning:"))

    table = run("dvh", e.folder)
    assert table.exit_code == 0, table.output
    rows = [line for line in table.stdout.splitlines() if line.startswith(("PTV", "Inside"))]
    assert rows[0].startswith("PTV !")
    assert "!" not in rows[1]
    assert "outside the dose grid" in table.stdout


# ----------------------------------------------------------------------------- 6. not evaluable


def test_metric_larger_than_the_structure_cannot_be_evaluated(export: Export) -> None:
    result = run(
        "dvh",
        export.folder,
        "--roi",
        "PTV",
        "--metric",
        "D500cc[Gy]",
        "--metric",
        "Mean[Gy]",
        "--json",
        "-",
    )
    assert result.exit_code == 3, result.output
    assert_clean(result)
    doc = report(result)
    metrics = by_name(doc)["PTV"]["metrics"]
    assert metrics["D500cc[Gy]"] is None
    assert metrics["Mean[Gy]"] == pytest.approx(RX_GY, abs=1e-3)
    errors = lines(result.stderr, "error:")
    assert len(errors) == 1 and "'PTV'" in errors[0] and "D500cc[Gy]" in errors[0], errors
    assert doc["errors"] and "D500cc[Gy]" in doc["errors"][0]


def test_percent_of_prescription_without_a_plan(export: Export) -> None:
    result = run(
        "dvh",
        "--structures",
        export.rs,
        "--dose",
        export.rd,
        "--metric",
        "V100%[%]",
        "--metric",
        "Max[Gy]",
        "--json",
        "-",
    )
    assert result.exit_code == 3, result.output
    assert_clean(result)
    doc = report(result)
    for name in ("PTV", "Sphere"):
        assert by_name(doc)[name]["metrics"]["V100%[%]"] is None
        assert by_name(doc)[name]["metrics"]["Max[Gy]"] == pytest.approx(RX_GY, abs=1e-3)
    errors = lines(result.stderr, "error:")
    assert len(errors) == 2
    for name, line in zip(("PTV", "Sphere"), errors, strict=True):
        assert f"'{name}'" in line and "V100%[%]" in line and "prescription" in line
    table = run("dvh", "--structures", export.rs, "--dose", export.rd, "--metric", "V100%[%]")
    assert table.exit_code == 3
    assert "PTV" in table.stdout  # the table is still shown, with '-' for the missing value


def tiny_roi() -> SyntheticRoi:
    """A 2 x 1 mm rectangle on the first two planes: 2 mm² x 5 mm = 0.01 cc, < 0.03 cc."""
    rectangle = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 1.0], [0.0, 1.0]])
    return SyntheticRoi(3, "Tiny", "ORGAN", [ContourPlane(z, (rectangle,)) for z in PLANES_Z[:2]])


TINY_WHY = "the structure holds only 0.01 cc, less than the 0.03 cc the metric asks for"


def test_default_metric_larger_than_a_tiny_roi_is_not_computable(tmp_path: Path) -> None:
    e = write_export(tmp_path / "x", rois=[box_roi(), tiny_roi()])
    result = run("dvh", e.folder, "--json", "-", "--no-curves")
    assert result.exit_code == 0, result.output
    assert_clean(result)
    doc = report(result)
    tiny, ptv = by_name(doc)["Tiny"], by_name(doc)["PTV"]
    assert tiny["volume_cc"] == pytest.approx(0.01, rel=1e-9)
    assert tiny["metrics"]["D0.03cc[Gy]"] is None
    assert tiny["metrics_not_computable"] == {"D0.03cc[Gy]": TINY_WHY}
    for key in ("D98%[Gy]", "D95%[Gy]", "D50%[Gy]", "D2%[Gy]"):  # uniform 54 Gy
        assert tiny["metrics"][key] == pytest.approx(RX_GY, abs=1e-3)
    assert ptv["metrics"]["D0.03cc[Gy]"] == pytest.approx(RX_GY, abs=1e-3)
    assert ptv["metrics_not_computable"] == {}
    assert doc["errors"] == []
    warning = f"ROI 'Tiny': D0.03cc[Gy] not computable: {TINY_WHY}"
    assert warning in doc["warnings"]
    assert lines(result.stderr, "error:") == []
    assert f"warning: {warning}" in lines(result.stderr, "warning:")

    table = run("dvh", e.folder)
    assert table.exit_code == 0, table.output
    out = table.stdout.splitlines()
    row = next(line.split() for line in out if line.startswith("Tiny"))
    assert row == ["Tiny", "0.010", *["54.00"] * 7, "n/a"]
    assert f"n/a 'Tiny' D0.03cc[Gy] not computable: {TINY_WHY}" in out
    assert lines(table.stderr, "error:") == []

    target = tmp_path / "table.csv"
    assert run("dvh", e.folder, "--csv", target).exit_code == 0
    rows = {r["roi"]: r for r in csv.DictReader(io.StringIO(target.read_text("utf-8")))}
    assert rows["Tiny"]["D0.03cc[Gy]"] == ""
    assert rows["Tiny"]["metrics_not_computable"] == f"D0.03cc[Gy]: {TINY_WHY}"
    assert float(rows["PTV"]["D0.03cc[Gy]"]) == pytest.approx(RX_GY, abs=1e-3)
    assert rows["PTV"]["metrics_not_computable"] == ""


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--roi", "Tiny"], 0),  # the ROI named, the default metrics not
        (["--metric", "D0.03cc[Gy]"], 0),  # the metric named, for every ROI
        (["--roi", "Tiny", "--metric", "D0.03cc[Gy]"], 3),  # both named: it must be computed
    ],
)
def test_tiny_roi_is_an_error_only_when_roi_and_metric_are_named(
    tmp_path: Path, args: list[str], code: int
) -> None:
    e = write_export(tmp_path / "x", rois=[box_roi(), tiny_roi()])
    result = run("dvh", e.folder, *args, "--json", "-", "--no-curves")
    assert result.exit_code == code, result.output
    assert_clean(result)
    tiny = by_name(report(result))["Tiny"]
    assert tiny["volume_cc"] == pytest.approx(0.01, rel=1e-9)
    assert tiny["metrics"]["D0.03cc[Gy]"] is None
    errors = lines(result.stderr, "error:")
    if code == 0:
        assert tiny["metrics_not_computable"] == {"D0.03cc[Gy]": TINY_WHY}
        assert errors == []
    else:
        assert tiny["metrics_not_computable"] == {}
        assert len(errors) == 1 and "'Tiny'" in errors[0] and "0.03 cc" in errors[0], errors
        assert "cannot evaluate D0.03cc[Gy]" in errors[0]


def degenerate_export(tmp_path: Path) -> Export:
    """The box PTV with degenerate contours added, and an ROI of degenerate contours only."""
    square = box_roi().planes[0].polygons[0]
    point = np.array([[1.0, 2.0]])
    segment = np.array([[-5.0, 0.0], [5.0, 0.0]])
    collinear = np.array([[-5.0, -5.0], [0.0, 0.0], [5.0, 5.0]])
    ptv = SyntheticRoi(
        1,
        "PTV",
        "PTV",
        [ContourPlane(z, (square, point) if z == PLANES_Z[2] else (square,)) for z in PLANES_Z]
        + [ContourPlane(15.0, (segment,)), ContourPlane(17.5, (collinear,))],
    )
    dots = SyntheticRoi(
        4, "Dots", "ORGAN", [ContourPlane(0.0, (point,)), ContourPlane(2.5, (collinear,))]
    )
    return write_export(tmp_path / "x", rois=[ptv, dots])


DOTS_WARNING = (
    "ROI 'Dots': skipped 2 degenerate contour(s) (1 or 2 points, or no area) on 2 plane(s), "
    "z = 0, 2.5 mm: no contour with an area is left, the ROI is empty (0 cc); no DVH"
)


def test_degenerate_contours_are_skipped(tmp_path: Path) -> None:
    e = degenerate_export(tmp_path)
    result = run("dvh", e.folder, "--json", "-", "--no-curves")
    assert result.exit_code == 0, result.output
    assert_clean(result)
    doc = report(result)
    ptv, dots = by_name(doc)["PTV"], by_name(doc)["Dots"]
    assert ptv["volume_cc"] == pytest.approx(8.0, rel=1e-9)  # the box alone: 20 x 20 x 20 mm
    assert ptv["complete"] is True
    assert dots["volume_cc"] is None and dots["metrics"] == {}
    assert [w for w in doc["warnings"] if w.startswith("ROI ")] == [
        "ROI 'PTV': skipped 3 degenerate contour(s) (1 or 2 points, or no area) on 3 plane(s), "
        "z = -3.75, 15, 17.5 mm",
        DOTS_WARNING,
    ]
    assert doc["errors"] == []
    assert not any("outside" in w for w in doc["warnings"])

    table = run("dvh", e.folder)
    assert table.exit_code == 0, table.output
    row = next(line.split() for line in table.stdout.splitlines() if line.startswith("Dots"))
    assert row == ["Dots", *["-"] * 9]
    assert f"warning: {DOTS_WARNING}" in lines(table.stderr, "warning:")

    named = run("dvh", e.folder, "--roi", "Dots")  # asked for by name: an error
    assert named.exit_code == 3, named.output
    assert lines(named.stderr, "error:") == [f"error: {DOTS_WARNING}"]


# ----------------------------------------------------------------------------- 7. several plans


def test_several_plans_need_a_choice(tmp_path: Path) -> None:
    folder = tmp_path / "two"
    write_export(folder, name="A")
    b = write_export(folder, name="B", rois=[box_roi(x0=-5.0, x1=5.0)])
    result = run("dvh", folder)
    assert result.exit_code == 2, result.output
    assert_clean(result)
    errors = lines(result.stderr, "error:")
    assert len(errors) == 1
    assert "PLAN_A" in errors[0] and "PLAN_B" in errors[0] and "--plan" in errors[0]

    chosen = run("dvh", folder, "--plan", b.rp, "--json", "-")
    assert chosen.exit_code == 0, chosen.output
    doc = report(chosen)
    assert doc["plan"]["label"] == "PLAN_B"
    assert Path(doc["dose"]["file"]) == b.rd
    assert [s["name"] for s in doc["structures"]] == ["PTV"]
    assert doc["structures"][0]["volume_cc"] == pytest.approx(4.0, rel=1e-6)


# ----------------------------------------------------------------------------- 8. read only


def snapshot(folder: Path) -> dict[str, tuple[str, int, int]]:
    """Every entry under ``folder``: content hash (files), mode and modification time."""
    state: dict[str, tuple[str, int, int]] = {}
    for path in sorted(folder.rglob("*")):
        st = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        state[str(path.relative_to(folder))] = (digest, st.st_mode, st.st_mtime_ns)
    return state


def test_input_folder_is_never_modified(tmp_path: Path) -> None:
    good = write_export(tmp_path / "good")
    bad = write_export(tmp_path / "bad", units="RELATIVE")
    out = tmp_path / "out"
    out.mkdir()
    before = {f: snapshot(f) for f in (good.folder, bad.folder)}
    runs: list[tuple[int, list[Any]]] = [
        (0, [good.folder, "--json", out / "a.json", "--csv", out / "a.csv"]),
        (0, ["--structures", good.rs, "--dose", good.rd, "--plan", good.rp, "--json", "-"]),
        (3, [good.folder, "--roi", "PTV", "--metric", "D500cc[Gy]"]),
        (2, [good.folder, "--roi", "nothing"]),
        (3, [bad.folder]),
    ]
    for code, args in runs:
        result = run("dvh", *args)
        assert result.exit_code == code, (args, result.output)
    after = {f: snapshot(f) for f in (good.folder, bad.folder)}
    assert after == before
    assert sorted(p.name for p in out.iterdir()) == ["a.csv", "a.json"]


# ----------------------------------------------------------------------------- 9. demo, version


def test_demo_writes_an_export_and_prints_its_table(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = run("demo", "--out", out)
    assert result.exit_code == 0, result.output
    assert_clean(result)
    names = {p.name for p in out.iterdir()}
    assert {"RS.dcm", "RP.dcm", "RD.dcm", "CT.001.dcm", "CT.041.dcm"} <= names
    assert str(out) in result.stderr
    for roi in ("PTV", "GTV", "SpinalCord", "Lungs", "Bronchus"):
        assert any(line.startswith(roi) for line in result.stdout.splitlines()), roi
    assert "Plan 'LUNG_SABR'" in result.stdout
    # The sample is checked against the protocol --protocol auto picks, and passes.
    assert "Protocol sabr-lung" in result.stdout and "VERDICT: PASS" in result.stdout

    again = run("demo", "--out", out)
    assert again.exit_code == 2, again.output
    assert_clean(again)
    assert "not empty" in again.stderr
    assert {p.name for p in out.iterdir()} == names


def test_demo_json(tmp_path: Path) -> None:
    result = run("demo", "--out", tmp_path / "d", "--json", "-")
    assert result.exit_code == 0, result.output
    doc = report(result)
    assert doc["plan"]["label"] == "LUNG_SABR"
    # PTV: sphere r = 15 mm as 64-gons on the planes z = -12.5 ... 12.5 mm (2.5 mm apart);
    # 67.5 Gy at its centre, a dose node.
    areas = [0.5 * 64 * (15.0**2 - z**2) * math.sin(2 * math.pi / 64) for z in
             np.arange(-12.5, 12.6, 2.5)]  # fmt: skip
    # The slab model's volume is the sum of the areas times the plane spacing.
    slab = report(run("dvh", tmp_path / "d", "--between-planes", "slab", "--json", "-"))
    assert by_name(slab)["PTV"]["volume_cc"] == pytest.approx(sum(areas) * 2.5 / 1000.0, rel=1e-5)
    # The demo's default shape model follows the 64-gon sphere between the planes: its
    # volume is within 1 % of 0.5 * 64 * sin(2 pi / 64) * 4/3 * 15^3.
    ptv = by_name(doc)["PTV"]
    polygon_sphere = 0.5 * 64 * math.sin(2 * math.pi / 64) * 4 / 3 * 15.0**3 / 1000.0
    assert ptv["volume_cc"] == pytest.approx(polygon_sphere, rel=0.01)
    assert ptv["max_gy"] == pytest.approx(67.5, abs=1e-3)
    # Minimum at the corner of the top slab: the 64-gon vertex at radius sqrt(15² - 12.5²) on
    # the slab face z = 13.75 (halfway to the uncontoured slice at 15), r = 16.06 mm, where
    # D = 54 * 1.25 ** (1 - (r / 15) ** 4) = 50.36 Gy; trilinear interpolation of this quartic
    # fall-off on the 2.5 mm grid is within 2 % of it.
    r = math.hypot(math.sqrt(15.0**2 - 12.5**2), 13.75)
    assert ptv["min_gy"] == pytest.approx(54 * 1.25 ** (1 - (r / 15) ** 4), rel=0.02)
    assert 54.0 < ptv["mean_gy"] < 67.5


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"rtcheck {importlib.metadata.version('rtcheck')}"


# ----------------------------------------------------------------------------- 10. internal error


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("boom in the DVH engine")


def test_internal_error_asks_for_debug(export: Export, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rtcheck.analysis, "compute_dvh", _boom)
    result = run("dvh", export.folder)
    assert result.exit_code == 4, result.output
    assert_clean(result)
    assert "internal error" in result.stderr
    assert "RuntimeError: boom in the DVH engine" in result.stderr
    assert "--debug" in result.stderr

    debug = run("dvh", export.folder, "--debug")
    assert debug.exit_code == 4, debug.output
    assert "Traceback (most recent call last)" in debug.stderr
    assert "_boom" in debug.stderr and "RuntimeError" in debug.stderr


# ----------------------------------------------------------------------------- real process


def _console_script() -> str:
    found = shutil.which("rtcheck") or shutil.which(
        "rtcheck", path=str(Path(sys.executable).parent)
    )
    assert found, "the rtcheck console script is not installed (pip install -e .)"
    return found


def _process(*args: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "error", "COLUMNS": "200"}
    return subprocess.run(
        [_console_script(), *(str(a) for a in args)],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip


def test_console_script_in_a_real_process(export: Export, tmp_path: Path) -> None:
    version = _process("--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"rtcheck {importlib.metadata.version('rtcheck')}"

    ok = _process("dvh", export.folder, "--metric", "Mean[Gy]", "--json", "-")
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert by_name(doc)["PTV"]["metrics"]["Mean[Gy]"] == pytest.approx(RX_GY, abs=1e-3)
    assert by_name(doc)["PTV"]["volume_cc"] == pytest.approx(8.0, rel=1e-6)

    empty = tmp_path / "nothing here"
    empty.mkdir()
    failed = _process("dvh", empty)
    assert failed.returncode == 3
    assert "Traceback" not in failed.stderr
    assert failed.stderr.strip().splitlines() == [
        line for line in failed.stderr.strip().splitlines() if line.startswith("error:")
    ]
    assert len(failed.stderr.strip().splitlines()) == 1 and str(empty) in failed.stderr

    usage = _process("dvh", export.folder, "--metric", "X[Gy]")
    assert usage.returncode == 2 and "'X[Gy]'" in usage.stderr
    assert "Traceback" not in usage.stderr


def test_a_reader_that_goes_away_is_not_a_success(export: Export) -> None:
    # `rtcheck dvh ... | head -1`: the report was not delivered, so no exit 0, and no
    # traceback; the pipe is closed before rtcheck writes anything.
    env = {**os.environ, "COLUMNS": "200"}
    process = subprocess.Popen(
        [_console_script(), "dvh", str(export.folder)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    with process.stderr:
        stderr = process.stderr.read()
    assert process.wait(timeout=60) == 3, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert "standard output was closed" in stderr


@pytest.mark.parametrize("option", ["--json", "--csv"])
def test_an_output_file_in_a_missing_folder_is_a_usage_error(
    export: Export, tmp_path: Path, option: str
) -> None:
    target = tmp_path / "no such folder" / "out.txt"
    result = run("dvh", export.folder, option, target)
    assert result.exit_code == 2, result.output
    assert_clean(result)
    assert lines(result.stderr, "error:") == [
        f"error: {option} {target}: folder {target.parent} does not exist"
    ]
    assert "PTV" not in result.stdout  # refused before any work


def test_more_pixel_data_than_frames_is_refused(tmp_path: Path) -> None:
    e = write_export(tmp_path / "x")
    ds = dcmread(e.rd)
    frames = int(ds.NumberOfFrames)
    ds.NumberOfFrames = frames - 1
    ds.GridFrameOffsetVector = list(ds.GridFrameOffsetVector)[:-1]
    ds.save_as(e.rd, enforce_file_format=True)
    result = run("dvh", e.folder)
    assert result.exit_code == 3, result.output
    (error,) = lines(result.stderr, "error:")
    assert str(e.rd) in error and "does not match the data" in error


def test_cli_does_not_need_the_standalone_click_package(export: Export) -> None:
    # typer vendors click and does not install it; rtcheck does not declare it either, so
    # the CLI must work when 'import click' fails (as after a plain pip install).
    code = (
        "import sys; sys.modules['click'] = None; from rtcheck.cli.main import main; "
        f"sys.argv = ['rtcheck', 'dvh', {str(export.folder)!r}, '--roi', 'nothing']; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    assert "'PTV'" in result.stderr


# ----------------------------------------------------------------------------- 11. real exports


PYDICOM_RS = Path(examples.get_path("rt_ss"))
PYDICOM_RD = Path(examples.get_path("rt_dose"))


def test_pydicom_examples_relative_dose() -> None:
    result = run("dvh", "--structures", PYDICOM_RS, "--dose", PYDICOM_RD)
    assert result.exit_code == 3, result.output
    assert_clean(result)
    errors = lines(result.stderr, "error:")
    assert len(errors) == 1
    assert str(PYDICOM_RD) in errors[0] and "relative dose" in errors[0].lower()


def test_pydicom_examples_in_gy_are_in_another_frame_of_reference(tmp_path: Path) -> None:
    # The bundled rtdose.dcm and rtstruct.dcm carry different Frame of Reference UIDs: in Gy
    # the dose is readable, and the CLI must say that they are not in one coordinate system.
    rd = tmp_path / "rtdose_gy.dcm"
    ds = dcmread(PYDICOM_RD)
    ds.DoseUnits = "GY"
    ds.save_as(rd)
    structures = dcmread(PYDICOM_RS, force=True)
    frame = structures.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID
    assert ds.FrameOfReferenceUID != frame
    result = run("dvh", "--structures", PYDICOM_RS, "--dose", rd)
    assert result.exit_code == 3, result.output
    assert_clean(result)
    errors = lines(result.stderr, "error:")
    assert len(errors) == 1
    assert (
        "frame of reference" in errors[0] and str(rd) in errors[0] and str(PYDICOM_RS) in errors[0]
    )


def test_pydicom_examples_in_gy_do_not_overlap(tmp_path: Path) -> None:
    # Same frame of reference forced: now the structures (z -200 ... -180 mm) and the dose
    # grid (z -762 ... -692 mm) simply do not overlap, and every ROI must say so.
    structures = dcmread(PYDICOM_RS, force=True)
    rd = tmp_path / "rtdose_gy.dcm"
    ds = dcmread(PYDICOM_RD)
    ds.DoseUnits = "GY"
    ds.FrameOfReferenceUID = structures.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID
    ds.save_as(rd)
    result = run("dvh", "--structures", PYDICOM_RS, "--dose", rd, "--json", "-")
    assert result.exit_code == 3, result.output
    assert_clean(result)
    doc = report(result)
    warnings = doc["warnings"]
    errors = doc["errors"]
    assert [s["name"] for s in doc["structures"]] == ["patient", "Isocenter 1", "Isocenter 2"]
    for s in doc["structures"]:
        flagged_outside = s["volume_cc"] is not None and s["complete"] is False
        warned = [w for w in warnings if f"'{s['name']}'" in w]
        assert flagged_outside or warned, s["name"]
        assert s["complete"] is False
        if s["volume_cc"] is not None:  # all of its volume is outside, nothing computed on it
            assert s["volume_outside_dose_cc"] == pytest.approx(s["volume_cc"])
            assert s["mean_gy"] is None and s["max_gy"] is None
            assert all(v is None for v in s["metrics"].values())
            # One error line for the structure, not one per metric.
            assert [e for e in errors if f"'{s['name']}'" in e and "outside" in e] == errors
    assert len(lines(result.stderr, "error:")) == 1
    assert "'patient'" in lines(result.stderr, "error:")[0]
    table = run("dvh", "--structures", PYDICOM_RS, "--dose", rd)
    assert any(line.startswith("patient !") for line in table.stdout.splitlines())


@pytest.mark.shared_data
def test_alderson_raystation_plan_and_beam_doses(shared_data: Path) -> None:
    folder = shared_data / "alderson-raystation"
    metrics = ["Mean[Gy]", "D98%[Gy]", "D95%[Gy]", "D50%[Gy]", "D2%[Gy]", "V95%[%]"]
    margs = [a for m in metrics for a in ("--metric", m)]
    result = run("dvh", folder, *margs, "--json", "-", "--no-curves")
    assert result.exit_code == 0, result.output
    assert_clean(result)
    doc = report(result)
    assert doc["plan"]["total_dose_gy"] == pytest.approx(60.0)
    assert doc["dose"]["summation"] == "PLAN"
    structures = by_name(doc)
    assert {"Body", "PTV", "Bladder", "Rectum", "FemoralHead_L", "FemoralHead_R"} <= set(structures)
    ptv = structures["PTV"]
    assert ptv["complete"] is True
    assert ptv["mean_gy"] == pytest.approx(60.0, rel=0.02)
    assert ptv["metrics"]["Mean[Gy]"] == pytest.approx(ptv["mean_gy"], rel=1e-6)

    beam = next(
        p for p in (folder / "RD").iterdir() if dcmread(p, stop_before_pixels=True)
        .DoseSummationType == "BEAM"
    )  # fmt: skip
    plan = next((folder / "RP").iterdir())
    rs = next((folder / "RS").iterdir())
    explicit = run(
        "dvh",
        "--structures",
        rs,
        "--dose",
        beam,
        "--plan",
        plan,
        "--roi",
        "ptv",
        *margs,
        "--json",
        "-",
        "--no-curves",
    )
    assert explicit.exit_code == 0, explicit.output
    beam_doc = report(explicit)
    assert beam_doc["dose"]["summation"] == "BEAM"
    assert Path(beam_doc["dose"]["file"]) == beam
    beam_ptv = beam_doc["structures"][0]
    assert beam_ptv["name"] == "PTV"
    for key in ("mean_gy", "min_gy", "max_gy", "volume_cc"):
        assert beam_ptv[key] == pytest.approx(ptv[key], rel=0.005), key
    for key in metrics:
        assert beam_ptv["metrics"][key] == pytest.approx(ptv["metrics"][key], rel=0.005), key


@pytest.mark.shared_data
def test_breast_dicompyler(shared_data: Path) -> None:
    folder = shared_data / "breast-dicompyler"
    result = run("dvh", folder, "--json", "-", "--no-curves")
    assert result.exit_code == 0, result.output
    assert_clean(result)
    doc = report(result)
    assert doc["plan"]["fractions"] == 7
    assert doc["plan"]["total_dose_gy"] == pytest.approx(14.0)
    names = [s["name"] for s in doc["structures"]]
    assert len(names) == 10 and "Areola" in names
    areola = by_name(doc)["Areola"]
    assert areola["volume_cc"] is None and areola["mean_gy"] is None
    assert any("'Areola'" in w and "no contours" in w for w in doc["warnings"])
    assert any("'Areola'" in w for w in lines(result.stderr, "warning:"))
    assert any("LICENSE" in w for w in doc["warnings"])  # the non-DICOM file is listed
    for s in doc["structures"]:
        if s["name"] != "Areola":
            assert s["volume_cc"] > 0 and s["complete"] is True, s["name"]

    table = run("dvh", folder)
    assert table.exit_code == 0
    for name in names:
        assert any(line.startswith(name) for line in table.stdout.splitlines()), name


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("name", "count", "empty"),
    [("pinnacle_hn_2", 52, 14), ("pinnacle_hn_4", 57, 4), ("pinnacle_brain_6", 18, 6)],
)
def test_pinnacle_exports_give_dvhs(
    shared_data: Path, tmp_path: Path, name: str, count: int, empty: int
) -> None:
    """Pinnacle's 1-2 point and collinear contours are skipped, one warning per ROI.

    Dose values are not asserted (whether a Pinnacle grid holds one fraction is decided
    elsewhere): the structures, their volumes and the warnings are.
    """
    folder = shared_data / "real-exports" / name
    target = tmp_path / "dvh.csv"
    result = run("dvh", folder, "--csv", target)
    assert result.exit_code == 0, result.output
    assert_clean(result)
    assert lines(result.stderr, "error:") == []
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8"))))
    assert len(rows) == count
    assert sum(r["volume_cc"] == "" for r in rows) == empty
    assert all(float(r["volume_cc"]) > 0 for r in rows if r["volume_cc"])
    warnings = lines(result.stderr, "warning:")
    skipped = [w for w in warnings if "degenerate contour(s)" in w]
    assert skipped and len({w.split("':")[0] for w in skipped}) == len(skipped)  # one per ROI
    assert not any("outside the dose grid" in w and "degenerate" in w for w in warnings)
    if name == "pinnacle_hn_2":
        # Both contours of 'Rt BP +66' are degenerate: an empty ROI, never "outside".
        assert (
            "warning: ROI 'Rt BP +66': skipped 2 degenerate contour(s) (1 or 2 points, or no "
            "area) on 2 plane(s), z = 282.5, 285.5 mm: no contour with an area is left, the "
            "ROI is empty (0 cc); no DVH"
        ) in warnings
        # '5425 (VMAT)' (0.00207 cc) cannot give D0.03cc: not computable, the rest stands.
        tiny = next(r for r in rows if r["roi"] == "5425 (VMAT)")
        assert float(tiny["volume_cc"]) == pytest.approx(0.00207, abs=5e-6)
        assert tiny["D0.03cc[Gy]"] == "" and tiny["D95%[Gy]"] != ""
        assert tiny["metrics_not_computable"] == (
            "D0.03cc[Gy]: the structure holds only 0.00207 cc, less than the 0.03 cc the "
            "metric asks for"
        )


@pytest.mark.shared_data
def test_monaco_export_without_file_meta(shared_data: Path) -> None:
    folder = shared_data / "real-exports" / "monaco_hn_1"
    result = run("dvh", folder)
    assert result.exit_code == 0, result.output
    assert_clean(result)
    assert lines(result.stderr, "error:") == []
    out = result.stdout.splitlines()
    header = out.index(next(line for line in out if line.startswith("ROI ")))
    names = [line.split()[0] for line in out[header + 2 : header + 5]]
    assert names == ["BODY", "PAROTID_LT", "PTV"]
    assert all(float(line.split()[1]) > 0 for line in out[header + 2 : header + 5])
    assert any("transfer syntax inferred as Implicit VR Little Endian" in w
               for w in lines(result.stderr, "warning:"))  # fmt: skip
