"""Matching protocol structure roles to the ROIs of a structure set.

Each role lists TG-263 default names and case-insensitive alias patterns (shell-style:
``*`` any text, ``?`` one character). An institution alias file adds patterns per role.
For a single-ROI role exact names win over institution aliases, which win over protocol
aliases, and within each the earlier pattern wins; when one pattern matches several ROIs
the role is ambiguous and reported, never guessed. A ``multiple`` role takes every match.
ROIs whose name starts with ``z`` (TG-263: not for evaluation) match only when a pattern
asks for the ``z`` explicitly.

Decisions (issue 10: no plan passes on a structure that was never looked at)
----------------------------------------------------------------------------
1. **Spelling.** Names and patterns are compared by their normalised keys
   (:func:`rtcheck.constraints.roinames.name_key`): case, the separators ``_ - . space``, the
   TG-263 spellings ``plex``/``constrict``/``musc`` and the abbreviation ``BP`` do not
   matter. ``Spinal-Cord`` *is* ``SpinalCord`` (reported as matched by ``name variant``).
2. **Not this role** (one notion for every role, reported in ``excluded``): an ROI that a
   name or pattern matches is still not evaluated as the role when

   * it has **no volume**: a POINT ROI, an ROI without contours or with degenerate contours
     only (``ptv4`` as a point is not a lesion and not an empty-structure failure);
   * for a **target** role, its name is a helper, derived, union or previous-course
     structure (:func:`rtcheck.constraints.targets.parse_target_name`: ``PTV1_ring``,
     ``PTV1_WALL``, ``PTV1_opt``, ``PTV-5mm``, ``PTV 1 AND 2``, ``PTV1+PTV2``, ``PTV_ALL``,
     ``GTV_old``, ``zPTV``): a ring's low coverage is no coverage failure, a union is no
     lesion, an old GTV does not make a lesion central;
   * for an **organ** role matched by a pattern (never by its exact name), its name is a PRV,
     margin expansion, optimisation helper or previous-course structure
     (:func:`rtcheck.constraints.roinames.organ_exclusion`): ``SpinalCord_PRV`` is not the
     cord;
   * for an **organ** role matched by a pattern, its name is a *part* of the organ (an organ
     minus a target or another structure, ``out``/``minus``/``excl``/``crop``:
     :func:`rtcheck.constraints.roinames.organ_subset`; ``Larynx-PTV``,
     ``Constrictors_Out``): the hottest part was cut away, so its mean, ``D<x>cc`` and
     maximum are below the organ's. Unless the matching pattern spells the subtraction
     itself, wildcards aside (sabr-lung's ``Lungs-GTV*``: the protocol's choice for a
     cold-volume limit; ``Larynx-*`` spells nothing), it is a candidate (4.).
3. **Laterality.** An organ role not filled by its names and patterns takes the ROIs whose
   name *without its side word* (``_L``, ``_R``, ``_Lt``, ``Left``...) matches it and that no
   other role claims by name or pattern (``Lung_L`` stays with a ``Lung_L`` role): a single
   ``Chestwall`` role takes ``Chestwall_L``; with both sides contoured it takes both and each
   is evaluated against the limit (TG-101's chest-wall, rib and plexus limits are for the
   organ next to the target). Sides fill a role only when every rule on it passes the
   stand-in test of 4. (maximum-like per-organ limits) or the role's own names are one side
   each (``Glnd_Submand_L``/``_R``); a critical-volume, mean or percent limit is on both
   sides together, so the sides are candidates (``Kidney_Cortex_L`` for ``RenalCortex``).
4. **Stand-ins.** An organ role still unfilled looks for ROIs that *resemble* it: the same
   organ name once PRV, helper, margin and side words are removed (``SpinalCord_PRV``,
   ``zSpinalCord``, ``Cord_opt``), an ROI excluded under 2. or 3., an anatomical structure
   known to contain the organ (the spinal canal or thecal sac for the cord,
   :data:`CONTAINERS`), or a structure that only resembles it (a whole kidney for the renal
   cortex, a bowel bag for the small bowel or colon, :data:`RESEMBLES`: always a candidate).

   * A **superset** (a PRV or margin expansion of the organ, or a containing structure)
     fills the role when every rule on the role can only get stricter on a larger
     structure: maximum limits on ``Max``, ``D<x>cc`` or ``V<x>[cc]`` (a superset's hottest
     ``x`` cc are at least as hot, its volume above a dose at least as large), minimum
     distances, and proximity facts (a larger organ is nearer: *central* for sabr-lung).
     The report says which ROI stands in and why it is conservative.
   * Anything else (a helper, a previous course, a superset under a mean-dose or percent
     limit) is a **candidate**: the role stays missing, but its rules are evaluated even
     when the role is optional and come out ``not_evaluated`` naming the candidate, so the
     verdict is not ``pass``. Contour the organ, or map the ROI with ``--aliases`` when it
     really is the organ.

   Targets get no stand-ins: a missing target role with a candidate (a ring, a point) is
   ``not_evaluated`` in the same way.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rtcheck.constraints.metrics import MetricKind, VolumeUnit
from rtcheck.constraints.protocol import (
    DoseVolumeRule,
    GeometryRule,
    Protocol,
    Role,
    RoleType,
)
from rtcheck.constraints.roinames import (
    Exclusion,
    core_key,
    fold,
    name_key,
    organ_exclusion,
    organ_subset,
    pattern_key,
    split_side,
)
from rtcheck.constraints.targets import parse_target_name
from rtcheck.constraints.yamlsource import load_yaml_file
from rtcheck.errors import ProtocolError

#: Structures known to contain an organ, by the organ's key: they may stand in for it
#: (decision 4). The spinal canal (TG-263 ``SpinalCanal``) and the thecal sac contain the
#: cord; they are the usual surrogate on spine SABR (e.g. RTOG 0631 allows the thecal sac).
CONTAINERS: dict[str, tuple[str, ...]] = {
    "spinalcord": ("spinalcanal", "canalspinal", "canalmedullaire", "thecalsac", "canal"),
}

#: Structures that *resemble* an organ without being it or containing it for sure, by the
#: organ's key, with what they are: they never fill the role (not even under maximum limits)
#: but are its candidates, so its rules come out ``not_evaluated`` naming them instead of
#: being skipped (decision 4). Keys are compared with the ROI's :func:`core_key` (side, PRV
#: and helper words removed: ``Kidney_L`` and ``Rein G`` give ``kidney``/``rein``).
RESEMBLES: dict[str, tuple[tuple[str, ...], str]] = {
    "kidneyscortex": (
        ("kidney", "kidneys", "kidneyboth", "kidneysboth", "rein", "reins", "renal"),
        "a whole kidney, not the renal cortex the limit is written for",
    ),
    "bowelsmall": (
        ("bowel", "bowels", "bowelbag", "bowelsbag", "bag", "intestin", "intestins", "sacdigestif"),
        "a bowel bag, not the small bowel itself",
    ),
    "colon": (
        ("bowel", "bowels", "bowelbag", "bowelsbag", "bag", "intestin", "intestins", "sacdigestif"),
        "a bowel bag, not the colon itself",
    ),
}

#: How a stand-in is described in the report, by kind.
_STAND_IN_WHY = {
    "prv": "a PRV or margin expansion contains the organ",
    "container": "it contains the organ",
}


@dataclass(frozen=True)
class StandIn:
    """An ROI that fills an uncontoured organ role conservatively (decision 4).

    Attributes
    ----------
    roi
        The ROI name.
    role
        The role it stands in for.
    note
        The sentence for the report: what stands in for what, and why it is conservative.
    """

    roi: str
    role: str
    note: str


@dataclass
class RoleMatch:
    """The ROI names matched to each role, and what could not be matched.

    Attributes
    ----------
    matched
        ROI names by role.
    how
        How each matched role was matched (``name``, ``name variant``, ``institution
        alias``, ``alias``, ``laterality variant``, ``stand-in``).
    missing
        Roles no ROI fills.
    ambiguous
        Single-ROI roles several ROIs match, with the ROIs.
    excluded
        ROIs a role's names or patterns match, or that resemble a role, but that are not
        evaluated as it, with the reason (decision 2 and 4 of the module notes).
    candidates
        For a missing role, the ROIs that resemble it: its rules are not skipped but not
        evaluated, naming them.
    stand_ins
        ROIs filling an organ role in place of the organ (decision 4).
    notes
        Per role, what the report should say about how it was filled (both sides...).
    """

    matched: dict[str, list[str]] = field(default_factory=dict)
    how: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    ambiguous: dict[str, list[str]] = field(default_factory=dict)
    excluded: list[Exclusion] = field(default_factory=list)
    candidates: dict[str, list[Exclusion]] = field(default_factory=dict)
    stand_ins: list[StandIn] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)

    def stand_in_for(self, roi: str) -> StandIn | None:
        """The stand-in record of an ROI, if it fills a role as a stand-in."""
        return next((s for s in self.stand_ins if s.roi == roi), None)


def load_aliases(path: Path) -> dict[str, tuple[str, ...]]:
    """Read an institution alias file: ``ROLE: [pattern, ...]`` in YAML.

    Raises
    ------
    ProtocolError
        Located as ``file:line:column`` when the file is not a mapping of lists of text.
    """
    doc = load_yaml_file(path)
    if not isinstance(doc.value, dict):
        raise doc.error((), "an alias file is a mapping: ROLE: [pattern, ...]")
    out: dict[str, tuple[str, ...]] = {}
    for role, patterns in doc.value.items():
        items = patterns if isinstance(patterns, list) else [patterns]
        for i, item in enumerate(items):
            if not isinstance(item, str) or not item.strip():
                where = (role, i) if isinstance(patterns, list) else (role,)
                raise doc.error(where, f"alias patterns are text, got {item!r}")
        out[str(role)] = tuple(str(i) for i in items)
    return out


def aliases_for(
    path: str | Path | None, protocol: Protocol | None
) -> dict[str, tuple[str, ...]] | None:
    """The alias file a command was given, read and, for a fixed protocol, checked.

    Parameters
    ----------
    path
        The ``--aliases`` file, or None.
    protocol
        The protocol every plan is checked against, or None for ``auto`` (the roles are
        then checked plan by plan, once the protocol is chosen).

    Returns
    -------
    dict or None
        ``ROLE: patterns``, or None without a file.

    Raises
    ------
    ProtocolError
        The file cannot be read as an alias file, or names a role the protocol lacks.
    """
    if path is None:
        return None
    aliases = load_aliases(Path(path))
    if protocol is not None:
        check_alias_roles(aliases, protocol, str(path))
    return aliases


def check_alias_roles(aliases: Mapping[str, Sequence[str]], protocol: Protocol, file: str) -> None:
    """Refuse alias entries for roles the protocol does not define."""
    unknown = [r for r in aliases if r not in protocol.roles]
    if unknown:
        raise ProtocolError(
            f"alias file names role(s) {', '.join(unknown)} that protocol '{protocol.id}' "
            f"does not define (roles: {', '.join(protocol.roles)})",
            file,
            1,
            1,
        )


def match_roles(
    protocol: Protocol,
    roi_names: Sequence[str],
    aliases: Mapping[str, Sequence[str]] | None = None,
    *,
    no_volume: Mapping[str, str] | None = None,
) -> RoleMatch:
    """Match every role of ``protocol`` against the ROI names of a structure set.

    Parameters
    ----------
    protocol
        The protocol whose roles are filled.
    roi_names
        The structure set's ROI names.
    aliases
        Institution alias patterns by role, added to the protocol's.
    no_volume
        ROIs without a volume, with what they are (``"POINT ROI"``, ``"no contours"``):
        never evaluated as any role.

    Returns
    -------
    RoleMatch
        The decisions of the module notes, each exclusion and stand-in with its reason.
    """
    result = RoleMatch()
    extra = aliases or {}
    empty = no_volume or {}
    direct: dict[str, tuple[list[str], str]] = {}
    for role in protocol.roles.values():
        institution = tuple(extra.get(role.name, ()))

        def accept(roi: str, how: str, pattern: str, role: Role = role) -> Exclusion | None:
            return _exclusion(role, roi, how, empty, pattern, roi_names)

        names, how, excluded = _match(role, roi_names, institution, accept)
        result.excluded.extend(excluded)
        direct[role.name] = (names, how)
    claimed = {n for names, _ in direct.values() for n in names}
    for role in protocol.roles.values():
        names, how = direct[role.name]
        institution = tuple(extra.get(role.name, ()))
        sides: list[Exclusion] = []
        if role.type is RoleType.OAR and (not names or role.multiple):
            lateral = _lateral(role, roi_names, institution, claimed, names, empty, result)
            unsafe = _unsafe_for_superset(protocol, role.name) if lateral else ""
            if lateral and unsafe and not _sided(role):
                sides = [
                    Exclusion(
                        roi,
                        role.name,
                        f"not {role.name}: one side only, and a limit on {role.name} such as "
                        f"{unsafe} is for both sides together (contour them as one structure)",
                    )
                    for roi in lateral
                ]
            elif lateral:
                how = how or "laterality variant"
                names = names + lateral
                if len(lateral) > 1 and not role.multiple:
                    result.notes[role.name] = (
                        f"{', '.join(lateral)}: both sides of {role.name}, each evaluated "
                        "against the limit"
                    )
        if not names:
            result.excluded.extend(sides)
            names, how = _stand_ins(protocol, role, roi_names, institution, empty, result)
        if not names:
            result.missing.append(role.name)
            continue
        if len(names) > 1 and not role.multiple and how not in ("laterality variant", "stand-in"):
            result.ambiguous[role.name] = names
            continue
        result.matched[role.name] = names
        result.how[role.name] = how
    return result


def _sided(role: Role) -> bool:
    """A role whose own names are one side each (``Glnd_Submand_L``, ``Glnd_Submand_R``):
    its limits are per side by design, so a side ROI is one of its organs."""
    return any(split_side(n)[1] is not None for n in role.names)


def _exclusion(
    role: Role,
    roi: str,
    how: str,
    empty: Mapping[str, str],
    pattern: str = "",
    roi_names: Sequence[str] = (),
) -> Exclusion | None:
    """Why ``roi``, matched to ``role`` by ``how`` (through ``pattern``), is not evaluated as
    it (decision 2)."""
    if roi in empty:
        what = "a target" if role.type is RoleType.TARGET else role.name
        return Exclusion(roi, role.name, f"not {what}: no volume ({empty[roi]})")
    if role.type is RoleType.TARGET:
        parsed = parse_target_name(roi)
        if parsed is not None and parsed.helper:
            return Exclusion(roi, role.name, f"not a target: {parsed.helper_reason}")
        return None
    if how in ("name", "name variant"):
        return None
    found = organ_exclusion(roi)
    if found is not None:
        return Exclusion(roi, role.name, f"not {role.name}: {found[1]}")
    part = organ_subset(roi, roi_names)
    if part is not None and not _spells_subtraction(pattern):
        return Exclusion(
            roi,
            role.name,
            f"not {role.name}: {part}, its hottest part may be cut away "
            f"(lower mean, D<x>cc and maximum than {role.name}'s)",
        )
    return None


def _spells_subtraction(pattern: str) -> bool:
    """The pattern itself names an organ part (``Lungs-GTV``, ``Liver_PTV*``), wildcards and
    character classes aside: the protocol chose that part on purpose (decision 2)."""
    literal = re.sub(r"\[[^\]]*\]|[*?]", "", pattern)
    return bool(literal) and organ_subset(literal) is not None


def _match(
    role: Role,
    roi_names: Sequence[str],
    institution: tuple[str, ...],
    accept: Callable[[str, str, str], Exclusion | None] | None = None,
) -> tuple[list[str], str, list[Exclusion]]:
    """ROIs matching a role, how (the tier of the first hit), and the matches excluded.

    A single-ROI role stops at the first pattern that hits, tier by tier (exact names,
    institution aliases, protocol aliases); an ROI that ``accept`` excludes is no hit. A
    role that may hold several ROIs collects the hits of every pattern of every tier, so
    an exact ``PTV`` does not hide ``PTV2``.
    """
    keyed = [(n, fold(n), name_key(n)) for n in roi_names]
    if role.type is RoleType.TARGET:
        keyed = [(n, *_target_part(n, f, k)) for n, f, k in keyed]
    hits: list[str] = []
    excluded: dict[str, Exclusion] = {}
    how = ""
    for label, patterns, exact in (
        ("name", role.names, True),
        ("institution alias", institution, False),
        ("alias", role.aliases, False),
    ):
        for pattern in patterns:
            p = fold(pattern)
            pk = pattern_key(pattern) if not exact else name_key(pattern)
            found: list[str] = []
            for original, folded, key in keyed:
                if original in hits or original in excluded:
                    continue
                if folded.startswith("z") and not p.startswith("z"):
                    continue
                if exact:
                    if key != pk:
                        continue
                    tier = "name" if folded == p else "name variant"
                elif fnmatch.fnmatchcase(folded, p) or fnmatch.fnmatchcase(key, pk):
                    tier = label
                else:
                    continue
                reason = accept(original, tier, pattern) if accept is not None else None
                if reason is not None:
                    excluded[original] = reason
                    continue
                found.append(original)
                how = how or tier
            if found:
                hits.extend(found)
                if not role.multiple:
                    return hits, how, list(excluded.values())
    return hits, how, list(excluded.values())


def _target_part(name: str, folded: str, key: str) -> tuple[str, str]:
    """A target name without its site prefix (``H&N PTV_70Gy`` → ``ptv_70gy``), so the
    role's patterns (``PTV*``) see the target part; other names unchanged."""
    parsed = parse_target_name(name)
    if parsed is None or parsed.site is None:
        return folded, key
    rest = folded[len(fold(parsed.site)) :].strip()
    return rest, name_key(rest)


def _lateral(
    role: Role,
    roi_names: Sequence[str],
    institution: tuple[str, ...],
    claimed: set[str],
    already: Sequence[str],
    empty: Mapping[str, str],
    result: RoleMatch,
) -> list[str]:
    """ROIs that are one side of the role's organ and that no role claims (decision 3)."""
    out = []
    multiple = Role(role.name, role.type, role.names, role.aliases, multiple=True)
    for roi in roi_names:
        base, side = split_side(roi)
        if side is None or roi in claimed or roi in already:
            continue
        hits, _, _ = _match(multiple, [base], institution)
        if not hits:
            continue
        reason = _exclusion(role, roi, "laterality variant", empty, "", roi_names)
        if reason is not None:
            result.excluded.append(reason)
            continue
        out.append(roi)
    return out


def _resembles(role: Role, roi: str, institution: tuple[str, ...]) -> str | None:
    """``"same"`` when ``roi`` names the role's organ under helper words, ``"container"``
    when it is a structure known to contain it, ``"related"`` when it only resembles it
    (:data:`RESEMBLES`), else None."""
    core = core_key(roi)
    if not core:
        return None
    keys = [name_key(n) for n in role.names]
    patterns = [pattern_key(p) for p in (*institution, *role.aliases)]
    if core in keys or any(fnmatch.fnmatchcase(core, p) for p in patterns):
        return "same"
    if any(core in CONTAINERS.get(k, ()) for k in keys):
        return "container"
    if any(core in RESEMBLES.get(k, ((), ""))[0] for k in keys):
        return "related"
    return None


def _stand_ins(
    protocol: Protocol,
    role: Role,
    roi_names: Sequence[str],
    institution: tuple[str, ...],
    empty: Mapping[str, str],
    result: RoleMatch,
) -> tuple[list[str], str]:
    """Fill an unmatched role with conservative stand-ins, or record candidates (decision 4)."""
    already = {e.roi: e for e in result.excluded if e.role == role.name}
    supersets: list[tuple[str, str]] = []
    others: list[Exclusion] = list(already.values())
    for roi in roi_names if role.type is RoleType.OAR else ():
        kind = _resembles(role, roi, institution)
        if kind is None:
            continue
        if roi in already:
            found = organ_exclusion(roi)
            if roi not in empty and found is not None and found[0] == "prv":
                supersets.append((roi, "prv"))
                others.remove(already[roi])
            continue
        if roi in empty:
            others.append(Exclusion(roi, role.name, f"not {role.name}: no volume ({empty[roi]})"))
            continue
        found = organ_exclusion(roi)
        if kind == "related":
            core = core_key(roi)
            what = next(w for k, (c, w) in RESEMBLES.items() if k in _keys(role) and core in c)
            others.append(Exclusion(roi, role.name, f"not {role.name}: {what}"))
        elif kind == "container":
            supersets.append((roi, "container"))
        elif found is not None and found[0] == "prv":
            supersets.append((roi, "prv"))
        elif found is not None:
            others.append(Exclusion(roi, role.name, f"not {role.name}: {found[1]}"))
        else:
            others.append(Exclusion(roi, role.name, f"resembles {role.name}"))
    unsafe = _unsafe_for_superset(protocol, role.name)
    if supersets and not unsafe:
        for roi, kind in supersets:
            note = (
                f"{roi} stands in for the uncontoured {role.name}: {_STAND_IN_WHY[kind]}, so "
                f"its dose is at least the organ's for every limit on {role.name} "
                "(conservative)"
            )
            result.stand_ins.append(StandIn(roi, role.name, note))
        filled = {roi for roi, _ in supersets}
        result.excluded = [
            e for e in result.excluded if not (e.role == role.name and e.roi in filled)
        ]
        result.notes[role.name] = "; ".join(s.note for s in result.stand_ins if s.role == role.name)
        return [roi for roi, _ in supersets], "stand-in"
    for roi, kind in supersets:
        others.append(
            Exclusion(
                roi,
                role.name,
                f"not {role.name}: {_STAND_IN_WHY[kind]} but is not conservative for {unsafe}",
            )
        )
    if others:
        result.candidates[role.name] = others
        for e in others:
            if e.roi not in already:
                result.excluded.append(e)
    return [], ""


def _keys(role: Role) -> list[str]:
    return [name_key(n) for n in role.names]


def _unsafe_for_superset(protocol: Protocol, role: str) -> str:
    """The first rule on ``role`` a larger structure could pass wrongly, or ``""``."""
    for rule in protocol.rules:
        if isinstance(rule, DoseVolumeRule):
            if rule.structure != role:
                continue
            metric = rule.metric
            safe = (
                metric is not None
                and rule.minimum is None
                and rule.minor_minimum is None
                and (
                    metric.kind is MetricKind.MAX
                    or (
                        metric.kind is MetricKind.DOSE_AT_VOLUME
                        and metric.parameter_unit is VolumeUnit.CC
                    )
                    or (
                        metric.kind is MetricKind.VOLUME_AT_DOSE
                        and metric.output_unit is VolumeUnit.CC
                    )
                )
            )
            if not safe:
                return f"rule {rule.id} ({metric})"
        elif isinstance(rule, GeometryRule):
            if role in (rule.structure, *rule.others) and rule.maximum_mm is not None:
                return f"rule {rule.id} (a maximum distance)"
        elif role in _referenced(rule):
            return f"rule {rule.id} ({rule.kind.value})"
    return ""


def _referenced(rule: object) -> set[str]:
    """Every role name a rule of any kind refers to (text fields and tuples of text)."""
    out: set[str] = set()
    for name in ("structure", "inside", "others", "structures", "target", "targets"):
        value = getattr(rule, name, None)
        if isinstance(value, str):
            out.add(value)
        elif isinstance(value, tuple):
            out.update(v for v in value if isinstance(v, str))
    return out
