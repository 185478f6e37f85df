"""A protocol check as one self-contained HTML page, with the DVHs drawn as inline SVG.

The page needs nothing but itself: inline CSS, an inline SVG plot, no scripts, no fonts,
images or style sheets from anywhere, and a Content-Security-Policy that forbids them.
Every string that comes from the DICOM files (patient ID, plan label, ROI names, and the
messages that quote them) is escaped with :func:`html.escape`.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rtcheck.analysis import roi_dvh
from rtcheck.constraints.engine import CheckResult, RuleResult
from rtcheck.constraints.metrics import DoseUnit, Metric, MetricKind, VolumeUnit, parse_metric
from rtcheck.dvh import DVH
from rtcheck.errors import MetricSyntaxError
from rtcheck.reports.check import (
    STRUCTURED_FACTS,
    plan_quality_lines,
    skipped_by_reason,
    to_json,
    verdict_reason,
)
from rtcheck.reports.common import dose_text, measured_text, number_text, round_text

__all__ = ["PlotMarker", "dvh_markers", "plotted_rois", "render_html", "report_dvhs"]

STATUS_LABEL = {
    "pass": "PASS",
    "minor": "MINOR",
    "major": "MAJOR",
    "not_evaluated": "NOT EVALUATED",
}
STATUS_COLOUR = {
    "pass": "#2e7d32",
    "minor": "#e08600",
    "major": "#c62828",
    "not_evaluated": "#6b6b6b",
}
VERDICT_COLOUR = {"pass": "#2e7d32", "fail": "#c62828", "error": "#b35c00"}
#: Curve colours, one per plotted ROI (cycled): colour-blind safe (Okabe-Ito, then Paul
#: Tol's muted scheme), without the reds and ambers, which mark a rule's status only.
PALETTE = (
    "#0072B2",
    "#009E73",
    "#CC79A7",
    "#000000",
    "#56B4E9",
    "#332288",
    "#999933",
    "#44AA99",
    "#AA4499",
    "#117733",
    "#88CCEE",
    "#6B6B6B",
)
#: Dash patterns, cycled with a period prime to the palette's: two neighbouring curves
#: differ in colour and in dash.
DASHES = ("", "8 4", "2 3", "10 3 2 3", "4 2", "12 3 3 3 3 3", "6 2 2 2 2 2")
_PLOTTED_KINDS = ("dose_volume", "coverage")
_BOUND_RE = re.compile(r"(<=|>=)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")

# Plot geometry (SVG user units): the main panel, and the low-dose panel below it.
_W, _H = 980, 480
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 730, 20, 420
_ZOOM_TOP, _ZOOM_BOTTOM = 500, 740
_H_ZOOM = 800
#: The low-dose panel is drawn when the organs' curves fall below 2 % of their volume
#: within this fraction of the main panel's dose axis.
_ZOOM_FRACTION = 0.35

_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;
margin:0;padding:0 24px 32px;color:#1b1b1b;background:#fff;font-size:14px;line-height:1.4}
h1{font-size:20px;margin:18px 0 4px}h2{font-size:17px;margin:26px 0 8px;
border-bottom:2px solid #ddd;padding-bottom:3px}
h3{font-size:14px;margin:14px 0 4px}
.banner{color:#fff;padding:16px 20px;margin:0 -24px 12px;display:flex;align-items:baseline;
gap:24px;flex-wrap:wrap}
.banner .verdict{font-size:30px;font-weight:700;letter-spacing:1px}
.banner .counts{font-size:15px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(330px,1fr));gap:8px 28px}
table{border-collapse:collapse;margin:4px 0}
th,td{border:1px solid #cfcfcf;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f0f0f0}
table.kv{width:100%}
table.kv tbody th{width:13em;font-weight:600}
table.kv>thead>tr>th,table.sign>thead>tr>th{background:none;border:0;padding:0}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.mono{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12px;
word-break:break-all}
td.rid,td.src{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12px}
td.src{white-space:nowrap}td.msg{min-width:14em}
table.rules{width:100%}
table.rules td.limit{min-width:7em}
table.rules th,table.rules td{padding:3px 5px}
tr.st-pass td{background:#e8f5e9}tr.st-minor td{background:#fff3d6}
tr.st-major td{background:#fde0e0}tr.st-not_evaluated td{background:#ececec}
.badge{display:inline-block;min-width:5.5em;text-align:center;color:#fff;
font-weight:700;border-radius:3px;padding:1px 6px;font-size:12px;white-space:nowrap}
.b-pass{background:#2e7d32}.b-minor{background:#e08600}.b-major{background:#c62828}
.b-not_evaluated{background:#6b6b6b}
ul{margin:4px 0;padding-left:22px}
.warn li,span.warn{color:#7a4a00}.err li,span.err{color:#a01010}
.muted{color:#666}
svg.dvh{width:100%;max-width:980px;height:auto;border:1px solid #ddd;background:#fff}
svg.dvh text{font-family:inherit;font-size:12px;fill:#222}
table.sheet,table.sheet>tbody,table.sheet>tbody>tr,table.sheet>tbody>tr>td{display:block;
width:100%;margin:0;padding:0;border:0}
table.sheet>thead.runhead{display:none}
.signature{margin:22px 0 8px;border:1px solid #999;padding:8px 12px}
.signature h2{margin:0 0 6px;border:0}
.signature table{width:100%;margin:0}
.signature td,.signature th{border:0;padding:10px 6px 2px;vertical-align:bottom}
.signature th{background:none;font-weight:600}
.signature td.line{border-bottom:1px solid #333;height:2.4em;width:24%}
.signature th{width:auto;white-space:nowrap}
.signature p{margin:6px 0 0;font-size:12px}
.appendix-toggle{margin:26px 0 0;padding:6px 10px;background:#f4f4f4;border:1px solid #ddd}
.appendix-toggle label{font-weight:600}
.appendix>h2:first-child,.appendix>.appendix-title{margin-top:18px}
@page{size:A4;margin:9mm 10mm 10mm 10mm;
@bottom-right{content:"page " counter(page) " of " counter(pages);font:8pt sans-serif;
color:#444}}
@media print{
body{padding:0;font-size:8.5pt;line-height:1.2}
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}
table.sheet{display:table;width:100%}
table.sheet>thead.runhead{display:table-header-group}
table.sheet>tbody{display:table-row-group}
table.sheet>tbody>tr,table.sheet>thead>tr{display:table-row;break-inside:auto}
table.sheet>tbody>tr>td{display:table-cell}
table.sheet>thead>tr>td{padding:0 0 2mm;font-size:7.5pt;color:#333;border:0}
.runhead .rh{display:flex;flex-wrap:wrap;justify-content:space-between;column-gap:6mm;
border-bottom:1px solid #888;padding-bottom:1mm}
.runhead .rh span{white-space:nowrap}
h1{font-size:11pt;margin:2mm 0 0}
h2{font-size:10pt;margin:3mm 0 1mm;padding-bottom:0.5mm;break-after:avoid}
h3{font-size:9pt;margin:2mm 0 0.5mm;break-after:avoid}
p,ul{margin:0.5mm 0}
ul{padding-left:5mm}
.banner{margin:0 0 1.5mm;padding:1.5mm 3mm;gap:6mm}
.banner .verdict{font-size:14pt}.banner .counts{font-size:9pt}
.grid{grid-template-columns:1fr 1fr;gap:0 5mm}
table{margin:0.5mm 0}
th,td{padding:0.3mm 1.2mm}
table.kv tbody th{width:9.5em}
tr,li,.badge,.signature,svg.dvh{break-inside:avoid}
thead{display:table-header-group}
.mono,td.rid,td.src{font-size:7.5pt}
table.rules{font-size:7pt;line-height:1.2}
table.rules th,table.rules td{padding:0.3mm 1mm}
table.rules{table-layout:fixed}
table.rules .kind,table.rules td.restates span{display:none}
table.rules th:nth-child(1){width:11mm}table.rules th:nth-child(2){width:25mm}
table.rules th:nth-child(4){width:16mm}table.rules th:nth-child(5){width:19.5mm}
table.rules th:nth-child(6){width:14.5mm}table.rules th:nth-child(7){width:36mm}
table.rules th:nth-child(9){width:19mm}
table.rules td{overflow-wrap:anywhere}table.rules td:first-child{overflow-wrap:normal}
table.rules td.rid{overflow-wrap:break-word}
table.rules td.rid,table.rules td.src{font-family:inherit;font-size:6.8pt}
.badge{min-width:0;font-size:6.5pt;padding:0 0.8mm;white-space:normal}
.screen-only,.appendix-toggle{display:none}
.appendix{break-before:page}
.sheet:has(#print-appendix:not(:checked)) .appendix{display:none}
.signature{margin:2mm 0 0;padding:1mm 3mm}
.signature h2{margin:0}
.signature td,.signature th{padding:2.5mm 1mm 0.3mm}
.signature td.line{height:auto}
.signature td.decision{white-space:nowrap;font-size:7.5pt}
.signature p{font-size:7.5pt}
svg.dvh{max-width:100%;border:0}
table.distances thead{display:none}
table.distances tbody{display:grid;grid-template-columns:auto auto auto auto;column-gap:0}
table.distances tr{display:contents}
a{color:inherit;text-decoration:none}
}
"""


def _e(value: object) -> str:
    """Escape any value for HTML text and attribute values."""
    return html.escape("" if value is None else str(value), quote=True)


def _fmt(value: float | None, digits: int = 4) -> str:
    """A number for people: ``digits`` significant digits, never an exponent."""
    return number_text(value, digits)


#: Limits and messages with their long decimal numbers rounded (one rule for every report).
_round_text = round_text


def _qty(value: float | None, unit: str, missing: str = "not measured") -> str:
    """A number with its unit, or words when there is no number (never "- Gy")."""
    if value is None or isinstance(value, bool) or not math.isfinite(float(value)):
        return missing
    return f"{_fmt(value)} {unit}"


# -- DVHs and markers --------------------------------------------------------------------


def plotted_rois(result: CheckResult) -> list[str]:
    """The ROIs to plot: targets first, then every other ROI a protocol role matched.

    Parameters
    ----------
    result
        A protocol check.

    Returns
    -------
    list of str
        ROI names, each once, in the order they are drawn.
    """
    names: list[str] = [t["name"] for t in result.facts.get("targets", [])]
    for roi_names in result.roles.matched.values():
        names.extend(roi_names)
    return list(dict.fromkeys(names))


def report_dvhs(result: CheckResult) -> dict[str, DVH]:
    """Compute the DVHs of :func:`plotted_rois` (ROIs without contours are left out).

    The check's own DVHs (the ones the rules were evaluated on) are used as they are; only
    plotted ROIs no rule used are computed here.

    Parameters
    ----------
    result
        A protocol check; its export supplies contours and dose.

    Returns
    -------
    dict
        DVH by ROI name.
    """
    rois = {r.name: r for r in result.export.structures.rois}
    out: dict[str, DVH] = {}
    for name in plotted_rois(result):
        if name in result.dvhs:  # the check's own DVH
            out[name] = result.dvhs[name]
            continue
        roi = rois.get(name)
        if roi is None or not roi.planes:
            continue
        try:
            out[name] = roi_dvh(result.export, roi, result.between_planes)
        except ValueError:
            continue
    return out


@dataclass(frozen=True)
class PlotMarker:
    """A rule result placed on a DVH plot: dose in Gy, volume in % of the ROI.

    ``point`` is the measured value, on the ROI's cumulative curve; ``limits`` are the
    points of the rule's bounds (the curve must pass below/left of a maximum, above/right
    of a minimum). A mean dose is no point of the cumulative DVH: it is drawn on the curve
    at that dose (the volume receiving at least the mean dose), its limit likewise.
    """

    rule_id: str
    roi: str
    metric: str
    status: str
    point: tuple[float, float]
    limits: tuple[tuple[float, float], ...]
    text: str
    #: A mean dose: drawn where the curve crosses it (the volume receiving the mean dose).
    mean: bool = False


def _to_gy(value: float, unit: DoseUnit, prescription: float | None) -> float | None:
    if unit is DoseUnit.GY:
        return value
    if unit is DoseUnit.CGY:
        return value / 100.0
    if prescription is None or not prescription > 0:
        return None
    return value / 100.0 * prescription


def _to_percent(value: float, unit: VolumeUnit, total_cc: float) -> float | None:
    if unit is VolumeUnit.PERCENT:
        return value
    if not total_cc > 0:
        return None
    return 100.0 * value / total_cc


def _bounds(limit: str | None) -> list[float]:
    """The numbers of ``<= x`` and ``>= x`` in a limit, ignoring notes in parentheses."""
    if not limit:
        return []
    head = limit.split(" (", 1)[0]
    return [float(m.group(2)) for m in _BOUND_RE.finditer(head)]


def _place(
    metric: Metric, value: float, dvh: DVH, prescription: float | None
) -> tuple[float, float] | None:
    """The (Gy, %) point of a metric's value on the cumulative DVH, or None."""
    total = dvh.volume_inside_cc
    kind = metric.kind
    if kind is MetricKind.MEAN:
        assert isinstance(metric.output_unit, DoseUnit)
        mean = _to_gy(value, metric.output_unit, prescription)
        if mean is None or not total > 0:
            return None
        receiving = 100.0 * dvh.volume_at_dose(mean) / total
        return mean, min(max(receiving, 0.0), 100.0)
    if kind in (MetricKind.MAX, MetricKind.MIN):
        assert isinstance(metric.output_unit, DoseUnit)
        dose = _to_gy(value, metric.output_unit, prescription)
        if dose is None:
            return None
        return dose, 0.0 if kind is MetricKind.MAX else 100.0
    assert metric.parameter is not None and metric.parameter_unit is not None
    if kind.takes_volume:
        assert isinstance(metric.output_unit, DoseUnit)
        assert isinstance(metric.parameter_unit, VolumeUnit)
        dose = _to_gy(value, metric.output_unit, prescription)
        volume = _to_percent(metric.parameter, metric.parameter_unit, total)
        if dose is None or volume is None:
            return None
        volume = min(volume, 100.0)
        return dose, volume if kind is MetricKind.DOSE_AT_VOLUME else 100.0 - volume
    assert isinstance(metric.output_unit, VolumeUnit)
    assert isinstance(metric.parameter_unit, DoseUnit)
    dose = _to_gy(metric.parameter, metric.parameter_unit, prescription)
    volume = _to_percent(value, metric.output_unit, total)
    if dose is None or volume is None:
        return None
    volume = min(max(volume, 0.0), 100.0)
    return dose, volume if kind is MetricKind.VOLUME_AT_DOSE else 100.0 - volume


def dvh_markers(
    result: CheckResult, dvhs: Mapping[str, DVH]
) -> tuple[list[PlotMarker], list[tuple[RuleResult, str]]]:
    """Place every dose-volume and coverage result with a metric on its ROI's curve.

    Parameters
    ----------
    result
        A protocol check.
    dvhs
        DVH by ROI name (see :func:`report_dvhs`).

    Returns
    -------
    markers, unplaced
        The placed markers, and the results that could not be placed with the reason.
    """
    plan = result.export.plan
    prescription = plan.total_dose_gy if plan is not None else None
    markers: list[PlotMarker] = []
    unplaced: list[tuple[RuleResult, str]] = []
    for r in result.results:
        if r.kind not in _PLOTTED_KINDS or r.metric is None:
            continue
        try:
            metric = parse_metric(r.metric)
        except MetricSyntaxError:
            unplaced.append((r, "the metric is not a DVH metric"))
            continue
        dvh = dvhs.get(r.structure or "")
        if dvh is None:
            unplaced.append((r, "no DVH for this structure"))
            continue
        if r.measured is None:
            unplaced.append((r, "not measured"))
            continue
        point = _place(metric, r.measured, dvh, prescription)
        if point is None:
            unplaced.append((r, "cannot convert the metric to Gy and %"))
            continue
        limits = []
        for bound in _bounds(r.limit):
            placed = _place(metric, bound, dvh, prescription)
            if placed is not None:
                limits.append(placed)
        text = f"{r.id}: {r.structure} {r.metric} = {_fmt(r.measured)}"
        if r.limit:
            text += f" (limit {_round_text(r.limit)})"
        text += f": {STATUS_LABEL.get(r.status, r.status).lower()}"
        markers.append(
            PlotMarker(
                r.id,
                r.structure or "",
                r.metric,
                r.status,
                point,
                tuple(limits),
                text,
                mean=metric.kind is MetricKind.MEAN,
            )
        )
    return markers, unplaced


def _nice_step(span: float, target_ticks: int = 8) -> float:
    """A 1, 2, 2.5 or 5 x 10^k tick step giving about ``target_ticks`` ticks over ``span``."""
    if not span > 0:
        return 1.0
    raw = span / target_ticks
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        if factor * power >= raw:
            return factor * power
    return 10.0 * power


def _curve_points(dvh: DVH, x_max: float) -> list[tuple[float, float]]:
    """Cumulative DVH as (Gy, %) points, about 600 over the plot's dose range."""
    total = dvh.volume_inside_cc
    if not total > 0 or not math.isfinite(dvh.max_gy):
        return []
    step = max(x_max / 600.0, 1e-6)
    doses, volumes = dvh.cumulative(step)
    points = [(float(d), 100.0 * float(v) / total) for d, v in zip(doses, volumes, strict=True)]
    # Drop the run of zero volume past the maximum dose (keep its first point).
    while len(points) > 2 and points[-1][1] <= 0.0 and points[-2][1] <= 0.0:
        points.pop()
    return points


def _axis_max(top: float) -> tuple[float, float]:
    """A dose axis from 0 to a round number above ``top``: (step, maximum)."""
    span = top * 1.05 if top > 0 else 1.0
    step = _nice_step(span)
    return step, step * math.ceil(span / step)


def _low_dose_top(rois: Sequence[str], dvhs: Mapping[str, DVH], targets: set[str]) -> float:
    """The dose below which the organs' curves fall to 2 % of their volume (0 when none)."""
    top = 0.0
    for name in rois:
        dvh = dvhs[name]
        if name in targets or not dvh.volume_inside_cc > 0 or not math.isfinite(dvh.max_gy):
            continue
        top = max(top, dvh.dose_at_volume(0.02 * dvh.volume_inside_cc))
    return top


@dataclass(frozen=True)
class _Panel:
    left: float
    right: float
    top: float
    bottom: float
    x_max: float
    step: float

    def sx(self, dose: float) -> float:
        return self.left + (self.right - self.left) * min(max(dose, 0.0), self.x_max) / self.x_max

    def sy(self, volume: float) -> float:
        return self.bottom - (self.bottom - self.top) * min(max(volume, 0.0), 100.0) / 100.0

    def holds(self, dose: float) -> bool:
        return dose <= self.x_max * (1 + 1e-9)


_MARKER_RADIUS = {"pass": 4.0, "minor": 6.0, "major": 6.5, "not_evaluated": 4.0}


def _draw_panel(
    panel: _Panel,
    rois: Sequence[str],
    dvhs: Mapping[str, DVH],
    markers: Sequence[PlotMarker],
    styles: Mapping[str, tuple[str, str, float]],
    zoom: bool,
) -> list[str]:
    """Grid, axes, curves and markers of one panel; ``zoom`` marks the low-dose panel."""
    left, right, top, bottom = panel.left, panel.right, panel.top, panel.bottom
    suffix = "-zoom" if zoom else ""
    parts = [
        f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" '
        'fill="#fcfcfc" stroke="#999"/>'
    ]
    k = 0
    while k * panel.step <= panel.x_max + 1e-9:
        x = panel.sx(k * panel.step)
        parts.append(
            f'<line class="grid" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" '
            'stroke="#e4e4e4"/>'
            f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 5}" stroke="#444"/>'
            f'<text class="xtick{suffix}" x="{x:.1f}" y="{bottom + 19}" '
            f'text-anchor="middle">{_e(f"{k * panel.step:g}")}</text>'
        )
        k += 1
    for v in range(0, 101, 20):
        y = panel.sy(v)
        parts.append(
            f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" '
            'stroke="#e4e4e4"/>'
            f'<line x1="{left - 5}" y1="{y:.1f}" x2="{left}" y2="{y:.1f}" stroke="#444"/>'
            f'<text class="ytick{suffix}" x="{left - 8}" y="{y + 4:.1f}" '
            f'text-anchor="end">{v}</text>'
        )
    middle = (top + bottom) / 2
    parts.append(
        f'<text x="{(left + right) / 2:.0f}" y="{bottom + 40}" text-anchor="middle">'
        "Dose (Gy)</text>"
        f'<text x="18" y="{middle:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 18 {middle:.0f})">Volume (% of structure)</text>'
    )
    for name in rois:
        points = _curve_points(dvhs[name], panel.x_max)
        if not points:
            continue
        colour, dash, width = styles[name]
        d = "M" + " L".join(f"{panel.sx(x):.1f} {panel.sy(y):.1f}" for x, y in points)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<path class="dvh-curve{suffix}" data-roi="{_e(name)}" d="{d}" fill="none" '
            f'stroke="{colour}" stroke-width="{width:g}"{dash_attr}>'
            f"<title>{_e(name)}</title></path>"
        )
    # Constraint markers: the measured point (filled with the colour of its status,
    # outlined with its structure's) and the limit (hollow diamond), joined by a dashed
    # line; a deviation also gets its rule id beside the point.
    for m in markers:
        if zoom and (m.roi not in styles or not panel.holds(m.point[0])):
            continue
        colour = STATUS_COLOUR.get(m.status, "#000")
        outline = styles[m.roi][0] if m.roi in styles else "#000"
        px, py = panel.sx(m.point[0]), panel.sy(m.point[1])
        title = f"<title>{_e(m.text)}</title>"
        for lx, ly in m.limits:
            if zoom and not panel.holds(lx):
                continue
            qx, qy = panel.sx(lx), panel.sy(ly)
            parts.append(
                f'<line class="limit-link" x1="{px:.1f}" y1="{py:.1f}" x2="{qx:.1f}" '
                f'y2="{qy:.1f}" stroke="{colour}" stroke-dasharray="4 3"/>'
                f'<polygon class="limit-marker{suffix}" data-rule="{_e(m.rule_id)}" '
                f'points="{qx:.1f},{qy - 6:.1f} {qx + 6:.1f},{qy:.1f} {qx:.1f},{qy + 6:.1f} '
                f'{qx - 6:.1f},{qy:.1f}" fill="#fff" stroke="{colour}" stroke-width="2">'
                f"{title}</polygon>"
            )
        radius = _MARKER_RADIUS.get(m.status, 4.0)
        if m.mean:
            parts.append(
                f'<line class="mean-tick{suffix}" data-rule="{_e(m.rule_id)}" x1="{px:.1f}" '
                f'y1="{py - radius - 7:.1f}" x2="{px:.1f}" y2="{py + radius + 7:.1f}" '
                f'stroke="{outline}" stroke-width="2"/>'
            )
        parts.append(
            f'<circle class="marker{suffix} st-{_e(m.status)}" data-rule="{_e(m.rule_id)}" '
            f'data-roi="{_e(m.roi)}" cx="{px:.1f}" cy="{py:.1f}" r="{radius:g}" '
            f'fill="{colour}" stroke="{outline}" stroke-width="2"'
            + (' data-mean="yes"' if m.mean else "")
            + f">{title}</circle>"
        )
        if m.status in ("minor", "major"):
            anchor, dx = ("end", -10) if px > (left + right) / 2 else ("start", 10)
            parts.append(
                f'<text class="marker-label{suffix}" x="{px + dx:.1f}" y="{py - 8:.1f}" '
                f'text-anchor="{anchor}" fill="{colour}" font-weight="700">'
                f"{_e(m.rule_id)}</text>"
            )
    return parts


def _svg_plot(
    rois: Sequence[str],
    dvhs: Mapping[str, DVH],
    markers: Sequence[PlotMarker],
    targets: Sequence[str] = (),
) -> str:
    """The inline SVG of the cumulative DVHs with the constraint markers.

    A second, low-dose panel repeats the organs' curves (not the targets') over the
    dose range where they fall to 2 % of their volume, when that range is under
    :data:`_ZOOM_FRACTION` of the main dose axis: there curves that crowd against 0 Gy
    in the main panel come apart.
    """
    doses = [dvhs[n].max_gy for n in rois if math.isfinite(dvhs[n].max_gy)]
    doses += [m.point[0] for m in markers] + [p[0] for m in markers for p in m.limits]
    step, x_max = _axis_max(max([d for d in doses if math.isfinite(d)] + [0.0]))
    main = _Panel(_LEFT, _RIGHT, _TOP, _BOTTOM, x_max, step)
    target_set = set(targets)
    styles = {
        name: (
            PALETTE[i % len(PALETTE)],
            DASHES[i % len(DASHES)],
            2.5 if name in target_set else 2.0,
        )
        for i, name in enumerate(rois)
    }
    organs = [n for n in rois if n not in target_set]
    low = _low_dose_top(rois, dvhs, target_set)
    zoom: _Panel | None = None
    if organs and 0 < low * 1.05 <= _ZOOM_FRACTION * x_max:
        z_step, z_max = _axis_max(low)
        zoom = _Panel(_LEFT, _RIGHT, _ZOOM_TOP, _ZOOM_BOTTOM, z_max, z_step)
    height = _H_ZOOM if zoom is not None else _H
    parts = [
        f'<svg class="dvh" viewBox="0 0 {_W} {height}" '
        f'width="{_W}" height="{height}" role="img" '
        'aria-label="Cumulative dose-volume histograms with the constraints">',
        *_draw_panel(main, rois, dvhs, markers, styles, zoom=False),
    ]
    if zoom is not None:
        parts.append(
            f'<text class="zoom-title" x="{_LEFT}" y="{_ZOOM_TOP - 10}" font-weight="700">'
            f"Low-dose detail, 0-{_e(f'{zoom.x_max:g}')} Gy: organs only (targets in the "
            "panel above)</text>"
        )
        zoom_styles = {n: styles[n] for n in organs}
        parts += _draw_panel(zoom, organs, dvhs, markers, zoom_styles, zoom=True)
    # Legend.
    lx, ly = _RIGHT + 24, _TOP + 10
    for name in rois:
        colour, dash, width = styles[name]
        label = name + ("" if dvhs[name].complete else " (partly outside the dose grid)")
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<line class="legend-line" x1="{lx}" y1="{ly}" x2="{lx + 26}" y2="{ly}" '
            f'stroke="{colour}" stroke-width="{width + 0.5:g}"{dash_attr}/>'
            f'<text class="legend" x="{lx + 34}" y="{ly + 4}">{_e(label)}</text>'
        )
        ly += 20
    ly += 8
    for status in ("pass", "minor", "major"):
        parts.append(
            f'<circle cx="{lx + 13}" cy="{ly}" r="{_MARKER_RADIUS[status]:g}" '
            f'fill="{STATUS_COLOUR[status]}" stroke="#444" stroke-width="1"/>'
            f'<text x="{lx + 34}" y="{ly + 4}">measured, {STATUS_LABEL[status].lower()}</text>'
        )
        ly += 20
    parts.append(
        f'<polygon points="{lx + 13},{ly - 6} {lx + 19},{ly} {lx + 13},{ly + 6} {lx + 7},{ly}" '
        f'fill="#fff" stroke="#444" stroke-width="2"/>'
        f'<text x="{lx + 34}" y="{ly + 4}">limit</text>'
    )
    ly += 20
    parts.append(
        f'<line x1="{lx + 13}" y1="{ly - 9}" x2="{lx + 13}" y2="{ly + 9}" stroke="#444" '
        f'stroke-width="2"/><circle cx="{lx + 13}" cy="{ly}" r="4" fill="#fff" stroke="#444" '
        f'stroke-width="2"/><text x="{lx + 34}" y="{ly + 4}">mean dose (on its curve)</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts)


# -- page --------------------------------------------------------------------------------


def _kv(rows: Iterable[tuple[str, str]], title: str, cls: str = "kv") -> str:
    """A two-column table under its heading, which is its ``<thead>`` (repeated on each
    printed page the table runs onto); values must already be escaped."""
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return (
        f'<table class="{cls}"><thead><tr><th colspan="2"><h2>{_e(title)}</h2></th></tr>'
        f"</thead><tbody>{body}</tbody></table>"
    )


def _list(items: Sequence[str], cls: str = "", empty: str = "none") -> str:
    """An HTML list of already escaped items."""
    if not items:
        return f'<p class="muted">{_e(empty)}</p>'
    attr = f' class="{cls}"' if cls else ""
    return f"<ul{attr}>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _plan_section(doc: Mapping[str, Any]) -> str:
    plan = doc["plan"]
    record = doc.get("plan_record") or {}
    rows = [("Patient ID", f'<span class="mono">{_e(doc["patient_id"])}</span>')]
    if record.get("patient_name"):
        rows.append(("Patient name", _e(record["patient_name"])))
    if plan is None:
        rows.append(("Plan", "no RTPLAN: dose used as stored"))
    else:
        groups = plan["fraction_groups"]
        fractions = _e(plan["fractions"] if plan["fractions"] else "not given")
        if len(groups) > 1:
            parts = " + ".join(str(g["fractions"] or "?") for g in groups)
            fractions += _e(f" in {len(groups)} fraction groups ({parts})")
        reviewed = ", ".join(
            x
            for x in (
                record.get("review_date"),
                _time(record.get("review_time")),
                f"by {record['reviewer']}" if record.get("reviewer") else None,
            )
            if x
        )
        rows += [
            (
                "Plan label",
                _e(plan["label"] + (f" ({record['name']})" if record.get("name") else "")),
            ),
            ("Plan date", _e(record.get("plan_date") or "not given")),
            ("Intent", _e(plan["intent"] or "not given")),
            (
                "Approval",
                _e((plan["approval"] or "not given") + (f": {reviewed}" if reviewed else "")),
            ),
            ("Treatment machine", _e(", ".join(record.get("machines") or []) or "not given")),
            ("Planning system", _e(record.get("planning_system") or "not given")),
            ("Radiation", _e(plan["radiation_type"] or "not given")),
            ("Fractions", fractions),
        ]
    rx = doc.get("prescription")
    if rx is not None:
        per_fraction = " + ".join(
            f"{g['fractions'] or '?'} x {_qty(g['dose_per_fraction_gy'], 'Gy', 'dose not given')}"
            for g in rx["groups"]
        )
        rows += [
            (
                "Prescription",
                _e(
                    _qty(rx["total_gy"], "Gy", "not given")
                    + (f" ({per_fraction})" if per_fraction else "")
                ),
            ),
            ("Prescription from", _e(rx["detail"])),
        ]
    else:
        rows.append(
            (
                "Prescription",
                f'<span class="err">{_e(doc.get("prescription_problem") or "none")}</span>',
            )
        )
        if plan is not None and plan["beam_dose_total_gy"] is not None:
            rows.append(
                (
                    "Beam doses (hint)",
                    _e(
                        f"{_fmt(plan['beam_dose_total_gy'])} Gy at the specification point: "
                        "not a prescription, not used by any rule"
                    ),
                )
            )
    dose = doc["inputs"]["dose"]
    rows.append(("Dose", _e(f"{dose['summation']}, {dose['dose_type'] or 'DoseType not given'}")))
    scale = dose.get("scale")
    if scale is not None:
        cls = "" if scale["confirmed"] else ' class="warn"'
        points = [
            _e(
                f"{p['label']}: grid {_qty(p['grid_gy'], 'Gy', 'not read')}; plan: course "
                f"{_qty(p['course_gy'], 'Gy', 'not given')}"
                + (f", one fraction {_qty(p['fraction_gy'], 'Gy')}" if p["fraction_gy"] else "")
                + f" → {p['reading']}"
            )
            for p in scale["points"]
        ]
        rows.append(
            (
                "Dose scale",
                f"<span{cls}>{_e(scale['summary'])}</span>" + (_list(points) if points else ""),
            )
        )
    return "<div>" + _kv(rows, "Plan") + "</div>"


def _time(value: str | None) -> str | None:
    """A DICOM time (HHMMSS[.frac]) as HH:MM:SS."""
    if not value:
        return None
    digits = value.split(".")[0]
    if len(digits) >= 4 and digits.isdigit():
        return ":".join(digits[i : i + 2] for i in range(0, min(len(digits), 6), 2))
    return value


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], cls: str) -> str:
    """A table with a repeated header (``<thead>``); cells must already be escaped."""
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>'


def _beams_section(doc: Mapping[str, Any]) -> str:
    """Every beam of the RTPLAN: what the plan delivers."""
    record = doc.get("plan_record") or {}
    beams = record.get("beams") or []
    if not beams:
        return ""
    rows = []
    for b in beams:
        gantry = " → ".join(f"{a:g}" for a in b["gantry_deg"])
        if b["rotation"]:
            gantry += f" ({b['rotation']})"
        iso = b["isocentre_mm"]
        rows.append(
            [
                _e(b["number"]),
                _e(b["name"]),
                _e(
                    b["technique"]
                    + ("" if b["delivery"] in (None, "TREATMENT") else f", {b['delivery'].lower()}")
                ),
                _e(" ".join(x for x in (b["radiation_type"], b["energy"]) if x)),
                _e(
                    f"{b['meterset']:.1f} {b['meterset_unit']}"
                    if b["meterset"] is not None
                    else "-"
                ),
                _e(gantry or "-"),
                _e("-" if b["couch_deg"] is None else f"{b['couch_deg']:g}"),
                _e("-" if iso is None else ", ".join(f"{v:.1f}" for v in iso)),
                _e(b["machine"] or "-"),
            ]
        )
    head = (
        "#",
        "Beam",
        "Technique",
        "Radiation",
        "Meterset / fx",
        "Gantry (°)",
        "Couch (°)",
        "Isocentre (mm)",
        "Machine",
    )
    return "<h2>Beams</h2>" + _table(head, rows, "beams")


def _dvh_statistics_section(doc: Mapping[str, Any]) -> str:
    """Per ROI: volume, min, mean, max, D98/D95/D50/D2 (the check's DVHs)."""
    stats = doc.get("dvh_statistics") or []
    rows = []
    skipped = []
    partial = []
    for s in stats:
        if not s["computed"]:
            skipped.append(f"{s['name']}: {s.get('reason') or 'no DVH'}")
            continue
        doses = s.get("doses_gy") or {}
        outside = s.get("volume_outside_dose_cc") or 0.0
        if outside > 0:
            partial.append(f"{s['name']} ({_fmt(outside, 3)} cc)")
        rows.append(
            [
                _e(s["name"]) + (" !" if outside > 0 else ""),
                _e(_fmt(s["volume_cc"])),
                _e(dose_text(s["min_gy"])),
                _e(dose_text(s["mean_gy"])),
                _e(dose_text(s["max_gy"])),
                *(_e(dose_text(doses.get(k), "n/a")) for k in ("D98%", "D95%", "D50%", "D2%")),
            ]
        )
    if not rows and not skipped:
        return ""
    head = (
        "ROI",
        "Volume (cc)",
        "Min (Gy)",
        "Mean (Gy)",
        "Max (Gy)",
        "D98% (Gy)",
        "D95% (Gy)",
        "D50% (Gy)",
        "D2% (Gy)",
    )
    out = '<h2 id="dvh-statistics">DVH statistics</h2>' + _table(head, rows, "stats")
    if partial:
        out += (
            '<p class="muted">! Part of the structure lies outside the dose grid: '
            + _e(", ".join(partial))
            + ". Its minimum, mean and maximum are those of the part inside; its D98-D2 are "
            "n/a (they would cover only part of it).</p>"
        )
    if skipped:
        out += '<p class="muted">Without a DVH: ' + _e("; ".join(skipped)) + "</p>"
    return out


def _tps_section(doc: Mapping[str, Any]) -> str:
    """The planning system's DVHs beside rtcheck's, differences beyond 3 % flagged."""
    entries = doc.get("tps_dvh_comparison") or []
    if not entries:
        return ""
    rows = []
    notes = []
    flagged = 0
    for entry in entries:
        name = entry["name"] or f"ROI #{entry['roi_number']}"
        for note in entry["notes"]:
            notes.append(f"{name}: {note}")
        for r in entry["rows"]:
            mark = ""
            if r["flagged"]:
                flagged += 1
                mark = ' class="warn"'
            pct = r["difference_percent"]
            rows.append(
                [
                    _e(name),
                    _e(f"{r['quantity']} ({r['unit']})"),
                    _e(_fmt(r["tps"])),
                    _e(_fmt(r["rtcheck"])),
                    f"<span{mark}>"
                    + _e("-" if r["difference"] is None else f"{r['difference']:+.3g}")
                    + _e("" if pct is None else f" ({pct:+.1f} %)")
                    + ("" if not r["flagged"] else " ⚑")
                    + "</span>",
                ]
            )
    head = ("ROI", "Quantity", "Planning system", "rtcheck", "Difference")
    summary = (
        f"{flagged} difference(s) beyond 3 % (and beyond 1 % of the prescription for doses, "
        "0.1 cc for volumes), flagged ⚑"
        if flagged
        else "no difference beyond 3 %"
    )
    out = (
        '<h2 id="tps-dvh">DVHs of the planning system beside rtcheck\'s</h2>'
        f'<p class="{"warn" if flagged else "muted"}">{_e(summary)}</p>' + _table(head, rows, "tps")
    )
    if notes:
        out += _list([_e(n) for n in dict.fromkeys(notes)], "muted")
    return out


def _protocol_section(doc: Mapping[str, Any]) -> str:
    p = doc["protocol"]
    rows = [
        ("Protocol", _e(p["id"])),
        ("Title", _e(p["title"])),
        ("Version", _e(p["version"])),
        ("SHA-256", f'<span class="mono sha256">{_e(p["sha256"])}</span>'),
        (
            "Checked at",
            _e(f"{doc['checked_at']} (local time {doc['checked_at_local']})"),
        ),
        ("rtcheck", _e(doc["rtcheck_version"])),
        ("File", f'<span class="mono">{_e(p["file"])}</span>'),
        ("Strict", "yes: minor deviations fail" if doc["strict"] else "no"),
        (
            "Between planes",
            "shape model (outlines interpolated)"
            if doc["between_planes"] == "shape"
            else "slab model (contours extruded halfway)",
        ),
    ]
    return _kv(rows, "Protocol")


def _fact_text(value: object) -> str:
    """A fact's value in words: numbers rounded, mappings as "key value" pairs."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return _fmt(value)
    if isinstance(value, Mapping):
        return "; ".join(
            f"{str(k).replace('_gy', ' (Gy)').replace('_', ' ')} {_fact_text(v)}"
            for k, v in value.items()
        )
    if isinstance(value, list | tuple):
        return ", ".join(_fact_text(v) for v in value) if value else "none"
    return str(value)


def _facts_section(result: CheckResult, doc: Mapping[str, Any]) -> str:
    facts = doc["facts"]
    # A fact the protocol derives is shown even when unknown; any other fact only when it
    # has a value (the JSON always carries "location", a lung fact, even for H&N plans).
    declared = {f.name for f in result.protocol.facts}
    rows: list[tuple[str, str]] = []
    for key, value in facts.items():
        if key in STRUCTURED_FACTS or (value in (None, "") and key not in declared):
            continue
        if key.endswith("_reason") and key.removesuffix("_reason") in declared:
            continue  # said beside its fact
        shown = _fact_text(value) if value not in (None, "") else "unknown"
        if key in declared and facts.get(f"{key}_reason"):
            shown += f" ({facts[f'{key}_reason']})"
        rows.append((key.replace("_", " ").capitalize(), _e(shown)))
    distances = facts.get("distances_mm") or {}
    if distances:
        rows.append(
            (
                "Distances (GTV surface to organ)",
                '<table class="distances"><thead><tr><th>Organ</th>'
                "<th>Distance</th></tr></thead><tbody>"
                + "".join(
                    f'<tr><td>{_e(k)}</td><td class="num">{_e(f"{v:.1f}")} mm</td></tr>'
                    for k, v in distances.items()
                )
                + "</tbody></table>",
            )
        )
    bed, eqd2 = facts.get("bed_gy") or {}, facts.get("eqd2_gy") or {}
    if bed or eqd2:
        keys = list(dict.fromkeys([*bed, *eqd2]))
        rows.append(
            (
                "BED / EQD2",
                '<table class="radiobiology"><thead><tr><th>&alpha;/&beta; (Gy)</th>'
                "<th>BED (Gy)</th><th>EQD2 (Gy)</th></tr></thead><tbody>"
                + "".join(
                    f'<tr><td>{_e(k)}</td><td class="num">{_e(_fmt(bed.get(k)))}</td>'
                    f'<td class="num">{_e(_fmt(eqd2.get(k)))}</td></tr>'
                    for k in keys
                )
                + "</tbody></table>",
            )
        )
    targets = facts.get("targets") or []
    rows.append(
        (
            "Targets (median dose)",
            _list(
                [f"{_e(t['name'])}: {_e(_qty(t.get('median_gy'), 'Gy'))}" for t in targets],
                empty="no target volume recognised",
            ),
        )
    )
    elective = facts.get("elective_volumes") or []
    rows.append(
        (
            "Elective volumes",
            _list(
                [
                    f"<strong>{_e(e['name'])}</strong>: {_e('; '.join(e['reasons']))}"
                    for e in elective
                ],
                empty="none found",
            ),
        )
    )
    quality = plan_quality_lines(dict(facts))
    if quality:
        rows.append(("Plan quality (RTOG 0915 metrics)", _list([_e(q) for q in quality], empty="")))
    if facts.get("metastasis_count") is not None:
        rows.append(("Lesions counted", _e(facts["metastasis_count"])))
    return _kv(rows, "Facts")


def _rules_section(result: CheckResult, doc: Mapping[str, Any]) -> str:
    head = (
        '<thead><tr><th>Status</th><th>Rule</th><th class="kind">Kind</th><th>Structure</th>'
        "<th>Metric</th><th>Measured</th><th>Limit</th><th>Message</th><th>Source</th></tr>"
        "</thead>"
    )
    rows = []
    for r in result.results:
        if r.measured is not None:
            measured = measured_text(r)
        elif r.kind in _PLOTTED_KINDS or r.status == "not_evaluated":
            measured = "not measured"
        else:
            measured = ""
        limit = _round_text(r.limit) if r.limit else ""
        message = r.message
        if r.limit and limit != r.limit:
            message = message.replace(r.limit, limit)
        # A passing dose-volume result's message only restates the row.
        restates = (
            r.status == "pass"
            and r.kind in _PLOTTED_KINDS
            and r.structure is not None
            and r.metric is not None
            and message.startswith(f"{r.structure} {r.metric} = ")
        )
        source = r.source or ""
        rows.append(
            f'<tr class="rule st-{_e(r.status)}" data-rule="{_e(r.id)}" '
            f'data-status="{_e(r.status)}">'
            f'<td><span class="badge b-{_e(r.status)}">'
            f"{_e(STATUS_LABEL.get(r.status, r.status))}</span></td>"
            f'<td class="rid">{_e(r.id).replace(".", ".<wbr>").replace("_", "_<wbr>")}</td>'
            f'<td class="kind">{_e(r.kind)}</td>'
            f"<td>{_e(r.structure or '')}</td><td>{_e(r.metric or '')}</td>"
            f'<td class="num">{_e(measured)}</td><td class="limit">{_e(limit)}</td>'
            + (
                f'<td class="msg restates"><span>{_e(message)}</span></td>'
                if restates
                else f'<td class="msg">{_e(message)}</td>'
            )
            + f'<td class="src">{_e(source)}</td></tr>'
        )
    table = f'<table class="rules">{head}<tbody>{"".join(rows)}</tbody></table>'
    notes = []
    if doc["skipped"]:
        notes.append(
            f"{len(doc['skipped'])} rule(s) did not apply: listed under "
            '<a href="#not-checked">Not checked</a>.'
        )
    if any(r.source for r in result.results):
        notes.append(
            "The Source column cites the protocol's references, listed in the appendix "
            '(<a href="#sources">Sources cited</a>).'
        )
    after = f'<p class="muted">{" ".join(notes)}</p>' if notes else ""
    return f"<h2>Rules ({len(result.results)} results)</h2>{table}{after}"


def _sources_section(result: CheckResult) -> str:
    """The references the rules cite, in full (appendix)."""
    sources = result.protocol.sources
    cited = dict.fromkeys(r.source for r in result.results if r.source)
    if not cited:
        return ""
    return '<h2 id="sources">Sources cited</h2>' + _list(
        [
            f'<span class="mono">{_e(key)}</span>: {_e(sources.get(key, "not described"))}'
            for key in cited
            if key is not None
        ]
    )


def _signature_section(verdict: str) -> str:
    """Blank lines for the physicist who reviews the check and signs the record."""
    line = '<td class="line"></td>'
    return (
        '<section class="signature" id="signature"><table class="sign"><thead><tr>'
        '<th colspan="6"><h2>Physics review</h2></th></tr></thead><tbody>'
        f"<tr><th>Reviewed by</th>{line}<th>Date</th>{line}<th>Signature</th>{line}</tr>"
        '<tr><th>Decision</th><td class="decision" colspan="3">&#9744; accepted '
        "&#9744; accepted with comments &#9744; not accepted</td>"
        f'<th>Comments</th><td class="line"></td></tr></tbody></table>'
        f'<p class="muted">rtcheck verdict: {_e(verdict.upper())}. The reviewer signs for '
        "the plan as checked above; rules listed under Not checked were not evaluated."
        "</p></section>"
    )


def _not_checked_section(result: CheckResult) -> str:
    """First screen: rules skipped, ROIs not evaluated as a role, stand-ins (issue 10)."""
    roles = result.roles
    parts: list[str] = []
    notes = [_e(s.note) for s in roles.stand_ins] + [
        f"{_e(role)}: {_e(note)}"
        for role, note in roles.notes.items()
        if not any(s.role == role for s in roles.stand_ins)
    ]
    if notes:
        parts.append("<h3>How roles were filled</h3>" + _list(notes, "warn"))
    if roles.excluded:
        parts.append(
            f"<h3>Not evaluated as a role ({len(roles.excluded)})</h3>"
            + _list(
                [f'<span class="mono">{_e(e.roi)}</span>: {_e(e.reason)}' for e in roles.excluded]
            )
        )
    if result.skipped:
        parts.append(
            f"<h3>Rules skipped ({len(result.skipped)})</h3>"
            + _list(
                [
                    f'<span class="mono">{_e(", ".join(ids))}</span>: {_e(reason)}'
                    for reason, ids in skipped_by_reason(result)
                ]
            )
        )
    if not parts:
        return '<p id="not-checked" class="muted">No rule skipped, no ROI set aside.</p>'
    return '<section id="not-checked"><h2>Not checked</h2>' + "".join(parts) + "</section>"


def _structures_section(result: CheckResult, doc: Mapping[str, Any]) -> str:
    roles = result.roles
    rows = "".join(
        f"<tr><td>{_e(role)}</td><td>{_e(', '.join(names))}</td>"
        f"<td>{_e(roles.how.get(role, ''))}</td></tr>"
        for role, names in roles.matched.items()
    )
    table = (
        '<table class="roles"><thead><tr><th>Role</th><th>ROI</th><th>Matched by</th></tr>'
        f"</thead><tbody>{rows}</tbody></table>"
        if rows
        else '<p class="muted">no role matched any ROI</p>'
    )
    missing = [_e(m) for m in doc["missing_roles"]]
    ambiguous = [
        f"{_e(role)}: {_e(', '.join(names))}" for role, names in doc["ambiguous_roles"].items()
    ]
    others = sorted(
        {r.name for r in result.export.structures.rois}
        - {n for names in roles.matched.values() for n in names}
    )
    return (
        "<h2>Structures</h2>"
        + table
        + "<h3>Missing roles</h3>"
        + _list(missing, empty="none")
        + ("<h3>Ambiguous roles</h3>" + _list(ambiguous, "err") if ambiguous else "")
        + "<h3>Other ROIs (no role)</h3>"
        + _list([_e(o) for o in others], empty="none")
    )


def _provenance_section(result: CheckResult, doc: Mapping[str, Any]) -> str:
    inputs = doc["inputs"]
    rows: list[tuple[str, str]] = [("rtcheck version", _e(doc["rtcheck_version"]))]
    rows.append(("Report schema", _e(doc["schema"])))
    plan = inputs.get("plan")
    if plan is not None:
        rows.append(
            (
                "RTPLAN",
                f'<span class="mono">{_e(plan["file"])}</span><br>'
                f'SOP Instance UID <span class="mono">{_e(plan["sop_instance_uid"])}</span>',
            )
        )
    ss = inputs["structure_set"]
    rows.append(
        (
            "RTSTRUCT",
            f'<span class="mono">{_e(ss["file"])}</span><br>'
            f'SOP Instance UID <span class="mono">{_e(ss["sop_instance_uid"])}</span>',
        )
    )
    dose = inputs["dose"]
    dose_items = "<br>".join(
        f'<span class="mono">{_e(f)}</span> (SOP Instance UID <span class="mono">{_e(u)}</span>)'
        for f, u in zip(dose["files"], dose["sop_instance_uids"], strict=False)
    )
    rows.append((f"RTDOSE ({_e(dose['summation'])})", dose_items))
    rows.append(("CT", _e(f"{len(result.export.ct_files)} file(s)")))
    p = doc["protocol"]
    rows.append(
        (
            "Protocol file",
            f'<span class="mono">{_e(p["file"])}</span><br>'
            f'SHA-256 <span class="mono">{_e(p["sha256"])}</span>',
        )
    )
    return _kv(rows, "Provenance")


def _dvh_section(result: CheckResult, dvhs: Mapping[str, DVH]) -> str:
    rois = [n for n in plotted_rois(result) if n in dvhs]
    if not rois:
        return '<h2>Dose-volume histograms</h2><p class="muted">no DVH to plot</p>'
    markers, unplaced = dvh_markers(result, dvhs)
    missing = [n for n in plotted_rois(result) if n not in dvhs]
    notes = []
    if unplaced:
        notes.append(
            "<p>Not drawn:</p>"
            + _list(
                [
                    f'<span class="mono">{_e(r.id)}</span> ({_e(r.structure or "-")} '
                    f"{_e(r.metric)}): {_e(why)}"
                    for r, why in unplaced
                ]
            )
        )
    if missing:
        notes.append(f"<p>No DVH (no contours): {_e(', '.join(missing))}</p>")
    targets = [t["name"] for t in result.facts.get("targets", [])]
    return (
        '<h2 id="dvh">Dose-volume histograms</h2>'
        '<p class="muted dvh-legend">Cumulative DVHs of the targets (thicker lines) and the '
        "structures matched to a protocol role, each curve in its own colour and dash "
        "pattern (colour-blind safe; red and amber mark deviations only). Each "
        "dose-volume or coverage constraint is a dot on its curve: the measured value, filled "
        "with the colour of its status (green pass, amber minor, red major, larger for a "
        "deviation and labelled with its rule), outlined in the colour of its structure, "
        "joined to a diamond (the limit). A mean dose is a dot crossed by a vertical tick, "
        "drawn where the curve reaches that dose (the volume receiving at least the mean "
        "dose), its limit likewise. When the organs' curves fall to 2 % of their volume "
        "close to 0 Gy, a second panel repeats them over that low-dose range with a "
        "stretched dose axis. Hover over a dot for the rule.</p>"
        + _svg_plot(rois, dvhs, markers, targets)
        + "".join(notes)
    )


def render_html(result: CheckResult, dvhs: Mapping[str, DVH]) -> str:
    """The check as one self-contained HTML page.

    Parameters
    ----------
    result
        A protocol check (:func:`rtcheck.constraints.engine.check_plan`).
    dvhs
        DVH by ROI name for the plot, usually :func:`report_dvhs` of ``result``; ROIs
        missing from it are not drawn.

    Returns
    -------
    str
        The HTML document: inline CSS and SVG, no script, no external reference.
    """
    doc = to_json(result)
    verdict = result.verdict
    counts = {s: sum(1 for r in result.results if r.status == s) for s in STATUS_LABEL}
    count_text = ", ".join(f"{n} {STATUS_LABEL[s].lower()}" for s, n in counts.items() if n)
    plan = doc["plan"]
    plan_label = plan["label"] if plan is not None else "no plan"
    title = f"rtcheck {verdict.upper()}: {doc['patient_id']} {plan_label} ({result.protocol.id})"
    banner = (
        f'<div class="banner verdict-{_e(verdict)}" style="background:'
        f'{VERDICT_COLOUR.get(verdict, "#444")}">'
        f'<span class="verdict">VERDICT: {_e(verdict.upper())}</span>'
        f'<span class="counts">{_e(count_text or "no rule results")}'
        f"{' · strict: minor deviations fail' if result.strict else ''}"
        f"{' · ' + _e(reason) if (reason := verdict_reason(result)) else ''}</span>"
        f"<span>{_e(result.protocol.id)} v{_e(result.protocol.version)}</span></div>"
    )
    heading = (
        f"<h1>Plan {_e(plan_label)} · patient {_e(doc['patient_id'])}</h1>"
        f'<p class="muted">Checked against {_e(result.protocol.title)} on '
        f"{_e(doc['checked_at_local'])} (UTC {_e(doc['checked_at'])}), rtcheck "
        f"{_e(doc['rtcheck_version'])}</p>"
    )
    if result.selection is not None:
        heading += (
            '<div class="selection">'
            + _list([_e(line) for line in result.selection.lines()])
            + "</div>"
        )
    warnings = [_e(w) for w in doc["warnings"]]
    errors = [_e(e) for e in doc["errors"]]
    if errors or warnings:
        problems = (
            '<h2 id="problems">Errors and warnings</h2>'
            + (
                "<h3>Errors: could not be evaluated, the plan cannot pass</h3>"
                + _list(errors, "err")
                if errors
                else ""
            )
            + ("<h3>Warnings</h3>" + _list(warnings, "warn") if warnings else "")
        )
    else:
        problems = '<p id="problems" class="muted">No errors, no warnings.</p>'
    if doc["notes"]:
        # Cross-checks that agreed: information, not warnings.
        problems += "<h3>Notes</h3>" + _list([_e(n) for n in doc["notes"]], "note")
    record = doc.get("plan_record") or {}
    running = [
        f"Patient {doc['patient_id']}"
        + (f" ({record['patient_name']})" if record.get("patient_name") else ""),
        f"Plan {plan_label}",
        f"{result.protocol.id} v{result.protocol.version}",
        f"{verdict.upper()} · checked {doc['checked_at']}",
    ]
    runhead = (
        '<thead class="runhead"><tr><td><div class="rh">'
        + "".join(f"<span>{_e(part)}</span>" for part in running)
        + "</div></td></tr></thead>"
    )
    summary = (
        banner
        + heading
        + problems
        + _not_checked_section(result)
        + '<div class="grid">'
        + _plan_section(doc)
        + "<div>"
        + _protocol_section(doc)
        + _facts_section(result, doc)
        + "</div></div>"
        + _beams_section(doc)
        + _rules_section(result, doc)
        + _signature_section(verdict)
    )
    appendix = (
        '<div class="appendix-toggle"><label><input type="checkbox" id="print-appendix" '
        "checked> Print the appendix</label> "
        '<span class="muted">(DVH plots, DVH statistics, structures, provenance: from a new '
        "page after the signature; untick to print the summary and signature only)</span></div>"
        '<section class="appendix" id="appendix">'
        + _dvh_section(result, dvhs)
        + _dvh_statistics_section(doc)
        + _tps_section(doc)
        + _structures_section(result, doc)
        + _sources_section(result)
        + _provenance_section(result, doc)
        + "</section>"
    )
    # One table around the page: its <thead> is the running header that Chromium and
    # Firefox repeat at the top of every printed page (hidden on screen).
    body = (
        f'<table class="sheet">{runhead}<tbody class="sheet-body"><tr><td>'
        f"{summary}{appendix}</td></tr></tbody></table>"
    )
    csp = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="rtcheck {_e(doc["rtcheck_version"])}">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )
