"""Command line: ``rtcheck dvh``, ``rtcheck demo``.

The CLI owns the console and the exit codes; the library only returns results or raises
:class:`rtcheck.errors.RtcheckError`. Exit codes for every command:

0 success (and, for checks, compliant) · 1 non-compliant · 2 usage error ·
3 cannot evaluate (unreadable or inconsistent input, one line per problem naming the
file) · 4 internal error (rerun with ``--debug`` for the traceback).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable
from enum import IntEnum
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer

from rtcheck import __version__
from rtcheck.cli.batch import batch
from rtcheck.cli.errors import err, stdout_closed
from rtcheck.cli.options import (
    BetweenPlanes,
    BetweenPlanesOption,
    PlainHelpCommand,
    PrescriptionOption,
)
from rtcheck.cli.serve import serve
from rtcheck.cli.watch import history, watch
from rtcheck.errors import (
    InputErrors,
    MetricSyntaxError,
    ProtocolError,
    RtcheckError,
    UsageError,
)


class ExitCode(IntEnum):
    """Process exit codes shared by every rtcheck command."""

    OK = 0
    NON_COMPLIANT = 1
    USAGE = 2
    CANNOT_EVALUATE = 3
    INTERNAL = 4


app = typer.Typer(
    name="rtcheck",
    help="DICOM-RT plan compliance checker: accurate DVHs and protocol rules.\n\n"
    "'rtcheck FOLDER' is short for 'rtcheck check FOLDER --protocol auto'.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

P = ParamSpec("P")
R = TypeVar("R")


def _err(message: str) -> None:
    err(message)


def _colour() -> bool:
    """Colour on a terminal, unless NO_COLOR is set (https://no-color.org) or TERM=dumb."""
    return (
        sys.stdout.isatty()
        and not os.environ.get("NO_COLOR")
        and os.environ.get("TERM", "") != "dumb"
    )


def _guarded(func: Callable[P, R]) -> Callable[P, R]:
    """Map rtcheck's errors to exit codes; hide tracebacks unless --debug."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        debug = bool(kwargs.get("debug"))
        logging.basicConfig(
            level=logging.DEBUG if debug else logging.WARNING,
            format="%(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except BrokenPipeError:
            raise stdout_closed() from None
        except InputErrors as exc:
            for e in exc.errors:
                _err(f"error: {e}")
            raise typer.Exit(ExitCode.CANNOT_EVALUATE) from None
        except RtcheckError as exc:
            _err(f"error: {exc}")
            raise typer.Exit(
                ExitCode.USAGE if _is_usage(exc) else ExitCode.CANNOT_EVALUATE
            ) from None
        except Exception as exc:
            if debug:
                traceback.print_exc()
            _err(
                f"internal error: {type(exc).__name__}: {exc}\n"
                "This is a bug in rtcheck. Rerun with --debug and report the output."
            )
            raise typer.Exit(ExitCode.INTERNAL) from None

    return wrapper  # functools.wraps keeps the signature typer reads


def _check_outputs(**targets: Path | str | None) -> None:
    """Usage error for an output file that cannot be written where it is asked for.

    Checked before any work, so a typo in a path does not cost a whole computation.
    """
    for option, target in targets.items():
        if target is None or target == "-":
            continue
        path = Path(target)
        flag = "--" + option.removesuffix("_out").replace("_", "-")
        if path.is_dir():
            raise UsageError(f"{flag} {path}: is a folder, give a file name")
        if not path.parent.is_dir():
            raise UsageError(f"{flag} {path}: folder {path.parent} does not exist")


def _write(path: Path | str, text: str) -> None:
    """Write an output file atomically; a failure (permissions, full disk) is an error
    naming it, and leaves neither a truncated file nor a temporary one."""
    from rtcheck.output_files import write_text

    write_text(Path(path), text)


def _is_usage(exc: RtcheckError) -> bool:
    from rtcheck.dicom_io import AmbiguousExportError

    # An ambiguous folder (several plans, two doses of one kind) needs the user to choose.
    return isinstance(exc, UsageError | MetricSyntaxError | ProtocolError | AmbiguousExportError)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rtcheck {__version__}")
        raise typer.Exit(ExitCode.OK)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """DICOM-RT plan compliance checker."""


DebugOption = Annotated[
    bool, typer.Option("--debug", help="Show debug logging and tracebacks of internal errors.")
]


@app.command(cls=PlainHelpCommand)
@_guarded
def dvh(
    path: Annotated[
        Path | None,
        typer.Argument(metavar="FOLDER", help="Export folder (searched recursively)."),
    ] = None,
    structures: Annotated[
        Path | None,
        typer.Option("--structures", metavar="FILE", help="RTSTRUCT file (explicit mode)."),
    ] = None,
    dose: Annotated[
        list[Path] | None,
        typer.Option(
            "--dose", metavar="FILE", help="RTDOSE file (explicit mode); repeat for beam doses."
        ),
    ] = None,
    plan: Annotated[
        Path | None,
        typer.Option(
            "--plan",
            metavar="FILE",
            help="RTPLAN file: the plan to use (explicit mode or a folder holding several plans).",
        ),
    ] = None,
    roi: Annotated[
        list[str] | None,
        typer.Option("--roi", metavar="NAME", help="ROI name (repeatable); default all."),
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            metavar="METRIC",
            help="TG-263 metric, e.g. 'D95%[Gy]', 'V20Gy[%]' "
            "(repeatable); default D98%, D95%, D50%, D2%, D0.03cc.",
        ),
    ] = None,
    json_out: Annotated[
        str | None,
        typer.Option(
            "--json", metavar="FILE|-", help="Write the JSON report to FILE, or '-' for stdout."
        ),
    ] = None,
    csv_out: Annotated[
        Path | None, typer.Option("--csv", metavar="FILE", help="Write a CSV table to FILE.")
    ] = None,
    no_curves: Annotated[
        bool, typer.Option("--no-curves", help="Leave the DVH curves out of the JSON.")
    ] = False,
    between_planes: BetweenPlanesOption = BetweenPlanes.SHAPE,
    prescription: PrescriptionOption = None,
    debug: DebugOption = False,
) -> None:
    """Dose-volume histograms and TG-263 metrics of every structure of a plan."""
    from rtcheck.analysis import analyse
    from rtcheck.prescription import parse_prescription, resolve_prescription
    from rtcheck.reports.dvh import format_table, to_csv, to_json

    _check_outputs(json_out=json_out, csv_out=csv_out)
    given = None if prescription is None else parse_prescription(prescription)
    export = _load(path, structures, dose, plan)
    rx, rx_warnings, rx_problem = resolve_prescription(export.plan, given)
    result = analyse(
        export,
        roi or (),
        metric or None,
        between_planes.value,
        None if rx is None else rx.total_gy,
    )
    to_stdout = json_out == "-"
    for warning in rx_warnings:
        _err(f"warning: {warning}")
    if not to_stdout:
        typer.echo(_header(export, rx, rx_problem if given is not None else ""))
        typer.echo(format_table(result))
    for note in result.notes:
        _err(f"note: {note}")
    for warning in result.warnings:
        _err(f"warning: {warning}")
    for problem in result.problems:
        _err(f"error: {problem}")
    document = to_json(result, curves=not no_curves)
    if json_out is not None:
        text = json.dumps(document, indent=2)
        if to_stdout:
            typer.echo(text)
        else:
            _write(json_out, text + "\n")
    if csv_out is not None:
        _write(csv_out, to_csv(result))
    if result.problems:
        raise typer.Exit(ExitCode.CANNOT_EVALUATE)


def _load(
    path: Path | None, structures: Path | None, dose: list[Path] | None, plan: Path | None
) -> Any:
    from rtcheck import dicom_io

    if structures is not None or dose:
        if path is not None:
            raise UsageError("give either PATH or --structures/--dose, not both")
        if structures is None or not dose:
            raise UsageError("explicit mode needs both --structures and --dose")
        return dicom_io.load_files(structures, dose if len(dose) > 1 else dose[0], plan)
    if path is None:
        raise UsageError("give an export folder, or --structures and --dose")
    return dicom_io.load_path(path, plan=plan)


def _header(export: Any, rx: Any = None, rx_problem: str = "") -> str:
    from rtcheck.reports.common import plan_lines

    lines = [f"Patient {export.patient_id}", *plan_lines(export.plan, export.dose, rx, rx_problem)]
    return "\n".join(lines) + "\n"


@app.command(cls=PlainHelpCommand)
@_guarded
def check(
    path: Annotated[
        Path | None,
        typer.Argument(metavar="FOLDER", help="Export folder (searched recursively)."),
    ] = None,
    protocol: Annotated[
        str,
        typer.Option(
            "--protocol",
            metavar="ID|FILE|auto",
            help="Shipped protocol id, a protocol YAML file, or "
            "'auto' to pick by the protocols' select criteria.",
        ),
    ] = "auto",
    aliases: Annotated[
        Path | None,
        typer.Option(
            "--aliases", metavar="FILE", help="Institution alias file (YAML: ROLE: [pattern, ...])."
        ),
    ] = None,
    structures: Annotated[
        Path | None,
        typer.Option("--structures", metavar="FILE", help="RTSTRUCT file (explicit mode)."),
    ] = None,
    dose: Annotated[
        list[Path] | None,
        typer.Option("--dose", metavar="FILE", help="RTDOSE file (explicit mode)."),
    ] = None,
    plan: Annotated[
        Path | None, typer.Option("--plan", metavar="FILE", help="RTPLAN file.")
    ] = None,
    json_out: Annotated[
        str | None,
        typer.Option("--json", metavar="FILE|-", help="Write the JSON report to FILE, or '-'."),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Minor deviations fail the plan too.")
    ] = False,
    html_out: Annotated[
        Path | None,
        typer.Option(
            "--html", metavar="FILE", help="Write a self-contained HTML report (with DVHs) to FILE."
        ),
    ] = None,
    csv_out: Annotated[
        Path | None,
        typer.Option("--csv", metavar="FILE", help="Write a CSV table, one row per rule, to FILE."),
    ] = None,
    between_planes: BetweenPlanesOption = BetweenPlanes.SHAPE,
    prescription: PrescriptionOption = None,
    debug: DebugOption = False,
) -> None:
    """Check a plan against a protocol.

    Exit codes: 0 pass; 1 fail (a major deviation, or a minor one with --strict, even when
    other rules could not be evaluated); 2 usage error (an option, a protocol file); 3 the
    plan cannot be evaluated (unreadable or missing files, or, when nothing fails, a rule
    that could not be applied: a plan is never passed on a part of it); 4 internal
    error (a bug: rerun with --debug and report it).
    """
    from rtcheck.constraints.engine import check_plan
    from rtcheck.constraints.registry import resolve_protocol, select_protocol, shipped_protocols
    from rtcheck.constraints.structures import check_alias_roles, load_aliases
    from rtcheck.prescription import parse_prescription
    from rtcheck.reports.check import format_report, to_json

    _check_outputs(json_out=json_out, html_out=html_out, csv_out=csv_out)
    given = None if prescription is None else parse_prescription(prescription)
    export = _load(path, structures, dose, plan)
    alias_map = load_aliases(aliases) if aliases is not None else None
    chosen = None
    if protocol == "auto":
        chosen = select_protocol(export, shipped_protocols(), alias_map)
        _err(f"protocol {chosen.protocol.id} selected: {'; '.join(chosen.reasons)}")
        proto = chosen.protocol
    else:
        proto = resolve_protocol(protocol)
    if alias_map is not None and aliases is not None:
        check_alias_roles(alias_map, proto, str(aliases))
    result = check_plan(
        export,
        proto,
        alias_map,
        strict=strict,
        between_planes=between_planes.value,
        prescription=given,
        selection=chosen,
    )
    document = to_json(result)
    for note in document["notes"]:
        _err(f"note: {note}")
    for warning in document["warnings"]:
        _err(f"warning: {warning}")
    for problem in result.errors:
        _err(f"error: {problem}")
    if json_out != "-":
        sys.stderr.flush()  # the warnings first: the verdict is the last line a reader sees
        typer.echo(
            format_report(
                result, width=shutil.get_terminal_size((100, 24)).columns, colour=_colour()
            )
        )
    if json_out is not None:
        text = json.dumps(document, indent=2)
        if json_out == "-":
            typer.echo(text)
        else:
            _write(json_out, text + "\n")
    if html_out is not None:
        from rtcheck.reports.html import render_html, report_dvhs

        _write(html_out, render_html(result, report_dvhs(result)))
    if csv_out is not None:
        from rtcheck.reports.csv_writer import to_csv

        _write(csv_out, to_csv(result))
    code = {"pass": ExitCode.OK, "fail": ExitCode.NON_COMPLIANT, "error": ExitCode.CANNOT_EVALUATE}[
        result.verdict
    ]
    raise typer.Exit(code)


protocols_app = typer.Typer(help="List, show and validate protocols.", no_args_is_help=True)
app.add_typer(protocols_app, name="protocols")


@protocols_app.command("list", cls=PlainHelpCommand)
@_guarded
def protocols_list(debug: DebugOption = False) -> None:
    """The shipped protocols: id, version, title."""
    from rtcheck.constraints.registry import shipped_protocols

    for p in shipped_protocols():
        typer.echo(f"{p.id:<28} {p.version:<10} {p.title}")


@protocols_app.command("show", cls=PlainHelpCommand)
@_guarded
def protocols_show(
    protocol: Annotated[
        str, typer.Argument(metavar="ID|FILE", help="Shipped protocol id or a YAML file.")
    ],
    debug: DebugOption = False,
) -> None:
    """Print a protocol's rules, roles and sources in readable form."""
    from rtcheck.constraints.describe import describe_protocol
    from rtcheck.constraints.registry import resolve_protocol

    typer.echo(describe_protocol(resolve_protocol(protocol)))


@protocols_app.command("validate", cls=PlainHelpCommand)
@_guarded
def protocols_validate(
    files: Annotated[list[Path], typer.Argument(metavar="FILE...", help="Protocol YAML file(s).")],
    debug: DebugOption = False,
) -> None:
    """Validate protocol files: exit 0 when all load, 2 with file:line:column otherwise."""
    from rtcheck.constraints.protocol import load_protocol
    from rtcheck.errors import ProtocolError

    failed = False
    for file in files:
        try:
            p = load_protocol(file)
        except ProtocolError as exc:
            _err(f"error: {exc}")
            failed = True
            continue
        typer.echo(f"{file}: ok ({p.id} v{p.version}, {len(p.rules)} rules)")
    if failed:
        raise typer.Exit(ExitCode.USAGE)


@protocols_app.command("schema", cls=PlainHelpCommand)
@_guarded
def protocols_schema(debug: DebugOption = False) -> None:
    """Print the JSON Schema of protocol files (for editors)."""
    from rtcheck.constraints.schema import protocol_json_schema

    typer.echo(json.dumps(protocol_json_schema(), indent=2))


@app.command(cls=PlainHelpCommand)
@_guarded
def demo(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="FOLDER",
            help="Folder for the sample export (default: a new temporary one).",
        ),
    ] = None,
    json_out: Annotated[
        str | None,
        typer.Option("--json", metavar="FILE|-", help="Write the JSON report to FILE, or '-'."),
    ] = None,
    debug: DebugOption = False,
) -> None:
    """Write a bundled sample plan (generated, not downloaded), show its DVHs and check it.

    The sample is a 3 x 18 Gy lung SABR plan with a full lung contour set; it is checked
    with ``--protocol auto`` (which picks ``sabr-lung``) and passes.
    """
    from rtcheck.synthetic import write_demo_export

    folder = out if out is not None else Path(tempfile.mkdtemp(prefix="rtcheck-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        raise UsageError(f"{folder} is not empty: choose an empty or new folder")
    write_demo_export(folder)
    _err(f"sample export written to {folder}")
    dvh(
        path=folder,
        json_out=json_out,
        roi=["PTV", "GTV", "SpinalCord", "Lungs", "Bronchus"],
        debug=debug,
    )
    if json_out == "-":
        return
    typer.echo("")
    check(path=folder, protocol="auto", debug=debug)


# Registered here, after every other command: these map their own errors to exit codes.
app.command(cls=PlainHelpCommand)(batch)
app.command("watch", cls=PlainHelpCommand)(watch)
app.command("history", cls=PlainHelpCommand)(history)
app.command("serve", cls=PlainHelpCommand)(serve)


def _is_path(word: str) -> bool:
    """Whether the first word is meant as a folder (so ``rtcheck FOLDER`` is a check, and a
    missing folder is said to be missing): it exists, or is written like a path."""
    return Path(word).exists() or any(c in word for c in "/\\") or word.startswith((".", "~"))


def main(argv: list[str] | None = None) -> None:
    """Console entry point; ``rtcheck PATH`` means ``rtcheck check PATH --protocol auto``."""
    # rtcheck's NumPy work is element-wise; BLAS worker threads only spin on the other
    # core (measured: 0.1 s of a 1.2 s run). Set before NumPy is first imported.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    args = list(sys.argv[1:] if argv is None else argv)
    commands = {"dvh", "check", "demo", "protocols", "batch", "watch", "history", "serve"}
    if args and not args[0].startswith("-") and args[0] not in commands and _is_path(args[0]):
        args.insert(0, "check")
    app(args=args, prog_name="rtcheck")


if __name__ == "__main__":
    main()
