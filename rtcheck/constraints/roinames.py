"""Structure (ROI) names: normalised keys, laterality and helper structures.

The bottom of the structure-name modules: :mod:`rtcheck.constraints.targets` (what a target
name says) and :mod:`rtcheck.constraints.structures` (which ROI fills which protocol role)
both import from here; this module imports nothing from rtcheck.

Normalisation (:func:`name_key`, :func:`pattern_key`)
-----------------------------------------------------
Two names are the same structure when their *keys* are equal. A key is the name folded to
lower case with the separators ``_``, ``-``, ``.`` and white space removed
(``Spinal-Cord``, ``Spinal_Cord``, ``spinal cord`` and ``SpinalCord`` are one key), with the
TG-263 spellings of a few words restored (``plexus`` → ``plex``, ``constrictor``/``constric``
→ ``constrict``, ``muscle`` → ``musc``, ``oesophag`` → ``esophag``) and a few common
abbreviations of a whole word expanded (``BP`` → ``BrachialPlex``). Alias patterns are keyed
the same way outside their ``[...]`` character classes, so ``PTV [0-9]*`` still means a
digit after ``PTV``.

Laterality (:func:`split_side`)
-------------------------------
TG-263 writes the side as a last word ``_L``/``_R``; real plans also write ``_Lt``/``_Rt``,
``Left``/``Right`` and put it first (``L_Parotid``). A side needs a separator: ``LungL`` is not
split (TG-263 forbids it, and ``...l`` ends many words).

Helper structures of organs (:func:`organ_exclusion`)
-----------------------------------------------------
An ROI whose name carries an organ's name is not that organ when it is

* a **planning organ-at-risk volume** or margin expansion (``SpinalCord_PRV``,
  ``PRV_Brainstem``, ``SpinalCord_PRV5``, ``Cord+3mm``): a *superset* of the organ (kind
  ``"prv"``);
* an **optimisation helper** or note: ``z`` prefix (TG-263: not for evaluation), the words
  ``opt``/``optim*``, ``ring``, ``avoid``/``avd``, ``help``/``helper``/``hlp``,
  ``tmp``/``temp``, ``dummy``, ``overlap``/``ovlp`` (kind ``"helper"``);
* a **previous course**: ``old``, ``prev``, ``previous``, ``prior`` (kind ``"previous"``).

``wall``, ``shell`` and the union words (``total``, ``all``...) are helper words for targets
(:mod:`rtcheck.constraints.targets`) but not for organs: ``Chest_Wall``, ``Bladder_Wall`` and
``Lungs_Total`` are organs. An organ minus a target (``Lungs-GTV``) is not excluded here: a
protocol that accepts it says so with an alias.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, TypedDict

__all__ = [
    "ORGAN_HELPER_WORDS",
    "SIDES",
    "TARGET_HELPER_WORDS",
    "Exclusion",
    "ExclusionFact",
    "OrganExclusionKind",
    "core_key",
    "name_key",
    "organ_exclusion",
    "pattern_key",
    "split_side",
]

OrganExclusionKind = Literal["prv", "helper", "previous"]

#: Side words (lower case) and the side they name.
SIDES: dict[str, str] = {
    "l": "L",
    "lt": "L",
    "left": "L",
    "r": "R",
    "rt": "R",
    "right": "R",
}

_OPTIMISATION = (
    "opt",
    "ring",
    "avoid",
    "avd",
    "help",
    "helper",
    "hlp",
    "tmp",
    "temp",
    "dummy",
    "overlap",
    "ovlp",
    "push",
    "pull",
)
_PREVIOUS = ("old", "prev", "previous", "prior")

#: Words that make an organ-named ROI a helper, with the reason (see the module notes).
ORGAN_HELPER_WORDS: dict[str, str] = {
    **dict.fromkeys(_OPTIMISATION, "optimisation helper"),
    **dict.fromkeys(_PREVIOUS, "previous course or note"),
}

#: Words that make a target-named ROI a helper, with the reason
#: (:func:`rtcheck.constraints.targets.parse_target_name`).
TARGET_HELPER_WORDS: dict[str, str] = {
    **dict.fromkeys((*_OPTIMISATION, "shell", "wall"), "optimisation helper"),
    **dict.fromkeys(
        ("all", "total", "tot", "sum", "union", "composite", "and", "plus", "combined"),
        "union of targets",
    ),
    **dict.fromkeys((*_PREVIOUS, "gone"), "previous course or note"),
}

_SEPARATORS = re.compile(r"[\s_.\-]+")
_SPELLING = (
    (re.compile(r"plexus"), "plex"),
    (re.compile(r"constric(?:tors?|t)?"), "constrict"),
    (re.compile(r"muscle"), "musc"),
    (re.compile(r"oesophag"), "esophag"),
)
#: Whole-word abbreviations written for TG-263 names.
_ABBREVIATIONS: dict[str, str] = {"bp": "brachialplex", "brachplex": "brachialplex"}
_CLASS = re.compile(r"(\[[^\]]*\])")
_WORDS = re.compile(r"[a-z]+|\d+(?:[.,]\d+)?|\+|\?")
_PRV_WORD = re.compile(r"^prv\d*(?:mm)?$")
_EXPANSION = re.compile(r"\+\s*\d+(?:[.,]\d+)?\s*(?:mm|cm)?")


def _respell(text: str) -> str:
    for pattern, replacement in _SPELLING:
        text = pattern.sub(replacement, text)
    return text


def name_key(name: str) -> str:
    """The normalised key of a structure name (see the module notes).

    Examples
    --------
    >>> name_key("Spinal-Cord") == name_key("spinal cord") == name_key("SpinalCord")
    True
    >>> name_key("BP_L") == name_key("BrachialPlexus_L")
    True
    """
    words = [w for w in _SEPARATORS.split(name.strip().casefold()) if w]
    words = [_ABBREVIATIONS.get(w, w) for w in words]
    return _respell("".join(words))


def pattern_key(pattern: str) -> str:
    """An alias pattern keyed like :func:`name_key`, character classes kept as written."""
    parts = _CLASS.split(pattern.strip().casefold())
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(part)
            continue
        words = [_ABBREVIATIONS.get(w, w) for w in _SEPARATORS.split(part) if w]
        out.append(_respell("".join(words)))
    return "".join(out)


def split_side(name: str) -> tuple[str, str | None]:
    """The name without its side word, and the side (``"L"``/``"R"``), or ``(name, None)``.

    Examples
    --------
    >>> split_side("Chestwall_L")
    ('Chestwall', 'L')
    >>> split_side("Left Lung")
    ('Lung', 'L')
    >>> split_side("LungL")
    ('LungL', None)
    """
    words = [w for w in _SEPARATORS.split(name.strip()) if w]
    if len(words) >= 2:
        if words[-1].casefold() in SIDES:
            return "_".join(words[:-1]), SIDES[words[-1].casefold()]
        if words[0].casefold() in SIDES:
            return "_".join(words[1:]), SIDES[words[0].casefold()]
    return name, None


@dataclass(frozen=True)
class _Words:
    kind: OrganExclusionKind | None
    reason: str
    core: str


def _organ_words(name: str) -> _Words:
    text = name.strip()
    lower = text.casefold()
    kind: OrganExclusionKind | None = None
    reason = ""
    if _EXPANSION.search(lower):
        kind, reason = "prv", "margin expansion of the organ"
        lower = _EXPANSION.sub(" ", lower)
    zed = lower.startswith("z") and len(lower) > 1
    words = _WORDS.findall(lower)
    kept: list[str] = []
    for word in words:
        if _PRV_WORD.match(word):
            kind, reason = "prv", "planning organ-at-risk volume (PRV)"
        elif word in ORGAN_HELPER_WORDS and kind != "prv":
            kind = kind or ("previous" if word in _PREVIOUS else "helper")
            reason = reason or f"{ORGAN_HELPER_WORDS[word]} ('{word}')"
        elif word in ORGAN_HELPER_WORDS or word in ("mm", "cm", "+", "?") or word.isdigit():
            continue
        else:
            kept.append(word)
    if zed and kept:
        kept[0] = kept[0][1:]
        if kind is None:
            kind, reason = "helper", "z prefix (TG-263: not for evaluation)"
    return _Words(kind, reason, _respell("".join(_ABBREVIATIONS.get(w, w) for w in kept)))


def organ_exclusion(name: str) -> tuple[OrganExclusionKind, str] | None:
    """Why an organ-named ROI is not the organ itself, or ``None`` (see the module notes).

    Examples
    --------
    >>> organ_exclusion("SpinalCord_PRV05")
    ('prv', 'planning organ-at-risk volume (PRV)')
    >>> organ_exclusion("Chest_Wall") is None
    True
    """
    words = _organ_words(name)
    if words.kind is None:
        return None
    return words.kind, words.reason


def core_key(name: str) -> str:
    """The key of the organ an ROI name refers to, helper, PRV, margin and side words removed.

    ``SpinalCord_PRV5``, ``zSpinalCord``, ``Spinal_Cord_old`` and ``SpinalCord+3mm`` all give
    ``spinalcord``: the key is used to find ROIs that *resemble* a role.
    """
    base, _ = split_side(name)
    return _organ_words(base).core


class ExclusionFact(TypedDict):
    """JSON form of an :class:`Exclusion` (the report's ``excluded_rois``)."""

    roi: str
    role: str
    reason: str


@dataclass(frozen=True)
class Exclusion:
    """An ROI whose name matches or resembles a role but is not evaluated as that role.

    Attributes
    ----------
    roi
        The ROI name.
    role
        The protocol role it matched or resembled.
    reason
        Why it is not that role, for the report (``"not a target: optimisation helper
        ('ring')"``).
    """

    roi: str
    role: str
    reason: str

    def as_dict(self) -> ExclusionFact:
        """JSON-ready form."""
        return {"roi": self.roi, "role": self.role, "reason": self.reason}

    def __str__(self) -> str:
        return f"{self.roi}: {self.reason}"
