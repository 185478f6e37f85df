"""``rtcheck batch``: the command function, registered in :mod:`rtcheck.cli`.

Kept apart from :mod:`rtcheck.cli` (which imports this module to register it) and free of
imports from it, so that the two never import each other. The command maps errors to the
exit codes every rtcheck command uses: 0 all plans pass, 1 a plan fails, 2 usage error
(bad option, unknown protocol, malformed protocol or alias file, the ``dask`` extra
missing, an output folder that is not empty without ``--overwrite``), 3 a plan or folder
could not be evaluated (or ROOT is unusable, or the output folder cannot be written: a
full disk, a read-only folder), 4 internal error.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rtcheck.cli.errors import (
    EXIT_BY_VERDICT,
    err,
    exit_codes,
)
from rtcheck.cli.options import (
    AliasesOption,
    BetweenPlanes,
    BetweenPlanesOption,
    PrescriptionOption,
    ProtocolOption,
    StrictOption,
)

if TYPE_CHECKING:
    from rtcheck.batch import BatchResult, PlanOutcome

__all__ = ["batch"]


_Start = Callable[[int], None]
_Done = Callable[["PlanOutcome"], None]


@contextmanager
def _progress(enabled: bool, root: Path) -> Iterator[tuple[_Start | None, _Done | None]]:
    """A rich progress bar on stderr: a spinner while scanning, then one step per plan."""
    if not enabled:
        yield None, None
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    counts = {"pass": 0, "fail": 0, "error": 0}
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as bar:
        task = bar.add_task(f"scanning {escape(str(root))}", total=None)

        def start(total: int) -> None:
            bar.update(task, description="checking", total=total, completed=0)

        def done(outcome: PlanOutcome) -> None:
            counts[outcome.verdict] = counts.get(outcome.verdict, 0) + 1
            summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
            bar.update(task, advance=1, description=f"checking ({summary})")

        yield start, done


def _report(result: BatchResult, debug: bool) -> None:
    """One line per plan that does not pass (stderr), then the totals (stdout)."""
    for o in result.outcomes:
        if o.verdict == "pass":
            continue
        who = " / ".join(x for x in (o.patient_id, o.plan_label) if x) or "folder"
        what = o.message or f"{o.major} major, {o.minor} minor deviation(s)"
        if o.failed_rules:
            what += f" (failed: {', '.join(o.failed_rules)})"
        err(f"{o.verdict}: {who} ({o.source}): {what}")
        if debug and o.detail:
            err(o.detail.rstrip())
    for note in sorted({n for o in result.outcomes for n in o.notes}):
        err(f"note: {note}")
    if result.warnings:
        err(f"warning: {len(result.warnings)} scan warning(s), listed in the index")
        if debug:
            for warning in result.warnings:
                err(f"warning: {warning}")
    counts = result.counts
    typer.echo(
        f"{len(result.outcomes)} plan(s): {counts['pass']} pass, {counts['fail']} fail, "
        f"{counts['error']} error. Reports: {result.out / 'index.html'}, "
        f"{result.out / 'summary.csv'}"
    )


def batch(
    root: Annotated[
        Path,
        typer.Argument(
            metavar="ROOT",
            help="Archive folder: patient folders (any depth), or one export folder.",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            metavar="FOLDER",
            help="Output folder (outside ROOT) for <patient>/<plan>.json|.html, "
            "index.html and summary.csv.",
        ),
    ],
    protocol: ProtocolOption = "auto",
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            metavar="N",
            min=1,
            help="Processes of the local pool (default: one per CPU).",
        ),
    ] = None,
    executor: Annotated[
        str,
        typer.Option(
            "--executor",
            metavar="process|dask",
            help="'process': a local process pool; 'dask': a Dask distributed cluster "
            "(needs the optional extra 'dask' of rtcheck, and --scheduler).",
        ),
    ] = "process",
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            metavar="ADDRESS",
            help="Dask scheduler ADDRESS, e.g. tcp://host:8786 (with --executor dask).",
        ),
    ] = None,
    aliases: AliasesOption = None,
    strict: StrictOption = False,
    between_planes: BetweenPlanesOption = BetweenPlanes.SHAPE,
    prescription: PrescriptionOption = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Write into an output folder that is not empty (an earlier run's reports): "
            "this run's reports, index.html and summary.csv replace same-named files, "
            "nothing else is removed. Without it such a folder is refused (exit 2).",
        ),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show debug logging and tracebacks of internal errors.")
    ] = False,
) -> None:
    """Check every plan under ROOT: exit 0 all pass, 1 any fails, 3 any cannot be evaluated.

    The output folder must be new or empty, unless --overwrite is given.
    """
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    with exit_codes(debug):
        from rtcheck.batch import run_batch
        from rtcheck.prescription import parse_prescription

        with _progress(sys.stderr.isatty(), root) as (on_start, on_done):
            result = run_batch(
                root,
                out,
                protocol=protocol,
                workers=workers,
                executor=executor,
                scheduler=scheduler,
                aliases=aliases,
                strict=strict,
                between_planes=between_planes.value,
                prescription=None if prescription is None else parse_prescription(prescription),
                on_start=on_start,
                on_done=on_done,
                overwrite=overwrite,
            )
    _report(result, debug)
    raise typer.Exit(EXIT_BY_VERDICT[result.verdict])
