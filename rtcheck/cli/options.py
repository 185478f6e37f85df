"""Command-line options shared by several commands (``dvh``, ``check``, ``batch``, ``watch``,
``serve``): one declaration each, so their names, metavars and help never drift apart; and
:class:`PlainHelpCommand`, the help every command prints."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand


def _range_words(low: float | None, high: float | None) -> str:
    """A number range in words: ``1 or more``, ``0 to 100``."""

    def num(value: float) -> str:
        return f"{value:g}"

    if low is not None and high is not None:
        return f"{num(low)} to {num(high)}"
    if low is not None:
        return f"{num(low)} or more"
    return f"{num(high)} or less" if high is not None else ""


def _typer_range(low: float | None, high: float | None) -> str:
    """The range as Typer writes it in help (``x>=1``), to be replaced by words."""
    if low is None and high is None:
        return ""
    if low is None:
        return f"x<={high}"
    if high is None:
        return f"x>={low}"
    return f"{low}<=x<={high}"


def _range_of(param: Any) -> tuple[float | None, float | None]:
    """A parameter's number range: on the parameter (Typer 0.29) or its type (<= 0.28)."""
    for owner in (param, getattr(param, "type", None)):
        low, high = getattr(owner, "min", None), getattr(owner, "max", None)
        if low is not None or high is not None:
            return low, high
    return None, None


def _argument_name(param: Any) -> str:
    """An argument as people read it: its metavar (``FOLDER``, ``FILE...``)."""
    name = param.metavar or (param.name or "").upper()
    if param.nargs != 1 and not name.endswith("..."):
        name += "..."
    return name


class PlainHelpCommand(TyperCommand):
    """A command whose ``--help`` names things as people read them.

    Typer writes an argument's Python type after its name (``FOLDER <path>``,
    ``FILE... <list[Path]>``), braces around required arguments in the usage line
    (``{ROOT}``) and number ranges as ``x>=1``. This command shows an argument by its
    metavar alone (``FOLDER``; ``[FOLDER]`` in the usage line when it may be left out)
    and ranges in words (``1 or more``). Pass it as ``cls`` to ``app.command``.

    (Typer carries its own copy of Click: its parameters are told apart by
    ``param_type_name``, and contexts and formatters are typed ``Any`` here.)
    """

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        """The usage line after the command's name: ``[OPTIONS] ROOT``."""
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = _argument_name(param)
                pieces.append(name if param.required else f"[{name}]")
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        """The Arguments and Options sections, without Python type names."""
        arguments: list[tuple[str, str]] = []
        options: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            name, text = record
            low, high = _range_of(param)
            typer_range = _typer_range(low, high)
            if typer_range:
                text = text.replace(typer_range, _range_words(low, high))
            if param.param_type_name == "argument":
                arguments.append((_argument_name(param), text))
            else:
                options.append((name, text))
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


class BetweenPlanes(StrEnum):
    """Structure models between contour planes (``rtcheck.dvh.BETWEEN_PLANES``)."""

    SLAB = "slab"
    SHAPE = "shape"


BetweenPlanesOption = Annotated[
    BetweenPlanes,
    typer.Option(
        "--between-planes",
        metavar="shape|slab",
        help="Structure model between contour planes: 'shape' (the default) lets the "
        "structure change smoothly from one plane to the next; 'slab' extrudes each "
        "contour halfway to its neighbours (faster; see docs/dvh.md). Both end with "
        "flat caps.",
    ),
]


PrescriptionOption = Annotated[
    str | None,
    typer.Option(
        "--prescription",
        metavar="TOTAL/FRACTIONS",
        help="Prescription (Gy/fractions, e.g. 70/35) for plans that state none (no Target "
        "Prescription Dose): schedule, BED and %-of-prescription rules need one. A plan's "
        "own prescription is always used first.",
    ),
]


ProtocolOption = Annotated[
    str,
    typer.Option(
        "--protocol",
        metavar="ID|FILE|auto",
        help="Shipped protocol id, a protocol YAML file, or 'auto' to pick one per plan by "
        "the protocols' select criteria.",
    ),
]


AliasesOption = Annotated[
    Path | None,
    typer.Option(
        "--aliases",
        metavar="FILE",
        help="Institution alias file (YAML: ROLE: list of patterns).",
    ),
]


StrictOption = Annotated[bool, typer.Option("--strict", help="Minor deviations fail a plan too.")]
