"""Protocol loading, role matching and radiobiology, against hand values."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rtcheck.constraints import radiobiology
from rtcheck.constraints.protocol import (
    DoseVolumeRule,
    FractionationRule,
    Range,
    Requirement,
    load_protocol,
    load_protocol_text,
)
from rtcheck.constraints.registry import shipped_protocol_files
from rtcheck.constraints.schema import protocol_json_schema
from rtcheck.constraints.structures import load_aliases, match_roles
from rtcheck.errors import ProtocolError

GOOD = """\
id: test-proto
title: Test protocol
version: "1.0"
sources:
  review2023: "A review"
select:
  labels: ["*lung*"]
  fractions: {min: 1, max: 8}
  requires: [PTV]
structures:
  PTV: {type: target, names: [PTV], aliases: ["PTV*"], multiple: true}
  Bronchus: {type: oar, names: [Bronchus], aliases: [PBT, "prox*bronch*"]}
  SpinalCord: {type: oar, names: [SpinalCord], aliases: [Cord, Myelon]}
facts:
  location: {kind: proximity, from: PTV, to: [Bronchus], within_mm: 20,
             near: central, far: peripheral}
rules:
  - id: sched
    kind: fractionation
    when: {location: peripheral}
    schedules:
      - {fractions: 3, dose_per_fraction_gy: {min: 15, max: 20}}
      - {fractions: 8, dose_per_fraction_gy: 7.5}
    source: review2023
  - id: cord
    kind: dose_volume
    structure: SpinalCord
    metric: "D0.35cc[Gy]"
    max: {1: 10, 3: 18, 5: 23}
    alpha_beta: 2
  - id: integ
    kind: integrity
"""


def test_a_valid_protocol_loads_with_typed_rules() -> None:
    p = load_protocol_text(GOOD, "good.yaml")
    assert p.id == "test-proto" and p.version == "1.0"
    sched = p.rules[0]
    assert isinstance(sched, FractionationRule)
    assert sched.schedules[0].dose_per_fraction_gy == Range(15.0, 20.0)
    assert sched.schedules[1].dose_per_fraction_gy == Range(7.5, 7.5)
    assert sched.when is not None
    assert sched.when.required == (Requirement("location", values=("peripheral",)),)
    cord = p.rules[1]
    assert isinstance(cord, DoseVolumeRule)
    assert str(cord.metric) == "D0.35cc[Gy]"
    assert cord.maximum is not None and dict(cord.maximum.by_fractions) == {1: 10, 3: 18, 5: 23}
    assert cord.where == "good.yaml:25:5"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('metric: "D0.35cc[Gy]"', 'metric: "D0.35c[Gy]"', "invalid DVH metric"),
        ("structure: SpinalCord", "structure: Cordy", "unknown structure role"),
        ("    alpha_beta: 2\n", "    alpha_beta: 2\n    colour: red\n", "unknown key 'colour'"),
        ("when: {location: peripheral}", "when: {location: centre}", "fact 'location' takes"),
        ("kind: integrity", "kind: integrety", "unknown or missing rule kind"),
        ("source: review2023", "source: tg101", "not listed under 'sources'"),
        ("  - id: integ", "  - id: sched", "duplicate rule id"),
        ('version: "1.0"', "version: [1]", "expected version"),
        ("max: 8}", "max: eight}", "expected a number"),
        ("{min: 15, max: 20}", "{min: 20, max: 15}", "above max"),
    ],
)
def test_mistakes_are_located(old: str, new: str, message: str) -> None:
    assert old in GOOD
    text = GOOD.replace(old, new, 1)
    # The line of the change (for a key added after a line, the added line).
    changed = new.splitlines()[-1].strip()
    line = max(i for i, t in enumerate(text.splitlines(), 1) if changed in t)
    with pytest.raises(ProtocolError) as info:
        load_protocol_text(text, "bad.yaml")
    assert message in str(info.value)
    assert info.value.file == "bad.yaml"
    assert info.value.line == line, str(info.value)
    assert str(info.value).startswith(f"bad.yaml:{line}:{info.value.column}: ")


def test_yaml_is_loaded_safely() -> None:
    with pytest.raises(ProtocolError, match="unsupported value"):
        load_protocol_text("id: !!python/object/apply:os.system ['true']\n", "evil.yaml")


def test_missing_required_keys() -> None:
    with pytest.raises(ProtocolError, match="missing required key 'sources'"):
        load_protocol_text("id: x\ntitle: t\nversion: 1\nrules: []\n", "x.yaml")


def test_role_matching_prefers_names_then_aliases() -> None:
    p = load_protocol_text(GOOD, "good.yaml")
    rois = ["PTV1", "PTV2", "zPTV_opt", "pbt", "Cord", "SpinalCord", "Body"]
    m = match_roles(p, rois)
    assert m.matched["PTV"] == ["PTV1", "PTV2"]  # z-prefixed helper excluded
    assert m.matched["Bronchus"] == ["pbt"] and m.how["Bronchus"] == "alias"
    assert m.matched["SpinalCord"] == ["SpinalCord"] and m.how["SpinalCord"] == "name"
    assert m.missing == []


def test_ambiguous_role_is_reported_not_guessed(tmp_path: Path) -> None:
    p = load_protocol_text(GOOD, "good.yaml")
    # One pattern matching two ROIs of a single-ROI role: ambiguous.
    rois = ["PTV", "Prox_Bronch_L", "Prox_Bronch_R"]
    m = match_roles(p, rois)
    assert m.ambiguous == {"Bronchus": ["Prox_Bronch_L", "Prox_Bronch_R"]}
    assert "Bronchus" not in m.matched
    # An earlier pattern wins over a later one: Cord before Myelon.
    assert match_roles(p, ["Myelon", "Cord"]).matched["SpinalCord"] == ["Cord"]
    alias_file = tmp_path / "aliases.yaml"
    alias_file.write_text("Bronchus: [Prox_Bronch_L]\n")
    m = match_roles(p, rois, load_aliases(alias_file))
    assert m.matched["Bronchus"] == ["Prox_Bronch_L"]
    assert m.how["Bronchus"] == "institution alias"


@pytest.mark.parametrize(
    ("n", "d", "ab", "expected_bed"),
    [
        (35, 2.0, 10, 84.0),
        (30, 2.0, 10, 72.0),
        (18, 3.0, 10, 70.2),
        (5, 8.0, 10, 72.0),
        (3, 15.0, 10, 112.5),
        (3, 18.0, 10, 151.2),
        (1, 34.0, 10, 149.6),
    ],
)
def test_bed_by_hand(n: int, d: float, ab: float, expected_bed: float) -> None:
    assert radiobiology.bed(n, d, ab) == pytest.approx(expected_bed)
    assert radiobiology.eqd2(n, d, ab) == pytest.approx(expected_bed / 1.2)


def test_isoeffective_conversion_by_hand() -> None:
    # 50 Gy in 2 Gy fractions, alpha/beta 2: BED 100 Gy. In 5 fractions D (1 + D/10) = 100,
    # D^2 + 10 D - 1000 = 0, D = (-10 + sqrt(4100)) / 2.
    expected = (-10 + math.sqrt(4100)) / 2
    assert radiobiology.isoeffective_total_dose(50, 2, 5, 2) == pytest.approx(expected)
    # The same fractionation gives the same dose back.
    assert radiobiology.isoeffective_total_dose(50, 2, 25, 2) == pytest.approx(50)


def test_shipped_protocols_load_and_the_schema_names_every_key() -> None:
    files = shipped_protocol_files()
    for stem, path in files.items():
        # resolve_protocol reads the file named by the id first (the others only when
        # none has the name), so each shipped file carries its protocol's id as name.
        assert load_protocol(path).id == stem
    schema = protocol_json_schema()
    assert schema["required"] == ["id", "title", "version", "sources", "rules"]
