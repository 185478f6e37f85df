"""Matching protocol structure roles to the ROIs of a structure set.

Each role lists TG-263 default names and case-insensitive alias patterns (shell-style:
``*`` any text, ``?`` one character). An institution alias file adds patterns per role.
For a single-ROI role exact names win over institution aliases, which win over protocol
aliases, and within each the earlier pattern wins; when one pattern matches several ROIs
the role is ambiguous and reported, never guessed. A ``multiple`` role takes every match.
ROIs whose name starts with ``z`` (TG-263: not for evaluation) match only when a pattern
asks for the ``z`` explicitly.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rtcheck.constraints.protocol import Protocol, Role
from rtcheck.constraints.yamlsource import load_yaml_file
from rtcheck.errors import ProtocolError


@dataclass
class RoleMatch:
    """The ROI names matched to each role, and what could not be matched."""

    matched: dict[str, list[str]] = field(default_factory=dict)
    how: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    ambiguous: dict[str, list[str]] = field(default_factory=dict)


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
    protocol: Protocol, roi_names: Sequence[str], aliases: Mapping[str, Sequence[str]] | None = None
) -> RoleMatch:
    """Match every role of ``protocol`` against the ROI names of a structure set."""
    result = RoleMatch()
    extra = aliases or {}
    for role in protocol.roles.values():
        names, how = _match(role, roi_names, tuple(extra.get(role.name, ())))
        if not names:
            result.missing.append(role.name)
            continue
        if len(names) > 1 and not role.multiple:
            result.ambiguous[role.name] = names
            continue
        result.matched[role.name] = names
        result.how[role.name] = how
    return result


def _match(
    role: Role, roi_names: Sequence[str], institution: tuple[str, ...]
) -> tuple[list[str], str]:
    """ROIs matching a role, and how (the tier of the first hit).

    A single-ROI role stops at the first pattern that hits, tier by tier (exact names,
    institution aliases, protocol aliases). A role that may hold several ROIs collects
    the hits of every pattern of every tier, so an exact ``PTV`` does not hide ``PTV2``.
    """
    folded = [(n, n.casefold().strip()) for n in roi_names]
    hits: list[str] = []
    how = ""
    for label, patterns, exact in (
        ("name", role.names, True),
        ("institution alias", institution, False),
        ("alias", role.aliases, False),
    ):
        for pattern in patterns:
            p = pattern.casefold().strip()
            found = [
                original
                for original, name in folded
                if original not in hits
                and not (name.startswith("z") and not p.startswith("z"))
                and ((name == p) if exact else fnmatch.fnmatchcase(name, p))
            ]
            if found:
                hits.extend(found)
                how = how or label
                if not role.multiple:
                    return hits, how
    return hits, how
