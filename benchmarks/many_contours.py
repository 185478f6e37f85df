"""Whole-process ``rtcheck check`` on a plan whose organ has 10^3, 10^4 (and 3 x 10^4)
contours: the time must grow about linearly with the number of contours (issue 13: an
organ of 10^4 contours once took 28.6 s against 1.4 s normally).

The plan is the small palliative export of the hostile-input tests
(tests/fixtures/hostile.py: a 10 mm PTV and a 20 mm BODY in a uniform 30 Gy, 5 fractions)
with a third ROI, ``Nodes``, of N small squares (0.4 mm, 1 mm apart), laid out three
ways: 25 to a plane (many planes), 1000 to a plane (10 to 30 planes), and one to a plane
(N planes 1 mm apart: the longest stack). It is checked against the shipped
``palliative`` protocol with ``--prescription 30/5``.

Run from the repository root: ``python benchmarks/many_contours.py [--runs 3]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import Measurement, measure, rtcheck_command, table
from rtcheck.synthetic import SyntheticRoi, sphere_planes
from tests.fixtures.hostile import many_contours, write_small_export

COUNTS = (1_000, 10_000, 30_000)
LAYOUTS = (("25 per plane", 25), ("1000 per plane", 1000), ("1 per plane", 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement")
    args = parser.parse_args()
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory(prefix="rtcheck-many-contours-") as tmp:
        zs = [float(z) for z in range(-20, 21, 2)]
        ptv = SyntheticRoi(1, "PTV", "PTV", sphere_planes((0.0, 0.0, 0.0), 10.0, zs, n=16))
        body = SyntheticRoi(2, "BODY", "EXTERNAL", sphere_planes((0.0, 0.0, 0.0), 20.0, zs, n=16))

        def command(folder: Path) -> list[str]:
            return [
                *rtcheck_command(),
                "check",
                str(folder),
                "--protocol",
                "palliative",
                "--prescription",
                "30/5",
                "--json",
                str(Path(tmp) / "report.json"),
            ]

        def run(label: str, folder: Path) -> Measurement:
            m = measure(label, command(folder), args.runs)
            if m.failed:
                print(f"measurement failed: {m.failed}", file=sys.stderr)
                sys.exit(1)
            return m

        write_small_export(Path(tmp) / "none", rois=[ptv, body])
        bare = run("no Nodes ROI", Path(tmp) / "none")
        base = bare.median
        rows.append([bare.label, 0, base, "-", bare.peak_rss_mb, "-"])
        for label, per_plane in LAYOUTS:
            previous: float | None = None
            for count in COUNTS:
                folder = Path(tmp) / f"{per_plane}-{count}"
                write_small_export(
                    folder, rois=[ptv, body, many_contours(count, per_plane=per_plane)]
                )
                m = run(f"{count} contours, {label}", folder)
                extra = m.median - base
                per_k = extra / (count / 1000)
                # Cost per contour against the smaller plan's (1 = linear). The 1,000-contour
                # plan's own extra cost is within the noise of the plan without Nodes, so
                # the first ratio is 10^4 against 10^3 only as a rough figure.
                growth = per_k / previous if previous and previous > 0 else float("nan")
                previous = per_k
                rows.append([m.label, count, m.median, per_k, m.peak_rss_mb, growth])
    print(
        table(
            [
                "plan",
                "contours",
                "median s",
                "s per 1000 contours",
                "peak RSS MB",
                "per contour vs previous row",
            ],
            rows,
            title="rtcheck check, whole process; time over the plan without Nodes per 1000 "
            "contours, and that cost per contour against the row above (1 = linear)",
        )
    )


if __name__ == "__main__":
    main()
