"""Protocol files: the data model and its validating loader.

A protocol is a YAML file (format in ``docs/protocols.md``). Loading validates everything
at once (unknown keys, wrong types, malformed metric strings, unknown structure roles,
sources that are cited but not listed) and raises :class:`rtcheck.errors.ProtocolError`
located as ``file:line:column``. Nothing here looks at a plan: evaluation lives in
:mod:`rtcheck.constraints.engine`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from rtcheck.constraints.metrics import DoseUnit, Metric, MetricKind, parse_metric
from rtcheck.constraints.yamlsource import Located, PathKey, load_yaml, load_yaml_file
from rtcheck.errors import MetricSyntaxError

ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")
ROLE_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
#: Facts every plan has, usable in ``when``/``unless`` conditions besides protocol facts.
BUILTIN_FACTS = ("intent", "fractions", "dose_per_fraction_gy")
#: Built-in facts that are numbers: a condition on them may be a range ``{min, max}``.
NUMERIC_FACTS = ("fractions", "dose_per_fraction_gy")


class RuleKind(Enum):
    """The rule kinds a protocol can use."""

    FRACTIONATION = "fractionation"
    RADIOBIOLOGY = "radiobiology"
    DOSE_VOLUME = "dose_volume"
    GEOMETRY = "geometry"
    TARGET_VOLUMES = "target_volumes"
    COVERAGE = "coverage"
    COUNT = "count"
    INTEGRITY = "integrity"
    PLAN_QUALITY = "plan_quality"


class RoleType(Enum):
    """What kind of structure a role stands for."""

    TARGET = "target"
    OAR = "oar"
    EXTERNAL = "external"


INTEGRITY_CHECKS = (
    "approved",
    "prescription",
    "dose_absolute",
    "frames_agree",
    "grid_covers_targets",
    "grid_covers_constrained",
    "no_empty_structures",
    "dose_scale_confirmed",
    "prescription_matches_dose",
    "dose_type",
)

#: Default range of the main target's median dose, in percent of the prescription, for
#: ``integrity.prescription_matches_dose``: a conventional plan prescribed to the ICRU
#: reference point or the PTV median lies within a few percent of 100; a plan whose
#: median is outside 90-115 % was prescribed to something else, or its dose is not the
#: one the prescription describes. SABR protocols widen the upper end (prescription to
#: the 60-90 % isodose puts the PTV median well above the prescription).
DEFAULT_TARGET_MEDIAN_PERCENT = (90.0, 115.0)


@dataclass(frozen=True)
class Range:
    """A closed interval; either end may be open (None)."""

    low: float | None = None
    high: float | None = None

    def contains(self, value: float) -> bool:
        """True when ``value`` lies in the interval (1e-9 relative slack for rounding)."""
        slack = 1e-9 * max(1.0, abs(value))
        if self.low is not None and value < self.low - slack:
            return False
        return not (self.high is not None and value > self.high + slack)

    def __str__(self) -> str:
        if self.low is not None and self.low == self.high:
            return f"{self.low:g}"
        if self.low is not None and self.high is not None:
            return f"{self.low:g}-{self.high:g}"
        if self.low is not None:
            return f">= {self.low:g}"
        if self.high is not None:
            return f"<= {self.high:g}"
        return "any"


@dataclass(frozen=True)
class Schedule:
    """One allowed fractionation schedule."""

    fractions: Range
    dose_per_fraction_gy: Range | None = None
    total_gy: Range | None = None

    def __str__(self) -> str:
        parts = [f"{self.fractions} fx"]
        if self.dose_per_fraction_gy is not None:
            parts.append(f"x {self.dose_per_fraction_gy} Gy")
        if self.total_gy is not None:
            parts.append(f"= {self.total_gy} Gy total")
        return " ".join(parts)


@dataclass(frozen=True)
class Role:
    """A structure role: TG-263 default names and case-insensitive alias patterns."""

    name: str
    type: RoleType
    names: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    multiple: bool = False
    optional: bool = False
    description: str = ""


@dataclass(frozen=True)
class Requirement:
    """One fact of a condition: it takes one of ``values``, or lies in ``range``."""

    fact: str
    values: tuple[str, ...] = ()
    range: Range | None = None

    def holds(self, value: str | float) -> bool:
        """Whether the fact's value satisfies the requirement."""
        if self.range is not None:
            return isinstance(value, int | float) and self.range.contains(float(value))
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return str(value) in self.values

    def __str__(self) -> str:
        if self.range is not None:
            return f"{self.fact} {self.range}"
        return f"{self.fact} in {'/'.join(self.values)}"


@dataclass(frozen=True)
class Condition:
    """``when`` (or ``unless``): every named fact must satisfy its requirement."""

    required: tuple[Requirement, ...]

    def __str__(self) -> str:
        return ", ".join(str(r) for r in self.required)


@dataclass(frozen=True)
class ProximityFact:
    """A fact from geometry: ``near`` when ``from`` lies within ``within_mm`` of any ``to``."""

    name: str
    source: str
    targets: tuple[str, ...]
    within_mm: float
    near: str
    far: str


@dataclass(frozen=True)
class ScheduleFact:
    """A fact from the prescription: ``match`` when the course fits one of ``schedules``.

    The course is its number of fractions, its total dose and the highest dose per
    fraction of its fraction groups (a boost at a stereotactic dose per fraction makes the
    course stereotactic).
    """

    name: str
    schedules: tuple[Schedule, ...]
    match: str
    otherwise: str


@dataclass(frozen=True)
class Limit:
    """A number, or numbers by fraction count (``{1: 14, 3: 21.9, 5: 30}``)."""

    value: float | None = None
    by_fractions: tuple[tuple[int, float], ...] = ()

    def __str__(self) -> str:
        if self.value is not None:
            return f"{self.value:g}"
        return ", ".join(f"{n} fx: {v:g}" for n, v in self.by_fractions)


@dataclass(frozen=True)
class Rule:
    """Fields every rule has."""

    id: str
    kind: RuleKind
    description: str
    when: Condition | None
    source: str | None
    where: str
    #: Skip the rule when this holds; an unknown fact never skips it.
    unless: Condition | None = None


@dataclass(frozen=True)
class FractionationRule(Rule):
    """The plan's schedule must be one of ``schedules``."""

    schedules: tuple[Schedule, ...] = ()


@dataclass(frozen=True)
class RadiobiologyRule(Rule):
    """A BED or EQD2 threshold on the prescription, with an optional minor band."""

    quantity: str = "BED"
    alpha_beta: float = 10.0
    minimum: float | None = None
    maximum: float | None = None
    minor_minimum: float | None = None
    minor_maximum: float | None = None


@dataclass(frozen=True)
class DoseVolumeRule(Rule):
    """A TG-263 metric of a structure against a limit (RTOG style: goal and variation).

    ``reference_dose_per_fraction_gy`` marks limits given for another fraction size
    (2 Gy for conventional limits); they are converted to the plan's fractionation with
    EQD2 and ``alpha_beta``. A table by fraction count is used as is when the plan's
    count is in it, otherwise converted from the nearest tabulated count when
    ``alpha_beta`` is given.
    """

    structure: str = ""
    metric: Metric | None = None
    maximum: Limit | None = None
    minimum: Limit | None = None
    minor_maximum: Limit | None = None
    minor_minimum: Limit | None = None
    alpha_beta: float | None = None
    reference_dose_per_fraction_gy: float | None = None


@dataclass(frozen=True)
class GeometryRule(Rule):
    """Minimum 3-D distance from ``structure`` to any of ``others`` must lie in a range."""

    structure: str = ""
    others: tuple[str, ...] = ()
    minimum_mm: float | None = None
    maximum_mm: float | None = None


@dataclass(frozen=True)
class DoseRegionSpec:
    """Thresholds of the dose-based elective volume check (see :mod:`rtcheck.dose_regions`):
    a dose of at least ``low_percent`` of the prescription farther than ``margin_mm`` from
    every point at ``high_percent`` or more, over ``max_cc`` in all, is an elective volume."""

    high_percent: float = 90.0
    low_percent: float = 65.0
    margin_mm: float = 15.0
    max_cc: float = 10.0


@dataclass(frozen=True)
class TargetVolumesRule(Rule):
    """No elective (prophylactic) nodal volume among the targets, by their names and
    median doses, and (with ``dose_region``) in the dose distribution itself."""

    median_fraction: float = 0.9
    dose_region: DoseRegionSpec | None = None


@dataclass(frozen=True)
class CoverageRule(Rule):
    """Targets receive their prescription, and every GTV lies inside a treated PTV."""

    structure: str = ""
    metric: Metric | None = None
    minimum: float | None = None
    minor_minimum: float | None = None
    inside: str | None = None
    tolerance_mm: float = 1.0


@dataclass(frozen=True)
class CountRule(Rule):
    """Number of structures matched to a role (metastatic targets), within a range."""

    structure: str = ""
    minimum: int | None = None
    maximum: int | None = None


@dataclass(frozen=True)
class IntegrityRule(Rule):
    """Plan approved, prescription present, dose absolute, frames agree, grid covers,
    dose scale confirmed, prescription matches the dose, dose type fits the radiation.

    ``target_median_percent`` is the range of the main target's median dose in percent
    of the prescription accepted by ``prescription_matches_dose``.
    """

    checks: tuple[str, ...] = INTEGRITY_CHECKS
    target_median_percent: Range = Range(*DEFAULT_TARGET_MEDIAN_PERCENT)


#: Quantities of ``plan_quality`` rules (definitions in :mod:`rtcheck.plan_quality`).
PLAN_QUALITY_QUANTITIES = ("R100", "R50", "D2cm", "max_in_target")


@dataclass(frozen=True)
class QualityRow:
    """One row of a ``plan_quality`` table: limits for a target of ``volume_cc``."""

    volume_cc: float
    maximum: float
    minor_maximum: float | None = None


@dataclass(frozen=True)
class PlanQualityRule(Rule):
    """A SABR plan-quality quantity of each target against an upper limit.

    The limit is ``maximum`` (with ``minor_maximum``), or read from ``table`` by the
    target's volume, linearly interpolated between rows (RTOG 0915/0813); ``body`` is the
    role of the patient outline that bounds isodose volumes (default: the ROI of type
    EXTERNAL, when there is exactly one).
    """

    quantity: str = "R50"
    structure: str = ""
    body: str | None = None
    maximum: float | None = None
    minor_maximum: float | None = None
    table: tuple[QualityRow, ...] = ()


@dataclass(frozen=True)
class Selection:
    """When ``--protocol auto`` picks this protocol."""

    labels: tuple[str, ...] = ()
    fractions: Range | None = None
    intents: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    priority: int = 0


@dataclass(frozen=True)
class Protocol:
    """A loaded, validated protocol."""

    id: str
    title: str
    version: str
    sources: Mapping[str, str]
    select: Selection
    roles: Mapping[str, Role]
    facts: tuple[ProximityFact | ScheduleFact, ...]
    rules: tuple[Rule, ...]
    file: str
    sha256: str
    description: str = ""
    decisions: tuple[str, ...] = field(default=())
    #: Dose (Gy) of a target named by a level word only (``PTV_Low``): ``{"low": 54}``.
    target_levels: Mapping[str, float] = field(default_factory=dict)


def load_protocol(path: Path) -> Protocol:
    """Load and validate a protocol file.

    Raises
    ------
    ProtocolError
        Located as ``file:line:column``, for the first problem found.
    """
    doc = load_yaml_file(path)  # bounded: never reads more than a protocol can be
    return _build(doc, doc.sha256)


def load_protocol_text(text: str, file: str = "<protocol>") -> Protocol:
    """Load and validate protocol YAML given as text (for tests and tools)."""
    return _build(load_yaml(text, file), hashlib.sha256(text.encode()).hexdigest())


# -- validation --------------------------------------------------------------------------


class _Reader:
    """Typed access to the located document with errors at the right place."""

    def __init__(self, doc: Located) -> None:
        self.doc = doc

    def mapping(
        self, value: Any, path: PathKey, allowed: Sequence[str], required: Sequence[str] = ()
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.doc.error(path, f"expected a mapping, got {_kind(value)}")
        for key in value:
            if key not in allowed:
                raise self.doc.error(
                    (*path, key),
                    f"unknown key '{key}'; allowed here: {', '.join(allowed)}",
                    key=True,
                )
        for key in required:
            if key not in value:
                raise self.doc.error(path, f"missing required key '{key}'")
        return value

    def text(
        self,
        value: Any,
        path: PathKey,
        *,
        pattern: re.Pattern[str] | None = None,
        what: str = "text",
    ) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.doc.error(path, f"expected {what}, got {_kind(value)}")
        out = str(value)
        if not out.strip():
            raise self.doc.error(path, f"expected {what}, got an empty string")
        if pattern is not None and not pattern.match(out):
            raise self.doc.error(path, f"'{out}' is not a valid {what}")
        return out

    def number(
        self, value: Any, path: PathKey, *, positive: bool = False, minimum: float | None = None
    ) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.doc.error(path, f"expected a number, got {_kind(value)}")
        out = float(value)
        if out != out or out in (float("inf"), float("-inf")):
            raise self.doc.error(path, "expected a finite number")
        if positive and out <= 0:
            raise self.doc.error(path, f"expected a positive number, got {out:g}")
        if minimum is not None and out < minimum:
            raise self.doc.error(path, f"expected a number >= {minimum:g}, got {out:g}")
        return out

    def integer(self, value: Any, path: PathKey, *, minimum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.doc.error(path, f"expected a whole number, got {_kind(value)}")
        if minimum is not None and value < minimum:
            raise self.doc.error(path, f"expected a whole number >= {minimum}, got {value}")
        return value

    def boolean(self, value: Any, path: PathKey) -> bool:
        if not isinstance(value, bool):
            raise self.doc.error(path, f"expected true or false, got {_kind(value)}")
        return value

    def texts(self, value: Any, path: PathKey, what: str = "text") -> tuple[str, ...]:
        """One text or a list of them."""
        if isinstance(value, list):
            return tuple(self.text(item, (*path, i), what=what) for i, item in enumerate(value))
        return (self.text(value, path, what=what),)

    def range(self, value: Any, path: PathKey, *, positive: bool = True) -> Range:
        """A number (exact), ``{min, max}``, or ``{value, tolerance}``."""
        if isinstance(value, dict):
            spec = self.mapping(value, path, ("min", "max", "value", "tolerance"))
            if "value" in spec:
                if "min" in spec or "max" in spec:
                    raise self.doc.error(
                        path, "give either 'value' (with 'tolerance') or 'min'/'max', not both"
                    )
                centre = self.number(spec["value"], (*path, "value"), positive=positive)
                tol = self.number(spec.get("tolerance", 0.0), (*path, "tolerance"), minimum=0.0)
                return Range(centre - tol, centre + tol)
            if "tolerance" in spec:
                raise self.doc.error((*path, "tolerance"), "'tolerance' needs 'value'", key=True)
            low = (
                self.number(spec["min"], (*path, "min"), positive=positive)
                if "min" in spec
                else None
            )
            high = (
                self.number(spec["max"], (*path, "max"), positive=positive)
                if "max" in spec
                else None
            )
            if low is None and high is None:
                raise self.doc.error(path, "a range needs 'min', 'max' or 'value'")
            if low is not None and high is not None and low > high:
                raise self.doc.error(path, f"min {low:g} is above max {high:g}")
            return Range(low, high)
        exact = self.number(value, path, positive=positive)
        return Range(exact, exact)

    def limit(self, value: Any, path: PathKey) -> Limit:
        """A number, or a mapping from fraction count to number."""
        if isinstance(value, dict):
            table: list[tuple[int, float]] = []
            for key, item in value.items():
                try:
                    fractions = int(str(key))
                except ValueError:
                    raise self.doc.error(
                        (*path, key), f"'{key}' is not a fraction count", key=True
                    ) from None
                if fractions < 1:
                    raise self.doc.error((*path, key), "fraction counts start at 1", key=True)
                table.append((fractions, self.number(item, (*path, key))))
            if not table:
                raise self.doc.error(path, "an empty limit table")
            return Limit(by_fractions=tuple(sorted(table)))
        return Limit(value=self.number(value, path))

    def metric(self, value: Any, path: PathKey) -> Metric:
        text = self.text(value, path, what="TG-263 metric such as 'D95%[Gy]'")
        try:
            return parse_metric(text)
        except MetricSyntaxError as exc:
            raise self.doc.error(path, str(exc)) from None


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return {
        dict: "a mapping",
        list: "a list",
        bool: "true/false (YAML reads yes/no/on/off as true/false: quote a word)",
        str: f"'{value}'",
        int: f"the number {value}",
        float: f"the number {value}",
    }.get(type(value), type(value).__name__)


TOP_KEYS = (
    "id",
    "title",
    "version",
    "description",
    "sources",
    "select",
    "structures",
    "facts",
    "rules",
    "decisions",
    "target_levels",
)
COMMON_RULE_KEYS = ("id", "kind", "description", "when", "unless", "source")
RULE_KEYS: dict[RuleKind, tuple[str, ...]] = {
    RuleKind.FRACTIONATION: ("schedules",),
    RuleKind.RADIOBIOLOGY: (
        "quantity",
        "alpha_beta",
        "min_gy",
        "max_gy",
        "minor_min_gy",
        "minor_max_gy",
    ),
    RuleKind.DOSE_VOLUME: (
        "structure",
        "metric",
        "max",
        "min",
        "minor_max",
        "minor_min",
        "alpha_beta",
        "reference_dose_per_fraction_gy",
    ),
    RuleKind.GEOMETRY: ("structure", "to", "min_mm", "max_mm"),
    RuleKind.TARGET_VOLUMES: ("median_fraction", "dose_region"),
    RuleKind.COVERAGE: ("structure", "metric", "min", "minor_min", "inside", "tolerance_mm"),
    RuleKind.COUNT: ("structure", "min", "max"),
    RuleKind.INTEGRITY: ("checks", "target_median_percent"),
    RuleKind.PLAN_QUALITY: ("quantity", "structure", "body", "max", "minor_max", "table"),
}


def _build(doc: Located, sha256: str) -> Protocol:
    r = _Reader(doc)
    top = r.mapping(doc.value, (), TOP_KEYS, ("id", "title", "version", "sources", "rules"))
    pid = r.text(top["id"], ("id",), pattern=ID_PATTERN, what="protocol id (a-z, 0-9, -)")
    sources_raw = r.mapping(
        top["sources"],
        ("sources",),
        tuple(str(k) for k in top["sources"]) if isinstance(top["sources"], dict) else (),
    )
    if not sources_raw:
        raise doc.error(("sources",), "list at least one source (the citation of the rules)")
    sources = {str(k): r.text(v, ("sources", k), what="citation") for k, v in sources_raw.items()}

    roles: dict[str, Role] = {}
    structures = top.get("structures", {}) or {}
    if not isinstance(structures, dict):
        raise doc.error(("structures",), f"expected a mapping of roles, got {_kind(structures)}")
    for name, spec in structures.items():
        path: PathKey = ("structures", name)
        r.text(name, path, pattern=ROLE_PATTERN, what="role name (letters, digits, _)")
        body = r.mapping(
            spec,
            path,
            ("type", "names", "aliases", "multiple", "optional", "description"),
            ("type", "names"),
        )
        try:
            role_type = RoleType(r.text(body["type"], (*path, "type")))
        except ValueError:
            raise doc.error((*path, "type"), "type must be target, oar or external") from None
        roles[name] = Role(
            name=name,
            type=role_type,
            names=r.texts(body["names"], (*path, "names"), "structure name"),
            aliases=r.texts(body.get("aliases", []), (*path, "aliases"), "alias pattern"),
            multiple=r.boolean(body.get("multiple", False), (*path, "multiple")),
            optional=r.boolean(body.get("optional", False), (*path, "optional")),
            description=str(body.get("description", "")),
        )

    def role_ref(value: Any, path: PathKey) -> str:
        name = r.text(value, path, what="structure role")
        if name not in roles:
            known = ", ".join(roles) or "none defined"
            raise doc.error(path, f"unknown structure role '{name}' (roles: {known})")
        return name

    facts: list[ProximityFact | ScheduleFact] = []
    raw_facts = top.get("facts", {}) or {}
    if not isinstance(raw_facts, dict):
        raise doc.error(("facts",), f"expected a mapping of facts, got {_kind(raw_facts)}")
    for name, spec in raw_facts.items():
        path = ("facts", name)
        r.text(name, path, pattern=ROLE_PATTERN, what="fact name")
        if name in BUILTIN_FACTS:
            raise doc.error(path, f"'{name}' is a built-in fact", key=True)
        kind = spec.get("kind") if isinstance(spec, dict) else None
        if kind == "schedule":
            body = r.mapping(
                spec,
                path,
                ("kind", "schedules", "match", "otherwise"),
                ("kind", "schedules", "match", "otherwise"),
            )
            fact: ProximityFact | ScheduleFact = ScheduleFact(
                name=name,
                schedules=_schedules(r, body["schedules"], (*path, "schedules")),
                match=r.text(body["match"], (*path, "match")),
                otherwise=r.text(body["otherwise"], (*path, "otherwise")),
            )
        else:
            body = r.mapping(
                spec,
                path,
                ("kind", "from", "to", "within_mm", "near", "far"),
                ("kind", "from", "to", "within_mm", "near", "far"),
            )
            if body["kind"] != "proximity":
                raise doc.error((*path, "kind"), "fact kinds: 'proximity', 'schedule'")
            to = body["to"] if isinstance(body["to"], list) else [body["to"]]
            fact = ProximityFact(
                name=name,
                source=role_ref(body["from"], (*path, "from")),
                targets=tuple(role_ref(t, (*path, "to", i)) for i, t in enumerate(to)),
                within_mm=r.number(body["within_mm"], (*path, "within_mm"), positive=True),
                near=r.text(body["near"], (*path, "near")),
                far=r.text(body["far"], (*path, "far")),
            )
        facts.append(fact)
    fact_values = {
        f.name: {f.near, f.far} if isinstance(f, ProximityFact) else {f.match, f.otherwise}
        for f in facts
    }

    def condition(value: Any, path: PathKey) -> Condition:
        body = r.mapping(value, path, (*fact_values, *BUILTIN_FACTS))
        required = []
        for key, allowed in body.items():
            if key in NUMERIC_FACTS and isinstance(allowed, dict):
                required.append(Requirement(key, range=r.range(allowed, (*path, key))))
                continue
            if key == "dose_per_fraction_gy":
                exact = r.number(allowed, (*path, key), positive=True)
                required.append(Requirement(key, range=Range(exact, exact)))
                continue
            if key == "fractions":
                items = allowed if isinstance(allowed, list) else [allowed]
                counts = [
                    r.integer(v, (*path, key, i) if isinstance(allowed, list) else (*path, key))
                    for i, v in enumerate(items)
                ]
                required.append(Requirement(key, values=tuple(str(n) for n in counts)))
                continue
            values = r.texts(allowed, (*path, key), "fact value")
            if key in fact_values:
                for i, v in enumerate(values):
                    if v not in fact_values[key]:
                        raise doc.error(
                            (*path, key, i) if isinstance(allowed, list) else (*path, key),
                            f"fact '{key}' takes {' or '.join(sorted(fact_values[key]))}"
                            f", not '{v}'",
                        )
            required.append(
                Requirement(key, values=tuple(v.upper() if key == "intent" else v for v in values))
            )
        return Condition(tuple(required))

    rules: list[Rule] = []
    seen: set[str] = set()
    raw_rules = top["rules"]
    if not isinstance(raw_rules, list) or not raw_rules:
        raise doc.error(("rules",), "expected a non-empty list of rules")
    for i, spec in enumerate(raw_rules):
        path = ("rules", i)
        if not isinstance(spec, dict):
            raise doc.error(path, f"expected a rule (a mapping), got {_kind(spec)}")
        try:
            kind = RuleKind(spec.get("kind"))
        except ValueError:
            kinds = ", ".join(k.value for k in RuleKind)
            raise doc.error(
                (*path, "kind") if "kind" in spec else path,
                f"unknown or missing rule kind; kinds: {kinds}",
            ) from None
        body = r.mapping(spec, path, (*COMMON_RULE_KEYS, *RULE_KEYS[kind]), ("id", "kind"))
        rid = r.text(body["id"], (*path, "id"), pattern=ID_PATTERN, what="rule id")
        if rid in seen:
            raise doc.error((*path, "id"), f"duplicate rule id '{rid}'")
        seen.add(rid)
        source = None
        if "source" in body:
            source = r.text(body["source"], (*path, "source"))
            if source not in sources:
                raise doc.error(
                    (*path, "source"), f"source '{source}' is not listed under 'sources'"
                )
        line, column = doc.where(path)
        common = {
            "id": rid,
            "kind": kind,
            "description": str(body.get("description", "")),
            "when": condition(body["when"], (*path, "when")) if "when" in body else None,
            "unless": condition(body["unless"], (*path, "unless")) if "unless" in body else None,
            "source": source,
            "where": f"{doc.file}:{line}:{column}",
        }
        rules.append(_rule(r, kind, body, path, common, role_ref))

    select = Selection()
    if "select" in top:
        body = r.mapping(
            top["select"], ("select",), ("labels", "fractions", "intent", "requires", "priority")
        )
        select = Selection(
            labels=r.texts(body.get("labels", []), ("select", "labels"), "label pattern"),
            fractions=r.range(body["fractions"], ("select", "fractions"))
            if "fractions" in body
            else None,
            intents=tuple(
                v.upper()
                for v in r.texts(body.get("intent", []), ("select", "intent"), "plan intent")
            ),
            requires=tuple(
                role_ref(v, ("select", "requires", j))
                for j, v in enumerate(body.get("requires", []) or [])
            ),
            priority=r.integer(body.get("priority", 0), ("select", "priority")),
        )
    decisions = r.texts(top.get("decisions", []), ("decisions",), "decision")
    levels: dict[str, float] = {}
    if "target_levels" in top:
        body = r.mapping(top["target_levels"], ("target_levels",), ("high", "mid", "low"))
        levels = {
            word: r.number(value, ("target_levels", word), positive=True)
            for word, value in body.items()
        }
    return Protocol(
        id=pid,
        title=r.text(top["title"], ("title",)),
        version=r.text(top["version"], ("version",), what="version"),
        sources=sources,
        select=select,
        roles=roles,
        facts=tuple(facts),
        rules=tuple(rules),
        file=doc.file,
        sha256=sha256,
        description=str(top.get("description", "")),
        decisions=decisions,
        target_levels=levels,
    )


def _schedules(r: _Reader, raw: Any, path: PathKey) -> tuple[Schedule, ...]:
    """A non-empty list of schedules ``{fractions, dose_per_fraction_gy, total_gy}``."""
    if not isinstance(raw, list) or not raw:
        raise r.doc.error(path, "expected a non-empty list of schedules")
    schedules = []
    for j, item in enumerate(raw):
        p = (*path, j)
        s = r.mapping(item, p, ("fractions", "dose_per_fraction_gy", "total_gy"), ("fractions",))
        schedules.append(
            Schedule(
                fractions=r.range(s["fractions"], (*p, "fractions")),
                dose_per_fraction_gy=r.range(
                    s["dose_per_fraction_gy"], (*p, "dose_per_fraction_gy")
                )
                if "dose_per_fraction_gy" in s
                else None,
                total_gy=r.range(s["total_gy"], (*p, "total_gy")) if "total_gy" in s else None,
            )
        )
    return tuple(schedules)


def _rule(
    r: _Reader,
    kind: RuleKind,
    body: dict[str, Any],
    path: PathKey,
    common: dict[str, Any],
    role_ref: Any,
) -> Rule:
    doc = r.doc
    if kind is RuleKind.FRACTIONATION:
        if "schedules" not in body:
            raise doc.error(path, "a fractionation rule needs a non-empty 'schedules' list")
        schedules = _schedules(r, body["schedules"], (*path, "schedules"))
        return FractionationRule(**common, schedules=tuple(schedules))
    if kind is RuleKind.RADIOBIOLOGY:
        quantity = str(body.get("quantity", "BED")).upper()
        if quantity not in ("BED", "EQD2"):
            raise doc.error((*path, "quantity"), "quantity must be BED or EQD2")
        if "min_gy" not in body and "max_gy" not in body:
            raise doc.error(path, "a radiobiology rule needs 'min_gy' or 'max_gy'")

        def opt(key: str) -> float | None:
            return r.number(body[key], (*path, key), positive=True) if key in body else None

        return RadiobiologyRule(
            **common,
            quantity=quantity,
            alpha_beta=r.number(body.get("alpha_beta", 10.0), (*path, "alpha_beta"), positive=True),
            minimum=opt("min_gy"),
            maximum=opt("max_gy"),
            minor_minimum=opt("minor_min_gy"),
            minor_maximum=opt("minor_max_gy"),
        )
    if kind is RuleKind.DOSE_VOLUME:
        for key in ("structure", "metric"):
            if key not in body:
                raise doc.error(path, f"a dose_volume rule needs '{key}'")
        if "max" not in body and "min" not in body:
            raise doc.error(path, "a dose_volume rule needs 'max' or 'min'")
        metric = r.metric(body["metric"], (*path, "metric"))
        alpha_beta = (
            r.number(body["alpha_beta"], (*path, "alpha_beta"), positive=True)
            if "alpha_beta" in body
            else None
        )
        reference = (
            r.number(
                body["reference_dose_per_fraction_gy"],
                (*path, "reference_dose_per_fraction_gy"),
                positive=True,
            )
            if "reference_dose_per_fraction_gy" in body
            else None
        )
        if reference is not None and alpha_beta is None:
            raise doc.error(
                path, "'reference_dose_per_fraction_gy' needs 'alpha_beta' for the EQD2 conversion"
            )
        if alpha_beta is not None and not (_is_dose(metric) and metric.output_unit is DoseUnit.GY):
            raise doc.error(
                (*path, "alpha_beta"),
                f"EQD2 conversion applies to dose metrics in Gy (e.g. 'Max[Gy]'), not {metric}: "
                "write the metric and its limits in Gy",
            )

        def lim(key: str) -> Limit | None:
            return r.limit(body[key], (*path, key)) if key in body else None

        return DoseVolumeRule(
            **common,
            structure=role_ref(body["structure"], (*path, "structure")),
            metric=metric,
            maximum=lim("max"),
            minimum=lim("min"),
            minor_maximum=lim("minor_max"),
            minor_minimum=lim("minor_min"),
            alpha_beta=alpha_beta,
            reference_dose_per_fraction_gy=reference,
        )
    if kind is RuleKind.GEOMETRY:
        if "structure" not in body or "to" not in body:
            raise doc.error(path, "a geometry rule needs 'structure' and 'to'")
        if "min_mm" not in body and "max_mm" not in body:
            raise doc.error(path, "a geometry rule needs 'min_mm' or 'max_mm'")
        to = body["to"] if isinstance(body["to"], list) else [body["to"]]
        return GeometryRule(
            **common,
            structure=role_ref(body["structure"], (*path, "structure")),
            others=tuple(role_ref(t, (*path, "to", j)) for j, t in enumerate(to)),
            minimum_mm=r.number(body["min_mm"], (*path, "min_mm"), minimum=0.0)
            if "min_mm" in body
            else None,
            maximum_mm=r.number(body["max_mm"], (*path, "max_mm"), minimum=0.0)
            if "max_mm" in body
            else None,
        )
    if kind is RuleKind.TARGET_VOLUMES:
        fraction = r.number(
            body.get("median_fraction", 0.9), (*path, "median_fraction"), positive=True
        )
        if fraction >= 1:
            raise doc.error((*path, "median_fraction"), "median_fraction must be below 1")
        region = None
        if "dose_region" in body:
            p = (*path, "dose_region")
            spec = r.mapping(
                body["dose_region"], p, ("high_percent", "low_percent", "margin_mm", "max_cc")
            )
            region = DoseRegionSpec(
                **{
                    key: r.number(spec[key], (*p, key), positive=True)
                    for key in ("high_percent", "low_percent", "margin_mm", "max_cc")
                    if key in spec
                }
            )
            if not region.low_percent < region.high_percent <= 100:
                raise doc.error(p, "need low_percent < high_percent <= 100")
        return TargetVolumesRule(**common, median_fraction=fraction, dose_region=region)
    if kind is RuleKind.COVERAGE:
        if "structure" not in body:
            raise doc.error(path, "a coverage rule needs 'structure'")
        has_metric = "metric" in body
        if has_metric == ("inside" in body):
            raise doc.error(
                path,
                "a coverage rule needs either 'metric' with 'min' (dose "
                "coverage) or 'inside' (containment), not both",
            )
        if has_metric and "min" not in body:
            raise doc.error(path, "a dose coverage rule needs 'min'")
        return CoverageRule(
            **common,
            structure=role_ref(body["structure"], (*path, "structure")),
            metric=r.metric(body["metric"], (*path, "metric")) if has_metric else None,
            minimum=r.number(body["min"], (*path, "min")) if "min" in body else None,
            minor_minimum=r.number(body["minor_min"], (*path, "minor_min"))
            if "minor_min" in body
            else None,
            inside=role_ref(body["inside"], (*path, "inside")) if "inside" in body else None,
            tolerance_mm=r.number(
                body.get("tolerance_mm", 1.0), (*path, "tolerance_mm"), minimum=0.0
            ),
        )
    if kind is RuleKind.COUNT:
        if "structure" not in body:
            raise doc.error(path, "a count rule needs 'structure'")
        return CountRule(
            **common,
            structure=role_ref(body["structure"], (*path, "structure")),
            minimum=r.integer(body["min"], (*path, "min"), minimum=0) if "min" in body else None,
            maximum=r.integer(body["max"], (*path, "max"), minimum=0) if "max" in body else None,
        )
    if kind is RuleKind.PLAN_QUALITY:
        return _plan_quality_rule(r, body, path, common, role_ref)
    checks = r.texts(body.get("checks", list(INTEGRITY_CHECKS)), (*path, "checks"), "check")
    for j, check in enumerate(checks):
        if check not in INTEGRITY_CHECKS:
            raise doc.error(
                (*path, "checks", j),
                f"unknown check '{check}'; checks: {', '.join(INTEGRITY_CHECKS)}",
            )
    median = (
        r.range(body["target_median_percent"], (*path, "target_median_percent"))
        if "target_median_percent" in body
        else Range(*DEFAULT_TARGET_MEDIAN_PERCENT)
    )
    if median.low is None or median.high is None:
        raise doc.error(
            (*path, "target_median_percent"),
            "give both ends: {min: PERCENT, max: PERCENT} of the prescription",
        )
    return IntegrityRule(**common, checks=checks, target_median_percent=median)


def _plan_quality_rule(
    r: _Reader, body: dict[str, Any], path: PathKey, common: dict[str, Any], role_ref: Any
) -> PlanQualityRule:
    doc = r.doc
    for key in ("quantity", "structure"):
        if key not in body:
            raise doc.error(path, f"a plan_quality rule needs '{key}'")
    quantity = r.text(body["quantity"], (*path, "quantity"))
    if quantity not in PLAN_QUALITY_QUANTITIES:
        raise doc.error(
            (*path, "quantity"), f"quantity must be one of {', '.join(PLAN_QUALITY_QUANTITIES)}"
        )
    has_table = "table" in body
    if has_table == ("max" in body):
        raise doc.error(path, "a plan_quality rule needs either 'max' or 'table', not both")
    if "minor_max" in body and has_table:
        raise doc.error((*path, "minor_max"), "give 'minor_max' in each table row", key=True)
    rows: list[QualityRow] = []
    if has_table:
        raw = body["table"]
        if not isinstance(raw, list) or not raw:
            raise doc.error((*path, "table"), "expected a non-empty list of rows")
        for j, item in enumerate(raw):
            p = (*path, "table", j)
            row = r.mapping(item, p, ("volume_cc", "max", "minor_max"), ("volume_cc", "max"))
            rows.append(
                QualityRow(
                    volume_cc=r.number(row["volume_cc"], (*p, "volume_cc"), positive=True),
                    maximum=r.number(row["max"], (*p, "max"), minimum=0.0),
                    minor_maximum=r.number(row["minor_max"], (*p, "minor_max"), minimum=0.0)
                    if "minor_max" in row
                    else None,
                )
            )
            if rows[-1].minor_maximum is not None and rows[-1].minor_maximum < rows[-1].maximum:
                raise doc.error((*p, "minor_max"), "minor_max is below max")
            if j and rows[-1].volume_cc <= rows[-2].volume_cc:
                raise doc.error((*p, "volume_cc"), "table rows must rise in volume_cc")
        if len({r_.minor_maximum is None for r_ in rows}) > 1:
            raise doc.error((*path, "table"), "give 'minor_max' in every row or in none")
    maximum = r.number(body["max"], (*path, "max"), minimum=0.0) if "max" in body else None
    minor = (
        r.number(body["minor_max"], (*path, "minor_max"), minimum=0.0)
        if "minor_max" in body
        else None
    )
    if maximum is not None and minor is not None and minor < maximum:
        raise doc.error((*path, "minor_max"), "minor_max is below max")
    return PlanQualityRule(
        **common,
        quantity=quantity,
        structure=role_ref(body["structure"], (*path, "structure")),
        body=role_ref(body["body"], (*path, "body")) if "body" in body else None,
        maximum=maximum,
        minor_maximum=minor,
        table=tuple(rows),
    )


def _is_dose(metric: Metric) -> bool:
    return metric.kind in (
        MetricKind.DOSE_AT_VOLUME,
        MetricKind.DOSE_AT_COLDEST_VOLUME,
        MetricKind.MEAN,
        MetricKind.MAX,
        MetricKind.MIN,
    )
