"""Helpers shared by the benchmark scripts: data location, child processes, tables.

Not a benchmark itself. The scripts run as ``python benchmarks/X.py`` from the repository
root, so this module is imported as ``_common`` (the script's folder is on ``sys.path``)
and the repository root is put on ``sys.path`` for ``tests.fixtures``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The repository root (parent of ``benchmarks/``).
REPO = Path(__file__).resolve().parents[1]
#: Where the real DICOM-RT data lives by default: never copied into the repository.
DEFAULT_DATA = REPO.parent / "shared" / "data"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    """``--data DIR``: the shared data folder (default ``<repo>/../shared/data``)."""
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        metavar="DIR",
        help=f"shared data folder holding nelms-dvh/ and breast-dicompyler/ "
        f"(default: {DEFAULT_DATA})",
    )


def require_data(data: Path, sub: str) -> Path:
    """``data / sub``, or exit with a clear message when it is absent."""
    folder = Path(data) / sub
    if not folder.is_dir():
        sys.exit(
            f"error: data folder {folder} not found. This benchmark needs the shared data "
            f"(see ../shared/data/README.md); pass its location with --data DIR."
        )
    return folder


def rtcheck_command() -> list[str]:
    """How to run the ``rtcheck`` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("rtcheck")
    if script.is_file():
        return [str(script)]
    found = shutil.which("rtcheck")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from rtcheck.cli.main import main; sys.exit(main())"]


_compiled = False


def compile_rtcheck() -> None:
    """Compile rtcheck's bytecode once, as ``pip install .`` does at install time.

    An editable install leaves bytecode to the first import, and an environment with
    ``PYTHONDONTWRITEBYTECODE=1`` (as some sandboxes and containers set) then compiles
    all of rtcheck (~24,000 lines, ~0.05 s of import time) in every process measured,
    which no installed copy does. The bytecode goes to the package's own
    ``__pycache__`` folders (ignored by git); Python checks it against each source
    file's time stamp, so a stale file is never used.
    """
    global _compiled
    if _compiled:
        return
    import rtcheck

    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(Path(rtcheck.__file__).parent)],
        check=True,
        capture_output=True,
    )
    _compiled = True


# --------------------------------------------------------------------------------------
# Measuring a child process
# --------------------------------------------------------------------------------------

#: Run in a fresh interpreter: runs the command given as arguments, then prints one JSON
#: line with its wall time, exit code, peak RSS (RUSAGE_CHILDREN: the command is this
#: wrapper's only child, so the figure is the command's own), and the command's last
#: stdout line when that line is JSON (a driver's inner timings).
_WRAPPER = r"""
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
wall = time.perf_counter() - t0
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
inner = None
lines = [l for l in r.stdout.splitlines() if l.strip()]
if lines and lines[-1].lstrip().startswith("{"):
    try:
        inner = json.loads(lines[-1])
    except ValueError:
        inner = None
print(json.dumps({"wall": wall, "rc": r.returncode, "maxrss_kb": usage.ru_maxrss,
                  "user": usage.ru_utime, "sys": usage.ru_stime, "inner": inner,
                  "stderr": r.stderr[-2000:]}))
"""


@dataclass
class Measurement:
    """Figures of repeated runs of one command (each run in a fresh wrapper process)."""

    label: str
    walls: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    inner: list[dict[str, Any]] = field(default_factory=list)
    failed: str | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.walls) if self.walls else math.nan

    @property
    def minimum(self) -> float:
        return min(self.walls) if self.walls else math.nan

    @property
    def peak_rss_mb(self) -> float:
        return max(self.rss_mb) if self.rss_mb else math.nan

    def inner_median(self, key: str) -> float:
        values = [float(i[key]) for i in self.inner if i and key in i]
        return statistics.median(values) if values else math.nan


def measure(
    label: str,
    command: Sequence[str],
    runs: int,
    *,
    env: dict[str, str] | None = None,
    progress: bool = True,
) -> Measurement:
    """Run ``command`` ``runs`` times, each under a fresh wrapper process (rtcheck's
    bytecode compiled first, as an installed copy has it)."""
    compile_rtcheck()
    result = Measurement(label)
    for i in range(runs):
        if progress:
            print(f"  {label}: run {i + 1}/{runs} ...", file=sys.stderr, flush=True)
        proc = subprocess.run(
            [sys.executable, "-c", _WRAPPER, *command],
            capture_output=True,
            text=True,
            env=env,
        )
        try:
            info = json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            result.failed = f"wrapper failed: {proc.stderr.strip()[-500:]}"
            return result
        if info["rc"] != 0:
            result.failed = f"exit {info['rc']}: {info['stderr'].strip()[-500:]}"
            return result
        result.walls.append(info["wall"])
        result.rss_mb.append(info["maxrss_kb"] / 1024.0)
        result.cpu.append(info["user"] + info["sys"])
        result.inner.append(info["inner"] or {})
    return result


def self_peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MB; Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits (fixed notation), '-' for None/NaN."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    v = float(value)
    if not math.isfinite(v):
        return "-"
    if v == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(v)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{v:.{decimals}f}"


_NUMBER = re.compile(r"^[+-]?[\d,]*\.?\d+(e[+-]?\d+)?x?$|^-$|^$", re.IGNORECASE)


def _numeric_cell(cell: Any) -> bool:
    """Numbers, and strings that print one ('+0.12', '1,003,657', '4.8x', '-')."""
    return not isinstance(cell, str) or bool(_NUMBER.match(cell.strip()))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> str:
    """A plain-text table: text columns left-aligned, numbers right-aligned."""
    cells = [[c if isinstance(c, str) else fmt(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    numeric = [
        all(_numeric_cell(row[i]) for row in rows if i < len(row)) for i in range(len(headers))
    ]

    def line(row: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(widths[i]) if numeric[i] else c.ljust(widths[i]) for i, c in enumerate(row)
        ).rstrip()

    out = []
    if title:
        out.append(title)
    out.append(line(list(headers)))
    out.append("  ".join("-" * w for w in widths))
    out.extend(line(r) for r in cells)
    return "\n".join(out)


class Stopwatch:
    """``with Stopwatch() as sw: ...; sw.seconds``."""

    def __enter__(self) -> Stopwatch:
        self._t0 = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0


def cpu_count() -> int:
    """CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
