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
from rtcheck.check_report import (
    STRUCTURED_FACTS,
    plan_quality_lines,
    skipped_by_reason,
    to_json,
)
from rtcheck.constraints.engine import CheckResult, RuleResult
from rtcheck.constraints.metrics import DoseUnit, Metric, MetricKind, VolumeUnit, parse_metric
from rtcheck.dvh import DVH
from rtcheck.errors import MetricSyntaxError

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
#: Curve colours, one per plotted ROI (cycled).
PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#7f7f7f",
    "#bcbd22",
    "#393b79",
    "#ad494a",
)
_PLOTTED_KINDS = ("dose_volume", "coverage")
_BOUND_RE = re.compile(r"(<=|>=)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")

# Plot geometry (SVG user units).
_W, _H = 980, 480
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 730, 20, 420

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
table.kv th{width:13em;font-weight:600}
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
@media print{.banner{-webkit-print-color-adjust:exact;print-color-adjust:exact}}
"""


def _e(value: object) -> str:
    """Escape any value for HTML text and attribute values."""
    return html.escape("" if value is None else str(value), quote=True)


def _fmt(value: float | None, digits: int = 4) -> str:
    """A number for people: ``digits`` significant digits, no exponent for big values."""
    if value is None or isinstance(value, bool):
        return "-"
    v = float(value)
    if not math.isfinite(v):
        return "-"
    if abs(v) >= 10**digits:
        return f"{v:.0f}"
    return f"{v:.{digits}g}"


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

    This recomputes what the engine computed during the check (the engine keeps its DVHs
    to itself); the result is the same DVH the rules were evaluated on.

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
    of a minimum).
    """

    rule_id: str
    roi: str
    metric: str
    status: str
    point: tuple[float, float]
    limits: tuple[tuple[float, float], ...]
    text: str


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
        return None
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
            reason = (
                "a mean dose is no point of the cumulative DVH"
                if metric.kind is MetricKind.MEAN
                else "cannot convert the metric to Gy and %"
            )
            unplaced.append((r, reason))
            continue
        limits = []
        for bound in _bounds(r.limit):
            placed = _place(metric, bound, dvh, prescription)
            if placed is not None:
                limits.append(placed)
        text = f"{r.id}: {r.structure} {r.metric} = {_fmt(r.measured)}"
        if r.limit:
            text += f" (limit {r.limit})"
        markers.append(
            PlotMarker(r.id, r.structure or "", r.metric, r.status, point, tuple(limits), text)
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


def _svg_plot(rois: Sequence[str], dvhs: Mapping[str, DVH], markers: Sequence[PlotMarker]) -> str:
    """The inline SVG of the cumulative DVHs with the constraint markers."""
    doses = [dvhs[n].max_gy for n in rois if math.isfinite(dvhs[n].max_gy)]
    doses += [m.point[0] for m in markers] + [p[0] for m in markers for p in m.limits]
    top = max([d for d in doses if math.isfinite(d)] + [0.0])
    step = _nice_step(top * 1.05 if top > 0 else 1.0)
    x_max = step * math.ceil((top * 1.05 if top > 0 else 1.0) / step)

    def sx(dose: float) -> float:
        return _LEFT + (_RIGHT - _LEFT) * min(max(dose, 0.0), x_max) / x_max

    def sy(volume: float) -> float:
        return _BOTTOM - (_BOTTOM - _TOP) * min(max(volume, 0.0), 100.0) / 100.0

    parts = [
        f'<svg class="dvh" viewBox="0 0 {_W} {_H}" '
        f'width="{_W}" height="{_H}" role="img" '
        'aria-label="Cumulative dose-volume histograms with the constraints">',
        f'<rect x="{_LEFT}" y="{_TOP}" width="{_RIGHT - _LEFT}" height="{_BOTTOM - _TOP}" '
        'fill="#fcfcfc" stroke="#999"/>',
    ]
    # Grid and ticks.
    k = 0
    while k * step <= x_max + 1e-9:
        x = sx(k * step)
        parts.append(
            f'<line class="grid" x1="{x:.1f}" y1="{_TOP}" x2="{x:.1f}" y2="{_BOTTOM}" '
            'stroke="#e4e4e4"/>'
            f'<line x1="{x:.1f}" y1="{_BOTTOM}" x2="{x:.1f}" y2="{_BOTTOM + 5}" stroke="#444"/>'
            f'<text class="xtick" x="{x:.1f}" y="{_BOTTOM + 19}" '
            f'text-anchor="middle">{_e(f"{k * step:g}")}</text>'
        )
        k += 1
    for v in range(0, 101, 20):
        y = sy(v)
        parts.append(
            f'<line class="grid" x1="{_LEFT}" y1="{y:.1f}" x2="{_RIGHT}" y2="{y:.1f}" '
            'stroke="#e4e4e4"/>'
            f'<line x1="{_LEFT - 5}" y1="{y:.1f}" x2="{_LEFT}" y2="{y:.1f}" stroke="#444"/>'
            f'<text class="ytick" x="{_LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{v}</text>'
        )
    parts.append(
        f'<text x="{(_LEFT + _RIGHT) / 2:.0f}" y="{_BOTTOM + 42}" text-anchor="middle">'
        "Dose (Gy)</text>"
        f'<text x="18" y="{(_TOP + _BOTTOM) / 2:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 18 {(_TOP + _BOTTOM) / 2:.0f})">Volume (% of structure)</text>'
    )
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(rois)}
    # Curves: one <path> per ROI.
    for name in rois:
        points = _curve_points(dvhs[name], x_max)
        if not points:
            continue
        d = "M" + " L".join(f"{sx(x):.1f} {sy(y):.1f}" for x, y in points)
        parts.append(
            f'<path class="dvh-curve" data-roi="{_e(name)}" d="{d}" fill="none" '
            f'stroke="{colours[name]}" stroke-width="2"><title>{_e(name)}</title></path>'
        )
    # Constraint markers: the measured point (filled, colour of the status) and the
    # limit (hollow diamond) joined by a dashed line.
    for m in markers:
        colour = STATUS_COLOUR.get(m.status, "#000")
        px, py = sx(m.point[0]), sy(m.point[1])
        title = f"<title>{_e(m.text)}</title>"
        for lx, ly in m.limits:
            qx, qy = sx(lx), sy(ly)
            parts.append(
                f'<line class="limit-link" x1="{px:.1f}" y1="{py:.1f}" x2="{qx:.1f}" '
                f'y2="{qy:.1f}" stroke="{colour}" stroke-dasharray="4 3"/>'
                f'<polygon class="limit-marker" data-rule="{_e(m.rule_id)}" '
                f'points="{qx:.1f},{qy - 6:.1f} {qx + 6:.1f},{qy:.1f} {qx:.1f},{qy + 6:.1f} '
                f'{qx - 6:.1f},{qy:.1f}" fill="#fff" stroke="{colour}" stroke-width="2">'
                f"{title}</polygon>"
            )
        parts.append(
            f'<circle class="marker st-{_e(m.status)}" data-rule="{_e(m.rule_id)}" '
            f'data-roi="{_e(m.roi)}" cx="{px:.1f}" cy="{py:.1f}" r="5" fill="{colour}" '
            f'stroke="{colours.get(m.roi, "#000")}" stroke-width="2">{title}</circle>'
        )
    # Legend.
    lx, ly = _RIGHT + 24, _TOP + 10
    for name in rois:
        label = name + ("" if dvhs[name].complete else " (partly outside the dose grid)")
        parts.append(
            f'<line x1="{lx}" y1="{ly}" x2="{lx + 26}" y2="{ly}" stroke="{colours[name]}" '
            f'stroke-width="3"/><text class="legend" x="{lx + 34}" y="{ly + 4}">{_e(label)}'
            "</text>"
        )
        ly += 20
    ly += 8
    for status in ("pass", "minor", "major"):
        parts.append(
            f'<circle cx="{lx + 13}" cy="{ly}" r="5" fill="{STATUS_COLOUR[status]}"/>'
            f'<text x="{lx + 34}" y="{ly + 4}">measured, {STATUS_LABEL[status].lower()}</text>'
        )
        ly += 20
    parts.append(
        f'<polygon points="{lx + 13},{ly - 6} {lx + 19},{ly} {lx + 13},{ly + 6} {lx + 7},{ly}" '
        f'fill="#fff" stroke="#444" stroke-width="2"/>'
        f'<text x="{lx + 34}" y="{ly + 4}">limit</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts)


# -- page --------------------------------------------------------------------------------


def _kv(rows: Iterable[tuple[str, str]], cls: str = "kv") -> str:
    """A two-column table; values must already be escaped."""
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="{cls}">{body}</table>'


def _unit(r: RuleResult) -> str:
    """The unit of a result's measured value, when known."""
    if r.kind in ("fractionation", "radiobiology"):
        return "Gy"
    if r.kind == "geometry":
        return "mm"
    if r.metric is not None and r.kind in _PLOTTED_KINDS:
        try:
            return str(parse_metric(r.metric).output_unit)
        except MetricSyntaxError:
            return ""
    if r.kind == "coverage" and r.measured is not None:
        return "% outside"
    return ""


def _list(items: Sequence[str], cls: str = "", empty: str = "none") -> str:
    """An HTML list of already escaped items."""
    if not items:
        return f'<p class="muted">{_e(empty)}</p>'
    attr = f' class="{cls}"' if cls else ""
    return f"<ul{attr}>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _plan_section(doc: Mapping[str, Any]) -> str:
    plan = doc["plan"]
    rows = [("Patient ID", f'<span class="mono">{_e(doc["patient_id"])}</span>')]
    if plan is None:
        rows.append(("Plan", "no RTPLAN: dose used as stored"))
    else:
        groups = plan["fraction_groups"]
        fractions = _e(plan["fractions"] if plan["fractions"] else "not given")
        if len(groups) > 1:
            parts = " + ".join(str(g["fractions"] or "?") for g in groups)
            fractions += _e(f" in {len(groups)} fraction groups ({parts})")
        rows += [
            ("Plan label", _e(plan["label"])),
            ("Intent", _e(plan["intent"] or "not given")),
            ("Approval", _e(plan["approval"] or "not given")),
            ("Radiation", _e(plan["radiation_type"] or "not given")),
            ("Fractions", fractions),
        ]
    rx = doc.get("prescription")
    if rx is not None:
        per_fraction = " + ".join(
            f"{g['fractions']} x {_fmt(g['dose_per_fraction_gy'])}" for g in rx["groups"]
        )
        rows += [
            (
                "Prescription",
                _e(
                    f"{_fmt(rx['total_gy'])} Gy" + (f" ({per_fraction} Gy)" if per_fraction else "")
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
                f"{p['label']}: grid {_fmt(p['grid_gy'])} Gy; plan: course "
                f"{_fmt(p['course_gy'])} Gy"
                + (f", one fraction {_fmt(p['fraction_gy'])} Gy" if p["fraction_gy"] else "")
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
    return "<div><h2>Plan</h2>" + _kv(rows) + "</div>"


def _protocol_section(doc: Mapping[str, Any]) -> str:
    p = doc["protocol"]
    rows = [
        ("Protocol", _e(p["id"])),
        ("Title", _e(p["title"])),
        ("Version", _e(p["version"])),
        ("SHA-256", f'<span class="mono sha256">{_e(p["sha256"])}</span>'),
        ("File", f'<span class="mono">{_e(p["file"])}</span>'),
        ("Strict", "yes: minor deviations fail" if doc["strict"] else "no"),
        (
            "Between planes",
            "shape model (outlines interpolated)"
            if doc["between_planes"] == "shape"
            else "slab model (contours extruded halfway)",
        ),
    ]
    return "<div><h2>Protocol</h2>" + _kv(rows) + "</div>"


def _facts_section(doc: Mapping[str, Any]) -> str:
    facts = doc["facts"]
    rows: list[tuple[str, str]] = []
    for key, value in facts.items():
        if key in STRUCTURED_FACTS:
            continue
        rows.append((key.replace("_", " ").capitalize(), _e(value if value else "unknown")))
    distances = facts.get("distances_mm") or {}
    if distances:
        rows.append(
            (
                "Distances (GTV surface to organ)",
                '<table class="distances">'
                + "".join(
                    f'<tr><td>{_e(k)}</td><td class="num">{_e(f"{v:.1f}")} mm</td></tr>'
                    for k, v in distances.items()
                )
                + "</table>",
            )
        )
    bed, eqd2 = facts.get("bed_gy") or {}, facts.get("eqd2_gy") or {}
    if bed or eqd2:
        keys = list(dict.fromkeys([*bed, *eqd2]))
        rows.append(
            (
                "BED / EQD2",
                '<table class="radiobiology"><tr><th>&alpha;/&beta; (Gy)</th><th>BED (Gy)</th>'
                "<th>EQD2 (Gy)</th></tr>"
                + "".join(
                    f'<tr><td>{_e(k)}</td><td class="num">{_e(_fmt(bed.get(k)))}</td>'
                    f'<td class="num">{_e(_fmt(eqd2.get(k)))}</td></tr>'
                    for k in keys
                )
                + "</table>",
            )
        )
    targets = facts.get("targets") or []
    rows.append(
        (
            "Targets (median dose)",
            _list(
                [f"{_e(t['name'])}: {_e(_fmt(t['median_gy']))} Gy" for t in targets],
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
    return "<h2>Facts</h2>" + _kv(rows)


def _rules_section(result: CheckResult, doc: Mapping[str, Any]) -> str:
    head = (
        "<tr><th>Status</th><th>Rule</th><th>Kind</th><th>Structure</th><th>Metric</th>"
        "<th>Measured</th><th>Limit</th><th>Message</th><th>Source</th></tr>"
    )
    rows = []
    sources = result.protocol.sources
    for r in result.results:
        unit = _unit(r)
        measured = _fmt(r.measured) + (f" {unit}" if r.measured is not None and unit else "")
        source = r.source or ""
        rows.append(
            f'<tr class="rule st-{_e(r.status)}" data-rule="{_e(r.id)}" '
            f'data-status="{_e(r.status)}">'
            f'<td><span class="badge b-{_e(r.status)}">'
            f"{_e(STATUS_LABEL.get(r.status, r.status))}</span></td>"
            f'<td class="rid">{_e(r.id).replace(".", ".<wbr>")}</td><td>{_e(r.kind)}</td>'
            f"<td>{_e(r.structure or '-')}</td><td>{_e(r.metric or '-')}</td>"
            f'<td class="num">{_e(measured)}</td><td class="limit">{_e(r.limit or "-")}</td>'
            f'<td class="msg">{_e(r.message)}</td>'
            f'<td class="src">{_e(source or "-")}</td></tr>'
        )
    table = f'<table class="rules">{head}{"".join(rows)}</table>'
    skipped = doc["skipped"]
    skipped_html = ""
    if skipped:
        skipped_html = "<h3>Rules that do not apply</h3>" + _list(
            [f'<span class="mono">{_e(s["id"])}</span>: {_e(s["reason"])}' for s in skipped]
        )
    cited = dict.fromkeys(r.source for r in result.results if r.source)
    references = ""
    if cited:
        references = "<h3>Sources cited</h3>" + _list(
            [
                f'<span class="mono">{_e(key)}</span>: {_e(sources.get(key, "not described"))}'
                for key in cited
                if key is not None
            ]
        )
    return f"<h2>Rules ({len(result.results)} results)</h2>{table}{skipped_html}{references}"


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
        f'<table class="roles"><tr><th>Role</th><th>ROI</th><th>Matched by</th></tr>{rows}</table>'
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
    return "<h2>Provenance</h2>" + _kv(rows)


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
    return (
        '<h2 id="dvh">Dose-volume histograms</h2>'
        '<p class="muted">Cumulative DVHs of the targets and the structures matched to a '
        "protocol role. Each dose-volume or coverage constraint is a dot on its curve (the "
        "measured value, filled with the colour of its status, outlined in the colour of its "
        "structure) joined to a diamond (the limit); hover over a dot for the rule.</p>"
        + _svg_plot(rois, dvhs, markers)
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
        f"{' · strict: minor deviations fail' if result.strict else ''}</span>"
        f"<span>{_e(result.protocol.id)} v{_e(result.protocol.version)}</span></div>"
    )
    heading = (
        f"<h1>Plan {_e(plan_label)} · patient {_e(doc['patient_id'])}</h1>"
        f'<p class="muted">Checked against {_e(result.protocol.title)}</p>'
    )
    if result.selection is not None:
        heading += '<div class="selection">' + _list(
            [_e(line) for line in result.selection.lines()]
        ) + "</div>"
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
    body = (
        banner
        + heading
        + problems
        + _not_checked_section(result)
        + '<div class="grid">'
        + _plan_section(doc)
        + _protocol_section(doc)
        + "</div>"
        + _facts_section(doc)
        + _rules_section(result, doc)
        + _dvh_section(result, dvhs)
        + _structures_section(result, doc)
        + _provenance_section(result, doc)
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
