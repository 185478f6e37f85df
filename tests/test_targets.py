"""Tests of target-name parsing and elective (prophylactic) volume detection.

Expectations are fixed by hand from the clinical rule (``clinical-rules.md`` section 3: omit
elective nodal irradiation; lower dose levels, nodal targets below the gross-disease dose and
explicit elective words betray an elective volume; involved nodes at full dose do not) and by
the TG-263 nomenclature (section 6), never from the code's own output. Percentages in the
reasons are worked out in the comments.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re

import pytest

from rtcheck.constraints.targets import (
    ElectiveSuspect,
    EleSuspect,
    TargetInfo,
    TargetName,
    find_elective_volumes,
    parse_target_name,
    reference_level,
    targets_summary,
)

# --------------------------------------------------------------------------- name table

# name, type, classifier, index, dose_gy, level, elective_word, nodal
TARGETS: list[tuple[str, str, str | None, int | None, float | None, str | None, bool, bool]] = [
    # TG-263 forms
    ("GTV", "GTV", None, None, None, None, False, False),
    ("CTV", "CTV", None, None, None, None, False, False),
    ("ITV", "ITV", None, None, None, None, False, False),
    ("PTV", "PTV", None, None, None, None, False, False),
    ("GTVp", "GTV", "p", None, None, None, False, False),
    ("GTVn", "GTV", "n", None, None, None, False, True),
    ("GTVn2", "GTV", "n", 2, None, None, False, True),
    ("CTVp", "CTV", "p", None, None, None, False, False),
    ("CTVn", "CTV", "n", None, None, None, False, True),
    ("CTVsb", "CTV", "sb", None, None, None, False, False),
    ("PTVsb", "PTV", "sb", None, None, None, False, False),
    ("PTV1", "PTV", None, 1, None, None, False, False),
    ("PTV2", "PTV", None, 2, None, None, False, False),
    ("PTV_High", "PTV", None, None, None, "high", False, False),
    ("PTV_Mid", "PTV", None, None, None, "mid", False, False),
    ("PTV_Low", "PTV", None, None, None, "low", False, False),
    ("PTV_Mid01", "PTV", None, 1, None, "mid", False, False),
    ("CTV_Low", "CTV", None, None, None, "low", False, False),
    ("PTV_7000", "PTV", None, None, 70.0, None, False, False),
    ("PTV_5400", "PTV", None, None, 54.0, None, False, False),
    ("PTV_5040", "PTV", None, None, 50.4, None, False, False),  # 5040 cGy
    ("PTVp_7000", "PTV", "p", None, 70.0, None, False, False),
    ("PTVp1_7000", "PTV", "p", 1, 70.0, None, False, False),
    ("PTVn_7000", "PTV", "n", None, 70.0, None, False, True),
    ("CTVn_5600", "CTV", "n", None, 56.0, None, False, True),
    ("PTV2_5400", "PTV", None, 2, 54.0, None, False, False),
    ("CTVsb_6000", "CTV", "sb", None, 60.0, None, False, False),
    ("PTV_70Gy", "PTV", None, None, 70.0, None, False, False),
    ("PTV_High_7000", "PTV", None, None, 70.0, "high", False, False),
    # free-text dose levels and units
    ("CTV_5600cGy", "CTV", None, None, 56.0, None, False, False),
    ("PTV_5400cGy", "PTV", None, None, 54.0, None, False, False),
    ("ptv 5400 cgy", "PTV", None, None, 54.0, None, False, False),
    ("PTV_70_Gy", "PTV", None, None, 70.0, None, False, False),
    ("PTV 70 Gy", "PTV", None, None, 70.0, None, False, False),
    ("PTV_70", "PTV", None, None, 70.0, None, False, False),
    ("PTV54", "PTV", None, None, 54.0, None, False, False),
    ("PTV_54.0", "PTV", None, None, 54.0, None, False, False),
    ("PTV_59.4", "PTV", None, None, 59.4, None, False, False),
    ("PTV_59,4Gy", "PTV", None, None, 59.4, None, False, False),  # decimal comma
    ("PTV_5940", "PTV", None, None, 59.4, None, False, False),
    ("PTV_3x18Gy", "PTV", None, None, 54.0, None, False, False),  # 3 x 18 Gy = 54 Gy
    ("PTV_18x3", "PTV", None, None, 54.0, None, False, False),  # 18 x 3 Gy = 54 Gy
    ("PTV_54Gy_18fx", "PTV", None, None, 54.0, None, False, False),  # 18 is a fraction count
    ("PTV_7000Gy", "PTV", None, None, None, None, False, False),  # 7000 Gy: implausible
    ("PTV_95%", "PTV", None, None, None, None, False, False),  # an isodose, not a level
    ("PTV_T12", "PTV", None, None, None, None, False, False),  # vertebra T12, not 12 Gy
    ("PTV_L1", "PTV", None, None, None, None, False, False),  # vertebra L1, not index 1
    ("PTV_12", "PTV", None, None, 12.0, None, False, False),  # >= 10: a dose, not an index
    # level words
    ("ptv_lr_54", "PTV", None, None, 54.0, "low", False, False),
    ("PTV HR 70", "PTV", None, None, 70.0, "high", False, False),
    ("PTV_IR_60", "PTV", None, None, 60.0, "mid", False, False),
    ("CTVhr", "CTV", None, None, None, "high", False, False),
    ("HR-CTV", "CTV", None, None, None, "high", False, False),
    ("hrCTV", "CTV", None, None, None, "high", False, False),
    ("PTVlow54", "PTV", None, None, 54.0, "low", False, False),
    ("ptv_LOW", "PTV", None, None, None, "low", False, False),
    # elective words
    ("CTV_elective", "CTV", None, None, None, None, True, False),
    ("CTV_ENI", "CTV", None, None, None, None, True, False),
    ("PTV_proph_50", "PTV", None, None, 50.0, None, True, False),
    ("PTV_Prophylactic", "PTV", None, None, None, None, True, False),
    ("PTV_Elec_Neck", "PTV", None, None, None, None, True, True),
    ("CTV_subclinical", "CTV", None, None, None, None, True, False),
    # nodal words and European letters
    ("PTV_nodes", "PTV", None, None, None, None, False, True),
    ("CTV_LN_54", "CTV", None, None, 54.0, None, False, True),
    ("GTV_LN1", "GTV", None, 1, None, None, False, True),
    ("PTV_N+_70", "PTV", None, None, 70.0, None, False, True),
    ("PTV_Neck_R_50", "PTV", None, None, 50.0, None, False, True),
    ("Neck_PTV_54", "PTV", None, None, 54.0, None, False, True),
    ("CTV_levels_II-IV", "CTV", None, None, None, None, False, True),
    ("GTV-T", "GTV", "p", None, None, None, False, False),
    ("GTV-N", "GTV", "n", None, None, None, False, True),
    ("GTV_N1", "GTV", "n", 1, None, None, False, True),
    ("PTV_TB", "PTV", "sb", None, None, None, False, False),
    ("GTV_primary", "GTV", "p", None, None, None, False, False),
    # other qualifiers that are kept as targets
    ("PTV_Eval_7000", "PTV", None, None, 70.0, None, False, False),
    ("PTV-eval", "PTV", None, None, None, None, False, False),
    ("PTV_Lung_L", "PTV", None, None, None, None, False, False),
    ("PTV_Met2", "PTV", None, 2, None, None, False, False),
    ("PTV-70", "PTV", None, None, 70.0, None, False, False),  # "-" as a separator
]

# Target-derived helper structures: parsed (type given) but helper=True.
HELPERS: list[tuple[str, str]] = [
    ("zPTV_7000", "PTV"),  # TG-263 z prefix: not for evaluation
    ("z_PTV", "PTV"),
    ("ZZ_GTV", "GTV"),
    ("PTV_opt", "PTV"),
    ("PTV-opt", "PTV"),
    ("optPTV", "PTV"),
    ("PTV_Optim_70", "PTV"),
    ("PTVring", "PTV"),
    ("Ring_PTV", "PTV"),
    ("PTV_shell", "PTV"),
    ("PTV54-PTV70", "PTV"),  # Boolean of two targets
    ("CTV+PTV", "CTV"),
    ("PTV+5mm", "PTV"),  # margin expressions
    ("PTV+5", "PTV"),
    ("PTV-3mm", "PTV"),
    ("PTV_5mm", "PTV"),  # a margin, not a level: an expansion of the PTV
    ("PTV70&Parotid", "PTV"),
    ("PTV_all", "PTV"),  # union of every level
    ("PTV_total", "PTV"),
    ("PTV_7000_old", "PTV"),  # previous course
    ("GTV_prev", "GTV"),
    ("GTVp_gone?", "GTV"),  # an annotation, not a target of this plan
    ("PTV_tmp", "PTV"),
]

# Not targets at all.
NOT_TARGETS = [
    "Parotid_L",
    "Parotid_R",
    "Brainstem",
    "SpinalCord",
    "SpinalCord_PRV05",
    "SpinalCanal",
    "Lung_L",
    "Lungs",
    "Bone_Mandible",
    "Esophagus",
    "Heart",
    "Trachea",
    "Bronchus",
    "Bronchus_Main_L",
    "GreatVes",
    "Liver",
    "Chestwall",
    "BrachialPlex_R",
    "Larynx",
    "Musc_Constrict",
    "CaudaEquina",
    "Cochlea_L",
    "OpticNrv_L",
    "Glnd_Submand_L",
    "Body",
    "External",
    "Couch",
    "z_ring",  # z prefix but no target type
    "zOpt",
    "Lungs-GTV",  # organ minus target: an organ structure
    "Skin-PTV",
    "Liver-GTV",
    "Dose 95%",
    "",
    "   ",
]


def test_the_table_is_big_enough() -> None:
    assert len(TARGETS) + len(HELPERS) + len(NOT_TARGETS) >= 60
    assert len(TARGETS) >= 60


@pytest.mark.parametrize(
    ("name", "type_", "classifier", "index", "dose_gy", "level", "elective", "nodal"),
    TARGETS,
    ids=[row[0] for row in TARGETS],
)
def test_parse_target(
    name: str,
    type_: str,
    classifier: str | None,
    index: int | None,
    dose_gy: float | None,
    level: str | None,
    elective: bool,
    nodal: bool,
) -> None:
    t = parse_target_name(name)
    assert t is not None
    assert t.text == name
    assert t.type == type_
    assert t.classifier == classifier
    assert t.index == index
    if dose_gy is None:
        assert t.dose_gy is None
    else:
        assert t.dose_gy == pytest.approx(dose_gy, abs=1e-9)
    assert t.level == level
    assert t.elective_word is elective
    assert t.nodal is nodal
    assert t.helper is False and t.helper_reason is None and t.is_target


@pytest.mark.parametrize(("name", "type_"), HELPERS, ids=[row[0] for row in HELPERS])
def test_helper_structures(name: str, type_: str) -> None:
    t = parse_target_name(name)
    assert t is not None
    assert t.type == type_
    assert t.helper is True
    assert t.helper_reason
    assert not t.is_target


@pytest.mark.parametrize("name", NOT_TARGETS)
def test_not_targets(name: str) -> None:
    assert parse_target_name(name) is None


def test_case_insensitive() -> None:
    a, b = parse_target_name("ptvn_7000"), parse_target_name("PTVN_7000")
    assert a is not None and b is not None
    assert (
        (a.type, a.classifier, a.dose_gy)
        == (b.type, b.classifier, b.dose_gy)
        == (
            "PTV",
            "n",
            70.0,
        )
    )


def test_helper_reasons_are_specific() -> None:
    z = parse_target_name("zPTV_7000")
    assert z is not None and z.helper_reason is not None and "z prefix" in z.helper_reason
    note = parse_target_name("GTVp_gone?")
    assert note is not None and note.helper_reason is not None and "?" in note.helper_reason


def test_target_name_is_frozen_and_labelled() -> None:
    t = parse_target_name("CTVn_5600")
    assert isinstance(t, TargetName)
    assert t.label == "CTVn"
    for field in dataclasses.fields(t):  # every field, by name: none can be assigned
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(t, field.name, getattr(t, field.name))


# --------------------------------------------------------------------------- elective volumes


def names(suspects: list[ElectiveSuspect]) -> list[str]:
    return [s.name for s in suspects]


def T(name: str, median: float | None = None) -> TargetInfo:
    return TargetInfo(name, median)


def test_a_lower_dose_suffix_is_elective() -> None:
    found = find_elective_volumes([T("PTV_7000"), T("PTV_5400")], None)
    assert names(found) == ["PTV_5400"]
    s = found[0]
    assert s.reference_gy == 70.0 and s.reference_source == "name"
    assert s.confidence == "name"
    # 54 / 70 = 0.771 -> 77 %
    assert s.reasons == [
        "dose level 54 Gy in the name is below the highest target level 70 Gy (77 %)"
    ]


def test_b_involved_nodes_at_full_dose_are_not_elective() -> None:
    assert find_elective_volumes([T("PTVp_7000"), T("PTVn_7000"), T("GTVn")], 70.0) == []


def test_c_nodal_target_below_gross_level() -> None:
    found = find_elective_volumes([T("CTVn_5600"), T("PTVp_7000")], None)
    assert names(found) == ["CTVn_5600"]
    reasons = found[0].reasons
    # 56 / 70 = 80 %
    assert "dose level 56 Gy in the name is below the highest target level 70 Gy (80 %)" in reasons
    assert any(
        r.startswith("nodal target (CTVn) prescribed below the gross-disease level")
        for r in reasons
    )


def test_d_free_text_low_risk() -> None:
    found = find_elective_volumes([T("ptv_lr_54"), T("PTV HR 70")], None)
    assert names(found) == ["ptv_lr_54"]
    reasons = found[0].reasons
    assert any("54 Gy" in r and "70 Gy" in r for r in reasons)
    assert any("'lr'" in r and "PTV HR 70" in r for r in reasons)


def test_e_unnamed_levels_caught_by_measured_dose() -> None:
    found = find_elective_volumes([T("PTV1", 70.2), T("PTV2", 50.1)], 70.0)
    assert names(found) == ["PTV2"]
    s = found[0]
    assert s.confidence == "dose"
    assert s.reference_gy == 70.0 and s.reference_source == "prescription"
    # 50.1 / 70 = 0.716 -> 72 %
    assert s.reasons == [
        "measured median dose 50.1 Gy is 72 % of the highest target level 70 Gy (plan prescription)"
    ]
    assert s.median_gy == 50.1


def test_f_level_words() -> None:
    found = find_elective_volumes([T("PTV_High"), T("PTV_Low")], None)
    assert names(found) == ["PTV_Low"]
    assert found[0].reference_gy is None
    assert found[0].confidence == "name"
    assert "PTV_High" in found[0].reasons[0]


def test_g_sabr_metastases_at_the_same_dose() -> None:
    targets = [T("PTV1", 54.1), T("PTV2", 53.8), T("PTV3", 54.4)]
    assert find_elective_volumes(targets, 54.0) == []
    assert find_elective_volumes(targets, None) == []  # reference = highest median 54.4


def test_h_elective_word_without_doses() -> None:
    found = find_elective_volumes([T("CTV_elective")], None)
    assert names(found) == ["CTV_elective"]
    assert found[0].reasons == ["name says 'elective'"]
    assert found[0].confidence == "name"


def test_i_single_level_plan() -> None:
    assert find_elective_volumes([T("PTV_5400")], 54.0) == []
    assert find_elective_volumes([T("PTV_5400", 54.3)], 54.0) == []


def test_j_pembrometart_54_gy_in_18_fractions() -> None:
    # PembroMetaRT: 54 Gy in 18 x 3 Gy to the gross disease, no prophylactic volumes.
    plan = [T("GTVp", 55.0), T("GTVn", 54.9), T("PTV_5400", 54.1)]
    assert find_elective_volumes(plan, 54.0) == []
    with_nodes = [T("GTVp"), T("GTVn"), T("PTVp_5400", 54.2), T("PTVn_5400", 54.0)]
    assert find_elective_volumes(with_nodes, 54.0) == []


def test_gtv_is_never_elective() -> None:
    # A GTV far below the reference (e.g. an untreated lesion) is a coverage issue, not an
    # elective volume.
    assert find_elective_volumes([T("PTV_7000", 70.0), T("GTVn2", 20.0)], 70.0) == []
    assert find_elective_volumes([T("GTV_5000"), T("PTV_7000")], None) == []


def test_intermediate_level_is_reported_with_a_note() -> None:
    found = find_elective_volumes([T("PTV_7000"), T("PTV_6000"), T("PTV_5400")], 70.0)
    assert names(found) == ["PTV_6000", "PTV_5400"]
    intermediate, lowest = found
    assert intermediate.notes and "intermediate" in intermediate.notes[0]
    assert lowest.notes == []
    mid = find_elective_volumes([T("PTV_High"), T("PTV_Mid"), T("PTV_Low")], None)
    assert names(mid) == ["PTV_Mid", "PTV_Low"]
    assert mid[0].notes and not mid[1].notes


def test_nodal_target_by_measured_median() -> None:
    # 66.5 / 70 = 95 %: involved node at full dose.
    assert find_elective_volumes([T("PTVp", 70.1), T("PTVn", 66.5)], 70.0) == []
    # 64.4 / 70 = 92 %: above the 90 % dose rule, below the 95 % nodal rule -> nodal reason.
    found = find_elective_volumes([T("PTVp", 70.1), T("PTVn", 64.4)], 70.0)
    assert names(found) == ["PTVn"]
    assert found[0].confidence == "both"
    assert len(found[0].reasons) == 1 and found[0].reasons[0].startswith("nodal target (PTVn)")


def test_nodal_target_with_full_dose_name_but_no_median() -> None:
    assert find_elective_volumes([T("GTVn"), T("PTV_N+_70"), T("PTVp_70")], None) == []


def test_prescription_above_every_named_level() -> None:
    # An unnamed PTVp carries the 70 Gy prescription; the nodal 56 Gy volume is elective.
    found = find_elective_volumes([T("PTVp"), T("CTVn_5600")], 70.0)
    assert names(found) == ["CTVn_5600"]
    assert found[0].reference_source == "prescription"


def test_measured_and_named_evidence_combine() -> None:
    found = find_elective_volumes([T("PTV_7000", 70.0), T("PTV_5400", 54.6)], 70.0)
    assert names(found) == ["PTV_5400"]
    assert found[0].confidence == "both"
    # 54 / 70 = 77 %, 54.6 / 70 = 78 %: one sentence, the level said once (issue 12).
    assert found[0].reasons == [
        "dose level 54 Gy in the name (77 %) and measured median dose 54.6 Gy (78 %) are "
        "below the highest target level 70 Gy"
    ]


@pytest.mark.parametrize(
    ("targets", "prescription"),
    [
        ([T("PTV_7000", 70.0), T("PTV_5400", 54.6)], 70.0),  # name and median both low
        ([T("CTVn_5600"), T("PTVp_7000")], None),  # nodal target named below the level
        ([T("PTVp", 70.0), T("CTVn", 60.0)], 70.0),  # nodal, median low, no named level
        ([T("PTVp", 70.0), T("CTVn", 64.0)], 70.0),  # nodal, median 91 %: only rule 2
    ],
)
def test_each_reason_states_the_reference_level_once(
    targets: list[TargetInfo], prescription: float | None
) -> None:
    (suspect,) = find_elective_volumes(targets, prescription)
    text = "; ".join(suspect.reasons)
    assert text.count("70 Gy") == 1, text
    numbers = re.findall(r"\d+(?:\.\d+)? (?:Gy|%)", text)
    assert len(numbers) == len(set(numbers)), text


def test_helpers_and_non_targets_are_ignored() -> None:
    plan = [
        T("PTV_7000", 70.0),
        T("zPTV_5400", 54.0),
        T("PTV_opt", 40.0),
        T("PTV54-PTV70", 54.0),
        T("Parotid_L", 24.0),
        T("GTVp_gone?", 3.0),
    ]
    assert find_elective_volumes(plan, 70.0) == []


def test_boost_is_never_elective() -> None:
    # Sequential boost: phase dose in the name (20 Gy) below the 50 Gy phase-1 level.
    assert find_elective_volumes([T("PTV_5000"), T("PTV_boost_2000")], None) == []


def test_dose_fraction_is_a_parameter() -> None:
    plan = [T("PTV1", 70.0), T("PTV2", 60.0)]  # 60 / 70 = 86 %
    assert names(find_elective_volumes(plan, 70.0)) == ["PTV2"]
    assert find_elective_volumes(plan, 70.0, dose_fraction=0.80) == []


@pytest.mark.parametrize(
    "kwargs",
    [{"dose_fraction": 0.0}, {"dose_fraction": 1.5}, {"nodal_full_dose_fraction": -1.0}],
)
def test_bad_thresholds(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        find_elective_volumes([T("PTV")], None, **kwargs)


@pytest.mark.parametrize("prescription", [0.0, -54.0, math.nan])
def test_bad_prescription(prescription: float) -> None:
    with pytest.raises(ValueError):
        find_elective_volumes([T("PTV")], prescription)


def test_nan_median_counts_as_not_available() -> None:
    assert find_elective_volumes([T("PTV1", 70.0), T("PTV2", math.nan)], 70.0) == []


def test_alias_and_json_form() -> None:
    assert EleSuspect is ElectiveSuspect
    found = find_elective_volumes([T("PTV_7000", 70.0), T("PTV_5400", 54.6)], 70.0)
    fact = found[0].as_dict()
    assert fact["name"] == "PTV_5400" and fact["dose_gy"] == 54.0 and fact["median_gy"] == 54.6
    json.dumps(fact)


# --------------------------------------------------------------------------- summary


def test_reference_level_sources() -> None:
    assert reference_level([T("PTV_7000"), T("PTV_5400")], 66.0) == (70.0, "name")
    assert reference_level([T("PTV1"), T("PTV2")], 54.0) == (54.0, "prescription")
    assert reference_level([T("PTV1", 53.0), T("PTV2", 54.5)], None) == (54.5, "measured")
    assert reference_level([T("PTV")], None) == (None, None)
    assert reference_level([T("Parotid_L", 30.0)], None) == (None, None)


def test_targets_summary() -> None:
    summary = targets_summary(
        [T("PTVp_7000", 70.1), T("CTVn_5600", 56.4), T("zPTV_opt"), T("Parotid_L", 24.0)],
        70.0,
    )
    assert summary["gross_level_gy"] == 70.0
    assert summary["gross_level_source"] == "name"
    assert [t["name"] for t in summary["targets"]] == ["PTVp_7000", "CTVn_5600"]
    ctvn = summary["targets"][1]
    assert ctvn["type"] == "CTV" and ctvn["classifier"] == "n" and ctvn["nodal"] is True
    assert ctvn["dose_gy"] == 56.0 and ctvn["median_gy"] == 56.4
    assert [h["name"] for h in summary["helpers"]] == ["zPTV_opt"]
    json.dumps(summary)


@pytest.mark.parametrize(
    ("name", "level", "nodal"),
    [
        ("PTV_LowRisk", "low", False),
        ("PTV_Lymph", None, True),
        ("PTV_lymphnodes", None, True),
        ("PTV_SCV", None, True),
        ("PTV_IMN", None, True),
    ],
)
def test_more_elective_and_nodal_words(name: str, level: str | None, nodal: bool) -> None:
    # Review finding: these once parsed as plain targets (supraclavicular and internal
    # mammary node volumes, a 'low risk' volume).
    parsed = parse_target_name(name)
    assert parsed is not None and parsed.is_target
    assert (parsed.level, parsed.nodal) == (level, nodal)


# -- review: expansions, derived targets and site prefixes -----------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("PTV_1cm", "margin expansion ('1cm')"),
        ("PTV_3mm", "margin expansion ('3mm')"),
        ("PTV1_5mm", "margin expansion ('5mm')"),
        ("PTV1_expand", "margin expansion ('expand')"),
        ("PTV1_PRV", "margin expansion ('prv')"),
        ("PTV1_noGTV", "target minus another target ('nogtv')"),
        ("PTV1-Lung", "subtraction of another structure ('-lung')"),
        ("PTV-Body", "subtraction of another structure ('-body')"),
        ("PTV_in", "part of a target (inside or outside another structure) ('in')"),
        ("PTV_out", "part of a target (inside or outside another structure) ('out')"),
    ],
)
def test_expansions_and_derived_targets_are_helpers(name: str, reason: str) -> None:
    t = parse_target_name(name)
    assert t is not None and t.helper and t.helper_reason == reason


@pytest.mark.parametrize(
    ("name", "dose"),
    [("PTV_5400", 54.0), ("PTV_54Gy", 54.0), ("PTV 70", 70.0), ("CTV_levels_II-IV", None)],
)
def test_doses_and_levels_are_not_margins(name: str, dose: float | None) -> None:
    t = parse_target_name(name)
    assert t is not None and not t.helper and t.dose_gy == dose


@pytest.mark.parametrize("name", ["PTV-Met2", "PTV-C7", "GTV-T", "PTV-eval", "PTV-70"])
def test_a_dash_before_a_lesion_or_qualifier_is_no_subtraction(name: str) -> None:
    t = parse_target_name(name)
    assert t is not None and not t.helper


@pytest.mark.parametrize(
    ("name", "dose"), [("H&N PTV_70Gy", 70.0), ("H&N PTV_62Gy", 62.0), ("H&N PTV_54Gy", 54.0)]
)
def test_a_site_prefix_before_the_type_is_a_target(name: str, dose: float) -> None:
    t = parse_target_name(name)
    assert t is not None and t.is_target
    assert (t.type, t.dose_gy, t.site) == ("PTV", dose, "h&n")


@pytest.mark.parametrize(
    "name", ["Lungs-GTV", "Lungs_GTV", "rx 1: H&N PTV 70 Gy:  200 cGy x 35 to 95%: pt: Calc"]
)
def test_an_organ_minus_target_or_a_note_has_no_site_prefix(name: str) -> None:
    assert parse_target_name(name) is None


def test_site_prefixed_levels_are_elective_suspects() -> None:
    names = ["H&N PTV_70Gy", "H&N PTV_62Gy", "H&N PTV_54Gy"]
    suspects = find_elective_volumes([TargetInfo(n) for n in names])
    assert [s.name for s in suspects] == names[1:]


@pytest.mark.parametrize("name", ["Lungs PTV", "Liver GTV", "Larynx PTV", "Hot PTV", "Body PTV"])
def test_an_organ_or_word_before_the_type_is_no_site(name: str) -> None:
    # An organ minus a target, or a helper: never a target (only site words are prefixes).
    assert parse_target_name(name) is None


@pytest.mark.parametrize(
    "name", ["PTV-RUL", "PTV-LLL", "GTV-LLL", "PTV-Rib7", "PTV-Seg7", "PTV-Sternum", "PTV-A"]
)
def test_a_lesion_named_after_a_dash_stays_a_target(name: str) -> None:
    parsed = parse_target_name(name)
    assert parsed is not None and parsed.is_target and not parsed.helper


def test_lesions_after_a_dash_fill_the_target_role() -> None:
    from rtcheck.constraints.registry import resolve_protocol
    from rtcheck.constraints.structures import match_roles

    roles = match_roles(
        resolve_protocol("sabr-lung"), ["PTV_RUL", "PTV-LLL", "GTV_RUL", "GTV-LLL", "Lungs PTV"]
    )
    assert sorted(roles.matched["PTV"]) == ["PTV-LLL", "PTV_RUL"]
    assert sorted(roles.matched["GTV"]) == ["GTV-LLL", "GTV_RUL"]
