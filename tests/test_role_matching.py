"""Structure matching (issue 10): helper structures are never roles, organs are never missed.

Unit cases run :func:`match_roles` on the shipped protocols with ROI names only; the CLI
cases write synthetic plans (tests/fixtures/plans.py) whose verdict is known by
construction: a chest wall cylinder inside the 3 x 18 Gy PTV receives far more than the
28.8 Gy TG-101 allows to 1 cc, and a cord through a 10 x 4 Gy PTV receives about 41.6 Gy
(peak 1.04), above the 35.8 Gy that QUANTEC's 50 Gy EQD2 (alpha/beta 2) allows in 10
fractions (10 d (1 + d/2) = 100 gives d = 3.58 Gy).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rtcheck.cli.main import app
from rtcheck.constraints.protocol import Protocol, RoleType, load_protocol_text
from rtcheck.constraints.registry import resolve_protocol, shipped_protocols
from rtcheck.constraints.roinames import core_key, name_key, organ_exclusion, split_side
from rtcheck.constraints.structures import match_roles
from tests.fixtures.plans import PlanSpec, Shape, cylinder, sphere, write_plan_export
from tests.test_golden import PERIPHERAL, lung, lung_anatomy

HELPER_TARGETS = (
    "PTV1_WALL",
    "PTV1_ring",
    "PTV1_opt",
    "PTV-5mm",
    "PTV 1 AND 2",
    "PTV_Lung_ring",
    "PTV_all",
    "PTV_ALL",
    "PTV1+PTV2",
    "zPTV1",
    "GTV_old",
    "GTV1_ring",
)


# -- names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Spinal-Cord", "SpinalCord"),
        ("spinal cord", "SpinalCord"),
        ("Spinal_Cord", "SpinalCord"),
        ("BP_L", "BrachialPlex_L"),
        ("BrachialPlexus_L", "BrachialPlex_L"),
        ("Musc_Constric_S", "Musc_Constrict_S"),
    ],
)
def test_spelling_variants_share_a_key(a: str, b: str) -> None:
    assert name_key(a) == name_key(b)


def test_sides_and_helpers_of_organ_names() -> None:
    assert split_side("Chestwall_L") == ("Chestwall", "L")
    assert split_side("Rt_Parotid") == ("Parotid", "R")
    assert split_side("LungL") == ("LungL", None)
    assert organ_exclusion("SpinalCord_PRV5") == ("prv", "planning organ-at-risk volume (PRV)")
    assert organ_exclusion("Cord+3mm") == ("prv", "margin expansion of the organ")
    assert organ_exclusion("Cord_opt") == ("helper", "optimisation helper ('opt')")
    assert organ_exclusion("SpinalCord_old") == ("previous", "previous course or note ('old')")
    for organ in ("Chest_Wall", "Lungs_Total", "Bladder_Wall", "SpinalCord"):
        assert organ_exclusion(organ) is None
    assert core_key("zSpinalCord") == core_key("SpinalCord_PRV05") == "spinalcord"


# -- every role of every shipped protocol --------------------------------------------------


def _roles(kind: RoleType) -> list[tuple[Protocol, str]]:
    return [(p, name) for p in shipped_protocols() for name, r in p.roles.items() if r.type is kind]


@pytest.mark.parametrize(
    ("protocol", "role"),
    _roles(RoleType.TARGET),
    ids=lambda v: v if isinstance(v, str) else v.id,
)
def test_helper_targets_are_never_targets(protocol: Protocol, role: str) -> None:
    rois = ["PTV1", "GTV1", *HELPER_TARGETS, "ptv4"]
    match = match_roles(protocol, rois, no_volume={"ptv4": "POINT ROI"})
    taken = match.matched.get(role, []) + match.ambiguous.get(role, [])
    assert not set(taken) & {*HELPER_TARGETS, "ptv4"}
    reasons = {e.roi: e.reason for e in match.excluded if e.role == role}
    if "ptv4" in reasons:  # the role's patterns match 'ptv4': it is set aside, and why
        assert reasons["ptv4"] == "not a target: no volume (POINT ROI)"
    assert all(r.startswith("not a target: ") for r in reasons.values())


@pytest.mark.parametrize(
    ("protocol", "role"),
    _roles(RoleType.OAR),
    ids=lambda v: v if isinstance(v, str) else v.id,
)
def test_helper_organs_are_never_the_organ(protocol: Protocol, role: str) -> None:
    spec = protocol.roles[role]
    organ = (spec.names or spec.aliases)[0].replace("*", "")
    helpers = [f"z{organ}", f"{organ}_opt", f"{organ}_old", f"{organ}_ring"]
    match = match_roles(protocol, helpers)
    taken = match.matched.get(role, []) + match.ambiguous.get(role, [])
    assert not set(taken) & set(helpers), taken
    if role in match.missing:  # the rules of the role are not evaluated, naming a helper
        assert {c.roi for c in match.candidates[role]} & set(helpers)


def test_point_ptv_beside_real_ones_is_reported_not_counted() -> None:
    match = match_roles(
        resolve_protocol("hn-locoregional-metastatic"),
        ["PTV1", "PTV2", "ptv4", "PTV1_ring"],
        no_volume={"ptv4": "POINT ROI"},
    )
    assert match.matched["PTV"] == ["PTV1", "PTV2"]
    assert [str(e) for e in match.excluded] == [
        "ptv4: not a target: no volume (POINT ROI)",
        "PTV1_ring: not a target: optimisation helper ('ring')",
    ]


# -- laterality and spelling -----------------------------------------------------------------


def test_one_side_fills_a_single_role() -> None:
    lung_protocol = resolve_protocol("sabr-lung")
    match = match_roles(lung_protocol, ["Chestwall_L", "Lung_L", "Lung_R", "Lungs", "BP_R"])
    assert match.matched["Chestwall"] == ["Chestwall_L"]
    assert match.how["Chestwall"] == "laterality variant"
    assert match.matched["Lung_L"] == ["Lung_L"] and match.matched["Lungs"] == ["Lungs"]
    assert match.matched["BrachialPlex"] == ["BP_R"]


def test_both_sides_are_each_evaluated_and_said() -> None:
    match = match_roles(resolve_protocol("sabr-lung"), ["Ribs_L", "Ribs_R"])
    assert match.matched["Chestwall"] == ["Ribs_L", "Ribs_R"]
    assert match.notes["Chestwall"] == (
        "Ribs_L, Ribs_R: both sides of Chestwall, each evaluated against the limit"
    )


def test_spelling_and_part_variants() -> None:
    match = match_roles(resolve_protocol("palliative"), ["Spinal-Cord"])
    assert match.matched["SpinalCord"] == ["Spinal-Cord"]
    assert match.how["SpinalCord"] == "name variant"
    hn = match_roles(resolve_protocol("hn-locoregional-metastatic"), ["Musc_Constric_S"])
    assert hn.matched["Musc_Constrict"] == ["Musc_Constric_S"]


# -- stand-ins and candidates ----------------------------------------------------------------


@pytest.mark.parametrize("roi", ["SpinalCord_PRV", "PRV_SpinalCord", "SpinalCanal", "Cord+5mm"])
def test_a_superset_stands_in_for_the_cord_under_maximum_limits(roi: str) -> None:
    match = match_roles(resolve_protocol("palliative"), [roi])
    assert match.matched["SpinalCord"] == [roi]
    assert match.how["SpinalCord"] == "stand-in"
    assert match.stand_ins[0].note.startswith(f"{roi} stands in for the uncontoured SpinalCord")
    assert not match.excluded


@pytest.mark.parametrize("roi", ["Cord_opt", "zSpinalCord", "SpinalCord_old"])
def test_a_helper_cord_is_a_candidate_not_a_cord(roi: str) -> None:
    match = match_roles(resolve_protocol("palliative"), [roi])
    assert "SpinalCord" in match.missing
    assert [c.roi for c in match.candidates["SpinalCord"]] == [roi]


MEAN_PROTOCOL = """\
id: mean-test
title: Mean test
version: "1"
sources: {hand: "hand"}
structures:
  Heart: {type: oar, names: [Heart], optional: true}
rules:
  - {id: heart-mean, kind: dose_volume, structure: Heart, metric: "Mean[Gy]", max: 4}
  - {id: heart-max, kind: dose_volume, structure: Heart, metric: "Max[Gy]", max: 30}
"""


def test_a_prv_is_no_stand_in_under_a_mean_dose_limit() -> None:
    """A PRV's mean dose may be lower than the organ's: it would pass a failing heart."""
    match = match_roles(load_protocol_text(MEAN_PROTOCOL), ["Heart_PRV"])
    assert match.missing == ["Heart"]
    assert [str(c) for c in match.candidates["Heart"]] == [
        "Heart_PRV: not Heart: a PRV or margin expansion contains the organ but is not "
        "conservative for rule heart-mean (Mean[Gy])"
    ]


# -- whole plans through the CLI --------------------------------------------------------------


def run(folder: Path, protocol: str) -> tuple[int, dict[str, Any], str]:
    result = CliRunner().invoke(app, ["check", str(folder), "--protocol", protocol, "--json", "-"])
    text = CliRunner().invoke(app, ["check", str(folder), "--protocol", protocol]).stdout
    return result.exit_code, json.loads(result.stdout), text


def lung_with(extra: tuple[Shape, ...]) -> PlanSpec:
    spec = lung(PERIPHERAL, 3, 18)
    return PlanSpec(
        shapes=spec.shapes + extra,
        target_levels=spec.target_levels,
        fractions=3,
        dose_per_fraction_gy=18,
        label=spec.label,
    )


def chest_wall(name: str, x: float = 100.0) -> Shape:
    """A cylinder reaching 7 mm into the PTV (centre 80, radius 13): D1cc far above 28.8 Gy."""
    return cylinder(name, (x, -20, 0), 8, 40)


def palliative_plan(cord: str) -> PlanSpec:
    return PlanSpec(
        shapes=(sphere("PTV", (0, 40, 0), 25, "PTV"), cylinder(cord, (0, 40, 0), 6, 120)),
        target_levels=(("PTV", 40.0),),
        fractions=10,
        dose_per_fraction_gy=4,
        label="PALL",
        intent="PALLIATIVE",
        peak=1.04,
    )


@pytest.mark.parametrize("name", ["Chestwall_L", "Ribs_L"])
def test_a_lateral_chest_wall_fails_like_the_chest_wall(tmp_path: Path, name: str) -> None:
    code, doc, _ = run(write_plan_export(tmp_path, lung_with((chest_wall(name),))), "sabr-lung")
    assert (code, doc["verdict"]) == (1, "fail")
    statuses = {r["id"]: r["status"] for r in doc["results"] if r["structure"] == name}
    assert statuses == {"chestwall-d1cc": "major", "chestwall-max": "major"}
    assert doc["structures_matched_by"]["Chestwall"] == "laterality variant"


@pytest.mark.parametrize(
    ("cord", "code", "verdict", "status"),
    [
        ("SpinalCord_PRV", 1, "fail", "major"),
        ("Spinal-Cord", 1, "fail", "major"),
        ("SpinalCanal", 1, "fail", "major"),
        ("Cord_opt", 3, "error", "not_evaluated"),
    ],
)
def test_palliative_cord_variants_never_pass(
    tmp_path: Path, cord: str, code: int, verdict: str, status: str
) -> None:
    got, doc, text = run(write_plan_export(tmp_path, palliative_plan(cord)), "palliative")
    assert (got, doc["verdict"]) == (code, verdict)
    assert {
        r["id"]: r["status"] for r in doc["results"] if r["id"].startswith("cord-max-eqd2")
    } == {"cord-max-eqd2": status}
    # The cord rules are never skipped (the TG-101 cord rules are, for a conventional course).
    skipped = {s["id"]: s["reason"] for s in doc["skipped"]}
    assert "cord-max-eqd2" not in skipped and "cord-max-cap" not in skipped
    assert all("fractionation is conventional" in skipped[i] for i in skipped if "cord" in i)
    if status == "not_evaluated":
        assert doc["excluded_rois"] == [
            {
                "roi": cord,
                "role": "SpinalCord",
                "reason": "not SpinalCord: optimisation helper ('opt')",
            }
        ]
    if cord in ("SpinalCord_PRV", "SpinalCanal"):
        assert doc["stand_ins"][0]["roi"] == cord
        assert f"Stand-in: {cord} stands in for the uncontoured SpinalCord" in text


def test_helpers_unions_and_old_gtv_do_not_change_a_lung_plan(tmp_path: Path) -> None:
    """Two peripheral lesions (GTV r 8 inside PTV r 13) with every kind of helper beside them.

    The ring and unions would fail coverage or count 5 lesions; GTV_old lies 6 mm from the
    bronchus (centre 26 - 6 - 6 = 14 mm apart, within 20 mm) and would make the plan central.
    """
    shapes = (
        sphere("GTV1", (80, -20, 0), 8, "GTV"),
        sphere("PTV1", (80, -20, 0), 13, "PTV"),
        sphere("GTV2", (-80, -20, 0), 8, "GTV"),
        sphere("PTV2", (-80, -20, 0), 13, "PTV"),
        sphere("PTV1_ring", (80, -20, 0), 22, "PTV"),
        sphere("PTV1+PTV2", (80, -20, 0), 13, "PTV"),
        sphere("PTV 1 AND 2", (-80, -20, 0), 13, "PTV"),
        sphere("PTV_ALL", (80, -20, 0), 13, "PTV"),
        sphere("GTV_old", (26, 10, 0), 6, "GTV"),
    )
    spec = PlanSpec(
        shapes=shapes + lung_anatomy(),
        target_levels=(("PTV1", 54.0), ("PTV2", 54.0)),
        fractions=3,
        dose_per_fraction_gy=18,
        label="LUNG_SABR",
    )
    code, doc, text = run(write_plan_export(tmp_path, spec), "sabr-lung")
    assert (code, doc["verdict"]) == (0, "pass")
    assert doc["facts"]["location"] == "peripheral"
    assert doc["facts"]["metastasis_count"] == 2
    assert doc["structures"]["PTV"] == ["PTV1", "PTV2"]
    assert {e["roi"] for e in doc["excluded_rois"]} == {
        "PTV1_ring",
        "PTV1+PTV2",
        "PTV 1 AND 2",
        "GTV_old",
    }
    assert "PTV_ALL" in doc["unmatched_rois"]  # no sabr-lung pattern matches it at all
    # the first screen: exclusions and skipped rules come before the rule table
    table = text.index("STATUS  RULE")
    assert text.index("PTV1_ring: not a target: optimisation helper ('ring')") < table
    assert text.index("Rules skipped (") < table
    flat = " ".join(text.split())
    start = flat.index("optional structures not contoured (no ROI resembles them):")
    assert "Chestwall" in flat[start : flat.index("STATUS RULE")]


def test_html_first_screen_lists_skipped_rules_and_exclusions(tmp_path: Path) -> None:
    folder = write_plan_export(
        tmp_path / "plan", lung_with((sphere("PTV1_ring", (80, -20, 0), 22),))
    )
    out = tmp_path / "r.html"
    CliRunner().invoke(app, ["check", str(folder), "--protocol", "sabr-lung", "--html", str(out)])
    page = out.read_text()
    first = page.index('id="not-checked"')
    assert page.index('id="problems"') < first < page.index("<h2>Rules")
    assert "PTV1_ring</span>: not a target: optimisation helper (&#x27;ring&#x27;)" in page[first:]
    assert "Rules skipped (" in page[first : page.index("<h2>Rules")]


# -- review: accents, sides, organ parts, resembling structures, one side of a pair -----------


@pytest.mark.parametrize(
    ("protocol", "roi", "role"),
    [
        ("palliative", "Moelle épinière", "SpinalCord"),
        ("sabr-lung", "Paroi thoracique D", "Chestwall"),
        ("sabr-lung", "Côtes_G", "Chestwall"),
        ("sabr-liver", "Cotes_D", "Chestwall"),
        ("sabr-lung", "Nerf phrénique G", "PhrenicNerve"),
        ("hn-locoregional-metastatic", "SMG_Lt", "Glnd_Submand"),
        ("hn-locoregional-metastatic", "Glande SM G", "Glnd_Submand"),
        ("hn-locoregional-metastatic", "Tronc cérébral", "Brainstem"),
        ("hn-locoregional-metastatic", "Parotid Lt", "Parotid_L"),
        ("hn-locoregional-metastatic", "PAROTID_LT", "Parotid_L"),
        ("hn-locoregional-metastatic", "Parotide droite", "Parotid_R"),
    ],
)
def test_accents_and_side_words_fill_the_role(protocol: str, roi: str, role: str) -> None:
    match = match_roles(resolve_protocol(protocol), [roi])
    assert match.matched.get(role) == [roi], (match.matched, match.candidates)


def test_side_words_and_accents_share_a_key() -> None:
    assert name_key("Parotid Lt") == name_key("L_Parotid") == name_key("Parotid_Left")
    assert name_key("Parotid_L") == name_key("PAROTID_LT")
    assert name_key("Parotide G") == name_key("Parotide_Gauche") == name_key("Parotide_L")
    assert name_key("Tronc cérébral") == name_key("Tronc_Cerebral")
    assert split_side("Cotes_D") == ("Cotes", "R") and split_side("Côtes_G") == ("Côtes", "L")
    assert split_side("Poumon Gauche") == ("Poumon", "L")
    assert split_side("D_Cotes") == ("D_Cotes", None)  # G/D are sides only as a last word


@pytest.mark.parametrize(
    "protocol", [p for p in shipped_protocols() if "SpinalCord" in p.roles], ids=lambda p: p.id
)
@pytest.mark.parametrize("roi", ["SC", "Medulla_Spinalis", "Moelle Épinière"])
def test_cord_abbreviations_are_the_cord(protocol: Protocol, roi: str) -> None:
    assert match_roles(protocol, [roi]).matched["SpinalCord"] == [roi]


@pytest.mark.parametrize(
    "protocol", [p for p in shipped_protocols() if "SpinalCord" in p.roles], ids=lambda p: p.id
)
def test_a_bare_medulla_is_not_the_cord(protocol: Protocol) -> None:
    # "Medulla" alone may be the medulla oblongata (brainstem): not taken as the cord.
    assert "SpinalCord" not in match_roles(protocol, ["Medulla"]).matched


def test_an_accented_cord_fails_like_the_cord(tmp_path: Path) -> None:
    code, doc, _ = run(
        write_plan_export(tmp_path, palliative_plan("Moelle épinière")), "palliative"
    )
    assert (code, doc["verdict"]) == (1, "fail")
    assert {r["id"]: r["status"] for r in doc["results"]}["cord-max-eqd2"] == "major"


ORGAN_PARTS = [
    ("hn-locoregional-metastatic", "Larynx-PTV", "Larynx"),
    ("hn-locoregional-metastatic", "Constrictors_Out", "Musc_Constrict"),
    ("hn-locoregional-metastatic", "Constrictors Out", "Musc_Constrict"),
    ("hn-locoregional-metastatic", "PCM_minusPTV", "Musc_Constrict"),
    ("hn-locoregional-metastatic", "Glnd_Submand_R-PTV", "Glnd_Submand"),
    ("hn-locoregional-metastatic", "Submand_L_crop", "Glnd_Submand"),
    ("sabr-liver", "Duodenum-PTV", "Duodenum"),
    ("sabr-liver", "Colon_out", "Colon"),
    ("sabr-lung", "Skin-PTV", "Skin"),
    ("sabr-lung", "BrachialPlex_L-PTV", "BrachialPlex"),
]


@pytest.mark.parametrize(("protocol", "roi", "role"), ORGAN_PARTS)
def test_an_organ_part_is_a_candidate_not_the_organ(protocol: str, roi: str, role: str) -> None:
    """Organ minus target, cropped or 'out' structures lose the hottest part of the organ."""
    match = match_roles(resolve_protocol(protocol), [roi])
    assert role in match.missing
    assert [c.roi for c in match.candidates[role]] == [roi]
    assert "its hottest part may be cut away" in match.candidates[role][0].reason


def test_an_organ_part_beside_the_organ_is_excluded() -> None:
    hn = resolve_protocol("hn-locoregional-metastatic")
    match = match_roles(hn, ["CONSTRICTOR_CB", "Constrictors Out", "Larynx", "Larynx-PTV"])
    assert match.matched["Musc_Constrict"] == ["CONSTRICTOR_CB"]
    assert match.matched["Larynx"] == ["Larynx"]
    assert {e.roi for e in match.excluded} == {"Constrictors Out", "Larynx-PTV"}


@pytest.mark.parametrize("roi", ["Lungs-GTV", "Lungs-GTV2", "Lungs-PTV", "Lungs_ITV"])
def test_a_part_the_protocol_spells_still_fills_the_role(roi: str) -> None:
    match = match_roles(resolve_protocol("sabr-lung"), [roi])
    assert match.matched["Lungs"] == [roi]
    liver = match_roles(resolve_protocol("sabr-liver"), ["Liver-GTV1", "GTV1"])
    assert liver.matched["Liver"] == ["Liver-GTV1"]


@pytest.mark.parametrize(
    ("rois", "role"),
    [
        (["Kidney_L", "Kidney_R"], "RenalCortex"),
        (["Kidneys"], "RenalCortex"),
        (["Rein G"], "RenalCortex"),
        (["Bowel"], "Bowel_Small"),
        (["BowelBag"], "Bowel_Small"),
        (["Bowel_Bag"], "Colon"),
    ],
)
def test_resembling_structures_are_candidates(rois: list[str], role: str) -> None:
    """A whole kidney is not the cortex, a bowel bag not the small bowel: not_evaluated, not
    skipped."""
    match = match_roles(resolve_protocol("sabr-liver"), rois)
    assert role in match.missing
    assert [c.roi for c in match.candidates[role]] == rois


def test_one_side_of_a_pair_limit_is_a_candidate() -> None:
    """'>= 200 cc below 16 Gy' is for both cortices together: one side alone must not fail."""
    match = match_roles(resolve_protocol("sabr-liver"), ["Kidney_Cortex_L", "Kidney_Cortex_R"])
    assert "RenalCortex" in match.missing
    reasons = [c.reason for c in match.candidates["RenalCortex"]]
    assert [c.roi for c in match.candidates["RenalCortex"]] == [
        "Kidney_Cortex_L",
        "Kidney_Cortex_R",
    ]
    assert all("one side only" in r and "for both sides together" in r for r in reasons)
    # a maximum-only role still takes the sides, each evaluated (TG-101 chest wall)
    lung = match_roles(resolve_protocol("sabr-lung"), ["Chestwall_L", "Chestwall_R"])
    assert lung.matched["Chestwall"] == ["Chestwall_L", "Chestwall_R"]


DERIVED_TARGETS = (
    "PTV_1cm",
    "PTV_3mm",
    "PTV1_5mm",
    "PTV1_expand",
    "PTV1_PRV",
    "PTV1_noGTV",
    "PTV1-Lung",
    "PTV-Body",
    "PTV_in",
)


@pytest.mark.parametrize(
    ("protocol", "role"),
    _roles(RoleType.TARGET),
    ids=lambda v: v if isinstance(v, str) else v.id,
)
def test_expansions_and_derived_targets_are_never_targets(protocol: Protocol, role: str) -> None:
    match = match_roles(protocol, ["PTV1", "GTV1", *DERIVED_TARGETS])
    taken = match.matched.get(role, []) + match.ambiguous.get(role, [])
    assert not set(taken) & set(DERIVED_TARGETS)
    assert all(
        e.reason.startswith("not a target: ")
        for e in match.excluded
        if e.role == role and e.roi in DERIVED_TARGETS
    )


def test_derived_targets_are_reported_with_the_reason() -> None:
    match = match_roles(resolve_protocol("hn-locoregional-metastatic"), ["PTV1", *DERIVED_TARGETS])
    assert match.matched["PTV"] == ["PTV1"]
    reasons = {e.roi: e.reason for e in match.excluded}
    assert set(reasons) == set(DERIVED_TARGETS)
    assert reasons["PTV_1cm"] == "not a target: margin expansion ('1cm')"
    assert reasons["PTV-Body"] == "not a target: subtraction of another structure ('-body')"


def test_a_site_prefix_before_the_ptv_fills_the_ptv_role() -> None:
    rois = ["H&N PTV_70Gy", "H&N PTV_62Gy", "H&N PTV_54Gy", "GTV"]
    match = match_roles(resolve_protocol("hn-locoregional-metastatic"), rois)
    assert match.matched["PTV"] == rois[:3]
