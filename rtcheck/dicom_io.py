"""Reading DICOM-RT exports: plans, doses, structure sets and the CT they were drawn on.

Two ways in:

- :func:`find_exports` scans a folder (recursively, headers only), links every RTDOSE
  to its RTPLAN (Referenced RT Plan Sequence), the plan to its RTSTRUCT (Referenced
  Structure Set Sequence) and the structure set to its CT (referenced series, else the
  one CT series of its frame of reference), giving one :class:`ExportSet` per plan;
  :func:`load_export` then reads one set into a :class:`PlanExport`.
- :func:`load_files` reads files named explicitly (``--structures RS --dose RD``).

Links are followed, never guessed: a dose whose plan is missing, a plan whose structure
set is missing, or two doses of one summation type for one plan are errors whose
message suggests the explicit form. Everything that cannot be evaluated raises
:class:`rtcheck.errors.InputError` (several at once: :class:`rtcheck.errors.InputErrors`)
naming the file and what to do.

Doses come out in Gy (float64, Dose Grid Scaling applied) on ascending axes, whatever
the patient orientation (HFS, FFS, HFP, FFP) and frame order of the file; dose
summation types PLAN, BEAM (all beam doses of the plan summed) and FRACTION (times
the fractions planned) are turned into the dose of the whole plan. No DVH maths here.

pydicom is used leniently: values that break the VR rules (malformed UIDs are common
in older exports) are accepted, and pydicom's warnings go to the ``rtcheck`` logger at
debug level instead of the console.
"""

from __future__ import annotations

import filecmp
import logging
import math
import os
import re
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom import config, dcmread
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pydicom.values import converters as _pydicom_converters

from rtcheck.dicom_walk import find_truncation
from rtcheck.dose_scale import DoseScale, ScalePoint, decide_scale
from rtcheck.dvh import (
    PLANE_TOLERANCE_MM,
    ContourPlane,
    DoseGrid,
    FloatArray,
    points_in_polygon,
    polygon_area,
)
from rtcheck.errors import InputError, InputErrors, MissingExtraError, RtcheckError
from rtcheck.plan_record import PlanRecord, read_plan_record
from rtcheck.tps_dvh import TpsDvh, read_tps_dvhs

__all__ = [
    "AmbiguousExportError",
    "BeamDose",
    "DoseData",
    "DoseReference",
    "ExportSet",
    "FractionGroup",
    "PlanExport",
    "PlanInfo",
    "Roi",
    "StructureSet",
    "find_exports",
    "load_export",
    "load_files",
    "load_path",
    "read_dose",
    "read_plan",
    "read_structure_set",
]

logger = logging.getLogger("rtcheck")

#: How to bypass the folder scan, quoted in every linking error.
#: Largest difference (% of the PLAN dose's maximum) between a PLAN dose and the sum of
#: its BEAM doses that is put down to rounding; beyond it the export is inconsistent.
BEAM_SUM_TOLERANCE_PERCENT = 1.0

EXPLICIT_HINT = (
    "name the files explicitly instead: --structures RS.dcm --dose RD.dcm [--plan RP.dcm]"
)
#: Tolerance on direction cosines when deciding that a grid is axial.
DIRECTION_TOLERANCE = 1e-4
#: Grids of summed BEAM doses must agree to this (mm).
GEOMETRY_TOLERANCE_MM = 1e-3
#: A closed contour encloses no area (it is degenerate and skipped, with a note) when its
#: polygon area is at most this fraction of the square of its extent (the longer side
#: of its bounding box) and no point beside its edges lies inside it: its points lie on
#: one line, or it retraces its own path. 1e-6 is far below what the coordinates'
#: precision can draw (a 10 mm contour 0.00001 mm wide) and far above rounding.
DEGENERATE_AREA_FRACTION = 1e-6
#: Contour coordinates farther than this from the origin (mm; 100 m) are refused: no
#: patient coordinate system reaches there, and their squares overflow area sums.
MAX_COORDINATE_MM = 1e5

_RT_DOSE = "1.2.840.10008.5.1.4.1.1.481.2"
_RT_STRUCT = "1.2.840.10008.5.1.4.1.1.481.3"
_RT_PLAN = "1.2.840.10008.5.1.4.1.1.481.5"
_RT_ION_PLAN = "1.2.840.10008.5.1.4.1.1.481.8"
_CT = "1.2.840.10008.5.1.4.1.1.2"
_DICOMDIR = "1.2.840.10008.1.3.10"
_SOP_MODALITY = {
    _RT_DOSE: "RTDOSE",
    _RT_STRUCT: "RTSTRUCT",
    _RT_PLAN: "RTPLAN",
    _RT_ION_PLAN: "RTPLAN",
    _CT: "CT",
}
_SUPPORTED_SUMMATIONS = ("PLAN", "BEAM", "FRACTION")
#: The VRs pydicom can decode (every VR DICOM defines, and the ambiguous "US or SS" kind).
_KNOWN_VRS = frozenset(str(vr) for vr in _pydicom_converters)
_PYDICOM_DIR = os.path.dirname(pydicom.__file__) + os.sep
_HEADER_TAGS = [
    "SOPClassUID",
    "SOPInstanceUID",
    "Modality",
    "PatientID",
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "DoseUnits",
    "DoseSummationType",
    "ReferencedRTPlanSequence",
    "RTPlanLabel",
    "ReferencedStructureSetSequence",
    "ReferencedFrameOfReferenceSequence",
]


# --------------------------------------------------------------------------------------
# Public data model
# --------------------------------------------------------------------------------------


class AmbiguousExportError(InputError):
    """The files do not say which plan, dose or structure set is meant.

    Raised, never guessed, for several plans in a folder where one was expected,
    two doses of one summation type for one plan, or two different files sharing a SOP
    Instance UID. The user resolves it by naming the files explicitly.
    """


class DoseReference(NamedTuple):
    """One item of a plan's Dose Reference Sequence.

    ``dose_gy`` is the Target Prescription Dose of a TARGET item, the Organ at Risk
    Maximum Dose of an ORGAN_AT_RISK item, else the Delivery Maximum Dose; None when
    the item has none of them. ``position`` is the Dose Reference Point Coordinates (mm)
    when the item gives them; ``prescription_gy`` its Target Prescription Dose whatever
    its type (brachytherapy systems write it on UNSPECIFIED points). ``roi_number`` is
    the ROI a VOLUME dose reference refers to (Referenced ROI Number), if any.
    """

    description: str
    type: str
    dose_gy: float | None
    position: tuple[float, float, float] | None = None
    prescription_gy: float | None = None
    roi_number: int | None = None


class BeamDose(NamedTuple):
    """One treatment beam (or brachytherapy application setup) of a fraction group.

    ``dose_gy`` is its Beam Dose (Brachy Application Setup Dose) per fraction at its
    dose specification point ``point`` (mm); either may be None when not given.
    """

    number: int
    dose_gy: float | None
    point: tuple[float, float, float] | None


@dataclass(frozen=True)
class FractionGroup:
    """One fraction group of a plan: its fractions and the beams given in it.

    ``beams`` are the treatment beams only (setup beams and 0 MU beams are left out);
    ``beam_dose_gy`` is the sum of their Beam Dose per fraction when every one of them
    gives one (a planning system's statement at its specification point, not a
    prescription).
    """

    number: int
    fractions: int | None
    beams: tuple[BeamDose, ...]

    @property
    def beam_dose_gy(self) -> float | None:
        """Sum of the beams' Beam Dose per fraction; None when a beam gives none."""
        doses = [b.dose_gy for b in self.beams]
        if not doses or any(d is None for d in doses):
            return None
        return float(sum(d for d in doses if d is not None))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        per_fraction = self.beam_dose_gy
        return {
            "number": self.number,
            "fractions": self.fractions,
            "beams": [b.number for b in self.beams],
            "beam_dose_per_fraction_gy": None if per_fraction is None else round(per_fraction, 4),
        }


@dataclass(frozen=True)
class PlanInfo:
    """What rtcheck needs from an RT Plan (RT Ion Plan, brachytherapy plan).

    ``fractions`` is the course: the fractions of every fraction group added up (None
    when a group does not say). ``total_dose_gy`` is the highest Target Prescription
    Dose of the TARGET dose references (``prescription_source`` "DoseReferenceSequence");
    None without one, and then no rule may use a prescription from this plan.
    ``beam_dose_total_gy`` (the treatment beams' Beam Dose times their group's
    fractions, added up) is only a hint shown to the reader: the dose at a
    specification point that may lie anywhere, not a prescription.
    ``radiation_type`` is PHOTON, ELECTRON, PROTON, ION... (several joined by "+"), or
    BRACHY for a brachytherapy plan. ``prescription_problem`` says why the plan's target
    prescriptions were not used, when they were not (per-phase prescriptions).
    """

    file: Path
    sop_instance_uid: str
    label: str
    name: str
    intent: str
    approval: str
    fractions: int | None
    dose_per_fraction_gy: float | None
    total_dose_gy: float | None
    prescription_source: str | None
    dose_references: list[DoseReference]
    treatment_beams: list[int]
    frame_of_reference_uid: str
    referenced_structure_set_uid: str | None
    patient_position: str | None
    patient_id: str = ""
    beam_names: dict[int, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    fraction_groups: tuple[FractionGroup, ...] = ()
    beam_dose_total_gy: float | None = None
    radiation_type: str = ""
    prescription_problem: str = ""
    #: Patient, approval, machine and beams, for the reports (no rule uses them).
    record: PlanRecord | None = None

    @property
    def is_brachy(self) -> bool:
        """True for a brachytherapy plan."""
        return self.radiation_type == "BRACHY"

    @property
    def is_ion(self) -> bool:
        """True for an RT Ion Plan (protons or heavier ions)."""
        return any(kind in ("PROTON", "ION") for kind in self.radiation_type.split("+"))


@dataclass(frozen=True)
class DoseData:
    """The dose of a whole plan in Gy, and where it came from.

    ``summation`` is the Dose Summation Type of the files used (PLAN, BEAM or
    FRACTION); ``grid`` is already the course of the plan: BEAM doses summed, and a grid
    found to hold one fraction multiplied by the fractions planned. ``scale`` says what
    the stored grid held and the evidence for it (the dose at the points where the plan
    states the dose; None when no plan was given). ``dose_type`` is PHYSICAL or
    EFFECTIVE (RBE-weighted), "" when the files do not say.
    ``beam_sum_max_difference_gy`` is the largest difference between the summed BEAM
    doses and the PLAN dose when both were present (see ``notes``).
    """

    grid: DoseGrid
    files: list[Path]
    sop_instance_uids: list[str]
    summation: str
    units: str
    frame_of_reference_uid: str
    referenced_plan_uid: str | None
    notes: list[str] = field(default_factory=list)
    beam_sum_max_difference_gy: float | None = None
    scale: DoseScale | None = None
    dose_type: str = ""
    #: The planning system's own DVHs (DVHSequence) of the files used.
    tps_dvhs: tuple[TpsDvh, ...] = ()


@dataclass(frozen=True)
class Roi:
    """One ROI of a structure set.

    ``planes`` holds the closed planar contours grouped by axial plane (ascending z),
    each polygon a separate ``(n, 2)`` array, to be combined by the even-odd rule.
    POINT and OPEN contours carry no volume and are left out (with a note), and so are
    degenerate closed contours (1 or 2 points, or no area; one note per ROI). A
    CLOSED_PLANAR ROI without planes had only degenerate contours: it is empty.
    """

    number: int
    name: str
    interpreted_type: str
    geometric_type: str
    planes: tuple[ContourPlane, ...]
    notes: tuple[str, ...] = ()
    frame_of_reference_uid: str = ""

    @property
    def empty(self) -> bool:
        """True when the ROI has no closed planar contour (no volume)."""
        return not self.planes


@dataclass(frozen=True)
class StructureSet:
    """An RT Structure Set with its ROIs in file order.

    ``slice_positions`` are the z (mm, ascending) of the CT slices the structure set
    references, when those CT files are all present; else None.
    """

    file: Path
    sop_instance_uid: str
    label: str
    frame_of_reference_uid: str
    rois: list[Roi]
    slice_positions: FloatArray | None
    notes: list[str] = field(default_factory=list)

    def roi(self, name: str) -> Roi:
        """The ROI called ``name`` (exact match); KeyError when there is none."""
        for roi in self.rois:
            if roi.name == name:
                return roi
        raise KeyError(name)


@dataclass(frozen=True)
class PlanExport:
    """Everything needed to check one plan. ``warnings`` are for the user to read."""

    patient_id: str
    plan: PlanInfo | None
    dose: DoseData
    structures: StructureSet
    ct_files: list[Path]
    warnings: list[str]


@dataclass(frozen=True)
class ExportSet:
    """The files of one plan found by :func:`find_exports`, linked but not yet read.

    ``doses`` are all RTDOSE files referencing the plan (the choice among them, and
    the BEAM-versus-PLAN comparison, happen in :func:`load_export`).
    """

    patient_id: str
    plan_uid: str
    plan_label: str
    plan: Path
    structures: Path
    doses: tuple[Path, ...]
    summation: str
    ct_files: tuple[Path, ...] = ()
    warnings: tuple[str, ...] = ()
    #: What the folder scan read of each CT file (SOP Instance UID, Image Position and
    #: Image Orientation Patient, or None where absent or not numbers): the slice
    #: positions come from it instead of reading every slice again.
    ct_geometry: tuple[CtGeometry, ...] = ()


#: A CT slice as the folder scan read it: its path, SOP Instance UID, Image Position
#: (Patient) and Image Orientation (Patient), each None when absent or not numbers.
CtGeometry = tuple[Path, str, tuple[float, ...] | None, tuple[float, ...] | None]


# --------------------------------------------------------------------------------------
# pydicom plumbing
# --------------------------------------------------------------------------------------


@contextmanager
def _lenient_pydicom() -> Iterator[None]:
    """Read without VR validation; pydicom's warnings go to the debug log.

    pydicom also logs some warnings (e.g. a sequence cut short); below ``--debug`` they
    are kept off the terminal, as rtcheck reports the problem in its own words.
    """
    saved = config.settings.reading_validation_mode
    config.settings.reading_validation_mode = config.IGNORE
    pydicom_log = logging.getLogger("pydicom")
    saved_level = pydicom_log.level
    if not logger.isEnabledFor(logging.DEBUG):
        pydicom_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield
            finally:
                for w in caught:
                    logger.debug("pydicom: %s", w.message)
    finally:
        config.settings.reading_validation_mode = saved
        pydicom_log.setLevel(saved_level)


def _read(
    path: Path,
    *,
    stop_before_pixels: bool = False,
    specific_tags: list[str] | None = None,
    notes: list[str] | None = None,
) -> Dataset:
    """dcmread turning every failure into an InputError naming the file.

    A file without the Part 10 preamble that starts like a dataset (older exports, some
    test files) is read as a raw dataset. When the file gives no Transfer Syntax UID
    (no file meta header, as Monaco writes), the one its data set was read in is set on
    the dataset in memory (see :func:`_infer_transfer_syntax`) so that its pixel data
    decode; a note saying so goes to ``notes`` when given, else to the debug log.
    """
    _refuse_truncated(path)
    try:
        ds = _dcmread_any(path, stop_before_pixels=stop_before_pixels, specific_tags=specific_tags)
    except InvalidDicomError as exc:
        raise InputError(f"not a DICOM file ({exc})", path) from exc
    except OSError as exc:
        raise InputError(f"cannot be read: {exc.strerror or exc}", path) from exc
    except Exception as exc:  # pydicom raises many types on corrupt files
        raise InputError(
            f"unreadable DICOM ({type(exc).__name__}: {exc}); re-export it", path
        ) from exc
    _decode_elements(ds, path)
    inferred = _infer_transfer_syntax(ds)
    if inferred is not None:
        note = (
            f"{path}: no DICOM file meta header (no Transfer Syntax UID): transfer syntax "
            f"inferred as {inferred.name}, the encoding its data set is written in"
        )
        logger.debug("%s", note)
        if notes is not None:
            notes.append(note)
    return ds


#: Values longer than this (bytes) are left encoded by :func:`_decode_elements`: contour
#: coordinates, pixel data and DVH data are parsed where they are used, from their bytes.
_DECODE_MAX_BYTES = 1024
#: Control Point Sequence and Ion Control Point Sequence: see :func:`_decode_elements`.
_CONTROL_POINT_SEQUENCES = frozenset({0x300A0111, 0x300A03A8})
#: Contour Data is always left encoded (its VR is checked): :func:`_floats` parses its
#: bytes, much faster than pydicom builds its decimal strings (10^4 small contours).
_KEEP_ENCODED = frozenset({0x30060050})
#: One valid Decimal String / Integer String value (PS3.5 6.2), padding allowed; values
#: separated by backslashes. Such a value decodes without error or warning whenever it is
#: first used, so :func:`_decode_elements` need not build it now: an RT plan holds
#: thousands (control points), and pydicom builds each as a Python object at ~50 us.
_DS_VALUE = re.compile(rb"[ ]*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ ]*")
_IS_VALUE = re.compile(rb"[ ]*[+-]?[0-9]+[ ]*")
_NUMBER_STRINGS = {"DS": _DS_VALUE, "IS": _IS_VALUE}
#: Several DS values at once (an RT plan's control points hold tens of thousands), and a
#: DS value longer than 16 characters.
_DS_VALUES = re.compile(rb"(?:%s)(?:\\(?:%s))*" % (_DS_VALUE.pattern, _DS_VALUE.pattern))
_DS_TOO_LONG = re.compile(rb"[^\\]{17}")


def _valid_number_string(data: bytes, vr: str) -> bool:
    """Whether ``data`` (a raw DS or IS value) holds only valid values of its VR: the
    syntax, at most 16 (DS) or 12 (IS) characters each, IS within a signed 32-bit int."""
    if vr == "DS":
        text = data.rstrip(b"\0 ")
        return bool(_DS_VALUES.fullmatch(text)) and not _DS_TOO_LONG.search(text)
    pattern = _NUMBER_STRINGS[vr]
    for part in data.rstrip(b"\0 ").split(b"\\"):
        if not pattern.fullmatch(part) or len(part) > (16 if vr == "DS" else 12):
            return False
        if vr == "IS" and not -(2**31) <= int(part) < 2**31:
            return False
    return True


def _element_name(tag: BaseTag) -> str:
    """``(300A,0002) RTPlanLabel``, or ``(0009,1001) private`` for a tag without keyword."""
    keyword = keyword_for_tag(tag) or ("private" if tag.is_private else "unknown")
    return f"{tag} {keyword}"


def _decode_elements(ds: Dataset, path: Path, *, shallow: bool = False) -> None:
    """Decode every element of ``ds`` (sequence items included) now, inside the boundary
    that names the file, so that no lazily decoded value fails later in a plain accessor.

    pydicom decodes an element on first use: an unknown VR (a damaged byte) raised
    NotImplementedError from ``ds.RTPlanLabel`` far from any error handling. Every
    element's VR must be one DICOM defines; values up to :data:`_DECODE_MAX_BYTES` are
    decoded (longer ones keep their bytes; their VR is still checked).

    The control points of a beam between its first and last are read by nothing but
    their count (:mod:`rtcheck.plan_record`): their own elements' VRs are checked
    (``shallow``), but their values and nested sequences (leaf positions, dose
    references: thousands of items in an arc plan) are left encoded.

    Raises
    ------
    InputError
        Naming the file and the element (tag and keyword) that cannot be decoded.
    """
    for raw in list(ds.elements()):
        tag = raw.tag
        expected = _dictionary_vr(tag)
        # In implicit VR files pydicom takes the VR from the dictionary.
        vr = (expected or "UN") if raw.VR is None else str(raw.VR)
        if vr not in _KNOWN_VRS:
            raise InputError(
                f"element {_element_name(tag)} has the value representation '{vr}', "
                "which DICOM does not define: the file is damaged or not valid DICOM; "
                "export it again",
                path,
            )
        if vr != "UN" and (expected == "SQ") != (vr == "SQ"):
            raise InputError(
                f"element {_element_name(tag)} is encoded as {vr} where DICOM defines "
                f"{expected}: {'a sequence' if expected == 'SQ' else 'a value'} cannot be "
                f"read as {'a value' if expected == 'SQ' else 'a sequence'}; the file is "
                "damaged or not valid DICOM: export it again",
                path,
            )
        if shallow and isinstance(raw, RawDataElement):
            continue
        if not isinstance(raw, RawDataElement):
            value = raw.value
        elif "SQ" not in (vr, expected) and (
            (raw.length or 0) > _DECODE_MAX_BYTES
            or tag in _KEEP_ENCODED
            or (
                vr in _NUMBER_STRINGS
                and isinstance(raw.value, bytes)
                and _valid_number_string(raw.value, vr)
            )
        ):
            continue
        else:
            try:
                value = ds[tag].value
            except Exception as exc:  # pydicom's converters raise many types
                raise InputError(
                    f"element {_element_name(tag)} cannot be decoded as {vr} "
                    f"({type(exc).__name__}: {exc}): the file is damaged or not valid "
                    "DICOM; export it again",
                    path,
                ) from exc
        if isinstance(value, DicomSequence):
            last = len(value) - 1
            for i, item in enumerate(value):
                middle = tag in _CONTROL_POINT_SEQUENCES and 0 < i < last
                _decode_elements(item, path, shallow=shallow or middle)
        elif expected == "SQ" and not (
            value is None or (isinstance(value, bytes | str) and not value)
        ):
            raise InputError(
                f"element {_element_name(tag)} does not decode as a sequence (its VR is "
                f"{vr}): the file is damaged or not valid DICOM; export it again",
                path,
            )


def _dictionary_vr(tag: BaseTag) -> str:
    """The VR DICOM defines for a public tag; "" for private and unknown tags."""
    if tag.is_private:
        return ""
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return ""


def _raised_in_pydicom(exc: BaseException) -> bool:
    """Whether ``exc`` was raised inside pydicom (decoding a value), not in rtcheck."""
    frame = exc.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code.co_filename.startswith(_PYDICOM_DIR):
            return True
        frame = frame.tb_next
    return False


@contextmanager
def _decoding(path: Path) -> Iterator[None]:
    """The error boundary of everything that reads values from the file ``path``.

    A failure inside pydicom (a value decoded on first use) becomes an InputError naming
    the file; rtcheck's own errors pass through, and so does anything raised by rtcheck's
    code (a bug is an internal error, never the input's fault).
    """
    try:
        yield
    except RtcheckError:
        raise
    except Exception as exc:
        if not _raised_in_pydicom(exc):
            raise
        raise InputError(
            f"a value cannot be decoded ({type(exc).__name__}: {exc}): the file is damaged "
            "or not valid DICOM; export it again",
            path,
        ) from exc


def _infer_transfer_syntax(ds: Dataset) -> UID | None:
    """Set the Transfer Syntax UID of a dataset read without one; None when it had one.

    The syntax is the encoding pydicom found the data set in (its ``original_encoding``:
    implicit or explicit VR, little or big endian; PS3.10 7.1 requires the file meta
    header, but without one the data set's own encoding is the only reading there is).
    Only the dataset in memory changes, never the file. None also when the encoding is
    unknown (not read from a file) or has no transfer syntax (implicit VR big endian).
    """
    meta = ds.get("file_meta")
    if meta is not None and "TransferSyntaxUID" in meta:
        return None
    implicit, little = ds.original_encoding
    if implicit is None or little is None:
        return None
    if little:
        syntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    elif not implicit:
        syntax = ExplicitVRBigEndian
    else:
        return None
    if meta is None:
        meta = FileMetaDataset()
        ds.file_meta = meta
    meta.TransferSyntaxUID = syntax
    return syntax


def _refuse_truncated(path: Path) -> None:
    """InputError when the file is cut short (pydicom reads some such files silently)."""
    try:
        where = find_truncation(path)
    except OSError as exc:
        raise InputError(f"cannot be read: {exc.strerror or exc}", path) from exc
    if where is not None:
        raise InputError(
            f"truncated DICOM file: {where}; it is incomplete (an interrupted copy or "
            "export?): export it again",
            path,
        )


def _text(ds: Dataset, keyword: str) -> str:
    """A text element as one string; a backslash-separated (multi-valued) one is rejoined."""
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value).strip()
    return str(value).strip()


def _float(ds: Dataset, keyword: str) -> float | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def _int(ds: Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _floats(ds: Dataset, keyword: str) -> FloatArray | None:
    """A (multi-valued) DS element as float64, parsed from the raw bytes when possible.

    Returns None when the element is absent or empty; raises ValueError when a value
    is not a number.
    """
    if keyword not in ds:
        return None
    elem: Any = ds.get_item(keyword)
    value = elem.value
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        text = bytes(value).rstrip(b" \x00")
        if not text:
            return None
        parts = text.split(b"\\")
        return np.fromiter(map(float, parts), dtype=np.float64, count=len(parts))
    if isinstance(value, str | float | int):
        if value == "":
            return None
        return np.array([float(value)], dtype=np.float64)
    try:
        return np.array([float(v) for v in value], dtype=np.float64)
    except TypeError as exc:  # an element written with another VR (a person name...)
        raise ValueError(f"{keyword} is not a list of numbers ({exc})") from exc


def _seq(ds: Dataset, keyword: str) -> list[Dataset]:
    value = ds.get(keyword)
    return list(value) if value else []


def _kind(ds: Dataset) -> str:
    sop = str(ds.get("SOPClassUID", "")).strip()
    if sop in _SOP_MODALITY:
        return _SOP_MODALITY[sop]
    if sop == _DICOMDIR:
        return "DICOMDIR"
    return _text(ds, "Modality") or "unknown"


def _require_kind(ds: Dataset, kind: str, path: Path) -> None:
    found = _kind(ds)
    if found != kind:
        raise InputError(f"expected an {kind} file but this is {found}", path)


# --------------------------------------------------------------------------------------
# Plans
# --------------------------------------------------------------------------------------


def read_plan(path: str | Path) -> PlanInfo:
    """Read an RT Plan (or RT Ion Plan).

    Parameters
    ----------
    path
        The RTPLAN file.

    Returns
    -------
    PlanInfo
        Label, intent, approval, fractions, prescription (see :class:`PlanInfo` for
        the rules) and the treatment beams.
    """
    file = Path(path)
    with _lenient_pydicom(), _decoding(file):
        ds = _read(file, stop_before_pixels=True)
        _require_kind(ds, "RTPLAN", file)
        return _plan_from_dataset(ds, file)


def _point(ds: Dataset, keyword: str) -> tuple[float, float, float] | None:
    """A 3-D point (mm) from a DS element of three values, else None."""
    try:
        values = _floats(ds, keyword)
    except ValueError:
        return None
    if values is None or values.size != 3 or not np.all(np.isfinite(values)):
        return None
    return (float(values[0]), float(values[1]), float(values[2]))


def _dose_references(ds: Dataset) -> list[DoseReference]:
    references = []
    for item in _seq(ds, "DoseReferenceSequence"):
        kind = _text(item, "DoseReferenceType")
        prescription = _float(item, "TargetPrescriptionDose")
        if kind == "TARGET":
            dose = prescription
        elif kind == "ORGAN_AT_RISK":
            dose = _float(item, "OrganAtRiskMaximumDose")
        else:
            dose = None
        if dose is None and kind != "TARGET":
            dose = _float(item, "DeliveryMaximumDose")
        references.append(
            DoseReference(
                _text(item, "DoseReferenceDescription"),
                kind,
                dose,
                _point(item, "DoseReferencePointCoordinates"),
                prescription,
                _int(item, "ReferencedROINumber"),
            )
        )
    return references


def _fraction_group(group: Dataset, delivery: dict[int, str], index: int) -> FractionGroup:
    """One fraction group with its treatment beams (or brachytherapy setups)."""
    fractions = _int(group, "NumberOfFractionsPlanned")
    beams: list[BeamDose] = []
    for ref in _seq(group, "ReferencedBeamSequence"):
        number = _int(ref, "ReferencedBeamNumber")
        if number is None or delivery.get(number, "TREATMENT") == "SETUP":
            continue
        meterset = _float(ref, "BeamMeterset")
        # Only an explicit 0 MU excludes a treatment beam: BeamMeterset is optional.
        if meterset is not None and meterset <= 0:
            continue
        beams.append(
            BeamDose(number, _float(ref, "BeamDose"), _point(ref, "BeamDoseSpecificationPoint"))
        )
    for ref in _seq(group, "ReferencedBrachyApplicationSetupSequence"):
        number = _int(ref, "ReferencedBrachyApplicationSetupNumber")
        beams.append(
            BeamDose(
                0 if number is None else number,
                _float(ref, "BrachyApplicationSetupDose"),
                _point(ref, "BrachyApplicationSetupDoseSpecificationPoint"),
            )
        )
    return FractionGroup(
        number=_int(group, "FractionGroupNumber") or index + 1,
        fractions=fractions if fractions is not None and fractions > 0 else None,
        beams=tuple(beams),
    )


def _radiation_type(ds: Dataset, beam_items: list[Dataset]) -> str:
    """BRACHY for a brachytherapy plan, else the beams' radiation types joined by '+'.

    A plan is brachytherapy when it says so (Brachy Treatment Type, Application Setup or
    Source Sequence) or when a fraction group holds brachy application setups. An RT Ion
    Plan (Ion Beam Sequence or its SOP class) whose beams give no radiation type is ION.
    """
    groups = _seq(ds, "FractionGroupSequence")
    if any(
        keyword in ds
        for keyword in ("BrachyTreatmentType", "ApplicationSetupSequence", "SourceSequence")
    ) or any(
        (_int(g, "NumberOfBrachyApplicationSetups") or 0) > 0
        or _seq(g, "ReferencedBrachyApplicationSetupSequence")
        for g in groups
    ):
        return "BRACHY"
    kinds = dict.fromkeys(
        _text(b, "RadiationType").upper()
        for b in beam_items
        if (_text(b, "TreatmentDeliveryType") or "TREATMENT") != "SETUP"
    )
    kinds.pop("", None)
    ion = "IonBeamSequence" in ds or str(ds.get("SOPClassUID", "")).strip() == _RT_ION_PLAN
    if ion and not any(k in ("PROTON", "ION") for k in kinds):
        kinds["ION"] = None
    return "+".join(kinds)


def _plan_from_dataset(ds: Dataset, file: Path) -> PlanInfo:
    notes: list[str] = []
    references = _dose_references(ds)
    beam_items = _seq(ds, "BeamSequence") or _seq(ds, "IonBeamSequence")
    delivery: dict[int, str] = {}
    names: dict[int, str] = {}
    for beam in beam_items:
        number = _int(beam, "BeamNumber")
        if number is not None:
            delivery[number] = _text(beam, "TreatmentDeliveryType") or "TREATMENT"
            names[number] = _text(beam, "BeamName")
    groups = tuple(
        _fraction_group(group, delivery, i)
        for i, group in enumerate(_seq(ds, "FractionGroupSequence"))
    )
    counts = [g.fractions for g in groups]
    fractions = sum(c for c in counts if c) if counts and all(counts) else None
    if len(groups) > 1:
        notes.append(
            f"plan has {len(groups)} fraction groups ("
            + " + ".join(str(c) if c else "?" for c in counts)
            + " fractions): the course is read as their sum"
        )
    radiation = _radiation_type(ds, beam_items)
    # Brachytherapy application setups stand in the groups' beams; they are not beams.
    treatment = [] if radiation == "BRACHY" else [b.number for g in groups for b in g.beams]
    hint: float | None = None
    if groups and all(g.fractions and g.beam_dose_gy is not None for g in groups):
        hint = float(sum((g.beam_dose_gy or 0.0) * (g.fractions or 0) for g in groups))

    targets = [
        r.dose_gy
        for r in references
        if r.type == "TARGET" and r.dose_gy is not None and r.dose_gy > 0
    ]
    total: float | None = max(targets) if targets else None
    source = "DoseReferenceSequence" if targets else None
    if len(groups) > 1 and len(set(targets)) > 1:
        # Per-phase prescriptions (50 Gy, then a 20 Gy boost): the highest is not the course.
        problem = (
            f"the plan's {len(groups)} fraction groups come with several target "
            f"prescriptions ({', '.join(f'{t:g}' for t in targets)} Gy): which one is the "
            "course is not stated, so the plan's prescription is not used"
        )
        notes.append(problem)
        total, source = None, None
    else:
        problem = ""
    per_fraction = total / fractions if total is not None and fractions else None

    structure_refs = _seq(ds, "ReferencedStructureSetSequence")
    rs_uid = _text(structure_refs[0], "ReferencedSOPInstanceUID") if structure_refs else ""
    setups = _seq(ds, "PatientSetupSequence")
    position = _text(setups[0], "PatientPosition") if setups else ""
    return PlanInfo(
        file=file,
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        label=_text(ds, "RTPlanLabel"),
        name=_text(ds, "RTPlanName"),
        intent=_text(ds, "PlanIntent"),
        approval=_text(ds, "ApprovalStatus"),
        fractions=fractions,
        dose_per_fraction_gy=per_fraction,
        total_dose_gy=total,
        prescription_source=source,
        dose_references=references,
        treatment_beams=treatment,
        frame_of_reference_uid=_text(ds, "FrameOfReferenceUID"),
        referenced_structure_set_uid=rs_uid or None,
        patient_position=position or None,
        patient_id=_text(ds, "PatientID"),
        beam_names=names,
        notes=notes,
        fraction_groups=groups,
        beam_dose_total_gy=hint,
        radiation_type=radiation,
        prescription_problem=problem,
        record=read_plan_record(ds),
    )


# --------------------------------------------------------------------------------------
# Doses
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _DoseInfo:
    """Header facts of one RTDOSE used to link and choose doses."""

    path: Path
    sop_instance_uid: str
    summation: str
    units: str
    frame_of_reference_uid: str
    referenced_plan_uid: str | None
    beam_numbers: tuple[int, ...]
    patient_id: str
    dose_type: str = ""
    fraction_group_numbers: tuple[int, ...] = ()


def _dose_info(ds: Dataset, path: Path) -> _DoseInfo:
    plan_uid: str | None = None
    beams: list[int] = []
    groups: list[int] = []
    refs = _seq(ds, "ReferencedRTPlanSequence")
    if refs:
        plan_uid = _text(refs[0], "ReferencedSOPInstanceUID") or None
        for group in _seq(refs[0], "ReferencedFractionGroupSequence"):
            number = _int(group, "ReferencedFractionGroupNumber")
            if number is not None:
                groups.append(number)
            for beam in _seq(group, "ReferencedBeamSequence"):
                number = _int(beam, "ReferencedBeamNumber")
                if number is not None:
                    beams.append(number)
    return _DoseInfo(
        path=path,
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        summation=_text(ds, "DoseSummationType").upper(),
        units=_text(ds, "DoseUnits").upper(),
        frame_of_reference_uid=_text(ds, "FrameOfReferenceUID"),
        referenced_plan_uid=plan_uid,
        beam_numbers=tuple(beams),
        patient_id=_text(ds, "PatientID"),
        dose_type=_text(ds, "DoseType").upper(),
        fraction_group_numbers=tuple(groups),
    )


def _check_units(info: _DoseInfo) -> None:
    if info.dose_type == "ERROR":
        raise InputError(
            "DoseType ERROR: this grid holds a dose difference (desired minus planned), not "
            "a dose; export the plan's dose (DoseType PHYSICAL or EFFECTIVE)",
            info.path,
        )
    if info.dose_type not in ("PHYSICAL", "EFFECTIVE", ""):
        raise InputError(
            f"DoseType '{info.dose_type}' is not a dose rtcheck knows (PHYSICAL, or "
            "EFFECTIVE for an RBE-weighted dose); export the plan's dose again",
            info.path,
        )
    if info.units == "RELATIVE":
        raise InputError(
            "relative dose (DoseUnits RELATIVE) cannot be checked against dose limits in "
            "Gy: export the dose in absolute units (Gy) from the planning system",
            info.path,
        )
    if info.units != "GY":
        if not info.units:
            _refuse_truncated(info.path)  # a header cut short loses its Dose Units
            raise InputError(
                "the dose gives no DoseUnits (a required element: the file is incomplete "
                "or not a valid RT Dose): whether it is in Gy is unknown; export the dose "
                "again, in Gy",
                info.path,
            )
        raise InputError(
            f"DoseUnits '{info.units or '(missing)'}' is not supported: only GY doses "
            "can be checked; export the dose in Gy",
            info.path,
        )


@dataclass(frozen=True)
class _DoseFile:
    info: _DoseInfo
    grid: DoseGrid
    notes: tuple[str, ...]
    tps: tuple[TpsDvh, ...] = ()


def read_dose(path: str | Path) -> DoseData:
    """Read one RTDOSE as stored (no summation rule applied).

    Parameters
    ----------
    path
        The RTDOSE file.

    Returns
    -------
    DoseData
        The grid in Gy on ascending axes; ``summation`` is the file's Dose Summation
        Type, the dose is *not* multiplied by fractions or summed with other beams.
    """
    dose = _read_dose_file(Path(path))
    return DoseData(
        grid=dose.grid,
        files=[dose.info.path],
        sop_instance_uids=[dose.info.sop_instance_uid],
        summation=dose.info.summation,
        units=dose.info.units,
        frame_of_reference_uid=dose.info.frame_of_reference_uid,
        referenced_plan_uid=dose.info.referenced_plan_uid,
        notes=list(dose.notes),
        dose_type=dose.info.dose_type,
        tps_dvhs=dose.tps,
    )


def _read_dose_file(path: Path) -> _DoseFile:
    read_notes: list[str] = []
    with _lenient_pydicom(), _decoding(path):
        ds = _read(path, notes=read_notes)
        _require_kind(ds, "RTDOSE", path)
        info = _dose_info(ds, path)
        _check_units(info)
        grid, notes = _dose_grid(ds, path)
        _refuse_negative(grid, info)
        tps, tps_notes = _tps_dvhs(ds)
    return _DoseFile(info, grid, (*read_notes, *notes, *tps_notes), tps)


def _refuse_negative(grid: DoseGrid, info: _DoseInfo) -> None:
    """InputError for negative values in a dose grid (PHYSICAL, EFFECTIVE or unlabelled).

    Signed pixel data (Pixel Representation 1) can hold them; a dose cannot be negative
    (DoseType ERROR, a difference, is refused before), and DVHs, medians and coverage
    computed from it would be meaningless.
    """
    low = float(np.min(grid.dose)) if grid.dose.size else 0.0
    if low < 0.0:
        kind = info.dose_type or "unlabelled (read as PHYSICAL)"
        raise InputError(
            f"the {kind} dose grid holds negative doses (minimum {low:.6g} Gy): a dose "
            "cannot be negative (a dose difference, or damaged pixel data?); export the "
            "plan's dose again",
            info.path,
        )


def _tps_dvhs(ds: Dataset) -> tuple[tuple[TpsDvh, ...], list[str]]:
    """The planning system's DVHs of an RTDOSE, for the report's comparison; a malformed
    DVHSequence is a note, not a refusal (no rule uses it)."""
    try:
        return tuple(read_tps_dvhs([ds])), []
    except (ValueError, TypeError, AttributeError) as exc:
        return (), [f"the planning system's DVHs (DVHSequence) could not be read: {exc}"]


def _axis_of(cosines: FloatArray) -> tuple[int, float] | None:
    """(patient axis 0/1, sign) of an in-plane direction along x or y, else None."""
    for axis in (0, 1):
        others = [k for k in range(3) if k != axis]
        if abs(abs(cosines[axis]) - 1.0) <= DIRECTION_TOLERANCE and all(
            abs(cosines[k]) <= DIRECTION_TOLERANCE for k in others
        ):
            return axis, math.copysign(1.0, float(cosines[axis]))
    return None


def _dose_grid(ds: Dataset, path: Path) -> tuple[DoseGrid, list[str]]:
    """The dose grid of an RTDOSE dataset: Gy, ascending axes (see module notes)."""
    notes: list[str] = []
    if "PixelData" not in ds:
        raise InputError(
            "the RTDOSE holds no dose grid (no Pixel Data): export the 3-D "
            "dose, not only DVHs or points",
            path,
        )
    frames = _int(ds, "NumberOfFrames")
    if frames is None and ds.get("NumberOfFrames") not in (None, ""):
        raise InputError(
            f"NumberOfFrames '{_text(ds, 'NumberOfFrames')}' is not a whole number: how "
            "many dose frames the file holds is unknown; export the dose again",
            path,
        )
    frames = frames or 1
    rows, cols = _int(ds, "Rows") or 0, _int(ds, "Columns") or 0
    bits = _int(ds, "BitsAllocated") or 0
    if frames < 2:
        raise InputError(
            "single-frame dose: the RTDOSE holds one dose plane, but a 3-D dose grid "
            "(multi-frame) is needed; export the full dose volume",
            path,
        )
    if rows < 1 or cols < 1 or bits not in (8, 16, 32):
        raise InputError(f"invalid dose image size ({rows} x {cols}, {bits} bits allocated)", path)
    try:
        spacing = _floats(ds, "PixelSpacing")
        iop = _floats(ds, "ImageOrientationPatient")
        ipp = _floats(ds, "ImagePositionPatient")
        offsets = _floats(ds, "GridFrameOffsetVector")
        scaling = _float(ds, "DoseGridScaling")
    except ValueError as exc:
        raise InputError(f"non-numeric dose geometry ({exc})", path) from exc
    if spacing is None or spacing.size != 2 or not np.all(np.isfinite(spacing)):
        raise InputError("PixelSpacing is missing or invalid", path)
    if np.any(spacing <= 0):
        raise InputError(
            f"PixelSpacing {spacing.tolist()} is zero or negative: the dose "
            "grid has no valid in-plane spacing; re-export the dose",
            path,
        )
    if iop is None or iop.size != 6 or ipp is None or ipp.size != 3:
        raise InputError(
            "ImageOrientationPatient or ImagePositionPatient is missing or invalid", path
        )
    if offsets is None or offsets.size != frames:
        raise InputError(
            f"GridFrameOffsetVector has {0 if offsets is None else offsets.size} values for "
            f"{frames} frames",
            path,
        )
    if scaling is None or scaling <= 0:
        raise InputError("DoseGridScaling is missing, zero or negative", path)
    for keyword, values in (
        ("PixelSpacing", spacing),
        ("ImagePositionPatient", ipp),
        ("GridFrameOffsetVector", offsets),
    ):
        if not np.all(np.isfinite(values)) or float(np.max(np.abs(values))) > MAX_COORDINATE_MM:
            raise InputError(
                f"{keyword} holds {float(np.max(np.abs(values))):.6g} mm, beyond "
                f"{MAX_COORDINATE_MM:g} mm (or not a finite number): the dose grid's "
                "geometry is damaged; export the dose again",
                path,
            )

    row_dir = _axis_of(iop[:3])
    col_dir = _axis_of(iop[3:])
    if row_dir is None or col_dir is None or row_dir[0] == col_dir[0]:
        raise InputError(
            f"oblique dose grid (ImageOrientationPatient {iop.round(6).tolist()}) is not "
            "supported: only axial grids (HFS, FFS, HFP, FFP) can be read; resample the "
            "dose to an axial grid in the planning system",
            path,
        )
    normal_z = math.copysign(1.0, float(np.cross(iop[:3], iop[3:])[2]))

    # Frame positions, PS3.3 C.8.8.3.2.
    first = float(offsets[0])
    if abs(first) <= 1e-6:
        z = ipp[2] + normal_z * offsets
        if normal_z < 0 and float(offsets[-1]) > 0:
            notes.append(
                "feet-first dose grid (ImageOrientationPatient normal along -z): its "
                "relative GridFrameOffsetVector is read along the normal, row x column, so "
                "frames run towards -z (PS3.3 C.8.8.3.2); check the dose against the anatomy "
                "if the planning system writes offsets along +z"
            )
    elif abs(first - ipp[2]) <= PLANE_TOLERANCE_MM:
        z = offsets.copy()
        if not np.allclose(iop, [1, 0, 0, 0, 1, 0], atol=DIRECTION_TOLERANCE):
            notes.append(
                "absolute GridFrameOffsetVector with a non-HFS orientation (the "
                "standard defines it for 1\\0\\0\\0\\1\\0 only): read as patient z"
            )
    else:
        raise InputError(
            f"GridFrameOffsetVector starts at {first:g} mm, neither 0 (offsets relative to "
            f"Image Position Patient) nor its z {ipp[2]:g} mm (absolute z): the frame "
            "positions are undefined (PS3.3 C.8.8.3.2); re-export the dose",
            path,
        )
    steps = np.diff(offsets)
    if np.any(np.abs(steps) <= 1e-6):
        raise InputError(
            "zero frame spacing: two dose frames share one position in "
            "GridFrameOffsetVector; re-export the dose",
            path,
        )
    if not (np.all(steps > 0) or np.all(steps < 0)):
        raise InputError(
            "GridFrameOffsetVector is not monotonic (PS3.3 C.8.8.3.2 requires "
            "it); re-export the dose",
            path,
        )

    stored = _pixels(ds, path, frames, rows, cols, bits)
    with np.errstate(over="ignore", invalid="ignore"):
        dose = stored.astype(np.float64) * scaling
    if not np.all(np.isfinite(dose)):
        raise InputError(
            f"DoseGridScaling {scaling:g} times the stored values overflows: the dose is "
            "not a finite number; export the dose again",
            path,
        )

    # Columns run along the row direction cosine, rows along the column one.
    col_axis, col_sign = row_dir
    row_axis, row_sign = col_dir
    col_coords = ipp[col_axis] + col_sign * spacing[1] * np.arange(cols)
    row_coords = ipp[row_axis] + row_sign * spacing[0] * np.arange(rows)
    if col_axis == 0:
        x, y = col_coords, row_coords
    else:  # rows along x, columns along y: bring to (frame, y, x)
        dose = dose.transpose(0, 2, 1)
        x, y = row_coords, col_coords
    if x[1] < x[0]:
        x, dose = x[::-1], dose[:, :, ::-1]
    if y[1] < y[0]:
        y, dose = y[::-1], dose[:, ::-1, :]
    order = np.argsort(z, kind="stable")
    if not np.array_equal(order, np.arange(z.size)):
        logger.debug("%s: dose frames stored in descending z, sorted", path)
    z, dose = z[order], dose[order]
    try:
        grid = DoseGrid(
            np.ascontiguousarray(x),
            np.ascontiguousarray(y),
            np.ascontiguousarray(z),
            np.ascontiguousarray(dose),
        )
    except ValueError as exc:
        raise InputError(f"invalid dose grid geometry: {exc}", path) from exc
    return grid, notes


def _pixels(ds: Dataset, path: Path, frames: int, rows: int, cols: int, bits: int) -> NDArray[Any]:
    """Stored pixel values (frames, rows, cols); truncation is checked before decoding."""
    syntax = UID(str(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2")))
    samples = _int(ds, "SamplesPerPixel") or 1
    if samples != 1:
        raise InputError(f"SamplesPerPixel is {samples}: a dose grid has one sample", path)
    if not syntax.is_encapsulated:
        expected = rows * cols * frames * bits // 8
        actual = len(ds.PixelData)
        if actual < expected:
            raise InputError(
                f"truncated pixel data: {actual} bytes where {rows} rows x {cols} columns x "
                f"{frames} frames x {bits // 8} bytes = {expected} are needed; the file is "
                "incomplete, copy or export it again",
                path,
            )
    else:
        from pydicom.pixels.decoders.base import get_decoder

        try:
            decoder = get_decoder(syntax)
        except NotImplementedError as exc:  # pydicom's answer for a syntax it cannot decode
            raise InputError(
                f"pixel data in transfer syntax {syntax.name} ({syntax}) "
                "cannot be decoded; export the dose uncompressed",
                path,
            ) from exc
        if not decoder.is_available:
            raise MissingExtraError(f"decoding {syntax.name}", "codecs", "pylibjpeg")
    try:
        arr = np.asarray(ds.pixel_array)
    except Exception as exc:
        raise InputError(
            f"cannot decode the dose pixel data ({type(exc).__name__}: {exc}); "
            "the file may be damaged, export it again",
            path,
        ) from exc
    if arr.size != frames * rows * cols:
        raise InputError(
            f"the pixel data hold {arr.size} values, not NumberOfFrames x Rows x Columns = "
            f"{frames} x {rows} x {cols} = {frames * rows * cols}: the header does not "
            "match the data; export the dose again",
            path,
        )
    return arr.reshape(frames, rows, cols)


def _same_geometry(a: DoseGrid, b: DoseGrid) -> bool:
    return all(
        u.shape == v.shape and np.allclose(u, v, atol=GEOMETRY_TOLERANCE_MM, rtol=0)
        for u, v in ((a.x, b.x), (a.y, b.y), (a.z, b.z))
    )


def _choose_doses(
    infos: Sequence[_DoseInfo], plan_name: str
) -> tuple[list[_DoseInfo], list[_DoseInfo], list[str], list[InputError]]:
    """Pick the doses of one plan: PLAN, else the BEAM doses, else FRACTION.

    Returns the chosen doses, the BEAM doses to compare with a chosen PLAN dose,
    warnings about doses left aside, and errors for ambiguities.
    """
    by_type: dict[str, list[_DoseInfo]] = defaultdict(list)
    for info in infos:
        by_type[info.summation].append(info)
    errors: list[InputError] = []
    notes: list[str] = []
    for kind in ("PLAN", "FRACTION"):
        found = by_type.get(kind, [])
        if len(found) > 1:
            others = ", ".join(str(d.path) for d in found[:-1])
            errors.append(
                AmbiguousExportError(
                    f"two {kind} doses for {plan_name}: this one and {others}; rtcheck does not "
                    f"guess which one to check: {EXPLICIT_HINT}",
                    found[-1].path,
                )
            )
    seen: dict[int, Path] = {}
    for info in by_type.get("BEAM", []):
        if not info.beam_numbers:
            errors.append(
                InputError(
                    f"BEAM dose for {plan_name} does not say which beam it holds (no Referenced "
                    "Beam Sequence), so whether every beam is there cannot be checked: export "
                    "the BEAM doses with their beam references, or the plan's PLAN dose",
                    info.path,
                )
            )
        for number in info.beam_numbers:
            if number in seen:
                errors.append(
                    AmbiguousExportError(
                        f"two BEAM doses for beam {number} of {plan_name}: this one and "
                        f"{seen[number]}: {EXPLICIT_HINT}",
                        info.path,
                    )
                )
            seen[number] = info.path
    if errors:
        return [], [], notes, errors
    unsupported = sorted(k for k in by_type if k not in _SUPPORTED_SUMMATIONS)
    for kind in unsupported:
        for info in by_type[kind]:
            notes.append(
                f"ignored dose {info.path}: DoseSummationType {kind or '(missing)'} "
                "is not supported (PLAN, BEAM or FRACTION are)"
            )
    comparison: list[_DoseInfo] = []
    if by_type.get("PLAN"):
        chosen = by_type["PLAN"]
        comparison = sorted(by_type.get("BEAM", []), key=lambda d: d.beam_numbers)
        left = by_type.get("FRACTION", [])
    elif by_type.get("BEAM"):
        chosen = sorted(by_type["BEAM"], key=lambda d: d.beam_numbers)
        left = by_type.get("FRACTION", [])
    elif by_type.get("FRACTION"):
        chosen, left = by_type["FRACTION"], []
    else:
        kinds = ", ".join(k or "(missing)" for k in unsupported)
        return (
            [],
            [],
            notes,
            [
                InputError(
                    f"no dose of {plan_name} has a supported DoseSummationType (found {kinds}; "
                    "PLAN, BEAM or FRACTION are supported)",
                    infos[0].path,
                )
            ],
        )
    for info in left:
        notes.append(f"ignored FRACTION dose {info.path}: the {chosen[0].summation} dose is used")
    return list(chosen), comparison, notes, []


def _assemble_dose(
    infos: Sequence[_DoseInfo], plan: PlanInfo | None, warnings_out: list[str]
) -> DoseData:
    """Read and combine the doses of one plan into the plan's total dose."""
    plan_name = f"plan {plan.label or plan.sop_instance_uid}" if plan else "the plan"
    chosen, comparison, notes, errors = _choose_doses(infos, plan_name)
    if errors:
        raise errors[0] if len(errors) == 1 else InputErrors(errors)
    warnings_out.extend(notes)
    files = [_read_dose_file(info.path) for info in chosen]
    dose_notes: list[str] = [n for f in files for n in f.notes]
    first = files[0]
    for other in files[1:]:
        if other.info.frame_of_reference_uid != first.info.frame_of_reference_uid:
            raise InputError(
                f"frame of reference {other.info.frame_of_reference_uid} differs from "
                f"{first.info.frame_of_reference_uid} of {first.info.path}: the beam doses "
                "cannot be summed",
                other.info.path,
            )
    if plan is not None:
        for f in files:
            ref = f.info.referenced_plan_uid
            if ref and ref != plan.sop_instance_uid:
                warnings_out.append(
                    f"dose {f.info.path} references plan {ref}, not the plan given "
                    f"({plan.file}, {plan.sop_instance_uid})"
                )
    summation = first.info.summation
    grid = first.grid
    beam_difference: float | None = None
    types = sorted({f.info.dose_type for f in files})
    if len(types) > 1:
        raise InputError(
            f"the doses to sum have different DoseType ({', '.join(t or '(none)' for t in types)})"
            ": physical and RBE-weighted doses cannot be added; export one kind",
            files[-1].info.path,
        )
    if not types[0]:
        dose_notes.append("the dose does not give its DoseType: read as a physical dose")
    if summation == "BEAM":
        files = _select_beam_doses(files, plan, warnings_out, dose_notes)
        grid = _sum_grids(files)
        beams = sorted(n for f in files for n in f.info.beam_numbers)
        dose_notes.append(
            f"plan dose = sum of {len(files)} BEAM dose(s) (beams "
            f"{', '.join(str(b) for b in beams)})"
        )
    elif comparison:
        beam_difference = _compare_with_beams(grid, first.info.path, comparison, plan, dose_notes)
    scale: DoseScale | None = None
    if plan is None:
        if summation == "FRACTION":
            warnings_out.append(
                f"dose {first.info.path} is a FRACTION dose and no plan was given: it is used "
                "as stored, not multiplied by the number of fractions"
            )
    else:
        scale = _dose_scale(grid, summation, plan, first.info.fraction_group_numbers)
        if scale.factor != 1.0:
            grid = DoseGrid(
                grid.x, grid.y, grid.z, np.asarray(grid.dose, dtype=np.float64) * scale.factor
            )
        if not scale.confirmed or scale.holds != scale.label_reads:
            dose_notes.append(f"dose scale: {scale.summary}")
    return DoseData(
        grid=grid,
        files=[f.info.path for f in files],
        sop_instance_uids=[f.info.sop_instance_uid for f in files],
        summation=summation,
        units=first.info.units,
        frame_of_reference_uid=first.info.frame_of_reference_uid,
        referenced_plan_uid=first.info.referenced_plan_uid,
        notes=dose_notes,
        beam_sum_max_difference_gy=beam_difference,
        scale=scale,
        dose_type=types[0],
        tps_dvhs=tuple(t for f in files for t in f.tps),
    )


def _dose_scale(
    grid: DoseGrid, summation: str, plan: PlanInfo, group_numbers: Sequence[int]
) -> DoseScale:
    """The scale of the stored grid, tested at the points where the plan states the dose.

    Raises
    ------
    InputError
        For a dose that covers only some fraction groups of the plan (a FRACTION dose
        referencing one group of a sequential boost is not the course) or a group the
        plan does not have, and for a grid that holds one fraction of a course whose
        number of fractions the plan does not give.
    """
    groups = list(plan.fraction_groups)
    if summation == "FRACTION" and group_numbers:
        numbers = {g.number for g in groups}
        unknown = sorted(set(group_numbers) - numbers)
        if unknown:
            raise InputError(
                f"the FRACTION dose references fraction group(s) {unknown}, which plan "
                f"{plan.label} does not have (groups {sorted(numbers) or 'none'}): the dose "
                "does not belong to this plan version; export the plan and its dose again",
                plan.file,
            )
        covered = [g for g in groups if g.number in set(group_numbers)]
        if len(covered) < len(groups):
            raise InputError(
                f"the FRACTION dose holds fraction group(s) {sorted(set(group_numbers))} "
                f"only, of the plan's {len(groups)} groups: it is not the dose of the whole "
                "course; export the plan's PLAN dose (or every group's dose)",
                plan.file,
            )
    counts = [g.fractions for g in groups]
    fractions = sum(c for c in counts if c) if counts and all(counts) else None
    points, no_points = _scale_points(plan, groups)
    scale = decide_scale(grid, summation, points, fractions, no_points)
    if scale.holds == "fraction" and fractions is None and plan.fraction_groups:
        raise InputError(
            f"the dose holds one fraction ({scale.summary}), but the plan does not give the "
            "Number of Fractions Planned of every fraction group, so the course cannot be "
            "computed; export the plan with its fractions, or the dose of the whole course",
            plan.file,
        )
    return scale


def _scale_points(plan: PlanInfo, groups: Sequence[FractionGroup]) -> tuple[list[ScalePoint], str]:
    """Where the plan states the dose of the fraction groups ``groups``; and, when the
    beams' specification point cannot be used, why (for the reader).

    A beam dose specification point is used only when every beam of those groups is
    specified there with a Beam Dose and every group gives its fractions: the dose at a
    point also holds the beams specified elsewhere, which no Beam Dose states. One
    fraction is defined for one group, or for groups of equal dose per fraction. Dose
    reference points with a Target Prescription Dose are used for a plan of one fraction
    group (with several, a point's prescription may be one phase's); in a brachytherapy
    plan whose application setup dose (per fraction) equals the points' prescription,
    that prescription is per fraction too.
    """
    points: list[ScalePoint] = []
    beams = [b for g in groups for b in g.beams]
    located = {b.point for b in beams}
    why = ""
    if not groups:
        why = " (the plan has no fraction group)"
    elif not beams:
        why = " (no treatment beam)"
    elif None in located:
        why = " (a beam gives no dose specification point)"
    elif len(located) > 1:
        why = " (the beams are specified at different points)"
    elif any(b.dose_gy is None for b in beams):
        why = " (a beam gives no Beam Dose)"
    elif not all(g.fractions for g in groups):
        why = " (a fraction group gives no number of fractions)"
    else:
        position = next(iter(located))
        assert position is not None
        course = sum((g.beam_dose_gy or 0.0) * (g.fractions or 0) for g in groups)
        per_fraction = {round(g.beam_dose_gy or 0.0, 6) for g in groups}
        one = groups[0].beam_dose_gy if len(per_fraction) == 1 else None
        what = "application setups" if plan.is_brachy else "beams"
        numbers = ", ".join(str(b.number) for b in beams)
        if course > 0:
            points.append(
                ScalePoint(f"dose specification point of {what} {numbers}", position, course, one)
            )
        else:
            why = " (the Beam Doses add up to 0 Gy)"
    if len(groups) != 1 or len(plan.fraction_groups) != 1 or not plan.fractions:
        return points, why
    n = plan.fractions
    per_fraction_rx = False
    if plan.is_brachy and len(groups) == 1 and groups[0].beam_dose_gy:
        stated = [r.prescription_gy for r in plan.dose_references if r.prescription_gy]
        setup = groups[0].beam_dose_gy
        per_fraction_rx = bool(stated) and all(
            abs(d - setup) <= 0.1 * setup for d in stated if d is not None
        )
    for i, ref in enumerate(plan.dose_references):
        if ref.position is None or not ref.prescription_gy or ref.prescription_gy <= 0:
            continue
        name = f"dose reference {i + 1}" + (f" '{ref.description}'" if ref.description else "")
        if per_fraction_rx:
            points.append(
                ScalePoint(
                    f"{name} (prescription per fraction, as the application setup dose)",
                    ref.position,
                    ref.prescription_gy * n,
                    ref.prescription_gy,
                )
            )
        else:
            points.append(
                ScalePoint(name, ref.position, ref.prescription_gy, ref.prescription_gy / n)
            )
    return points, "" if points else why


def _select_beam_doses(
    files: list[_DoseFile],
    plan: PlanInfo | None,
    warnings_out: list[str],
    notes: list[str],
) -> list[_DoseFile]:
    """The beam doses to sum: every treatment beam of the plan must have one."""
    if plan is None:
        warnings_out.append(
            f"no plan given: the {len(files)} BEAM dose(s) are summed as given; whether "
            "every treatment beam has a dose cannot be checked"
        )
        return files
    covered = {n for f in files for n in f.info.beam_numbers}
    missing = [n for n in plan.treatment_beams if n not in covered]
    if missing:
        names = ", ".join(f"{n} ({plan.beam_names.get(n, '')})".replace(" ()", "") for n in missing)
        raise InputError(
            f"treatment beam(s) {names} of plan {plan.label} have no BEAM dose: the plan "
            "dose would be incomplete; export the PLAN dose or every beam dose",
            plan.file,
        )
    known = set(plan.beam_names) | set(plan.treatment_beams)
    kept = []
    for f in files:
        unknown = [n for n in f.info.beam_numbers if known and n not in known]
        if unknown:
            raise InputError(
                f"BEAM dose for beam {unknown[0]}, which plan {plan.label} does not have",
                f.info.path,
            )
        if any(n in plan.treatment_beams for n in f.info.beam_numbers):
            kept.append(f)
        else:
            notes.append(f"BEAM dose {f.info.path} is for a setup or 0 MU beam: not summed")
    if not kept:
        raise InputError(
            f"none of the BEAM doses is for a treatment beam of plan {plan.label} "
            f"(treatment beams: {plan.treatment_beams or 'none'}): there is no dose to sum; "
            "export the PLAN dose",
            files[0].info.path if files else plan.file,
        )
    return kept


def _sum_grids(files: Sequence[_DoseFile]) -> DoseGrid:
    first = files[0].grid
    total = np.array(first.dose, dtype=np.float64)
    for other in files[1:]:
        if not _same_geometry(first, other.grid):
            raise InputError(
                f"BEAM doses {files[0].info.path} and {other.info.path} are on different "
                "grids: they cannot be summed voxel by voxel; export the PLAN dose",
                other.info.path,
            )
        total += other.grid.dose
    return DoseGrid(first.x, first.y, first.z, total)


def _compare_with_beams(
    grid: DoseGrid,
    plan_dose: Path,
    comparison: Sequence[_DoseInfo],
    plan: PlanInfo | None,
    notes: list[str],
) -> float | None:
    """Note how the summed BEAM doses compare with the PLAN dose; the max difference.

    Raises
    ------
    InputError
        When they differ by more than :data:`BEAM_SUM_TOLERANCE_PERCENT` of the PLAN
        dose's maximum anywhere: two doses of one plan that disagree are not both right.
    """
    files = [_read_dose_file(info.path) for info in comparison]
    beams = sorted(n for f in files for n in f.info.beam_numbers)
    if plan is not None:
        missing = [n for n in plan.treatment_beams if n not in beams]
        if missing:
            notes.append(
                f"PLAN dose used; BEAM doses present for beams {beams} only "
                f"(missing {missing}): not compared"
            )
            return None
        files = [f for f in files if any(n in plan.treatment_beams for n in f.info.beam_numbers)]
    try:
        summed = _sum_grids(files)
    except InputError as exc:
        notes.append(f"PLAN dose used; BEAM doses not compared ({exc.reason})")
        return None
    if not _same_geometry(grid, summed):
        notes.append("PLAN dose used; BEAM doses are on another grid: not compared")
        return None
    difference = float(np.max(np.abs(summed.dose - grid.dose)))
    peak = float(np.max(grid.dose))
    percent = 100.0 * difference / peak if peak > 0 else 0.0
    if percent > BEAM_SUM_TOLERANCE_PERCENT:
        raise InputError(
            f"the sum of the {len(files)} BEAM dose(s) of the plan differs from this PLAN "
            f"dose by up to {difference:.4g} Gy ({percent:.2f} % of its maximum "
            f"{peak:.4g} Gy): the export is inconsistent (doses of different plan "
            "versions?); export the plan's doses again",
            plan_dose,
        )
    notes.append(
        f"PLAN dose used; the sum of the {len(files)} BEAM dose(s) differs from it by at "
        f"most {difference:.4g} Gy ({percent:.2f} % of its maximum {peak:.4g} Gy)"
    )
    return difference


# --------------------------------------------------------------------------------------
# Structure sets
# --------------------------------------------------------------------------------------


def read_structure_set(
    path: str | Path,
    ct_files: Iterable[str | Path] = (),
    *,
    ct_geometry: Sequence[CtGeometry] = (),
) -> StructureSet:
    """Read an RT Structure Set.

    Parameters
    ----------
    path
        The RTSTRUCT file.
    ct_files
        The CT slices the structure set was drawn on, if present; their positions
        become ``slice_positions`` when every slice the structure set references is
        among them (else None, with a note).
    ct_geometry
        What a folder scan already read of some of ``ct_files``
        (:attr:`ExportSet.ct_geometry`); those slices are not read again.

    Returns
    -------
    StructureSet
        ROIs in file order. Closed planar contours are grouped by plane (z within
        0.01 mm), the repeated closing point dropped. Degenerate closed contours (1 or
        2 points, or no area: points on one line or a path retracing itself, see
        :data:`DEGENERATE_AREA_FRACTION`) have no volume under any model between planes
        and are skipped, with one note per ROI giving their number and planes; an ROI
        left with none is a CLOSED_PLANAR ROI without planes (empty). POINT and OPEN
        ROIs and empty ROIs are kept without planes and with a note.

    Raises
    ------
    InputError, InputErrors
        For contours with a number of values that is not a non-empty multiple of 3,
        non-finite or non-numeric coordinates, coordinates beyond
        :data:`MAX_COORDINATE_MM`, or contours of 3 or more points that are not axial
        (one error per bad contour, all at once); for a file without its Structure Set
        ROI Sequence or ROI Contour Sequence, or with an element that cannot be decoded.
    """
    file = Path(path)
    with _lenient_pydicom(), _decoding(file):
        ds = _read(file)
        _require_kind(ds, "RTSTRUCT", file)
        # Both are required (type 1, PS3.3 C.8.8.5/6): a file cut between two elements
        # reads as complete, and without them every ROI would look empty or absent.
        absent = [k for k in ("StructureSetROISequence", "ROIContourSequence") if k not in ds]
        if absent:
            raise InputError(
                f"the structure set has no {' and no '.join(absent)} (required): the file "
                "is incomplete (cut short?) or not a valid RT Structure Set; export it again",
                file,
            )
        refs = _seq(ds, "ReferencedFrameOfReferenceSequence")
        frame = (_text(refs[0], "FrameOfReferenceUID") if refs else "") or _text(
            ds, "FrameOfReferenceUID"
        )
        notes: list[str] = []
        rois, errors = _rois(ds, file, frame, notes)
        if errors:
            raise errors[0] if len(errors) == 1 else InputErrors(errors)
        positions = _slice_positions(ds, [Path(p) for p in ct_files], notes, ct_geometry)
    return StructureSet(
        file=file,
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        label=_text(ds, "StructureSetLabel"),
        frame_of_reference_uid=frame,
        rois=rois,
        slice_positions=positions,
        notes=notes,
    )


def _rois(
    ds: Dataset, file: Path, frame: str, notes: list[str]
) -> tuple[list[Roi], list[InputError]]:
    types = {
        _int(obs, "ReferencedROINumber"): _text(obs, "RTROIInterpretedType")
        for obs in _seq(ds, "RTROIObservationsSequence")
    }
    # Contours by the ROI they reference; two items for one ROI are both its contours.
    contours: dict[int | None, list[Dataset]] = {}
    for item in _seq(ds, "ROIContourSequence"):
        contours.setdefault(_int(item, "ReferencedROINumber"), []).extend(
            _seq(item, "ContourSequence")
        )
    defined = {_int(item, "ROINumber") for item in _seq(ds, "StructureSetROISequence")}
    orphans = sorted(
        "without a number" if n is None else str(n)
        for n in contours
        if n not in defined and contours[n]
    )
    if orphans:
        notes.append(
            f"contours of ROI number(s) {', '.join(orphans)}, which the structure set "
            "does not define (no name), were ignored: check the export"
        )
    rois: list[Roi] = []
    errors: list[InputError] = []
    for item in _seq(ds, "StructureSetROISequence"):
        number = _int(item, "ROINumber")
        if number is None:
            continue
        name = _text(item, "ROIName")
        roi_frame = _text(item, "ReferencedFrameOfReferenceUID") or frame
        sequence = contours.get(number, [])
        roi, roi_errors = _roi(number, name, types.get(number, ""), sequence, file)
        errors.extend(roi_errors)
        rois.append(
            Roi(
                roi.number,
                roi.name,
                roi.interpreted_type,
                roi.geometric_type,
                roi.planes,
                roi.notes,
                roi_frame,
            )
        )
    return rois, errors


def _roi(
    number: int, name: str, interpreted: str, sequence: list[Dataset], file: Path
) -> tuple[Roi, list[InputError]]:
    if not sequence:
        return Roi(number, name, interpreted, "", (), ("empty ROI: no contours",)), []
    errors: list[InputError] = []
    closed: list[tuple[float, FloatArray]] = []
    degenerate: list[float] = []  # z (mm) of closed contours that enclose no area
    other: Counter[str] = Counter()
    for index, contour in enumerate(sequence):
        gtype = _text(contour, "ContourGeometricType").upper()
        label = f"contour {_int(contour, 'ContourNumber') or index + 1} of ROI '{name}'"
        try:
            data = _floats(contour, "ContourData")
        except ValueError:
            errors.append(
                InputError(
                    f"{label}: ContourData holds a value that is not a "
                    "number; fix or re-export the structure set",
                    file,
                )
            )
            continue
        if data is None or data.size == 0 or data.size % 3:
            size = 0 if data is None else data.size
            errors.append(
                InputError(
                    f"{label}: ContourData has {size} values, not a "
                    "non-empty multiple of 3 (x, y, z)",
                    file,
                )
            )
            continue
        if not np.all(np.isfinite(data)):
            errors.append(
                InputError(
                    f"{label}: ContourData holds NaN or infinite "
                    "coordinates; fix or re-export the structure set",
                    file,
                )
            )
            continue
        largest = float(np.max(np.abs(data)))
        if largest > MAX_COORDINATE_MM:
            errors.append(
                InputError(
                    f"{label}: ContourData holds a coordinate of {largest:.6g} mm, beyond "
                    f"{MAX_COORDINATE_MM:g} mm from the origin, outside any patient (a "
                    "damaged value?); fix or re-export the structure set",
                    file,
                )
            )
            continue
        if gtype != "CLOSED_PLANAR":
            other[gtype or "(missing)"] += 1
            continue
        points = data.reshape(-1, 3)
        if points.shape[0] > 1 and float(np.max(np.abs(points[0] - points[-1]))) <= 1e-6:
            points = points[:-1]
        z = points[:, 2]
        if points.shape[0] < 3:  # a point or a segment: no area under any model
            degenerate.append(float(np.mean(z)))
            continue
        if float(np.ptp(z)) > PLANE_TOLERANCE_MM:
            errors.append(
                InputError(
                    f"{label} is not axial (z from {z.min():g} to {z.max():g} mm): only "
                    "contours on axial planes are supported",
                    file,
                )
            )
            continue
        if _encloses_no_area(points[:, :2]):
            degenerate.append(float(np.mean(z)))
            continue
        closed.append((float(np.mean(z)), np.ascontiguousarray(points[:, :2])))
    notes: list[str] = []
    if degenerate:
        notes.append(_degenerate_note(degenerate))
    # The same contour twice on a plane would cancel itself by the even-odd rule: keep
    # one (a second ROI Contour item repeating the first, or a double export).
    # A set of (plane, exact coordinates) keeps this linear in the number of contours
    # (comparing each with the others on its plane was quadratic: 10^4 small contours
    # on 10 planes took 17 s). Adding 0.0 turns -0.0 into 0.0, so equal values give
    # equal bytes, as np.array_equal compares them.
    unique: list[tuple[float, FloatArray]] = []
    seen: set[tuple[int, bytes]] = set()  # (z in 0.01 mm, coordinates)
    for plane_z, polygon in closed:
        key = (round(plane_z / PLANE_TOLERANCE_MM), (polygon + 0.0).tobytes())
        if key in seen:
            continue
        seen.add(key)
        unique.append((plane_z, polygon))
    if len(unique) < len(closed):
        notes.append(
            f"{len(closed) - len(unique)} contour(s) repeated exactly on the same plane "
            "counted once"
        )
        closed = unique
    if closed or degenerate:  # only degenerate ones: a closed planar ROI without planes
        gtype = "CLOSED_PLANAR"
        if other:
            kinds = ", ".join(f"{n} {k}" for k, n in sorted(other.items()))
            notes.append(f"ignored {kinds} contour(s): only closed planar contours have a volume")
    else:
        gtype = other.most_common(1)[0][0] if other else ""
        if other:
            notes.append(f"{gtype} ROI: no volume (only closed planar contours have one)")
    return Roi(number, name, interpreted, gtype, _group_planes(closed), tuple(notes)), errors


def _encloses_no_area(polygon: FloatArray) -> bool:
    """True when a closed contour of at least 3 points encloses no area.

    Its shoelace area is at most :data:`DEGENERATE_AREA_FRACTION` of its extent squared
    (points on one line, or a path that goes out and back along itself) and no probe
    point just beside its edges lies inside it by the even-odd rule: a bow-tie's lobes
    cancel in the shoelace sum too, yet they enclose an area (that contour is ambiguous
    and reported as such downstream, never skipped).
    """
    extent = max(float(np.ptp(polygon[:, 0])), float(np.ptp(polygon[:, 1])))
    if polygon_area(polygon) > DEGENERATE_AREA_FRACTION * extent**2:
        return False
    if extent <= 0.0:
        return True
    start = polygon
    step = np.roll(polygon, -1, axis=0) - start
    length = np.hypot(step[:, 0], step[:, 1])
    keep = length > 0.0
    start, step, length = start[keep], step[keep], length[keep]
    normal = np.column_stack([-step[:, 1], step[:, 0]]) / length[:, None]
    offset = 1e-3 * extent * normal
    probes = np.concatenate(
        [start + t * step + side * offset for t in (0.3, 0.5, 0.7) for side in (1.0, -1.0)]
    )
    return not bool(np.any(points_in_polygon(probes[:, 0], probes[:, 1], polygon)))


def _degenerate_note(zs: Sequence[float]) -> str:
    """The note on an ROI some of whose closed contours (at planes ``zs``, mm) were skipped."""
    planes: list[float] = []
    for z in sorted(zs):
        if not planes or z - planes[-1] > PLANE_TOLERANCE_MM:
            planes.append(z)
    shown = ", ".join(f"{z:g}" for z in planes[:8]) + (", ..." if len(planes) > 8 else "")
    return (
        f"skipped {len(zs)} degenerate contour(s) (1 or 2 points, or no area) on "
        f"{len(planes)} plane(s), z = {shown} mm"
    )


def _group_planes(contours: list[tuple[float, FloatArray]]) -> tuple[ContourPlane, ...]:
    """Contours grouped into planes whose z agree within the plane tolerance."""
    planes: list[ContourPlane] = []
    group: list[tuple[float, FloatArray]] = []

    def flush() -> None:
        if group:
            z = float(np.mean([g[0] for g in group]))
            planes.append(ContourPlane(z, tuple(g[1] for g in group)))

    for z, polygon in sorted(contours, key=lambda c: c[0]):
        if group and z - group[0][0] > PLANE_TOLERANCE_MM:
            flush()
            group = []
        group.append((z, polygon))
    flush()
    return tuple(planes)


def _referenced_images(ds: Dataset) -> tuple[set[str], set[str]]:
    """Series UIDs and image SOP instance UIDs the structure set references."""
    series: set[str] = set()
    images: set[str] = set()
    for frame in _seq(ds, "ReferencedFrameOfReferenceSequence"):
        for study in _seq(frame, "RTReferencedStudySequence"):
            for item in _seq(study, "RTReferencedSeriesSequence"):
                uid = _text(item, "SeriesInstanceUID")
                if uid:
                    series.add(uid)
                for image in _seq(item, "ContourImageSequence"):
                    ref = _text(image, "ReferencedSOPInstanceUID")
                    if ref:
                        images.add(ref)
    return series, images


def _slice_positions(
    ds: Dataset, ct_files: list[Path], notes: list[str], known: Sequence[CtGeometry] = ()
) -> FloatArray | None:
    if not ct_files:
        return None
    _, images = _referenced_images(ds)
    zs: dict[str, float] = {}
    scanned = {g[0]: g for g in known}
    for path in ct_files:
        geometry = scanned.get(path)
        if geometry is None:
            with _decoding(path):
                ct = _read(
                    path,
                    specific_tags=[
                        "SOPInstanceUID",
                        "ImagePositionPatient",
                        "ImageOrientationPatient",
                    ],
                )
                geometry = _ct_geometry(ct, path)
        _, uid, position, orientation = geometry
        ipp = None if position is None else np.asarray(position, dtype=np.float64)
        iop = None if orientation is None else np.asarray(orientation, dtype=np.float64)
        if (
            ipp is None
            or iop is None
            or ipp.size != 3
            or iop.size != 6
            or abs(float(np.cross(iop[:3], iop[3:])[2])) < 1 - DIRECTION_TOLERANCE
        ):
            notes.append(
                f"CT slice {path} is not axial or has no position: slice positions not used"
            )
            return None
        zs[uid] = float(ipp[2])
    if images:
        present = images & set(zs)
        if len(present) < len(images):
            notes.append(
                f"only {len(present)} of the {len(images)} CT slices the structure set "
                "references are present: slice positions not used (slabs follow the "
                "contour planes)"
            )
            return None
    return np.unique(np.round(np.array(sorted(zs.values()), dtype=np.float64), 6))


# --------------------------------------------------------------------------------------
# Folder scan
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Header:
    path: Path
    kind: str
    sop_instance_uid: str
    patient_id: str
    series_uid: str
    frame_of_reference_uid: str
    label: str = ""
    referenced_structure_set_uid: str = ""
    referenced_series: frozenset[str] = frozenset()
    dose: _DoseInfo | None = None
    geometry: CtGeometry | None = None  # CT only


def _looks_like_raw_dicom(path: Path) -> bool:
    """A file without the DICM preamble that starts like a DICOM dataset (group 0008)."""
    try:
        with path.open("rb") as fh:
            start = fh.read(132)
    except OSError:
        return False
    return len(start) >= 8 and start[128:132] != b"DICM" and start[:2] in (b"\x08\x00", b"\x02\x00")


def _dcmread_any(
    path: Path, *, stop_before_pixels: bool = False, specific_tags: list[str] | None = None
) -> Dataset:
    """dcmread of a Part 10 file, or of a raw dataset without the preamble."""
    try:
        return dcmread(path, stop_before_pixels=stop_before_pixels, specific_tags=specific_tags)
    except InvalidDicomError:
        if not _looks_like_raw_dicom(path):
            raise
    try:
        ds = dcmread(
            path,
            force=True,
            stop_before_pixels=stop_before_pixels,
            specific_tags=None if specific_tags is None else [*specific_tags, "SOPClassUID"],
        )
    except Exception as exc:
        raise InvalidDicomError(f"no DICOM preamble and not a readable dataset ({exc})") from exc
    if "SOPClassUID" not in ds:
        raise InvalidDicomError("no DICOM preamble and no SOP Class UID")
    return ds


def _scan_file(path: Path) -> _Header | str:
    """Header of one file, or the reason it is skipped."""
    try:
        ds = _dcmread_any(path, specific_tags=list(_HEADER_TAGS))
    except InvalidDicomError:
        return "not a DICOM file"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    except Exception as exc:
        _refuse_truncated(path)  # a truncated file is an error to report, not junk to skip
        return f"unreadable DICOM ({type(exc).__name__}: {exc})"
    try:
        with _decoding(path):
            _decode_elements(ds, path)
            kind = _kind(ds)
    except InputError:
        _refuse_truncated(path)  # a file cut short is reported as such, not as damaged
        raise
    if kind in ("RTDOSE", "RTPLAN", "RTSTRUCT", "unknown"):
        # A file cut short is reported as what it is, before its header is used: a plan
        # cut before its SOP Instance UID would otherwise be reported as the dose's
        # missing plan, and a file losing its SOP class would be skipped as junk.
        _refuse_truncated(path)
    with _decoding(path):
        frame = _text(ds, "FrameOfReferenceUID")
        label = ""
        rs_uid = ""
        series: frozenset[str] = frozenset()
        dose = None
        if kind == "RTDOSE":
            dose = _dose_info(ds, path)
        elif kind == "RTPLAN":
            label = _text(ds, "RTPlanLabel")
            refs = _seq(ds, "ReferencedStructureSetSequence")
            rs_uid = _text(refs[0], "ReferencedSOPInstanceUID") if refs else ""
        elif kind == "RTSTRUCT":
            refs = _seq(ds, "ReferencedFrameOfReferenceSequence")
            frame = (_text(refs[0], "FrameOfReferenceUID") if refs else "") or frame
            series = frozenset(_referenced_images(ds)[0])
        geometry = _ct_geometry(ds, path) if kind == "CT" else None
        return _Header(
            path,
            kind,
            _text(ds, "SOPInstanceUID"),
            _text(ds, "PatientID"),
            _text(ds, "SeriesInstanceUID"),
            frame,
            label,
            rs_uid,
            series,
            dose,
            geometry,
        )


def _ct_geometry(ct: Dataset, path: Path) -> CtGeometry:
    """A CT slice's UID, position and orientation, as :func:`_slice_positions` uses them."""
    position: tuple[float, ...] | None = None
    orientation: tuple[float, ...] | None = None
    try:
        ipp = _floats(ct, "ImagePositionPatient")
        iop = _floats(ct, "ImageOrientationPatient")
    except ValueError:
        ipp = iop = None
    if ipp is not None and iop is not None:
        position = tuple(float(v) for v in ipp)
        orientation = tuple(float(v) for v in iop)
    return (path, _text(ct, "SOPInstanceUID"), position, orientation)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def find_exports(path: str | Path) -> tuple[list[ExportSet], list[str]]:
    """Find the plans in a folder and link each with its dose, structures and CT.

    Parameters
    ----------
    path
        A folder, scanned recursively; only headers are read.

    Returns
    -------
    export_sets, warnings
        One :class:`ExportSet` per plan that has a dose (sorted by patient and plan
        label), and warnings for the user: skipped non-DICOM files, ignored files,
        plans without a dose.

    Raises
    ------
    InputError, InputErrors
        Folder missing, empty or without DICOM-RT files; a dose whose plan is absent; a
        plan whose structure set is absent; several doses of one summation type for one
        plan; duplicated files. All problems of the scan are reported together.
    """
    root = Path(path)
    if not root.exists():
        raise InputError("folder not found: check the path", root)
    if not root.is_dir():
        raise InputError(
            f"is a file, not a folder: give the export folder, or {EXPLICIT_HINT}", root
        )
    files = sorted(p for p in root.rglob("*") if p.is_file())
    if not files:
        raise InputError("the folder is empty: no DICOM files to check", root)

    warnings_out: list[str] = []
    headers: list[_Header] = []
    other_kinds: Counter[str] = Counter()
    scan_errors: list[InputError] = []
    with _lenient_pydicom():
        for file in files:
            try:
                result = _scan_file(file)
            except InputError as exc:  # truncated or damaged: every one is reported
                scan_errors.append(exc)
                continue
            if isinstance(result, str):
                warnings_out.append(f"skipped {_relative(file, root)}: {result}")
            elif result.kind in ("RTDOSE", "RTPLAN", "RTSTRUCT", "CT"):
                headers.append(result)
            elif result.kind != "DICOMDIR":
                other_kinds[result.kind] += 1
    if scan_errors:
        # Before linking: a damaged plan would also make its dose's plan "missing".
        raise scan_errors[0] if len(scan_errors) == 1 else InputErrors(scan_errors)
    for kind, count in sorted(other_kinds.items()):
        warnings_out.append(f"ignored {count} DICOM file(s) of modality {kind}")
    if not any(h.kind != "CT" for h in headers):
        what = "no DICOM files" if not headers and not other_kinds else "no DICOM-RT files"
        skipped = [w.removeprefix("skipped ") for w in warnings_out if w.startswith("skipped ")]
        shown = "; ".join(skipped[:5]) + (
            f"; and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        )
        raise InputError(
            f"{what} (RTPLAN, RTDOSE, RTSTRUCT) found in the folder ({len(files)} file(s) "
            f"scanned" + (f"; skipped {shown}" if skipped else "") + ")",
            root,
        )
    sets, set_errors = _link(headers, root, warnings_out)
    if set_errors:
        raise set_errors[0] if len(set_errors) == 1 else InputErrors(set_errors)
    if not sets:
        raise InputError(
            "no RT plan with a dose found in the folder: an RTPLAN, the RTDOSE "
            f"referencing it and its RTSTRUCT are needed, or {EXPLICIT_HINT}",
            root,
        )
    return sets, warnings_out


def _unique(
    headers: list[_Header], errors: list[InputError], warnings_out: list[str], root: Path
) -> dict[str, _Header]:
    """Headers by SOP instance UID.

    Identical copies of a file are used once (with a warning); two different files
    sharing one SOP Instance UID are an error.
    """
    result: dict[str, _Header] = {}
    for h in headers:
        first = result.get(h.sop_instance_uid)
        if first is None:
            result[h.sop_instance_uid] = h
        elif filecmp.cmp(first.path, h.path, shallow=False):
            warnings_out.append(
                f"ignored {_relative(h.path, root)}: identical copy of "
                f"{_relative(first.path, root)}"
            )
        else:
            errors.append(
                AmbiguousExportError(
                    f"this {h.kind} and {first.path} are different files with the same SOP "
                    f"Instance UID {h.sop_instance_uid}: rtcheck cannot tell which one is "
                    f"meant; {EXPLICIT_HINT}",
                    h.path,
                )
            )
    return result


def _link(
    headers: list[_Header], root: Path, warnings_out: list[str]
) -> tuple[list[ExportSet], list[InputError]]:
    errors: list[InputError] = []
    plans = _unique([h for h in headers if h.kind == "RTPLAN"], errors, warnings_out, root)
    structures = _unique([h for h in headers if h.kind == "RTSTRUCT"], errors, warnings_out, root)
    doses = _unique([h for h in headers if h.kind == "RTDOSE"], errors, warnings_out, root)
    cts: dict[str, _Header] = {}
    for h in headers:
        if h.kind == "CT":
            cts.setdefault(h.sop_instance_uid, h)

    doses_by_plan: dict[str, list[_DoseInfo]] = defaultdict(list)
    for h in doses.values():
        info = h.dose
        if info is None:  # pragma: no cover - every RTDOSE header carries its dose info
            continue
        try:
            _check_units(info)
        except InputError as exc:
            errors.append(exc)
            continue
        if info.referenced_plan_uid is None:
            errors.append(
                InputError(
                    f"the dose references no RT plan (no Referenced RT Plan Sequence): "
                    f"{EXPLICIT_HINT}",
                    info.path,
                )
            )
        elif info.referenced_plan_uid not in plans:
            errors.append(
                InputError(
                    f"missing referenced RT plan {info.referenced_plan_uid}: it is not in "
                    f"{root}; add the RTPLAN to the folder, or {EXPLICIT_HINT}",
                    info.path,
                )
            )
        else:
            doses_by_plan[info.referenced_plan_uid].append(info)

    sets: list[ExportSet] = []
    for uid, plan in plans.items():
        name = f"plan {plan.label or uid}"
        infos = doses_by_plan.get(uid, [])
        if not infos:
            warnings_out.append(
                f"skipped {name} ({_relative(plan.path, root)}): no RTDOSE "
                "in the folder references it"
            )
            continue
        chosen, _, notes, dose_errors = _choose_doses(infos, name)
        errors.extend(dose_errors)
        if not plan.referenced_structure_set_uid:
            errors.append(
                InputError(
                    f"{name} references no structure set (no Referenced Structure Set "
                    f"Sequence): {EXPLICIT_HINT}",
                    plan.path,
                )
            )
            continue
        structure = structures.get(plan.referenced_structure_set_uid)
        if structure is None:
            errors.append(
                InputError(
                    f"missing referenced structure set {plan.referenced_structure_set_uid} of "
                    f"{name}: it is not in {root}; add the RTSTRUCT to the folder, or "
                    f"{EXPLICIT_HINT}",
                    plan.path,
                )
            )
            continue
        if dose_errors:
            continue
        set_warnings = list(notes)
        ct_files = _ct_for(structure, cts, set_warnings, root)
        ct_set = set(ct_files)
        ids = {
            i for i in (plan.patient_id, structure.patient_id, *(d.patient_id for d in infos)) if i
        }
        if len(ids) > 1:
            set_warnings.append(
                f"{name}: the linked files carry different patient IDs ({', '.join(sorted(ids))})"
            )
        sets.append(
            ExportSet(
                patient_id=plan.patient_id or next(iter(ids), ""),
                plan_uid=uid,
                plan_label=plan.label,
                plan=plan.path,
                structures=structure.path,
                doses=tuple(sorted(d.path for d in infos)),
                summation=chosen[0].summation,
                ct_files=ct_files,
                warnings=tuple(set_warnings),
                ct_geometry=tuple(
                    g for ct in cts.values() if ct.path in ct_set and (g := ct.geometry)
                ),
            )
        )
    sets.sort(key=lambda s: (s.patient_id, s.plan_label, str(s.plan)))
    return sets, errors


def _ct_for(
    structure: _Header, cts: dict[str, _Header], warnings_out: list[str], root: Path
) -> tuple[Path, ...]:
    """CT files of the structure set: its referenced series, else its frame's one series."""
    by_series: dict[str, list[Path]] = defaultdict(list)
    for ct in cts.values():
        by_series[ct.series_uid].append(ct.path)
    referenced = [s for s in sorted(structure.referenced_series) if s in by_series]
    if referenced:
        return tuple(sorted(p for s in referenced for p in by_series[s]))
    same_frame = sorted(
        {
            ct.series_uid
            for ct in cts.values()
            if ct.frame_of_reference_uid == structure.frame_of_reference_uid
        }
    )
    if len(same_frame) == 1:
        return tuple(sorted(by_series[same_frame[0]]))
    if len(same_frame) > 1:
        warnings_out.append(
            f"{len(same_frame)} CT series share the frame of reference of "
            f"{_relative(structure.path, root)} and it references none of them: CT slice "
            "positions not used"
        )
    return ()


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def load_export(export_set: ExportSet) -> PlanExport:
    """Read the files of one export set found by :func:`find_exports`.

    Parameters
    ----------
    export_set
        The linked files of one plan.

    Returns
    -------
    PlanExport
        Plan, the plan's total dose, structures (with CT slice positions when the CT
        is complete) and warnings.
    """
    warnings_out = list(export_set.warnings)
    plan = read_plan(export_set.plan)
    return _load(
        plan,
        export_set.structures,
        list(export_set.doses),
        list(export_set.ct_files),
        warnings_out,
        export_set.ct_geometry,
    )


def load_path(path: str | Path, plan: str | Path | None = None) -> PlanExport:
    """Scan a folder and load its one plan (or the plan given).

    Parameters
    ----------
    path
        The export folder, scanned with :func:`find_exports`.
    plan
        An RTPLAN file choosing among several plans of the folder (matched by SOP
        Instance UID, so a copy elsewhere works too).

    Returns
    -------
    PlanExport
        With the scan's warnings first.

    Raises
    ------
    AmbiguousExportError
        Several plans in the folder and none chosen.
    InputError, InputErrors
        As :func:`find_exports` and :func:`load_export`.
    """
    sets, scan_warnings = find_exports(path)
    if plan is not None:
        wanted = read_plan(plan).sop_instance_uid
        chosen = [s for s in sets if s.plan_uid == wanted]
        if not chosen:
            labels = ", ".join(f"{s.plan_label or s.plan_uid} ({s.plan.name})" for s in sets)
            raise InputError(
                f"the plan given ({wanted}) has no export set in {path}; the "
                f"folder holds: {labels}",
                Path(plan),
            )
        sets = chosen
    if len(sets) > 1:
        labels = "; ".join(
            f"{s.plan_label or s.plan_uid} (patient {s.patient_id}, {s.plan})" for s in sets
        )
        raise AmbiguousExportError(
            f"the folder holds {len(sets)} plans: {labels}. Choose one with --plan RP.dcm, "
            f"or {EXPLICIT_HINT}",
            Path(path),
        )
    export = load_export(sets[0])
    export.warnings[:0] = scan_warnings
    return export


def load_files(
    structures: str | Path,
    dose: str | Path | Sequence[str | Path],
    plan: str | Path | None = None,
    ct: Sequence[str | Path] = (),
) -> PlanExport:
    """Read explicitly named files (no folder scan, no linking by UID).

    Parameters
    ----------
    structures
        The RTSTRUCT file.
    dose
        One RTDOSE file, or several (BEAM doses to sum; a PLAN dose with BEAM doses to
        compare it with).
    plan
        The RTPLAN, when available. Without it a FRACTION dose is used as stored (with
        a warning saying so) and BEAM doses are summed without checking that every
        treatment beam has one.
    ct
        CT slice files of the structure set, to give its slice positions.

    Returns
    -------
    PlanExport
    """
    dose_paths = [Path(dose)] if isinstance(dose, str | os.PathLike) else [Path(d) for d in dose]
    if not dose_paths:
        raise InputError("no dose file given: an RTDOSE is needed")
    warnings_out: list[str] = []
    plan_info = read_plan(plan) if plan is not None else None
    return _load(plan_info, Path(structures), dose_paths, [Path(c) for c in ct], warnings_out)


def _load(
    plan: PlanInfo | None,
    structures_path: Path,
    dose_paths: list[Path],
    ct_files: list[Path],
    warnings_out: list[str],
    ct_geometry: Sequence[CtGeometry] = (),
) -> PlanExport:
    structures = read_structure_set(structures_path, ct_files, ct_geometry=ct_geometry)
    infos = []
    with _lenient_pydicom():
        for path in dose_paths:
            with _decoding(path):
                ds = _read(path, stop_before_pixels=True)
                _require_kind(ds, "RTDOSE", path)
                info = _dose_info(ds, path)
            _check_units(info)
            infos.append(info)
    dose = _assemble_dose(infos, plan, warnings_out)
    if dose.frame_of_reference_uid != structures.frame_of_reference_uid:
        raise InputError(
            f"frame of reference {structures.frame_of_reference_uid or '(none)'} of the "
            f"structure set differs from {dose.frame_of_reference_uid or '(none)'} of the "
            f"dose {dose.files[0]}: they are not in the same coordinate system; export "
            "structures and dose of the same plan",
            structures.file,
        )
    for roi in structures.rois:
        if roi.planes and roi.frame_of_reference_uid not in ("", dose.frame_of_reference_uid):
            raise InputError(
                f"ROI '{roi.name}' is defined in frame of reference "
                f"{roi.frame_of_reference_uid}, the dose {dose.files[0]} in "
                f"{dose.frame_of_reference_uid}",
                structures.file,
            )
    if (
        plan is not None
        and plan.frame_of_reference_uid
        and (plan.frame_of_reference_uid != dose.frame_of_reference_uid)
    ):
        raise InputError(
            f"frame of reference {plan.frame_of_reference_uid} of the plan differs from "
            f"{dose.frame_of_reference_uid} of the dose {dose.files[0]}",
            plan.file,
        )
    if plan is not None:
        warnings_out.extend(plan.notes)
    warnings_out.extend(structures.notes)
    patient_id = plan.patient_id if plan is not None and plan.patient_id else ""
    if not patient_id:
        with _lenient_pydicom(), _decoding(dose.files[0]):
            patient_id = _text(_read(dose.files[0], specific_tags=["PatientID"]), "PatientID")
    return PlanExport(
        patient_id=patient_id,
        plan=plan,
        dose=dose,
        structures=structures,
        ct_files=ct_files,
        warnings=warnings_out,
    )
