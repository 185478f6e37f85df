"""Golden cases: generated plans whose verdict is fixed by the clinical rule, not the code.

Each case is a synthetic export (tests/fixtures/plans.py) with analytic geometry, checked
against a shipped protocol through the real CLI. The expected outcome comes from the
review's rules (clinical-rules.md): e.g. a lesion whose GTV lies 12 mm from the proximal
bronchial tree is central (within 20 mm), so 3 x 18 Gy is not allowed there and 5 x 8 Gy is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rtcheck.cli.main import app
from tests.fixtures.plans import PlanSpec, Shape, cylinder, ellipsoid, sphere, write_plan_export


def lung_anatomy(bronchus: str = "Bronchus") -> tuple[Shape, ...]:
    """Lungs and the mediastinal organs; the bronchial tree runs along z at (0, 10)."""
    return (
        ellipsoid("Lungs", (0, 0, 0), (120, 90, 110)),
        cylinder(bronchus, (0, 10, 0), 6, 60),
        cylinder("Trachea", (0, 10, 60), 9, 60),
        ellipsoid("Heart", (15, -45, -60), (45, 35, 35)),
        cylinder("GreatVes", (-30, 10, 30), 12, 80),
        cylinder("Esophagus", (0, 40, 10), 7, 160),
        cylinder("SpinalCord", (0, 65, 10), 6, 200),
    )


def lesion(x: float, y: float, z: float = 0.0) -> tuple[Shape, ...]:
    """GTV (r 8 mm) inside its PTV (r 13 mm)."""
    return (sphere("GTV", (x, y, z), 8, "GTV"), sphere("PTV", (x, y, z), 13, "PTV"))


# GTV surface to bronchus surface: 26 - 8 - 6 = 12 mm (within 20: central);
# the peripheral lesion is over 45 mm from every mediastinal organ.
CENTRAL = lesion(26, 10)
PERIPHERAL = lesion(80, -20)


def lung(
    lesion_shapes: tuple[Shape, ...], fractions: int, dose: float, bronchus: str = "Bronchus"
) -> PlanSpec:
    return PlanSpec(
        shapes=lesion_shapes + lung_anatomy(bronchus),
        target_levels=(("PTV", fractions * dose),),
        fractions=fractions,
        dose_per_fraction_gy=dose,
        label="LUNG_SABR",
    )


def liver(fractions: int, dose: float) -> PlanSpec:
    shapes = (
        sphere("GTV", (60, -20, 0), 15, "GTV"),
        ellipsoid("Liver", (40, -30, 0), (90, 70, 80)),
        cylinder("SpinalCord", (0, 70, 0), 6, 200),
    )
    return PlanSpec(
        shapes=shapes,
        target_levels=(("GTV", fractions * dose),),
        fractions=fractions,
        dose_per_fraction_gy=dose,
        label="LIVER_SBRT",
    )


def head_neck(
    targets: tuple[tuple[Shape, float], ...], fractions: int, dose: float, intent: str = "CURATIVE"
) -> PlanSpec:
    """Parotids, cord and brainstem far enough from the targets to stay within limits."""
    organs = (
        sphere("Parotid_L", (75, 20, 30), 12),
        sphere("Parotid_R", (-75, 20, 30), 12),
        cylinder("SpinalCord", (0, 70, 0), 5, 160),
        sphere("Brainstem", (0, 55, 95), 12),
    )
    return PlanSpec(
        shapes=tuple(s for s, _ in targets) + organs,
        target_levels=tuple((s.name, level) for s, level in targets if level > 0),
        fractions=fractions,
        dose_per_fraction_gy=dose,
        label="ORL_LOCOREG",
        intent=intent,
        peak=1.04,
    )


def primary(level_gy: float) -> tuple[Shape, float]:
    """The primary's PTV named with its dose level in cGy (TG-263), treated to it."""
    return sphere(f"PTVp_{round(level_gy * 100)}", (0, 0, 0), 20, "PTV"), level_gy


PRIMARY = primary(70.0)
GROSS = (sphere("GTVp", (0, 0, 0), 10, "GTV"), 0.0)


@dataclass(frozen=True)
class Case:
    name: str
    spec: PlanSpec
    protocol: str
    verdict: str
    # rule id -> expected status (every listed result of that rule id must have it)
    statuses: dict[str, str] = field(default_factory=dict)
    facts: dict[str, object] = field(default_factory=dict)
    strict: bool = False


CASES = [
    Case(
        "lung-peripheral-3x18",
        lung(PERIPHERAL, 3, 18),
        "sabr-lung",
        "pass",
        {"schedule-peripheral": "pass"},
        {"location": "peripheral"},
    ),
    Case(
        "lung-central-3x18",
        lung(CENTRAL, 3, 18),
        "sabr-lung",
        "fail",
        {"schedule-central": "major"},
        {"location": "central"},
    ),
    Case(
        "lung-central-5x8",
        lung(CENTRAL, 5, 8),
        "sabr-lung",
        "pass",
        {"schedule-central": "pass"},
        {"location": "central"},
    ),
    Case(
        "lung-central-5x8-alias-PBT",
        lung(CENTRAL, 5, 8, bronchus="PBT"),
        "sabr-lung",
        "pass",
        {"schedule-central": "pass"},
        {"location": "central"},
    ),
    Case(
        "lung-peripheral-1x34",
        lung(PERIPHERAL, 1, 34),
        "sabr-lung",
        "fail",
        {"schedule-peripheral": "major"},
    ),
    Case(
        "lung-peripheral-4x12",
        lung(PERIPHERAL, 4, 12),
        "sabr-lung",
        "fail",
        {"schedule-peripheral": "major"},
    ),
    # The dose grid stops at x = 80 mm, through the middle of the PTV at x = 80.
    Case(
        "lung-grid-misses-half-ptv",
        replace(lung(PERIPHERAL, 3, 18), grid_crop_x=(-140.0, 80.0)),
        "sabr-lung",
        "fail",
        {"integrity.grid_covers_targets": "major", "ptv-coverage": "not_evaluated"},
    ),
    Case("liver-3x15", liver(3, 15), "sabr-liver", "pass", {"schedule": "pass"}),
    Case("liver-3x10", liver(3, 10), "sabr-liver", "fail", {"schedule": "major"}),
    Case(
        "hn-35x2-no-elective",
        head_neck((PRIMARY, GROSS), 35, 2.0),
        "hn-locoregional-metastatic",
        "pass",
        {"no-elective-volume": "pass", "bed10-curative": "pass"},
    ),
    Case(
        "hn-elective-named-5400",
        head_neck((PRIMARY, GROSS, (sphere("PTV_5400", (0, 0, -50), 15, "PTV"), 54.0)), 35, 2.0),
        "hn-locoregional-metastatic",
        "fail",
        {"no-elective-volume": "major"},
    ),
    Case(
        "hn-elective-unnamed-by-dose",
        head_neck(
            (
                (sphere("PTV1", (0, 0, 0), 20, "PTV"), 70.0),
                (sphere("PTV2", (0, 0, -50), 15, "PTV"), 50.0),
            ),
            35,
            2.0,
        ),
        "hn-locoregional-metastatic",
        "fail",
        {"no-elective-volume": "major"},
    ),
    Case(
        "hn-involved-node-full-dose",
        head_neck(
            (
                PRIMARY,
                GROSS,
                (sphere("PTVn_7000", (40, 0, -40), 12, "PTV"), 70.0),
                (sphere("GTVn", (40, 0, -40), 6, "GTV"), 0.0),
            ),
            35,
            2.0,
        ),
        "hn-locoregional-metastatic",
        "pass",
        {"no-elective-volume": "pass"},
    ),
    Case(
        "hn-25x2-bed-below-72",
        head_neck((primary(50.0), GROSS), 25, 2.0),
        "hn-locoregional-metastatic",
        "fail",
        {"bed10-curative": "major"},
    ),
    Case(
        "hn-30x2-bed-exactly-72",
        head_neck((primary(60.0), GROSS), 30, 2.0),
        "hn-locoregional-metastatic",
        "pass",
        {"bed10-curative": "pass"},
    ),
    Case(
        "hn-18x3-bed-70.2-minor",
        head_neck((primary(54.0), GROSS), 18, 3.0),
        "hn-locoregional-metastatic",
        "pass",
        {"bed10-curative": "minor"},
    ),
    Case(
        "hn-18x3-bed-70.2-strict",
        head_neck((primary(54.0), GROSS), 18, 3.0),
        "hn-locoregional-metastatic",
        "fail",
        {"bed10-curative": "minor"},
        strict=True,
    ),
]

EXIT = {"pass": 0, "fail": 1, "error": 3}


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("golden")
    return {c.name: write_plan_export(root / c.name, c.spec) for c in CASES}


def run_check(folder: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["check", str(folder), "--json", "-", *args])
    return result.exit_code, json.loads(result.stdout)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_golden_case(case: Case, exports: dict[str, Path]) -> None:
    args = ["--protocol", case.protocol] + (["--strict"] if case.strict else [])
    code, report = run_check(exports[case.name], *args)
    results = report["results"]
    assert isinstance(results, list)
    summary = [(r["id"], r["status"], r["message"]) for r in results if r["status"] != "pass"]
    assert report["verdict"] == case.verdict, summary
    assert code == EXIT[case.verdict]
    for rule_id, status in case.statuses.items():
        found = [r for r in results if r["id"] == rule_id]
        assert found, f"no result for {rule_id}"
        assert {r["status"] for r in found} == {status}, found
    facts = report["facts"]
    assert isinstance(facts, dict)
    for key, value in case.facts.items():
        assert facts[key] == value


def test_central_distance_is_the_analytic_one(exports: dict[str, Path]) -> None:
    _, report = run_check(exports["lung-central-5x8-alias-PBT"], "--protocol", "sabr-lung")
    facts = report["facts"]
    assert isinstance(facts, dict)
    distances = facts["distances_mm"]
    # GTV (r 8) centre 26 mm from the axis of the PBT (r 6): 12 mm between the surfaces.
    assert distances["PBT"] == pytest.approx(12.0, abs=0.5)
    assert report["structures"]["Bronchus"] == "PBT"


def test_auto_selection_picks_the_site_protocol(exports: dict[str, Path]) -> None:
    for name, expected in (
        ("lung-peripheral-3x18", "sabr-lung"),
        ("liver-3x15", "sabr-liver"),
        ("hn-35x2-no-elective", "hn-locoregional-metastatic"),
    ):
        code, report = run_check(exports[name])
        assert report["protocol"]["id"] == expected, name
        assert code == 0
