"""The TG-263 DVH metric grammar: metric strings parsed into typed, hashable objects.

A protocol names what to measure on a structure's DVH with a short string such as
``D95%[Gy]`` or ``V20Gy[cc]``. :func:`parse_metric` turns such a string into a frozen
:class:`Metric` when the protocol loads, so a typo fails at load time with a message
that quotes the string; :meth:`Metric.evaluate` then reads the value off a
:class:`~rtcheck.dvh.DVH`.

Grammar
-------
::

    metric     = dose-query | volume-query | statistic
    dose-query = ("D" | "DC") number volume-unit "[" dose-unit "]"
    volume-query = ("V" | "CV") number dose-unit "[" volume-unit "]"
    statistic  = ["D"] ("Mean" | "Max" | "Min") "[" dose-unit "]"
    dose-unit  = "Gy" | "cGy" | "%"          (% = percent of the prescription dose)
    volume-unit = "cc" | "%"                 (% = percent of the structure volume)
    number     = digits ["." digits] | "." digits

``D`` is the minimum dose to the hottest volume, ``DC`` the maximum dose to the coldest
volume, ``V`` the volume receiving at least a dose and ``CV`` the volume receiving less
than it. The metric letters ``D``, ``DC``, ``V`` and ``CV`` are case-sensitive; the
statistics (``Mean``, ``Dmax``...) and the unit words (``Gy``, ``cGy``, ``cc``; ``cm3``
is accepted for ``cc``) are not. Whitespace between the parts is ignored, whitespace
inside a number or a unit is not. The unit in brackets is mandatory.

Percent volumes are relative to the part of the structure inside the dose grid
(:attr:`rtcheck.dvh.DVH.volume_inside_cc`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum

from rtcheck.dvh import DVH
from rtcheck.errors import EvaluationError, MetricSyntaxError

__all__ = [
    "DoseUnit",
    "Metric",
    "MetricKind",
    "VolumeUnit",
    "parse_metric",
]

#: Shown in every syntax error message.
VALID_EXAMPLES = (
    "D95%[Gy]",
    "D0.03cc[Gy]",
    "DC2%[Gy]",
    "V20Gy[%]",
    "V2000cGy[cc]",
    "CV20Gy[cc]",
    "V100%[%]",
    "Mean[Gy]",
)

#: A volume asked for may exceed the structure's volume by this fraction (rounding).
VOLUME_RELATIVE_TOLERANCE = 1e-9


class MetricKind(Enum):
    """What a DVH metric measures; the value is its TG-263 symbol."""

    _value_: str

    #: Minimum dose to the hottest volume (``D95%``, ``D2cc``).
    DOSE_AT_VOLUME = "D"
    #: Maximum dose to the coldest volume (``DC2%``, ``DC0.5cc``).
    DOSE_AT_COLDEST_VOLUME = "DC"
    #: Volume receiving at least a dose (``V20Gy``).
    VOLUME_AT_DOSE = "V"
    #: Volume receiving less than a dose (``CV20Gy``).
    COLD_VOLUME_AT_DOSE = "CV"
    #: Mean dose.
    MEAN = "Mean"
    #: Maximum dose.
    MAX = "Max"
    #: Minimum dose.
    MIN = "Min"

    @property
    def takes_volume(self) -> bool:
        """True for ``D`` and ``DC``: the parameter is a volume, the result a dose."""
        return self in (MetricKind.DOSE_AT_VOLUME, MetricKind.DOSE_AT_COLDEST_VOLUME)

    @property
    def takes_dose(self) -> bool:
        """True for ``V`` and ``CV``: the parameter is a dose, the result a volume."""
        return self in (MetricKind.VOLUME_AT_DOSE, MetricKind.COLD_VOLUME_AT_DOSE)

    @property
    def is_statistic(self) -> bool:
        """True for ``Mean``, ``Max`` and ``Min``: no parameter, the result a dose."""
        return self in (MetricKind.MEAN, MetricKind.MAX, MetricKind.MIN)


class DoseUnit(Enum):
    """Unit of a dose: Gy, cGy or percent of the prescription dose."""

    _value_: str

    GY = "Gy"
    CGY = "cGy"
    PERCENT = "%"

    def __str__(self) -> str:
        return self.value


class VolumeUnit(Enum):
    """Unit of a volume: cc or percent of the structure volume (inside the dose grid)."""

    _value_: str

    CC = "cc"
    PERCENT = "%"

    def __str__(self) -> str:
        return self.value


_DOSE_UNITS: dict[str, DoseUnit] = {"gy": DoseUnit.GY, "cgy": DoseUnit.CGY, "%": DoseUnit.PERCENT}
_VOLUME_UNITS: dict[str, VolumeUnit] = {
    "cc": VolumeUnit.CC,
    "cm3": VolumeUnit.CC,
    "cm³": VolumeUnit.CC,
    "%": VolumeUnit.PERCENT,
}
_DOSE_UNIT_TEXT = "Gy, cGy or % of the prescription"
_VOLUME_UNIT_TEXT = "cc or % of the structure volume"

_STATISTIC_RE = re.compile(r"(?:D\s*)?(?P<name>mean|max|min)", re.IGNORECASE)
_STATISTICS = {"mean": MetricKind.MEAN, "max": MetricKind.MAX, "min": MetricKind.MIN}
# Metric letters in any case (the case is checked separately, for a precise message).
_PREFIX_RE = re.compile(r"(?P<prefix>dc|cv|d|v)", re.IGNORECASE)
# What may start a number.
_NUMBER_START_RE = re.compile(r"\s*[\d.,+\-]")
_PREFIXES = {
    "D": MetricKind.DOSE_AT_VOLUME,
    "DC": MetricKind.DOSE_AT_COLDEST_VOLUME,
    "V": MetricKind.VOLUME_AT_DOSE,
    "CV": MetricKind.COLD_VOLUME_AT_DOSE,
}
# A number-like token (validated separately, so that a bad one gets a precise message).
_NUMBER_TOKEN_RE = re.compile(r"[+\-]?[\d.,]+")
_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?|\.\d+")


@dataclass(frozen=True)
class Metric:
    """One DVH metric, such as ``D95%[Gy]``: frozen, hashable, validated on creation.

    Usually made by :func:`parse_metric`; ``str(metric)`` is its canonical spelling and
    ``parse_metric(str(metric)) == metric``.

    Parameters
    ----------
    kind
        What is measured.
    output_unit
        Unit of the value :meth:`evaluate` returns: a :class:`DoseUnit` for ``D``, ``DC``
        and the statistics, a :class:`VolumeUnit` for ``V`` and ``CV``.
    parameter
        The volume (``D``, ``DC``) or dose (``V``, ``CV``) the metric is taken at; None
        for ``Mean``, ``Max`` and ``Min``. Stored as a float.
    parameter_unit
        Unit of ``parameter``: a :class:`VolumeUnit` for ``D`` and ``DC``, a
        :class:`DoseUnit` for ``V`` and ``CV``, None for the statistics.

    Raises
    ------
    MetricSyntaxError
        When the attributes do not make a valid metric (e.g. a volume over 100 %).
    """

    kind: MetricKind
    output_unit: DoseUnit | VolumeUnit
    parameter: float | None = None
    parameter_unit: DoseUnit | VolumeUnit | None = None

    def __post_init__(self) -> None:
        problem = _check(self.kind, self.output_unit, self.parameter, self.parameter_unit)
        if problem is not None:
            raise MetricSyntaxError(f"invalid DVH metric attributes: {problem}")
        if self.parameter is not None:
            object.__setattr__(self, "parameter", float(self.parameter))

    def __str__(self) -> str:
        if self.parameter is None:
            return f"{self.kind.value}[{self.output_unit}]"
        return (
            f"{self.kind.value}{_format_number(self.parameter)}{self.parameter_unit}"
            f"[{self.output_unit}]"
        )

    @property
    def needs_prescription(self) -> bool:
        """True when the parameter or the result is a percentage of the prescription."""
        return self.parameter_unit is DoseUnit.PERCENT or self.output_unit is DoseUnit.PERCENT

    def describe(self) -> str:
        """A human sentence saying what the metric measures and in which unit.

        Returns
        -------
        str
            For example ``"minimum dose to the hottest 95 % of the volume, in Gy"``.
        """
        return f"{self._what()}, in {_unit_words(self.output_unit)}"

    def _what(self) -> str:
        if self.kind is MetricKind.MEAN:
            return "mean dose"
        if self.kind is MetricKind.MAX:
            return "maximum dose"
        if self.kind is MetricKind.MIN:
            return "minimum dose"
        assert self.parameter is not None
        number = _format_number(self.parameter)
        if self.kind.takes_volume:
            amount = (
                f"{number} % of the volume"
                if self.parameter_unit is VolumeUnit.PERCENT
                else f"{number} cc"
            )
            if self.kind is MetricKind.DOSE_AT_VOLUME:
                return f"minimum dose to the hottest {amount}"
            return f"maximum dose to the coldest {amount}"
        dose = (
            f"{number} % of the prescription dose"
            if self.parameter_unit is DoseUnit.PERCENT
            else f"{number} {self.parameter_unit}"
        )
        if self.kind is MetricKind.VOLUME_AT_DOSE:
            return f"volume receiving at least {dose}"
        return f"volume receiving less than {dose}"

    def evaluate(self, dvh: DVH, prescription_gy: float | None = None) -> float:
        """The metric's value on a DVH, in :attr:`output_unit`.

        Parameters
        ----------
        dvh
            The structure's dose-volume histogram. Percent volumes are relative to the
            part of the structure inside the dose grid (``dvh.volume_inside_cc``).
        prescription_gy
            Prescription dose in Gy; needed only when the metric has a ``%`` dose
            (``V100%[cc]``, ``D95%[%]``, ``Max[%]``).

        Returns
        -------
        float
            Dose in Gy, cGy or % of the prescription, or volume in cc or % of the
            structure volume, as :attr:`output_unit` says.

        Raises
        ------
        EvaluationError
            When the metric needs the prescription and it is missing or not positive;
            when no part of the structure lies inside the dose grid; when ``D`` or ``DC``
            asks for more cc than the structure has inside the dose grid.
        """
        rx = self._checked_prescription(prescription_gy)
        total = dvh.volume_inside_cc
        if not total > 0:
            outside = (
                f" ({_format_amount(dvh.volume_outside_cc)} cc lie outside it)"
                if dvh.volume_outside_cc > 0
                else ""
            )
            raise EvaluationError(
                f"cannot evaluate {self}: the structure has no volume inside the dose "
                f"grid{outside}; check that the structure is not empty and that the dose "
                "grid covers it"
            )
        if self.kind.takes_dose:
            assert isinstance(self.parameter_unit, DoseUnit) and self.parameter is not None
            threshold_gy = _to_gy(self.parameter, self.parameter_unit, rx)
            at_least = dvh.volume_at_dose(threshold_gy)
            volume = at_least if self.kind is MetricKind.VOLUME_AT_DOSE else total - at_least
            volume = min(max(volume, 0.0), total)
            result = 100.0 * volume / total if self.output_unit is VolumeUnit.PERCENT else volume
        else:
            dose_gy = self._dose_gy(dvh, total)
            assert isinstance(self.output_unit, DoseUnit)
            result = _from_gy(dose_gy, self.output_unit, rx)
        if not math.isfinite(result):
            raise EvaluationError(
                f"cannot evaluate {self}: the DVH gives no finite value (is it empty or "
                "inconsistent?)"
            )
        return result

    def _checked_prescription(self, prescription_gy: float | None) -> float:
        """The prescription in Gy when the metric needs one, else NaN."""
        if not self.needs_prescription:
            return math.nan
        if prescription_gy is None:
            raise EvaluationError(
                f"cannot evaluate {self}: a '%' dose is a percentage of the prescription, "
                "and no prescription dose is known (the plan states none); give it with "
                "--prescription TOTAL/FRACTIONS, or write the dose in Gy"
            )
        if not (math.isfinite(prescription_gy) and prescription_gy > 0):
            raise EvaluationError(
                f"cannot evaluate {self}: the prescription dose must be a positive number "
                f"of Gy, got {prescription_gy!r}"
            )
        return float(prescription_gy)

    def _dose_gy(self, dvh: DVH, total: float) -> float:
        """The dose (Gy) of a ``D``, ``DC`` or statistic metric; ``total`` > 0."""
        if self.kind is MetricKind.MEAN:
            return dvh.mean_gy
        if self.kind is MetricKind.MAX:
            return dvh.max_gy
        if self.kind is MetricKind.MIN:
            return dvh.min_gy
        assert self.parameter is not None
        if self.parameter_unit is VolumeUnit.PERCENT:
            volume = min(self.parameter / 100.0 * total, total)
        else:
            if self.parameter > total * (1.0 + VOLUME_RELATIVE_TOLERANCE):
                outside = (
                    f" (another {_format_amount(dvh.volume_outside_cc)} cc lie outside it)"
                    if dvh.volume_outside_cc > 0
                    else ""
                )
                raise EvaluationError(
                    f"cannot evaluate {self}: it asks for the dose to "
                    f"{_format_number(self.parameter)} cc but the structure has only "
                    f"{_format_amount(total)} cc inside the dose grid{outside}; the "
                    "constraint does not fit this structure (check the structure and the "
                    "protocol)"
                )
            volume = min(self.parameter, total)
        if self.kind is MetricKind.DOSE_AT_VOLUME:
            return dvh.dose_at_volume(volume)
        return dvh.dose_at_coldest_volume(volume)


def parse_metric(text: str) -> Metric:
    """Parse a TG-263 DVH metric string such as ``D95%[Gy]`` or ``V20Gy[cc]``.

    Parameters
    ----------
    text
        The metric. Accepted forms: ``D<volume>[<dose unit>]`` (minimum dose to the
        hottest volume), ``DC<volume>[<dose unit>]`` (maximum dose to the coldest volume),
        ``V<dose>[<volume unit>]`` (volume receiving at least the dose),
        ``CV<dose>[<volume unit>]`` (volume receiving less than the dose) and
        ``Mean``/``Max``/``Min`` (also ``Dmean``, ``Dmax``, ``Dmin``) with a dose unit in
        brackets. Volumes are in ``cc`` or ``%`` of the structure; doses in ``Gy``,
        ``cGy`` or ``%`` of the prescription. The unit in brackets is mandatory.

    Returns
    -------
    Metric
        The parsed metric; ``str()`` of it gives the canonical spelling.

    Raises
    ------
    MetricSyntaxError
        When the string is not a valid metric; the message quotes it, says which part is
        wrong and shows valid examples.

    Examples
    --------
    >>> m = parse_metric("D95%[Gy]")
    >>> m.kind, m.parameter, m.parameter_unit, m.output_unit
    (<MetricKind.DOSE_AT_VOLUME: 'D'>, 95.0, <VolumeUnit.PERCENT: '%'>, <DoseUnit.GY: 'Gy'>)
    >>> str(parse_metric(" V 2000 cgy [CC] "))
    'V2000cGy[cc]'
    """
    if not isinstance(text, str):
        raise TypeError(f"a DVH metric must be a string, got {type(text).__name__}")
    try:
        return _parse(text)
    except _Problem as problem:
        raise MetricSyntaxError(
            f"invalid DVH metric {text!r}: {problem}. Valid examples: " + ", ".join(VALID_EXAMPLES)
        ) from None


class _Problem(Exception):
    """What is wrong with a metric string (internal; becomes a MetricSyntaxError)."""


def _parse(text: str) -> Metric:
    stripped = text.strip()
    if not stripped:
        raise _Problem("the metric is empty")
    body, unit_text = _split_unit(stripped)
    statistic = _STATISTIC_RE.fullmatch(body)
    if statistic is not None:
        kind = _STATISTICS[statistic.group("name").lower()]
        dose_unit = _dose_unit(unit_text, f"{kind.value} is a dose: its unit in brackets")
        return _build(kind, dose_unit, None, None)
    prefix_match = _PREFIX_RE.match(body)
    if prefix_match is None:
        raise _Problem(
            f"unknown metric {body!r}: a metric starts with D (dose to the hottest volume), "
            "DC (dose to the coldest volume), V (volume receiving at least a dose), "
            "CV (volume receiving less than a dose), or is Mean, Max or Min"
        )
    prefix = prefix_match.group("prefix")
    if prefix not in _PREFIXES:
        if _NUMBER_START_RE.match(body, prefix_match.end()) is None:
            raise _Problem(
                f"unknown metric {body!r}: a metric starts with D, DC, V or CV (upper case) "
                "followed by a number, or is Mean, Max or Min"
            )
        raise _Problem(
            f"the metric letters are case-sensitive: write {prefix.upper()!r}, not {prefix!r}"
        )
    kind = _PREFIXES[prefix]
    value, rest = _number(body[prefix_match.end() :].lstrip(), prefix)
    if not rest:
        wanted = _VOLUME_UNIT_TEXT if kind.takes_volume else _DOSE_UNIT_TEXT
        raise _Problem(f"the number after {prefix} needs a unit: {wanted}")
    number = _format_number(value)
    if kind.takes_volume:
        if rest.lower() in _DOSE_UNITS and rest != "%":
            raise _Problem(
                f"{prefix} is followed by a volume in {_VOLUME_UNIT_TEXT}, not a dose in "
                f"{rest!r}; for the volume receiving a dose write e.g. V{number}{rest}[cc]"
            )
        parameter_unit: DoseUnit | VolumeUnit = _lookup_volume_unit(
            rest, f"the unit of the volume after {prefix}"
        )
        output: DoseUnit | VolumeUnit = _dose_unit(
            unit_text, f"{prefix} gives a dose: its unit in brackets"
        )
    else:
        if rest.lower() in _VOLUME_UNITS and rest != "%":
            raise _Problem(
                f"{prefix} is followed by a dose in {_DOSE_UNIT_TEXT}, not a volume in "
                f"{rest!r}; for the dose to a volume write e.g. D{number}{rest}[Gy]"
            )
        parameter_unit = _lookup_dose_unit(rest, f"the unit of the dose after {prefix}")
        output = _volume_unit(unit_text, f"{prefix} gives a volume: its unit in brackets")
    return _build(kind, output, value, parameter_unit)


def _split_unit(text: str) -> tuple[str, str]:
    """Body and bracketed unit of a stripped metric string."""
    opening = text.find("[")
    if opening < 0:
        if "(" in text or "{" in text:
            raise _Problem("the unit must be in square brackets, e.g. D95%[Gy]")
        raise _Problem(
            "the unit of the result in square brackets is missing (it is mandatory), "
            "e.g. [Gy] in D95%[Gy] or [cc] in V20Gy[cc]"
        )
    closing = text.find("]", opening)
    if closing < 0:
        raise _Problem("the '[' of the unit is never closed with ']'")
    if text[closing + 1 :].strip():
        raise _Problem(f"unexpected text {text[closing + 1 :].strip()!r} after the unit ']'")
    unit_text = text[opening + 1 : closing].strip()
    if "[" in unit_text:
        raise _Problem("only one unit in brackets is allowed")
    body = text[:opening].strip()
    if not body:
        raise _Problem("the metric before the unit in brackets is missing")
    if not unit_text:
        raise _Problem("the unit in brackets is empty")
    return body, unit_text


def _number(text: str, prefix: str) -> tuple[float, str]:
    """The number at the start of ``text`` and the stripped rest."""
    token = _NUMBER_TOKEN_RE.match(text)
    if token is None:
        raise _Problem(
            f"{prefix} must be followed by a number, got {text!r} (e.g. {prefix}95% or {prefix}2cc)"
            if prefix in ("D", "DC")
            else f"{prefix} must be followed by a number, got {text!r} "
            f"(e.g. {prefix}20Gy or {prefix}100%)"
        )
    raw = token.group()
    if raw.startswith("-"):
        raise _Problem(f"the number after {prefix} must be positive, got {raw}")
    if raw.startswith("+"):
        raise _Problem(f"write the number after {prefix} without a sign, got {raw}")
    if "," in raw:
        raise _Problem(f"use a dot as decimal separator, got {raw}")
    if _NUMBER_RE.fullmatch(raw) is None:
        raise _Problem(f"{raw!r} after {prefix} is not a number")
    value = float(raw)
    if not math.isfinite(value):
        raise _Problem(f"the number after {prefix} is too large")
    rest = text[token.end() :].strip()
    if rest[:1].isdigit() or rest[:1] == ".":
        raise _Problem(f"the number after {prefix} must not contain spaces")
    if rest[:1] in ("e", "E") and (rest[1:2].isdigit() or rest[1:2] in ("+", "-")):
        raise _Problem(f"write the number after {prefix} without an exponent, e.g. 0.001")
    return value, rest


def _lookup_volume_unit(text: str, what: str) -> VolumeUnit:
    unit = _VOLUME_UNITS.get(text.lower())
    if unit is None:
        raise _Problem(f"{what} must be {_VOLUME_UNIT_TEXT}, got {text!r}")
    return unit


def _lookup_dose_unit(text: str, what: str) -> DoseUnit:
    unit = _DOSE_UNITS.get(text.lower())
    if unit is None:
        raise _Problem(f"{what} must be {_DOSE_UNIT_TEXT}, got {text!r}")
    return unit


def _dose_unit(text: str, what: str) -> DoseUnit:
    """The output dose unit in brackets, with a hint when a volume unit was given."""
    _reject_qualifier(text)
    if text.lower() in _VOLUME_UNITS and text != "%":
        raise _Problem(f"{what} must be {_DOSE_UNIT_TEXT}, not the volume unit {text!r}")
    return _lookup_dose_unit(text, what)


def _volume_unit(text: str, what: str) -> VolumeUnit:
    """The output volume unit in brackets, with a hint when a dose unit was given."""
    _reject_qualifier(text)
    if text.lower() in _DOSE_UNITS and text != "%":
        raise _Problem(f"{what} must be {_VOLUME_UNIT_TEXT}, not the dose unit {text!r}")
    return _lookup_volume_unit(text, what)


def _reject_qualifier(text: str) -> None:
    lowered = text.lower()
    if lowered.startswith(("eqd2", "bed")):
        raise _Problem(
            f"biological dose qualifiers such as {text!r} are not supported yet; "
            "use a physical dose unit (Gy, cGy or %)"
        )


def _build(
    kind: MetricKind,
    output_unit: DoseUnit | VolumeUnit,
    parameter: float | None,
    parameter_unit: DoseUnit | VolumeUnit | None,
) -> Metric:
    problem = _check(kind, output_unit, parameter, parameter_unit)
    if problem is not None:
        raise _Problem(problem)
    return Metric(kind, output_unit, parameter, parameter_unit)


def _check(
    kind: MetricKind,
    output_unit: DoseUnit | VolumeUnit,
    parameter: float | None,
    parameter_unit: DoseUnit | VolumeUnit | None,
) -> str | None:
    """What makes these attributes an invalid metric, or None when they are valid."""
    symbol = kind.value
    if kind.is_statistic:
        if parameter is not None or parameter_unit is not None:
            return f"{symbol} takes no parameter"
        if not isinstance(output_unit, DoseUnit):
            return f"{symbol} is a dose: its unit must be {_DOSE_UNIT_TEXT}"
        return None
    if parameter is None or isinstance(parameter, bool):
        return f"{symbol} needs a number"
    if not math.isfinite(parameter):
        return f"the number after {symbol} must be finite, got {parameter!r}"
    number = _format_number(parameter) if parameter > 0 else repr(parameter)
    if kind.takes_volume:
        if not isinstance(parameter_unit, VolumeUnit):
            return f"{symbol} is followed by a volume in {_VOLUME_UNIT_TEXT}"
        if not isinstance(output_unit, DoseUnit):
            return f"{symbol} gives a dose: its unit must be {_DOSE_UNIT_TEXT}"
        if parameter < 0:
            return f"the volume after {symbol} must be positive, got {number}"
        if parameter == 0:
            instead = "Max" if kind is MetricKind.DOSE_AT_VOLUME else "Min"
            return (
                f"a volume of 0 after {symbol} is meaningless; for the "
                f"{'maximum' if instead == 'Max' else 'minimum'} dose write "
                f"{instead}[{output_unit}]"
            )
        if parameter_unit is VolumeUnit.PERCENT and parameter > 100:
            return f"a volume of {number} % is over 100 %"
        return None
    if not isinstance(parameter_unit, DoseUnit):
        return f"{symbol} is followed by a dose in {_DOSE_UNIT_TEXT}"
    if not isinstance(output_unit, VolumeUnit):
        return f"{symbol} gives a volume: its unit must be {_VOLUME_UNIT_TEXT}"
    if parameter < 0:
        return f"the dose after {symbol} must be positive, got {number}"
    if parameter == 0:
        return (
            f"a dose of 0 after {symbol} is meaningless (every part of the structure "
            "receives at least 0 Gy)"
        )
    return None


def _to_gy(dose: float, unit: DoseUnit, prescription_gy: float) -> float:
    if unit is DoseUnit.GY:
        return dose
    if unit is DoseUnit.CGY:
        return dose / 100.0
    return dose / 100.0 * prescription_gy


def _from_gy(dose_gy: float, unit: DoseUnit, prescription_gy: float) -> float:
    if unit is DoseUnit.GY:
        return dose_gy
    if unit is DoseUnit.CGY:
        return dose_gy * 100.0
    return 100.0 * dose_gy / prescription_gy


def _format_number(value: float) -> str:
    """Shortest plain decimal that reads back as ``value``: 95.0 -> '95', 1e-05 -> '0.00001'."""
    text = repr(float(value))
    if "e" in text or "E" in text:
        text = f"{Decimal(text):f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _format_amount(value: float) -> str:
    """A volume for a message: four significant digits."""
    return f"{value:.4g}"


def _unit_words(unit: DoseUnit | VolumeUnit) -> str:
    if unit is DoseUnit.PERCENT:
        return "% of the prescription dose"
    if unit is VolumeUnit.PERCENT:
        return "% of the structure volume"
    return str(unit)
