"""The HTML report as a printed QA record (issue 12): print CSS, a running header, a
signature block, the DVH appendix on pages of its own, two A4 pages for a SABR plan
without the appendix (measured in headless Chromium), the plot's palette and its
mean-dose markers, and the wording of limits and empty values.

The print test skips when Chromium is absent, except under CI (see test_report_html).
"""

from __future__ import annotations

import html as html_module
import itertools
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from rtcheck.reports.html import DASHES, PALETTE, STATUS_COLOUR, _qty, _round_text
from tests.fixtures.plans import sphere, write_plan_export
from tests.test_golden import GROSS, PERIPHERAL, PRIMARY, head_neck, lung
from tests.test_report_html import _chromium, find_chromium, require_chromium
from tests.test_report_wording import _run_check


@dataclass(frozen=True)
class Page:
    path: Path
    html: str
    doc: dict[str, Any]


def _check(folder: Path, protocol: str) -> Page:
    """``rtcheck check`` with every report (as tests/test_report_wording.py runs it)."""
    reports = _run_check(folder, protocol)
    assert reports.code in (0, 1), reports.terminal
    return Page(folder.parent / "r.html", reports.html, reports.doc)


@pytest.fixture(scope="module")
def sabr(tmp_path_factory: pytest.TempPathFactory) -> Page:
    root = tmp_path_factory.mktemp("sabr")
    return _check(write_plan_export(root / "plan", lung(PERIPHERAL, 3, 18)), "sabr-lung")


@pytest.fixture(scope="module")
def hn_hot_parotid(tmp_path_factory: pytest.TempPathFactory) -> Page:
    """H&N 35 x 2 Gy with the left parotid inside the primary's PTV: its mean dose fails."""
    root = tmp_path_factory.mktemp("hn")
    spec = head_neck((PRIMARY, GROSS), 35, 2.0)
    shapes = tuple(
        sphere("Parotid_L", (12, 0, 0), 10) if s.name == "Parotid_L" else s for s in spec.shapes
    )
    folder = write_plan_export(root / "plan", replace(spec, shapes=shapes))
    return _check(folder, "hn-locoregional-metastatic")


@pytest.fixture(scope="module")
def palliative(tmp_path_factory: pytest.TempPathFactory) -> Page:
    """5 x 4 Gy palliative: most rules skipped, the cord limit converted with EQD2."""
    root = tmp_path_factory.mktemp("palliative")
    spec = replace(lung(PERIPHERAL, 5, 4), intent="PALLIATIVE", label="PALL_LUNG")
    return _check(write_plan_export(root / "plan", spec), "palliative")


@pytest.fixture(scope="module")
def half_grid(tmp_path_factory: pytest.TempPathFactory) -> Page:
    """The dose grid stops through the PTV: PTV coverage is not evaluated."""
    root = tmp_path_factory.mktemp("half-grid")
    spec = replace(lung(PERIPHERAL, 3, 18), grid_crop_x=(-140.0, 80.0))
    return _check(write_plan_export(root / "plan", spec), "sabr-lung")


def _style(page: str) -> str:
    return page[page.index("<style>") + 7 : page.index("</style>")]


def _print_css(page: str) -> str:
    style = _style(page)
    return style[style.index("@media print{") :]


# -- print CSS and structure -------------------------------------------------------------


def test_print_css(sabr: Page) -> None:
    style, printed = _style(sabr.html), _print_css(sabr.html)
    assert "@page{size:A4" in style and "counter(page)" in style and "counter(pages)" in style
    assert re.search(r"(^|[,}\n])tr,li,[^{]*\{break-inside:avoid\}", printed)
    assert "thead{display:table-header-group}" in printed
    assert ".appendix{break-before:page}" in printed
    assert ".sheet:has(#print-appendix:not(:checked)) .appendix{display:none}" in printed
    assert "table.sheet>thead.runhead{display:table-header-group}" in printed


def test_every_table_has_a_thead(sabr: Page, hn_hot_parotid: Page) -> None:
    for page in (sabr.html, hn_hot_parotid.html):
        tables = re.findall(r"<table[^>]*>(.{0,7})", page)
        assert len(tables) >= 8
        assert all(start == "<thead>" or start.startswith("<thead") for start in tables), tables


def test_running_header_names_patient_and_plan(sabr: Page) -> None:
    head = re.search(r'<thead class="runhead">(.*?)</thead>', sabr.html)
    assert head is not None
    text = re.sub(r"<[^>]+>", " ", head.group(1))
    assert "Patient GOLDEN" in text and "Plan LUNG_SABR" in text
    assert "sabr-lung" in text and "PASS" in text


def test_signature_after_rules_and_before_the_appendix(sabr: Page) -> None:
    page = sabr.html
    signature = page.index('id="signature"')
    assert page.index("<h2>Rules") < page.index('<table class="rules">') < signature
    assert signature < page.index('id="print-appendix"') < page.index('id="appendix"')
    block = page[signature : page.index("</section>", signature)]
    for label in ("Reviewed by", "Date", "Signature", "Decision", "Comments"):
        assert f"<th>{label}</th>" in block
    assert block.count('class="line"') == 4
    # The appendix holds the plot, the DVH statistics, the structures and provenance.
    appendix = page[page.index('id="appendix"') :]
    for needle in ('id="dvh"', 'id="dvh-statistics"', "<h2>Structures</h2>", "Provenance"):
        assert needle in appendix, needle
    # The appendix prints by default; unticking the box leaves it out.
    assert re.search(r'<input type="checkbox" id="print-appendix"\s+checked>', page)


def _pdf_pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page(?!s)", pdf))


def test_sabr_plan_prints_on_two_a4_pages_without_the_appendix(sabr: Page, tmp_path: Path) -> None:
    exe = require_chromium(find_chromium())
    summary = tmp_path / "summary.html"
    summary.write_text(
        re.sub(r'(id="print-appendix")\s+checked', r"\1", sabr.html),
        encoding="utf-8",
    )
    whole = tmp_path / "whole.html"
    whole.write_text(sabr.html, encoding="utf-8")
    counts = {}
    for page in (summary, whole):
        pdf = page.with_suffix(".pdf")
        _chromium(
            exe,
            tmp_path / "profile",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf}",
            page.as_uri(),
        )
        data = pdf.read_bytes()
        assert data.startswith(b"%PDF")
        # A4: 595 x 842 points.
        assert re.search(rb"/MediaBox\s*\[\s*0 0 59[45]\.?\d* 84[12]\.?\d*\s*\]", data)
        counts[page.stem] = _pdf_pages(data)
    assert 1 <= counts["summary"] <= 2, counts
    # The appendix starts on a page of its own.
    assert counts["whole"] >= counts["summary"] + 1, counts


# -- the plot ----------------------------------------------------------------------------


def _svg(page: str) -> str:
    return page[page.index("<svg") : page.index("</svg>")]


def _attr(attrs: str, name: str) -> str:
    """The value of attribute ``name`` in a tag's attribute text ("" when absent)."""
    found = re.search(rf'{name}="([^"]*)"', attrs)
    return "" if found is None else html_module.unescape(found.group(1))


def _curves(page: str) -> dict[str, tuple[str, str]]:
    """ROI -> (stroke colour, dash pattern) of the main panel's curves."""
    return {
        _attr(attrs, "data-roi"): (_attr(attrs, "stroke"), _attr(attrs, "stroke-dasharray"))
        for attrs in re.findall(r'<path class="dvh-curve" ([^>]*)>', _svg(page))
    }


def test_curves_are_not_in_status_colours_and_neighbours_differ(
    sabr: Page, hn_hot_parotid: Page
) -> None:
    status = {STATUS_COLOUR["major"].lower(), STATUS_COLOUR["minor"].lower()}
    assert not {c.lower() for c in PALETTE} & status
    assert len(PALETTE) % len(DASHES) != 0
    for page in (sabr, hn_hot_parotid):
        curves = _curves(page.html)
        assert curves
        ptv = next(name for name in curves if name.startswith("PTV"))
        assert curves[ptv][0].lower() not in status
        styles = list(curves.values())
        for (c1, d1), (c2, d2) in itertools.pairwise(styles):
            assert c1 != c2 and d1 != d2
    # H&N: the spinal cord and its neighbour in the legend differ in colour and dash.
    curves = _curves(hn_hot_parotid.html)
    assert len(set(curves.values())) == len(curves)


def test_a_failing_mean_dose_has_a_marker(hn_hot_parotid: Page) -> None:
    result = next(r for r in hn_hot_parotid.doc["results"] if r["id"] == "parotid-l-mean")
    assert result["metric"] == "Mean[Gy]" and result["status"] == "major"
    svg = _svg(hn_hot_parotid.html)
    marker = re.search(
        r'<circle class="marker st-major" data-rule="parotid-l-mean" data-roi="Parotid_L" '
        r'cx="([\d.]+)" cy="([\d.]+)" r="[\d.]+" fill="([^"]+)"[^>]*data-mean="yes"',
        svg,
    )
    assert marker is not None
    assert marker.group(3) == STATUS_COLOUR["major"]
    assert 'class="mean-tick" data-rule="parotid-l-mean"' in svg
    assert 'class="limit-marker" data-rule="parotid-l-mean"' in svg
    assert '<text class="marker-label"' in svg and ">parotid-l-mean</text>" in svg
    not_drawn = hn_hot_parotid.html[hn_hot_parotid.html.index('id="dvh"') :]
    assert "a mean dose is no point" not in not_drawn


def test_low_dose_panel_repeats_the_organs(sabr: Page) -> None:
    """The lungs fall to 2 % of their volume by about 3 Gy of 67.5: a 0-5 Gy panel."""
    svg = _svg(sabr.html)
    targets = {t["name"] for t in sabr.doc["facts"]["targets"]}
    main = set(_curves(sabr.html))
    zoom = {
        html_module.unescape(n)
        for n in re.findall(r'<path class="dvh-curve-zoom" data-roi="([^"]*)"', svg)
    }
    assert zoom == main - targets
    assert "Low-dose detail, 0-" in svg
    assert "low-dose range" in sabr.html  # the legend text says so
    # The zoomed axis ends below the main one.
    main_ticks = [float(t) for t in re.findall(r'class="xtick" [^>]*>([\d.]+)<', svg)]
    zoom_ticks = [float(t) for t in re.findall(r'class="xtick-zoom" [^>]*>([\d.]+)<', svg)]
    assert zoom_ticks and max(zoom_ticks) < max(main_ticks)


# -- wording -----------------------------------------------------------------------------


def test_location_only_where_the_protocol_has_it(sabr: Page, hn_hot_parotid: Page) -> None:
    assert hn_hot_parotid.doc["facts"]["location"] is None
    assert "<th>Location</th>" not in hn_hot_parotid.html
    assert "unknown" not in hn_hot_parotid.html
    assert "<th>Location</th><td>peripheral</td>" in sabr.html


def test_no_dash_for_a_missing_number(sabr: Page, hn_hot_parotid: Page, palliative: Page) -> None:
    for page in (sabr.html, hn_hot_parotid.html, palliative.html):
        assert not re.search(r"(?<![\w-])- (Gy|cc|%|mm)\b", page)
    assert _qty(None, "Gy") == "not measured"
    assert _qty(float("nan"), "Gy") == "not measured"
    assert _qty(66.8712, "Gy") == "66.87 Gy"


def test_converted_limits_are_rounded_for_people(palliative: Page) -> None:
    result = next(r for r in palliative.doc["results"] if r["id"] == "cord-max-eqd2")
    assert "27.0156" in result["limit"]  # the JSON keeps the exact number
    row = re.search(r'<tr class="rule[^"]*" data-rule="cord-max-eqd2".*?</tr>', palliative.html)
    assert row is not None
    assert "&lt;= 27.0 Gy (50 Gy in 2 Gy fractions" in row.group(0)
    assert "27.0156" not in row.group(0)


def test_not_evaluated_rules_show_their_limit(half_grid: Page) -> None:
    # The lungs run out of the dose grid: their dose-volume rule is not evaluated, and the
    # limit that would have applied is shown.
    result = next(r for r in half_grid.doc["results"] if r["id"] == "lungs-1000cc-3fx")
    assert result["status"] == "not_evaluated" and result["limit"] == ">= 1000 cc"
    row = re.search(r'<tr class="rule[^"]*" data-rule="lungs-1000cc-3fx".*?</tr>', half_grid.html)
    assert row is not None
    limit = re.search(r'<td class="limit">([^<]*)</td>', row.group(0))
    assert limit is not None and html_module.unescape(limit.group(1)) == result["limit"]
    assert '<td class="num">not measured</td>' in row.group(0)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("<= 27.0156 Gy (50 Gy in 2 Gy fractions)", "<= 27.0 Gy (50 Gy in 2 Gy fractions)"),
        ("<= 27.7547 Gy", "<= 27.8 Gy"),
        ("<= 4.971 (for 9.28 cc)", "<= 4.97 (for 9.28 cc)"),
        ("<= 21.95 Gy", "<= 21.95 Gy"),
        ("<= 118.284 %", "<= 118 %"),
        ("<= 0.03456 cc", "<= 0.0346 cc"),
        (">= 1000 cc", ">= 1000 cc"),
        ("3 fx x 15-20 Gy", "3 fx x 15-20 Gy"),
        ("D0.035cc[Gy] <= 21.9 Gy", "D0.035cc[Gy] <= 21.9 Gy"),
        ("UID 1.2.840.10008.5", "UID 1.2.840.10008.5"),
    ],
)
def test_round_text(text: str, shown: str) -> None:
    assert _round_text(text) == shown
