"""Hostile DICOM through the real CLI: damaged, truncated and absurd files are refused.

Issue #13 (no crash, no hang, no silent pass). Every case runs ``rtcheck check`` on a
small synthetic export (:mod:`tests.fixtures.hostile`) with one file damaged the way a
disk, a network copy or a careless tool damages it, and asserts exit 3 with one line
naming the file and the problem -- never exit 4 (an internal error), never a traceback.
The bounded fuzz test at the end applies seeded mutations to every file.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from pydicom import config, dcmread
from pydicom.dataset import Dataset
from typer.testing import CliRunner

from rtcheck.cli.main import app
from rtcheck.dicom_io import MAX_COORDINATE_MM, read_structure_set
from rtcheck.dvh.core import ContourPlane, DoseGrid
from rtcheck.synthetic import SyntheticRoi, sphere_planes
from tests.fixtures.hostile import (
    COURSE_GY,
    Element,
    SmallExport,
    elements,
    flipped,
    many_contours,
    with_vr,
    write_small_export,
)

CHECK = ("--protocol", "palliative", "--prescription", "30/5")


def check(folder: Path) -> tuple[int, str]:
    """``rtcheck check FOLDER --protocol palliative --prescription 30/5``: exit code and
    everything printed (stdout and stderr)."""
    result = CliRunner().invoke(app, ["check", str(folder), *CHECK])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return result.exit_code, result.stdout + result.stderr


def refused(folder: Path, file: Path) -> str:
    """The error line naming ``file`` of a run that must exit 3; fails on anything else."""
    code, output = check(folder)
    assert code == 3, output
    assert "Traceback" not in output and "internal error" not in output, output
    lines = [
        line for line in output.splitlines() if line.startswith("error:") and str(file) in line
    ]
    assert lines, output
    return "\n".join(lines)


@pytest.fixture
def export(tmp_path: Path) -> SmallExport:
    return write_small_export(tmp_path / "export")


def element(path: Path, tag: int, depth: int | None = None) -> Element:
    """The first element ``tag`` of the file (at sequence depth ``depth`` if given)."""
    for e in elements(path):
        if e.tag == tag and (depth is None or e.depth == depth):
            return e
    raise AssertionError(f"no element {tag:08X} in {path}")


def set_vr(path: Path, tag: int, vr: bytes = b"QZ") -> None:
    path.write_bytes(with_vr(path.read_bytes(), element(path, tag), vr))


def resave(path: Path, ds: Dataset) -> None:
    """Write ``ds`` back without pydicom's value validation (the values are wrong on
    purpose)."""
    with config.disable_value_validation():
        ds.save_as(path, enforce_file_format=True)


def test_the_small_export_passes(export: SmallExport) -> None:
    code, output = check(export.folder)
    assert code == 0, output
    assert "VERDICT: PASS" in output


# -- 1. unknown VRs: every lazily decoded value is inside the boundary naming the file ---


@pytest.mark.parametrize(
    ("which", "tag", "keyword"),
    [
        ("rp", 0x300A0002, "RTPlanLabel"),  # the text accessor of the plan label
        ("rp", 0x300A00C2, "BeamName"),  # in the Beam Sequence
        ("rp", 0x300A0078, "NumberOfFractionsPlanned"),  # in the Fraction Group Sequence
        ("rp", 0x300C0006, "ReferencedBeamNumber"),  # two sequences deep
        ("rd", 0x30040002, "DoseUnits"),
        ("rd", 0x00081155, "ReferencedSOPInstanceUID"),  # in the Referenced RT Plan Sequence
        ("rd", 0x3004000E, "DoseGridScaling"),
        ("rs", 0x30060026, "ROIName"),  # in the Structure Set ROI Sequence
        ("rs", 0x30060050, "ContourData"),  # long values are left encoded: VR still checked
        ("rs", 0x30060084, "ReferencedROINumber"),
    ],
)
def test_unknown_vr_is_an_input_error_naming_file_and_element(
    export: SmallExport, which: str, tag: int, keyword: str
) -> None:
    path: Path = getattr(export, which)
    set_vr(path, tag)
    line = refused(export.folder, path)
    assert f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {keyword}" in line
    assert "'QZ'" in line


def _arc_of_three_control_points(path: Path) -> None:
    """The first beam's control points made three, the middle one holding a leaf and jaw
    position sequence (as every control point of an arc does)."""
    ds = dcmread(path)
    beam = ds.BeamSequence[0]
    first, last = beam.ControlPointSequence
    middle = Dataset()
    middle.ControlPointIndex = 1
    middle.CumulativeMetersetWeight = "0.5"
    jaws = Dataset()
    jaws.RTBeamLimitingDeviceType = "ASYMX"
    jaws.LeafJawPositions = ["-50", "50"]
    middle.BeamLimitingDevicePositionSequence = [jaws]
    last.ControlPointIndex = 2
    beam.ControlPointSequence = [first, middle, last]
    beam.NumberOfControlPoints = 3
    resave(path, ds)


def test_a_damaged_middle_control_point_is_not_read_and_does_not_stop_the_check(
    export: SmallExport,
) -> None:
    # The control points between a beam's first and last are read for their count only:
    # an unknown VR inside one's nested sequence (leaf positions, which nothing reads)
    # leaves the plan readable, while the same in its own elements is still refused.
    _arc_of_three_control_points(export.rp)
    set_vr(export.rp, 0x300A011C, b"QZ")  # LeafJawPositions, in the middle control point
    code, output = check(export.folder)
    assert code == 0, output
    assert "VERDICT: PASS" in output
    set_vr(export.rp, 0x300A0134, b"QZ")  # CumulativeMetersetWeight of the first one
    line = refused(export.folder, export.rp)
    assert "(300A,0134) CumulativeMetersetWeight" in line and "'QZ'" in line


def test_a_damaged_middle_control_point_element_is_refused(export: SmallExport) -> None:
    _arc_of_three_control_points(export.rp)
    middle = [e for e in elements(export.rp) if e.tag == 0x300A0134][1]  # its meterset weight
    export.rp.write_bytes(with_vr(export.rp.read_bytes(), middle, b"QZ"))
    line = refused(export.folder, export.rp)
    assert "(300A,0134) CumulativeMetersetWeight" in line and "'QZ'" in line


def test_sequence_with_an_unknown_vr(export: SmallExport) -> None:
    # A sequence's header is 12 bytes, any 'QZ' element's 8: read as one, the lengths
    # that follow run off the end of the file.
    set_vr(export.rp, 0x300A00B0)  # BeamSequence
    refused(export.folder, export.rp)


def test_sequence_encoded_as_bytes(export: SmallExport) -> None:
    # OB has a 12-byte header too: the file parses, the fraction groups are bytes.
    set_vr(export.rp, 0x300A0070, b"OB")  # FractionGroupSequence
    line = refused(export.folder, export.rp)
    assert "(300A,0070) FractionGroupSequence is encoded as OB where DICOM defines SQ" in line


def test_value_encoded_as_a_sequence(export: SmallExport) -> None:
    set_vr(export.rp, 0x300A00B4, b"SQ")  # SourceAxisDistance (DS), in the Beam Sequence
    refused(export.folder, export.rp)


def test_unknown_vr_in_a_private_element(export: SmallExport) -> None:
    ds = dcmread(export.rp)
    block = ds.private_block(0x0009, "HOSTILE TPS", create=True)
    block.add_new(0x01, "LO", "vendor note")
    resave(export.rp, ds)
    set_vr(export.rp, 0x00091001)
    line = refused(export.folder, export.rp)
    assert "(0009,1001) private" in line and "'QZ'" in line


def test_unknown_vr_in_a_ct_slice(tmp_path: Path) -> None:
    export = write_small_export(tmp_path / "export", with_ct=True)
    code, output = check(export.folder)
    assert code == 0, output  # the CT gives the slice positions
    ct = sorted(export.folder.glob("CT*.dcm"))[3]
    set_vr(ct, 0x00200032)  # ImagePositionPatient, read for the slice positions
    line = refused(export.folder, ct)
    assert "(0020,0032) ImagePositionPatient" in line and "'QZ'" in line


# -- 2. negative doses -----------------------------------------------------------------


@pytest.mark.parametrize("dose_type", ["PHYSICAL", "EFFECTIVE"])
def test_negative_dose_is_refused_with_its_minimum(tmp_path: Path, dose_type: str) -> None:
    axis = np.arange(-25.0, 25.0 + 1e-9, 2.5)
    dose = np.full((axis.size,) * 3, COURSE_GY)
    dose[0, 0, 0] = -1.5  # a corner, far from every structure
    export = write_small_export(
        tmp_path / "export", dose=DoseGrid(axis, axis, axis, dose), dose_type=dose_type
    )
    ds = dcmread(export.rd)
    assert int(ds.PixelRepresentation) == 1  # signed pixel data
    stored = float(ds.pixel_array.min()) * float(ds.DoseGridScaling)  # -1.5 Gy, quantised
    assert stored == pytest.approx(-1.5, abs=1e-3)
    line = refused(export.folder, export.rd)
    assert f"{dose_type} dose grid holds negative doses (minimum {stored:.6g} Gy)" in line


def test_error_dose_type_is_refused(tmp_path: Path) -> None:
    export = write_small_export(tmp_path / "export", dose_type="ERROR")
    line = refused(export.folder, export.rd)
    assert "DoseType ERROR" in line


# -- 3. truncated files, non-numbers, absurd coordinates -------------------------------


def test_truncated_plan_is_reported_as_truncated_not_as_missing(export: SmallExport) -> None:
    data = export.rp.read_bytes()
    cut = element(export.rp, 0x300A00C2).offset + 5  # inside a Beam Name, in a sequence
    export.rp.write_bytes(data[:cut])
    line = refused(export.folder, export.rp)
    assert "truncated DICOM file" in line
    output = check(export.folder)[1]
    assert "missing referenced RT plan" not in output


def test_plan_cut_before_its_uid_is_reported_as_truncated(export: SmallExport) -> None:
    # Cut inside the SOP Instance UID: the header reads, without the plan's UID.
    export.rp.write_bytes(export.rp.read_bytes()[: element(export.rp, 0x00080018).offset + 20])
    line = refused(export.folder, export.rp)
    assert "truncated DICOM file" in line
    assert "missing referenced RT plan" not in check(export.folder)[1]


def test_dose_cut_three_bytes_into_an_element_header(export: SmallExport) -> None:
    units = element(export.rd, 0x30040002)  # DoseUnits
    export.rd.write_bytes(export.rd.read_bytes()[: units.offset + 3])
    line = refused(export.folder, export.rd)
    assert "truncated DICOM file" in line
    assert f"element header at byte {units.offset} is cut off after 3 byte(s)" in line
    assert "DoseUnits" not in line


def test_structure_set_cut_between_two_elements(export: SmallExport) -> None:
    # Cut exactly before the ROI Contour Sequence: what is left is a complete data set.
    contours = element(export.rs, 0x30060039)
    export.rs.write_bytes(export.rs.read_bytes()[: contours.offset])
    line = refused(export.folder, export.rs)
    assert "no ROIContourSequence (required)" in line


def test_number_of_frames_that_is_not_a_number(export: SmallExport) -> None:
    # pydicom will not write 'abc' as an IS: splice the element's bytes (top level,
    # explicit VR, 2-byte length).
    frames = element(export.rd, 0x00280008)
    data = export.rd.read_bytes()
    (length,) = struct.unpack_from("<H", data, frames.offset + 6)
    header = data[frames.offset : frames.offset + 6] + struct.pack("<H", 4)
    end = frames.offset + 8 + length
    export.rd.write_bytes(data[: frames.offset] + header + b"abc " + data[end:])
    assert dcmread(export.rd).get_item(0x00280008).VR == "IS"  # not decoded: no warning
    line = refused(export.folder, export.rd)
    assert "NumberOfFrames 'abc' is not a whole number" in line
    assert "single-frame" not in line


def test_absurd_contour_coordinate_names_roi_and_file(export: SmallExport) -> None:
    ds = dcmread(export.rs)
    contour = ds.ROIContourSequence[0].ContourSequence[2]
    values = [float(v) for v in contour.ContourData]
    values[0] = 1e300
    with config.disable_value_validation():
        contour.ContourData = [f"{v:.10g}" for v in values]
    resave(export.rs, ds)
    line = refused(export.folder, export.rs)
    assert "ROI 'PTV'" in line and "1e+300 mm" in line
    output = check(export.folder)[1]
    assert "Warning" not in output and "overflow" not in output


def test_coordinates_within_the_limit_are_read(tmp_path: Path) -> None:
    # A contour 90 m from the origin is far but finite: read, not refused.
    far = MAX_COORDINATE_MM * 0.9
    square = np.array([[far, far], [far + 5.0, far], [far + 5.0, far + 5.0], [far, far + 5.0]])
    roi = SyntheticRoi(3, "Far", "ORGAN", [ContourPlane(0.0, (square,))])
    (read,) = read_structure_set(write_small_export(tmp_path / "far", rois=[roi]).rs).rois
    np.testing.assert_allclose(read.planes[0].polygons[0], square)


# -- 5. many contours: the duplicate check is linear -----------------------------------


def test_ten_thousand_contours_on_ten_planes_are_all_kept(tmp_path: Path) -> None:
    # 1000 distinct 0.4 mm squares per plane, then the first plane's 40 first squares
    # written a second time (a double export): those count once.
    nodes = many_contours(10_000, per_plane=1000)
    first = nodes.planes[0]
    doubled = ContourPlane(first.z, tuple(first.polygons) + tuple(first.polygons[:40]))
    roi = SyntheticRoi(3, "Nodes", "ORGAN", [doubled, *nodes.planes[1:]])
    zs = [float(z) for z in np.arange(-20.0, 20.0 + 1e-9, 2.5)]
    ptv = SyntheticRoi(1, "PTV", "PTV", sphere_planes((0.0, 0.0, 0.0), 10.0, zs, n=16))
    export = write_small_export(tmp_path / "export", rois=[ptv, roi])
    structures = read_structure_set(export.rs)
    read = structures.roi("Nodes")
    assert len(read.planes) == 10
    assert [len(p.polygons) for p in read.planes] == [1000] * 10
    assert "40 contour(s) repeated exactly on the same plane counted once" in read.notes
    for plane, written in zip(read.planes, nodes.planes, strict=True):
        assert plane.z == pytest.approx(written.z)
        np.testing.assert_allclose(plane.polygons[-1], written.polygons[-1], atol=1e-9)


def test_a_contour_repeated_with_negative_zero_is_one_contour(tmp_path: Path) -> None:
    # The same square twice on one plane, the second time starting at "-0", "-0": the
    # same point, so the same contour (the even-odd rule would cancel a second copy).
    square = np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 4.0]])
    roi = SyntheticRoi(1, "PTV", "PTV", [ContourPlane(0.0, (square, square))])
    export = write_small_export(tmp_path / "export", rois=[roi])
    ds = dcmread(export.rs)
    (item,) = ds.ROIContourSequence
    second = item.ContourSequence[1]
    second.ContourData = ["-0", "-0.0", *[str(v) for v in second.ContourData[2:]]]
    resave(export.rs, ds)
    (read,) = read_structure_set(export.rs).rois
    assert [len(p.polygons) for p in read.planes] == [1]


# -- 4. bounded fuzz -------------------------------------------------------------------


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


#: VRs swapped in for an element's own (each 2-byte-length VR keeps the file parseable).
_WRONG_VRS = (b"US", b"FD", b"SQ", b"AT", b"UL", b"DS", b"SS", b"FL", b"IS", b"PN", b"DA", b"UI")


def _mutations(export: SmallExport, seed: int) -> list[tuple[str, Path, bytes]]:
    """Seeded damage to each file: cuts at element boundaries (a sample, with cuts
    inside headers), wrong VRs and byte flips in the data set."""
    rng = random.Random(seed)
    cases: list[tuple[str, Path, bytes]] = []
    for path in (export.rp, export.rd, export.rs):
        data = path.read_bytes()
        found = elements(path)
        offsets = sorted({e.offset for e in found})
        for offset in rng.sample(offsets, min(8, len(offsets))):
            delta = rng.choice((0, 0, 3, 6))
            cases.append((f"{path.name} cut at {offset + delta}", path, data[: offset + delta]))
        for e in rng.sample(found, min(6, len(found))):
            vr = rng.choice([v for v in _WRONG_VRS if v.decode() != e.vr])
            cases.append((f"{path.name} {e.label} as {vr.decode()}", path, with_vr(data, e, vr)))
        for i in range(6):
            count = rng.choice((1, 2, 4, 16))
            cases.append((f"{path.name} flip {i}", path, flipped(data, rng, count, 132)))
    return cases


@pytest.mark.slow
def test_fuzz_never_crashes_never_hides(tmp_path: Path) -> None:
    # 60 damaged exports: about 10 s, 40 s on a busy 2-core machine.
    export = write_small_export(tmp_path / "export")
    before = _digests(export.folder)
    work = tmp_path / "work"
    seen: dict[int, int] = {}
    mutations = _mutations(export, seed=13)
    for label, path, damaged in mutations:
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(export.folder, work)
        (work / path.name).write_bytes(damaged)
        code, output = check(work)
        seen[code] = seen.get(code, 0) + 1
        assert code in (0, 1, 3), f"{label}: exit {code}\n{output}"
        assert "Traceback" not in output and "internal error" not in output, f"{label}\n{output}"
        if code == 3:
            assert "error:" in output, f"{label}\n{output}"
        else:
            assert "VERDICT:" in output, f"{label}\n{output}"
    assert _digests(export.folder) == before  # the input folder is never written to
    assert seen.get(3, 0) > len(mutations) // 3  # much of the damage is refused


def test_element_offsets_are_where_the_tags_are(export: SmallExport) -> None:
    # The fuzz helpers' map of the files: every element's tag is at its offset.
    for path in (export.rp, export.rd, export.rs):
        data = path.read_bytes()
        for e in elements(path):
            group, number = struct.unpack_from("<HH", data, e.offset)
            assert (group << 16) | number == e.tag
