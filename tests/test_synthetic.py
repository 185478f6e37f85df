"""The synthetic DICOM-RT writers: valid files that encode exactly what was asked.

The dose encoding is checked here against the standard directly (pixel (frame k, row
i, column j) lies at IPP + j * column spacing * row cosines + i * row spacing * column
cosines + offset_k * normal, PS3.3 C.7.6.2.1.1 and C.8.8.3.2), independently of
``rtcheck.dicom_io``, so that a writer and a reader making the same mistake cannot
pass together.
"""

from __future__ import annotations

import filecmp
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from pydicom import config, dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, RLELossless

from rtcheck import dicom_io
from rtcheck.dvh.core import ContourPlane, DoseGrid, even_odd_area
from rtcheck.synthetic import (
    ORIENTATIONS,
    RT_DOSE_STORAGE,
    RT_PLAN_STORAGE,
    RT_STRUCTURE_SET_STORAGE,
    SyntheticBeam,
    SyntheticRoi,
    circle_polygon,
    cylinder_planes,
    demo_dose,
    shell_planes,
    sphere_planes,
    synthetic_uid,
    write_ct_series,
    write_demo_export,
    write_dose,
    write_plan,
    write_structure_set,
)
from tests.fixtures.exports import linear, linear_grid

FOR = synthetic_uid("test", "frame")
STUDY = synthetic_uid("test", "study")


@pytest.fixture
def strict_reading() -> Iterator[None]:
    """Raise on any value that breaks the VR rules; restore the setting afterwards."""
    saved = config.settings.reading_validation_mode
    config.settings.reading_validation_mode = config.RAISE
    try:
        yield
    finally:
        config.settings.reading_validation_mode = saved


def touch_all(ds: Dataset) -> None:
    """Convert every element value (validating it under strict reading)."""
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                touch_all(item)
        else:
            _ = elem.value


# ----------------------------------------------------------------------------- geometry


def test_circle_polygon_is_regular_and_counter_clockwise() -> None:
    poly = circle_polygon(1.0, -2.0, 5.0, n=8)
    assert poly.shape == (8, 2)
    np.testing.assert_allclose(np.hypot(poly[:, 0] - 1.0, poly[:, 1] + 2.0), 5.0)
    np.testing.assert_allclose(poly[0], [6.0, -2.0])
    signed = 0.5 * np.sum(
        poly[:, 0] * np.roll(poly[:, 1], -1) - np.roll(poly[:, 0], -1) * poly[:, 1]
    )
    assert signed == pytest.approx(0.5 * 8 * 25 * math.sin(2 * math.pi / 8))
    with pytest.raises(ValueError, match="3 vertices"):
        circle_polygon(0, 0, 1, n=2)


def test_sphere_cylinder_and_shell_planes() -> None:
    zs = [-20.0, -10.0, 0.0, 10.0, 20.0]
    sphere = sphere_planes((0.0, 0.0, 0.0), 15.0, zs, n=16)
    assert [p.z for p in sphere] == [-10.0, 0.0, 10.0]
    np.testing.assert_allclose(np.hypot(*sphere[0].polygons[0].T), math.sqrt(125.0))
    cylinder = cylinder_planes(1.0, 2.0, 3.0, zs, n=16)
    assert len(cylinder) == 5
    shell = shell_planes((0.0, 0.0, 0.0), 15.0, 5.0, zs, n=64)
    assert [len(p.polygons) for p in shell] == [1, 2, 1]
    hole = shell[1]
    outer, inner = (even_odd_area([poly]) for poly in hole.polygons)
    assert hole.area == pytest.approx(outer - inner)
    with pytest.raises(ValueError):
        shell_planes((0.0, 0.0, 0.0), 5.0, 15.0, zs)


def test_synthetic_uid_is_deterministic_and_valid() -> None:
    a = synthetic_uid("x", "y")
    assert a == synthetic_uid("x", "y")
    assert a != synthetic_uid("x", "z")
    assert UID(a).is_valid
    assert len(a) <= 64


# ----------------------------------------------------------------------------- dose

CASES = [
    (o, off, desc)
    for o in ORIENTATIONS
    for off in ("relative", "absolute")
    for desc in (False, True)
    if off == "relative" or o == "HFS"
]


@pytest.mark.parametrize(("orientation", "offsets", "descending"), CASES)
def test_dose_encodes_the_physical_dose_per_the_standard(
    tmp_path: Path,
    orientation: Literal["HFS", "FFS", "HFP", "FFP"],
    offsets: Literal["relative", "absolute"],
    descending: bool,
    strict_reading: None,
) -> None:
    grid = linear_grid()
    path = tmp_path / "RD.dcm"
    write_dose(
        path,
        grid,
        referenced_plan_uid=synthetic_uid("plan"),
        frame_of_reference_uid=FOR,
        orientation=orientation,
        offsets=offsets,
        descending=descending,
        bits=32,
    )
    ds = dcmread(path)
    touch_all(ds)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.SOPClassUID == RT_DOSE_STORAGE
    iop = np.array(ds.ImageOrientationPatient, dtype=float)
    np.testing.assert_array_equal(iop, ORIENTATIONS[orientation])
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    ipp = np.array(ds.ImagePositionPatient, dtype=float)
    dr, dc = (float(v) for v in ds.PixelSpacing)
    frame_offsets = np.array(ds.GridFrameOffsetVector, dtype=float)
    steps = np.diff(frame_offsets)
    assert np.all(steps < 0) if descending else np.all(steps > 0)
    if offsets == "relative":
        assert frame_offsets[0] == 0.0
        plane_origin = ipp[None, :] + frame_offsets[:, None] * normal[None, :]
    else:
        assert frame_offsets[0] == ipp[2]
        plane_origin = np.column_stack(
            [
                np.full_like(frame_offsets, ipp[0]),
                np.full_like(frame_offsets, ipp[1]),
                frame_offsets,
            ]
        )
    k, i, j = np.meshgrid(
        np.arange(ds.NumberOfFrames), np.arange(ds.Rows), np.arange(ds.Columns), indexing="ij"
    )
    position = plane_origin[k] + (j * dc)[..., None] * row + (i * dr)[..., None] * col
    stored = ds.pixel_array.astype(float) * float(ds.DoseGridScaling)
    expected = linear(position[..., 0], position[..., 1], position[..., 2])
    assert np.max(np.abs(stored - expected)) <= float(ds.DoseGridScaling) / 2 + 1e-12
    # The same nodes as the grid written, only stored in another order.
    np.testing.assert_allclose(np.unique(position[..., 2]), grid.z)
    np.testing.assert_allclose(np.unique(position[..., 0]), grid.x)


@pytest.mark.parametrize("bits", [16, 32])
def test_dose_scaling_uses_the_full_integer_range(tmp_path: Path, bits: Literal[16, 32]) -> None:
    grid = linear_grid()
    path = tmp_path / "RD.dcm"
    write_dose(path, grid, referenced_plan_uid=None, frame_of_reference_uid=FOR, bits=bits)
    ds = dcmread(path)
    assert ds.BitsAllocated == bits and ds.PixelRepresentation == 0
    peak = float(np.max(grid.dose))
    scaling = float(ds.DoseGridScaling)
    assert len(str(ds["DoseGridScaling"].value)) <= 16
    assert scaling * (2**bits - 1) >= peak
    assert scaling <= peak / (2**bits - 1) * (1 + 1e-6)
    assert (2**bits - 1) * (1 - 1e-6) <= int(ds.pixel_array.max()) <= 2**bits - 1


def test_dose_rle_compressed(tmp_path: Path, strict_reading: None) -> None:
    grid = linear_grid()
    path = tmp_path / "RD.dcm"
    write_dose(
        path,
        grid,
        referenced_plan_uid=None,
        frame_of_reference_uid=FOR,
        compress=True,
        sop_instance_uid=synthetic_uid("rle"),
    )
    ds = dcmread(path)
    touch_all(ds)
    assert ds.file_meta.TransferSyntaxUID == RLELossless
    assert ds.SOPInstanceUID == synthetic_uid("rle")  # compressing keeps the UID
    stored = ds.pixel_array.astype(float) * float(ds.DoseGridScaling)
    assert np.max(np.abs(stored - grid.dose)) <= float(ds.DoseGridScaling) / 2 + 1e-12


def test_dose_references_plan_and_beam(tmp_path: Path) -> None:
    path = tmp_path / "RD.dcm"
    write_dose(
        path,
        linear_grid(),
        referenced_plan_uid="1.2.3",
        frame_of_reference_uid=FOR,
        summation="BEAM",
        referenced_beam_number=4,
    )
    ds = dcmread(path)
    ref = ds.ReferencedRTPlanSequence[0]
    assert ref.ReferencedSOPClassUID == RT_PLAN_STORAGE
    assert ref.ReferencedSOPInstanceUID == "1.2.3"
    beam = ref.ReferencedFractionGroupSequence[0].ReferencedBeamSequence[0]
    assert beam.ReferencedBeamNumber == 4
    assert ds.DoseSummationType == "BEAM" and ds.DoseUnits == "GY"


def test_dose_refuses_what_it_cannot_write(tmp_path: Path) -> None:
    grid = linear_grid()
    with pytest.raises(ValueError, match="HFS"):
        write_dose(
            tmp_path / "a.dcm",
            grid,
            referenced_plan_uid=None,
            frame_of_reference_uid=FOR,
            orientation="FFS",
            offsets="absolute",
        )
    with pytest.raises(ValueError, match="16-bit"):
        write_dose(
            tmp_path / "b.dcm",
            grid,
            referenced_plan_uid=None,
            frame_of_reference_uid=FOR,
            bits=32,
            compress=True,
        )


def test_negative_dose_is_stored_signed(tmp_path: Path) -> None:
    grid = linear_grid()
    signed = DoseGrid(grid.x, grid.y, grid.z, grid.dose - 3.0)
    path = tmp_path / "RD.dcm"
    write_dose(
        path, signed, referenced_plan_uid=None, frame_of_reference_uid=FOR, dose_type="ERROR"
    )
    ds = dcmread(path)
    assert ds.PixelRepresentation == 1
    stored = ds.pixel_array.astype(float) * float(ds.DoseGridScaling)
    assert np.max(np.abs(stored - signed.dose)) <= float(ds.DoseGridScaling) / 2 + 1e-12


# ----------------------------------------------------------------------------- plan, RS, CT


def test_plan_contents(tmp_path: Path, strict_reading: None) -> None:
    path = tmp_path / "RP.dcm"
    uid = write_plan(
        path,
        label="LUNG",
        intent="CURATIVE",
        approval="APPROVED",
        fractions=5,
        dose_per_fraction_gy=11.0,
        prescription_gy=55.0,
        beams=[
            SyntheticBeam(1, "A", "TREATMENT", 250.0, 5.5),
            SyntheticBeam(2, "SETUP", "SETUP", None, None),
        ],
        referenced_structure_set_uid="1.2.3.4",
        frame_of_reference_uid=FOR,
        patient_position="FFS",
    )
    ds = dcmread(path)
    touch_all(ds)
    assert ds.SOPInstanceUID == uid and ds.SOPClassUID == RT_PLAN_STORAGE
    assert (ds.RTPlanLabel, ds.PlanIntent, ds.ApprovalStatus) == ("LUNG", "CURATIVE", "APPROVED")
    assert ds.DoseReferenceSequence[0].DoseReferenceType == "TARGET"
    assert float(ds.DoseReferenceSequence[0].TargetPrescriptionDose) == 55.0
    group = ds.FractionGroupSequence[0]
    assert group.NumberOfFractionsPlanned == 5
    assert float(group.ReferencedBeamSequence[0].BeamMeterset) == 250.0
    assert "BeamMeterset" not in group.ReferencedBeamSequence[1]
    assert [b.TreatmentDeliveryType for b in ds.BeamSequence] == ["TREATMENT", "SETUP"]
    assert ds.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID == "1.2.3.4"
    assert ds.PatientSetupSequence[0].PatientPosition == "FFS"
    with pytest.raises(ValueError, match="prescription"):
        write_plan(
            tmp_path / "bad.dcm",
            label="X",
            fractions=5,
            dose_per_fraction_gy=10.0,
            prescription_gy=55.0,
            beams=[],
            referenced_structure_set_uid=None,
            frame_of_reference_uid=FOR,
        )


def test_plan_without_prescription_has_no_dose_reference(tmp_path: Path) -> None:
    path = tmp_path / "RP.dcm"
    write_plan(
        path,
        label="X",
        fractions=2,
        prescription_gy=None,
        beams=[(1, "A", "TREATMENT", 100.0, 2.0)],
        referenced_structure_set_uid=None,
        frame_of_reference_uid=FOR,
    )
    ds = dcmread(path)
    assert "DoseReferenceSequence" not in ds
    assert "ReferencedStructureSetSequence" not in ds


def test_structure_set_and_ct(tmp_path: Path, strict_reading: None) -> None:
    zs = [-2.5, 0.0, 2.5]
    series = synthetic_uid("ct series")
    ct_uids = write_ct_series(
        tmp_path, zs, frame_of_reference_uid=FOR, study_uid=STUDY, series_uid=series
    )
    assert len(ct_uids) == 3
    ct = dcmread(tmp_path / "CT.002.dcm")
    touch_all(ct)
    assert float(ct.ImagePositionPatient[2]) == 0.0 and ct.Rows == 8
    rois = [
        SyntheticRoi(1, "PTV", "PTV", sphere_planes((0.0, 0.0, 0.0), 5.0, zs, n=12)),
        SyntheticRoi(2, "Ring", "AVOIDANCE", shell_planes((0.0, 0.0, 0.0), 9.0, 4.0, zs)),
        SyntheticRoi(3, "Empty", "ORGAN", []),
        SyntheticRoi(
            4,
            "Mark",
            "MARKER",
            [ContourPlane(0.0, (np.array([[1.0, 2.0]]),))],
            geometric_type="POINT",
        ),
    ]
    path = tmp_path / "RS.dcm"
    uid = write_structure_set(
        path,
        rois,
        frame_of_reference_uid=FOR,
        study_uid=STUDY,
        ct_series_uid=series,
        ct_sop_instance_uids=ct_uids,
    )
    ds = dcmread(path)
    touch_all(ds)
    assert ds.SOPInstanceUID == uid and ds.SOPClassUID == RT_STRUCTURE_SET_STORAGE
    assert [r.ROIName for r in ds.StructureSetROISequence] == ["PTV", "Ring", "Empty", "Mark"]
    contours = ds.ROIContourSequence
    assert len(contours[0].ContourSequence) == 3
    assert len(contours[1].ContourSequence) == 6  # outer + hole on each plane
    assert "ContourSequence" not in contours[2]
    first = contours[0].ContourSequence[0]
    assert first.NumberOfContourPoints == 12 and len(first.ContourData) == 36
    series_item = (
        ds.ReferencedFrameOfReferenceSequence[0]
        .RTReferencedStudySequence[0]
        .RTReferencedSeriesSequence[0]
    )
    assert series_item.SeriesInstanceUID == series
    assert [c.ReferencedSOPInstanceUID for c in series_item.ContourImageSequence] == ct_uids


# ----------------------------------------------------------------------------- demo


def test_demo_export_is_deterministic_and_complete(tmp_path: Path, strict_reading: None) -> None:
    first = write_demo_export(tmp_path / "a")
    second = write_demo_export(tmp_path / "b")
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir())
    assert {"RS.dcm", "RP.dcm", "RD.dcm"} <= set(names) and len(names) == 44
    _, mismatch, errors = filecmp.cmpfiles(first, second, names, shallow=False)
    assert not mismatch and not errors
    for name in ("RS.dcm", "RP.dcm", "RD.dcm", "CT.001.dcm"):
        ds = dcmread(first / name)
        touch_all(ds)
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian


def test_demo_export_loads_as_described(tmp_path: Path) -> None:
    folder = write_demo_export(tmp_path / "demo")
    sets, warnings = dicom_io.find_exports(folder)
    assert len(sets) == 1 and warnings == []
    export = dicom_io.load_export(sets[0])
    plan = export.plan
    assert plan is not None
    assert (plan.label, plan.intent, plan.approval) == ("LUNG_SABR", "CURATIVE", "APPROVED")
    assert plan.fractions == 3 and plan.total_dose_gy == 54.0
    assert plan.dose_per_fraction_gy == 18.0
    assert plan.prescription_source == "DoseReferenceSequence"
    assert plan.treatment_beams == [1, 2]
    assert [r.name for r in export.structures.rois] == [
        "PTV",
        "Shell_PTV",
        "SpinalCord",
        "BODY",
        "GTV",
        "Lungs",
        "Bronchus",
        "Trachea",
        "Heart",
        "GreatVes",
        "Esophagus",
    ]
    shell = export.structures.roi("Shell_PTV")
    assert max(len(p.polygons) for p in shell.planes) == 2
    positions = export.structures.slice_positions
    assert positions is not None and positions.size == 41
    grid = export.dose.grid
    assert grid.dx == 2.5 and grid.dy == 2.5
    assert export.dose.summation == "PLAN"
    centre_and_surface = np.array([[0.0, 0.0, 0.0], [15.0, 0.0, 0.0]])
    np.testing.assert_allclose(grid.interpolate(centre_and_surface), [67.5, 54.0], atol=1e-6)
    np.testing.assert_allclose(demo_dose(np.array(15.0), np.array(0.0), np.array(0.0)), 54.0)
    assert export.warnings == []
