"""CSV for spreadsheets: the one CSV writer of rtcheck, and a protocol check as CSV.

Every CSV rtcheck writes goes through :func:`render_csv`: ``check --csv`` (one row per rule
result, :func:`to_csv` here), ``dvh --csv`` (:func:`rtcheck.reports.dvh.to_csv`) and the
``summary.csv`` of ``batch`` (:func:`rtcheck.batch.render_summary_csv`). Text cells come
from DICOM files (ROI names, plan labels, patient IDs) and a spreadsheet runs a cell that
starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return as a formula (CSV
injection, OWASP); :func:`render_csv` writes such text with a leading ``'``. Numbers are
written as numbers: a negative number is not text and keeps its sign.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rtcheck.constraints.engine import CheckResult

#: What a CSV cell may be: text (neutralised), a number (formatted), or None (empty).
Cell = str | int | float | None

#: The CSV header, in order.
COLUMNS = (
    "patient_id",
    "plan_label",
    "protocol_id",
    "protocol_version",
    "rule_id",
    "kind",
    "status",
    "structure",
    "metric",
    "measured",
    "limit",
    "message",
    "source",
    "verdict",
)

#: A text cell starting with one of these is a formula to a spreadsheet program.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def text_cell(value: object) -> str:
    """A text cell; one a spreadsheet would run as a formula is prefixed with ``'``.

    ROI names and plan labels come from the DICOM files: a name such as ``=HYPERLINK(...)``
    must stay text when the CSV is opened in a spreadsheet.
    """
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


#: The former name of :func:`text_cell`.
_text = text_cell


def _rounded(value: float) -> str:
    """Rounded to 6 decimals, never in exponent notation (``2.2e-05`` is ``0.000022``)."""
    text = repr(round(value, 6))
    if "e" in text:
        text = f"{round(value, 6):.6f}".rstrip("0").removesuffix(".") or "0"
    return text


def render_csv(
    header: Sequence[str],
    rows: Iterable[Sequence[Cell]],
    number: Callable[[float], str] = _rounded,
) -> str:
    """CSV text (``\n`` line ends) of a header and rows, safe to open in a spreadsheet.

    Parameters
    ----------
    header
        The column names (written as text cells).
    rows
        One sequence of cells per row: ``str`` cells are text, neutralised as
        :func:`text_cell` does; ``bool`` cells are written ``True``/``False``, ``int``
        cells as integers, ``float`` cells with ``number`` (empty when not finite); None
        is an empty cell.
    number
        How a finite float is written (default: rounded to 6 decimals, ``repr``).

    Returns
    -------
    str
        The CSV document.
    """
    out = io.StringIO()
    # Written row by row with "\r\n" ends, then given "\n": the csv module quotes a field
    # holding a character of its line terminator only, and a CR in a field must be quoted.
    row_buffer = io.StringIO()
    writer = csv.writer(row_buffer, lineterminator="\r\n")
    for cells in (
        [text_cell(h) for h in header],
        *([_cell(value, number) for value in row] for row in rows),
    ):
        row_buffer.seek(0)
        row_buffer.truncate()
        writer.writerow(cells)
        out.write(row_buffer.getvalue()[:-2] + "\n")
    return out.getvalue()


def _cell(value: Cell, number: Callable[[float], str]) -> str:
    if value is None:
        return ""
    if isinstance(value, bool | int):
        return str(value)
    if isinstance(value, float):
        return number(value) if math.isfinite(value) else ""
    return text_cell(value)


def to_csv(result: CheckResult) -> str:
    """The check as CSV with the header :data:`COLUMNS` and one row per rule result.

    Parameters
    ----------
    result
        A protocol check.

    Returns
    -------
    str
        CSV text (``\\n`` line ends). ``measured`` is a plain number (empty when there is
        none); ``limit`` is worded as in the terminal and HTML reports (a converted limit
        rounded, ``<= 27.0 Gy``; the JSON keeps ``27.0156``); text cells that a
        spreadsheet would read as a formula start with ``'``.
    """
    from rtcheck.reports.common import round_text

    plan = result.export.plan
    fixed: list[Cell] = [
        result.export.patient_id,
        plan.label if plan is not None else "",
        result.protocol.id,
        result.protocol.version,
    ]
    verdict = result.verdict
    rows: list[list[Cell]] = [
        [
            *fixed,
            r.id,
            r.kind,
            r.status,
            r.structure,
            r.metric,
            None if r.measured is None or isinstance(r.measured, bool) else float(r.measured),
            None if r.limit is None else round_text(r.limit),
            r.message if not r.limit else r.message.replace(r.limit, round_text(r.limit)),
            r.source,
            verdict,
        ]
        for r in result.results
    ]
    return render_csv(COLUMNS, rows)
