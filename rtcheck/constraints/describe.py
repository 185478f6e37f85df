"""A protocol in words, for ``rtcheck protocols show``."""

from __future__ import annotations

from rtcheck.constraints.protocol import (
    CountRule,
    CoverageRule,
    DoseVolumeRule,
    FractionationRule,
    GeometryRule,
    IntegrityRule,
    PlanQualityRule,
    Protocol,
    RadiobiologyRule,
    Rule,
    ScheduleFact,
    TargetVolumesRule,
)


def describe_protocol(protocol: Protocol) -> str:
    """A readable summary: identity, selection, roles, facts, rules with sources."""
    lines = [
        f"{protocol.id} v{protocol.version}: {protocol.title}",
        f"file: {protocol.file}",
        f"sha256: {protocol.sha256}",
    ]
    if protocol.description:
        lines += ["", protocol.description.strip()]
    s = protocol.select
    criteria = []
    if s.labels:
        criteria.append(f"plan label like {', '.join(s.labels)}")
    if s.fractions is not None:
        criteria.append(f"{s.fractions} fractions")
    if s.intents:
        criteria.append(f"intent {', '.join(s.intents)}")
    if s.requires:
        criteria.append(f"structures {', '.join(s.requires)}")
    lines += [
        "",
        "Selected by --protocol auto when: "
        + ("; ".join(criteria) or "never")
        + f" (priority {s.priority})",
        "",
        "Structure roles:",
    ]
    for role in protocol.roles.values():
        flags = [
            f for f, on in (("several allowed", role.multiple), ("optional", role.optional)) if on
        ]
        lines.append(
            f"  {role.name:<14} {role.type.value:<8} names {', '.join(role.names) or '-'}"
            + (f"; aliases {', '.join(role.aliases)}" if role.aliases else "")
            + (f" ({', '.join(flags)})" if flags else "")
        )
        if role.description:
            lines.append(f"      {role.description.strip()}")
    if protocol.facts:
        lines += ["", "Facts:"]
        for f in protocol.facts:
            if isinstance(f, ScheduleFact):
                schedules = "; ".join(str(s) for s in f.schedules)
                lines.append(
                    f"  {f.name} = {f.match} when the course (its fractions, its highest "
                    f"dose per fraction, its total) fits {schedules}, else {f.otherwise}"
                )
                continue
            lines.append(
                f"  {f.name} = {f.near} when {f.source} lies within {f.within_mm:g} mm "
                f"of any of {', '.join(f.targets)}, else {f.far}"
            )
    lines += ["", "Rules:"]
    for rule in protocol.rules:
        when = f" [when {rule.when}]" if rule.when else ""
        when += f" [unless {rule.unless}]" if rule.unless else ""
        source = f" (source: {rule.source})" if rule.source else ""
        lines.append(f"  {rule.id}: {_what(rule)}{when}{source}")
        if rule.description:
            lines.append(f"      {rule.description.strip()}")
    if protocol.decisions:
        lines += ["", "Decisions:"]
        lines += [f"  - {d}" for d in protocol.decisions]
    lines += ["", "Sources:"]
    lines += [f"  {k}: {v}" for k, v in protocol.sources.items()]
    return "\n".join(lines)


def _what(rule: Rule) -> str:
    if isinstance(rule, FractionationRule):
        return "schedule one of " + "; ".join(str(s) for s in rule.schedules)
    if isinstance(rule, RadiobiologyRule):
        parts = []
        if rule.minimum is not None:
            parts.append(f">= {rule.minimum:g} Gy")
        if rule.maximum is not None:
            parts.append(f"<= {rule.maximum:g} Gy")
        minor = [
            f"minor from {v:g}" for v in (rule.minor_minimum, rule.minor_maximum) if v is not None
        ]
        return f"{rule.quantity}{rule.alpha_beta:g} {' and '.join(parts)}" + (
            f" ({', '.join(minor)})" if minor else ""
        )
    if isinstance(rule, DoseVolumeRule):
        parts = []
        if rule.maximum is not None:
            parts.append(f"<= {rule.maximum}")
        if rule.minimum is not None:
            parts.append(f">= {rule.minimum}")
        if rule.minor_maximum is not None:
            parts.append(f"(variation <= {rule.minor_maximum})")
        if rule.minor_minimum is not None:
            parts.append(f"(variation >= {rule.minor_minimum})")
        conv = (
            f"; limits in {rule.reference_dose_per_fraction_gy:g} Gy fractions, converted "
            f"with EQD2 a/b {rule.alpha_beta:g}"
            if rule.reference_dose_per_fraction_gy
            else f"; other fractionations converted with EQD2 a/b {rule.alpha_beta:g}"
            if rule.alpha_beta
            else ""
        )
        return f"{rule.structure} {rule.metric} {' '.join(parts)}{conv}"
    if isinstance(rule, GeometryRule):
        return f"distance {rule.structure} to {', '.join(rule.others)} in mm " + " ".join(
            p
            for p in (
                f">= {rule.minimum_mm:g}" if rule.minimum_mm is not None else "",
                f"<= {rule.maximum_mm:g}" if rule.maximum_mm is not None else "",
            )
            if p
        )
    if isinstance(rule, TargetVolumesRule):
        return "no elective (prophylactic) nodal target volume"
    if isinstance(rule, CoverageRule):
        if rule.inside:
            return (
                f"every {rule.structure} inside a {rule.inside} "
                f"(tolerance {rule.tolerance_mm:g} mm)"
            )
        minor_text = (
            f" (minor from {rule.minor_minimum:g})" if rule.minor_minimum is not None else ""
        )
        return f"{rule.structure} {rule.metric} >= {rule.minimum:g}{minor_text}"
    if isinstance(rule, CountRule):
        bounds = [
            f">= {rule.minimum}" if rule.minimum is not None else "",
            f"<= {rule.maximum}" if rule.maximum is not None else "",
        ]
        return f"number of {rule.structure} " + " and ".join(b for b in bounds if b)
    if isinstance(rule, IntegrityRule):
        return "integrity: " + ", ".join(rule.checks)
    if isinstance(rule, PlanQualityRule):
        unit = {"D2cm": " % of the prescription", "max_in_target": " mm outside"}.get(
            rule.quantity, ""
        )
        what = f"{rule.structure} {rule.quantity}"
        if rule.table:
            table = "; ".join(
                f"{row.volume_cc:g} cc: <= {row.maximum:g}"
                + (f" (minor <= {row.minor_maximum:g})" if row.minor_maximum is not None else "")
                for row in rule.table
            )
            return f"{what}{unit} by target volume, interpolated: {table}"
        minor_text = f" (minor <= {rule.minor_maximum:g})" if rule.minor_maximum is not None else ""
        return f"{what} <= {rule.maximum:g}{unit}{minor_text}"
    return rule.kind.value
