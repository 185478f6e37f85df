"""Command-line options shared by several commands (``dvh``, ``check``, ``batch``, ``watch``,
``serve``): one declaration each, so their names, metavars and help never drift apart."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class BetweenPlanes(StrEnum):
    """Structure models between contour planes (``rtcheck.dvh.BETWEEN_PLANES``)."""

    SLAB = "slab"
    SHAPE = "shape"


BetweenPlanesOption = Annotated[
    BetweenPlanes,
    typer.Option(
        "--between-planes",
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
