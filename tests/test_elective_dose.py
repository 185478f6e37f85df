"""An elective volume is found in the dose, whatever its ROI is called (issue 13).

A 35 x 2 Gy head-and-neck plan treats its primary (PTV r 20 mm at the origin) to 70 Gy
and an elective volume (r 15 mm, centre 50 mm inferior) to 54 Gy. The name-based rule
finds it only when it is called like a dose level (PTV_5400); the dose-based check
(``no-elective-volume.dose``) finds it under any name, and when its ROI is deleted.

Hand values, from the fixture's dose model ``level * 1.04 ** (1 - (rho / 1.15 r) ** 4)``:
the primary reaches 95 % of 70 Gy (66.5 Gy) out to 28.35 mm and 65 % (45.5 Gy) out to
42.8 mm, inside its 20 mm margin (48.35 mm): no intermediate dose beyond it without an
elective volume. The elective bell gives 45.5 Gy or more within 26.26 mm of its centre;
beyond the margin that is the sphere of 26.26 mm less its lens with the sphere of 48.35 mm
around the origin, 50 mm apart: 48.9 cc.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rtcheck.cli.main import app
from tests.fixtures.plans import Shape, sphere, write_plan_export
from tests.test_golden import GROSS, PRIMARY, head_neck


def lens_cc(big: float, small: float, d: float) -> float:
    """Volume (cc) shared by two spheres of radii ``big`` and ``small``, ``d`` apart."""
    return (
        math.pi
        * (big + small - d) ** 2
        * (d * d + 2 * d * small - 3 * small**2 + 2 * d * big + 6 * small * big - 3 * big**2)
        / (12 * d)
        / 1000
    )


def radius_at(fraction: float, radius: float, peak: float = 1.04) -> float:
    """Distance (mm) from a bell's centre at which it gives ``fraction`` of its level."""
    u4 = 1 - math.log(fraction) / math.log(peak)
    return 1.15 * radius * u4**0.25


R_HIGH = radius_at(0.95, 20)  # 66.5 Gy around the primary
MARGIN = 20.0
R_LOW = radius_at(45.5 / 54, 15)  # 45.5 Gy around the elective volume
EXPECTED_CC = 4 / 3 * math.pi * R_LOW**3 / 1000 - lens_cc(R_HIGH + MARGIN, R_LOW, 50)


def elective(name: str) -> tuple[Shape, float]:
    return sphere(name, (0, 0, -50), 15, "PTV"), 54.0


CASES = {
    "named-5400": ("PTV_5400", ()),
    "z-prefixed": ("zPTV_5400", ()),
    "optimisation": ("Opt_54", ()),
    "helper": ("Help_54", ()),
    "deleted": ("Elective", ("Elective",)),
}


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("elective")
    out = {"none": write_plan_export(root / "none", head_neck((PRIMARY, GROSS), 35, 2.0))}
    for case, (name, unlisted) in CASES.items():
        spec = head_neck((PRIMARY, GROSS, elective(name)), 35, 2.0)
        spec = replace(spec, unlisted=unlisted)
        out[case] = write_plan_export(root / case, spec)
    return out


def check(folder: Path) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(
        app, ["check", str(folder), "--protocol", "hn-locoregional-metastatic", "--json", "-"]
    )
    assert result.exit_code in (0, 1, 3), result.output
    return result.exit_code, json.loads(result.stdout)


def by_id(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in doc["results"]}


def test_hand_values_of_the_fixture() -> None:
    assert abs(R_HIGH - 28.35) < 0.05
    assert abs(radius_at(0.65, 20) - 42.8) < 0.05
    assert abs(R_LOW - 26.3) < 0.05
    assert abs(EXPECTED_CC - 48.9) < 0.1


def test_no_elective_volume_no_intermediate_dose(exports: dict[str, Path]) -> None:
    code, doc = check(exports["none"])
    dose = by_id(doc)["no-elective-volume.dose"]
    assert dose["status"] == "pass" and dose["measured"] == 0
    assert doc["facts"]["elective_dose"]["regions"] == []
    assert doc["verdict"] == "pass" and code == 0


@pytest.mark.parametrize("case", list(CASES))
def test_an_elective_volume_fails_whatever_it_is_called(
    case: str, exports: dict[str, Path]
) -> None:
    code, doc = check(exports[case])
    assert doc["verdict"] == "fail" and code == 1
    dose = by_id(doc)["no-elective-volume.dose"]
    assert dose["status"] == "major"
    assert dose["measured"] == pytest.approx(EXPECTED_CC, rel=0.15)
    facts = doc["facts"]["elective_dose"]
    assert facts["high_gy"] == pytest.approx(66.5) and facts["low_gy"] == pytest.approx(45.5)
    (region,) = facts["regions"]
    assert 45.5 <= region["median_gy"] <= 54 * 1.04
    assert "inferior" in region["location"]
    name, unlisted = CASES[case]
    if unlisted:
        assert region["rois"] == []
        assert "in no contoured structure" in dose["message"]
    else:
        assert region["rois"][0]["name"] == name
        assert name in dose["message"]


def test_the_elective_messages_say_each_thing_once(exports: dict[str, Path]) -> None:
    # PTV_5400 is named at 54 Gy (77 % of 70) and measured at a median below 90 %: both
    # reasons hold, and the 70 Gy level is said once; the one region's volume is said once.
    _, doc = check(exports["named-5400"])
    results = by_id(doc)
    named = results["no-elective-volume"]["message"]
    assert named.count("70 Gy") == 1 and named.count("PTV_5400") == 1, named
    assert "dose level 54 Gy in the name (77 %) and measured median dose" in named
    dose = results["no-elective-volume.dose"]
    (region,) = doc["facts"]["elective_dose"]["regions"]
    volume = f"{dose['measured']:.1f} cc"
    assert dose["message"].count(volume) == 1, dose["message"]
    assert dose["message"].count(" cc ") == 1, dose["message"]  # the total only
    assert dose["message"].count("whatever the structures are called") == 1
    assert f"{region['rois'][0]['percent']:.0f} % of it in PTV_5400" in dose["message"]
    # The facts line of the terminal report says the same once.
    (suspect,) = doc["facts"]["elective_volumes"]
    assert len(suspect["reasons"]) == 1


def test_an_intermediate_risk_volume_at_90_percent_is_elective_too(tmp_path: Path) -> None:
    # 70/35 with a 63 Gy (90 %) volume named as a helper: below the 95 % of gross disease.
    spec = head_neck((PRIMARY, GROSS, (sphere("zPTV_6300", (0, 0, -50), 15, "PTV"), 63.0)), 35, 2.0)
    code, doc = check(write_plan_export(tmp_path / "plan", spec))
    dose = by_id(doc)["no-elective-volume.dose"]
    assert dose["status"] == "major" and code == 1
    (region,) = doc["facts"]["elective_dose"]["regions"]
    # Its plateau: the maximum at the 63 Gy level (the bell peaks at 65.5), under 66.5 Gy.
    assert 63 <= region["max_gy"] < 66.5
    assert 45.5 <= region["median_gy"] < 66.5


def test_a_cropped_grid_cannot_hide_an_elective_volume(tmp_path: Path) -> None:
    # The elective volume (54 Gy) lies 60 mm to the patient's left; the grid stops 20 mm
    # into its 45.5 Gy dose: the irradiated volume reaches the edge of the grid.
    spec = head_neck((PRIMARY, GROSS, (sphere("Opt_54", (60, 0, 0), 15, "PTV"), 54.0)), 35, 2.0)
    spec = replace(spec, grid_crop_x=(-100.0, 60.0 - 26.3 + 20.0))
    code, doc = check(write_plan_export(tmp_path / "plan", spec))
    dose = by_id(doc)["no-elective-volume.dose"]
    assert dose["status"] in ("major", "not_evaluated")
    assert doc["verdict"] != "pass" and code != 0


def test_a_target_typed_roi_outside_the_grid_is_reported(tmp_path: Path) -> None:
    # A helper-named PTV entirely beyond the dose grid: the exported dose misses it.
    spec = head_neck((PRIMARY, GROSS, (sphere("zPTV_5400", (120, 0, 0), 15, "PTV"), 54.0)), 35, 2.0)
    spec = replace(spec, grid_crop_x=(-100.0, 92.0))
    code, doc = check(write_plan_export(tmp_path / "plan", spec))
    covers = by_id(doc)["integrity.grid_covers_targets"]
    assert covers["status"] == "major" and "zPTV_5400 (ROI type PTV" in covers["message"]
    assert code == 1
