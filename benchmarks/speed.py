"""Whole-process time and peak memory of rtcheck (and dicompyler-core, when given).

Every run is a fresh process started by a fresh wrapper process, so each figure includes
interpreter start-up, imports, reading the DICOM files and writing the output; peak memory
is ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` of the wrapper, i.e. of the one
command it ran. Each task runs ``--runs`` times (default 5): median and minimum wall time
are printed, with the largest peak RSS of the runs.

Tasks:

* ``rtcheck dvh <breast-dicompyler/example_data> --json <tmpfile>``: the CLI on the breast
  plan (all ROIs: 9 with contours, one empty; dose grid 194 x 129 x 98) with the default
  model, and the same with ``--between-planes slab``, run in turn;
* the same CLI run with ``OPENBLAS_NUM_THREADS=1`` (a diagnostic: a large 1-d ``np.dot``
  in the engine wakes OpenBLAS's worker threads, which then spin and burn the other core);
* the same plan through the library (``load_path`` + ``analyse``) in a small driver that
  also reports its reading and DVH times separately;
* the whole Nelms set: a driver that reads each of the 60 structure x dose pairs of
  ``nelms-dvh/reference_points.csv`` with ``load_files`` and computes its DVH;
* with ``--dicompyler-python PY`` (an interpreter with dicompyler-core 0.5.6 and
  pydicom < 3): dicompyler-core's ``dvhcalc.get_dvh(rtss, rtdose, roi)`` for every ROI of
  the breast plan, in its default mode and with ``interpolation_resolution = (2.5/8,
  2.5/8)`` and ``interpolation_segments_between_planes = 2`` (its sub-millimetre setting;
  ``--slow-runs`` runs, default 1), and the ratio to rtcheck.

``--profile`` adds a cProfile of the breast plan (library driver, in a child) sorted by
cumulative and by own time.

Run from the repository root::

    python benchmarks/speed.py [--data DIR] [--runs N] [--dicompyler-python PY] [--profile]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import (
    REPO,
    Measurement,
    add_data_argument,
    cpu_count,
    measure,
    require_data,
    rtcheck_command,
    table,
)

#: rtcheck library on one export folder: argv[1] folder. Prints reading and DVH times.
RTCHECK_BREAST_DRIVER = r"""
import json, sys, time
t0 = time.perf_counter()
from rtcheck.analysis import analyse
from rtcheck.dicom_io import load_path
t1 = time.perf_counter()
export = load_path(sys.argv[1])
t2 = time.perf_counter()
result = analyse(export)
t3 = time.perf_counter()
done = sum(s.dvh is not None for s in result.structures)
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "dvh_s": t3 - t2, "rois": done}))
"""

#: rtcheck on the Nelms set: argv[1] the nelms-dvh folder. Prints reading and DVH times.
RTCHECK_NELMS_DRIVER = r"""
import csv, json, re, sys, time
from pathlib import Path
t0 = time.perf_counter()
from rtcheck.dicom_io import load_files
from rtcheck.dvh.core import compute_dvh
t1 = time.perf_counter()
folder = Path(sys.argv[1])
with open(folder / "reference_points.csv", newline="") as f:
    pairs = list(dict.fromkeys((r["structure_file"], r["dose_file"]) for r in csv.DictReader(f)))
norm = lambda s: re.sub(r"[^0-9a-z]", "", s.casefold())
load_s = dvh_s = 0.0
for structure, dose in pairs:
    a = time.perf_counter()
    export = load_files(folder / "STRUCTURES" / structure, folder / "DOSE GRIDS" / dose)
    roi = next(r for r in export.structures.rois
               if r.planes and norm(r.name) == norm(Path(structure).stem))
    b = time.perf_counter()
    compute_dvh(roi.planes, export.dose.grid, slice_positions=export.structures.slice_positions)
    c = time.perf_counter()
    load_s += b - a
    dvh_s += c - b
print(json.dumps({"import_s": t1 - t0, "load_s": load_s, "dvh_s": dvh_s, "pairs": len(pairs)}))
"""

#: dicompyler-core on one plan: argv[1] RTSTRUCT, argv[2] RTDOSE, argv[3] upsampling
#: factor of the dose pixel spacing (0 = default mode), argv[4] segments between planes.
DICOMPYLER_BREAST_DRIVER = r"""
import json, sys, time, warnings, logging
warnings.simplefilter("ignore")
logging.disable(logging.WARNING)
t0 = time.perf_counter()
import pydicom
from dicompylercore import dicomparser, dvhcalc
t1 = time.perf_counter()
rtss_path, dose_path = sys.argv[1], sys.argv[2]
upsample, segments = float(sys.argv[3]), int(sys.argv[4])
rtss = pydicom.dcmread(rtss_path)
rtdose = pydicom.dcmread(dose_path)
rois = list(dicomparser.DicomParser(rtss).GetStructures())
kwargs = {}
if upsample:
    sy, sx = (float(s) for s in rtdose.PixelSpacing)
    kwargs["interpolation_resolution"] = (sy / upsample, sx / upsample)
if segments:
    kwargs["interpolation_segments_between_planes"] = segments
t2 = time.perf_counter()
volumes = {}
for roi in rois:
    d = dvhcalc.get_dvh(rtss, rtdose, roi, **kwargs)
    volumes[roi] = float(d.volume)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "dvh_s": t3 - t2, "rois": len(rois)}))
"""

#: dicompyler-core on the Nelms set (default mode): argv[1] the nelms-dvh folder.
DICOMPYLER_NELMS_DRIVER = r"""
import csv, json, re, sys, time, warnings, logging
warnings.simplefilter("ignore")
logging.disable(logging.WARNING)
from pathlib import Path
t0 = time.perf_counter()
import pydicom
from dicompylercore import dicomparser, dvhcalc
t1 = time.perf_counter()
folder = Path(sys.argv[1])
with open(folder / "reference_points.csv", newline="") as f:
    pairs = list(dict.fromkeys((r["structure_file"], r["dose_file"]) for r in csv.DictReader(f)))
norm = lambda s: re.sub(r"[^0-9a-z]", "", s.casefold())
load_s = dvh_s = 0.0
for structure, dose in pairs:
    a = time.perf_counter()
    rtss = pydicom.dcmread(folder / "STRUCTURES" / structure)
    rtdose = pydicom.dcmread(folder / "DOSE GRIDS" / dose)
    number = next(k for k, v in dicomparser.DicomParser(rtss).GetStructures().items()
                  if norm(v["name"]) == norm(Path(structure).stem))
    b = time.perf_counter()
    dvhcalc.get_dvh(rtss, rtdose, number)
    c = time.perf_counter()
    load_s += b - a
    dvh_s += c - b
print(json.dumps({"import_s": t1 - t0, "load_s": load_s, "dvh_s": dvh_s, "pairs": len(pairs)}))
"""

#: cProfile of ``rtcheck dvh <folder> --json <file>`` run in-process: argv[1] folder,
#: argv[2] JSON output, argv[3] rows shown. Imports are inside the profile.
PROFILE_DRIVER = r"""
import cProfile, io, pstats, sys, time
folder, out, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
profiler = cProfile.Profile()
t0 = time.perf_counter()
profiler.enable()
from rtcheck.cli.main import main
sys.argv = ["rtcheck", "dvh", folder, "--json", out]
try:
    main()
except SystemExit:
    pass
profiler.disable()
print(f"profiled run: {time.perf_counter() - t0:.2f} s (imports + reading + all DVHs + "
      "output, in one process; profiling adds overhead)", file=sys.stderr)
for key in ("cumulative", "tottime"):
    s = io.StringIO()
    pstats.Stats(profiler, stream=s).strip_dirs().sort_stats(key).print_stats(rows)
    text = s.getvalue()
    start = text.find("   ncalls")
    print(f"\n--- sorted by {key} ---", file=sys.stderr)
    print(text[start:].rstrip(), file=sys.stderr)
"""


def _rtcheck_env() -> dict[str, str]:
    """The environment for rtcheck children: the repository importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


def _row(m: Measurement, runs_wanted: int) -> list[object]:
    if m.failed:
        return [m.label, 0, "failed", "-", "-", "-", "-", "-"]
    return [
        m.label,
        len(m.walls),
        f"{m.median:.2f}",
        f"{m.minimum:.2f}",
        f"{sorted(m.cpu)[len(m.cpu) // 2]:.2f}",
        _inner(m, "load_s"),
        _inner(m, "dvh_s"),
        f"{m.peak_rss_mb:.0f}",
    ]


def _inner(m: Measurement, key: str) -> str:
    v = m.inner_median(key)
    return f"{v:.2f}" if math.isfinite(v) else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_data_argument(parser)
    parser.add_argument(
        "--runs", type=int, default=5, metavar="N", help="runs per task (default 5)"
    )
    parser.add_argument(
        "--slow-runs",
        type=int,
        default=1,
        metavar="N",
        help="runs of the slow dicompyler-core tasks (sub-millimetre mode, Nelms set; default 1)",
    )
    parser.add_argument(
        "--dicompyler-python",
        metavar="PY",
        help="a Python interpreter with dicompyler-core 0.5.6 (and pydicom < 3) installed",
    )
    parser.add_argument(
        "--skip-submm",
        action="store_true",
        help="skip dicompyler-core's sub-millimetre mode (minutes per run)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also print a cProfile of the breast plan"
    )
    parser.add_argument(
        "--profile-rows",
        type=int,
        default=25,
        metavar="N",
        help="rows of each profile listing (default 25)",
    )
    args = parser.parse_args(argv)

    breast = require_data(args.data, "breast-dicompyler") / "example_data"
    nelms = require_data(args.data, "nelms-dvh")
    if not breast.is_dir():
        sys.exit(f"error: {breast} not found (is --data right?)")
    env = _rtcheck_env()

    print(
        f"Machine: {platform.machine()}, {cpu_count()} CPUs usable, Python "
        f"{platform.python_version()}; {args.runs} runs per task (fresh process each); "
        f"load average before: {os.getloadavg()[0]:.2f}"
    )
    results: list[Measurement] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "breast.json"
        # The default model and the exact slab model, run by run in turn so that both
        # see the same machine.
        cli = Measurement("rtcheck dvh breast --json (CLI, default model)")
        slab = Measurement("  same, --between-planes slab")
        for _ in range(args.runs):
            for into, extra in ((cli, []), (slab, ["--between-planes", "slab"])):
                one = measure(
                    into.label,
                    [*rtcheck_command(), "dvh", str(breast), "--json", str(out), *extra],
                    1,
                    env=env,
                )
                into.failed = into.failed or one.failed
                into.walls += one.walls
                into.rss_mb += one.rss_mb
                into.cpu += one.cpu
                into.inner += one.inner
        results += [cli, slab]
        # Diagnostic: the same with OpenBLAS limited to one thread. A large 1-d np.dot in
        # the engine wakes OpenBLAS's worker threads, which then spin on the other core.
        results.append(
            measure(
                "  same, OPENBLAS_NUM_THREADS=1",
                [*rtcheck_command(), "dvh", str(breast), "--json", str(out)],
                args.runs,
                env={**env, "OPENBLAS_NUM_THREADS": "1"},
            )
        )
    lib = measure(
        "rtcheck breast (library driver)",
        [sys.executable, "-c", RTCHECK_BREAST_DRIVER, str(breast)],
        args.runs,
        env=env,
    )
    results.append(lib)
    nel = measure(
        "rtcheck Nelms set (60 pairs)",
        [sys.executable, "-c", RTCHECK_NELMS_DRIVER, str(nelms)],
        args.runs,
        env=env,
    )
    results.append(nel)

    dc_default = dc_submm = dc_nelms = None
    if args.dicompyler_python:
        rtss, rtdose = str(breast / "rtss.dcm"), str(breast / "rtdose.dcm")
        dc_default = measure(
            "dicompyler-core breast, default",
            [args.dicompyler_python, "-c", DICOMPYLER_BREAST_DRIVER, rtss, rtdose, "0", "0"],
            args.runs,
        )
        results.append(dc_default)
        if not args.skip_submm:
            dc_submm = measure(
                "dicompyler-core breast, 2.5/8 mm + 2 segments",
                [args.dicompyler_python, "-c", DICOMPYLER_BREAST_DRIVER, rtss, rtdose, "8", "2"],
                args.slow_runs,
            )
            results.append(dc_submm)
        dc_nelms = measure(
            "dicompyler-core Nelms set, default",
            [args.dicompyler_python, "-c", DICOMPYLER_NELMS_DRIVER, str(nelms)],
            args.slow_runs,
        )
        results.append(dc_nelms)

    print()
    print(
        table(
            ["task", "runs", "median s", "min s", "CPU s", "read s", "DVH s", "peak RSS MB"],
            [_row(m, args.runs) for m in results],
            title="Whole-process wall time (median, min), CPU time (user + sys, median) and peak "
            "memory;\n'read s' and 'DVH s' are the drivers' own timings (median)",
        )
    )
    for m in results:
        if m.failed:
            print(f"{m.label}: {m.failed}")

    print(
        f"Load average after: {os.getloadavg()[0]:.2f} (other work on the machine inflates "
        "wall times; compare CPU s)"
    )
    print()
    target = "met" if cli.walls and cli.median <= 1.0 else "NOT met"
    print(
        f"Target 'all ROIs of the breast plan in <= 1 s whole process' (default model): "
        f"{target} (median {cli.median:.2f} s; slab model {slab.median:.2f} s)"
    )
    memory = "met" if cli.rss_mb and cli.peak_rss_mb <= 200 else "NOT met"
    print(
        f"Target 'peak memory <= 200 MB' (default model): {memory} "
        f"({cli.peak_rss_mb:.0f} MB; slab model {slab.peak_rss_mb:.0f} MB)"
    )
    if dc_default is not None and not dc_default.failed and cli.walls:
        rows = []
        for label, other in (("default", dc_default), ("2.5/8 mm + 2 segments", dc_submm)):
            if other is None or other.failed:
                continue
            rows.append(
                [
                    label,
                    f"{other.median:.2f}",
                    f"{cli.median:.2f}",
                    f"{other.median / cli.median:.1f}x",
                    _inner(other, "dvh_s"),
                    _inner(lib, "dvh_s"),
                    f"{other.inner_median('dvh_s') / lib.inner_median('dvh_s'):.1f}x",
                ]
            )
        if dc_nelms is not None and not dc_nelms.failed and nel.walls:
            rows.append(
                [
                    "Nelms set, default",
                    f"{dc_nelms.median:.2f}",
                    f"{nel.median:.2f}",
                    f"{dc_nelms.median / nel.median:.1f}x",
                    _inner(dc_nelms, "dvh_s"),
                    _inner(nel, "dvh_s"),
                    f"{dc_nelms.inner_median('dvh_s') / nel.inner_median('dvh_s'):.1f}x",
                ]
            )
        print()
        print(
            table(
                [
                    "dicompyler-core mode",
                    "dc whole s",
                    "rtcheck whole s",
                    "ratio",
                    "dc DVH s",
                    "rtcheck DVH s",
                    "DVH ratio",
                ],
                rows,
                title="dicompyler-core / rtcheck (whole process: rtcheck CLI for the breast plan; "
                "DVH time: the drivers)",
            )
        )
        print(
            "Target 'at least 5x faster than dicompyler-core default' (whole process): "
            + ("met" if dc_default.median / cli.median >= 5 else "NOT met")
        )

    if args.profile:
        print()
        print("cProfile of `rtcheck dvh <breast> --json FILE` (in one child process):")
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    PROFILE_DRIVER,
                    str(breast),
                    str(Path(tmp) / "b.json"),
                    str(args.profile_rows),
                ],
                capture_output=True,
                text=True,
                env=env,
            )
        text = proc.stderr
        start = text.find("profiled run:")
        print(text[start:].rstrip() if start >= 0 else text.strip()[-3000:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
