"""Command-line options shared by several commands (``dvh``, ``check``, ``batch``, ``watch``)."""

from __future__ import annotations

from enum import StrEnum
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
