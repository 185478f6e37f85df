"""Exit codes and error reporting shared by the self-contained commands (batch, watch).

Kept apart from :mod:`rtcheck.cli`, which imports those commands, so that none of them
imports another.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from rtcheck.errors import (
    InputErrors,
    MetricSyntaxError,
    MissingExtraError,
    ProtocolError,
    RtcheckError,
    UsageError,
)

#: Same values as :class:`rtcheck.cli.ExitCode` (not imported: cli imports this module).
EXIT_OK, EXIT_NON_COMPLIANT, EXIT_USAGE, EXIT_CANNOT_EVALUATE, EXIT_INTERNAL = 0, 1, 2, 3, 4
EXIT_BY_VERDICT = {"pass": EXIT_OK, "fail": EXIT_NON_COMPLIANT, "error": EXIT_CANNOT_EVALUATE}


def err(message: str) -> None:
    """Print ``message`` on standard error; on a terminal, wrapped to its width.

    A long warning wraps with its continuation lines indented under its first word
    (``warning: ...``) so that no line is wider than the terminal (``COLUMNS``); piped
    into a file or a log it stays one line, for ``grep``.
    """
    if sys.stderr.isatty():
        width = max(40, shutil.get_terminal_size((100, 24)).columns)
        head = message.split(" ", 1)[0]
        indent = " " * (len(head) + 1) if head.endswith(":") and len(head) < 12 else "  "
        message = "\n".join(
            textwrap.fill(
                line,
                width,
                subsequent_indent=indent,
                break_long_words=False,
                break_on_hyphens=False,
            )
            or line
            for line in message.splitlines() or [""]
        )
    typer.echo(message, err=True)


def stdout_closed() -> typer.Exit:
    """The exit for a reader that went away (``rtcheck ... | head``).

    The report was not delivered, so the run cannot count as a success; what is left to
    print goes nowhere instead of raising again at interpreter exit.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    err("error: standard output was closed before the report was complete")
    return typer.Exit(EXIT_CANNOT_EVALUATE)


@contextmanager
def exit_codes(debug: bool) -> Iterator[None]:
    """Map rtcheck's exceptions to exit codes (``typer.Exit`` passes through)."""
    try:
        yield
    except BrokenPipeError:
        raise stdout_closed() from None
    except (UsageError, ProtocolError, MetricSyntaxError, MissingExtraError) as exc:
        err(f"error: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    except InputErrors as exc:
        for e in exc.errors:
            err(f"error: {e}")
        raise typer.Exit(EXIT_CANNOT_EVALUATE) from None
    except RtcheckError as exc:
        err(f"error: {exc}")
        raise typer.Exit(EXIT_CANNOT_EVALUATE) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        if debug:
            traceback.print_exc()
        err(
            f"internal error: {type(exc).__name__}: {exc}\n"
            "This is a bug in rtcheck. Rerun with --debug and report the output."
        )
        raise typer.Exit(EXIT_INTERNAL) from None
