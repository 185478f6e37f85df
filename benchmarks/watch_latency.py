"""Watch latency: time from the last file of an export to its report.

Target (issue 4): the report within the settle time + 2 s. A real ``rtcheck watch``
process watches an empty folder; the benchmark copies the files of a generated lung SABR
plan into a new patient folder, notes when the last one is written, and waits for the
``checked`` event in ``OUT/watch.log``.

Run from the repository root: ``python benchmarks/watch_latency.py [--settle 2] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import rtcheck_command, table
from tests.fixtures.plans import write_plan_export
from tests.test_golden import PERIPHERAL, lung


def checked_count(log: Path) -> int:
    if not log.is_file():
        return 0
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    return sum(1 for line in lines if json.loads(line).get("event") in ("checked", "error"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=2.0, help="--settle of the watcher")
    parser.add_argument("--runs", type=int, default=3, help="exports copied one after another")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="rtcheck-watch-bench-") as tmp:
        staging, watched, out = Path(tmp) / "staging", Path(tmp) / "export", Path(tmp) / "out"
        watched.mkdir()
        sources = []
        for i in range(args.runs):
            spec = replace(lung(PERIPHERAL, 3, 18), patient_id=f"WATCH{i}")
            sources.append(write_plan_export(staging / f"WATCH{i}", spec))
        command = [
            *rtcheck_command(),
            "watch",
            str(watched),
            "--out",
            str(out),
            "--protocol",
            "sabr-lung",
            "--settle",
            str(args.settle),
        ]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(2.0)  # let the watcher start
            log = out / "watch.log"
            for i, src in enumerate(sources):
                before = checked_count(log)
                dst = watched / src.name
                files = sorted(p for p in src.rglob("*") if p.is_file())
                for f in files:
                    target = dst / f.relative_to(src)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(f, target)
                last_write = time.perf_counter()
                deadline = last_write + args.settle + 60
                while checked_count(log) <= before and time.perf_counter() < deadline:
                    time.sleep(0.05)
                latency = time.perf_counter() - last_write
                rows.append([i + 1, len(files), args.settle, latency, latency - args.settle])
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(
        table(
            ["export", "files", "settle s", "latency s", "beyond settle s"],
            rows,
            title="rtcheck watch: last file written -> report (target <= settle + 2 s)",
        )
    )


if __name__ == "__main__":
    main()
