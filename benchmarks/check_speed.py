"""Whole-process time of ``rtcheck check`` on a 20-structure lung SABR plan (2.5 mm grid).

Target (issue 3): at most 2 s per plan; issue 11: at most 1.5 s with the default
(interpolating) model. The plan is generated (tests/fixtures/plans.py):
three lesions (GTV and PTV each), lungs, both lungs separately, the five mediastinal
organs, spinal cord, chest wall, both brachial plexuses and the body: 20 ROIs, CT slices
and dose every 2.5 mm, checked against the shipped ``sabr-lung`` protocol.

Run from the repository root: ``python benchmarks/check_speed.py [--runs 5]``.
``--profile 25`` also profiles one run of the default model (cProfile, in a child
process) and prints the 25 rtcheck functions of highest cumulative time, with the time
spent importing SciPy: where the rest of the time goes (profiled times run about a
third above the unprofiled ones).
"""

from __future__ import annotations

import argparse
import marshal
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import Measurement, measure, rtcheck_command, table
from tests.fixtures.plans import (
    PlanSpec,
    cylinder,
    ellipsoid,
    sphere,
    write_plan_export,
)
from tests.test_golden import lung_anatomy


def twenty_structure_plan() -> PlanSpec:
    """Three peripheral lesions in 3 x 18 Gy and 14 organs: 20 ROIs."""
    lesions = []
    for i, centre in enumerate(
        ((80.0, -20.0, 0.0), (-85.0, -15.0, 30.0), (70.0, 30.0, -50.0)), start=1
    ):
        lesions += [sphere(f"GTV{i}", centre, 8, "GTV"), sphere(f"PTV{i}", centre, 13, "PTV")]
    organs = (
        ellipsoid("Lung_L", (60, 0, 0), (55, 85, 105)),
        ellipsoid("Lung_R", (-60, 0, 0), (55, 85, 105)),
        sphere("Chestwall", (115, -20, 0), 10),
        cylinder("BrachialPlex_L", (60, 20, 100), 6, 40),
        cylinder("BrachialPlex_R", (-60, 20, 100), 6, 40),
        ellipsoid("BODY", (0, 0, 0), (160, 120, 130), "EXTERNAL"),
        sphere("Stomach", (40, -60, -110), 25),
    )
    shapes = (*lesions, *lung_anatomy(), *organs)
    assert len(shapes) == 20
    return PlanSpec(
        shapes=shapes,
        target_levels=tuple((f"PTV{i}", 54.0) for i in range(1, 4)),
        fractions=3,
        dose_per_fraction_gy=18.0,
        label="LUNG_SABR_3LES",
    )


def profile(command: list[str], top: int, out: Path) -> str:
    """One profiled run of ``rtcheck`` ``command`` (its arguments): the ``top`` rtcheck
    functions by cumulative time, and the time spent importing SciPy."""
    subprocess.run(
        [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "rtcheck", *command],
        check=False,
        capture_output=True,
    )
    # cProfile writes its statistics with marshal: {(file, line, function): (primitive
    # calls, calls, own s, cumulative s, callers)}, what pstats.Stats reads.
    entries: dict[tuple[str, int, str], tuple[int, int, float, float, object]] = marshal.loads(
        out.read_bytes()
    )
    rows: list[tuple[str, float]] = []
    scipy_import = 0.0
    for (filename, line, name), (_, _, _, cumulative, _) in entries.items():
        if "/rtcheck/" in filename and not filename.endswith("__main__.py"):
            rows.append((f"{Path(filename).name}:{line}({name})", cumulative))
        if name == "<module>" and filename.endswith(("scipy/ndimage/__init__.py",
                                                      "scipy/spatial/__init__.py")):  # fmt: skip
            scipy_import += cumulative
    rows.sort(key=lambda r: -r[1])
    rows.append(("SciPy import (ndimage + spatial)", scipy_import))
    return table(
        ["function", "cumulative s"],
        rows[:top] + rows[-1:],
        title="one profiled run, default model (cProfile)",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="also profile one run and print the N costliest rtcheck functions",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rtcheck-check-speed-") as tmp:
        folder = write_plan_export(Path(tmp) / "plan", twenty_structure_plan())
        out = Path(tmp) / "report.json"
        command = [
            *rtcheck_command(),
            "check",
            str(folder),
            "--protocol",
            "sabr-lung",
            "--json",
            str(out),
        ]
        # The default model and the slab model, run by run in turn (same machine state).
        default = Measurement("rtcheck check, 20 ROIs (default model)")
        slab = Measurement("  same, --between-planes slab")
        for _ in range(args.runs):
            for into, extra in ((default, []), (slab, ["--between-planes", "slab"])):
                one = measure(into.label, [*command, *extra], 1)
                if one.failed:
                    print(f"measurement failed: {one.failed}", file=sys.stderr)
                    sys.exit(1)
                into.walls += one.walls
                into.rss_mb += one.rss_mb
                into.cpu += one.cpu
        print(
            table(
                ["task", "runs", "median s", "min s", "CPU s", "peak RSS MB"],
                [
                    [m.label, len(m.walls), m.median, m.minimum, median(m.cpu), m.peak_rss_mb]
                    for m in (default, slab)
                ],
                title="rtcheck check, whole process (target <= 1.5 s)",
            )
        )
        if args.profile > 0:
            print()
            print(profile(command[len(rtcheck_command()) :], args.profile, Path(tmp) / "prof"))


if __name__ == "__main__":
    main()
