"""Storage node latency and throughput: last object received -> report, and a 20-plan push.

A real ``rtcheck serve`` process listens on a free loopback port. First ``--runs`` plans
are sent one at a time (one association each, CT included unless ``--no-ct``): the
latency is the time from the response to the last C-STORE to the ``checked`` event in
``OUT/serve.log``, against the target of settle + a few seconds. Then ``--plans`` other
plans are pushed at once over ``--associations`` parallel associations: the throughput is
objects stored per second and plans reported per minute, from the first object sent to
the last report written.

Run from the repository root: ``python benchmarks/serve_latency.py [--settle 2]
[--runs 3] [--plans 20] [--associations 4] [--no-ct] [--between-planes slab]``. Needs
pynetdicom (``pip install '.[serve]'``).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from dataclasses import replace
from datetime import datetime
from functools import partial
from pathlib import Path

from _common import table

from tests.fixtures.plans import write_plan_export
from tests.fixtures.scu import count, events, export_files, node, send, wait_for
from tests.test_golden import PERIPHERAL, lung


def _wall(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _checked_at(out: Path, patient: str) -> float:
    (event,) = [e for e in events(out) if e["event"] == "checked" and e["patient_id"] == patient]
    return _wall(event["ts"])


def _checked_once(out: Path, patient: str) -> bool:
    return count(out, "checked", patient) == 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=2.0, help="--settle of the node")
    parser.add_argument("--runs", type=int, default=3, help="plans sent one after another")
    parser.add_argument("--plans", type=int, default=20, help="plans of the push")
    parser.add_argument("--associations", type=int, default=4, help="parallel associations")
    parser.add_argument("--no-ct", action="store_true", help="send the RT objects only")
    parser.add_argument(
        "--between-planes", default="shape", help="--between-planes of the node (its default)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rtcheck-serve-bench-") as tmp:
        staging, out = Path(tmp) / "staging", Path(tmp) / "out"
        names = [f"LAT{i}" for i in range(args.runs)] + [f"PUSH{i:02d}" for i in range(args.plans)]
        files: dict[str, list[Path]] = {}
        for name in names:
            folder = write_plan_export(
                staging / name, replace(lung(PERIPHERAL, 3, 18), patient_id=name)
            )
            every = export_files(folder)
            files[name] = [p for p in every if p.parent == folder] if args.no_ct else every
        options = ("--protocol", "sabr-lung", "--between-planes", args.between_planes)
        with node(out, *options, settle=str(args.settle)) as n:
            latency_rows = []
            for name in names[: args.runs]:
                send(n.port, files[name])
                last = time.time()
                wait_for(partial(_checked_once, out, name), args.settle + 120)
                latency = _checked_at(out, name) - last
                latency_rows.append([name, len(files[name]), args.settle, latency])

            push = names[args.runs :]
            queue = list(push)
            lock = threading.Lock()

            def sender() -> None:
                while True:
                    with lock:
                        if not queue:
                            return
                        name = queue.pop(0)
                    send(n.port, files[name])

            started = time.time()
            threads = [threading.Thread(target=sender) for _ in range(args.associations)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            sent = time.time()
            wait_for(
                lambda: sum(count(out, "checked", name) for name in push) == len(push),
                args.settle + 60 * len(push),
            )
            last_report = max(_checked_at(out, name) for name in push)
            objects = sum(len(files[name]) for name in push)
    print(
        table(
            ["plan", "objects", "settle s", "latency s"],
            latency_rows,
            title=f"rtcheck serve ({args.between_planes}): last object received -> report "
            "written (target <= settle + a few s)",
        )
    )
    print()
    headers = ["plans", "objects", "associations", "transfer s", "objects/s"]
    headers += ["to last report s", "plans/min"]
    transfer, total = sent - started, last_report - started
    row = [len(push), objects, args.associations, transfer, objects / transfer, total]
    row.append(60 * len(push) / total)
    title = f"rtcheck serve ({args.between_planes}): a {len(push)}-plan push"
    print(table(headers, [row], title=title))


if __name__ == "__main__":
    main()
