"""What a QA record shows of an RTPLAN: who, which plan, approved by whom, on which
machine, and each beam (technique, energy, monitor units, angles, isocentre).

Read from the plan's data set when the export is loaded (:mod:`rtcheck.dicom_io`), for the
reports only: no rule uses these values. Reading is tolerant: a value that is absent or
cannot be decoded is None, and said so in :attr:`PlanRecord.notes`, because a plan that is
otherwise readable must not be refused for a field only the report shows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["BeamRecord", "PlanRecord", "read_plan_record"]

T = TypeVar("T")


@dataclass(frozen=True)
class BeamRecord:
    """One beam of the plan as a record shows it.

    Attributes
    ----------
    technique
        ``arc`` when the gantry rotates during the beam (GantryRotationDirection CW/CC in
        its first control point), ``static`` otherwise; for ion beams ``scanned`` or
        ``scattered`` (ScanMode), as stated.
    energy
        Nominal energy with its unit (``6 MV``, ``6 MV FFF``, ``150 MeV``), or None.
    meterset, meterset_unit
        Beam Meterset of its fraction group (per fraction) and its unit (MU, or NP for
        protons stated in particles).
    gantry
        Gantry angle at the first control point, and at the last for an arc (degrees).
    """

    number: int
    name: str
    delivery: str
    technique: str
    radiation_type: str
    energy: str | None
    meterset: float | None
    meterset_unit: str
    gantry: tuple[float, ...]
    rotation: str
    couch: float | None
    collimator: float | None
    isocentre: tuple[float, float, float] | None
    machine: str
    control_points: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "number": self.number,
            "name": self.name,
            "delivery": self.delivery or None,
            "technique": self.technique,
            "radiation_type": self.radiation_type or None,
            "energy": self.energy,
            "meterset": None if self.meterset is None else round(self.meterset, 2),
            "meterset_unit": self.meterset_unit,
            "gantry_deg": list(self.gantry),
            "rotation": self.rotation or None,
            "couch_deg": self.couch,
            "collimator_deg": self.collimator,
            "isocentre_mm": None if self.isocentre is None else list(self.isocentre),
            "machine": self.machine or None,
            "control_points": self.control_points,
        }


@dataclass(frozen=True)
class PlanRecord:
    """Patient, plan identity, approval and beams of an RTPLAN."""

    patient_name: str
    patient_id: str
    label: str
    name: str
    plan_date: str
    approval: str
    review_date: str
    review_time: str
    reviewer: str
    manufacturer: str
    model: str
    software: str
    beams: tuple[BeamRecord, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def machines(self) -> tuple[str, ...]:
        """The treatment machines the beams name, in order, once each."""
        return tuple(dict.fromkeys(b.machine for b in self.beams if b.machine))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "patient_name": self.patient_name or None,
            "patient_id": self.patient_id or None,
            "label": self.label or None,
            "name": self.name or None,
            "plan_date": self.plan_date or None,
            "approval": self.approval or None,
            "review_date": self.review_date or None,
            "review_time": self.review_time or None,
            "reviewer": self.reviewer or None,
            "machines": list(self.machines),
            "planning_system": " ".join(
                p for p in (self.manufacturer, self.model, self.software) if p
            )
            or None,
            "beams": [b.as_dict() for b in self.beams],
            "notes": list(self.notes),
        }


class _Reader:
    """Tolerant access: every failure becomes None and a note."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def get(self, ds: Any, keyword: str, convert: Callable[[Any], T], where: str) -> T | None:
        try:
            value = getattr(ds, keyword, None)
            if value is None or value == "":
                return None
            return convert(value)
        except Exception as exc:  # a report field must never refuse the plan
            self.notes.append(f"{where}{keyword} could not be read ({type(exc).__name__})")
            return None

    def text(self, ds: Any, keyword: str, where: str = "") -> str:
        value = self.get(ds, keyword, _text, where)
        return value or ""

    def number(self, ds: Any, keyword: str, where: str = "") -> float | None:
        value = self.get(ds, keyword, float, where)
        return None if value is None else round(value, 6)

    def angle(self, ds: Any, keyword: str, where: str = "") -> float | None:
        value = self.get(ds, keyword, float, where)
        return None if value is None else round(value, 1) + 0.0  # no "-0.0"

    def date(self, ds: Any, keyword: str) -> str:
        """A DICOM date (YYYYMMDD) as YYYY-MM-DD; anything else as written."""
        text = self.text(ds, keyword)
        if len(text) == 8 and text.isdigit():
            return f"{text[:4]}-{text[4:6]}-{text[6:]}"
        return text

    def items(self, ds: Any, keyword: str, where: str = "") -> list[Any]:
        value = self.get(ds, keyword, list, where)
        return value or []


def _text(value: Any) -> str:
    """A DICOM value as text: a person's name as 'Family, Given', several values joined."""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return " / ".join(dict.fromkeys(_text(v) for v in value if str(v).strip()))
    if type(value).__name__ == "PersonName":
        parts = [p.strip() for p in str(value).split("^")]
        family, given = [*parts, "", ""][:2]
        rest = " ".join(p for p in parts[2:] if p)
        return ", ".join(p for p in (family, " ".join(x for x in (given, rest) if x)) if p)
    return str(value).strip()


def _energy(r: _Reader, cp: Any, radiation: str, fluence: str, where: str) -> str | None:
    value = r.number(cp, "NominalBeamEnergy", where)
    if value is None:
        return None
    unit = "MV" if radiation in ("PHOTON", "") else "MeV"
    text = f"{value:g} {unit}"
    if fluence.upper() == "NON_STANDARD":
        text += " FFF"
    return text


def _beam(r: _Reader, beam: Any, ion: bool, metersets: dict[int, float], index: int) -> BeamRecord:
    number = r.get(beam, "BeamNumber", int, f"beam {index + 1}: ") or index + 1
    where = f"beam {number}: "
    points = r.items(beam, "IonControlPointSequence" if ion else "ControlPointSequence", where)
    first = points[0] if points else None
    last = points[-1] if points else None
    radiation = r.text(beam, "RadiationType", where).upper()
    fluence = ""
    for mode in r.items(beam, "PrimaryFluenceModeSequence", where)[:1]:
        fluence = r.text(mode, "FluenceMode", where)
    rotation = r.text(first, "GantryRotationDirection", where).upper() if first else ""
    start = r.angle(first, "GantryAngle", where) if first else None
    stop = None
    if last is not None and last is not first:
        stop = r.angle(last, "GantryAngle", where)
    gantry = tuple(a for a in (start, stop if rotation in ("CW", "CC") else None) if a is not None)
    if ion:
        technique = r.text(beam, "ScanMode", where).lower() or "ion"
        technique = {"modulated": "scanned", "uniform": "scanned", "none": "scattered"}.get(
            technique, technique
        )
    else:
        technique = "arc" if rotation in ("CW", "CC") else "static"
    isocentre = None
    if first is not None:
        iso = r.get(
            first, "IsocenterPosition", lambda v: tuple(round(float(x), 2) for x in v), where
        )
        if iso is not None and len(iso) == 3:
            isocentre = (iso[0], iso[1], iso[2])
    unit = r.text(beam, "PrimaryDosimeterUnit", where).upper() or "MU"
    return BeamRecord(
        number=number,
        name=r.text(beam, "BeamName", where) or r.text(beam, "BeamDescription", where),
        delivery=r.text(beam, "TreatmentDeliveryType", where).upper(),
        technique=technique,
        radiation_type=radiation,
        energy=_energy(r, first, radiation, fluence, where) if first is not None else None,
        meterset=metersets.get(number),
        meterset_unit=unit,
        gantry=gantry,
        rotation=rotation if rotation in ("CW", "CC") else "",
        couch=r.angle(first, "PatientSupportAngle", where) if first is not None else None,
        collimator=r.angle(first, "BeamLimitingDeviceAngle", where) if first is not None else None,
        isocentre=isocentre,
        machine=r.text(beam, "TreatmentMachineName", where),
        control_points=len(points),
    )


def read_plan_record(ds: Any) -> PlanRecord:
    """The record of an RTPLAN or RT Ion Plan data set.

    Parameters
    ----------
    ds
        The plan's pydicom data set.

    Returns
    -------
    PlanRecord
        With None/empty for what the plan does not state or that could not be decoded
        (listed in ``notes``).
    """
    r = _Reader()
    metersets: dict[int, float] = {}
    for group in r.items(ds, "FractionGroupSequence"):
        for ref in r.items(group, "ReferencedBeamSequence", "fraction group: "):
            number = r.get(ref, "ReferencedBeamNumber", int, "fraction group: ")
            meterset = r.number(ref, "BeamMeterset", "fraction group: ")
            if number is not None and meterset is not None:
                metersets[number] = meterset
    ion = bool(getattr(ds, "IonBeamSequence", None))
    beam_items = r.items(ds, "IonBeamSequence" if ion else "BeamSequence")
    beams = tuple(_beam(r, b, ion, metersets, i) for i, b in enumerate(beam_items))
    return PlanRecord(
        patient_name=r.text(ds, "PatientName"),
        patient_id=r.text(ds, "PatientID"),
        label=r.text(ds, "RTPlanLabel"),
        name=r.text(ds, "RTPlanName"),
        plan_date=r.date(ds, "RTPlanDate"),
        approval=r.text(ds, "ApprovalStatus").upper(),
        review_date=r.date(ds, "ReviewDate"),
        review_time=r.text(ds, "ReviewTime"),
        reviewer=r.text(ds, "ReviewerName"),
        manufacturer=r.text(ds, "Manufacturer"),
        model=r.text(ds, "ManufacturerModelName"),
        software=r.text(ds, "SoftwareVersions"),
        beams=beams,
        notes=tuple(r.notes),
    )
