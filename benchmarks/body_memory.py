"""Peak memory and time of one DVH of a synthetic 15-litre BODY.

The BODY is an elliptic cylinder (34 x 22 cm, 26 cm long, axis along z) contoured every
2.5 mm with 200-vertex polygons whose half-axes vary gently along z (as a real body's
would), in a smooth dose (a 50 Gy Gaussian "target" of 3 cm sigma on a 2 Gy background,
plus a gentle gradient) on a dose grid covering it with 1 cm margin. Each dose-grid
spacing (default 2.5 mm and 1.25 mm) runs in a fresh child process that builds the
inputs, calls ``rtcheck.dvh.compute_dvh`` once and reports:

* the engine's volume and the exact slab volume (shoelace areas x slab thickness,
  computed here independently);
* the time of ``compute_dvh`` alone;
* the child's peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``) and, to separate the engine
  from its inputs, the RSS just before the call (interpreter, NumPy, dose grid, contours).

Target (issue 2): a 15-litre BODY on a 2.5 mm grid in well under 2 GB.

Run from the repository root::

    python benchmarks/body_memory.py [--spacing 2.5 1.25] [--vertices 200]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

from _common import REPO, self_peak_rss_mb, table


def _current_rss_mb() -> float:
    """Resident set size now (MB), from /proc (Linux); NaN elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return math.nan


def child(args: argparse.Namespace) -> None:
    """Build the BODY and the dose, run one DVH, print one JSON line."""
    import numpy as np

    from rtcheck.dvh.core import ContourPlane, DoseGrid, compute_dvh

    a0, b0 = args.width / 2, args.depth / 2
    n_planes = round(args.length / args.contour_spacing) + 1
    zs = np.arange(n_planes) * args.contour_spacing
    t = np.linspace(0.0, 2 * np.pi, args.vertices, endpoint=False)
    planes = []
    for z in zs:
        # Half-axes vary by a few per cent along the body (shoulders, waist).
        s = 1.0 + 0.04 * math.sin(2 * math.pi * z / args.length)
        a, b = a0 * s, b0 * (2.0 - s)
        poly = np.column_stack([a * np.cos(t), b * np.sin(t) - 10.0])
        planes.append(ContourPlane(float(z), (poly,)))

    # Exact slab volume, independently: shoelace areas x (halfway slabs, flat end caps).
    areas = np.array(
        [
            0.5
            * abs(float(np.sum(p[:, 0] * np.roll(p[:, 1], -1) - np.roll(p[:, 0], -1) * p[:, 1])))
            for pl in planes
            for p in pl.polygons
        ]
    )
    exact_cc = float(np.sum(areas) * args.contour_spacing) / 1000.0

    h = args.dose_spacing
    margin = 10.0
    x = np.arange(-a0 * 1.05 - margin, a0 * 1.05 + margin + h / 2, h)
    y = np.arange(-10.0 - b0 * 1.05 - margin, -10.0 + b0 * 1.05 + margin + h / 2, h)
    z = np.arange(zs[0] - margin, zs[-1] + margin + h / 2, h)
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij", sparse=True)
    r2 = (xx - 40.0) ** 2 + (yy + 30.0) ** 2 + (zz - args.length / 2) ** 2
    dose = 2.0 + 48.0 * np.exp(-r2 / (2 * 30.0**2)) + 0.01 * (yy + 120.0)
    grid = DoseGrid(x, y, z, np.ascontiguousarray(dose, dtype=np.float64))
    del zz, yy, xx, r2, dose

    before = _current_rss_mb()
    t0 = time.perf_counter()
    dvh = compute_dvh(planes, grid)
    seconds = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "spacing": h,
                "grid": [int(z.size), int(y.size), int(x.size)],
                "grid_mb": grid.dose.nbytes / 2**20,
                "planes": n_planes,
                "vertices": args.vertices,
                "volume_cc": dvh.volume_cc,
                "exact_cc": exact_cc,
                "outside_cc": dvh.volume_outside_cc,
                "mean_gy": dvh.mean_gy,
                "max_gy": dvh.max_gy,
                "samples": dvh.samples,
                "seconds": seconds,
                "rss_before_mb": before,
                "peak_mb": self_peak_rss_mb(),
            }
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--spacing",
        type=float,
        nargs="+",
        default=[2.5, 1.25],
        metavar="MM",
        help="dose grid spacings to run, one child each (default 2.5 1.25)",
    )
    parser.add_argument("--vertices", type=int, default=200, help="vertices per contour")
    parser.add_argument(
        "--contour-spacing",
        type=float,
        default=2.5,
        metavar="MM",
        help="distance between contour planes (default 2.5)",
    )
    parser.add_argument(
        "--width", type=float, default=340.0, metavar="MM", help="left-right size (default 340)"
    )
    parser.add_argument(
        "--depth",
        type=float,
        default=220.0,
        metavar="MM",
        help="anterior-posterior size (default 220)",
    )
    parser.add_argument(
        "--length",
        type=float,
        default=260.0,
        metavar="MM",
        help="superior-inferior length (default 260)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dose-spacing", type=float, default=2.5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        child(args)
        return 0

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    rows = []
    for spacing in args.spacing:
        print(f"  dose grid {spacing} mm ...", file=sys.stderr, flush=True)
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            "--dose-spacing",
            str(spacing),
            "--vertices",
            str(args.vertices),
            "--contour-spacing",
            str(args.contour_spacing),
            "--width",
            str(args.width),
            "--depth",
            str(args.depth),
            "--length",
            str(args.length),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            print(f"error: child for {spacing} mm failed:\n{proc.stderr.strip()[-2000:]}")
            return 1
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(
            [
                f"{r['spacing']:g}",
                "x".join(str(n) for n in reversed(r["grid"])),
                f"{r['grid_mb']:.0f}",
                f"{r['volume_cc'] / 1000:.3f}",
                f"{100 * (r['volume_cc'] - r['exact_cc']) / r['exact_cc']:+.1e}",
                f"{r['outside_cc']:.3g}",
                f"{r['samples']:,}",
                f"{r['seconds']:.2f}",
                f"{r['rss_before_mb']:.0f}",
                f"{r['peak_mb']:.0f}",
            ]
        )
        planes, vertices = r["planes"], r["vertices"]
    print(
        f"Synthetic BODY: elliptic cylinder {args.width / 10:g} x {args.depth / 10:g} cm, "
        f"{args.length / 10:g} cm long; {planes} planes every {args.contour_spacing:g} mm, "
        f"{vertices} vertices each; one compute_dvh per child process"
    )
    print()
    print(
        table(
            [
                "dose grid mm",
                "grid x*y*z",
                "dose MB",
                "volume L",
                "vs exact %",
                "outside cc",
                "samples",
                "DVH s",
                "RSS before MB",
                "peak RSS MB",
            ],
            rows,
            title="compute_dvh of the BODY (peak RSS: whole child, including the dose grid)",
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
