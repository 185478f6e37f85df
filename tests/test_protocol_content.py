"""The clinical content of the shipped protocols, against the published numbers.

Every expected value below is typed by hand from the publication (AAPM TG-101 Table III as
transcribed, UK SABR Consortium 8-fraction maxima, GORTEC / Pointreau 2016), never read from
the YAML: a changed limit fails here. End-to-end cases put a dose bell on one organ of a
synthetic plan (tests/fixtures/plans.py) just above and just below a limit.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rtcheck.cli.main import app
from rtcheck.constraints.engine import check_plan
from rtcheck.constraints.protocol import (
    CoverageRule,
    DoseVolumeRule,
    Limit,
    Protocol,
    load_protocol,
)
from rtcheck.constraints.registry import resolve_protocol, shipped_protocol_files
from rtcheck.dicom_io import load_path
from tests.fixtures.plans import PlanSpec, cylinder, sphere, write_plan_export
from tests.test_golden import GROSS, PERIPHERAL, head_neck, liver, lung, primary


def protocol(pid: str) -> Protocol:
    return load_protocol(shipped_protocol_files()[pid])


def rule(pid: str, rid: str) -> Any:
    found = [r for r in protocol(pid).rules if r.id == rid]
    assert len(found) == 1, f"{pid}: no single rule {rid}"
    return found[0]


def table(limit: Limit | None) -> dict[int, float]:
    assert limit is not None and limit.value is None, limit
    return dict(limit.by_fractions)


# id -> (structure, metric, {fractions: limit Gy}, source, alpha/beta)
TG101 = "tg101"
UK8 = "tg101-uksabr8"
LUNG_MAX: dict[str, tuple[str, str, dict[int, float], str, float]] = {
    # TG-101 Table III, 1/3/5 fractions; 8 fractions: UK SABR Consortium where published,
    # else the 5-fraction value held (decision).
    "cord-d035cc": ("SpinalCord", "D0.35cc[Gy]", {1: 10, 3: 18, 5: 23, 8: 23}, TG101, 2),
    "cord-d12cc": ("SpinalCord", "D1.2cc[Gy]", {1: 7, 3: 12.3, 5: 14.5, 8: 14.5}, TG101, 2),
    "cord-max": ("SpinalCord", "D0.035cc[Gy]", {1: 14, 3: 21.9, 5: 30, 8: 32}, UK8, 2),
    "esophagus-d5cc": ("Esophagus", "D5cc[Gy]", {1: 11.9, 3: 17.7, 5: 19.5, 8: 19.5}, TG101, 3),
    "esophagus-max": ("Esophagus", "D0.035cc[Gy]", {1: 15.4, 3: 25.2, 5: 35, 8: 40}, UK8, 3),
    "heart-d15cc": ("Heart", "D15cc[Gy]", {1: 16, 3: 24, 5: 32, 8: 32}, TG101, 3),
    "heart-max": ("Heart", "D0.035cc[Gy]", {1: 22, 3: 30, 5: 38, 8: 38}, TG101, 3),
    "greatves-d10cc": ("GreatVes", "D10cc[Gy]", {1: 31, 3: 39, 5: 47, 8: 47}, TG101, 3),
    "greatves-max": ("GreatVes", "D0.035cc[Gy]", {1: 37, 3: 45, 5: 53, 8: 53}, TG101, 3),
    "trachea-d4cc": ("Trachea", "D4cc[Gy]", {1: 10.5, 3: 15, 5: 16.5, 8: 16.5}, TG101, 3),
    "trachea-max": ("Trachea", "D0.035cc[Gy]", {1: 20.2, 3: 30, 5: 40, 8: 40}, UK8, 3),
    "bronchus-d4cc": ("Bronchus", "D4cc[Gy]", {1: 10.5, 3: 15, 5: 16.5, 8: 16.5}, TG101, 3),
    "bronchus-max": ("Bronchus", "D0.035cc[Gy]", {1: 20.2, 3: 30, 5: 40, 8: 40}, UK8, 3),
    "smallairways-d05cc": (
        "SmallAirways",
        "D0.5cc[Gy]",
        {1: 12.4, 3: 18.9, 5: 21, 8: 21},
        TG101,
        3,
    ),
    "smallairways-max": (
        "SmallAirways",
        "D0.035cc[Gy]",
        {1: 13.3, 3: 23.1, 5: 33, 8: 33},
        TG101,
        3,
    ),
    "brachialplex-d3cc": ("BrachialPlex", "D3cc[Gy]", {1: 14, 3: 20.4, 5: 27, 8: 27}, TG101, 2),
    "brachialplex-max": (
        "BrachialPlex",
        "D0.035cc[Gy]",
        {1: 17.5, 3: 24, 5: 30.5, 8: 30.5},
        TG101,
        2,
    ),
    "chestwall-d1cc": ("Chestwall", "D1cc[Gy]", {1: 22, 3: 28.8, 5: 35, 8: 35}, TG101, 3),
    "chestwall-max": ("Chestwall", "D0.035cc[Gy]", {1: 30, 3: 36.9, 5: 43, 8: 43}, TG101, 3),
    "skin-d10cc": ("Skin", "D10cc[Gy]", {1: 23, 3: 30, 5: 36.5, 8: 36.5}, TG101, 3),
    "skin-max": ("Skin", "D0.035cc[Gy]", {1: 26, 3: 33, 5: 39.5, 8: 39.5}, TG101, 3),
}

LIVER_MAX: dict[str, tuple[str, str, dict[int, float], str, float]] = {
    "stomach-d10cc": ("Stomach", "D10cc[Gy]", {1: 11.2, 3: 16.5, 5: 18}, TG101, 3),
    "stomach-max": ("Stomach", "D0.035cc[Gy]", {1: 12.4, 3: 22.2, 5: 32}, TG101, 3),
    "duodenum-d5cc": ("Duodenum", "D5cc[Gy]", {1: 11.2, 3: 16.5, 5: 18}, TG101, 3),
    "duodenum-d10cc": ("Duodenum", "D10cc[Gy]", {1: 9, 3: 11.4, 5: 12.5}, TG101, 3),
    "duodenum-max": ("Duodenum", "D0.035cc[Gy]", {1: 12.4, 3: 22.2, 5: 32}, TG101, 3),
    "smallbowel-d5cc": ("Bowel_Small", "D5cc[Gy]", {1: 11.9, 3: 17.7, 5: 19.5}, TG101, 3),
    "smallbowel-max": ("Bowel_Small", "D0.035cc[Gy]", {1: 15.4, 3: 25.2, 5: 35}, TG101, 3),
    "colon-d20cc": ("Colon", "D20cc[Gy]", {1: 14.3, 3: 24, 5: 25}, TG101, 3),
    "colon-max": ("Colon", "D0.035cc[Gy]", {1: 18.4, 3: 28.2, 5: 38}, TG101, 3),
}

BONE_MAX: dict[str, tuple[str, str, dict[int, float], str, float]] = {
    "cauda-d5cc": ("CaudaEquina", "D5cc[Gy]", {1: 14, 3: 21.9, 5: 30}, TG101, 2),
    "cauda-max": ("CaudaEquina", "D0.035cc[Gy]", {1: 16, 3: 24, 5: 32}, TG101, 2),
    "sacralplex-d5cc": ("SacralPlexus", "D5cc[Gy]", {1: 14.4, 3: 22.5, 5: 30}, TG101, 2),
    "sacralplex-max": ("SacralPlexus", "D0.035cc[Gy]", {1: 16, 3: 24, 5: 32}, TG101, 2),
    "esophagus-d5cc": ("Esophagus", "D5cc[Gy]", {1: 11.9, 3: 17.7, 5: 19.5}, TG101, 3),
    "esophagus-max": ("Esophagus", "D0.035cc[Gy]", {1: 15.4, 3: 25.2, 5: 35}, TG101, 3),
}

CONVENTIONAL = {n: 0.0 for n in range(30, 36)}
# id -> (structure, metric, conventional limit Gy, source, alpha/beta)
HN_TABLED: dict[str, tuple[str, str, float, str, float]] = {
    "cord-d2pct": ("SpinalCord", "D2%[Gy]", 45, "gortec-d2", 2),
    "brainstem-d2pct": ("Brainstem", "D2%[Gy]", 54, "gortec-d2", 2),
    "submand-mean": ("Glnd_Submand", "Mean[Gy]", 39, "pointreau2016-abstract", 3),
    "tmj-d2pct": ("Joint_TM", "D2%[Gy]", 65, "pointreau2016-abstract", 3),
}
# id -> (structure, metric, fixed limit Gy, source)
HN_CAPS: dict[str, tuple[str, str, float, str]] = {
    "cord-max-cap": ("SpinalCord", "Max[Gy]", 50, "quantec-cord"),
    "cord-d2pct-cap": ("SpinalCord", "D2%[Gy]", 45, "gortec-d2"),
    "brainstem-max-cap": ("Brainstem", "Max[Gy]", 54, "quantec-brainstem"),
    "brainstem-d2pct-cap": ("Brainstem", "D2%[Gy]", 54, "gortec-d2"),
    "parotid-l-mean-cap": ("Parotid_L", "Mean[Gy]", 25, "quantec-parotid"),
    "parotid-r-mean-cap": ("Parotid_R", "Mean[Gy]", 25, "quantec-parotid"),
    "constrictor-mean-cap": ("Musc_Constrict", "Mean[Gy]", 50, "quantec-larynx"),
    "larynx-mean-cap": ("Larynx", "Mean[Gy]", 44, "quantec-larynx"),
    "mandible-mean-cap": ("Bone_Mandible", "Mean[Gy]", 60, "pointreau2016"),
    "submand-mean-cap": ("Glnd_Submand", "Mean[Gy]", 39, "pointreau2016-abstract"),
    "tmj-d2pct-cap": ("Joint_TM", "D2%[Gy]", 65, "pointreau2016-abstract"),
}


def _check_max_rule(
    pid: str, rid: str, spec: tuple[str, str, dict[int, float], str, float]
) -> None:
    structure, metric, expected, source, alpha_beta = spec
    r = rule(pid, rid)
    assert isinstance(r, DoseVolumeRule)
    assert r.structure == structure
    assert str(r.metric) == metric
    assert table(r.maximum) == pytest.approx(expected)
    assert r.source == source
    assert r.source in protocol(pid).sources
    assert r.alpha_beta == alpha_beta


@pytest.mark.parametrize("rid", sorted(LUNG_MAX))
def test_lung_limits(rid: str) -> None:
    _check_max_rule("sabr-lung", rid, LUNG_MAX[rid])


@pytest.mark.parametrize("rid", sorted(LIVER_MAX))
def test_liver_gut_limits(rid: str) -> None:
    _check_max_rule("sabr-liver", rid, LIVER_MAX[rid])


@pytest.mark.parametrize("rid", sorted(BONE_MAX))
def test_bone_limits(rid: str) -> None:
    _check_max_rule("sabr-bone", rid, BONE_MAX[rid])


@pytest.mark.parametrize(
    ("pid", "rid", "metric", "minimum", "fractions"),
    [
        # TG-101 parallel tissue: critical volume that must stay below the threshold.
        ("sabr-lung", "lungs-1500cc-1fx", "CV7Gy[cc]", 1500, "1"),
        ("sabr-lung", "lungs-1000cc-1fx", "CV7.4Gy[cc]", 1000, "1"),
        ("sabr-lung", "lungs-1500cc-3fx", "CV11.6Gy[cc]", 1500, "3"),
        ("sabr-lung", "lungs-1000cc-3fx", "CV12.4Gy[cc]", 1000, "3"),
        ("sabr-lung", "lungs-1500cc-5fx", "CV12.5Gy[cc]", 1500, "5"),
        ("sabr-lung", "lungs-1000cc-5fx", "CV13.5Gy[cc]", 1000, "5"),
        ("sabr-liver", "renal-cortex-200cc-1fx", "CV8.4Gy[cc]", 200, "1"),
        ("sabr-liver", "renal-cortex-200cc-3fx", "CV16Gy[cc]", 200, "3"),
        ("sabr-liver", "renal-cortex-200cc-5fx", "CV17.5Gy[cc]", 200, "5"),
    ],
)
def test_critical_volume_limits(
    pid: str, rid: str, metric: str, minimum: float, fractions: str
) -> None:
    r = rule(pid, rid)
    assert isinstance(r, DoseVolumeRule)
    assert str(r.metric) == metric
    assert r.minimum is not None and r.minimum.value == minimum
    assert r.when is not None
    assert {q.fact: q.values for q in r.when.required} == {"fractions": (fractions,)}
    assert r.source == TG101


def test_no_lung_volume_rule_invented_for_8_fractions() -> None:
    for r in protocol("sabr-lung").rules:
        required = {q.fact: q.values for q in r.when.required} if r.when is not None else {}
        if "fractions" in required:
            assert "8" not in required["fractions"], r.id


@pytest.mark.parametrize("rid", sorted(HN_TABLED))
def test_hn_new_limits(rid: str) -> None:
    structure, metric, value, source, alpha_beta = HN_TABLED[rid]
    r = rule("hn-locoregional-metastatic", rid)
    assert isinstance(r, DoseVolumeRule)
    assert (r.structure, str(r.metric), r.source, r.alpha_beta) == (
        structure,
        metric,
        source,
        alpha_beta,
    )
    assert table(r.maximum) == {n: value for n in CONVENTIONAL}


@pytest.mark.parametrize("rid", sorted(HN_CAPS))
def test_hn_caps_are_fixed_numbers(rid: str) -> None:
    structure, metric, value, source = HN_CAPS[rid]
    r = rule("hn-locoregional-metastatic", rid)
    assert isinstance(r, DoseVolumeRule)
    assert (r.structure, str(r.metric), r.source) == (structure, metric, source)
    assert r.maximum is not None and r.maximum.value == value
    # A fixed number is never converted: no alpha/beta, no reference fraction size.
    assert r.alpha_beta is None and r.reference_dose_per_fraction_gy is None


def test_every_hn_organ_limit_has_a_cap() -> None:
    proto = protocol("hn-locoregional-metastatic")
    ids = {r.id for r in proto.rules}
    for r in proto.rules:
        if isinstance(r, DoseVolumeRule) and r.alpha_beta is not None:
            assert f"{r.id}-cap" in ids, r.id


@pytest.mark.parametrize("pid", ["sabr-lung", "sabr-liver", "sabr-bone"])
def test_gtv_coverage(pid: str) -> None:
    r = rule(pid, "gtv-coverage")
    assert isinstance(r, CoverageRule)
    assert r.structure == "GTV"
    assert str(r.metric) == "V100%[%]"
    assert (r.minimum, r.minor_minimum) == (95, 90)
    assert r.source == "rtog0236"


def test_central_zone_is_the_iaslc_list() -> None:
    p = protocol("sabr-lung")
    (fact,) = p.facts
    assert fact.source == "GTV"
    required = {"Bronchus", "Trachea", "Heart", "GreatVes", "Esophagus", "SpinalCord"}
    when_contoured = {"BrachialPlex", "PhrenicNerve", "RecurrentLaryngealNerve"}
    assert set(fact.targets) == required | when_contoured
    assert not any(p.roles[r].optional for r in required)
    assert all(p.roles[r].optional for r in when_contoured)
    assert fact.within_mm == 20


@pytest.mark.parametrize(
    ("pid", "roles"),
    [
        ("sabr-lung", ["SmallAirways", "Skin", "BrachialPlex", "Chestwall"]),
        (
            "sabr-liver",
            ["Stomach", "Duodenum", "Bowel_Small", "Colon", "RenalCortex"],
        ),
        ("sabr-bone", ["CaudaEquina", "SacralPlexus", "Esophagus", "GTV"]),
        ("hn-locoregional-metastatic", ["Glnd_Submand", "Joint_TM"]),
    ],
)
def test_organs_not_always_contoured_are_optional(pid: str, roles: list[str]) -> None:
    proto = protocol(pid)
    for role in roles:
        assert proto.roles[role].optional, role


@pytest.mark.parametrize(
    ("pid", "roles"),
    [
        (
            "sabr-lung",
            [
                "Lungs",
                "Bronchus",
                "Trachea",
                "Heart",
                "GreatVes",
                "Esophagus",
                "SpinalCord",
                "GTV",
                "PTV",
            ],
        ),
        ("sabr-liver", ["Liver", "SpinalCord", "GTV"]),
        ("sabr-bone", ["SpinalCord", "PTV"]),
    ],
)
def test_required_roles_stay_required(pid: str, roles: list[str]) -> None:
    proto = protocol(pid)
    for role in roles:
        assert not proto.roles[role].optional, role


def test_sources_say_what_was_not_verified() -> None:
    lung_sources = protocol("sabr-lung").sources
    assert "NOT against the primary text" in " ".join(lung_sources["tg101"].split())
    assert "could NOT be verified" in " ".join(lung_sources[UK8].split())
    hn = protocol("hn-locoregional-metastatic").sources
    assert "transcription" in hn["gortec-d2"]


# -- end to end ----------------------------------------------------------------------------


def run_check(folder: Path, pid: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["check", str(folder), "--json", "-", "--protocol", pid])
    return result.exit_code, json.loads(result.stdout)


def results_of(report: dict[str, Any], rid: str) -> list[dict[str, Any]]:
    found = [r for r in report["results"] if r["id"] == rid]
    assert found, f"no result for {rid}: skipped {report.get('skipped')}"
    return found


# The dose bells of tests/fixtures/plans.py peak at 1.25 x the level at the centre and stay
# within a few per cent of it over the hottest few cc: a bell of level L on an organ puts
# its near-maximum doses at about 1.25 L. Limits are approached within 4 %.
PEAK = 1.25


def _liver_with_stomach(stomach_peak_gy: float) -> PlanSpec:
    spec = liver(3, 15)
    stomach = sphere("Stomach", (-90.0, -70.0, 0.0), 20)
    return replace(
        spec,
        shapes=(*spec.shapes, stomach),
        target_levels=(*spec.target_levels, ("Stomach", stomach_peak_gy / PEAK)),
        patient_id=f"STOMACH{stomach_peak_gy:g}",
    )


@pytest.mark.parametrize(
    ("factor", "status", "verdict"), [(1.03, "major", "fail"), (0.97, "pass", "pass")]
)
def test_liver_stomach_d10cc_just_above_fails_just_below_passes(
    tmp_path: Path, factor: float, status: str, verdict: str
) -> None:
    limit = 16.5  # TG-101, stomach D10cc, 3 fractions
    # The hottest 10 cc of this 33 cc stomach lie about 3 % below the bell's peak.
    folder = write_plan_export(tmp_path / "plan", _liver_with_stomach(limit * factor / 0.97))
    code, report = run_check(folder, "sabr-liver")
    (result,) = results_of(report, "stomach-d10cc")
    measured = result["measured"]
    assert (measured > limit) == (factor > 1), measured
    assert abs(measured / limit - 1) < 0.05, measured
    assert result["status"] == status
    assert report["verdict"] == verdict, [
        (r["id"], r["status"], r["message"]) for r in report["results"] if r["status"] != "pass"
    ]
    assert code == (1 if verdict == "fail" else 0)


def test_liver_without_gut_contours_lists_the_skipped_organs(tmp_path: Path) -> None:
    folder = write_plan_export(tmp_path / "plan", liver(3, 15))
    _, report = run_check(folder, "sabr-liver")
    skipped = {s["id"] for s in report["skipped"]}
    assert {
        "stomach-d10cc",
        "duodenum-d5cc",
        "smallbowel-d5cc",
        "colon-d20cc",
        "renal-cortex-200cc-3fx",
    } <= skipped


def _lung_8fx_with_cord(cord_peak_gy: float) -> PlanSpec:
    spec = lung(PERIPHERAL, 8, 7.5)
    return replace(
        spec,
        target_levels=(*spec.target_levels, ("SpinalCord", cord_peak_gy / PEAK)),
        patient_id=f"CORD8FX{cord_peak_gy:g}",
    )


@pytest.mark.parametrize(("cord_gy", "status"), [(34.0, "major"), (30.5, "pass")])
def test_lung_8_fractions_cord_judged_with_published_8_fraction_limit(
    tmp_path: Path, cord_gy: float, status: str
) -> None:
    # 34 Gy passes the LQ conversion of the 5-fraction 30 Gy (36.5 Gy at alpha/beta 2) but
    # not the UK SABR Consortium 8-fraction 32 Gy.
    folder = write_plan_export(tmp_path / "plan", _lung_8fx_with_cord(cord_gy))
    _, report = run_check(folder, "sabr-lung")
    assert report["facts"]["location"] == "peripheral"
    (result,) = results_of(report, "cord-max")
    assert "<= 32 Gy (8-fraction limit)" in result["limit"]
    assert abs(result["measured"] / cord_gy - 1) < 0.04, result
    assert result["status"] == status
    if status == "major":
        assert report["verdict"] == "fail"


def test_hn_cord_limit_never_rises_above_50_gy_for_long_courses(tmp_path: Path) -> None:
    # 39 x 1.8 Gy: converting the 35-fraction 50 Gy would allow 51.6 Gy; the cap holds 50.
    spec = head_neck((primary(70.2), GROSS), 39, 1.8)
    spec = replace(
        spec,
        shapes=tuple(
            s if s.name != "SpinalCord" else cylinder("SpinalCord", (0, 70, 0), 5, 160)
            for s in spec.shapes
        ),
        target_levels=(*spec.target_levels, ("SpinalCord", 51.0 / 1.04)),
        patient_id="HNCAP",
    )
    folder = write_plan_export(tmp_path / "plan", spec)
    _, report = run_check(folder, "hn-locoregional-metastatic")
    (converted,) = results_of(report, "cord-max")
    (cap,) = results_of(report, "cord-max-cap")
    assert 50.0 < cap["measured"] < 51.6, cap
    # Beyond the 35-fraction column the limit is held at 50 Gy, never converted upward (it
    # would be 51.6 Gy); the separate cap says the same.
    assert converted["status"] == "major"
    assert (
        converted["limit"].startswith("<= 50 Gy") and "held for 39 fractions" in converted["limit"]
    )
    assert cap["status"] == "major"
    assert report["verdict"] == "fail"


def test_central_zone_counts_an_optional_nerve_or_plexus_only_when_contoured(
    tmp_path: Path,
) -> None:
    # A lesion 12 mm from a contoured brachial plexus is central; the same plan without a
    # plexus contour is classified on the mediastinal distances alone (peripheral), and
    # the report says the plexus was not measured.
    base = lung(PERIPHERAL, 3, 18)
    # PERIPHERAL's GTV: r 8 mm at (80, -20, 0); a plexus cylinder r 4 mm along z at
    # (80, 4): 24 - 8 - 4 = 12 mm surface to surface.
    with_plexus = replace(
        base, shapes=(*base.shapes, cylinder("BrachialPlex_R", (80, 4, 0), 4, 40))
    )
    sabr_lung = resolve_protocol("sabr-lung")
    near = check_plan(load_path(write_plan_export(tmp_path / "a", with_plexus)), sabr_lung)
    assert near.facts["location"] == "central"
    assert near.facts["distances_mm"]["BrachialPlex_R"] == pytest.approx(12.0, abs=0.5)
    far = check_plan(load_path(write_plan_export(tmp_path / "b", base)), sabr_lung)
    assert far.facts["location"] == "peripheral"
    assert any(
        "BrachialPlex, PhrenicNerve, RecurrentLaryngealNerve not contoured" in w
        for w in far.warnings
    )
