"""Nelms 2015 analytical DVH benchmark: rtcheck against the 540 published reference points.

For every structure x dose pair of ``nelms-dvh/reference_points.csv`` (60 pairs, 9 metrics
each: Volume [cc], Dmin, Dmax, Dmean, D99, D95, D5, D1, D0.03cc [cGy]; Dxx is the minimum
dose to the hottest xx % of the volume) the RTSTRUCT and RTDOSE are read with
``rtcheck.dicom_io.load_files``, the DVH of the shape ROI (the ROI named like the file
stem; the files also hold a POI ROI) is computed with ``rtcheck.dvh.compute_dvh``, and
each metric is compared with the published analytical value (error relative to it).

Printed:

* a table per test (Test1 = 0.2 mm contours on 1/2/3 mm dose grids; Test2 = contour
  spacing equal to the dose grid), shape and metric: points, within 1 %, within 3 %,
  largest |error|;
* the overall line ``N points: X outside 3 %, Y within 1 % (Z %)`` and every point
  outside 1 %;
* with ``--slab-truth``: for every point the exact slab-model value of the *same*
  contours (``tests.fixtures.analytic.SlabTruth``, D = 10 - y Gy for AntPost, z + 10 Gy
  for SupInf), the engine-vs-model error (the engine's own error) and the
  model-vs-published error (what the slab convention itself costs against the ideal
  shapes), with a summary;
* with ``--dicompyler-python PY``: the same 540 points computed by dicompyler-core's
  ``dvhcalc.get_dvh`` in a child of that interpreter (it needs pydicom < 3), counted the
  same way;
* the published figures for scale, and the whole-run time.

Run from the repository root::

    python benchmarks/nelms.py [--data DIR] [--slab-truth] [--dicompyler-python PY]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from _common import add_data_argument, require_data, table

if TYPE_CHECKING:
    from rtcheck.dicom_io import Roi

#: Metric name -> value (cc or cGy).
Metrics = dict[str, float]

METRICS = ("Volume", "Dmin", "Dmax", "Dmean", "D99", "D95", "D5", "D1", "D0.03cc")
SHAPES = ("Sphere", "Cylinder", "RtCylinder", "Cone", "RtCone")
#: Linear fields of the benchmark (Gy, mm): AntPost D = 10 - y, SupInf D = z + 10.
FIELDS = {"AntPost": (10.0, (0.0, -1.0, 0.0)), "SupInf": (10.0, (0.0, 0.0, 1.0))}

PUBLISHED = """\
For scale (Nelms et al. 2015 and dicompyler-core's own record; points outside 3 %):
  PlanIQ                 5/340 (Test 1)   18/255 (Test 2)
  Pinnacle 9.8          52/340 (Test 1)   93/255 (Test 2)
  dicompyler-core 0.5.6  341/540 (both tests, default mode)
  (Nelms' tables count 340 + 255 points; reference_points.csv holds 270 + 270.)"""


@dataclass(frozen=True)
class Point:
    test: str
    structure: str
    dose: str
    metric: str
    expected: float

    @property
    def shape(self) -> str:
        match = re.match(r"(Rt)?(Sphere|Cylinder|Cone)", self.structure)
        return match.group(0) if match else self.structure.split("_")[0]

    @property
    def key(self) -> tuple[str, str]:
        return (self.structure, self.dose)


def relative_error(value: float, reference: float) -> float:
    """Signed error in % of the reference."""
    if not math.isfinite(value):
        return math.inf
    return 100.0 * (value - reference) / reference


def read_points(folder: Path) -> list[Point]:
    path = folder / "reference_points.csv"
    if not path.is_file():
        sys.exit(f"error: {path} not found (is --data right?)")
    with path.open(newline="") as f:
        return [
            Point(r["test"], r["structure_file"], r["dose_file"], r["metric"], float(r["expected"]))
            for r in csv.DictReader(f)
        ]


def unique_pairs(points: list[Point]) -> list[tuple[str, str]]:
    return list(dict.fromkeys(p.key for p in points))


# --------------------------------------------------------------------------------------
# rtcheck and the exact slab model
# --------------------------------------------------------------------------------------


def dvh_metrics(
    volume: float, dmin: float, dmax: float, dmean: float, dose_at: Callable[[float], float]
) -> Metrics:
    """The nine benchmark metrics (cc, cGy) from Gy-valued summaries and a Dxx function."""
    out = {"Volume": volume, "Dmin": 100 * dmin, "Dmax": 100 * dmax, "Dmean": 100 * dmean}
    for pct in (99, 95, 5, 1):
        out[f"D{pct}"] = 100 * dose_at(pct / 100 * volume)
    out["D0.03cc"] = 100 * dose_at(0.03)
    return out


def _normalised(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.casefold())


def shape_roi(rois: Sequence[Roi], structure_file: str) -> Roi:
    """The shape ROI of a benchmark file: the ROI named like the file stem.

    Some files spell it differently (``Cone20_0`` in ``Cone_20_0.dcm``,
    ``Sphere_10_x05_Z05`` in ``Sphere_10_X05Z05.dcm``), so names are compared without
    case and punctuation; the POI ROI of each file has no contours and is never chosen.
    """
    stem = Path(structure_file).stem
    with_planes = [r for r in rois if r.planes]
    for r in with_planes:
        if r.name == stem:
            return r
    matches = [r for r in with_planes if _normalised(r.name) == _normalised(stem)]
    if len(matches) == 1:
        return matches[0]
    sys.exit(f"error: no ROI named like {stem!r} in {structure_file}: {[r.name for r in rois]}")


def rtcheck_pair(
    folder: Path, structure: str, dose: str, slab_truth: bool, between_planes: str = "shape"
) -> tuple[Metrics, Metrics | None, float, str]:
    """rtcheck's metrics for one pair, and (optionally) the exact slab-model metrics."""
    from rtcheck.dicom_io import load_files
    from rtcheck.dvh.core import compute_dvh

    t0 = time.perf_counter()
    export = load_files(folder / "STRUCTURES" / structure, folder / "DOSE GRIDS" / dose)
    roi = shape_roi(export.structures.rois, structure)
    dvh = compute_dvh(
        roi.planes,
        export.dose.grid,
        slice_positions=export.structures.slice_positions,
        between_planes=between_planes,
    )
    if not dvh.complete:
        print(f"warning: {structure} is partly outside {dose}", file=sys.stderr)
    ours = dvh_metrics(
        dvh.volume_inside_cc, dvh.min_gy, dvh.max_gy, dvh.mean_gy, dvh.dose_at_volume
    )
    seconds = time.perf_counter() - t0
    model = None
    if slab_truth:
        from tests.fixtures.analytic import LinearDose, SlabTruth

        field = next(v for k, v in FIELDS.items() if k in dose)
        truth = SlabTruth(sorted(roi.planes, key=lambda p: p.z), LinearDose(*field))
        model = dvh_metrics(
            truth.volume_cc, truth.min_gy, truth.max_gy, truth.mean_gy, truth.dose_at_volume
        )
    return ours, model, seconds, roi.name


# --------------------------------------------------------------------------------------
# dicompyler-core in its own interpreter
# --------------------------------------------------------------------------------------

#: Runs under the dicompyler-core interpreter: argv[1] is a JSON file of
#: [structure_path, dose_path, roi_name] triples, argv[2] an upsampling factor (0 = the
#: default mode), argv[3] the segments interpolated between planes. Prints one JSON line.
DICOMPYLER_DRIVER = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
import logging
logging.disable(logging.WARNING)
from dicompylercore import dicomparser, dvhcalc
pairs = json.load(open(sys.argv[1]))
upsample = float(sys.argv[2]); segments = int(sys.argv[3])
out = []
t_all = time.perf_counter()
for structure, dose, name in pairs:
    rtss = dicomparser.DicomParser(structure)
    number = next(k for k, v in rtss.GetStructures().items() if v["name"] == name)
    kwargs = {}
    if upsample:
        spacing = [float(s) for s in dicomparser.DicomParser(dose).ds.PixelSpacing]
        kwargs["interpolation_resolution"] = (spacing[0] / upsample, spacing[1] / upsample)
    if segments:
        kwargs["interpolation_segments_between_planes"] = segments
    t0 = time.perf_counter()
    try:
        d = dvhcalc.get_dvh(structure, dose, number, **kwargs)
        vals = {"Volume": d.volume, "Dmin": 100 * d.min, "Dmax": 100 * d.max,
                "Dmean": 100 * d.mean}
        for m in ("D99", "D95", "D5", "D1", "D0.03cc"):
            vals[m] = 100 * float(d.statistic(m).value)
        err = None
    except Exception as exc:
        vals, err = {}, repr(exc)
    out.append({"structure": structure, "dose": dose, "values": vals, "error": err,
                "seconds": time.perf_counter() - t0})
print(json.dumps({"results": out, "seconds": time.perf_counter() - t_all}))
"""


def dicompyler_values(
    python: str,
    folder: Path,
    pairs: list[tuple[str, str]],
    roi_names: dict[str, str],
    upsample: float,
    segments: int,
) -> tuple[dict[tuple[str, str], Metrics], float, list[str]]:
    """dicompyler-core's metrics per pair (by (structure, dose) file names) and its time."""
    triples = [
        [str(folder / "STRUCTURES" / s), str(folder / "DOSE GRIDS" / d), roi_names[s]]
        for s, d in pairs
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(triples, f)
        listing = f.name
    try:
        proc = subprocess.run(
            [python, "-c", DICOMPYLER_DRIVER, listing, str(upsample), str(segments)],
            capture_output=True,
            text=True,
        )
    finally:
        Path(listing).unlink(missing_ok=True)
    if proc.returncode != 0:
        sys.exit(
            f"error: dicompyler-core child ({python}) failed with exit {proc.returncode}:\n"
            f"{proc.stderr.strip()[-2000:]}"
        )
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    values: dict[tuple[str, str], Metrics] = {}
    failures: list[str] = []
    for r in report["results"]:
        key = (Path(r["structure"]).name, Path(r["dose"]).name)
        values[key] = r["values"]
        if r["error"]:
            failures.append(f"{key[0]} / {key[1]}: {r['error']}")
    return values, report["seconds"], failures


# --------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------


def summary_rows(points: list[Point], errors: dict[Point, float]) -> list[list[object]]:
    """Rows test, shape, metric, points, <=1 %, <=3 %, max |err| (and per-test totals)."""
    groups: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for p in points:
        groups[(p.test, p.shape, p.metric)].append(abs(errors[p]))
    rows: list[list[object]] = []
    for test in sorted({p.test for p in points}):
        for shape in SHAPES:
            for metric in METRICS:
                errs = groups.get((test, shape, metric))
                if not errs:
                    continue
                rows.append(
                    [
                        test,
                        shape,
                        metric,
                        len(errs),
                        sum(e <= 1 for e in errs),
                        sum(e <= 3 for e in errs),
                        f"{max(errs):.3f}",
                    ]
                )
        errs = [abs(errors[p]) for p in points if p.test == test]
        rows.append(
            [
                test,
                "all",
                "all",
                len(errs),
                sum(e <= 1 for e in errs),
                sum(e <= 3 for e in errs),
                f"{max(errs):.3f}",
            ]
        )
    return rows


def overall_line(errors: dict[Point, float]) -> str:
    n = len(errors)
    outside3 = sum(abs(e) > 3 for e in errors.values())
    within1 = sum(abs(e) <= 1 for e in errors.values())
    return f"{n} points: {outside3} outside 3 %, {within1} within 1 % ({100 * within1 / n:.1f} %)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_data_argument(parser)
    parser.add_argument(
        "--slab-truth",
        action="store_true",
        help="also compute the exact slab-model truth of the same contours and separate the "
        "engine's error from the slab convention's",
    )
    parser.add_argument(
        "--between-planes",
        choices=("slab", "shape"),
        default="shape",
        help="rtcheck's structure model between contour planes (default: shape, rtcheck's default)",
    )
    parser.add_argument(
        "--dicompyler-python",
        metavar="PY",
        help="a Python interpreter with dicompyler-core (and pydicom < 3) installed: compute "
        "the same points with dicompyler-core for comparison",
    )
    parser.add_argument(
        "--dicompyler-upsample",
        type=float,
        default=0,
        metavar="K",
        help="dicompyler-core: interpolation_resolution = dose pixel spacing / K "
        "(K a power of 2; default 0 = its default mode)",
    )
    parser.add_argument(
        "--dicompyler-segments",
        type=int,
        default=0,
        metavar="N",
        help="dicompyler-core: interpolation_segments_between_planes (default 0)",
    )
    args = parser.parse_args(argv)
    folder = require_data(args.data, "nelms-dvh")

    t_start = time.perf_counter()
    points = read_points(folder)
    pairs = unique_pairs(points)
    print(
        f"Nelms DVH benchmark: {len(points)} reference points, {len(pairs)} structure x dose "
        f"pairs, data {folder}"
    )

    ours: dict[tuple[str, str], Metrics] = {}
    model: dict[tuple[str, str], Metrics] = {}
    engine_seconds = 0.0
    roi_names: dict[str, str] = {}
    for structure, dose in pairs:
        values, truth, seconds, roi_name = rtcheck_pair(
            folder, structure, dose, args.slab_truth, args.between_planes
        )
        roi_names[structure] = roi_name
        engine_seconds += seconds
        ours[(structure, dose)] = values
        if truth is not None:
            model[(structure, dose)] = truth

    errors = {p: relative_error(ours[p.key][p.metric], p.expected) for p in points}

    print()
    print(
        table(
            ["test", "shape", "metric", "points", "<=1 %", "<=3 %", "max |err| %"],
            summary_rows(points, errors),
            title="rtcheck vs published analytical values (error relative to the published value)",
        )
    )
    print()
    print(f"rtcheck ({args.between_planes} model): " + overall_line(errors))
    for test in sorted({p.test for p in points}):
        sub = {p: e for p, e in errors.items() if p.test == test}
        print(f"  {test}: " + overall_line(sub))

    outside1 = [p for p in points if abs(errors[p]) > 1]
    print()
    if outside1:
        print(
            table(
                ["test", "structure", "dose", "metric", "published", "rtcheck", "err %"],
                [
                    [
                        p.test,
                        p.structure,
                        p.dose,
                        p.metric,
                        p.expected,
                        ours[p.key][p.metric],
                        f"{errors[p]:+.2f}",
                    ]
                    for p in outside1
                ],
                title=f"Points outside 1 % ({len(outside1)})",
            )
        )
    else:
        print("Points outside 1 %: none")
    if args.between_planes == "slab":
        print(
            "(the exact slab model; without --between-planes the default model runs, which "
            "interpolates between planes: docs/dvh.md)"
        )

    if args.slab_truth:
        engine_vs_model = {
            p: relative_error(ours[p.key][p.metric], model[p.key][p.metric]) for p in points
        }
        model_vs_published = {p: relative_error(model[p.key][p.metric], p.expected) for p in points}
        print()
        print(
            table(
                [
                    "test",
                    "structure",
                    "dose",
                    "metric",
                    "published",
                    "slab model",
                    "rtcheck",
                    "engine-model %",
                    "model-published %",
                ],
                [
                    [
                        p.test,
                        p.structure,
                        p.dose,
                        p.metric,
                        p.expected,
                        model[p.key][p.metric],
                        ours[p.key][p.metric],
                        f"{engine_vs_model[p]:+.3f}",
                        f"{model_vs_published[p]:+.2f}",
                    ]
                    for p in points
                ],
                title="Every point: engine vs exact slab model of the same contours, and slab "
                "model vs published",
            )
        )
        worst = max(points, key=lambda p: abs(engine_vs_model[p]))
        differ = [p for p in points if abs(model_vs_published[p]) > 3]
        differ1 = [p for p in points if abs(model_vs_published[p]) > 1]
        print()
        print(
            f"engine vs exact slab model: max error {abs(engine_vs_model[worst]):.3f} % "
            f"({worst.metric}, {worst.structure} / {worst.dose}); "
            f"{sum(abs(e) > 0.5 for e in engine_vs_model.values())} points > 0.5 %, "
            f"{sum(abs(e) > 1 for e in engine_vs_model.values())} points > 1 %"
        )
        print(
            f"published vs slab model: {len(differ)} points differ by > 3 %, "
            f"{len(differ1)} by > 1 %"
        )
        own3 = [p for p in points if abs(errors[p]) > 3 and abs(model_vs_published[p]) <= 3]
        own1 = [p for p in points if abs(errors[p]) > 1 and abs(model_vs_published[p]) <= 1]
        print(
            f"points rtcheck misses while the slab model itself is within the tolerance "
            f"(the engine's own misses): {len(own3)} at 3 %, {len(own1)} at 1 %"
        )
        by_metric = defaultdict(list)
        for p in points:
            by_metric[p.metric].append(p)
        print()
        print(
            table(
                [
                    "metric",
                    "points",
                    "max |engine-model| %",
                    "max |model-published| %",
                    "model-published > 3 %",
                    "model-published > 1 %",
                ],
                [
                    [
                        m,
                        len(ps),
                        f"{max(abs(engine_vs_model[p]) for p in ps):.4f}",
                        f"{max(abs(model_vs_published[p]) for p in ps):.3f}",
                        sum(abs(model_vs_published[p]) > 3 for p in ps),
                        sum(abs(model_vs_published[p]) > 1 for p in ps),
                    ]
                    for m, ps in by_metric.items()
                ],
                title="Per metric: engine error vs slab-convention error",
            )
        )

    if args.dicompyler_python:
        print()
        mode = "default mode"
        if args.dicompyler_upsample or args.dicompyler_segments:
            mode = (
                f"interpolation_resolution = spacing/{args.dicompyler_upsample:g}, "
                f"interpolation_segments_between_planes = {args.dicompyler_segments}"
            )
        print(f"dicompyler-core ({args.dicompyler_python}, {mode}) ...", flush=True)
        dc, dc_seconds, failures = dicompyler_values(
            args.dicompyler_python,
            folder,
            pairs,
            roi_names,
            args.dicompyler_upsample,
            args.dicompyler_segments,
        )
        dc_errors = {
            p: relative_error(dc.get(p.key, {}).get(p.metric, math.nan), p.expected) for p in points
        }
        rows = []
        for test in sorted({p.test for p in points}):
            for metric in METRICS:
                ps = [p for p in points if p.test == test and p.metric == metric]
                rows.append(
                    [
                        test,
                        metric,
                        len(ps),
                        sum(abs(dc_errors[p]) > 3 for p in ps),
                        sum(abs(errors[p]) > 3 for p in ps),
                        max(abs(dc_errors[p]) for p in ps),
                        max(abs(errors[p]) for p in ps),
                    ]
                )
        print(
            table(
                [
                    "test",
                    "metric",
                    "points",
                    "dicompyler >3 %",
                    "rtcheck >3 %",
                    "dicompyler max |err| %",
                    "rtcheck max |err| %",
                ],
                rows,
                title=f"dicompyler-core vs rtcheck on the same points ({mode})",
            )
        )
        print()
        print(
            "dicompyler-core: "
            + overall_line(dc_errors)
            + f"  [DVH time {dc_seconds:.1f} s in its own process]"
        )
        for test in sorted({p.test for p in points}):
            sub = {p: e for p, e in dc_errors.items() if p.test == test}
            print(f"  {test}: " + overall_line(sub))
        if failures:
            print(f"dicompyler-core failed on {len(failures)} pairs:")
            for f in failures:
                print(f"  {f}")

    print()
    print(PUBLISHED)
    print()
    total = time.perf_counter() - t_start
    print(
        f"Whole run: {total:.1f} s (rtcheck reading + DVHs of the {len(pairs)} pairs: "
        f"{engine_seconds:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
