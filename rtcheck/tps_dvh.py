"""The planning system's own DVHs (RTDOSE DVHSequence) beside rtcheck's: a second check.

An independent DVH is a second check only if the comparison is shown. The RTDOSE may carry
the planning system's DVHs (PS3.3 C.8.8.4): per ROI (DVHReferencedROISequence), a
CUMULATIVE or DIFFERENTIAL curve as (bin width, volume) pairs scaled by DVHDoseScaling,
in DoseUnits (GY, CGY; RELATIVE is relative to an unstated reference and is not
compared) and DVHVolumeUnits (CM3; PERCENT gives no volume to compare).

Only the curve is used. The summary values DVHMinimumDose, DVHMaximumDose and DVHMeanDose
are not trusted: real exports state them in another unit than DoseUnits (the breast
example in ``../shared/data`` gives them in % of the prescription under DoseUnits GY);
when they disagree with the TPS's own curve the comparison says so.

Compared per ROI: volume, mean dose (from the curve: each bin's volume at its centre),
maximum (the upper edge of the last bin holding volume) and D95 (the dose at which the
cumulative curve falls to 95 % of its volume, linearly interpolated). A difference is
flagged when it exceeds :data:`FLAG_PERCENT` of the TPS value and also an absolute floor
(:data:`DOSE_FLOOR_PERCENT_RX` of the prescription for doses, :data:`VOLUME_FLOOR_CC` for
volumes): 3 % of a dose of 0.004 Gy is not a finding.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rtcheck.dvh import DVH

__all__ = ["TpsDvh", "compare_dvh", "read_tps_dvhs"]

FloatArray = NDArray[np.float64]

#: Relative difference (% of the TPS value) beyond which a difference is flagged.
FLAG_PERCENT = 3.0
#: A dose difference is flagged only above this share of the prescription (%).
DOSE_FLOOR_PERCENT_RX = 1.0
#: ... or, without a prescription, above this dose (Gy).
DOSE_FLOOR_GY = 0.1
#: A volume difference is flagged only above this volume (cc).
VOLUME_FLOOR_CC = 0.1

_DOSE_FACTORS = {"GY": 1.0, "CGY": 0.01}


@dataclass(frozen=True)
class TpsDvh:
    """One DVH of the planning system, its dose axis in Gy when the unit is known.

    Attributes
    ----------
    edges_gy
        Bin edges in Gy (``None`` when the dose unit is not comparable).
    cumulative
        Volume receiving at least each lower edge, in ``volume_units``.
    stated
        DVHMinimumDose, DVHMaximumDose, DVHMeanDose as stated (unit unchecked).
    """

    roi_number: int
    dvh_type: str
    dose_units: str
    volume_units: str
    edges_gy: FloatArray | None
    cumulative: FloatArray
    stated: tuple[float | None, float | None, float | None]

    @property
    def total(self) -> float:
        """The curve's total volume (its first value)."""
        return float(self.cumulative[0]) if self.cumulative.size else 0.0

    @property
    def volume_cc(self) -> float | None:
        """Total volume in cc, when the curve is in CM3."""
        return self.total if self.volume_units == "CM3" else None

    def max_gy(self) -> float | None:
        """Upper edge of the last bin holding volume."""
        if self.edges_gy is None:
            return None
        held = np.flatnonzero(self.cumulative > 1e-6 * max(self.total, 1e-12))
        return float(self.edges_gy[held[-1] + 1]) if held.size else 0.0

    def mean_gy(self) -> float | None:
        """Mean dose from the curve: each bin's volume at the bin's centre."""
        if self.edges_gy is None or self.total <= 0:
            return None
        v = np.append(self.cumulative, 0.0)
        in_bin = np.clip(v[:-1] - v[1:], 0.0, None)
        centres = (self.edges_gy[:-1] + self.edges_gy[1:]) / 2
        return float(np.sum(in_bin * centres) / max(float(in_bin.sum()), 1e-300))

    def dose_at_percent(self, percent: float) -> float | None:
        """Dose (Gy) at which the cumulative curve falls to ``percent`` % of its volume."""
        if self.edges_gy is None or self.total <= 0:
            return None
        target = percent / 100 * self.total
        return float(np.interp(target, self.cumulative[::-1], self.edges_gy[:-1][::-1]))


def _dvh_data(item: Any) -> NDArray[np.float64]:
    """An item's DVHData as float64, parsed from its bytes while pydicom has not decoded
    it (pydicom builds a Python object per value: 20 ms for the nine DVHs of a plan)."""
    if "DVHData" not in item:
        return np.zeros(0)
    value = item.get_item("DVHData").value
    if isinstance(value, bytes | bytearray):
        text = bytes(value).rstrip(b" \x00")
        return np.array([float(p) for p in text.split(b"\\")] if text else [], dtype=np.float64)
    if value is None or isinstance(value, str | float | int):
        value = [] if value in (None, "") else [value]
    return np.asarray([float(v) for v in value], dtype=np.float64)


def read_tps_dvhs(datasets: Iterable[Any]) -> list[TpsDvh]:
    """The DVHs of every RTDOSE data set's DVHSequence (empty when there is none).

    Raises
    ------
    ValueError
        When an item is malformed (DVHData of odd length, a negative bin width): the
        caller says which file.
    """
    out = []
    for ds in datasets:
        for item in getattr(ds, "DVHSequence", None) or []:
            data = _dvh_data(item)
            if data.size == 0 or data.size % 2:
                raise ValueError("DVHData must hold (bin width, volume) pairs")
            widths, volumes = data[0::2], data[1::2]
            if np.any(widths < 0) or not np.all(np.isfinite(data)):
                raise ValueError("DVHData holds a negative or non-finite value")
            scaling = float(getattr(item, "DVHDoseScaling", 1.0) or 1.0)
            units = str(getattr(item, "DoseUnits", "")).upper()
            factor = _DOSE_FACTORS.get(units)
            edges = (
                np.concatenate([[0.0], np.cumsum(widths)]) * scaling * factor
                if factor is not None
                else None
            )
            kind = str(getattr(item, "DVHType", "")).upper()
            cumulative = np.cumsum(volumes[::-1])[::-1] if kind == "DIFFERENTIAL" else volumes
            refs = getattr(item, "DVHReferencedROISequence", None) or []
            if not refs:
                continue
            stated = tuple(
                float(v) if (v := getattr(item, k, None)) not in (None, "") else None
                for k in ("DVHMinimumDose", "DVHMaximumDose", "DVHMeanDose")
            )
            out.append(
                TpsDvh(
                    roi_number=int(refs[0].ReferencedROINumber),
                    dvh_type=kind,
                    dose_units=units,
                    volume_units=str(getattr(item, "DVHVolumeUnits", "")).upper(),
                    edges_gy=edges,
                    cumulative=np.asarray(cumulative, dtype=np.float64),
                    stated=(stated[0], stated[1], stated[2]),
                )
            )
    return out


def _row(
    quantity: str, unit: str, tps: float | None, ours: float | None, floor: float
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "quantity": quantity,
        "unit": unit,
        "tps": None if tps is None else round(tps, 4),
        "rtcheck": None if ours is None else round(ours, 4),
        "difference": None,
        "difference_percent": None,
        "flagged": False,
    }
    if tps is None or ours is None:
        return row
    diff = ours - tps
    row["difference"] = round(diff, 4)
    if tps != 0:
        row["difference_percent"] = round(100 * diff / tps, 2)
    relative = abs(diff) > FLAG_PERCENT / 100 * abs(tps) if tps != 0 else diff != 0
    row["flagged"] = bool(relative and abs(diff) > floor)
    return row


def compare_dvh(tps: TpsDvh, ours: DVH, prescription_gy: float | None) -> dict[str, Any]:
    """Volume, mean, maximum and D95: the TPS's against rtcheck's, with the differences.

    Returns
    -------
    dict
        ``rows`` (one per quantity: tps, rtcheck, difference, difference_percent,
        flagged) and ``notes`` (units not compared, summary values that disagree with the
        TPS's own curve).
    """
    notes = []
    dose_floor = DOSE_FLOOR_PERCENT_RX / 100 * prescription_gy if prescription_gy else DOSE_FLOOR_GY
    if tps.edges_gy is None:
        notes.append(f"TPS dose unit {tps.dose_units or 'not stated'}: doses not compared")
    if tps.volume_cc is None:
        notes.append(f"TPS volume unit {tps.volume_units or 'not stated'}: volume not compared")
    inside = ours.volume_inside_cc
    rows = [
        _row("volume", "cc", tps.volume_cc, ours.volume_cc, VOLUME_FLOOR_CC),
        _row("mean", "Gy", tps.mean_gy(), ours.mean_gy, dose_floor),
        _row("max", "Gy", tps.max_gy(), ours.max_gy, dose_floor),
        _row(
            "D95",
            "Gy",
            tps.dose_at_percent(95),
            ours.dose_at_volume(0.95 * inside) if inside > 0 else None,
            dose_floor,
        ),
    ]
    curve_mean, stated_mean = tps.mean_gy(), tps.stated[2]
    if (
        curve_mean is not None
        and stated_mean is not None
        and curve_mean > 0
        and not math.isclose(stated_mean, curve_mean, rel_tol=0.05)
    ):
        notes.append(
            f"the TPS's stated mean ({stated_mean:g}) is not its curve's ({curve_mean:.4g} Gy):"
            " its summary values are in another unit than DoseUnits; the curve is used"
        )
    return {"rows": rows, "notes": notes}
