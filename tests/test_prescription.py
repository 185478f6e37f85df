"""Which prescription a check uses, and BED over several fraction groups (by hand)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from rtcheck.dicom_io import BeamDose, FractionGroup, PlanInfo
from rtcheck.errors import UsageError
from rtcheck.prescription import parse_prescription, resolve_prescription


def plan(
    total: float | None,
    groups: list[tuple[int, float | None]],
    points: list[tuple[float, float, float]] | None = None,
) -> PlanInfo:
    where = points or [(0.0, 0.0, 0.0)] * len(groups)
    fraction_groups = tuple(
        FractionGroup(i + 1, n, (BeamDose(i + 1, d, where[i]),)) for i, (n, d) in enumerate(groups)
    )
    return PlanInfo(
        file=Path("RP.dcm"),
        sop_instance_uid="1.2.3",
        label="P",
        name="P",
        intent="CURATIVE",
        approval="APPROVED",
        fractions=sum(n for n, _ in groups),
        dose_per_fraction_gy=None,
        total_dose_gy=total,
        prescription_source="DoseReferenceSequence" if total else None,
        dose_references=[],
        treatment_beams=[g.beams[0].number for g in fraction_groups],
        frame_of_reference_uid="1.2",
        referenced_structure_set_uid=None,
        patient_position="HFS",
        fraction_groups=fraction_groups,
    )


@pytest.mark.parametrize(
    ("text", "expected"), [("70/35", (70.0, 35)), (" 54 Gy / 3 ", (54.0, 3)), ("7.5/1", (7.5, 1))]
)
def test_parse(text: str, expected: tuple[float, int]) -> None:
    assert parse_prescription(text) == expected


@pytest.mark.parametrize("text", ["70", "70/0", "0/5", "seventy/35", "70/35/2", "-70/35"])
def test_parse_refuses(text: str) -> None:
    with pytest.raises(UsageError, match="--prescription"):
        parse_prescription(text)


def test_plan_prescription_first() -> None:
    rx, warnings, problem = resolve_prescription(plan(70.0, [(35, 2.0)]), (66.0, 33))
    assert rx is not None and rx.source == "plan" and rx.total_gy == 70.0 and rx.fractions == 35
    assert problem == "" and "the plan's is used" in warnings[0]
    # BED3 = 70 x (1 + 2/3) = 116.67 Gy; EQD2 = 70 Gy (2 Gy fractions).
    assert rx.bed(3.0) == pytest.approx(70 * (1 + 2 / 3))
    assert rx.eqd2(3.0) == pytest.approx(70.0)


def test_given_prescription_split_between_groups_by_their_beam_doses() -> None:
    # Beam doses 25 x 2 and 7 x 2.2 Gy (65.4 Gy at the point); prescription 70 Gy in 32:
    # scaled by 70 / 65.4 the groups get 2.1407 and 2.3547 Gy per fraction.
    rx, _, problem = resolve_prescription(plan(None, [(25, 2.0), (7, 2.2)]), (70.0, 32))
    assert rx is not None and problem == "" and rx.source == "given"
    k = 70.0 / 65.4
    assert rx.groups == ((25, pytest.approx(2.0 * k)), (7, pytest.approx(2.2 * k)))
    expected = 25 * 2 * k * (1 + 2 * k / 10) + 7 * 2.2 * k * (1 + 2.2 * k / 10)
    assert rx.bed(10.0) == pytest.approx(expected)
    assert sum(n * d for n, d in rx.groups) == pytest.approx(70.0)


def test_groups_without_beam_doses_have_no_bed() -> None:
    rx, warnings, _ = resolve_prescription(plan(70.0, [(25, 2.0), (10, None)]))
    assert rx is not None and rx.groups == () and rx.bed(10.0) is None
    assert "divides between them" in warnings[0]


def test_no_prescription_says_how_to_give_one() -> None:
    p = replace(plan(None, [(5, 6.0)]), beam_dose_total_gy=30.0)
    rx, _, problem = resolve_prescription(p)
    assert rx is None
    assert "30 Gy" in problem and "not a prescription" in problem
    assert "--prescription TOTAL/FRACTIONS" in problem
    rx, _, problem = resolve_prescription(None)
    assert rx is None and "no RTPLAN" in problem


def test_groups_specified_at_different_points_have_no_bed() -> None:
    # Group 1's beams state their dose in the penumbra, group 2's at the isocentre: their
    # ratio says nothing about how 58 Gy divides, so no BED (it would be 91.8 Gy, not 69.6).
    p = plan(None, [(25, 0.2), (4, 2.0)], points=[(0.0, 40.0, 0.0), (0.0, 0.0, 0.0)])
    rx, warnings, _ = resolve_prescription(p, (58.0, 29))
    assert rx is not None and rx.groups == () and rx.bed(10.0) is None
    assert "one common specification point" in warnings[0]
