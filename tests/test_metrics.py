"""Tests of the TG-263 DVH metric grammar: parsing, canonical form and evaluation.

Every expected value of the evaluation tests is worked out by hand in the comments from
the histograms built below, never taken from the code's own output.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from rtcheck.constraints.metrics import (
    DoseUnit,
    Metric,
    MetricKind,
    VolumeUnit,
    parse_metric,
)
from rtcheck.dvh.core import DVH
from rtcheck.errors import EvaluationError, MetricSyntaxError

D = MetricKind.DOSE_AT_VOLUME
DC = MetricKind.DOSE_AT_COLDEST_VOLUME
V = MetricKind.VOLUME_AT_DOSE
CV = MetricKind.COLD_VOLUME_AT_DOSE
GY, CGY, RX = DoseUnit.GY, DoseUnit.CGY, DoseUnit.PERCENT
CC, PCT = VolumeUnit.CC, VolumeUnit.PERCENT


# --------------------------------------------------------------------------- DVHs


def uniform_dvh(volume_cc: float = 10.0, volume_outside_cc: float = 0.0) -> DVH:
    """10 cc inside the grid, spread evenly over 10-20 Gy (1 cc per Gy), 2**10 bins.

    Volume receiving at least d (10 <= d <= 20): V(d) = 20 - d cc.
    Volume receiving less than d:                10 - V(d) = d - 10 cc.
    Mean (10 + 20) / 2 = 15 Gy, min 10 Gy, max 20 Gy.
    Bin width 10/1024 Gy and bin volume 10/1024 cc are exact binary fractions.
    """
    bins = 2**10
    edges = np.linspace(10.0, 20.0, bins + 1)
    differential = np.full(bins, 10.0 / bins)
    return DVH(
        bin_edges=edges,
        differential_cc=differential,
        volume_cc=volume_cc,
        volume_outside_cc=volume_outside_cc,
        min_gy=10.0,
        mean_gy=15.0,
        max_gy=20.0,
    )


def two_level_dvh() -> DVH:
    """10 cc: 4 cc spread evenly over 10-11 Gy and 6 cc over 20-21 Gy, 1 Gy bins 0-30 Gy.

    V(d) = 6 + 4 (11 - d) for 10 <= d <= 11; 6 for 11 <= d <= 20; 6 (21 - d) for
    20 <= d <= 21. Mean (4 x 10.5 + 6 x 20.5) / 10 = (42 + 123) / 10 = 16.5 Gy.
    """
    edges = np.arange(0.0, 31.0, 1.0)
    differential = np.zeros(30)
    differential[10] = 4.0  # the bin [10, 11) Gy
    differential[20] = 6.0  # the bin [20, 21) Gy
    return DVH(
        bin_edges=edges,
        differential_cc=differential,
        volume_cc=10.0,
        volume_outside_cc=0.0,
        min_gy=10.0,
        mean_gy=16.5,
        max_gy=21.0,
    )


def empty_dvh(volume_cc: float = 5.0) -> DVH:
    """A structure with no volume inside the dose grid (all of it outside)."""
    return DVH(
        bin_edges=np.linspace(0.0, 1.0, 3),
        differential_cc=np.zeros(2),
        volume_cc=volume_cc,
        volume_outside_cc=volume_cc,
        min_gy=math.nan,
        mean_gy=math.nan,
        max_gy=math.nan,
    )


def approx(value: float) -> object:
    return pytest.approx(value, rel=1e-9, abs=1e-9)


# --------------------------------------------------------------------------- parsing

VALID = [
    # text, kind, parameter, parameter unit, output unit, canonical form
    ("D95%[Gy]", D, 95.0, PCT, GY, "D95%[Gy]"),
    ("D0.03cc[Gy]", D, 0.03, CC, GY, "D0.03cc[Gy]"),
    ("D2cc[cGy]", D, 2.0, CC, CGY, "D2cc[cGy]"),
    ("D95%[%]", D, 95.0, PCT, RX, "D95%[%]"),
    ("D100%[Gy]", D, 100.0, PCT, GY, "D100%[Gy]"),
    ("DC2%[Gy]", DC, 2.0, PCT, GY, "DC2%[Gy]"),
    ("DC0.5cc[Gy]", DC, 0.5, CC, GY, "DC0.5cc[Gy]"),
    ("V20Gy[%]", V, 20.0, GY, PCT, "V20Gy[%]"),
    ("V20Gy[cc]", V, 20.0, GY, CC, "V20Gy[cc]"),
    ("V2000cGy[cc]", V, 2000.0, CGY, CC, "V2000cGy[cc]"),
    ("CV20Gy[cc]", CV, 20.0, GY, CC, "CV20Gy[cc]"),
    ("CV20Gy[%]", CV, 20.0, GY, PCT, "CV20Gy[%]"),
    ("V100%[%]", V, 100.0, RX, PCT, "V100%[%]"),
    ("V95%[cc]", V, 95.0, RX, CC, "V95%[cc]"),
    ("V107.5%[cc]", V, 107.5, RX, CC, "V107.5%[cc]"),
    ("Mean[Gy]", MetricKind.MEAN, None, None, GY, "Mean[Gy]"),
    ("Max[Gy]", MetricKind.MAX, None, None, GY, "Max[Gy]"),
    ("Min[Gy]", MetricKind.MIN, None, None, GY, "Min[Gy]"),
    ("Mean[cGy]", MetricKind.MEAN, None, None, CGY, "Mean[cGy]"),
    ("Max[%]", MetricKind.MAX, None, None, RX, "Max[%]"),
    # TG-263 spellings of the statistics, any case
    ("Dmean[Gy]", MetricKind.MEAN, None, None, GY, "Mean[Gy]"),
    ("Dmax[Gy]", MetricKind.MAX, None, None, GY, "Max[Gy]"),
    ("Dmin[cGy]", MetricKind.MIN, None, None, CGY, "Min[cGy]"),
    ("DMAX[Gy]", MetricKind.MAX, None, None, GY, "Max[Gy]"),
    ("mean[gy]", MetricKind.MEAN, None, None, GY, "Mean[Gy]"),
    # whitespace between the parts, unit words in any case, number spellings
    ("  D95%[Gy]  ", D, 95.0, PCT, GY, "D95%[Gy]"),
    ("D 95 % [ Gy ]", D, 95.0, PCT, GY, "D95%[Gy]"),
    ("V 2000 cgy [CC]", V, 2000.0, CGY, CC, "V2000cGy[cc]"),
    ("V20GY[Cc]", V, 20.0, GY, CC, "V20Gy[cc]"),
    ("D2CC[CGY]", D, 2.0, CC, CGY, "D2cc[cGy]"),
    ("D2cm3[Gy]", D, 2.0, CC, GY, "D2cc[Gy]"),
    ("D95.0%[Gy]", D, 95.0, PCT, GY, "D95%[Gy]"),
    ("D0095%[Gy]", D, 95.0, PCT, GY, "D95%[Gy]"),
    ("DC.5cc[Gy]", DC, 0.5, CC, GY, "DC0.5cc[Gy]"),
    ("D0.00001cc[Gy]", D, 0.00001, CC, GY, "D0.00001cc[Gy]"),
    ("V0.1Gy[cc]", V, 0.1, GY, CC, "V0.1Gy[cc]"),
    ("D\t2cc\t[Gy]", D, 2.0, CC, GY, "D2cc[Gy]"),
]


@pytest.mark.parametrize(
    ("text", "kind", "parameter", "parameter_unit", "output", "canonical"), VALID
)
def test_parse_valid(
    text: str,
    kind: MetricKind,
    parameter: float | None,
    parameter_unit: DoseUnit | VolumeUnit | None,
    output: DoseUnit | VolumeUnit,
    canonical: str,
) -> None:
    metric = parse_metric(text)
    assert metric.kind is kind
    assert metric.parameter == parameter
    assert metric.parameter_unit is parameter_unit
    assert metric.output_unit is output
    assert str(metric) == canonical


@pytest.mark.parametrize("text", [row[0] for row in VALID])
def test_round_trip(text: str) -> None:
    metric = parse_metric(text)
    again = parse_metric(str(metric))
    assert again == metric
    assert hash(again) == hash(metric)
    assert str(again) == str(metric)


INVALID = [
    # text, a fragment the message must contain (the part that is wrong)
    ("", "empty"),
    ("   ", "empty"),
    ("D95", "missing"),
    ("D95%", "missing"),
    ("Mean", "missing"),
    ("V20Gy", "missing"),
    ("D95%(Gy)", "square brackets"),
    ("D95%[Gy", "never closed"),
    ("D95%[Gy]x", "after the unit"),
    ("D95%[Gy][cc]", "after the unit"),
    ("D95%[]", "empty"),
    ("[Gy]", "before the unit"),
    ("D95[Gy]", "needs a unit"),
    ("V20[%]", "needs a unit"),
    ("D95%[cc]", "not the volume unit 'cc'"),
    ("Mean[cc]", "not the volume unit 'cc'"),
    ("Mean[%%]", "got '%%'"),
    ("V20Gy[Gy]", "not the dose unit 'Gy'"),
    ("CV20Gy[cGy]", "not the dose unit 'cGy'"),
    ("D20Gy[Gy]", "V20Gy[cc]"),
    ("V2cc[%]", "D2cc[Gy]"),
    ("d95%[Gy]", "case-sensitive"),
    ("Dc2%[Gy]", "case-sensitive"),
    ("v20Gy[%]", "case-sensitive"),
    ("cv20Gy[cc]", "case-sensitive"),
    ("D-5%[Gy]", "positive"),
    ("V-20Gy[cc]", "positive"),
    ("D+5%[Gy]", "without a sign"),
    ("D105%[Gy]", "over 100 %"),
    ("DC100.5%[Gy]", "over 100 %"),
    ("D0%[Gy]", "Max[Gy]"),
    ("D0cc[Gy]", "Max[Gy]"),
    ("DC0%[cGy]", "Min[cGy]"),
    ("V0Gy[cc]", "meaningless"),
    ("CV0cGy[%]", "meaningless"),
    ("V0%[%]", "meaningless"),
    ("Dnan%[Gy]", "followed by a number"),
    ("Vinf Gy[cc]", "followed by a number"),
    ("D1e3cc[Gy]", "exponent"),
    ("D0,03cc[Gy]", "decimal separator"),
    ("D1.2.3cc[Gy]", "not a number"),
    ("D9 5%[Gy]", "spaces"),
    ("V1" + "0" * 400 + "Gy[cc]", "too large"),
    ("D95%[c Gy]", "got 'c Gy'"),
    ("D95%[mGy]", "got 'mGy'"),
    ("D2ml[Gy]", "got 'ml'"),
    ("Median[Gy]", "unknown metric"),
    ("X[Gy]", "unknown metric"),
    ("dose95[Gy]", "unknown metric"),
    ("D95%[EQD2Gy(a/b=3)]", "not supported"),
]


@pytest.mark.parametrize(("text", "fragment"), INVALID)
def test_parse_invalid(text: str, fragment: str) -> None:
    with pytest.raises(MetricSyntaxError) as caught:
        parse_metric(text)
    message = str(caught.value)
    assert repr(text) in message  # quotes the string
    assert fragment in message  # says which part is wrong
    assert "Valid examples: D95%[Gy]" in message  # shows valid examples


def test_syntax_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid DVH metric"):
        parse_metric("D95")


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(TypeError):
        parse_metric(95)  # type: ignore[arg-type]  # the wrong type is the point of the test


# --------------------------------------------------------------------------- the objects


def test_metrics_are_frozen_and_hashable() -> None:
    metric = parse_metric("D95%[Gy]")
    for field in dataclasses.fields(metric):  # every field, by name: none can be assigned
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(metric, field.name, getattr(metric, field.name))
    same = {parse_metric("D95%[Gy]"), parse_metric(" D 95.0 % [gy] "), parse_metric("D95%[cGy]")}
    assert len(same) == 2
    assert {metric: "x"}[parse_metric("D95 %[Gy]")] == "x"


def test_direct_construction_equals_parsed() -> None:
    built = Metric(MetricKind.VOLUME_AT_DOSE, VolumeUnit.CC, 20, DoseUnit.GY)
    assert built == parse_metric("V20Gy[cc]")
    assert isinstance(built.parameter, float)
    assert hash(built) == hash(parse_metric("V20Gy[cc]"))
    assert Metric(MetricKind.MEAN, DoseUnit.GY) == parse_metric("Dmean[Gy]")


@pytest.mark.parametrize(
    ("kind", "output", "parameter", "parameter_unit"),
    [
        (D, GY, 120.0, PCT),  # over 100 %
        (D, GY, -1.0, CC),  # negative volume
        (D, GY, math.nan, PCT),  # NaN
        (D, GY, math.inf, CC),  # infinite
        (D, GY, None, PCT),  # no number
        (D, GY, 5.0, GY),  # a dose where a volume belongs
        (D, CC, 5.0, CC),  # a volume as the result of a dose metric
        (V, GY, 20.0, GY),  # a dose as the result of a volume metric
        (V, CC, 20.0, CC),  # a volume where a dose belongs
        (V, CC, 0.0, GY),  # zero dose
        (MetricKind.MEAN, GY, 5.0, None),  # a statistic takes no parameter
        (MetricKind.MAX, CC, None, None),  # a statistic is a dose
    ],
)
def test_direct_construction_is_validated(
    kind: MetricKind,
    output: DoseUnit | VolumeUnit,
    parameter: float | None,
    parameter_unit: DoseUnit | VolumeUnit | None,
) -> None:
    with pytest.raises(MetricSyntaxError):
        Metric(kind, output, parameter, parameter_unit)


def test_kind_groups() -> None:
    assert D.takes_volume and DC.takes_volume and not V.takes_volume
    assert V.takes_dose and CV.takes_dose and not D.takes_dose
    assert all(k.is_statistic for k in (MetricKind.MEAN, MetricKind.MAX, MetricKind.MIN))
    assert not any(k.is_statistic for k in (D, DC, V, CV))


@pytest.mark.parametrize(
    ("text", "sentence"),
    [
        ("D95%[Gy]", "minimum dose to the hottest 95 % of the volume, in Gy"),
        ("D0.03cc[cGy]", "minimum dose to the hottest 0.03 cc, in cGy"),
        ("DC2%[Gy]", "maximum dose to the coldest 2 % of the volume, in Gy"),
        (
            "D95%[%]",
            "minimum dose to the hottest 95 % of the volume, in % of the prescription dose",
        ),
        ("V20Gy[%]", "volume receiving at least 20 Gy, in % of the structure volume"),
        ("V2000cGy[cc]", "volume receiving at least 2000 cGy, in cc"),
        ("V100%[cc]", "volume receiving at least 100 % of the prescription dose, in cc"),
        ("CV20Gy[cc]", "volume receiving less than 20 Gy, in cc"),
        ("Mean[Gy]", "mean dose, in Gy"),
        ("Max[%]", "maximum dose, in % of the prescription dose"),
        ("Min[cGy]", "minimum dose, in cGy"),
    ],
)
def test_describe(text: str, sentence: str) -> None:
    assert parse_metric(text).describe() == sentence


@pytest.mark.parametrize(
    ("text", "needs"),
    [
        ("D95%[Gy]", False),
        ("V20Gy[%]", False),
        ("D95%[%]", True),
        ("V100%[cc]", True),
        ("CV50%[%]", True),
        ("Max[%]", True),
        ("Mean[cGy]", False),
    ],
)
def test_needs_prescription(text: str, needs: bool) -> None:
    assert parse_metric(text).needs_prescription is needs


def test_output_unit_types() -> None:
    assert isinstance(parse_metric("D95%[%]").output_unit, DoseUnit)
    assert isinstance(parse_metric("V100%[%]").output_unit, VolumeUnit)
    assert str(DoseUnit.CGY) == "cGy"
    assert str(VolumeUnit.CC) == "cc"
    # the two "%" are different units
    assert len({DoseUnit.PERCENT, VolumeUnit.PERCENT}) == 2


# --------------------------------------------------------------------------- evaluation

UNIFORM_CASES = [
    # text, prescription (Gy), expected value by hand
    # D: hottest x cc; V(d) = 20 - d, so the hottest x cc receive at least 20 - x Gy.
    ("D95%[Gy]", None, 10.5),  # 9.5 cc -> 20 - 9.5
    ("D95%[cGy]", None, 1050.0),  # 10.5 Gy x 100
    ("D95%[%]", 20.0, 52.5),  # 10.5 / 20 x 100
    ("D50%[Gy]", None, 15.0),  # 5 cc -> 20 - 5
    ("D100%[Gy]", None, 10.0),  # the whole 10 cc -> the minimum
    ("D2cc[Gy]", None, 18.0),  # 20 - 2
    ("D2cc[cGy]", None, 1800.0),
    ("D0.03cc[Gy]", None, 19.97),  # 20 - 0.03
    ("D10cc[Gy]", None, 10.0),  # exactly the structure's volume -> the minimum
    # DC: coldest x cc; the volume below d is d - 10, so the coldest x cc get at most 10 + x.
    ("DC2%[Gy]", None, 10.2),  # 0.2 cc
    ("DC0.5cc[Gy]", None, 10.5),
    ("DC50%[cGy]", None, 1500.0),  # 5 cc -> 15 Gy
    ("DC100%[Gy]", None, 20.0),  # the whole volume -> the maximum
    ("DC10cc[Gy]", None, 20.0),
    # V: V(d) = 20 - d cc, i.e. (20 - d) x 10 %.
    ("V15Gy[cc]", None, 5.0),
    ("V15Gy[%]", None, 50.0),
    ("V1500cGy[cc]", None, 5.0),  # 1500 cGy = 15 Gy
    ("V18Gy[cc]", None, 2.0),
    ("V5Gy[cc]", None, 10.0),  # below the minimum: everything
    ("V5Gy[%]", None, 100.0),
    ("V10Gy[cc]", None, 10.0),  # at the minimum: everything
    ("V20Gy[cc]", None, 0.0),  # at the maximum: nothing above it
    ("V25Gy[%]", None, 0.0),  # above the maximum
    # CV: volume below d = d - 10 cc.
    ("CV12Gy[cc]", None, 2.0),
    ("CV12Gy[%]", None, 20.0),
    ("CV1200cGy[cc]", None, 2.0),
    ("CV5Gy[cc]", None, 0.0),  # below the minimum: nothing
    ("CV25Gy[%]", None, 100.0),  # above the maximum: everything
    # % of the prescription (20 Gy): 75 % = 15 Gy, 90 % = 18 Gy, 60 % = 12 Gy.
    ("V75%[%]", 20.0, 50.0),  # = V15Gy[%]
    ("V90%[cc]", 20.0, 2.0),  # = V18Gy[cc]
    ("V60%[cc]", 20.0, 8.0),  # = V12Gy[cc] = 20 - 12
    ("CV60%[cc]", 20.0, 2.0),  # = CV12Gy[cc]
    ("V100%[cc]", 20.0, 0.0),  # = V20Gy[cc]
    ("V100%[%]", 16.0, 40.0),  # prescription 16 Gy: V16Gy = 4 cc = 40 %
    ("V25%[%]", 60.0, 50.0),  # prescription 60 Gy: 25 % = 15 Gy -> V15Gy = 50 %
    # statistics
    ("Mean[Gy]", None, 15.0),
    ("Mean[cGy]", None, 1500.0),
    ("Max[Gy]", None, 20.0),
    ("Dmax[Gy]", None, 20.0),
    ("Min[Gy]", None, 10.0),
    ("Min[cGy]", None, 1000.0),
    ("Max[%]", 20.0, 100.0),  # 20 / 20
    ("Mean[%]", 20.0, 75.0),  # 15 / 20
]


@pytest.mark.parametrize(("text", "prescription", "expected"), UNIFORM_CASES)
def test_evaluate_uniform(text: str, prescription: float | None, expected: float) -> None:
    assert parse_metric(text).evaluate(uniform_dvh(), prescription) == approx(expected)


TWO_LEVEL_CASES = [
    # V(d) = 6 + 4 (11 - d) on 10-11 Gy, 6 on 11-20 Gy, 6 (21 - d) on 20-21 Gy.
    ("V15Gy[cc]", 6.0),  # inside the dose gap: the upper 6 cc
    ("V15Gy[%]", 60.0),
    ("CV15Gy[cc]", 4.0),  # the lower 4 cc
    ("CV15Gy[%]", 40.0),
    ("V10.5Gy[cc]", 8.0),  # 6 + 4 x 0.5
    ("V20.5Gy[cc]", 3.0),  # 6 x 0.5
    ("CV2050cGy[cc]", 7.0),  # 10 - 3
    ("D3cc[Gy]", 20.5),  # 6 (21 - d) = 3
    ("D5cc[Gy]", 21.0 - 5.0 / 6.0),  # 6 (21 - d) = 5
    ("D80%[Gy]", 10.5),  # 8 cc: 6 + 4 (11 - d) = 8
    ("DC1cc[Gy]", 10.25),  # coldest: 4 (d - 10) = 1
    ("DC50%[Gy]", 20.0 + 1.0 / 6.0),  # coldest 5 cc: 4 + 6 (d - 20) = 5
    ("DC4cc[Gy]", 11.0),  # the coldest 4 cc are the lower level: at most 11 Gy
    ("DC40%[Gy]", 11.0),
    ("Mean[Gy]", 16.5),
    ("Max[cGy]", 2100.0),
    ("Min[Gy]", 10.0),
]


@pytest.mark.parametrize(("text", "expected"), TWO_LEVEL_CASES)
def test_evaluate_two_level(text: str, expected: float) -> None:
    assert parse_metric(text).evaluate(two_level_dvh()) == approx(expected)


@pytest.mark.parametrize("text", ["D6cc[Gy]", "D60%[Gy]"])
def test_dose_to_hottest_volume_at_a_dose_gap(text: str) -> None:
    # The hottest 6 cc are exactly the upper level (20-21 Gy): their minimum dose is 20 Gy,
    # however empty the 11-20 Gy gap below them is.
    assert parse_metric(text).evaluate(two_level_dvh()) == approx(20.0)


def test_percent_volumes_are_relative_to_the_volume_inside_the_grid() -> None:
    # 12 cc structure, 2 cc of it outside the dose grid: the histogram holds 10 cc.
    dvh = uniform_dvh(volume_cc=12.0, volume_outside_cc=2.0)
    assert parse_metric("V15Gy[%]").evaluate(dvh) == approx(50.0)  # 5 of 10 cc
    assert parse_metric("D50%[Gy]").evaluate(dvh) == approx(15.0)  # hottest 5 cc
    assert parse_metric("D10cc[Gy]").evaluate(dvh) == approx(10.0)  # all 10 cc inside


@pytest.mark.parametrize("text", ["D10.5cc[Gy]", "DC10.5cc[Gy]", "D11cc[cGy]", "D20cc[%]"])
def test_volume_larger_than_the_structure(text: str) -> None:
    with pytest.raises(EvaluationError, match=r"only 10 cc inside the dose grid") as caught:
        parse_metric(text).evaluate(uniform_dvh(), prescription_gy=20.0)
    assert str(parse_metric(text)) in str(caught.value)


def test_volume_larger_than_the_part_inside_the_grid() -> None:
    dvh = uniform_dvh(volume_cc=12.0, volume_outside_cc=2.0)
    expected = r"only 10 cc inside the dose grid \(another 2 cc lie outside it\)"
    with pytest.raises(EvaluationError, match=expected):
        parse_metric("D11cc[Gy]").evaluate(dvh)


@pytest.mark.parametrize(
    "text",
    [
        "D95%[Gy]",
        "D0.03cc[Gy]",
        "DC2%[Gy]",
        "V20Gy[cc]",
        "CV20Gy[%]",
        "Mean[Gy]",
        "Max[Gy]",
        "Min[cGy]",
    ],
)
@pytest.mark.parametrize("dvh", [empty_dvh(), empty_dvh(volume_cc=0.0)], ids=["outside", "zero"])
def test_structure_without_volume_in_the_grid(text: str, dvh: DVH) -> None:
    with pytest.raises(EvaluationError, match="no volume inside the dose grid"):
        parse_metric(text).evaluate(dvh)


@pytest.mark.parametrize("text", ["V100%[%]", "CV95%[cc]", "D95%[%]", "Max[%]", "Mean[%]"])
@pytest.mark.parametrize("prescription", [None, 0.0, -20.0, math.nan, math.inf])
def test_prescription_needed(text: str, prescription: float | None) -> None:
    with pytest.raises(EvaluationError, match="prescription"):
        parse_metric(text).evaluate(uniform_dvh(), prescription)


def test_prescription_ignored_when_not_needed() -> None:
    # V15Gy = 5 cc whatever the prescription.
    assert parse_metric("V15Gy[cc]").evaluate(uniform_dvh(), None) == approx(5.0)
    assert parse_metric("V15Gy[cc]").evaluate(uniform_dvh(), 60.0) == approx(5.0)
