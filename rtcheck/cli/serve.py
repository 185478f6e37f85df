"""``rtcheck serve``: the command function registered in :mod:`rtcheck.cli`.

Free of imports from :mod:`rtcheck.cli`; pynetdicom is imported only when the node starts.
Exit codes as every rtcheck command: 0 when stopped by SIGTERM or SIGINT; 2 usage error
(bad option, unknown protocol, a port that cannot be listened on, the ``serve`` extra
missing); 3 the output folder or ledger cannot be used; 4 internal error.

``python -m rtcheck.cli.serve serve ...`` runs the command without the rest of the
command line (used by the tests).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from rtcheck.cli.errors import EXIT_OK, exit_codes
from rtcheck.cli.options import (
    AliasesOption,
    BetweenPlanes,
    BetweenPlanesOption,
    PlainHelpCommand,
    PrescriptionOption,
    ProtocolOption,
    StrictOption,
)

__all__ = ["serve"]


def serve(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            metavar="FOLDER",
            help="Output folder: incoming/ (received objects), <patient>/<plan>-<version>."
            "json|.html, ledger.sqlite and serve.log.",
        ),
    ],
    port: Annotated[
        int,
        typer.Option("--port", metavar="PORT", help="TCP port to listen on (0: any free port)."),
    ] = 11112,
    ae_title: Annotated[
        str,
        typer.Option(
            "--ae-title", metavar="TITLE", help="This node's AE title (the called AE title)."
        ),
    ] = "RTCHECK",
    bind: Annotated[
        str,
        typer.Option(
            "--bind",
            metavar="ADDRESS",
            help="Address to listen on (default loopback; 0.0.0.0 for every interface).",
        ),
    ] = "127.0.0.1",
    protocol: ProtocolOption = "auto",
    settle: Annotated[
        float,
        typer.Option(
            "--settle",
            metavar="SECONDS",
            min=0.0,
            help="Seconds without any new object for a study before its plans are checked "
            "(and no association delivering it still open).",
        ),
    ] = 10.0,
    allow_ae: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-ae",
            metavar="TITLE",
            help="Calling AE title allowed to send (repeatable); others are rejected. "
            "Default: any.",
        ),
    ] = None,
    incomplete_timeout: Annotated[
        float,
        typer.Option(
            "--incomplete-timeout",
            metavar="SECONDS",
            min=0.0,
            help="Seconds to wait for the missing part of an export (a dose whose plan has "
            "not arrived) before it is checked anyway and recorded as an error.",
        ),
    ] = 600.0,
    between_planes: BetweenPlanesOption = BetweenPlanes.SHAPE,
    prescription: PrescriptionOption = None,
    aliases: AliasesOption = None,
    strict: StrictOption = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="pynetdicom's log and tracebacks of internal errors.")
    ] = False,
) -> None:
    """Run a DICOM storage node (C-STORE, C-ECHO) and check each plan received once.

    Logs one JSON line per association and per check to stderr (and OUT/serve.log); stop
    with SIGTERM or Ctrl-C.
    """
    with exit_codes(debug):
        from rtcheck.prescription import parse_prescription
        from rtcheck.serve import run_serve

        if debug:
            logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
        run_serve(
            out,
            port=port,
            ae_title=ae_title,
            bind=bind,
            protocol=protocol,
            settle=settle,
            allow_ae=allow_ae or (),
            between_planes=between_planes.value,
            prescription=None if prescription is None else parse_prescription(prescription),
            incomplete_timeout=incomplete_timeout,
            aliases=aliases,
            strict=strict,
        )
    raise typer.Exit(EXIT_OK)


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None)
    app.command("serve", cls=PlainHelpCommand)(serve)

    @app.callback()
    def _group() -> None:
        """rtcheck serve (standalone)."""

    return app


if __name__ == "__main__":
    _app()()
