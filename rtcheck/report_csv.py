"""A protocol check as CSV for spreadsheets: one row per rule result."""

from __future__ import annotations

import csv
import io
import math

from rtcheck.constraints.engine import CheckResult

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

# A cell starting with one of these is a formula to a spreadsheet program.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _text(value: str | None) -> str:
    """A text cell; one a spreadsheet would run as a formula is prefixed with ``'``.

    ROI names and plan labels come from the DICOM files: a name such as ``=HYPERLINK(...)``
    must stay text when the CSV is opened in a spreadsheet.
    """
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _number(value: float | None) -> str:
    if value is None or isinstance(value, bool) or not math.isfinite(float(value)):
        return ""
    return repr(round(float(value), 6))


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
        none); text cells that a spreadsheet would read as a formula start with ``'``.
    """
    plan = result.export.plan
    fixed = (
        _text(result.export.patient_id),
        _text(plan.label if plan is not None else ""),
        _text(result.protocol.id),
        _text(result.protocol.version),
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    verdict = result.verdict
    for r in result.results:
        writer.writerow(
            [
                *fixed,
                _text(r.id),
                _text(r.kind),
                _text(r.status),
                _text(r.structure),
                _text(r.metric),
                _number(r.measured),
                _text(r.limit),
                _text(r.message),
                _text(r.source),
                verdict,
            ]
        )
    return buffer.getvalue()
