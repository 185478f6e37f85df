"""``rtcheck watch`` and ``rtcheck history``: command functions registered in :mod:`rtcheck.cli`.

Free of imports from :mod:`rtcheck.cli`. Exit codes as every rtcheck command: ``watch
--once`` exits with the worst verdict of the plans it checked (0 pass, 1 fail, 3 error);
the continuous watcher exits 0 when stopped by SIGTERM or SIGINT; 2 usage error (bad
option, unknown protocol, malformed protocol or alias file, the ``watch`` extra
missing); 3 the folder or ledger cannot be used; 4 internal error.

``python -m rtcheck.cli.watch watch|history ...`` runs the two commands without the rest
of the command line (used by the tests).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from rtcheck.cli.errors import (
    EXIT_BY_VERDICT,
    EXIT_OK,
    exit_codes,
)
from rtcheck.cli.options import (
    AliasesOption,
    BetweenPlanes,
    BetweenPlanesOption,
    PlainHelpCommand,
    PrescriptionOption,
    ProtocolOption,
    StrictOption,
)

__all__ = ["history", "watch"]


def watch(
    export_dir: Annotated[
        Path,
        typer.Argument(
            metavar="EXPORT_DIR",
            help="The export folder the planning system writes into (only read).",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            metavar="FOLDER",
            help="Output folder (outside EXPORT_DIR): <patient>/<plan>-<version>.json|.html, "
            "ledger.sqlite and watch.log.",
        ),
    ],
    protocol: ProtocolOption = "auto",
    settle: Annotated[
        float,
        typer.Option(
            "--settle",
            metavar="SECONDS",
            min=0.0,
            help="Seconds without any file change before an export is checked.",
        ),
    ] = 10.0,
    polling: Annotated[
        bool, typer.Option("--polling", help="Poll the folder (network shares) instead of events.")
    ] = False,
    once: Annotated[
        bool,
        typer.Option(
            "--once",
            help="Check what is there (waiting out the settle time) and exit with the worst "
            "verdict: for cron or a post-export script. Needs no watchdog.",
        ),
    ] = False,
    aliases: AliasesOption = None,
    strict: StrictOption = False,
    between_planes: BetweenPlanesOption = BetweenPlanes.SHAPE,
    prescription: PrescriptionOption = None,
    debug: Annotated[bool, typer.Option("--debug", help="Tracebacks of internal errors.")] = False,
) -> None:
    """Check each plan exported into EXPORT_DIR once, when its export is complete.

    Logs one JSON line per event to stderr (and OUT/watch.log): while an export is still
    changing, a 'waiting' line saying what it waits for; an 'error' line gives the folder
    and the reason. Stop with SIGTERM or Ctrl-C.
    """
    with exit_codes(debug):
        from rtcheck.prescription import parse_prescription
        from rtcheck.watch import run_watch

        verdict = run_watch(
            export_dir,
            out,
            protocol=protocol,
            settle=settle,
            polling=polling,
            once=once,
            between_planes=between_planes.value,
            prescription=None if prescription is None else parse_prescription(prescription),
            aliases=aliases,
            strict=strict,
        )
    raise typer.Exit(EXIT_BY_VERDICT[verdict] if once else EXIT_OK)


def history(
    patient_id: Annotated[
        str | None,
        typer.Argument(
            metavar="PATIENT_ID", help="Only this patient's checks (the DICOM Patient ID)."
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out", metavar="FOLDER", help="The output folder of rtcheck watch (holds the ledger)."
        ),
    ] = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="JSON list instead of a table.")] = False,
) -> None:
    """List past checks of rtcheck watch from OUT/ledger.sqlite, oldest first."""
    with exit_codes(False):
        from rtcheck.watch import LEDGER_NAME, Ledger

        ledger = Ledger(out / LEDGER_NAME, read_only=True)
        try:
            records = ledger.records(patient_id)
        finally:
            ledger.close()
    if as_json:
        typer.echo(json.dumps([r.to_json() for r in records], indent=2))
        return
    header = ("finished (UTC)", "patient", "plan", "verdict", "report / message")
    rows: list[tuple[str, ...]] = [
        (
            r.finished_utc or f"(started {r.started_utc})",
            r.patient_id or "-",
            r.plan_label or r.plan_uid or "-",
            r.verdict or "unfinished",
            r.report or (r.message or "").replace("\n", "; "),
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    line: Callable[[tuple[str, ...]], str] = lambda row: "  ".join(  # noqa: E731
        [*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]]
    )
    typer.echo(line(header))
    for row in rows:
        typer.echo(line(row))
    if not rows:
        typer.echo("(no checks recorded)")


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None)
    app.command("watch", cls=PlainHelpCommand)(watch)
    app.command("history", cls=PlainHelpCommand)(history)
    return app


if __name__ == "__main__":
    _app()()
