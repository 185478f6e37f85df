"""DVHs and metrics for the structures of one loaded export.

This is where the DICOM side (:mod:`rtcheck.dicom_io`) meets the pure DVH core
(:mod:`rtcheck.dvh`) and the metric grammar: it chooses structures, runs one DVH per
structure (one structure in memory at a time), evaluates the requested metrics and collects
everything a reader must know about the numbers (structures outside the dose grid,
empty or point ROIs, metrics that could not be evaluated).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from rtcheck.constraints.metrics import (
    VOLUME_RELATIVE_TOLERANCE,
    Metric,
    VolumeUnit,
    parse_metric,
)
from rtcheck.dicom_io import DoseData, PlanExport, Roi
from rtcheck.dvh import DVH, compute_dvh
from rtcheck.errors import EvaluationError, UsageError

T = TypeVar("T")

logger = logging.getLogger("rtcheck")

#: Metrics reported when the user names none.
DEFAULT_METRICS = ("D98%[Gy]", "D95%[Gy]", "D50%[Gy]", "D2%[Gy]", "D0.03cc[Gy]")


class UnknownRoiError(UsageError):
    """A structure name asked for on the command line is not in the structure set."""


#: Dose notes that say a cross-check agreed or how the dose was assembled: information,
#: not warnings (the text :mod:`rtcheck.dicom_io` gives them).
_AGREEMENT_NOTES = ("PLAN dose used; the sum of ", "plan dose = sum of ")


def split_dose_notes(dose: DoseData) -> tuple[list[str], list[str]]:
    """The dose's notes as ``(notes, warnings)``.

    A note says that a cross-check agreed (the PLAN dose against the sum of its BEAM
    doses, within tolerance: a disagreement stops the reading) or how the dose was put
    together (BEAM doses summed); every other note of the dose (a BEAM comparison not
    made, a DoseType not given, a dose scale not confirmed) is a warning.

    Parameters
    ----------
    dose
        A loaded dose.

    Returns
    -------
    tuple of list of str
        The notes, then the warnings, each in the dose's order.
    """
    notes: list[str] = []
    warnings: list[str] = []
    for text in dose.notes:
        agreed = (
            text.startswith(_AGREEMENT_NOTES[0]) and dose.beam_sum_max_difference_gy is not None
        )
        (notes if agreed or text.startswith(_AGREEMENT_NOTES[1]) else warnings).append(text)
    return notes, warnings


def default_threads() -> int:
    """Threads for computing several structures' DVHs at once: the CPUs this process may
    use, at most 2 (NumPy releases the GIL in the sampler's large array operations, so
    two structures overlap; more mostly wait for it, and each holds its own buffers)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    return max(1, min(2, usable))


def in_threads(
    work: Callable[[Roi], T], rois: Sequence[Roi], threads: int | None = None
) -> list[T]:
    """``work`` of each ROI, in ROI order, ``threads`` at a time (:func:`default_threads`
    when None; largest ROIs first, so that the last one to finish is a small one).

    ``work`` must not change shared state: its results are returned, in order, for the
    caller to use in a fixed order (reports do not depend on which thread ran first).
    An exception raised by ``work`` is raised here.
    """
    count = default_threads() if threads is None else max(1, threads)
    if count == 1 or len(rois) < 2:
        return [work(roi) for roi in rois]
    from concurrent.futures import ThreadPoolExecutor

    order = sorted(
        range(len(rois)),
        key=lambda i: -sum(len(q) for p in rois[i].planes for q in p.polygons),
    )
    with ThreadPoolExecutor(max_workers=count, thread_name_prefix="rtcheck-dvh") as pool:
        done = dict(zip(order, pool.map(lambda i: work(rois[i]), order), strict=True))
    return [done[i] for i in range(len(rois))]


@dataclass
class StructureResult:
    """DVH and metrics of one ROI, or the reason it has none.

    ``not_computable`` maps a metric (its canonical string) that does not fit the ROI
    (a ``D``/``DC`` volume in cc larger than the ROI's volume inside the dose grid) to
    why; its value in ``metrics`` is None and a warning says so.
    """

    roi: Roi
    dvh: DVH | None
    metrics: dict[str, float | None] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    not_computable: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """True when the DVH exists and covers the whole structure."""
        return self.dvh is not None and self.dvh.complete


@dataclass
class DvhAnalysis:
    """Results for one export: one :class:`StructureResult` per selected ROI."""

    export: PlanExport
    metrics: tuple[Metric, ...]
    structures: list[StructureResult]
    between_planes: str = "shape"
    #: Total prescription (Gy) the ``%`` doses are relative to, or None.
    prescription_gy: float | None = None

    @property
    def warnings(self) -> list[str]:
        """Export-level warnings followed by every structure's warnings."""
        out = list(self.export.warnings) + split_dose_notes(self.export.dose)[1]
        for s in self.structures:
            out.extend(s.warnings)
        return out

    @property
    def notes(self) -> list[str]:
        """What the reader should know that is no warning: cross-checks that agreed."""
        return split_dose_notes(self.export.dose)[0]

    @property
    def problems(self) -> list[str]:
        """What could not be evaluated (each makes the command exit 3)."""
        return [p for s in self.structures for p in s.problems]


def select_rois(rois: Sequence[Roi], names: Sequence[str]) -> list[Roi]:
    """The ROIs named (case-insensitive, in the order given), or all when none are named.

    A name that several ROIs share selects all of them (in file order): which one was
    meant cannot be known, and :func:`analyse` warns.

    Raises
    ------
    UnknownRoiError
        When a name matches no ROI; the message lists the ROIs that exist.
    """
    if not names:
        return list(rois)
    by_name: dict[str, list[Roi]] = {}
    for roi in rois:
        by_name.setdefault(roi.name.casefold(), []).append(roi)
    chosen: list[Roi] = []
    for name in names:
        found = by_name.get(name.strip().casefold())
        if found is None:
            available = ", ".join(repr(r.name) for r in rois)
            raise UnknownRoiError(
                f"no ROI named {name!r} in the structure set; available: {available}"
            )
        chosen.extend(roi for roi in found if roi not in chosen)
    return chosen


def shared_names(rois: Sequence[Roi]) -> dict[str, list[int]]:
    """ROI names (case-insensitive) that several of ``rois`` carry, with their numbers."""
    numbers: dict[str, list[int]] = {}
    for roi in rois:
        numbers.setdefault(roi.name.casefold(), []).append(roi.number)
    return {name: found for name, found in numbers.items() if len(found) > 1}


def analyse(
    export: PlanExport,
    roi_names: Sequence[str] = (),
    metric_texts: Sequence[str] | None = None,
    between_planes: str = "shape",
    prescription_gy: float | None = None,
    threads: int | None = None,
) -> DvhAnalysis:
    """Compute DVHs and metrics for the chosen structures of an export.

    A ``D`` or ``DC`` metric asking for more cc than an ROI holds inside the dose grid
    (the default ``D0.03cc`` on a 0.002 cc ROI) does not fit that ROI: it is recorded as
    not computable, with the reason, and a warning, so that one tiny ROI does not void
    the report. It is a problem (exit 3) only when the user named both the ROI
    (``roi_names``) and the metric (``metric_texts``): then the value asked for is
    missing.

    Parameters
    ----------
    export
        A loaded export (structures and dose, plan when present).
    roi_names
        ROI names to analyse; all ROIs when empty.
    metric_texts
        TG-263 metric strings named by the user; parsed first, so a malformed one fails
        before any work. None: :data:`DEFAULT_METRICS`, not named by the user.
    between_planes
        Structure model between contour planes: ``"slab"`` or ``"shape"`` (see
        :func:`rtcheck.dvh.compute_dvh`).
    prescription_gy
        The total prescription for ``%`` doses (see
        :func:`rtcheck.prescription.resolve_prescription`); None: the plan's own, if any.
    threads
        Structures computed at once (:func:`default_threads` when None); the results
        do not depend on it.

    Returns
    -------
    DvhAnalysis
    """
    named = bool(roi_names) and metric_texts is not None
    metrics = tuple(
        parse_metric(m) for m in (DEFAULT_METRICS if metric_texts is None else metric_texts)
    )
    rois = select_rois(export.structures.rois, roi_names)
    prescription = prescription_gy
    if prescription is None and export.plan is not None:
        prescription = export.plan.total_dose_gy
    results = in_threads(
        lambda roi: _analyse_roi(
            export, roi, metrics, prescription, between_planes, must_fit=named
        ),
        rois,
        threads,
    )
    if roi_names:  # asked for by name: no DVH is a problem, not a remark
        for result in results:
            if result.dvh is None and not result.problems:
                result.problems.extend(result.warnings)
                result.warnings.clear()
    shared = shared_names(rois)
    for result in results:
        numbers = shared.get(result.roi.name.casefold())
        if numbers:
            result.warnings.insert(
                0,
                f"ROI {result.roi.name!r} (number {result.roi.number}): ROIs "
                f"{', '.join(str(n) for n in numbers)} share this name; each is listed "
                "with its number",
            )
    return DvhAnalysis(
        export=export,
        metrics=metrics,
        structures=results,
        between_planes=between_planes,
        prescription_gy=prescription,
    )


def _analyse_roi(
    export: PlanExport,
    roi: Roi,
    metrics: Sequence[Metric],
    prescription: float | None,
    between_planes: str = "shape",
    *,
    must_fit: bool = False,
) -> StructureResult:
    """DVH and metrics of one ROI; ``must_fit``: a metric larger than it is a problem."""
    name = roi.name
    if not roi.planes:
        if roi.geometric_type == "CLOSED_PLANAR":  # every contour degenerate (see notes)
            notes = "; ".join(roi.notes)
            why = f"{notes}: no contour with an area is left, the ROI is empty (0 cc)"
            return StructureResult(roi, None, warnings=[f"ROI {name!r}: {why}; no DVH"])
        why = (
            f"{roi.geometric_type} ROI, not a volume"
            if roi.geometric_type not in ("CLOSED_PLANAR", "")
            else "no contours"
        )
        return StructureResult(roi, None, warnings=[f"ROI {name!r}: {why}; no DVH"])
    try:
        dvh = roi_dvh(export, roi, between_planes)
    except ValueError as exc:  # e.g. one plane and no known slice spacing
        return StructureResult(roi, None, problems=[f"ROI {name!r}: {exc}"])
    result = StructureResult(roi, dvh)
    result.warnings.extend(f"ROI {name!r}: {n}" for n in (*roi.notes, *dvh.notes))
    if dvh.ambiguous_planes:
        result.problems.append(f"ROI {name!r}: {ambiguous_contours(dvh)}")
        result.metrics = {str(m): None for m in metrics}
        return result
    if dvh.volume_inside_cc <= 0:
        result.problems.append(
            f"ROI {name!r}: all of its {dvh.volume_cc:.3g} cc lies outside the dose grid: "
            "no DVH and no metrics; check the frame of reference and the dose grid's extent"
        )
        result.metrics = {str(m): None for m in metrics}
        return result
    if not dvh.complete:
        share = 100.0 * dvh.volume_outside_cc / dvh.volume_cc
        result.warnings.append(
            f"ROI {name!r}: {dvh.volume_outside_cc:.3g} cc ({share:.1f} %) lies outside the "
            "dose grid; its DVH and metrics cover only the part inside"
        )
    for metric in metrics:
        key = str(metric)
        unfit = None if must_fit else _does_not_fit(metric, dvh)
        if unfit is not None:
            result.metrics[key] = None
            result.not_computable[key] = unfit
            result.warnings.append(f"ROI {name!r}: {key} not computable: {unfit}")
            continue
        try:
            result.metrics[key] = metric.evaluate(dvh, prescription)
        except EvaluationError as exc:
            result.metrics[key] = None
            result.problems.append(f"ROI {name!r}: {key}: {exc}")
    return result


def _does_not_fit(metric: Metric, dvh: DVH) -> str | None:
    """Why a ``D``/``DC`` metric in cc cannot be computed on a DVH too small for it.

    None when the metric fits (or is of another kind): its volume is at most the
    structure's volume inside the dose grid, which must be positive.
    """
    if not (metric.kind.takes_volume and metric.parameter_unit is VolumeUnit.CC):
        return None
    assert metric.parameter is not None
    inside = dvh.volume_inside_cc
    if metric.parameter <= inside * (1.0 + VOLUME_RELATIVE_TOLERANCE):
        return None
    where = (
        ""
        if dvh.complete
        else f" inside the dose grid (another {dvh.volume_outside_cc:.3g} cc lie outside it)"
    )
    return (
        f"the structure holds only {inside:.3g} cc{where}, less than the "
        f"{metric.parameter:g} cc the metric asks for"
    )


def ambiguous_contours(dvh: DVH) -> str:
    """Why a DVH with :attr:`~rtcheck.dvh.DVH.ambiguous_planes` cannot be used."""
    zs = dvh.ambiguous_planes
    shown = ", ".join(f"{z:g}" for z in zs[:5]) + (", ..." if len(zs) > 5 else "")
    return (
        f"on {len(zs)} plane(s) (near z = {shown} mm) a contour crosses itself or contours "
        "overlap, so the area they enclose is ambiguous: no DVH and no metrics; fix the "
        "contours in the planning system"
    )


def roi_dvh(export: PlanExport, roi: Roi, between_planes: str = "shape") -> DVH:
    """The DVH of one ROI of an export, with the structure set's slice positions.

    ``between_planes`` chooses the structure model between contour planes (see
    :func:`rtcheck.dvh.compute_dvh`).

    Raises
    ------
    ValueError
        When the ROI has no volume to compute (e.g. one plane and no known spacing).
    """
    return compute_dvh(
        roi.planes,
        export.dose.grid,
        slice_positions=export.structures.slice_positions,
        single_plane_thickness=fallback_thickness(export),
        between_planes=between_planes,
    )


def fallback_thickness(export: PlanExport) -> float | None:
    """Slab thickness for an ROI drawn on one plane: the structure set's plane spacing."""
    positions = export.structures.slice_positions
    if positions is None or positions.size < 2:
        zs = sorted({p.z for r in export.structures.rois for p in r.planes})
        positions = np.asarray(zs, dtype=np.float64)
    if positions.size < 2:
        return None
    steps = np.diff(np.sort(positions))
    steps = steps[steps > 1e-3]
    return float(np.median(steps)) if steps.size and math.isfinite(np.median(steps)) else None
