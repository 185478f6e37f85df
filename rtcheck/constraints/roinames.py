"""Structure (ROI) names: normalised keys, laterality and helper structures.

The bottom of the structure-name modules: :mod:`rtcheck.constraints.targets` (what a target
name says) and :mod:`rtcheck.constraints.structures` (which ROI fills which protocol role)
both import from here; this module imports nothing from rtcheck.

Normalisation (:func:`name_key`, :func:`pattern_key`)
-----------------------------------------------------
Two names are the same structure when their *keys* are equal. A key is the name folded to
lower case without accents (:func:`fold`: Unicode NFKD, combining marks dropped, ``œ`` →
``oe``, Cyrillic and Greek look-alikes of Latin letters read as Latin, invisible characters
dropped) with its side word written last as ``l``/``r`` (``L_Parotid``, ``Parotid Lt`` and
``Parotid_L`` are one key; see Laterality), with the separators ``_``, ``-``, ``.`` and
white space removed (``Spinal-Cord``, ``Spinal_Cord``, ``spinal cord`` and ``SpinalCord``
are one key), with the TG-263 spellings of a few words restored (``plexus`` → ``plex``,
``constrictor``/``constric`` → ``constrict``, ``muscle`` → ``musc``, ``oesophag`` →
``esophag``) and a few common abbreviations of a whole word expanded (``BP`` →
``BrachialPlex``). Alias patterns are keyed the same way outside their ``[...]`` character
classes, so ``PTV [0-9]*`` still means a digit after ``PTV``.

Laterality (:func:`split_side`)
-------------------------------
TG-263 writes the side as a last word ``_L``/``_R``; real plans also write ``_Lt``/``_Rt``,
``Left``/``Right``, the French ``Gauche``/``Droit``/``Droite`` and put it first
(``L_Parotid``); the French letters ``G``/``D`` are a side only as the last word
(``Parotide G``, ``Cotes_D``). A side needs a separator: ``LungL`` is not split (TG-263
forbids it, and ``...l`` ends many words).

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
``Lungs_Total`` are organs.

Parts of organs (:func:`organ_subset`)
--------------------------------------
An organ minus a target or another structure, or a cropped organ (``Larynx-PTV``,
``PCM_minusPTV``, ``Constrictors_Out``, ``Submand_L_crop``, ``Lungs-Heart``) is a *subset*
of the organ with its hottest part cut away. :mod:`rtcheck.constraints.structures` never
lets it fill an organ role unless the matching pattern spells the subtraction itself
(``Lungs-GTV*``: a protocol's deliberate choice); otherwise it is a candidate.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection
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
    "fold",
    "name_key",
    "organ_exclusion",
    "organ_subset",
    "pattern_key",
    "split_side",
]

OrganExclusionKind = Literal["prv", "helper", "previous"]

#: Side words (folded) and the side they name, written first or last.
SIDES: dict[str, str] = {
    "l": "L",
    "lt": "L",
    "left": "L",
    "gauche": "L",
    "r": "R",
    "rt": "R",
    "right": "R",
    "droit": "R",
    "droite": "R",
}
#: French side letters: a side only as the *last* word (``Parotide G``, ``Cotes_D``).
_SUFFIX_SIDES: dict[str, str] = {"g": "L", "d": "R"}

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
    **dict.fromkeys(("expand", "expanded", "expansion", "exp", "prv"), "margin expansion"),
    **dict.fromkeys(
        ("in", "inside", "out", "outside"),
        "part of a target (inside or outside another structure)",
    ),
    **dict.fromkeys(
        ("minus", "excl", "exclude", "excluding", "without", "except"),
        "subtraction of another structure",
    ),
}

_SEPARATORS = re.compile(r"[\s_.\-]+")
_LIGATURES = str.maketrans({"œ": "oe", "æ": "ae", "ø": "o", "ł": "l", "đ": "d"})
#: Capital letters of other scripts that look like Latin capitals, read before case folding
#: (Greek capital nu is N, though its small letter looks like v).
_CAPITAL_CONFUSABLES = str.maketrans(
    {
        "\u0410": "A",  # cyrillic capital letter a
        "\u0412": "B",  # cyrillic capital letter ve
        "\u0421": "C",  # cyrillic capital letter es
        "\u0415": "E",  # cyrillic capital letter ie
        "\u041d": "H",  # cyrillic capital letter en
        "\u0406": "I",  # cyrillic capital letter byelorussian-ukrainian i
        "\u0408": "J",  # cyrillic capital letter je
        "\u041a": "K",  # cyrillic capital letter ka
        "\u041c": "M",  # cyrillic capital letter em
        "\u041e": "O",  # cyrillic capital letter o
        "\u0420": "P",  # cyrillic capital letter er
        "\u0405": "S",  # cyrillic capital letter dze
        "\u0422": "T",  # cyrillic capital letter te
        "\u0425": "X",  # cyrillic capital letter ha
        "\u0423": "Y",  # cyrillic capital letter u
        "\u0391": "A",  # greek capital letter alpha
        "\u0392": "B",  # greek capital letter beta
        "\u0395": "E",  # greek capital letter epsilon
        "\u0396": "Z",  # greek capital letter zeta
        "\u0397": "H",  # greek capital letter eta
        "\u0399": "I",  # greek capital letter iota
        "\u039a": "K",  # greek capital letter kappa
        "\u039c": "M",  # greek capital letter mu
        "\u039d": "N",  # greek capital letter nu
        "\u039f": "O",  # greek capital letter omicron
        "\u03a1": "P",  # greek capital letter rho
        "\u03a4": "T",  # greek capital letter tau
        "\u03a5": "Y",  # greek capital letter upsilon
        "\u03a7": "X",  # greek capital letter chi
    }
)
#: Characters that draw nothing though their category is not a format character.
_BLANKS = frozenset("\u034f\u115f\u1160\u3164\uffa0")

#: Letters of other scripts that look like Latin letters (after case folding), from the
#: Unicode confusables of the Latin alphabet (UTS #39), and characters that draw nothing:
#: a name typed or pasted with them is the same name to a reader, so it is to rtcheck.
_CONFUSABLES = str.maketrans(
    {
        # Cyrillic
        "\u0430": "a",  # cyrillic small letter a
        "\u0432": "b",  # cyrillic small letter ve
        "\u0441": "c",  # cyrillic small letter es
        "\u0501": "d",  # cyrillic small letter komi de
        "\u0435": "e",  # cyrillic small letter ie
        "\u04bb": "h",  # cyrillic small letter shha
        "\u043d": "h",  # cyrillic small letter en
        "\u0456": "i",  # cyrillic small letter byelorussian-ukrainian i
        "\u0458": "j",  # cyrillic small letter je
        "\u043a": "k",  # cyrillic small letter ka
        "\u043c": "m",  # cyrillic small letter em
        "\u043e": "o",  # cyrillic small letter o
        "\u0440": "p",  # cyrillic small letter er
        "\u051b": "q",  # cyrillic small letter qa
        "\u0455": "s",  # cyrillic small letter dze
        "\u0442": "t",  # cyrillic small letter te
        "\u0443": "y",  # cyrillic small letter u
        "\u051d": "w",  # cyrillic small letter we
        "\u0445": "x",  # cyrillic small letter ha
        "\u04af": "y",  # cyrillic small letter straight u
        "\u04cf": "l",  # cyrillic small letter palochka
        # Greek
        "\u03b1": "a",  # greek small letter alpha
        "\u03b2": "b",  # greek small letter beta
        "\u03b5": "e",  # greek small letter epsilon
        "\u03b7": "n",  # greek small letter eta
        "\u03b9": "i",  # greek small letter iota
        "\u03ba": "k",  # greek small letter kappa
        "\u03bc": "m",  # greek small letter mu
        "\u03bd": "v",  # greek small letter nu
        "\u03bf": "o",  # greek small letter omicron
        "\u03c1": "p",  # greek small letter rho
        "\u03c4": "t",  # greek small letter tau
        "\u03c5": "u",  # greek small letter upsilon
        "\u03c7": "x",  # greek small letter chi
        "\u03b6": "z",  # greek small letter zeta
        # Latin look-alikes that NFKD leaves alone
        "\u0131": "i",  # latin small letter dotless i
        "\u0237": "j",  # latin small letter dotless j
        "\u0261": "g",  # latin small letter script g
        "\u0251": "a",  # latin small letter alpha
        "\u017f": "s",  # latin small letter long s
        # Invisible: zero-width space, non-joiner, joiner, word joiner, soft hyphen, BOM
        "\u200b": None,
        "\u200c": None,
        "\u200d": None,
        "\u2060": None,
        "\u00ad": None,
        "\ufeff": None,
    }
)
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


def fold(text: str) -> str:
    """Lower case without accents: Unicode NFKD with the combining marks dropped, letters of
    other scripts that look Latin read as Latin (Cyrillic ``\u0430`` is ``a``) and invisible
    characters removed.

    Examples
    --------
    >>> fold("Moelle Épinière")
    'moelle epiniere'
    >>> fold("Œsophage")
    'oesophage'
    """
    text = text.translate(_CAPITAL_CONFUSABLES).strip().casefold().translate(_LIGATURES)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(
        c
        for c in text
        if not unicodedata.combining(c)
        and unicodedata.category(c) not in ("Cf", "Mn", "Me")
        and c not in _BLANKS
    )
    return text.translate(_LIGATURES).translate(_CONFUSABLES).strip()


def _side_word(word: str, last: bool) -> str | None:
    side = SIDES.get(word)
    if side is None and last:
        side = _SUFFIX_SIDES.get(word)
    return side


def _side_last(words: list[str]) -> list[str]:
    """Words with a first or last side word written as the last word ``l``/``r``."""
    if len(words) >= 2:
        side = _side_word(words[-1], last=True)
        if side is not None:
            return [*words[:-1], side.lower()]
        side = _side_word(words[0], last=False)
        if side is not None:
            return [*words[1:], side.lower()]
    return words


def name_key(name: str) -> str:
    """The normalised key of a structure name (see the module notes).

    Examples
    --------
    >>> name_key("Spinal-Cord") == name_key("spinal cord") == name_key("SpinalCord")
    True
    >>> name_key("BP_L") == name_key("BrachialPlexus_L")
    True
    >>> name_key("Parotid Lt") == name_key("L_Parotid") == name_key("Parotid_L")
    True
    >>> name_key("Moelle épinière") == name_key("Moelle_Epiniere")
    True
    """
    words = _side_last([w for w in _SEPARATORS.split(fold(name)) if w])
    words = [_ABBREVIATIONS.get(w, w) for w in words]
    return _respell("".join(words))


def pattern_key(pattern: str) -> str:
    """An alias pattern keyed like :func:`name_key`, character classes kept as written.

    A side word is moved last only in a pattern without character classes (``Parotide_G``
    and ``Parotid_L`` key alike; ``PTV_L[0-9]*`` keeps its letter).
    """
    parts = _CLASS.split(fold(pattern))
    if len(parts) == 1:
        words = _side_last([w for w in _SEPARATORS.split(parts[0]) if w])
        return _respell("".join(_ABBREVIATIONS.get(w, w) for w in words))
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
        side = _side_word(fold(words[-1]), last=True)
        if side is not None:
            return "_".join(words[:-1]), side
        side = _side_word(fold(words[0]), last=False)
        if side is not None:
            return "_".join(words[1:]), side
    return name, None


@dataclass(frozen=True)
class _Words:
    kind: OrganExclusionKind | None
    reason: str
    core: str


def _organ_words(name: str) -> _Words:
    lower = fold(name)
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


#: Words that make an organ-named ROI a part of the organ (:func:`organ_subset`).
SUBSET_WORDS: dict[str, str] = {
    **dict.fromkeys(("out", "outside", "minus", "excl", "exclude", "excluding"), "subtraction"),
    **dict.fromkeys(("without", "except", "crop", "cropped"), "subtraction"),
}
#: Structures written after a ``-`` that are always subtracted (``Lung-Body`` is not a lung).
_SUBTRACTED = frozenset({"body", "external", "ext", "outline", "skin", "bones", "bone"})
_TARGET_TYPE = re.compile(r"^(?:gtv|ctv|itv|ptv)")
_GLUED_SUBTRACTION = re.compile(r"^(?:minus|excl|no|sans)(?:gtv|ctv|itv|ptv)|^minus")
_SUBSET_TOKENS = re.compile(r"[a-z0-9]+|[-+&]")


def organ_subset(name: str, others: Collection[str] = ()) -> str | None:
    """Why an organ-named ROI is only *part* of the organ (cropped, organ minus target), or None.

    A part never fills an organ role through a pattern that does not spell the subtraction
    (its hottest part was cut away: a lower mean, ``D<x>cc`` or maximum than the organ's),
    see :mod:`rtcheck.constraints.structures`. An ROI is a part when, after its first word,

    * a word is ``out``/``outside``, ``minus``, ``excl``/``exclude``/``excluding``,
      ``without``, ``except``, ``crop``/``cropped`` (``Constrictors_Out``, ``Colon_out``,
      ``Submand_L_crop``), or starts with ``minus`` or ``no``/``excl`` + a target type
      (``PCM_minusPTV``, ``Lung_noGTV``);
    * a word starts with a target type and no ``+`` precedes it (``Larynx-PTV``,
      ``Glnd_Submand_R-PTV``, ``Lungs_GTV``: an organ minus a target);
    * a ``-`` is followed by ``Body``/``External``/``Skin``/``Bone`` or by the name of
      another ROI of the structure set (``others``): ``Lungs-Heart`` when ``Heart`` exists.

    A name that starts with a target type (``PTV_Liver``) is a target, not an organ part.

    Examples
    --------
    >>> organ_subset("Larynx-PTV")
    "organ minus a target ('ptv')"
    >>> organ_subset("Constrictors Out")
    "part of the organ ('out')"
    >>> organ_subset("Heart+Pericardium") is None
    True
    """
    folded = fold(name)
    tokens = _SUBSET_TOKENS.findall(folded)
    if not tokens or _TARGET_TYPE.match(tokens[0]) or tokens[0] in "-+&":
        return None
    keys = {name_key(o) for o in others if o != name}
    for i, tok in enumerate(tokens[1:], start=1):
        prev = tokens[i - 1]
        if tok in SUBSET_WORDS:
            return f"part of the organ ('{tok}')"
        if _GLUED_SUBTRACTION.match(tok):
            what = "a target" if re.search(r"gtv|ctv|itv|ptv", tok) else "another structure"
            return f"organ minus {what} ('{tok}')"
        if _TARGET_TYPE.match(tok) and prev != "+":
            return f"organ minus a target ('{tok}')"
        if tok == "-" and i + 1 < len(tokens) and not _TARGET_TYPE.match(tokens[i + 1]):
            after = tokens[i + 1]
            rest = folded[_nth_dash(folded, tokens, i) + 1 :]
            if after in _SUBTRACTED or (keys and name_key(rest) in keys):
                return f"organ minus another structure ('{after}')"
    return None


def _nth_dash(folded: str, tokens: list[str], index: int) -> int:
    """Character position of the dash that is ``tokens[index]``."""
    count = tokens[: index + 1].count("-")
    pos = -1
    for _ in range(count):
        pos = folded.index("-", pos + 1)
    return pos


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
