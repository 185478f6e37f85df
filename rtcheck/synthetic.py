"""Realistic synthetic DICOM-RT exports written with pydicom.

Used by ``rtcheck demo`` (the bundled sample plan) and by the tests, which write known
geometry and analytic dose fields, read them back through :mod:`rtcheck.dicom_io` and
compare with exact values.

Every builder is a pure function of its explicit inputs: nothing is read from the
environment, dates and times are fixed, and UIDs are either passed in or generated. Pass
UIDs made with :func:`synthetic_uid` (deterministic, derived from a fixed root) when
reruns must produce byte-identical files, as :func:`write_demo_export` does.

Files are written as DICOM Part 10 files (128-byte preamble, ``DICM``, file meta group)
in Explicit VR Little Endian, or RLE Lossless for a compressed dose (encoded by
pydicom's own RLE encoder, no optional package needed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import NDArray
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)

from rtcheck.dvh import ContourPlane, DoseGrid, FloatArray

__all__ = [
    "CT_IMAGE_STORAGE",
    "ORIENTATIONS",
    "RT_DOSE_STORAGE",
    "RT_PLAN_STORAGE",
    "RT_STRUCTURE_SET_STORAGE",
    "SyntheticBeam",
    "SyntheticRoi",
    "circle_polygon",
    "cylinder_planes",
    "demo_dose",
    "shell_planes",
    "sphere_planes",
    "synthetic_uid",
    "write_ct_series",
    "write_demo_export",
    "write_dose",
    "write_plan",
    "write_structure_set",
]

#: SOP classes written here.
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
RT_DOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"
RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
RT_PLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.5"
RT_ION_PLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.8"
#: The (retired but still customary) SOP class a structure set uses to reference a study.
_STUDY_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"

#: Root of every deterministic UID: pydicom's registered root plus an rtcheck branch.
UID_ROOT = "1.2.826.0.1.3680043.8.498."

Orientation = Literal["HFS", "FFS", "HFP", "FFP"]

#: Row and column direction cosines (ImageOrientationPatient) of the axial orientations.
#: The first three values are the direction of increasing column index along a row,
#: the last three the direction of increasing row index down a column.
ORIENTATIONS: dict[str, tuple[float, float, float, float, float, float]] = {
    "HFS": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    "FFS": (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    "HFP": (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0),
    "FFP": (1.0, 0.0, 0.0, 0.0, -1.0, 0.0),
}

_DATE = "20240101"
_TIME = "120000"
DEFAULT_PATIENT_ID = "RTCHECK-SYNTH"


def synthetic_uid(*parts: str) -> str:
    """A valid UID derived deterministically from ``parts`` (same parts, same UID).

    Parameters
    ----------
    parts
        Any strings that identify the object, e.g. ``("demo", "plan")``.

    Returns
    -------
    str
        A UID under :data:`UID_ROOT`, at most 64 characters.
    """
    return str(generate_uid(prefix=UID_ROOT, entropy_srcs=["rtcheck", *parts]))


@dataclass(frozen=True)
class SyntheticRoi:
    """One ROI to write into a structure set.

    Parameters
    ----------
    number
        ROI Number.
    name
        ROI Name.
    interpreted_type
        RT ROI Interpreted Type (``PTV``, ``ORGAN``, ``EXTERNAL``, ...).
    planes
        Contours per plane; every polygon of every plane becomes one contour item.
        Polygons are written as given (no check on the number of points), which lets
        tests write deliberately broken contours.
    geometric_type
        Contour Geometric Type of every contour (``CLOSED_PLANAR``, ``POINT``, ...).
    color
        ROI Display Color (RGB 0-255).
    """

    number: int
    name: str
    interpreted_type: str
    planes: Sequence[ContourPlane]
    geometric_type: str = "CLOSED_PLANAR"
    color: tuple[int, int, int] = (255, 0, 0)


class SyntheticBeam(NamedTuple):
    """One beam of a synthetic plan.

    Parameters
    ----------
    number
        Beam Number.
    name
        Beam Name.
    delivery
        Treatment Delivery Type, ``TREATMENT`` or ``SETUP``.
    meterset
        Beam Meterset (MU) in the fraction group, or None to omit it.
    dose_gy
        Beam Dose (Gy per fraction at the beam dose point), or None to omit it.
    """

    number: int
    name: str
    delivery: str = "TREATMENT"
    meterset: float | None = 100.0
    dose_gy: float | None = None


BeamSpec = tuple[int, str, str, float | None, float | None]
#: A point in patient coordinates (mm).
Point3 = tuple[float, float, float]


# --------------------------------------------------------------------------------------
# Geometry helpers
# --------------------------------------------------------------------------------------


def circle_polygon(cx: float, cy: float, r: float, n: int = 64) -> FloatArray:
    """Regular ``n``-gon inscribed in a circle, counter-clockwise, first vertex not repeated.

    Parameters
    ----------
    cx, cy
        Centre in mm.
    r
        Circumradius in mm.
    n
        Number of vertices (at least 3).

    Returns
    -------
    numpy.ndarray
        ``(n, 2)`` vertices in mm.
    """
    if n < 3:
        raise ValueError("a polygon needs at least 3 vertices")
    t = 2.0 * np.pi * np.arange(n) / n
    return np.column_stack([cx + r * np.cos(t), cy + r * np.sin(t)])


def sphere_planes(
    center: tuple[float, float, float],
    radius: float,
    zs: Sequence[float],
    n: int = 64,
    min_radius: float = 0.5,
) -> list[ContourPlane]:
    """Circular cross-sections of a sphere on the given planes.

    Planes where the section's radius is below ``min_radius`` mm (outside the sphere or
    grazing its poles) are left out.
    """
    cx, cy, cz = center
    planes = []
    for z in zs:
        rr = radius**2 - (z - cz) ** 2
        if rr > min_radius**2:
            planes.append(ContourPlane(float(z), (circle_polygon(cx, cy, math.sqrt(rr), n),)))
    return planes


def cylinder_planes(
    cx: float,
    cy: float,
    radius: float,
    zs: Sequence[float],
    n: int = 64,
    z_range: tuple[float, float] | None = None,
) -> list[ContourPlane]:
    """Cross-sections of a cylinder with axis along z, one circle on each plane.

    With ``z_range`` only the planes within it (inclusive) carry a contour.
    """
    lo, hi = z_range if z_range is not None else (-math.inf, math.inf)
    return [
        ContourPlane(float(z), (circle_polygon(cx, cy, radius, n),))
        for z in zs
        if lo - 1e-9 <= z <= hi + 1e-9
    ]


def ellipsoid_planes(
    center: tuple[float, float, float],
    semi_axes: tuple[float, float, float],
    zs: Sequence[float],
    n: int = 96,
    min_radius: float = 0.5,
) -> list[ContourPlane]:
    """Elliptical cross-sections of an axis-aligned ellipsoid on the given planes."""
    cx, cy, cz = center
    a, b, c = semi_axes
    planes = []
    t = 2.0 * np.pi * np.arange(n) / n
    for z in zs:
        k = 1.0 - ((z - cz) / c) ** 2
        if k <= 0 or min(a, b) * math.sqrt(k) <= min_radius:
            continue
        poly = np.column_stack(
            [cx + a * math.sqrt(k) * np.cos(t), cy + b * math.sqrt(k) * np.sin(t)]
        )
        planes.append(ContourPlane(float(z), (poly,)))
    return planes


def shell_planes(
    center: tuple[float, float, float],
    outer: float,
    inner: float,
    zs: Sequence[float],
    n: int = 64,
    min_radius: float = 0.5,
) -> list[ContourPlane]:
    """Cross-sections of a hollow sphere: an outer circle holding an inner circle (hole).

    The two contours of a plane combine by the even-odd rule, as DICOM structure sets
    encode holes.
    """
    if not 0 < inner < outer:
        raise ValueError("a shell needs 0 < inner < outer")
    cx, cy, cz = center
    planes = []
    for z in zs:
        ro = outer**2 - (z - cz) ** 2
        if ro <= min_radius**2:
            continue
        polys = [circle_polygon(cx, cy, math.sqrt(ro), n)]
        ri = inner**2 - (z - cz) ** 2
        if ri > min_radius**2:
            polys.append(circle_polygon(cx, cy, math.sqrt(ri), n))
        planes.append(ContourPlane(float(z), tuple(polys)))
    return planes


# --------------------------------------------------------------------------------------
# Common dataset plumbing
# --------------------------------------------------------------------------------------


def _ds(value: float) -> str:
    """A number as a valid DS string: the most significant digits that fit 16 characters."""
    v = float(value) + 0.0  # no negative zero
    if not math.isfinite(v):
        raise ValueError(f"cannot write {v} as a DICOM decimal string")
    for digits in range(16, 0, -1):
        text = f"{v:.{digits}g}"
        if len(text) <= 16:
            return text
    raise AssertionError("unreachable: 1 significant digit always fits")


def _ds_list(values: Sequence[float] | NDArray[np.floating]) -> list[str]:
    return [_ds(float(v)) for v in values]


def _new_dataset(
    sop_class_uid: str,
    sop_instance_uid: str,
    modality: str,
    *,
    patient_id: str,
    study_uid: str,
    series_uid: str,
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> Dataset:
    """Dataset with file meta and the patient, study, series and SOP common attributes."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "RTCHECK_SYNTH"
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    ds.StudyDate = _DATE
    ds.StudyTime = _TIME
    ds.AccessionNumber = ""
    ds.Modality = modality
    ds.Manufacturer = "rtcheck synthetic"
    ds.ReferringPhysicianName = ""
    ds.PatientName = "Synthetic^Phantom"
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    return ds


def _save(ds: Dataset, path: str | Path) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    dcmwrite(out, ds, enforce_file_format=True)


def _uid_or_new(uid: str | None) -> str:
    return str(generate_uid(prefix=UID_ROOT)) if uid is None else uid


# --------------------------------------------------------------------------------------
# CT
# --------------------------------------------------------------------------------------


def write_ct_series(
    folder: str | Path,
    z_positions: Sequence[float],
    *,
    patient_id: str = DEFAULT_PATIENT_ID,
    frame_of_reference_uid: str,
    study_uid: str,
    series_uid: str,
    sop_instance_uids: Sequence[str] | None = None,
    origin: tuple[float, float] = (-100.0, -100.0),
    pixel_spacing: float = 25.0,
    size: int = 8,
    prefix: str = "CT",
) -> list[str]:
    """Write a tiny axial HFS CT series (``size`` x ``size`` pixels of -1000 HU).

    Its only purpose is to give a structure set the slice positions it was drawn on.

    Parameters
    ----------
    folder
        Output folder; files are named ``{prefix}.{index:03d}.dcm``.
    z_positions
        Slice positions in mm, one file each.
    frame_of_reference_uid, study_uid, series_uid
        UIDs shared with the rest of the export.
    sop_instance_uids
        One UID per slice; generated when omitted.
    origin, pixel_spacing, size
        In-plane position of the first pixel centre (mm), spacing (mm) and matrix size.

    Returns
    -------
    list of str
        The SOP Instance UIDs of the slices, in the order of ``z_positions``.
    """
    if sop_instance_uids is not None and len(sop_instance_uids) != len(z_positions):
        raise ValueError("one SOP instance UID per slice is needed")
    uids: list[str] = []
    thickness = (
        float(np.median(np.abs(np.diff(np.asarray(z_positions, dtype=float)))))
        if len(z_positions) > 1
        else 1.0
    )
    pixels = np.zeros((size, size), dtype=np.int16)
    for i, z in enumerate(z_positions):
        uid = _uid_or_new(None if sop_instance_uids is None else sop_instance_uids[i])
        ds = _new_dataset(
            CT_IMAGE_STORAGE,
            uid,
            "CT",
            patient_id=patient_id,
            study_uid=study_uid,
            series_uid=series_uid,
        )
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = i + 1
        ds.FrameOfReferenceUID = frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
        ds.PatientPosition = "HFS"
        ds.KVP = "120"
        ds.ImagePositionPatient = _ds_list([origin[0], origin[1], float(z)])
        ds.ImageOrientationPatient = _ds_list(ORIENTATIONS["HFS"])
        ds.SliceThickness = _ds(thickness)
        ds.SliceLocation = _ds(float(z))
        ds.PixelSpacing = _ds_list([pixel_spacing, pixel_spacing])
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = size
        ds.Columns = size
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.PixelData = (pixels - 1000).astype("<i2").tobytes()
        _save(ds, Path(folder) / f"{prefix}.{i + 1:03d}.dcm")
        uids.append(uid)
    return uids


# --------------------------------------------------------------------------------------
# RT Structure Set
# --------------------------------------------------------------------------------------


def write_structure_set(
    path: str | Path,
    rois: Sequence[SyntheticRoi],
    *,
    patient_id: str = DEFAULT_PATIENT_ID,
    frame_of_reference_uid: str,
    study_uid: str,
    sop_instance_uid: str | None = None,
    series_uid: str | None = None,
    ct_series_uid: str | None = None,
    ct_sop_instance_uids: Sequence[str] = (),
    label: str = "SYNTH",
) -> str:
    """Write an RT Structure Set.

    Parameters
    ----------
    path
        Output file.
    rois
        The ROIs, written in order; each polygon of each plane is one contour.
    frame_of_reference_uid, study_uid
        The frame of reference every ROI is defined in, and the study.
    sop_instance_uid, series_uid
        Generated when omitted.
    ct_series_uid
        When given, the structure set references this CT series (RT Referenced Series
        Sequence), listing ``ct_sop_instance_uids`` as its contour images.
    label
        Structure Set Label.

    Returns
    -------
    str
        The structure set's SOP Instance UID.
    """
    uid = _uid_or_new(sop_instance_uid)
    ds = _new_dataset(
        RT_STRUCTURE_SET_STORAGE,
        uid,
        "RTSTRUCT",
        patient_id=patient_id,
        study_uid=study_uid,
        series_uid=_uid_or_new(series_uid),
    )
    ds.FrameOfReferenceUID = frame_of_reference_uid
    try:
        for roi in rois:
            roi.name.encode("latin_1")
    except UnicodeEncodeError:  # names beyond Latin-1: UTF-8, as planning systems write
        ds.SpecificCharacterSet = "ISO_IR 192"
    ds.StructureSetLabel = label
    ds.StructureSetName = label
    ds.StructureSetDate = _DATE
    ds.StructureSetTime = _TIME
    ds.ApprovalStatus = "UNAPPROVED"

    ref_for = Dataset()
    ref_for.FrameOfReferenceUID = frame_of_reference_uid
    if ct_series_uid is not None:
        study = Dataset()
        study.ReferencedSOPClassUID = _STUDY_SOP_CLASS
        study.ReferencedSOPInstanceUID = study_uid
        series = Dataset()
        series.SeriesInstanceUID = ct_series_uid
        images = []
        for ct_uid in ct_sop_instance_uids:
            item = Dataset()
            item.ReferencedSOPClassUID = CT_IMAGE_STORAGE
            item.ReferencedSOPInstanceUID = ct_uid
            images.append(item)
        series.ContourImageSequence = images
        study.RTReferencedSeriesSequence = [series]
        ref_for.RTReferencedStudySequence = [study]
    ds.ReferencedFrameOfReferenceSequence = [ref_for]

    roi_items, contour_items, observation_items = [], [], []
    for k, roi in enumerate(rois):
        item = Dataset()
        item.ROINumber = roi.number
        item.ReferencedFrameOfReferenceUID = frame_of_reference_uid
        item.ROIName = roi.name
        item.ROIGenerationAlgorithm = "MANUAL"
        roi_items.append(item)

        rc = Dataset()
        rc.ROIDisplayColor = list(roi.color)
        rc.ReferencedROINumber = roi.number
        contours = []
        number = 1
        for plane in roi.planes:
            for poly in plane.polygons:
                pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
                xyz = np.column_stack([pts, np.full(pts.shape[0], plane.z)])
                c = Dataset()
                c.ContourNumber = number
                c.ContourGeometricType = roi.geometric_type
                c.NumberOfContourPoints = pts.shape[0]
                c.ContourData = _ds_list(xyz.ravel())
                contours.append(c)
                number += 1
        if contours:
            rc.ContourSequence = contours
        contour_items.append(rc)

        obs = Dataset()
        obs.ObservationNumber = k + 1
        obs.ReferencedROINumber = roi.number
        obs.RTROIInterpretedType = roi.interpreted_type
        obs.ROIInterpreter = ""
        observation_items.append(obs)
    ds.StructureSetROISequence = roi_items
    ds.ROIContourSequence = contour_items
    ds.RTROIObservationsSequence = observation_items
    _save(ds, path)
    return uid


# --------------------------------------------------------------------------------------
# RT Plan
# --------------------------------------------------------------------------------------


def write_plan(
    path: str | Path,
    *,
    label: str,
    intent: str = "CURATIVE",
    approval: str = "APPROVED",
    fractions: int | None,
    dose_per_fraction_gy: float | None = None,
    prescription_gy: float | None,
    beams: Sequence[BeamSpec],
    referenced_structure_set_uid: str | None,
    frame_of_reference_uid: str,
    patient_id: str = DEFAULT_PATIENT_ID,
    study_uid: str | None = None,
    sop_instance_uid: str | None = None,
    series_uid: str | None = None,
    name: str | None = None,
    dose_references: Sequence[tuple[str, str, float | None] | tuple[str, str, float | None, Point3]]
    | None = None,
    patient_position: str = "HFS",
    more_groups: Sequence[tuple[int, Sequence[BeamSpec]]] = (),
    specification_point: Point3 | None = None,
    radiation: str = "PHOTON",
    brachy_setup_dose_gy: float | None = None,
) -> str:
    """Write an RT Plan: photon (one fraction group, or more), proton, or HDR brachytherapy.

    Parameters
    ----------
    path
        Output file.
    label, name, intent, approval
        RT Plan Label, RT Plan Name (defaults to the label), Plan Intent and Approval
        Status.
    fractions
        Number of Fractions Planned (None omits it).
    dose_per_fraction_gy
        Only written into the RT Plan Description; when given together with
        ``prescription_gy`` and ``fractions`` they must agree.
    prescription_gy
        Target Prescription Dose of a single TARGET item of the Dose Reference
        Sequence; None omits the sequence (unless ``dose_references`` is given).
    beams
        ``(number, name, delivery, meterset_mu, beam_dose_gy)`` per beam (see
        :class:`SyntheticBeam`); ``delivery`` is ``TREATMENT`` or ``SETUP``, meterset and
        beam dose may be None to omit them from the fraction group.
    referenced_structure_set_uid
        The structure set the plan references, or None for no reference.
    frame_of_reference_uid, patient_id, study_uid, sop_instance_uid, series_uid
        Identification; UIDs are generated when omitted.
    dose_references
        Explicit Dose Reference Sequence items ``(description, type, target
        prescription dose or None[, point])``, replacing the one made from
        ``prescription_gy``; an item with a point is of structure type COORDINATES with
        that Dose Reference Point Coordinates (its prescription is written whatever its
        type, as brachytherapy systems do).
    patient_position
        Patient Position of the patient setup.
    more_groups
        Further fraction groups ``(fractions, beams)`` after the first (a sequential
        boost); their beams join the Beam Sequence.
    specification_point
        Beam Dose Specification Point (mm) written on every referenced beam (and brachy
        application setup).
    radiation
        ``PHOTON``, or ``PROTON`` for an RT Ion Plan (Ion Beam Sequence).
    brachy_setup_dose_gy
        When given, an HDR brachytherapy plan: no beams, one application setup with this
        Brachy Application Setup Dose per fraction.

    Returns
    -------
    str
        The plan's SOP Instance UID.
    """
    if (
        dose_per_fraction_gy is not None
        and prescription_gy is not None
        and fractions
        and abs(dose_per_fraction_gy * fractions - prescription_gy) > 1e-6
    ):
        raise ValueError("prescription_gy must equal fractions x dose_per_fraction_gy")
    uid = _uid_or_new(sop_instance_uid)
    ds = _new_dataset(
        RT_ION_PLAN_STORAGE if radiation == "PROTON" else RT_PLAN_STORAGE,
        uid,
        "RTPLAN",
        patient_id=patient_id,
        study_uid=_uid_or_new(study_uid),
        series_uid=_uid_or_new(series_uid),
    )
    ds.FrameOfReferenceUID = frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.RTPlanLabel = label
    ds.RTPlanName = label if name is None else name
    if dose_per_fraction_gy is not None and fractions:
        ds.RTPlanDescription = (
            f"{dose_per_fraction_gy * fractions:g} Gy in {fractions} fractions "
            f"of {dose_per_fraction_gy:g} Gy"
        )
    ds.RTPlanDate = _DATE
    ds.RTPlanTime = _TIME
    ds.PlanIntent = intent
    ds.RTPlanGeometry = "PATIENT"
    ds.ApprovalStatus = approval

    if referenced_structure_set_uid is not None:
        ref = Dataset()
        ref.ReferencedSOPClassUID = RT_STRUCTURE_SET_STORAGE
        ref.ReferencedSOPInstanceUID = referenced_structure_set_uid
        ds.ReferencedStructureSetSequence = [ref]

    refs = dose_references
    if refs is None and prescription_gy is not None:
        refs = [(label, "TARGET", prescription_gy)]
    if refs is not None:
        items = []
        for i, spec in enumerate(refs):
            description, kind, dose = spec[0], spec[1], spec[2]
            item = Dataset()
            item.DoseReferenceNumber = i + 1
            item.DoseReferenceUID = synthetic_uid(uid, "dose reference", str(i))
            item.DoseReferenceStructureType = "SITE"
            item.DoseReferenceDescription = description
            item.DoseReferenceType = kind
            if len(spec) == 4:
                item.DoseReferenceStructureType = "COORDINATES"
                item.DoseReferencePointCoordinates = _ds_list(spec[3])
                if dose is not None:
                    item.TargetPrescriptionDose = _ds(dose)
            elif dose is not None:
                if kind == "TARGET":
                    item.TargetPrescriptionDose = _ds(dose)
                else:
                    item.OrganAtRiskMaximumDose = _ds(dose)
            items.append(item)
        ds.DoseReferenceSequence = items

    groups = []
    beam_items = []
    for index, (count, group_beams) in enumerate([(fractions, beams), *more_groups]):
        fg = Dataset()
        fg.FractionGroupNumber = index + 1
        if count is not None:
            fg.NumberOfFractionsPlanned = count
        fg.NumberOfBeams = 0 if brachy_setup_dose_gy is not None else len(group_beams)
        fg.NumberOfBrachyApplicationSetups = 1 if brachy_setup_dose_gy is not None else 0
        ref_beams = []
        for number, beam_name, delivery, meterset, beam_dose in group_beams:
            rb = Dataset()
            if beam_dose is not None:
                rb.BeamDose = _ds(beam_dose)
            if specification_point is not None:
                rb.BeamDoseSpecificationPoint = _ds_list(specification_point)
            if meterset is not None:
                rb.BeamMeterset = _ds(meterset)
            rb.ReferencedBeamNumber = number
            ref_beams.append(rb)
            beam_items.append(
                _beam_item(number, beam_name, delivery, float(meterset or 0.0), radiation)
            )
        if brachy_setup_dose_gy is not None:
            setup = Dataset()
            setup.ReferencedBrachyApplicationSetupNumber = 1
            setup.BrachyApplicationSetupDose = _ds(brachy_setup_dose_gy)
            if specification_point is not None:
                setup.BrachyApplicationSetupDoseSpecificationPoint = _ds_list(specification_point)
            fg.ReferencedBrachyApplicationSetupSequence = [setup]
        else:
            fg.ReferencedBeamSequence = ref_beams
        groups.append(fg)
    ds.FractionGroupSequence = groups
    if brachy_setup_dose_gy is not None:
        ds.BrachyTreatmentTechnique = "INTRACAVITARY"
        ds.BrachyTreatmentType = "HDR"
        application = Dataset()
        application.ApplicationSetupType = "VAGINAL"
        application.ApplicationSetupNumber = 1
        application.TotalReferenceAirKerma = "0"
        ds.ApplicationSetupSequence = [application]
    elif radiation == "PROTON":
        ds.IonBeamSequence = beam_items
    else:
        ds.BeamSequence = beam_items

    setup = Dataset()
    setup.PatientPosition = patient_position
    setup.PatientSetupNumber = 1
    setup.SetupTechnique = "ISOCENTRIC"
    ds.PatientSetupSequence = [setup]
    _save(ds, path)
    return uid


def _beam_item(
    number: int, name: str, delivery: str, meterset: float, radiation: str = "PHOTON"
) -> Dataset:
    beam = Dataset()
    beam.BeamNumber = number
    beam.BeamName = name
    beam.BeamType = "STATIC"
    beam.RadiationType = radiation
    beam.TreatmentMachineName = "SYNTH_LINAC"
    beam.PrimaryDosimeterUnit = "MU"
    beam.SourceAxisDistance = "1000"
    beam.TreatmentDeliveryType = delivery
    beam.NumberOfWedges = 0
    beam.NumberOfCompensators = 0
    beam.NumberOfBoli = 0
    beam.NumberOfBlocks = 0
    beam.FinalCumulativeMetersetWeight = "1"
    beam.NumberOfControlPoints = 2
    cps = []
    for index, weight in enumerate((0.0, 1.0)):
        cp = Dataset()
        cp.ControlPointIndex = index
        cp.CumulativeMetersetWeight = _ds(weight)
        if index == 0:
            cp.NominalBeamEnergy = "6"
            cp.GantryAngle = _ds((number * 40) % 360)
            cp.GantryRotationDirection = "NONE"
            cp.BeamLimitingDeviceAngle = "0"
            cp.BeamLimitingDeviceRotationDirection = "NONE"
            cp.PatientSupportAngle = "0"
            cp.PatientSupportRotationDirection = "NONE"
            cp.IsocenterPosition = _ds_list([0.0, 0.0, 0.0])
        cps.append(cp)
    beam.ControlPointSequence = cps
    beam.ReferencedPatientSetupNumber = 1
    return beam


# --------------------------------------------------------------------------------------
# RT Dose
# --------------------------------------------------------------------------------------


def write_dose(
    path: str | Path,
    grid: DoseGrid,
    *,
    referenced_plan_uid: str | None,
    frame_of_reference_uid: str,
    patient_id: str = DEFAULT_PATIENT_ID,
    study_uid: str | None = None,
    sop_instance_uid: str | None = None,
    series_uid: str | None = None,
    orientation: Orientation = "HFS",
    offsets: Literal["relative", "absolute"] = "relative",
    descending: bool = False,
    summation: str = "PLAN",
    units: str = "GY",
    referenced_beam_number: int | None = None,
    bits: Literal[16, 32] = 16,
    compress: bool = False,
    dose_type: str = "PHYSICAL",
) -> str:
    """Write an RT Dose whose standard reading reproduces ``grid``.

    Geometry
    --------
    The pixels are stored in the orientation asked for, with Image Orientation
    (Patient) from :data:`ORIENTATIONS` (e.g. HFP = ``[-1, 0, 0, 0, -1, 0]``), so a
    column index runs along the row direction cosine and a row index along the column
    direction cosine; Image Position (Patient) is the centre of the first stored pixel
    of the first stored frame. The same physical dose is therefore encoded whatever
    the orientation.

    Grid Frame Offset Vector follows PS3.3 C.8.8.3.2: with ``offsets="relative"``
    (option a, first element 0) each value is the distance of a frame from the first
    frame *along the normal* ``row x column`` of the direction cosines. That normal is
    +z for HFS and HFP but -z for FFS and FFP, so in feet-first orientations an offset
    of +3 mm is a plane 3 mm *inferior* (lower z) to Image Position (Patient).
    ``offsets="absolute"`` (option b: the values are patient z, the first equals
    the third element of Image Position (Patient)) is only defined by the standard for
    Image Orientation (Patient) ``(1, 0, 0, 0, 1, 0)``, so it requires HFS.

    Frames are stored in the order that makes the offsets increase (z ascending for
    HFS/HFP, descending for FFS/FFP); ``descending=True`` reverses that order, so the
    offsets decrease (e.g. ``0, -2.5, -5, ...``).

    Dose scaling
    ------------
    Stored values are unsigned integers of ``bits`` bits (signed when the grid holds
    negative dose) and Dose Grid Scaling is ``max|dose| / (2**bits - 1)`` (``2**(bits-1)
    - 1`` when signed), rounded up to a DS string; the value actually written is used
    for the quantisation. Reading back reproduces each dose to within half a scaling
    step: for a 60 Gy maximum that is 4.6e-4 Gy with 16 bits and 7.0e-9 Gy with 32 bits.

    Parameters
    ----------
    path
        Output file.
    grid
        Dose in Gy on ascending axes.
    referenced_plan_uid
        The plan referenced by the Referenced RT Plan Sequence (None omits it).
    frame_of_reference_uid
        Frame of reference of the dose.
    patient_id, study_uid, sop_instance_uid, series_uid
        Identification; UIDs are generated when omitted.
    orientation
        ``HFS``, ``FFS``, ``HFP`` or ``FFP``.
    offsets
        ``relative`` or ``absolute`` Grid Frame Offset Vector (see above).
    descending
        Store the frames in the reverse order (decreasing offsets).
    summation
        Dose Summation Type (``PLAN``, ``BEAM``, ``FRACTION``, ...).
    units
        Dose Units (``GY`` or ``RELATIVE``).
    referenced_beam_number
        For a ``BEAM`` dose: the beam it holds (Referenced Beam Sequence of the
        Referenced Fraction Group Sequence).
    bits
        Bits Allocated, 16 or 32.
    compress
        Store the pixel data RLE Lossless compressed (16 bits only: pydicom's own
        encoder follows the 8 and 16-bit profiles of PS3.5 Table 8.2.2-1).
    dose_type
        Dose Type (``PHYSICAL``, ``EFFECTIVE``, ``ERROR``).

    Returns
    -------
    str
        The dose's SOP Instance UID.
    """
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {', '.join(ORIENTATIONS)}")
    if offsets == "absolute" and orientation != "HFS":
        raise ValueError(
            "absolute Grid Frame Offset Vector is only defined for orientation HFS "
            "(PS3.3 C.8.8.3.2 option b)"
        )
    if bits not in (16, 32):
        raise ValueError("bits must be 16 or 32")
    if compress and bits != 16:
        raise ValueError("pydicom's RLE Lossless encoder handles 16-bit doses only")
    iop = ORIENTATIONS[orientation]
    row_dir = np.array(iop[:3])
    col_dir = np.array(iop[3:])
    normal_z = float(np.cross(row_dir, col_dir)[2])
    sx = 1 if row_dir[0] > 0 else -1
    sy = 1 if col_dir[1] > 0 else -1

    dose = np.asarray(grid.dose, dtype=np.float64)
    # Frame order: offsets increase along the normal unless descending is asked for.
    z_order = np.arange(grid.z.size)
    if (normal_z < 0) != descending:
        z_order = z_order[::-1]
    stored = dose[z_order][:, ::sy, ::sx]
    zs = grid.z[z_order]
    ipp = [
        float(grid.x[0] if sx > 0 else grid.x[-1]),
        float(grid.y[0] if sy > 0 else grid.y[-1]),
        float(zs[0]),
    ]
    frame_offsets = (zs - zs[0]) * normal_z if offsets == "relative" else zs.copy()

    signed = bool(np.min(dose) < 0)
    max_int = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    peak = float(np.max(np.abs(dose)))
    scaling_text = _ds(peak / max_int * (1 + 1e-9)) if peak > 0 else "1"
    scaling = float(scaling_text)
    if scaling * max_int < peak:  # DS rounding went down: one more digit up is enough
        scaling_text = _ds(scaling * (1 + 1e-6))
        scaling = float(scaling_text)
    lo = -max_int if signed else 0
    values = np.clip(np.rint(stored / scaling), lo, max_int)
    dtype = {(16, False): "<u2", (16, True): "<i2", (32, False): "<u4", (32, True): "<i4"}
    pixels = values.astype(dtype[(bits, signed)])

    uid = _uid_or_new(sop_instance_uid)
    ds = _new_dataset(
        RT_DOSE_STORAGE,
        uid,
        "RTDOSE",
        patient_id=patient_id,
        study_uid=_uid_or_new(study_uid),
        series_uid=_uid_or_new(series_uid),
    )
    ds.FrameOfReferenceUID = frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.ImagePositionPatient = _ds_list(ipp)
    ds.ImageOrientationPatient = _ds_list(iop)
    steps = np.diff(grid.z)
    ds.SliceThickness = _ds(float(steps[0])) if np.ptp(steps) < 1e-6 else ""
    ds.PixelSpacing = _ds_list([grid.dy, grid.dx])  # row spacing (y), column spacing (x)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = grid.z.size
    ds.FrameIncrementPointer = 0x3004000C
    ds.Rows = grid.y.size
    ds.Columns = grid.x.size
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.DoseUnits = units
    ds.DoseType = dose_type
    ds.DoseSummationType = summation
    ds.GridFrameOffsetVector = _ds_list(frame_offsets)
    ds.DoseGridScaling = scaling_text
    ds.TissueHeterogeneityCorrection = "IMAGE"
    if referenced_plan_uid is not None:
        ref = Dataset()
        ref.ReferencedSOPClassUID = RT_PLAN_STORAGE
        ref.ReferencedSOPInstanceUID = referenced_plan_uid
        if referenced_beam_number is not None:
            rfg = Dataset()
            rb = Dataset()
            rb.ReferencedBeamNumber = referenced_beam_number
            rfg.ReferencedBeamSequence = [rb]
            rfg.ReferencedFractionGroupNumber = 1
            ref.ReferencedFractionGroupSequence = [rfg]
        ds.ReferencedRTPlanSequence = [ref]
    if compress:
        ds.compress(RLELossless, pixels, encoding_plugin="pydicom", generate_instance_uid=False)
    else:
        ds.PixelData = pixels.tobytes()
    _save(ds, path)
    return uid


# --------------------------------------------------------------------------------------
# The bundled demo
# --------------------------------------------------------------------------------------

#: Geometry and prescription of the demo (mm, Gy).
DEMO_SPACING = 2.5
DEMO_PRESCRIPTION_GY = 54.0
DEMO_FRACTIONS = 3
DEMO_PTV_RADIUS = 15.0
DEMO_PEAK_GY = 67.5  # prescription to the 80 % isodose at the PTV surface


def demo_dose(x: FloatArray, y: FloatArray, z: FloatArray) -> FloatArray:
    """The demo's analytic dose (Gy): a steep falloff around the PTV at the origin.

    ``D(r) = 54 * 1.25 ** (1 - (r / 15) ** 4)``: 67.5 Gy at the centre, exactly 54 Gy on the
    PTV surface (r = 15 mm, the 80 % isodose), 1.9 Gy at 30 mm, as SABR dose falls off.
    Arrays broadcast.
    """
    r2 = np.asarray(x) ** 2 + np.asarray(y) ** 2 + np.asarray(z) ** 2
    fall = 1.0 - (r2 / DEMO_PTV_RADIUS**2) ** 2
    peak_ratio = DEMO_PEAK_GY / DEMO_PRESCRIPTION_GY
    return np.asarray(DEMO_PRESCRIPTION_GY * peak_ratio**fall, dtype=np.float64)


def write_demo_export(folder: str | Path) -> Path:
    """Write the bundled sample export: a 3 x 18 Gy lung SABR plan.

    Contents (all UIDs deterministic, so reruns write identical files):

    - ``CT.001.dcm`` ... ``CT.041.dcm``: a tiny CT (8 x 8 pixels) at z = -50 ... 50 mm
      every 2.5 mm, giving the slice positions;
    - ``RS.dcm``: PTV (sphere r = 15 mm at the origin), ``Shell_PTV`` (hollow sphere,
      outer r = 30 mm, inner r = 20 mm: two contours per plane), ``SpinalCord``
      (cylinder r = 6 mm at y = 40 mm, the whole CT length), ``BODY`` (cylinder
      r = 148 mm), and the structures of a lung SABR contour set: ``GTV`` (sphere
      r = 10 mm inside the PTV), ``Lungs`` (ellipsoid), ``Bronchus``, ``Trachea``,
      ``Heart``, ``GreatVes`` and ``Esophagus``, the nearest of them (the bronchus) 30 mm
      from the GTV: a peripheral lesion, contoured on the CT slices;
    - ``RP.dcm``: RT plan ``LUNG_SABR``, CURATIVE, APPROVED, 3 fractions of 18 Gy,
      Target Prescription Dose 54 Gy, two treatment arcs and one setup beam;
    - ``RD.dcm``: PLAN dose on a 2.5 mm grid (x, y in -150 ... 150 mm, z as the CT),
      :func:`demo_dose`, 32-bit.

    The plan follows the shipped ``sabr-lung`` protocol.

    Parameters
    ----------
    folder
        Output folder (created if missing).

    Returns
    -------
    pathlib.Path
        The folder.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    patient_id = "RTCHECK-DEMO"
    frame = synthetic_uid("demo", "frame of reference")
    study = synthetic_uid("demo", "study")
    ct_series = synthetic_uid("demo", "ct series")
    zs = [round(DEMO_SPACING * k, 6) for k in range(-20, 21)]
    ct_uids = write_ct_series(
        out,
        zs,
        patient_id=patient_id,
        frame_of_reference_uid=frame,
        study_uid=study,
        series_uid=ct_series,
        sop_instance_uids=[synthetic_uid("demo", "ct", str(i)) for i in range(len(zs))],
    )
    rois = [
        SyntheticRoi(
            1, "PTV", "PTV", sphere_planes((0.0, 0.0, 0.0), DEMO_PTV_RADIUS, zs), color=(255, 0, 0)
        ),
        SyntheticRoi(
            2,
            "Shell_PTV",
            "AVOIDANCE",
            shell_planes((0.0, 0.0, 0.0), 30.0, 20.0, zs),
            color=(255, 200, 0),
        ),
        SyntheticRoi(
            3, "SpinalCord", "ORGAN", cylinder_planes(0.0, 40.0, 6.0, zs), color=(0, 255, 255)
        ),
        SyntheticRoi(
            4, "BODY", "EXTERNAL", cylinder_planes(0.0, 0.0, 148.0, zs, n=128), color=(0, 255, 0)
        ),
        SyntheticRoi(5, "GTV", "GTV", sphere_planes((0.0, 0.0, 0.0), 10.0, zs)),
        SyntheticRoi(6, "Lungs", "ORGAN", ellipsoid_planes((-35.0, 0.0, 0.0), (110, 85, 48), zs)),
        SyntheticRoi(
            7, "Bronchus", "ORGAN", cylinder_planes(-45.0, 10.0, 6.0, zs, z_range=(-30, 30))
        ),
        SyntheticRoi(
            8, "Trachea", "ORGAN", cylinder_planes(-45.0, 10.0, 9.0, zs, z_range=(32.5, 50))
        ),
        SyntheticRoi(
            9, "Heart", "ORGAN", ellipsoid_planes((-50.0, -45.0, -25.0), (35, 30, 25), zs)
        ),
        SyntheticRoi(
            10, "GreatVes", "ORGAN", cylinder_planes(-75.0, 15.0, 12.0, zs, z_range=(-30, 50))
        ),
        SyntheticRoi(11, "Esophagus", "ORGAN", cylinder_planes(-45.0, 40.0, 7.0, zs)),
    ]
    rs_uid = write_structure_set(
        out / "RS.dcm",
        rois,
        patient_id=patient_id,
        frame_of_reference_uid=frame,
        study_uid=study,
        sop_instance_uid=synthetic_uid("demo", "structure set"),
        series_uid=synthetic_uid("demo", "rtstruct series"),
        ct_series_uid=ct_series,
        ct_sop_instance_uids=ct_uids,
        label="DEMO",
    )
    plan_uid = write_plan(
        out / "RP.dcm",
        label="LUNG_SABR",
        name="Lung SABR 54 Gy / 3",
        intent="CURATIVE",
        approval="APPROVED",
        fractions=DEMO_FRACTIONS,
        dose_per_fraction_gy=DEMO_PRESCRIPTION_GY / DEMO_FRACTIONS,
        prescription_gy=DEMO_PRESCRIPTION_GY,
        # As planning systems do, the beams state their dose at a specification point
        # (the isocentre, at the PTV centre): 67.5 Gy there over 3 fractions.
        beams=[
            SyntheticBeam(1, "ARC1", "TREATMENT", 1450.0, DEMO_PEAK_GY / DEMO_FRACTIONS / 2),
            SyntheticBeam(2, "ARC2", "TREATMENT", 1380.0, DEMO_PEAK_GY / DEMO_FRACTIONS / 2),
            SyntheticBeam(3, "SETUP_AP", "SETUP", 0.0, None),
        ],
        specification_point=(0.0, 0.0, 0.0),
        referenced_structure_set_uid=rs_uid,
        frame_of_reference_uid=frame,
        patient_id=patient_id,
        study_uid=study,
        sop_instance_uid=synthetic_uid("demo", "plan"),
        series_uid=synthetic_uid("demo", "rtplan series"),
    )
    axis = DEMO_SPACING * np.arange(-60, 61, dtype=np.float64)
    z = np.asarray(zs, dtype=np.float64)
    zz, yy, xx = np.meshgrid(z, axis, axis, indexing="ij")
    grid = DoseGrid(axis, axis, z, demo_dose(xx, yy, zz))
    write_dose(
        out / "RD.dcm",
        grid,
        referenced_plan_uid=plan_uid,
        frame_of_reference_uid=frame,
        patient_id=patient_id,
        study_uid=study,
        sop_instance_uid=synthetic_uid("demo", "dose"),
        series_uid=synthetic_uid("demo", "rtdose series"),
        bits=32,
    )
    return out
