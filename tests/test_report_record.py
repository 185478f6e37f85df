"""The check report as a QA record (issue 12): when, who, which plan, approved by whom, on
which machine, every beam; DVH statistics per ROI; the planning system's DVHs beside
rtcheck's.

Expected values are what the test writes into the files (read back with pydicom for the
real exports), and the analytic dose of the fixtures: a uniform 30 Gy grid gives 30 Gy as
minimum, mean and maximum of every structure inside it.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from typer.testing import CliRunner

from rtcheck.cli.main import app
from tests.fixtures.exports import patch
from tests.fixtures.trust import PTV_RADIUS_MM, TrustPlan, write_trust_export


def run(folder: Path, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        app,
        ["check", str(folder), "--protocol", "palliative", "--json", "-", *args],
    )
    assert result.exit_code in (0, 1, 3), result.output
    doc = json.loads(result.stdout)
    assert isinstance(doc, dict)
    return doc


@pytest.fixture()
def uniform(tmp_path: Path) -> Path:
    """5 x 6 Gy = 30 Gy everywhere; a PTV sphere of 15 mm and a BODY sphere of 30 mm."""
    folder = write_trust_export(
        tmp_path / "plan", TrustPlan(grid_gy=30.0, prescription_gy=30.0, intent="PALLIATIVE")
    )
    patch(
        folder / "RP.dcm",
        ApprovalStatus="APPROVED",
        ReviewDate="20261203",
        ReviewTime="142530",
        ReviewerName="Curie^Marie",
        RTPlanDate="20261202",
        PatientName="Doe^Jane",
    )
    return folder


def test_checked_at_version_and_plan_record(uniform: Path) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    doc = run(uniform)
    after = datetime.now(UTC)
    checked = datetime.fromisoformat(doc["checked_at"].replace("Z", "+00:00"))
    assert doc["checked_at"].endswith("Z")
    assert before <= checked <= after
    assert datetime.fromisoformat(doc["checked_at_local"]) == checked
    assert doc["rtcheck_version"]
    record = doc["plan_record"]
    assert record["patient_name"] == "Doe, Jane"
    assert record["approval"] == "APPROVED"
    assert (record["review_date"], record["reviewer"]) == ("2026-12-03", "Curie, Marie")
    assert record["plan_date"] == "2026-12-02"
    assert record["machines"] == ["SYNTH_LINAC"]
    # The trust fixture writes two beams of 100 MU at gantry 40 and 80 degrees, 6 MV.
    beams = record["beams"]
    assert [(b["number"], b["gantry_deg"], b["meterset"]) for b in beams] == [
        (1, [40.0], 100.0),
        (2, [80.0], 100.0),
    ]
    assert {(b["technique"], b["energy"], b["radiation_type"]) for b in beams} == {
        ("static", "6 MV", "PHOTON")
    }
    assert beams[0]["isocentre_mm"] == [0.0, 0.0, 0.0]


def test_dvh_statistics_of_a_uniform_dose(uniform: Path) -> None:
    doc = run(uniform)
    stats = {s["name"]: s for s in doc["dvh_statistics"]}
    assert set(stats) == {"PTV", "BODY"}
    ptv = stats["PTV"]
    assert ptv["computed"]
    assert ptv["min_gy"] == pytest.approx(30.0) and ptv["max_gy"] == pytest.approx(30.0)
    assert ptv["mean_gy"] == pytest.approx(30.0)
    assert all(v == pytest.approx(30.0) for v in ptv["doses_gy"].values())
    # Slab model of a sphere of 15 mm on 2.5 mm planes: within 2 % of 4/3 pi r^3.
    assert ptv["volume_cc"] == pytest.approx(4 / 3 * math.pi * PTV_RADIUS_MM**3 / 1000, rel=0.02)
    assert "V95%[%]" in ptv["protocol_metrics"]
    # No rule of the palliative protocol uses the BODY: listed, not computed.
    body = stats["BODY"]
    assert body["computed"] is False and body["mean_gy"] is None
    assert "no rule" in body["reason"]


def _tps_item(roi: int, widths: list[float], volumes: list[float], **kw: Any) -> Dataset:
    item = Dataset()
    ref = Dataset()
    ref.ReferencedROINumber = roi
    ref.DVHROIContributionType = "INCLUDED"
    item.DVHReferencedROISequence = [ref]
    item.DVHType = kw.pop("kind", "CUMULATIVE")
    item.DoseUnits = kw.pop("units", "GY")
    item.DoseType = "PHYSICAL"
    item.DVHDoseScaling = kw.pop("scaling", 1.0)
    item.DVHVolumeUnits = "CM3"
    item.DVHNumberOfBins = len(widths)
    item.DVHData = [v for pair in zip(widths, volumes, strict=True) for v in pair]
    for key, value in kw.items():
        setattr(item, key, value)
    return item


def test_tps_dvhs_beside_rtchecks_with_differences_flagged(uniform: Path) -> None:
    ptv_cc = run(uniform)["dvh_statistics"][0]["volume_cc"]
    rd = uniform / "RD.dcm"
    ds = pydicom.dcmread(rd)
    # PTV: cumulative in cGy, 300 bins of 10 cGy, all of the volume up to 3000 cGy, with
    # a stated mean in % of the prescription (100), not in DoseUnits.
    ptv = _tps_item(1, [10.0] * 300, [ptv_cc] * 300, units="CGY", DVHMeanDose=100.0)
    # BODY: volume 10 % larger than rtcheck's sphere would give is flagged below.
    # A differential curve: all of it in the bin 29.9-30 Gy.
    body_cc = 4 / 3 * math.pi * 30.0**3 / 1000 * 1.10
    body = _tps_item(2, [29.9, 0.1], [0.0, body_cc], kind="DIFFERENTIAL")
    ds.DVHSequence = [ptv, body]
    ds.save_as(rd, enforce_file_format=True)
    doc = run(uniform)
    entries = {e["name"]: e for e in doc["tps_dvh_comparison"]}
    rows = {r["quantity"]: r for r in entries["PTV"]["rows"]}
    assert rows["volume"]["tps"] == pytest.approx(ptv_cc, abs=1e-3)
    assert rows["max"]["tps"] == pytest.approx(30.0)
    # Mean of the curve: all volume in the last bin, 29.9-30 Gy: its centre, 29.95 Gy.
    assert rows["mean"]["tps"] == pytest.approx(29.95)
    assert rows["mean"]["rtcheck"] == pytest.approx(30.0)
    assert not any(r["flagged"] for r in rows.values())
    assert any("stated mean" in n for n in entries["PTV"]["notes"])
    body_rows = {r["quantity"]: r for r in entries["BODY"]["rows"]}
    assert body_rows["volume"]["tps"] == pytest.approx(body_cc, rel=1e-6)
    assert body_rows["volume"]["flagged"]
    assert body_rows["volume"]["difference_percent"] == pytest.approx(
        100 * (body_rows["volume"]["rtcheck"] - body_cc) / body_cc, abs=0.01
    )
    assert not body_rows["max"]["flagged"]


def test_relative_tps_dose_is_not_compared(uniform: Path) -> None:
    rd = uniform / "RD.dcm"
    ds = pydicom.dcmread(rd)
    ds.DVHSequence = [_tps_item(1, [1.0] * 100, [10.0] * 100, units="RELATIVE")]
    ds.save_as(rd, enforce_file_format=True)
    (entry,) = run(uniform)["tps_dvh_comparison"]
    rows = {r["quantity"]: r for r in entry["rows"]}
    assert rows["mean"]["tps"] is None and not rows["mean"]["flagged"]
    assert any("RELATIVE" in n for n in entry["notes"])


def test_html_record_sections(uniform: Path, tmp_path: Path) -> None:
    rd = uniform / "RD.dcm"
    ds = pydicom.dcmread(rd)
    ds.DVHSequence = [_tps_item(1, [0.1] * 300, [1.0] * 300)]
    ds.save_as(rd, enforce_file_format=True)
    page = tmp_path / "report.html"
    result = CliRunner().invoke(
        app, ["check", str(uniform), "--protocol", "palliative", "--html", str(page)]
    )
    assert result.exit_code in (0, 1), result.output
    text = page.read_text("utf-8")
    for needle in (
        "Doe, Jane",
        "Curie, Marie",
        "SYNTH_LINAC",
        "<h2>Beams</h2>",
        '<table class="beams"><thead>',
        "DVH statistics",
        "DVHs of the planning system",
        "Checked at",
    ):
        assert needle in text, needle
    # The TPS gives 1 cc for the PTV: a flagged volume difference.
    assert "⚑" in text


@pytest.mark.shared_data
def test_real_plans_beams_as_their_files_state(shared_data: Path) -> None:
    real = shared_data / "real-exports"
    for folder, ion in (("pinnacle_brain_6", False), ("raystation_protonphantom_1", True)):
        (rp,) = (real / folder).glob("RP*.dcm")
        ds = pydicom.dcmread(rp, force=True)
        beams = ds.IonBeamSequence if ion else ds.BeamSequence
        cps = [b.IonControlPointSequence if ion else b.ControlPointSequence for b in beams]
        result = CliRunner().invoke(
            app, ["check", str(real / folder), "--json", "-", "--protocol", "palliative"]
        )
        doc = json.loads(result.stdout)
        record = doc["plan_record"]
        assert [b["name"] for b in record["beams"]] == [str(b.BeamName) for b in beams]
        for got, points in zip(record["beams"], cps, strict=True):
            assert got["energy"].startswith(f"{float(points[0].NominalBeamEnergy):g} ")
            assert got["control_points"] == len(points)
            rotating = str(getattr(points[0], "GantryRotationDirection", "NONE")) in ("CW", "CC")
            if ion:
                assert got["radiation_type"] == "PROTON" and got["energy"].endswith("MeV")
            else:
                assert got["technique"] == ("arc" if rotating else "static")
                assert got["gantry_deg"][0] == pytest.approx(float(points[0].GantryAngle))


def test_tps_dvh_data_read_from_its_bytes_as_pydicom_decodes_it(tmp_path: Path) -> None:
    # DVHData is parsed from the file's bytes; the values are those written (exact
    # decimal strings), and a value that is not a number is an error, not a zero.
    from pydicom import dcmread
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    from rtcheck.tps_dvh import read_tps_dvhs

    def written(data: str) -> Dataset:
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        item = _tps_item(1, [0.5, 0.25], [3.0, 1.5])
        ds.DVHSequence = [item]
        path = tmp_path / "dose.dcm"
        ds.save_as(path, implicit_vr=False, little_endian=True)
        raw = path.read_bytes().replace(b"0.5\\3.0\\0.25\\1.5", data.encode())
        path.write_bytes(raw)
        return dcmread(path, force=True)

    (tps,) = read_tps_dvhs([written("0.5\\3.0\\0.25\\1.5")])
    assert tps.edges_gy is not None
    assert tps.edges_gy.tolist() == pytest.approx([0.0, 0.5, 0.75])
    assert tps.cumulative.tolist() == [3.0, 1.5]
    with pytest.raises(ValueError):
        read_tps_dvhs([written("0.5\\3.0\\0.25\\1.x")])
