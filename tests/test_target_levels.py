"""Every target is judged at its own dose level, and the report says where it came from.

A 70 Gy head-and-neck plan with a 54 Gy PTV: both PTVs get the same relative dose
distribution (the fixture's bell: 125 % of the level at the centre, 115 % at the surface),
so their %-metrics must be equal when each is read against its own level; read against
the 70 Gy prescription the 54 Gy PTV would show 54/70 of them (V95% near 0: a false major).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from rtcheck.constraints.engine import CheckResult, RuleResult, check_plan
from rtcheck.constraints.protocol import load_protocol_text
from rtcheck.constraints.registry import resolve_protocol
from rtcheck.dicom_io import load_path
from tests.fixtures.plans import PlanSpec, cylinder, sphere, write_plan_export


def hn_plan(low_name: str) -> PlanSpec:
    return PlanSpec(
        shapes=(
            sphere("GTV", (0, 0, 0), 8, "GTV"),
            sphere("PTV_7000", (0, 0, 0), 14, "PTV"),
            sphere(low_name, (55, 0, 0), 14, "PTV"),
            cylinder("SpinalCord", (0, 60, 0), 6, 80),
        ),
        target_levels=(("PTV_7000", 70.0), (low_name, 54.0)),
        fractions=35,
        dose_per_fraction_gy=2.0,
        label="HN",
    )


@pytest.fixture(scope="module")
def hn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_plan_export(tmp_path_factory.mktemp("hn") / "plan", hn_plan("PTV_5400"))


def by_structure(result: CheckResult, rule_id: str) -> dict[str | None, RuleResult]:
    return {r.structure: r for r in result.results if r.id == rule_id}


def test_lower_level_target_judged_at_its_own_level(hn: Path) -> None:
    result = check_plan(load_path(hn), resolve_protocol("hn-locoregional-metastatic"))
    coverage = by_structure(result, "ptv-coverage")
    high, low = coverage["PTV_7000"], coverage["PTV_5400"]
    assert high.status == low.status == "pass"
    # The same relative distribution: every sample of both PTVs is >= 115 % of its level.
    assert high.measured == pytest.approx(100.0)
    assert low.measured == pytest.approx(100.0)
    assert "of 54 Gy, PTV_5400's own level from its name" in low.message
    assert "own level" not in high.message
    hot = by_structure(result, "ptv-hot-spot")
    # D2% of each PTV in % of its own level: equal for both (same shape, same bell).
    assert hot["PTV_5400"].measured == pytest.approx(
        hot["PTV_7000"].measured,
        rel=2e-3,
    )
    levels = {t["name"]: (t["level_gy"], t["level_from"]) for t in result.facts["targets"]}
    assert levels["PTV_5400"] == (54.0, "its name")
    assert levels["PTV_7000"] == (70.0, "its name")


def test_plan_dose_reference_gives_the_level(tmp_path: Path) -> None:
    folder = write_plan_export(tmp_path / "plan", hn_plan("PTV_Boost"))  # no dose in the name
    rp = folder / "RP.dcm"
    ds = dcmread(rp)
    item = Dataset()
    item.DoseReferenceNumber = 2
    item.DoseReferenceStructureType = "VOLUME"
    item.ReferencedROINumber = 3  # PTV_Boost
    item.DoseReferenceDescription = "low dose PTV"
    item.DoseReferenceType = "TARGET"
    item.TargetPrescriptionDose = "54"
    ds.DoseReferenceSequence.append(item)
    ds.save_as(rp, enforce_file_format=True)
    result = check_plan(load_path(folder), resolve_protocol("hn-locoregional-metastatic"))
    low = by_structure(result, "ptv-coverage")["PTV_Boost"]
    assert low.status == "pass" and low.measured == pytest.approx(100.0)
    assert "the plan's dose reference 'low dose PTV'" in low.message


PROTOCOL = """
id: levels
title: Levels
version: "1"
sources: {x: test}
structures:
  PTV: {type: target, names: [], aliases: ["PTV*"], multiple: true}
rules:
  - {id: cov, kind: coverage, structure: PTV, metric: "V95%[%]", min: 95, source: x}
"""


@pytest.mark.parametrize(
    ("levels", "status", "message"),
    [
        ("target_levels: {low: 54}\n", "pass", "from the protocol's 'low' level"),
        ("", "not_evaluated", "the dose level of PTV_Low ('low') is not known"),
    ],
)
def test_level_word_needs_the_protocol(
    tmp_path: Path, levels: str, status: str, message: str
) -> None:
    folder = write_plan_export(tmp_path / "plan", hn_plan("PTV_Low"))
    protocol = load_protocol_text(PROTOCOL + levels)
    result = check_plan(load_path(folder), protocol)
    low = by_structure(result, "cov")["PTV_Low"]
    assert low.status == status and message in low.message


@pytest.mark.parametrize(
    ("name", "status", "message"),
    [
        # 30 Gy everywhere, 5 x 6 Gy: the median is 30 Gy.
        ("PTV_6Gy", "not_evaluated", "is the dose per fraction"),
        ("PTV_20Gy", "not_evaluated", "measured median dose is 30 Gy (150 % of it"),
        ("PTV_27Gy", "pass", "of 27 Gy, PTV_27Gy's own level from its name"),  # 111 %
    ],
)
def test_a_name_level_is_believed_only_when_the_dose_agrees(
    tmp_path: Path, name: str, status: str, message: str
) -> None:
    from tests.fixtures.trust import TrustPlan, write_trust_export

    folder = write_trust_export(tmp_path, TrustPlan(grid_gy=30.0, prescription_gy=30.0))
    ds = dcmread(folder / "RS.dcm")
    ds.StructureSetROISequence[0].ROIName = name
    ds.save_as(folder / "RS.dcm", enforce_file_format=True)
    result = check_plan(load_path(folder), resolve_protocol("palliative"))
    coverage = by_structure(result, "ptv-coverage")[name]
    assert coverage.status == status
    assert message in coverage.message
