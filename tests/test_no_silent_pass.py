"""Evasions that must never pass a plan (issue 13): a dose scaled by 1000, and a hot organ
whose name is spelled with look-alike or invisible characters or a side suffix.

Expected outcomes are the clinical rules: a chest wall inside the 54 Gy dose of a 3 x 18 Gy
lung plan is far above TG-101's 3-fraction maximum (36.9 Gy), whatever its name's
spelling; a dose 1000 times the prescription is not the plan's dose.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pydicom
import pytest
from typer.testing import CliRunner

from rtcheck.cli.main import app
from rtcheck.constraints.roinames import fold
from tests.fixtures.plans import cylinder, write_plan_export
from tests.test_golden import PERIPHERAL, lung

# The peripheral PTV (r 13 mm at (80, -20, 0)) overlaps a chest wall (r 8 mm along z at
# (98, -20)): part of the wall lies inside the PTV and receives the prescription or more.
WALL_NAMES = {
    "tg263": "Chestwall",
    "side-suffix": "ChestWall_R",
    "cyrillic-a": "Chestw\u0430ll",
    "fullwidth": "\uff23\uff48\uff45\uff53\uff54\uff37\uff41\uff4c\uff4c",
    "zero-width": "Chest\u200bwall",
}


def run(folder: Path) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(
        app, ["check", str(folder), "--protocol", "sabr-lung", "--json", "-"]
    )
    assert result.exit_code in (0, 1, 3), result.output
    return result.exit_code, json.loads(result.stdout)


def test_look_alike_characters_fold_to_the_latin_name() -> None:
    assert fold("Chestw\u0430ll") == "chestwall"  # Cyrillic a
    assert fold("SpinalC\u03bfrd") == "spinalcord"  # Greek omicron
    assert fold("\u0421\u043erd") == "cord"  # Cyrillic capital es, small o
    assert fold("Chest\u200bwall") == "chestwall"
    assert fold("\uff23hestwall") == "chestwall"  # fullwidth C (NFKD)
    # Capitals read as the Latin capital they look like, before case folding.
    assert fold("BRO\u039dCHUS") == "bronchus"  # Greek capital nu, not 'v'
    assert fold("\u0397eart") == "heart"  # Greek capital eta, not 'n'
    assert fold("\u03a5") == "y"  # Greek capital upsilon
    # Every format character and the blank fillers are dropped.
    for invisible in ("\u200e", "\u200f", "\u034f", "\u2061", "\u180e", "\u3164"):
        assert fold(f"Spinal{invisible}Cord") == "spinalcord", repr(invisible)


@pytest.mark.parametrize("case", list(WALL_NAMES))
def test_a_hot_chest_wall_fails_whatever_its_spelling(case: str, tmp_path: Path) -> None:
    base = lung(PERIPHERAL, 3, 18)
    spec = replace(base, shapes=(*base.shapes, cylinder(WALL_NAMES[case], (98, -20, 0), 8, 60)))
    code, doc = run(write_plan_export(tmp_path / case, spec))
    assert doc["verdict"] == "fail" and code == 1
    walls = [r for r in doc["results"] if r["id"] == "chestwall-max"]
    assert walls and all(r["status"] == "major" for r in walls), walls
    assert walls[0]["measured"] > 36.9


def test_a_dose_scaled_by_1000_never_passes(tmp_path: Path) -> None:
    folder = write_plan_export(tmp_path / "plan", lung(PERIPHERAL, 3, 18))
    code, doc = run(folder)
    assert doc["verdict"] == "pass" and code == 0
    path = folder / "RD.dcm"
    ds = pydicom.dcmread(path)
    ds.DoseGridScaling = float(ds.DoseGridScaling) * 1000
    ds.save_as(path)
    code, doc = run(folder)
    assert doc["verdict"] != "pass" and code != 0
    (match,) = [r for r in doc["results"] if r["id"].endswith(".prescription_matches_dose")]
    assert match["status"] == "major"
    assert match["measured"] > 1000 * 90
