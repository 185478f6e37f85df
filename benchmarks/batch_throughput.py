"""Batch throughput: plans per minute of ``rtcheck batch`` over generated SABR plans.

Target (issue 4): at least 60 plans per minute for 20-structure SABR plans on 2 cores;
issue 11: at least 120 with the default (interpolating) model.
The archive holds ``--plans`` copies of the 20-structure lung plan of check_speed.py, one
patient folder each; the batch runs with ``--workers`` processes in a fresh process.

Run from the repository root: ``python benchmarks/batch_throughput.py [--plans 50]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import compile_rtcheck, rtcheck_command, table
from benchmarks.check_speed import twenty_structure_plan
from tests.fixtures.plans import write_plan_export


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=50, help="plans in the archive")
    parser.add_argument("--workers", type=int, default=2, help="batch worker processes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rtcheck-batch-bench-") as tmp:
        root = Path(tmp) / "archive"
        base = twenty_structure_plan()
        t0 = time.perf_counter()
        for i in range(args.plans):
            spec = replace(base, patient_id=f"BENCH{i:03d}")
            write_plan_export(root / f"BENCH{i:03d}", spec)
        generated = time.perf_counter() - t0
        print(f"generated {args.plans} plans in {generated:.1f} s", file=sys.stderr)
        command = [
            *rtcheck_command(),
            "batch",
            str(root),
            "--out",
            str(Path(tmp) / "out"),
            "--protocol",
            "sabr-lung",
            "--workers",
            str(args.workers),
        ]
        compile_rtcheck()
        t0 = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        if proc.returncode not in (0, 1):
            print(proc.stderr[-2000:], file=sys.stderr)
            sys.exit(1)
        rows = (Path(tmp) / "out" / "summary.csv").read_text().splitlines()[1:]
        print(
            table(
                ["plans", "workers", "wall s", "plans per minute", "rows in summary.csv"],
                [[args.plans, args.workers, wall, args.plans / wall * 60.0, len(rows)]],
                title="rtcheck batch throughput (target >= 120 plans per minute on 2 cores)",
            )
        )


if __name__ == "__main__":
    main()
