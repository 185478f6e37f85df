"""Reading DICOM-RT exports: exact round trips, summation rules, linking and bad input.

Exports are written with :mod:`rtcheck.synthetic` into ``tmp_path``; the real exports of
``../shared/data`` are read in place (tests skip when the folder is absent).
"""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
from pydicom import dcmread, examples
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import JPEG2000Lossless

from rtcheck import dicom_io
from rtcheck.analysis import roi_dvh
from rtcheck.dicom_io import AmbiguousExportError, find_exports, load_export, load_files
from rtcheck.dvh.core import ContourPlane, DoseGrid
from rtcheck.errors import InputError, InputErrors, MissingExtraError, RtcheckError
from rtcheck.synthetic import (
    ORIENTATIONS,
    SyntheticBeam,
    SyntheticRoi,
    circle_polygon,
    sphere_planes,
    synthetic_uid,
    write_ct_series,
    write_dose,
    write_plan,
    write_structure_set,
)
from tests.fixtures.exports import Export, linear, linear_grid, patch
from tests.fixtures.exports import write_export as write_shared_export

FOR = synthetic_uid("io", "frame")
STUDY = synthetic_uid("io", "study")


def make_grid(scale: float = 1.0, offset: float = 0.0, x0: float = 0.0) -> DoseGrid:
    return linear_grid(scale, offset, x0)


def sphere_roi(number: int = 1, name: str = "PTV") -> SyntheticRoi:
    return SyntheticRoi(
        number, name, "PTV", sphere_planes((15.0, -11.0, 4.0), 5.0, [2.0, 4.0, 6.0], n=16)
    )


def write_export(
    folder: Path,
    *,
    name: str = "A",
    grid: DoseGrid | None = None,
    rois: Sequence[SyntheticRoi] | None = None,
    fractions: int = 5,
    prescription_gy: float | None = 50.0,
    beams: Sequence[tuple[int, str, str, float | None, float | None]] = (
        SyntheticBeam(1, "A1", "TREATMENT", 200.0, 5.0),
        SyntheticBeam(2, "A2", "TREATMENT", 180.0, 5.0),
        SyntheticBeam(3, "SETUP", "SETUP", 0.0, None),
    ),
    write_rs: bool = True,
    patient_id: str = "P1",
    **dose_kwargs: Any,
) -> Export:
    """RS, RP (5 fractions, 50 Gy) and RD of one plan in ``folder``."""
    return write_shared_export(
        folder,
        tag="io",
        name=name,
        rois=[sphere_roi()] if rois is None else rois,
        grid=make_grid() if grid is None else grid,
        fractions=fractions,
        prescription_gy=prescription_gy,
        beams=beams,
        frame_uid=FOR,
        study_uid=STUDY,
        patient_id=patient_id,
        write_rs=write_rs,
        **dose_kwargs,
    )


def assert_input_error(exc: BaseException, path: Path, *words: str) -> None:
    text = str(exc)
    assert str(path) in text, text
    for word in words:
        assert word.lower() in text.lower(), f"{word!r} not in {text!r}"


# ----------------------------------------------------------------------------- round trips

ROUND_TRIPS = (
    [(o, "relative", d, b, False) for o in ORIENTATIONS for d in (False, True) for b in (16, 32)]
    + [("HFS", "absolute", d, b, False) for d in (False, True) for b in (16, 32)]
    + [(o, "relative", d, 16, True) for o in ORIENTATIONS for d in (False, True)]
)


@pytest.mark.parametrize(("orientation", "offsets", "descending", "bits", "compress"), ROUND_TRIPS)
def test_dose_round_trip(
    tmp_path: Path,
    orientation: Literal["HFS", "FFS", "HFP", "FFP"],
    offsets: Literal["relative", "absolute"],
    descending: bool,
    bits: Literal[16, 32],
    compress: bool,
) -> None:
    grid = make_grid()
    path = tmp_path / "RD.dcm"
    write_dose(
        path,
        grid,
        referenced_plan_uid=None,
        frame_of_reference_uid=FOR,
        orientation=orientation,
        offsets=offsets,
        descending=descending,
        bits=bits,
        compress=compress,
    )
    step = float(dcmread(path, stop_before_pixels=True).DoseGridScaling)
    dose = dicom_io.read_dose(path)
    got = dose.grid
    np.testing.assert_allclose(got.x, grid.x, atol=1e-9)
    np.testing.assert_allclose(got.y, grid.y, atol=1e-9)
    np.testing.assert_allclose(got.z, grid.z, atol=1e-9)
    assert got.dose.dtype == np.float64
    zz, yy, xx = np.meshgrid(got.z, got.y, got.x, indexing="ij")
    assert np.max(np.abs(got.dose - linear(xx, yy, zz))) <= step / 2 + 1e-12
    # A linear field is interpolated exactly: the physical position is right too.
    point = np.array([[7.3, -12.2, 5.1]])
    assert got.interpolate(point)[0] == pytest.approx(linear(7.3, -12.2, 5.1), abs=step)
    assert dose.summation == "PLAN" and dose.units == "GY"
    assert dose.files == [path]


def test_dose_with_rows_along_x(tmp_path: Path) -> None:
    """Rows along x and columns along y (a decubitus-like axial orientation)."""
    grid = make_grid()
    path = tmp_path / "RD.dcm"
    write_dose(path, grid, referenced_plan_uid=None, frame_of_reference_uid=FOR, bits=32)
    ds = dcmread(path)
    pixels = np.ascontiguousarray(ds.pixel_array.transpose(0, 2, 1))
    ds.PixelData = pixels.tobytes()
    ds.Rows, ds.Columns = ds.Columns, ds.Rows
    ds.PixelSpacing = [ds.PixelSpacing[1], ds.PixelSpacing[0]]
    ds.ImageOrientationPatient = ["0", "1", "0", "1", "0", "0"]  # normal = -z
    ds.GridFrameOffsetVector = [f"{-float(v):g}" for v in ds.GridFrameOffsetVector]
    ds.save_as(path, enforce_file_format=True)
    got = dicom_io.read_dose(path).grid
    np.testing.assert_allclose(got.x, grid.x)
    np.testing.assert_allclose(got.y, grid.y)
    np.testing.assert_allclose(got.z, grid.z)
    np.testing.assert_allclose(got.dose, grid.dose, atol=1e-6)


@pytest.mark.parametrize(
    ("implicit", "syntax"),
    [(True, "Implicit VR Little Endian"), (False, "Explicit VR Little Endian")],
)
def test_dose_without_file_meta(tmp_path: Path, implicit: bool, syntax: str) -> None:
    """A bare data set (no preamble, no file meta, as Monaco writes): pixels decode."""
    grid = make_grid()
    part10 = tmp_path / "RD_part10.dcm"
    write_dose(part10, grid, referenced_plan_uid=None, frame_of_reference_uid=FOR, bits=32)
    ds = dcmread(part10)
    step = float(ds.DoseGridScaling)
    del ds.file_meta
    ds.preamble = None
    bare = tmp_path / "RD_bare.dcm"
    ds.save_as(bare, enforce_file_format=False, implicit_vr=implicit, little_endian=True)
    data = bare.read_bytes()
    assert data[128:132] != b"DICM" and b"\x02\x00\x10\x00" not in data[:256]
    assert data[:4] == b"\x08\x00\x05\x00"  # the data set starts at once: (0008,0005)

    dose = dicom_io.read_dose(bare)
    assert bare.read_bytes() == data  # the input file is never written
    zz, yy, xx = np.meshgrid(dose.grid.z, dose.grid.y, dose.grid.x, indexing="ij")
    assert np.max(np.abs(dose.grid.dose - linear(xx, yy, zz))) <= step / 2 + 1e-12
    np.testing.assert_array_equal(dose.grid.dose, dicom_io.read_dose(part10).grid.dose)
    assert dose.notes == [
        f"{bare}: no DICOM file meta header (no Transfer Syntax UID): transfer syntax "
        f"inferred as {syntax}, the encoding its data set is written in"
    ]
    assert dicom_io.read_dose(part10).notes == []


def test_dose_read_is_quiet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export = write_export(tmp_path)
    load_export(find_exports(tmp_path)[0][0])
    load_files(export.rs, export.rd, export.rp)
    assert capsys.readouterr() == ("", "")


# ----------------------------------------------------------------------------- summation


def test_plan_dose_is_used_as_stored(tmp_path: Path) -> None:
    export = write_export(tmp_path, bits=32)
    loaded = load_files(export.rs, export.rd, export.rp)
    zz, yy, xx = np.meshgrid(
        loaded.dose.grid.z, loaded.dose.grid.y, loaded.dose.grid.x, indexing="ij"
    )
    np.testing.assert_allclose(loaded.dose.grid.dose, linear(xx, yy, zz), atol=1e-6)
    assert loaded.dose.referenced_plan_uid == export.plan_uid
    assert loaded.dose.frame_of_reference_uid == FOR
    assert loaded.patient_id == "P1"


def test_beam_doses_are_summed(tmp_path: Path) -> None:
    export = write_export(tmp_path, summation="BEAM", referenced_beam_number=1, bits=32)
    second = tmp_path / "RD_beam2.dcm"
    write_dose(
        second,
        make_grid(scale=0.5, offset=1.0),
        referenced_plan_uid=export.plan_uid,
        frame_of_reference_uid=FOR,
        summation="BEAM",
        referenced_beam_number=2,
        bits=32,
    )
    sets, _ = find_exports(tmp_path)
    assert len(sets) == 1 and sets[0].summation == "BEAM"
    loaded = load_export(sets[0])
    grid = loaded.dose.grid
    zz, yy, xx = np.meshgrid(grid.z, grid.y, grid.x, indexing="ij")
    np.testing.assert_allclose(grid.dose, 1.5 * linear(xx, yy, zz) + 1.0, atol=1e-6)
    assert loaded.dose.summation == "BEAM"
    assert sorted(loaded.dose.files) == sorted([export.rd, second])
    assert any("sum of 2 BEAM" in n for n in loaded.dose.notes)


def test_beam_dose_missing_for_a_treatment_beam(tmp_path: Path) -> None:
    export = write_export(tmp_path, summation="BEAM", referenced_beam_number=1)
    with pytest.raises(InputError) as info:
        load_export(find_exports(tmp_path)[0][0])
    assert_input_error(info.value, export.rp, "beam", "2 (A2)", "no BEAM dose")


def test_beam_doses_on_different_grids_are_refused(tmp_path: Path) -> None:
    export = write_export(tmp_path, summation="BEAM", referenced_beam_number=1)
    second = tmp_path / "RD_beam2.dcm"
    write_dose(
        second,
        make_grid(x0=1.0),
        referenced_plan_uid=export.plan_uid,
        frame_of_reference_uid=FOR,
        summation="BEAM",
        referenced_beam_number=2,
    )
    with pytest.raises(InputError) as info:
        load_files(export.rs, [export.rd, second], export.rp)
    assert_input_error(info.value, second, "different grids")


def write_beam_doses(folder: Path, export: Export, scales: Sequence[float]) -> None:
    """BEAM doses of beams 1, 2, ... next to the export's PLAN dose: scale x its grid."""
    for number, scale in enumerate(scales, start=1):
        write_dose(
            folder / f"RD_beam{number}.dcm",
            make_grid(scale=scale),
            referenced_plan_uid=export.plan_uid,
            frame_of_reference_uid=FOR,
            summation="BEAM",
            referenced_beam_number=number,
            bits=32,
        )


def test_plan_dose_preferred_over_beam_doses_with_comparison(tmp_path: Path) -> None:
    export = write_export(tmp_path, bits=32)
    write_beam_doses(tmp_path, export, (0.6, 0.4))
    sets, _ = find_exports(tmp_path)
    assert len(sets) == 1 and sets[0].summation == "PLAN" and len(sets[0].doses) == 3
    loaded = load_export(sets[0])
    assert loaded.dose.summation == "PLAN" and loaded.dose.files == [export.rd]
    difference = loaded.dose.beam_sum_max_difference_gy
    assert difference is not None and difference < 1e-6
    assert any("PLAN dose used" in n and "2 BEAM" in n for n in loaded.dose.notes)


def test_plan_and_beam_doses_that_disagree_are_refused(tmp_path: Path) -> None:
    # The beams sum to 1.1 x the PLAN dose: two doses of one plan, not both right.
    export = write_export(tmp_path, bits=32)
    write_beam_doses(tmp_path, export, (0.6, 0.5))
    with pytest.raises(InputError) as info:
        load_export(find_exports(tmp_path)[0][0])
    assert_input_error(info.value, export.rd, "BEAM dose(s)", "inconsistent")


def test_fraction_dose_times_fractions(tmp_path: Path) -> None:
    export = write_export(tmp_path, summation="FRACTION", fractions=4, bits=32)
    loaded = load_export(find_exports(tmp_path)[0][0])
    grid = loaded.dose.grid
    zz, yy, xx = np.meshgrid(grid.z, grid.y, grid.x, indexing="ij")
    np.testing.assert_allclose(grid.dose, 4 * linear(xx, yy, zz), atol=1e-6)
    assert loaded.dose.summation == "FRACTION"
    assert any("4 fractions" in n for n in loaded.dose.notes)
    # Without the plan: as stored, and a warning says so.
    alone = load_files(export.rs, export.rd)
    np.testing.assert_allclose(alone.dose.grid.dose, linear(xx, yy, zz), atol=1e-6)
    assert alone.plan is None
    assert any("FRACTION" in w and "used as stored" in w for w in alone.warnings)


# ----------------------------------------------------------------------------- prescription


def test_prescription_from_dose_reference_sequence(tmp_path: Path) -> None:
    path = tmp_path / "RP.dcm"
    write_plan(
        path,
        label="P",
        intent="PALLIATIVE",
        approval="UNAPPROVED",
        fractions=5,
        prescription_gy=None,
        dose_references=[
            ("PTV_low", "TARGET", 45.0),
            ("PTV_high", "TARGET", 50.0),
            ("Cord", "ORGAN_AT_RISK", 30.0),
            ("Point", "TARGET", None),
        ],
        beams=[(1, "A", "TREATMENT", 100.0, 3.0)],
        referenced_structure_set_uid="1.2.3",
        frame_of_reference_uid=FOR,
        patient_position="HFP",
    )
    plan = dicom_io.read_plan(path)
    assert plan.total_dose_gy == 50.0
    assert plan.dose_per_fraction_gy == 10.0
    assert plan.prescription_source == "DoseReferenceSequence"
    assert plan.dose_references == [
        ("PTV_low", "TARGET", 45.0, None, 45.0, None),
        ("PTV_high", "TARGET", 50.0, None, 50.0, None),
        ("Cord", "ORGAN_AT_RISK", 30.0, None, None, None),
        ("Point", "TARGET", None, None, None, None),
    ]
    assert (plan.label, plan.intent, plan.approval) == ("P", "PALLIATIVE", "UNAPPROVED")
    assert plan.patient_position == "HFP"
    assert plan.referenced_structure_set_uid == "1.2.3"
    assert plan.frame_of_reference_uid == FOR


def test_beam_doses_are_a_hint_never_a_prescription(tmp_path: Path) -> None:
    path = tmp_path / "RP.dcm"
    write_plan(
        path,
        label="P",
        fractions=4,
        prescription_gy=None,
        beams=[
            (1, "A", "TREATMENT", 100.0, 2.0),
            (2, "B", "TREATMENT", 120.0, 1.5),
            (3, "SETUP", "SETUP", 5.0, 0.7),  # setup: ignored
            (4, "ZERO", "TREATMENT", 0.0, 7.0),  # 0 MU: ignored
            # BeamMeterset is optional (type 3): a treatment beam without it still counts.
            (5, "NOMU", "TREATMENT", None, 9.0),
        ],
        referenced_structure_set_uid=None,
        frame_of_reference_uid=FOR,
    )
    plan = dicom_io.read_plan(path)
    assert plan.treatment_beams == [1, 2, 5]
    assert plan.total_dose_gy is None and plan.dose_per_fraction_gy is None
    assert plan.beam_dose_total_gy == pytest.approx((2.0 + 1.5 + 9.0) * 4)
    assert plan.prescription_source is None
    assert plan.fractions == 4
    assert plan.referenced_structure_set_uid is None


def test_no_prescription_at_all(tmp_path: Path) -> None:
    path = tmp_path / "RP.dcm"
    write_plan(
        path,
        label="P",
        fractions=4,
        prescription_gy=None,
        beams=[(1, "A", "TREATMENT", 100.0, None)],
        referenced_structure_set_uid=None,
        frame_of_reference_uid=FOR,
    )
    plan = dicom_io.read_plan(path)
    assert plan.total_dose_gy is None and plan.dose_per_fraction_gy is None
    assert plan.prescription_source is None


# ----------------------------------------------------------------------------- structures


def test_structures_planes_holes_and_notes(tmp_path: Path) -> None:
    outer = circle_polygon(0.0, 0.0, 10.0, 8)
    closed = np.vstack([outer, outer[:1]])  # repeated closing point
    rois = [
        SyntheticRoi(
            7,
            "Ring",
            "AVOIDANCE",
            [
                ContourPlane(1.0, (closed, circle_polygon(0.0, 0.0, 4.0, 8))),
                ContourPlane(-1.0, (outer,)),
                ContourPlane(1.004, (circle_polygon(30.0, 0.0, 2.0, 8),)),  # same plane
            ],
        ),
        SyntheticRoi(8, "Empty", "ORGAN", []),
        SyntheticRoi(
            9,
            "Iso",
            "MARKER",
            [ContourPlane(0.0, (np.array([[1.0, 2.0]]),))],
            geometric_type="POINT",
        ),
    ]
    path = tmp_path / "RS.dcm"
    write_structure_set(path, rois, frame_of_reference_uid=FOR, study_uid=STUDY, label="L")
    rs = dicom_io.read_structure_set(path)
    assert rs.label == "L" and rs.frame_of_reference_uid == FOR and rs.slice_positions is None
    ring, empty, point = rs.rois
    assert (ring.number, ring.name, ring.interpreted_type, ring.geometric_type) == (
        7,
        "Ring",
        "AVOIDANCE",
        "CLOSED_PLANAR",
    )
    assert [p.z for p in ring.planes] == pytest.approx([-1.0, 1.0013333], abs=1e-6)
    assert [len(p.polygons) for p in ring.planes] == [1, 3]
    assert all(poly.shape == (8, 2) for poly in ring.planes[1].polygons)  # closing point gone
    assert empty.planes == () and "empty ROI" in empty.notes[0]
    assert point.geometric_type == "POINT" and point.planes == ()
    assert "no volume" in point.notes[0]


def test_slice_positions_from_the_referenced_ct(tmp_path: Path) -> None:
    series = synthetic_uid("io", "ct")
    zs = [0.0, 2.0, 4.0, 6.0, 8.0]
    ct_uids = write_ct_series(
        tmp_path / "CT",
        zs,
        patient_id="P1",
        frame_of_reference_uid=FOR,
        study_uid=STUDY,
        series_uid=series,
    )
    rs_uid = synthetic_uid("io", "A", "rs")
    write_structure_set(
        tmp_path / "RS_A.dcm",
        [sphere_roi()],
        patient_id="P1",
        frame_of_reference_uid=FOR,
        study_uid=STUDY,
        sop_instance_uid=rs_uid,
        ct_series_uid=series,
        ct_sop_instance_uids=ct_uids,
    )
    write_export(tmp_path, write_rs=False)
    sets, _ = find_exports(tmp_path)
    assert len(sets[0].ct_files) == 5
    loaded = load_export(sets[0])
    positions = loaded.structures.slice_positions
    assert positions is not None
    np.testing.assert_allclose(positions, zs)
    assert len(loaded.ct_files) == 5
    # A CT slice missing: positions are not used, and a warning says why.
    (tmp_path / "CT" / "CT.003.dcm").unlink()
    loaded = load_export(find_exports(tmp_path)[0][0])
    assert loaded.structures.slice_positions is None
    assert any("4 of the 5 CT slices" in w for w in loaded.warnings)


# ----------------------------------------------------------------------------- scanning


def test_two_plans_give_two_export_sets(tmp_path: Path) -> None:
    write_export(tmp_path / "one", name="A")
    write_export(tmp_path / "two", name="B", patient_id="P2")
    sets, warnings = find_exports(tmp_path)
    assert [s.plan_label for s in sets] == ["PLAN_A", "PLAN_B"]
    assert [s.patient_id for s in sets] == ["P1", "P2"]
    assert warnings == []
    with pytest.raises(AmbiguousExportError) as info:
        dicom_io.load_path(tmp_path)
    assert_input_error(info.value, tmp_path, "2 plans", "--plan")
    chosen = dicom_io.load_path(tmp_path, plan=tmp_path / "two" / "RP_B.dcm")
    assert chosen.plan is not None and chosen.plan.label == "PLAN_B"


def test_junk_beside_a_valid_export_is_listed(tmp_path: Path) -> None:
    write_export(tmp_path)
    (tmp_path / "notes.txt").write_text("not dicom\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    sets, warnings = find_exports(tmp_path)
    assert len(sets) == 1
    assert "skipped notes.txt: not a DICOM file" in warnings
    assert f"skipped {Path('sub', 'image.png')}: not a DICOM file" in warnings
    loaded = dicom_io.load_path(tmp_path)
    assert "skipped notes.txt: not a DICOM file" in loaded.warnings


def test_identical_copy_is_used_once(tmp_path: Path) -> None:
    export = write_export(tmp_path)
    (tmp_path / "copy").mkdir()
    shutil.copy(export.rd, tmp_path / "copy" / "RD_A.dcm")
    sets, warnings = find_exports(tmp_path)
    assert len(sets) == 1 and len(sets[0].doses) == 1
    assert any("identical copy" in w for w in warnings)


def test_two_plan_doses_for_one_plan_are_ambiguous(tmp_path: Path) -> None:
    export = write_export(tmp_path)
    second = tmp_path / "RD_other.dcm"
    write_dose(
        second,
        make_grid(scale=2.0),
        referenced_plan_uid=export.plan_uid,
        frame_of_reference_uid=FOR,
    )
    with pytest.raises(AmbiguousExportError) as info:
        find_exports(tmp_path)
    assert_input_error(info.value, second, "two PLAN doses", "--structures")


# ----------------------------------------------------------------------------- bad input


def test_missing_folder_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        find_exports(tmp_path / "nope")
    assert_input_error(info.value, tmp_path / "nope", "not found")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError) as info:
        find_exports(tmp_path / "empty")
    assert_input_error(info.value, tmp_path / "empty", "empty")


def test_folder_of_junk_only(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello\n")
    (tmp_path / "b.bin").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(InputError) as info:
        find_exports(tmp_path)
    assert_input_error(info.value, tmp_path, "no DICOM files")


def test_folder_with_ct_only(tmp_path: Path) -> None:
    write_ct_series(
        tmp_path,
        [0.0, 1.0],
        frame_of_reference_uid=FOR,
        study_uid=STUDY,
        series_uid=synthetic_uid("ct"),
    )
    with pytest.raises(InputError) as info:
        find_exports(tmp_path)
    assert_input_error(info.value, tmp_path, "no DICOM-RT files")


def test_truncated_pixel_data(tmp_path: Path) -> None:
    export = write_export(tmp_path)
    ds = dcmread(export.rd)
    ds.PixelData = ds.PixelData[:-100]
    ds.save_as(export.rd, enforce_file_format=True)
    with pytest.raises(InputError) as info:
        load_files(export.rs, export.rd, export.rp)
    assert_input_error(info.value, export.rd, "truncated pixel data")


def test_file_cut_short(tmp_path: Path) -> None:
    export = write_export(tmp_path)
    data = export.rd.read_bytes()
    export.rd.write_bytes(data[:-37])
    with pytest.raises(InputError) as info:
        load_export(find_exports(tmp_path)[0][0])
    assert_input_error(info.value, export.rd, "truncated DICOM file: element (7FE0,0010)")


@pytest.mark.parametrize("keep", [0.2, 0.5, 0.85, 0.99])
def test_structure_set_cut_short_is_refused_not_read_in_part(tmp_path: Path, keep: float) -> None:
    # pydicom reads an RTSTRUCT cut inside its ROI Contour Sequence without complaint and
    # returns the ROIs it got: the last ones would silently have no contours.
    export = write_export(tmp_path)
    data = export.rs.read_bytes()
    export.rs.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(InputError) as info:
        load_export(find_exports(tmp_path)[0][0])
    assert_input_error(info.value, export.rs, "truncated DICOM file")
    with pytest.raises(InputError) as info:
        load_files(export.rs, export.rd, export.rp)
    assert_input_error(info.value, export.rs, "truncated DICOM file")


def test_dose_header_cut_short_is_called_truncated(tmp_path: Path) -> None:
    export = write_export(tmp_path)
    data = export.rd.read_bytes()
    export.rd.write_bytes(data[:700])  # inside the header, before Dose Units
    with pytest.raises(InputError) as info:
        load_export(find_exports(tmp_path)[0][0])
    assert_input_error(info.value, export.rd, "truncated DICOM file")


def test_missing_referenced_structure_set(tmp_path: Path) -> None:
    export = write_export(tmp_path, write_rs=False)
    with pytest.raises(InputError) as info:
        find_exports(tmp_path)
    assert_input_error(
        info.value,
        export.rp,
        "missing referenced structure set",
        export.rs_uid,
        "--structures RS.dcm --dose RD.dcm",
    )


def test_dose_whose_plan_is_missing(tmp_path: Path) -> None:
    export = write_export(tmp_path)
    export.rp.unlink()
    with pytest.raises(InputError) as info:
        find_exports(tmp_path)
    assert_input_error(
        info.value, export.rd, "missing referenced RT plan", export.plan_uid, "--structures"
    )


def test_frames_of_reference_disagree(tmp_path: Path) -> None:
    export = write_export(tmp_path, frame_of_reference_uid=synthetic_uid("other frame"))
    with pytest.raises(InputError) as info:
        load_files(export.rs, export.rd)
    assert_input_error(info.value, export.rs, "frame of reference", str(export.rd))


def test_relative_dose_is_refused(tmp_path: Path) -> None:
    export = write_export(tmp_path, units="RELATIVE")
    with pytest.raises(InputError) as info:
        load_files(export.rs, export.rd, export.rp)
    assert_input_error(info.value, export.rd, "relative dose")
    with pytest.raises(InputError) as info:
        find_exports(tmp_path)
    assert_input_error(info.value, export.rd, "relative dose")


def test_oblique_dose_grid_is_refused(tmp_path: Path) -> None:
    export = write_export(tmp_path)
    c, s = np.cos(0.3), np.sin(0.3)
    patch(
        export.rd,
        ImageOrientationPatient=[f"{c:.8f}", f"{s:.8f}", "0", f"{-s:.8f}", f"{c:.8f}", "0"],
    )
    with pytest.raises(InputError) as info:
        load_files(export.rs, export.rd, export.rp)
    assert_input_error(info.value, export.rd, "oblique dose grid", "not supported")


def test_nearly_axial_cosines_are_accepted(tmp_path: Path) -> None:
    export = write_export(tmp_path)
    patch(export.rd, ImageOrientationPatient=["1", "0", "-1.2e-16", "0", "0.99999", "2e-5"])
    loaded = load_files(export.rs, export.rd, export.rp)
    np.testing.assert_allclose(loaded.dose.grid.y, make_grid().y)


#: A 10 x 8 mm rectangle (80 mm²) drawn on the planes z = 0, 2, 4 mm.
RECTANGLE = np.array([[2.0, -18.0], [12.0, -18.0], [12.0, -10.0], [2.0, -10.0]])
ONE_POINT = np.array([[5.0, -15.0]])
TWO_POINTS = np.array([[3.0, -12.0], [9.0, -12.0]])
COLLINEAR = np.array([[2.0, -18.0], [4.0, -16.0], [6.0, -14.0], [10.0, -10.0]])  # y = x - 20
RETRACED = np.array([[2.0, -18.0], [6.0, -16.0], [9.0, -11.0], [6.0, -16.0]])  # out and back
BOW_TIE = np.array([[2.0, -18.0], [12.0, -10.0], [12.0, -18.0], [2.0, -10.0]])  # shoelace 0


def degenerate_rois() -> list[SyntheticRoi]:
    """A rectangle mixed with degenerate contours, an ROI of only those, and a bow-tie."""
    mixed = SyntheticRoi(
        1,
        "Mixed",
        "ORGAN",
        [
            ContourPlane(0.0, (RECTANGLE,)),
            ContourPlane(2.0, (RECTANGLE, ONE_POINT)),  # beside a real contour
            ContourPlane(4.0, (RECTANGLE,)),
            ContourPlane(7.0, (TWO_POINTS,)),  # planes of their own
            ContourPlane(10.0, (COLLINEAR, RETRACED)),
        ],
    )
    dots = SyntheticRoi(
        2, "Dots", "ORGAN", [ContourPlane(2.0, (ONE_POINT,)), ContourPlane(4.0, (COLLINEAR,))]
    )
    crossed = SyntheticRoi(3, "Crossed", "ORGAN", [ContourPlane(2.0, (BOW_TIE,))])
    return [mixed, dots, crossed]


def test_degenerate_contours_are_skipped_with_one_note(tmp_path: Path) -> None:
    export = write_export(tmp_path, rois=degenerate_rois())
    loaded = load_files(export.rs, export.rd, export.rp)
    mixed, dots, crossed = loaded.structures.rois
    # Only the rectangle is left, on its three planes; one note for the four skipped.
    assert [p.z for p in mixed.planes] == [0.0, 2.0, 4.0]
    for plane in mixed.planes:
        assert len(plane.polygons) == 1
        np.testing.assert_array_equal(plane.polygons[0], RECTANGLE)
    assert mixed.geometric_type == "CLOSED_PLANAR"
    assert mixed.notes == (
        "skipped 4 degenerate contour(s) (1 or 2 points, or no area) on 3 plane(s), "
        "z = 2, 7, 10 mm",
    )
    # Slab model: 80 mm² x (three 2 mm slabs) = 480 mm³ = 0.48 cc, as if drawn alone.
    dvh = roi_dvh(loaded, mixed)
    assert dvh.volume_cc == pytest.approx(0.48, rel=1e-9)
    # Every contour degenerate: a closed planar ROI without planes, i.e. empty.
    assert dots.empty and dots.planes == () and dots.geometric_type == "CLOSED_PLANAR"
    assert dots.notes == (
        "skipped 2 degenerate contour(s) (1 or 2 points, or no area) on 2 plane(s), z = 2, 4 mm",
    )
    # A bow-tie's lobes cancel in the shoelace sum but enclose an area: kept (the DVH
    # reports it as crossing itself), never skipped.
    assert len(crossed.planes) == 1 and crossed.notes == ()


def test_degenerate_note_lists_eight_planes_at_most(tmp_path: Path) -> None:
    planes = [ContourPlane(z, (RECTANGLE,)) for z in (0.0, 2.0)] + [
        ContourPlane(2.0 + 1.5 * k, (ONE_POINT,)) for k in range(1, 11)
    ]
    path = tmp_path / "RS.dcm"
    roi = SyntheticRoi(4, "Many", "ORGAN", planes)
    write_structure_set(path, [roi], frame_of_reference_uid=FOR, study_uid=STUDY)
    (many,) = dicom_io.read_structure_set(path).rois
    assert many.notes == (
        "skipped 10 degenerate contour(s) (1 or 2 points, or no area) on 10 plane(s), "
        "z = 3.5, 5, 6.5, 8, 9.5, 11, 12.5, 14, ... mm",
    )


def test_nan_in_contour_data(tmp_path: Path) -> None:
    poly = np.array([[0.0, 0.0], [123.25, 0.0], [0.0, 5.0]])
    rois = [SyntheticRoi(3, "Cord", "ORGAN", [ContourPlane(2.0, (poly,))])]
    export = write_export(tmp_path, rois=rois)
    data = export.rs.read_bytes()
    assert data.count(b"123.25") == 1
    export.rs.write_bytes(data.replace(b"123.25", b"NaN   "))
    with pytest.raises(InputError) as info:
        load_files(export.rs, export.rd, export.rp)
    assert_input_error(info.value, export.rs, "contour 1", "Cord", "NaN")


def test_several_bad_contours_reported_together(tmp_path: Path) -> None:
    rois = [
        SyntheticRoi(1, "A", "ORGAN", [ContourPlane(2.0, (RECTANGLE,))]),
        SyntheticRoi(2, "B", "ORGAN", [ContourPlane(4.0, (RECTANGLE,))]),
    ]
    export = write_export(tmp_path, rois=rois)
    ds = dcmread(export.rs)
    for item in ds.ROIContourSequence:  # 4 points = 12 values: cut to 11
        item.ContourSequence[0].ContourData = item.ContourSequence[0].ContourData[:11]
    ds.save_as(export.rs, enforce_file_format=True)
    with pytest.raises(InputErrors) as info:
        dicom_io.read_structure_set(export.rs)
    assert len(info.value.errors) == 2
    assert "'A'" in str(info.value) and "'B'" in str(info.value)
    for error in info.value.errors:
        assert_input_error(error, export.rs, "contour 1", "has 11 values", "multiple of 3")


def test_non_axial_contour(tmp_path: Path) -> None:
    path = tmp_path / "RS.dcm"
    write_structure_set(path, [sphere_roi()], frame_of_reference_uid=FOR, study_uid=STUDY)
    ds = dcmread(path)
    contour = ds.ROIContourSequence[0].ContourSequence[0]
    values = [float(v) for v in contour.ContourData]
    values[2] += 1.0  # first point off the plane
    contour.ContourData = [f"{v:.6f}" for v in values]
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(InputError) as info:
        dicom_io.read_structure_set(path)
    assert_input_error(info.value, path, "contour 1", "PTV", "not axial")


@pytest.mark.parametrize("spacing", [["0", "2.5"], ["3", "-2.5"]])
def test_zero_or_negative_pixel_spacing(tmp_path: Path, spacing: list[str]) -> None:
    export = write_export(tmp_path)
    patch(export.rd, PixelSpacing=spacing)
    with pytest.raises(InputError) as info:
        load_files(export.rs, export.rd, export.rp)
    assert_input_error(info.value, export.rd, "PixelSpacing", "zero or negative")


def test_zero_frame_spacing(tmp_path: Path) -> None:
    export = write_export(tmp_path)
    patch(export.rd, GridFrameOffsetVector=["0", "2", "2", "7", "10"])
    with pytest.raises(InputError) as info:
        load_files(export.rs, export.rd, export.rp)
    assert_input_error(info.value, export.rd, "zero frame spacing")


def test_non_monotonic_and_undefined_offsets(tmp_path: Path) -> None:
    export = write_export(tmp_path)
    patch(export.rd, GridFrameOffsetVector=["0", "4", "2", "7", "10"])
    with pytest.raises(InputError) as info:
        dicom_io.read_dose(export.rd)
    assert_input_error(info.value, export.rd, "not monotonic")
    patch(export.rd, GridFrameOffsetVector=["5", "7", "9", "12", "15"])
    with pytest.raises(InputError) as info:
        dicom_io.read_dose(export.rd)
    assert_input_error(info.value, export.rd, "neither 0")


def test_single_frame_dose(tmp_path: Path) -> None:
    export = write_export(tmp_path)
    ds = dcmread(export.rd)
    frame_bytes = ds.Rows * ds.Columns * 2
    ds.PixelData = ds.PixelData[:frame_bytes]
    ds.NumberOfFrames = 1
    ds.GridFrameOffsetVector = ["0"]
    ds.save_as(export.rd, enforce_file_format=True)
    with pytest.raises(InputError) as info:
        load_files(export.rs, export.rd, export.rp)
    assert_input_error(info.value, export.rd, "single-frame dose")


def test_missing_decoder_names_the_extra(tmp_path: Path) -> None:
    export = write_export(tmp_path)
    ds = dcmread(export.rd)
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(60)] * int(ds.NumberOfFrames))
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.save_as(export.rd, enforce_file_format=True)
    with pytest.raises(MissingExtraError, match=r"rtcheck\[codecs\]"):
        load_files(export.rs, export.rd, export.rp)


def test_not_a_dose_file(tmp_path: Path) -> None:
    export = write_export(tmp_path)
    with pytest.raises(InputError) as info:
        load_files(export.rs, export.rp)
    assert_input_error(info.value, export.rp, "expected an RTDOSE", "RTPLAN")
    junk = tmp_path / "junk.dcm"
    junk.write_text("junk")
    with pytest.raises(InputError) as info:
        load_files(junk, export.rd)
    assert_input_error(info.value, junk, "not a DICOM file")


# ----------------------------------------------------------------------------- pydicom examples


def test_pydicom_example_files_give_clear_errors(tmp_path: Path) -> None:
    paths = {name: Path(examples.get_path(name)) for name in ("rt_dose", "rt_ss", "rt_plan")}
    for path in paths.values():
        shutil.copy(path, tmp_path / path.name)
    with pytest.raises(RtcheckError) as scan:
        find_exports(tmp_path)
    assert "relative dose" in str(scan.value).lower()
    with pytest.raises(InputError) as info:
        load_files(paths["rt_ss"], paths["rt_dose"])
    assert_input_error(info.value, paths["rt_dose"], "relative dose")
    with pytest.raises(InputError) as info:
        load_files(paths["rt_ss"], paths["rt_dose"], paths["rt_plan"])
    assert_input_error(info.value, paths["rt_dose"], "relative dose")
    rs = dicom_io.read_structure_set(paths["rt_ss"])
    assert [r.geometric_type for r in rs.rois] == ["CLOSED_PLANAR", "POINT", "POINT"]
    assert all("no volume" in r.notes[0] for r in rs.rois[1:])
    plan = dicom_io.read_plan(paths["rt_plan"])
    assert plan.total_dose_gy == pytest.approx(30.826203)


# ----------------------------------------------------------------------------- real exports


@pytest.mark.shared_data
def test_alderson_raystation(shared_data: Path) -> None:
    sets, warnings = find_exports(shared_data / "alderson-raystation")
    assert len(sets) == 1 and warnings == []
    assert len(sets[0].ct_files) == 160 and len(sets[0].doses) == 2
    export = load_export(sets[0])
    plan = export.plan
    assert plan is not None
    assert plan.fractions == 20 and plan.total_dose_gy == 60.0
    assert plan.dose_per_fraction_gy == 3.0
    assert plan.treatment_beams == [1]  # setup beams 101-103 (0 MU) ignored
    assert plan.prescription_source == "DoseReferenceSequence"
    assert export.dose.summation == "PLAN" and len(export.dose.files) == 1
    peak = export.dose.grid.dose_range[1]
    difference = export.dose.beam_sum_max_difference_gy
    assert difference is not None and difference <= 0.01 * peak
    note = next(n for n in export.dose.notes if "BEAM" in n)
    match = re.search(r"\(([\d.]+) % of its maximum", note)
    assert match is not None, note
    percent = float(match.group(1))
    assert percent <= 1.0
    names = [r.name for r in export.structures.rois]
    assert names == ["Body", "PTV", "Bladder", "Rectum", "FemoralHead_L", "FemoralHead_R"]
    positions = export.structures.slice_positions
    assert positions is not None and positions.size == 160
    np.testing.assert_allclose(np.diff(positions), 2.0, atol=1e-3)
    assert export.patient_id == "TRAINING02"


@pytest.mark.shared_data
def test_breast_dicompyler(shared_data: Path) -> None:
    sets, warnings = find_exports(shared_data / "breast-dicompyler")
    assert len(sets) == 1
    assert warnings == ["skipped LICENSE: not a DICOM file"]
    export = load_export(sets[0])
    rois = export.structures.rois
    assert len(rois) == 10
    empty = [r for r in rois if r.empty]
    assert [r.name for r in empty] == ["Areola"]
    assert "empty ROI" in empty[0].notes[0]
    plan = export.plan
    assert plan is not None and plan.fractions == 7
    targets = [r for r in plan.dose_references if r.type == "TARGET"]
    assert len(targets) == 2
    assert plan.total_dose_gy == 14.0 and plan.dose_per_fraction_gy == pytest.approx(2.0)
    assert export.dose.grid.dx == 2.5 and export.dose.grid.dy == 2.5
    assert export.structures.slice_positions is None  # one CT slice of many referenced
    assert any("CT slices" in w for w in export.warnings)


@pytest.mark.shared_data
def test_nelms_explicit_mode(shared_data: Path) -> None:
    folder = shared_data / "nelms-dvh"
    export = load_files(
        folder / "STRUCTURES" / "Sphere_10_0.dcm",
        folder / "DOSE GRIDS" / "Linear_AntPost_1mm_Aligned.dcm",
    )
    assert export.plan is None
    assert export.dose.summation == "FRACTION"
    assert any("FRACTION" in w and "used as stored" in w for w in export.warnings)
    centre = export.dose.grid.interpolate(np.array([[0.0, -6.0, 6.0]]))[0]
    assert centre == pytest.approx(16.0, abs=1e-3)  # AntPost: D = 10 - y
    sphere = export.structures.roi("Sphere_10_0")
    assert sphere.geometric_type == "CLOSED_PLANAR" and len(sphere.planes) == 25
    assert export.structures.frame_of_reference_uid == export.dose.frame_of_reference_uid
    with pytest.raises(RtcheckError):  # no plans in the folder: the scan refuses
        find_exports(folder)


def _square(half: float) -> np.ndarray:
    corners = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
    return corners + np.array([15.0, -11.0])


def test_without_ct_a_change_of_slice_thickness_is_not_a_gap(tmp_path: Path) -> None:
    # No CT: planes 5 mm apart below z = 0 and above z = 10, 2 mm apart between (a CT
    # with thinner slices around the target). Each slab reaches halfway to the next
    # plane, 5 or 2 mm, so the volume is the square's area times (last - first + the
    # two half-gap caps) = 4 mm² x (30 + 2.5 + 2.5) mm.
    zs = [-10.0, -5.0, 0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 15.0, 20.0]
    body = SyntheticRoi(1, "Body", "EXTERNAL", [ContourPlane(z, (_square(1.0),)) for z in zs])
    # The target skips z = 4: a gap twice the spacing next to it ends a stack, with
    # flat caps of half that spacing on either side.
    gtv_zs = [0.0, 2.0, 6.0, 8.0]
    gtv = SyntheticRoi(2, "GTV", "GTV", [ContourPlane(z, (_square(0.5),)) for z in gtv_zs])
    export = write_export(tmp_path, rois=[body, gtv])
    loaded = load_files(export.rs, export.rd, export.rp)
    assert loaded.structures.slice_positions is None
    from rtcheck.analysis import roi_dvh

    body_dvh = roi_dvh(loaded, loaded.structures.roi("Body"))
    assert body_dvh.volume_cc * 1000 == pytest.approx(4.0 * 35.0, rel=1e-9)
    gtv_dvh = roi_dvh(loaded, loaded.structures.roi("GTV"))
    # Slabs: z 0 from -1 to 1, z 2 from 1 to 3, z 6 from 5 to 7, z 8 from 7 to 9.
    assert gtv_dvh.volume_cc * 1000 == pytest.approx(1.0 * 8.0, rel=1e-9)
    assert any("1 gap(s)" in n for n in gtv_dvh.notes)


def test_contours_of_an_undefined_roi_are_reported_and_split_items_merged(
    tmp_path: Path,
) -> None:
    export = write_export(tmp_path)
    ds = dcmread(export.rs)
    (item,) = ds.ROIContourSequence
    contours = list(item.ContourSequence)
    # The sphere's contours split over two items for ROI 1, and one for ROI 99, which
    # the Structure Set ROI Sequence does not define.
    first, second, orphan = Dataset(), Dataset(), Dataset()
    first.ReferencedROINumber, first.ContourSequence = 1, DicomSequence(contours[:1])
    second.ReferencedROINumber, second.ContourSequence = 1, DicomSequence(contours[1:])
    orphan.ReferencedROINumber, orphan.ContourSequence = 99, DicomSequence(contours[:1])
    ds.ROIContourSequence = DicomSequence([first, second, orphan])
    ds.save_as(export.rs, enforce_file_format=True)
    structures = dicom_io.read_structure_set(export.rs)
    assert len(structures.roi("PTV").planes) == 3
    assert any("ROI number(s) 99" in note for note in structures.notes)


def test_a_contour_repeated_on_its_plane_is_counted_once(tmp_path: Path) -> None:
    # Two ROI Contour items for one ROI holding the same contours: merged, each plane
    # would hold every contour twice and cancel itself by the even-odd rule.
    export = write_export(tmp_path)
    single = dicom_io.read_structure_set(export.rs).roi("PTV")
    ds = dcmread(export.rs)
    (item,) = ds.ROIContourSequence
    twin = Dataset()
    twin.ReferencedROINumber, twin.ContourSequence = 1, DicomSequence(list(item.ContourSequence))
    ds.ROIContourSequence = DicomSequence([item, twin])
    ds.save_as(export.rs, enforce_file_format=True)
    roi = dicom_io.read_structure_set(export.rs).roi("PTV")
    assert [p.area for p in roi.planes] == [p.area for p in single.planes]
    assert any("repeated exactly" in note for note in roi.notes)


# ----------------------------------------------------------------------------- real exports 2

REAL_EXPORTS = "real-exports"

#: ROI count, empty ROIs (POINT, no contours, or only degenerate contours), and the
#: degenerate-contour notes of some ROIs, read off the files (ROI names and contours).
PINNACLE = {
    "pinnacle_hn_2": (
        52,
        14,
        {
            "Rt BP +66": "skipped 2 degenerate contour(s) (1 or 2 points, or no area) on 2 "
            "plane(s), z = 282.5, 285.5 mm",
            "5425 (VMAT)": "skipped 1 degenerate contour(s) (1 or 2 points, or no area) on 1 "
            "plane(s), z = 309.5 mm",
        },
    ),
    "pinnacle_hn_4": (
        57,
        4,
        {
            "BP Rt+66": "skipped 4 degenerate contour(s) (1 or 2 points, or no area) on 4 "
            "plane(s), z = -307.999, -301.999, -295.999, -289.999 mm",
            "LARYNX_SUPR": "skipped 1 degenerate contour(s) (1 or 2 points, or no area) on 1 "
            "plane(s), z = -259.999 mm",
        },
    ),
    "pinnacle_brain_6": (
        18,
        6,
        {
            "Normal Brain": "skipped 4 degenerate contour(s) (1 or 2 points, or no area) on 3 "
            "plane(s), z = 146, 147, 150 mm",
        },
    ),
}


def raw_contours(path: Path, name: str) -> tuple[list[int], list[tuple[float, float]]]:
    """Point counts of an ROI's contours and (z, shoelace area) of those with an area,
    read with pydicom alone."""
    ds = dcmread(path)
    number = next(int(r.ROINumber) for r in ds.StructureSetROISequence if r.ROIName == name)
    counts: list[int] = []
    areas: list[tuple[float, float]] = []
    for item in ds.ROIContourSequence:
        if int(item.ReferencedROINumber) != number:
            continue
        for contour in item.ContourSequence:
            xyz = np.array([float(v) for v in contour.ContourData]).reshape(-1, 3)
            counts.append(len(xyz))
            x, y = xyz[:, 0], xyz[:, 1]
            area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
            if len(xyz) >= 3 and area > 0:
                areas.append((float(xyz[0, 2]), area))
    return counts, areas


@pytest.mark.shared_data
@pytest.mark.parametrize("name", list(PINNACLE))
def test_pinnacle_degenerate_contours_are_skipped(shared_data: Path, name: str) -> None:
    count, empty, notes = PINNACLE[name]
    folder = shared_data / REAL_EXPORTS / name
    sets, _ = find_exports(folder)
    assert len(sets) == 1
    export = load_export(sets[0])  # refused before: "a closed contour needs at least 3 points"
    rois = export.structures.rois
    assert len(rois) == count
    assert sum(r.empty for r in rois) == empty
    for roi_name, note in notes.items():
        roi = export.structures.roi(roi_name)
        assert roi.notes == (note,)
    for roi in rois:
        degenerate = [n for n in roi.notes if "degenerate" in n]
        assert len(degenerate) <= 1, roi.name  # one note per ROI
        if roi.empty and degenerate:  # only degenerate contours: closed planar, no planes
            assert roi.geometric_type == "CLOSED_PLANAR"
    # Every ROI with planes has a positive volume (none is a line or a point).
    for roi in rois:
        if roi.planes:
            assert roi_dvh(export, roi).volume_cc > 0, roi.name


@pytest.mark.shared_data
@pytest.mark.parametrize("roi_name", ["LARYNX_SUPR", "Constrictors Out", "COCHLEA_R"])
def test_pinnacle_volume_without_degenerate_contours(shared_data: Path, roi_name: str) -> None:
    """Slab volume of an ROI on evenly spaced planes (3 mm), from pydicom's contours alone:
    sum of the shoelace areas x 3 mm, the degenerate contours (no area) adding nothing."""
    folder = shared_data / REAL_EXPORTS / "pinnacle_hn_4"
    export = load_export(find_exports(folder)[0][0])
    counts, areas = raw_contours(export.structures.file, roi_name)
    assert min(counts) < 3 or len(areas) < len(counts)  # it holds degenerate contours
    zs = [z for z, _ in areas]
    assert len(set(zs)) == len(zs)  # one contour per plane
    np.testing.assert_allclose(np.diff(sorted(zs)), 3.0, atol=2e-3)
    expected_cc = sum(a for _, a in areas) * 3.0 / 1000.0
    roi = export.structures.roi(roi_name)
    assert len(roi.planes) == len(areas)
    assert roi_dvh(export, roi, "slab").volume_cc == pytest.approx(expected_cc, rel=1e-3)


@pytest.mark.shared_data
def test_monaco_files_without_file_meta(shared_data: Path) -> None:
    folder = shared_data / REAL_EXPORTS / "monaco_hn_1"
    sets, warnings = find_exports(folder)
    assert len(sets) == 1 and warnings == [] and len(sets[0].ct_files) == 5
    export = load_export(sets[0])
    (rd,) = export.dose.files
    assert rd.read_bytes()[128:132] != b"DICM"  # no Part 10 header
    assert (
        f"{rd}: no DICOM file meta header (no Transfer Syntax UID): transfer syntax inferred "
        "as Implicit VR Little Endian, the encoding its data set is written in"
    ) in export.dose.notes
    assert [r.name for r in export.structures.rois] == ["BODY", "PAROTID_LT", "PTV"]
    # The CT slices (no file meta either) give the slice positions: 5 slices 3 mm apart.
    positions = export.structures.slice_positions
    assert positions is not None
    np.testing.assert_allclose(positions, [294.5, 297.5, 300.5, 303.5, 306.5])
    # The decoded dose is the stored integers (implicit VR little endian, read with NumPy
    # from the raw element) times Dose Grid Scaling, reordered only.
    raw = dcmread(rd, force=True)
    dtype = f"<{'i' if raw.PixelRepresentation else 'u'}{int(raw.BitsAllocated) // 8}"
    stored = np.frombuffer(raw.PixelData, dtype=dtype).astype(np.float64)
    expected = np.sort(stored * float(raw.DoseGridScaling))
    np.testing.assert_array_equal(np.sort(export.dose.grid.dose.ravel()), expected)


@pytest.mark.parametrize(
    ("data", "vr", "valid"),
    [
        (b"1.5\\-2e3 ", "DS", True),
        (b".5\\5.\\+7", "DS", True),
        (b"  -0.25E-02\0", "DS", True),
        (b"12", "IS", True),
        (b" -3 \\+4", "IS", True),
        (b"1.5\\abc", "DS", False),
        (b"nan", "DS", False),
        (b"1,5", "DS", False),
        (b"1.5", "IS", False),
        (b"0x10", "IS", False),
        (b"1.2.3", "DS", False),
        (b"", "DS", False),
        (b"0.12345678901234", "DS", True),
        (b"0.123456789012345", "DS", False),
        (b"2147483647", "IS", True),
        (b"2147483648", "IS", False),
        (b"-2147483648", "IS", True),
        (b"0000000000001", "IS", False),
    ],
)
def test_number_strings_left_encoded_are_the_ones_pydicom_decodes_cleanly(
    data: bytes, vr: str, valid: bool
) -> None:
    # A DS/IS value is left encoded at read time only when it is valid DICOM: decoded
    # later, outside the reading boundary, it can neither fail nor warn. pydicom's own
    # strict validation is the oracle (and ``valid`` says what PS3.5 6.2 says).
    import warnings

    from pydicom import config
    from pydicom.dataelem import RawDataElement, convert_raw_data_element
    from pydicom.multival import MultiValue
    from pydicom.tag import Tag

    from rtcheck.dicom_io import _valid_number_string

    raw = RawDataElement(Tag(0x300A0086), vr, len(data), data, 0, False, True)
    saved = config.settings.reading_validation_mode
    config.settings.reading_validation_mode = config.RAISE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                value = convert_raw_data_element(raw).value
            except Exception:
                value = None
    finally:
        config.settings.reading_validation_mode = saved
    values = list(value) if isinstance(value, MultiValue) else [value]
    clean = value is not None and all(isinstance(v, float | int) for v in values)
    assert clean == valid
    assert _valid_number_string(data, vr) == valid


def test_slice_positions_come_from_the_folder_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The scan reads each CT slice's position once; loading the export does not read the
    # slices again, and gets the positions the series was written with (-20 to 20 mm).
    from tests.fixtures.hostile import write_small_export

    export = write_small_export(tmp_path / "export", with_ct=True)
    (found,), errors = find_exports(export.folder)
    assert not errors and len(found.ct_files) == 17 and len(found.ct_geometry) == 17
    real_read = dicom_io._read
    read: list[Path] = []

    def counting(path: Path, *args: Any, **kwargs: Any) -> Any:
        read.append(Path(path))
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(dicom_io, "_read", counting)
    loaded = load_export(found)
    assert not [p for p in read if p in set(found.ct_files)]
    expected = np.arange(-20.0, 20.0 + 1e-9, 2.5)
    positions = loaded.structures.slice_positions
    assert positions is not None
    np.testing.assert_allclose(positions, expected, atol=1e-9)
    # Without the scan's geometry (read_structure_set alone), the slices are read: same.
    read.clear()
    alone = dicom_io.read_structure_set(found.structures, found.ct_files)
    assert len([p for p in read if p in set(found.ct_files)]) == 17
    assert alone.slice_positions is not None
    np.testing.assert_array_equal(alone.slice_positions, positions)


def test_structures_computed_two_at_once_give_the_same_analysis(tmp_path: Path) -> None:
    # rtcheck dvh computes two structures at a time in threads: the same DVHs, metrics,
    # warnings and order as one at a time (no state is shared between two DVHs).

    from rtcheck.analysis import analyse
    from tests.fixtures.plans import write_plan_export
    from tests.test_golden import CENTRAL, lung

    folder = write_plan_export(tmp_path / "plan", lung(CENTRAL, 3, 18))
    export = dicom_io.load_path(folder)
    one = analyse(export, threads=1)
    two = analyse(export, threads=2)
    assert len(one.structures) == 9
    assert [s.roi.name for s in one.structures] == [s.roi.name for s in two.structures]
    for a, b in zip(one.structures, two.structures, strict=True):
        assert (a.dvh is None) == (b.dvh is None)
        if a.dvh is not None and b.dvh is not None:
            np.testing.assert_array_equal(a.dvh.differential_cc, b.dvh.differential_cc)
            assert (a.dvh.volume_cc, a.dvh.min_gy, a.dvh.max_gy, a.dvh.mean_gy) == (
                b.dvh.volume_cc,
                b.dvh.min_gy,
                b.dvh.max_gy,
                b.dvh.mean_gy,
            )
        assert a.metrics == b.metrics and a.warnings == b.warnings
    assert one.warnings == two.warnings


def test_check_computing_dvhs_ahead_in_threads_gives_the_same_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # rtcheck check computes the DVHs it will need ahead, two at a time: the report is the
    # one computed one at a time (notes in the order the checks asked for the DVHs), and
    # no DVH is computed twice or without being needed.
    from rtcheck.constraints import engine
    from rtcheck.constraints.registry import resolve_protocol
    from rtcheck.reports.check import to_json
    from tests.fixtures.plans import sphere, write_plan_export
    from tests.test_golden import CENTRAL, lung

    spec = lung(CENTRAL, 3, 18)
    # An organ no rule of the protocol names: its DVH is never needed.
    spec = replace(spec, shapes=(*spec.shapes, sphere("Stomach", (40, -60, -40), 20)))
    folder = write_plan_export(tmp_path / "plan", spec)
    export = dicom_io.load_path(folder)
    protocol = resolve_protocol("sabr-lung")
    computed: list[str] = []
    real = engine.roi_dvh

    def counted(export: dicom_io.PlanExport, roi: dicom_io.Roi, between: str = "shape") -> Any:
        computed.append(roi.name)
        return real(export, roi, between)

    monkeypatch.setattr(engine, "roi_dvh", counted)
    reports, names = [], []
    for threads in (None, 1, 2):  # None: each DVH computed when asked for
        computed.clear()
        with monkeypatch.context() as m:
            if threads is None:
                m.setattr(engine._Context, "prefetch", lambda self, rois: None)
            document = to_json(engine.check_plan(export, protocol, threads=threads))
        for key in ("checked_at", "checked_at_local"):
            document.pop(key)
        reports.append(document)
        names.append(sorted(computed))
    assert reports[0] == reports[1] == reports[2]
    assert names[0] == names[1] == names[2]
    assert len(names[2]) == len(set(names[2])) >= 4
    assert "Stomach" not in names[2]

    # Two at a time, the first batch already holds the lungs, whose rules apply by the
    # plan's 3 fractions (when: {fractions: 3}), and the plan-quality scan of the PTVs
    # runs in a thread of its own meanwhile; one at a time it runs in the caller's.
    batches: list[list[str]] = []
    scanned_in: list[str] = []
    real_prefetch, real_scan = engine._Context.prefetch, engine._quality_scan

    def recorded(self: Any, rois: Any) -> None:
        rois = list(rois)
        batches.append([r.name for r in rois])
        real_prefetch(self, rois)

    def scan(*args: Any) -> Any:
        scanned_in.append(threading.current_thread().name)
        return real_scan(*args)

    monkeypatch.setattr(engine._Context, "prefetch", recorded)
    monkeypatch.setattr(engine, "_quality_scan", scan)
    for threads in (2, 1):
        document = to_json(engine.check_plan(export, protocol, threads=threads))
        for key in ("checked_at", "checked_at_local"):
            document.pop(key)
        assert document == reports[0]
    assert "Lungs" in batches[0]
    assert len(scanned_in) == 2
    assert scanned_in[0].startswith("rtcheck-quality") and scanned_in[1] == "MainThread"
