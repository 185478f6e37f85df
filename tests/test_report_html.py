"""`rtcheck check --html/--csv`: the HTML report's content, escaping and DVH plot, the CSV,
and the page opened in a real browser (headless Chromium).

The browser test skips when Chromium is absent, except under CI (the ``CI`` environment
variable set), where a missing browser is a failure: CI installs the Debian package
``chromium``.
"""

from __future__ import annotations

import csv
import html as html_module
import io
import itertools
import json
import math
import os
import re
import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from rtcheck.cli.main import app
from rtcheck.constraints.metrics import parse_metric
from rtcheck.dvh.core import DVH
from rtcheck.reports.csv_writer import COLUMNS
from rtcheck.reports.html import _bounds, _place
from tests.fixtures.plans import sphere, write_plan_export
from tests.test_golden import CENTRAL, PERIPHERAL, lung

MALICIOUS_ROI = "<script>alert(1)</script>"
MALICIOUS_LABEL = "&\"'<>"
# An ROI no role matches, breaking out of an attribute if it were not escaped.
ATTRIBUTE_ROI = '"><img src=x onerror=alert(2)>'


@dataclass(frozen=True)
class Report:
    """One `rtcheck check --html --csv --json` run."""

    code: int
    stdout: str
    html_path: Path
    html: str
    csv: str
    doc: dict[str, Any]


def _check(folder: Path, out: Path, *args: str) -> Report:
    out.mkdir(parents=True, exist_ok=True)
    html_path, csv_path, json_path = out / "report.html", out / "report.csv", out / "report.json"
    result = CliRunner().invoke(
        app,
        [
            "check",
            str(folder),
            "--protocol",
            "sabr-lung",
            "--html",
            str(html_path),
            "--csv",
            str(csv_path),
            "--json",
            str(json_path),
            *args,
        ],
    )
    return Report(
        code=result.exit_code,
        stdout=result.stdout,
        html_path=html_path,
        html=html_path.read_text(encoding="utf-8"),
        csv=csv_path.read_text(encoding="utf-8"),
        doc=json.loads(json_path.read_text(encoding="utf-8")),
    )


@pytest.fixture(scope="module")
def passing(tmp_path_factory: pytest.TempPathFactory) -> Report:
    root = tmp_path_factory.mktemp("peripheral")
    folder = write_plan_export(root / "plan", lung(PERIPHERAL, 3, 18))
    return _check(folder, root / "out")


@pytest.fixture(scope="module")
def failing(tmp_path_factory: pytest.TempPathFactory) -> Report:
    """A central lesion treated 3 x 18 Gy (fails), with hostile names from the DICOM files.

    The bronchial tree is called ``<script>alert(1)</script>`` and matched to its role by
    an institution alias, so the name reaches the distances, the role table, the rule
    messages and the DVH plot; the plan label is ``&"'<>``.
    """
    root = tmp_path_factory.mktemp("central")
    spec = lung(CENTRAL, 3, 18, bronchus=MALICIOUS_ROI)
    spec = replace(
        spec,
        label=MALICIOUS_LABEL,
        shapes=(*spec.shapes, sphere(ATTRIBUTE_ROI, (-80, -20, 0), 10)),
    )
    folder = write_plan_export(root / "plan", spec)
    aliases = root / "aliases.yaml"
    aliases.write_text(f"Bronchus: [{json.dumps(MALICIOUS_ROI)}]\n", encoding="utf-8")
    return _check(folder, root / "out", "--aliases", str(aliases))


def _plotted(doc: dict[str, Any]) -> list[str]:
    """ROIs the plot must show: the targets, then the ROIs of matched roles."""
    names = [t["name"] for t in doc["facts"]["targets"]]
    for value in doc["structures"].values():
        names.extend([value] if isinstance(value, str) else value)
    return list(dict.fromkeys(names))


def _placeable(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Results with a DVH metric that has a point on the cumulative curve (a mean dose is
    drawn where the curve reaches it)."""
    return [
        r
        for r in doc["results"]
        if r["kind"] in ("dose_volume", "coverage")
        and r["metric"] is not None
        and r["measured"] is not None
    ]


# -- the HTML file -----------------------------------------------------------------------


class _Tags(HTMLParser):
    """Every start tag with its attributes, and the text of <style> elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)


@pytest.mark.parametrize("which", ["passing", "failing"])
def test_html_is_self_contained(which: str, request: pytest.FixtureRequest) -> None:
    report: Report = request.getfixturevalue(which)
    page = report.html
    assert page.startswith("<!DOCTYPE html>")
    assert "http://" not in page and "https://" not in page
    parser = _Tags()
    parser.feed(page)
    parser.close()
    names = {tag for tag, _ in parser.tags}
    assert not names & {"script", "link", "img", "iframe", "object", "embed", "base", "use"}
    for tag, attrs in parser.tags:
        assert not set(attrs) & {"src", "xlink:href", "srcset", "action"}, tag
        # Links only within the page (#not-checked, #sources).
        assert (attrs.get("href") or "#").startswith("#"), (tag, attrs)
        assert not any(a.startswith("on") for a in attrs), (tag, attrs)
    assert len(parser.styles) == 1
    style = parser.styles[0]
    assert "url(" not in style and "@import" not in style
    assert "Content-Security-Policy" in page


def test_html_holds_the_whole_check(passing: Report) -> None:
    page, doc = passing.html, passing.doc
    assert passing.code == 0 and doc["verdict"] == "pass"
    assert "VERDICT: PASS" in page
    assert doc["protocol"]["sha256"] in page
    assert f"{doc['protocol']['id']}" in page and doc["protocol"]["version"] in page
    for result in doc["results"]:
        row = re.search(rf'<tr class="rule st-(\w+)" data-rule="{re.escape(result["id"])}"', page)
        assert row is not None, result["id"]
        assert row.group(1) == result["status"]
    for name, mm in doc["facts"]["distances_mm"].items():
        assert f'<td>{name}</td><td class="num">{mm:.1f} mm</td>' in page
    assert "peripheral" in page
    assert "151.2" in page  # BED10 of 3 x 18 Gy
    assert "126" in page  # EQD2 (alpha/beta 10)
    assert "none found" in page  # elective volumes
    for role, roi in doc["structures"].items():
        assert f"<td>{role}</td><td>{roi}</td>" in page
    for missing in doc["missing_roles"]:
        assert f"<li>{missing}</li>" in page
    # Provenance: the input files and their SOP instance UIDs.
    inputs = doc["inputs"]
    assert inputs["plan"]["sop_instance_uid"] in page
    assert inputs["structure_set"]["sop_instance_uid"] in page
    for uid in inputs["dose"]["sop_instance_uids"]:
        assert uid in page
    assert doc["rtcheck_version"] in page


def test_failing_plan_shows_the_major_deviation(failing: Report) -> None:
    assert failing.code == 1 and failing.doc["verdict"] == "fail"
    assert "VERDICT: FAIL" in failing.html
    assert 'data-rule="schedule-central" data-status="major"' in failing.html
    assert failing.doc["facts"]["location"] == "central"


@pytest.mark.parametrize("which", ["passing", "failing"])
def test_dvh_plot_has_a_curve_per_roi_and_markers_on_the_curves(
    which: str, request: pytest.FixtureRequest
) -> None:
    report: Report = request.getfixturevalue(which)
    page, doc = report.html, report.doc
    svg = page[page.index("<svg") : page.index("</svg>")]
    expected = _plotted(doc)
    curves = re.findall(r'<path class="dvh-curve" data-roi="([^"]*)" d="([^"]*)"', svg)
    assert page.count('<path class="dvh-curve"') == len(curves) == len(expected)
    assert [html_module.unescape(name) for name, _ in curves] == expected
    paths = {html_module.unescape(name): _points(d) for name, d in curves}
    markers = re.findall(
        r'<circle class="marker st-(\w+)" data-rule="([^"]*)" data-roi="([^"]*)" '
        r'cx="([\d.]+)" cy="([\d.]+)"',
        svg,
    )
    placeable = _placeable(doc)
    assert len(markers) == len(placeable) > 0
    for (status, rule, roi, cx, cy), result in zip(markers, placeable, strict=True):
        assert rule == result["id"] and status == result["status"]
        # The measured point lies on its ROI's curve (within 1.5 px).
        distance = _distance_to_polyline((float(cx), float(cy)), paths[html_module.unescape(roi)])
        assert distance <= 1.5, (rule, distance)
    assert svg.count('class="limit-marker"') >= len(placeable)
    # Axes: ticks and labels.
    assert "Dose (Gy)" in svg and "Volume (% of structure)" in svg
    assert len(re.findall(r'class="xtick"', svg)) >= 4
    assert len(re.findall(r'class="ytick"', svg)) == 6


def _points(d: str) -> list[tuple[float, float]]:
    numbers = [float(v) for v in re.findall(r"-?[\d.]+", d)]
    return list(zip(numbers[0::2], numbers[1::2], strict=True))


def _distance_to_polyline(p: tuple[float, float], line: list[tuple[float, float]]) -> float:
    best = math.inf
    for (ax, ay), (bx, by) in itertools.pairwise(line):
        dx, dy = bx - ax, by - ay
        length2 = dx * dx + dy * dy
        t = (
            0.0
            if length2 == 0
            else max(0.0, min(1.0, ((p[0] - ax) * dx + (p[1] - ay) * dy) / length2))
        )
        best = min(best, math.hypot(p[0] - (ax + t * dx), p[1] - (ay + t * dy)))
    return best


def test_dicom_strings_are_escaped(failing: Report) -> None:
    page = failing.html
    assert MALICIOUS_ROI not in page and "<script" not in page.lower()
    escaped_roi = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert escaped_roi in page
    # The ROI reaches the role table, the distances, a rule message and the plot legend.
    assert f"<td>Bronchus</td><td>{escaped_roi}</td>" in page
    assert f'<td>{escaped_roi}</td><td class="num">' in page
    assert re.search(rf'<td class="msg[^"]*">(<span>)?{re.escape(escaped_roi)} D4cc\[Gy\] = ', page)
    assert f'data-roi="{escaped_roi}"' in page
    assert MALICIOUS_LABEL not in page
    assert "&amp;&quot;&#x27;&lt;&gt;" in page
    assert ATTRIBUTE_ROI not in page and "<img" not in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in page


# -- CSV ---------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["passing", "failing"])
def test_csv_one_row_per_result(which: str, request: pytest.FixtureRequest) -> None:
    report: Report = request.getfixturevalue(which)
    rows = list(csv.reader(io.StringIO(report.csv)))
    assert (
        tuple(rows[0])
        == COLUMNS
        == (
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
    )
    records = list(csv.DictReader(io.StringIO(report.csv)))
    doc = report.doc
    assert len(records) == len(doc["results"])
    for record, result in zip(records, doc["results"], strict=True):
        assert record["rule_id"] == result["id"]
        assert record["status"] == result["status"]
        assert record["kind"] == result["kind"]
        assert record["message"] == result["message"]
        assert record["verdict"] == doc["verdict"]
        assert record["patient_id"] == doc["patient_id"]
        assert record["plan_label"] == doc["plan"]["label"]
        assert record["protocol_id"] == "sabr-lung"
        assert record["protocol_version"] == doc["protocol"]["version"]
        if result["measured"] is None:
            assert record["measured"] == ""
        else:
            assert float(record["measured"]) == pytest.approx(result["measured"])


def test_csv_keeps_hostile_names_as_text(failing: Report) -> None:
    records = list(csv.DictReader(io.StringIO(failing.csv)))
    assert {r["plan_label"] for r in records} == {MALICIOUS_LABEL}
    assert MALICIOUS_ROI in {r["structure"] for r in records}


def test_csv_formula_cells_stay_text() -> None:
    from rtcheck.reports.csv_writer import _text

    assert _text("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert _text("@SUM(A1)") == "'@SUM(A1)"
    assert _text("<= 18 Gy") == "<= 18 Gy"
    assert _text(None) == ""


# -- CLI usage ---------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["--html", "--csv"])
def test_output_folder_must_exist(option: str, tmp_path: Path) -> None:
    target = tmp_path / "no-such-folder" / "report.out"
    result = CliRunner().invoke(app, ["check", str(tmp_path), option, str(target)])
    assert result.exit_code == 2
    assert "does not exist" in result.stderr and option in result.stderr
    result = CliRunner().invoke(app, ["check", str(tmp_path), option, str(tmp_path)])
    assert result.exit_code == 2 and "is a folder" in result.stderr


# -- a real browser ----------------------------------------------------------------------

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

# Test-only probe: measures the laid-out page and writes the numbers into the DOM, which
# --dump-dom then prints. The report itself has no script (its CSP forbids one).
PROBE = """<script>
(function () {
  var svg = document.querySelector("svg.dvh");
  var box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0, top: 0, bottom: 0};
  var curves = Array.prototype.map.call(document.querySelectorAll("path.dvh-curve"),
    function (p) { var b = p.getBoundingClientRect();
                   return {length: p.getTotalLength(), width: b.width, height: b.height}; });
  var markers = Array.prototype.filter.call(document.querySelectorAll("circle.marker"),
    function (c) { return c.getBoundingClientRect().width > 0; }).length;
  var rows = Array.prototype.map.call(document.querySelectorAll("tr.rule"),
    function (r) { return {id: r.dataset.rule, height: r.getBoundingClientRect().height,
                           text: r.innerText}; });
  var banner = document.querySelector(".banner").getBoundingClientRect();
  var out = document.createElement("pre");
  out.id = "probe";
  var root = document.documentElement;
  out.textContent = JSON.stringify({page_height: root.scrollHeight,
    overflow_x: root.scrollWidth - root.clientWidth,
    svg: {width: box.width, height: box.height,
          top: box.top + window.scrollY, bottom: box.bottom + window.scrollY},
    curves: curves, markers: markers, rows: rows,
    banner: {height: banner.height, text: document.querySelector(".banner").innerText}});
  document.body.appendChild(out);
})();
</script>"""


def find_chromium() -> str | None:
    """The Chromium executable: ``/usr/bin/chromium`` or ``chromium`` on the PATH."""
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    return shutil.which("chromium")


def require_chromium(found: str | None) -> str:
    """Chromium, or skip (fail under CI, which installs it) when it is absent."""
    if found is not None:
        return found
    message = (
        "headless Chromium not found (/usr/bin/chromium): install the Debian package "
        "'chromium' (apt-get install chromium) to run the browser test"
    )
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {message}")
    # A developer machine without Chromium: the browser test cannot run there, and says
    # why; CI (which installs Chromium in .ci/run) fails above instead of skipping.
    pytest.skip(message)


def test_missing_chromium_skips_locally_and_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium"):
        require_chromium(None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        require_chromium(None)
    assert require_chromium("/x/chromium") == "/x/chromium"


def _chromium(exe: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def _png_summary(png: bytes, rows: tuple[int, int] | None = None) -> tuple[int, int, int]:
    """Width, height and the number of distinct bytes of the filtered image data.

    Counted over the pixel rows ``rows`` (first, last + 1), or the whole image. A region
    of one colour gives a handful of distinct bytes whatever the PNG row filters; text,
    curves and anti-aliasing give many.
    """
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, width, height, channels, data = 8, 0, 0, 0, b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind = png[pos + 4 : pos + 8]
        chunk = png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8, depth
            channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
        elif kind == b"IDAT":
            data += chunk
        pos += 12 + length
    raw = zlib.decompress(data)
    stride = 1 + width * channels
    assert len(raw) == stride * height
    first, stop = rows if rows is not None else (0, height)
    first, stop = max(first, 0), min(stop, height)
    region = b"".join(raw[r * stride + 1 : (r + 1) * stride] for r in range(first, stop))
    return width, height, len(set(region))


@pytest.mark.parametrize("which", ["passing", "failing"])
def test_report_in_a_real_browser(
    which: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    exe = require_chromium(find_chromium())
    report: Report = request.getfixturevalue(which)
    page = tmp_path / "report.html"
    shutil.copyfile(report.html_path, page)
    profile = tmp_path / "profile"
    shot = tmp_path / "shot.png"
    _chromium(exe, profile, f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri())
    dom = _chromium(exe, profile, "--dump-dom", page.as_uri()).stdout
    verdict = report.doc["verdict"].upper()
    assert f"VERDICT: {verdict}" in dom
    for result in report.doc["results"]:
        assert f'data-rule="{result["id"]}"' in dom
    assert "<svg" in dom and dom.count('class="dvh-curve"') == len(_plotted(report.doc))
    # The hostile names stay text: no element was injected.
    assert "<script" not in dom.lower() and "<img" not in dom.lower()

    # Layout as the browser computed it (a test-only probe script in a copy of the page).
    probe_page = tmp_path / "probe.html"
    text = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", report.html)
    probe_page.write_text(text.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    probe_dom = _chromium(
        exe, profile, "--window-size=1200,2000", "--dump-dom", probe_page.as_uri()
    ).stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', probe_dom, re.DOTALL)
    assert found is not None, probe_dom[-2000:]
    probe = json.loads(html_module.unescape(found.group(1)))
    assert probe["banner"]["height"] > 20 and f"VERDICT: {verdict}" in probe["banner"]["text"]
    assert probe["svg"]["width"] > 500 and probe["svg"]["height"] > 200
    assert probe["overflow_x"] <= 0, "the page is wider than a 1200 px window"
    assert len(probe["curves"]) == len(_plotted(report.doc))
    assert all(c["length"] > 0 and c["width"] > 0 for c in probe["curves"])
    assert probe["markers"] == len(_placeable(report.doc))
    rows = {r["id"]: r for r in probe["rows"]}
    for result in report.doc["results"]:
        row = rows[result["id"]]
        assert row["height"] > 0
        label = {"not_evaluated": "NOT EVALUATED"}.get(result["status"], result["status"].upper())
        assert label in row["text"]

    # The screenshot asked for (1200 x 2000): a real picture, richer than a blank page.
    assert shot.is_file()
    width, height, distinct = _png_summary(shot.read_bytes())
    assert width >= 1000 and height >= 1500
    assert distinct > 64
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>", encoding="utf-8")
    blank_shot = tmp_path / "blank.png"
    _chromium(exe, profile, f"--screenshot={blank_shot}", "--window-size=1200,2000", blank.as_uri())
    assert _png_summary(blank_shot.read_bytes())[2] < 16
    assert shot.stat().st_size > 10 * blank_shot.stat().st_size

    # The whole page in one screenshot, and the pixel rows of the DVH plot are drawn.
    full = tmp_path / "full-page.png"
    page_height = math.ceil(probe["page_height"])
    _chromium(
        exe, profile, f"--screenshot={full}", f"--window-size=1200,{page_height}", page.as_uri()
    )
    top, bottom = probe["svg"]["top"], probe["svg"]["bottom"]
    _, full_height, _ = _png_summary(full.read_bytes())
    assert full_height >= bottom
    assert _png_summary(full.read_bytes(), (math.ceil(top) + 2, math.floor(bottom) - 2))[2] > 64


# -- placing constraints on the curve ----------------------------------------------------


def _uniform_dvh() -> DVH:
    """100 cc receiving doses spread evenly over 0-10 Gy."""
    return DVH(
        bin_edges=np.linspace(0.0, 10.0, 101),
        differential_cc=np.ones(100),
        volume_cc=100.0,
        volume_outside_cc=0.0,
        min_gy=0.0,
        mean_gy=5.0,
        max_gy=10.0,
    )


@pytest.mark.parametrize(
    ("metric", "prescription", "point"),
    [
        ("D50%[Gy]", None, (5.0, 50.0)),
        ("D20cc[Gy]", None, (8.0, 20.0)),
        ("D20cc[cGy]", None, (8.0, 20.0)),
        ("D50%[%]", 20.0, (5.0, 50.0)),
        ("DC30%[Gy]", None, (3.0, 70.0)),
        ("V4Gy[%]", None, (4.0, 60.0)),
        ("V4Gy[cc]", None, (4.0, 60.0)),
        ("V50%[%]", 8.0, (4.0, 60.0)),
        ("CV4Gy[cc]", None, (4.0, 60.0)),
        ("Max[Gy]", None, (10.0, 0.0)),
        ("Min[Gy]", None, (0.0, 100.0)),
        ("Mean[Gy]", None, (5.0, 50.0)),
        ("Mean[%]", 10.0, (5.0, 50.0)),
    ],
)
def test_constraints_are_placed_on_the_cumulative_curve(
    metric: str, prescription: float | None, point: tuple[float, float] | None
) -> None:
    dvh = _uniform_dvh()
    parsed = parse_metric(metric)
    placed = _place(parsed, parsed.evaluate(dvh, prescription), dvh, prescription)
    if point is None:
        assert placed is None
        return
    assert placed is not None
    assert placed == pytest.approx(point, abs=1e-6)
    assert 100.0 * dvh.volume_at_dose(placed[0]) / dvh.volume_inside_cc == pytest.approx(
        placed[1], abs=1e-6
    )


def test_limit_bounds_ignore_notes() -> None:
    assert _bounds("<= 21.9 Gy (3-fraction limit)") == [21.9]
    assert _bounds(">= 95 % (acceptable variation >= 90 %)") == [95.0]
    assert _bounds(">= 1 Gy and <= 5 Gy") == [1.0, 5.0]
    assert _bounds("inside PTV") == [] and _bounds(None) == []
