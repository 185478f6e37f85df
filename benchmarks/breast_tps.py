"""Breast plan: rtcheck's DVHs against the planning system's own, embedded in the RTDOSE.

The RTDOSE of ``breast-dicompyler/example_data`` carries the TPS's DVHs for 9 ROIs in its
DVHSequence (DVHReferencedROISequence -> ROI number, DVHType CUMULATIVE or DIFFERENTIAL,
DoseUnits and DVHDoseScaling, DVHVolumeUnits, DVHData as (bin width, volume) pairs,
DVHMinimumDose / DVHMaximumDose / DVHMeanDose). rtcheck reads the export with
``load_path`` and computes every ROI with ``analyse``; this script prints, per ROI:

* volume and mean dose, TPS vs rtcheck, with differences in %;
* D95 and D50 (minimum dose to the hottest 95 % / 50 % of the volume): from the TPS's
  cumulative curve (linear interpolation between its points, relative to the TPS's own
  volume) vs rtcheck;
* what unit the TPS's dose axis and its min/max/mean values are in, worked out from the
  data (curve end point vs rtcheck's maximum dose; summary values vs the curve) and the
  plan's prescription, not taken on trust from DoseUnits;
* an end-cap check: rtcheck's volume with and without the half-slice flat end caps of
  the slab model, to see which convention the TPS volumes follow.

Run from the repository root::

    python benchmarks/breast_tps.py [--data DIR]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _common import add_data_argument, require_data, table


@dataclass
class TpsDvh:
    roi_number: int
    dvh_type: str
    dose_units: str
    volume_units: str
    edges: np.ndarray  # bin edges in the file's dose unit (scaled), len n + 1
    cumulative: np.ndarray  # volume receiving >= edges[:-1], file's volume unit
    minimum: float | None
    maximum: float | None
    mean: float | None

    @property
    def total(self) -> float:
        return float(self.cumulative[0])

    @property
    def curve_max(self) -> float:
        """Upper edge of the last bin holding volume (file's dose unit)."""
        threshold = 1e-6 * max(self.total, 1e-12)
        held = np.flatnonzero(self.cumulative > threshold)
        return float(self.edges[held[-1] + 1]) if held.size else 0.0

    def curve_mean(self) -> float:
        """Mean dose from the curve: volume of each bin at the bin's centre."""
        v = np.append(self.cumulative, 0.0)
        in_bin = np.clip(v[:-1] - v[1:], 0.0, None)
        centres = (self.edges[:-1] + self.edges[1:]) / 2
        return float(np.sum(in_bin * centres) / max(in_bin.sum(), 1e-300))

    def dose_at_percent(self, percent: float) -> float:
        """Dose (file unit) at which the cumulative curve falls to ``percent`` % of the total."""
        target = percent / 100 * self.total
        v = self.cumulative
        d = self.edges[:-1]
        # v is non-increasing: interpolate on the reversed (non-decreasing) arrays.
        return float(np.interp(target, v[::-1], d[::-1]))


def read_tps_dvhs(path: Path) -> list[TpsDvh]:
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    out = []
    for item in getattr(ds, "DVHSequence", []):
        data = np.asarray([float(v) for v in item.DVHData], dtype=np.float64)
        widths, volumes = data[0::2], data[1::2]
        scaling = float(getattr(item, "DVHDoseScaling", 1.0) or 1.0)
        edges = np.concatenate([[0.0], np.cumsum(widths)]) * scaling
        kind = str(item.DVHType).upper()
        # A differential DVH holds the volume of each bin: sum from the top.
        cumulative = np.cumsum(volumes[::-1])[::-1] if kind == "DIFFERENTIAL" else volumes

        def summary(keyword: str, _item: Any = item) -> float | None:
            value = getattr(_item, keyword, None)
            return float(value) if value is not None else None

        out.append(
            TpsDvh(
                roi_number=int(item.DVHReferencedROISequence[0].ReferencedROINumber),
                dvh_type=kind,
                dose_units=str(getattr(item, "DoseUnits", "")),
                volume_units=str(getattr(item, "DVHVolumeUnits", "")),
                edges=edges,
                cumulative=cumulative,
                minimum=summary("DVHMinimumDose"),
                maximum=summary("DVHMaximumDose"),
                mean=summary("DVHMeanDose"),
            )
        )
    return out


def pct(a: float, b: float) -> str:
    """Difference of ``b`` from ``a`` in % of ``a``."""
    if not (math.isfinite(a) and math.isfinite(b)) or a == 0:
        return "-"
    return f"{100 * (b - a) / a:+.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_data_argument(parser)
    args = parser.parse_args(argv)
    folder = require_data(args.data, "breast-dicompyler") / "example_data"
    if not folder.is_dir():
        sys.exit(f"error: {folder} not found (is --data right?)")

    from rtcheck.analysis import analyse
    from rtcheck.dicom_io import load_path
    from rtcheck.dvh.core import slab_bounds

    export = load_path(folder)
    result = analyse(export, (), ())
    rx = export.plan.total_dose_gy if export.plan is not None else None
    by_number = {s.roi.number: s for s in result.structures}
    dose_file = export.dose.files[0]
    tps = read_tps_dvhs(dose_file)
    if not tps:
        sys.exit(f"error: {dose_file} holds no DVHSequence")
    print(
        f"Breast plan {folder}: prescription {rx} Gy, dose {dose_file.name} ({len(tps)} TPS DVHs)"
    )

    # ---- Which unit is the TPS's dose axis in, and its min / max / mean values?
    candidates = {"Gy": 1.0, "cGy": 0.01}
    if rx:
        candidates[f"% of {rx:g} Gy"] = rx / 100
    matched = [
        (t, dvh)
        for t in tps
        if t.roi_number in by_number and (dvh := by_number[t.roi_number].dvh) is not None
    ]

    def misfit(values: list[tuple[float, float]], factor: float) -> float:
        return statistics.median(abs(v * factor - ref) / ref for v, ref in values if ref > 0)

    axis_pairs = [(t.curve_max, d.max_gy) for t, d in matched]
    axis_unit = min(candidates, key=lambda u: misfit(axis_pairs, candidates[u]))
    axis_factor = candidates[axis_unit]
    summary_pairs = [(t.maximum, t.curve_max * axis_factor) for t, _ in matched if t.maximum]
    summary_unit = min(candidates, key=lambda u: misfit(summary_pairs, candidates[u]))
    summary_factor = candidates[summary_unit]
    print()
    print("Units worked out from the data:")
    declared = sorted({t.dose_units for t in tps})
    print(
        f"  dose axis (bin widths x DVHDoseScaling): {axis_unit} -- the curves end at "
        f"{axis_factor:g} x their last edge = rtcheck's maximum dose within "
        f"{100 * misfit(axis_pairs, axis_factor):.1f} % (median); DoseUnits says {declared}"
    )
    print(
        f"  DVHMinimumDose / DVHMaximumDose / DVHMeanDose: {summary_unit} -- DVHMaximumDose x "
        f"{summary_factor:g} = the curve's end within "
        f"{100 * misfit(summary_pairs, summary_factor):.1f} % (median); as {axis_unit} they "
        f"would be off by {100 * misfit(summary_pairs, axis_factor):.0f} %"
    )
    print(f"  volumes: {sorted({t.volume_units for t in tps})}")

    # ---- Volume and mean
    rows = []
    dx_rows = []
    cap_rows = []
    for t in tps:
        s = by_number.get(t.roi_number)
        name = s.roi.name if s is not None else f"#{t.roi_number}"
        dvh = s.dvh if s is not None else None
        tps_mean = t.mean * summary_factor if t.mean is not None else math.nan
        curve_mean = t.curve_mean() * axis_factor
        volume_factor = 1.0
        if t.volume_units.upper() == "PERCENT" and dvh is not None:
            volume_factor = dvh.volume_cc / 100  # only shapes are comparable then
        tps_volume = t.total * volume_factor
        ours_volume = dvh.volume_cc if dvh is not None else math.nan
        ours_mean = dvh.mean_gy if dvh is not None else math.nan
        rows.append(
            [
                name,
                f"{tps_volume:.3f}",
                f"{ours_volume:.3f}",
                pct(tps_volume, ours_volume),
                f"{tps_mean:.3f}",
                f"{curve_mean:.3f}",
                f"{ours_mean:.3f}",
                pct(tps_mean, ours_mean),
            ]
        )
        if s is not None and dvh is not None:
            row = [name]
            for p in (95, 50):
                tps_d = t.dose_at_percent(p) * axis_factor
                ours_d = dvh.dose_at_volume(p / 100 * dvh.volume_inside_cc)
                row += [
                    f"{tps_d:.3f}",
                    f"{ours_d:.3f}",
                    f"{ours_d - tps_d:+.3f}",
                    pct(tps_d, ours_d),
                ]
            tps_max = t.maximum * summary_factor if t.maximum is not None else math.nan
            row += [f"{tps_max:.3f}", f"{dvh.max_gy:.3f}"]
            dx_rows.append(row)
            planes = s.roi.planes
            zs = np.array([p.z for p in planes])
            areas = np.array([p.area for p in planes])
            lo, hi, _ = slab_bounds(zs, export.structures.slice_positions)
            # Without flat end caps: an end plane's slab stops at the plane itself.
            first = np.r_[True, ~np.isclose(lo[1:], hi[:-1])]
            last = np.r_[~np.isclose(lo[1:], hi[:-1]), True]
            cut = np.where(first, zs - lo, 0.0) + np.where(last, hi - zs, 0.0)
            no_caps = float(np.sum(areas * (hi - lo - cut))) / 1000
            cap_rows.append(
                [
                    name,
                    len(planes),
                    f"{tps_volume:.3f}",
                    f"{ours_volume:.3f}",
                    pct(tps_volume, ours_volume),
                    f"{no_caps:.3f}",
                    pct(tps_volume, no_caps),
                ]
            )

    print()
    print(
        table(
            [
                "ROI",
                "TPS vol cc",
                "rtcheck vol cc",
                "diff %",
                "TPS mean Gy",
                "TPS curve mean Gy",
                "rtcheck mean Gy",
                "diff %",
            ],
            rows,
            title="Volume and mean dose (diff: rtcheck vs TPS, in % of TPS; 'TPS mean' is "
            "DVHMeanDose, 'curve mean' is recomputed from the TPS curve)",
        )
    )
    print()
    print(
        table(
            [
                "ROI",
                "TPS D95",
                "rtcheck D95",
                "diff Gy",
                "diff %",
                "TPS D50",
                "rtcheck D50",
                "diff Gy",
                "diff %",
                "TPS max",
                "rtcheck max",
            ],
            dx_rows,
            title="D95 and D50 in Gy (TPS values interpolated on its cumulative curve; % of its "
            "own volume)",
        )
    )
    print()
    print(
        table(
            [
                "ROI",
                "planes",
                "TPS vol cc",
                "rtcheck vol cc",
                "diff %",
                "rtcheck no-caps cc",
                "diff %",
            ],
            cap_rows,
            title="End-cap check: rtcheck's slab volume with flat half-slice end caps (default) "
            "and without them",
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
