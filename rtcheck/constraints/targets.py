"""Target-volume names, dose levels and suspected elective (prophylactic) volumes.

The 2023 review of radiotherapy for metastatic head-and-neck cancer (``clinical-rules.md``
section 3) advises omitting large-field prophylactic (elective) nodal irradiation of the neck
and primary; PembroMetaRT delivers 54 Gy in 18 fractions "with no prophylactic volumes".
Elective volumes are rarely *called* elective, so this module reads what the structure names
say (TG-263 target nomenclature and the free-text variants real exports carry) and what the
measured doses say, and lists every target that looks elective together with the reasons.

Nothing here touches DICOM: the inputs are structure names and, where available, the measured
median dose (D50) of each target.

Parsing target names (:func:`parse_target_name`)
------------------------------------------------
TG-263 names a target as *type* + *classifier* + *index* + *dose level*, e.g. ``PTVp1_7000``,
``CTVn_5600``, ``PTV_High``, ``GTVn2``. Matching is case-insensitive. The name is split into
words and numbers at separators (``_``, space, ``-``, ``.``) and at letter/digit boundaries; a
target type glued to a classifier or qualifier (``PTVn``, ``CTVhr``, ``hrCTV``, ``PTVopt``)
is split as well.

* **Type**: ``GTV``, ``CTV``, ``ITV`` or ``PTV`` must appear, and only qualifier words may
  precede it (``HR_CTV``, ``Neck_PTV``, ``Ring_PTV``), or a site prefix separated by white
  space (``H&N PTV_70Gy``, see below). Another unknown word before the type means an
  organ-derived structure (``Lungs-GTV``, ``Skin-PTV``): not a target, ``None``.
* **Classifier**: ``p`` (primary), ``n`` (nodal), ``sb`` (surgical bed), from the TG-263
  letters and from the European ``GTV-T``/``GTV-N`` letters (``t`` = primary), ``tb`` (tumour
  bed = surgical bed) and the words ``prim``/``primary``. Nodal *words* (below) set ``nodal``
  but not the classifier.
* **Index**: the first bare integer from 1 to 9 (``PTV1``, ``GTVn2``, ``PTV_Mid01``). A bare
  integer of 10 or more is a dose, never an index.
* **Dose level** (``dose_gy``), decided in this order:

  1. A unit written in the name wins: ``_5400cGy`` is 54 Gy, ``_70Gy``/``_70_Gy`` is 70 Gy.
  2. ``NxD`` (``3x18Gy``, ``18x3``) is the product (54 Gy); the unit rule applies to it.
  3. A bare number of 100 or more is cGy (``_7000`` = 70 Gy, ``_5040`` = 50.4 Gy); a bare
     number below 100 is Gy (``_70``, ``PTV54``, ``_54.0``, ``_59.4``; a decimal comma,
     ``59,4``, is read as a point).
  4. Numbers followed by ``%`` (isodose), ``mm``/``cm`` (margins: the name is a helper) or
     ``fx``/``fr``/``fractions`` (fraction counts) are not doses; ``C1``-``C7``,
     ``T1``-``T12``, ``L1``-``L5``, ``S1``-``S5`` written as separate words (``PTV_T12``)
     are vertebrae.
  5. A value outside 1-150 Gy after conversion is implausible and dropped (``PTV_7000Gy``
     has no dose level rather than 7000 Gy). An explicit unit beats a bare number; otherwise
     the first dose in the name is used.

* **Level words** (``level``): ``high``/``hi``/``hr``/``hd`` → ``"high"``;
  ``mid``/``middle``/``int``/``inter``/``intermediate``/``ir`` → ``"mid"``;
  ``low``/``lo``/``lr``/``ld`` → ``"low"``. ``boost`` sets ``boost`` (not a level).
* **Elective words** (``elective_word``): ``eni`` and any word starting with ``elec``,
  ``elek``, ``proph`` or ``subclin`` (elective, elec, prophylactic, proph, subclinical).
* **Nodal** (``nodal``): classifier ``n``, or the words ``node(s)``, ``nodal``, ``ln``,
  ``lns``, ``lnn``, ``neck``, ``lk``, ``ggl``, ``ganglion(s)``, ``level(s)``, ``lvl``,
  ``lev`` or ``N+``.

Helper structures (decision)
----------------------------
Target-derived helper structures are parsed, so a report can say what was skipped, but they
carry ``helper=True`` and a ``helper_reason``; they never count as targets in
:func:`find_elective_volumes` or in :func:`reference_level`. A name is a helper when:

* it starts with ``z`` (TG-263: "not for evaluation"; ``zPTV_7000``, ``z_PTV``); a ``z`` name
  with no target type in it (``z_ring``) is simply not a target (``None``);
* it holds an optimisation or derived-structure word: ``opt``/``optim*``, ``ring``,
  ``shell``, ``wall``, ``avoid``/``avd``, ``help``/``helper``/``hlp``, ``tmp``/``temp``,
  ``dummy``, ``overlap``/``ovlp``, unions (``all``, ``total``, ``tot``, ``sum``, ``union``,
  ``composite``, ``and``, ``plus``, ``combined``: ``PTV 1 AND 2``, ``PTV_ALL``); the word
  table is shared with organ names in :mod:`rtcheck.constraints.roinames`;
* it names a previous course or an annotation: ``old``, ``prev``, ``previous``, ``prior``,
  ``gone``, or a ``?`` anywhere (``GTVp_gone?`` is a note, not a target of this plan);
* it is a Boolean or margin expression: two target types (``PTV54-PTV70``, ``CTV+PTV``),
  ``&``/``|``, ``+`` followed by a number (``PTV+5``) or ``+``/``-`` followed by a length
  (``PTV-3mm``);
* it is an expansion: any number followed by ``mm``/``cm`` is a margin (``PTV_1cm``,
  ``PTV1_5mm``; never a dose: ``PTV_5400``, ``PTV_54Gy`` and ``PTV 70`` are dose levels), or
  the words ``expand``/``expanded``/``expansion``/``exp``/``prv`` (``PTV1_PRV``);
* it is a target minus another structure: ``no``/``minus``/``excl`` + a target type
  (``PTV1_noGTV``), the words ``minus``/``excl``/``without``/``except``, or a ``-`` followed
  by a word that is no qualifier, vertebra, nodal level (``II-IV``) or lesion word (``Met``,
  ``Les``, ``SBRT``...): ``PTV1-Lung``, ``PTV-Body`` (``PTV-Met2``, ``PTV-C7``, ``GTV-T``
  and ``PTV-eval`` stay targets; ``PTV_Lung``, with ``_``, is a site and stays a target);
* decision on ``in``/``inside``/``out``/``outside`` (``PTV_in``, ``PTV_out``): a part of
  the target inside or outside another structure (the body, the lung), reported as a helper
  rather than evaluated; an evaluation volume is named ``PTV_Eval``, which stays a target.

A **site prefix** of one to three words of letters, ``&`` and ``/`` written before the type
and separated from it by white space only is kept in ``site``: ``H&N PTV_70Gy`` is a 70 Gy
PTV (site ``h&n``). With ``-`` or ``_`` (``Lungs-GTV``, ``Lungs_GTV``) an unknown word before
the type still means an organ-derived structure (``None``).

``eval`` (``PTV_Eval``, ``PTV-eval``) is *not* a helper: RTOG-style protocols evaluate dose on
the skin-cropped ``PTV_Eval``; it is kept as a target and ``eval`` appears in ``qualifiers``.
``crop`` is not a helper word either (a cropped PTV is often the evaluation volume).

Elective detection (:func:`find_elective_volumes`)
--------------------------------------------------
The **gross-disease level** (the reference) is the highest dose level named by any target,
or the plan prescription when it is higher or when no name carries a dose (a prescription
above every named level means an unnamed target such as ``PTVp`` carries the top level); with
neither, the highest measured median among the targets. A target is reported when any of:

1. its name gives a dose level below the reference (``PTV_5400`` with ``PTV_7000``);
2. it is nodal and prescribed below the reference: by the dose in its name, or, without one,
   by a measured median below ``nodal_full_dose_fraction`` (95 %) of the reference;
3. its level word is ``mid`` or ``low`` and another target has a higher level (a higher
   level word, or a named dose above this target's when this one has none or a lower one);
4. its name says elective/prophylactic (reported even in a single-level plan);
5. its measured median is below ``dose_fraction`` (90 %) of the reference.

Never reported: GTVs (gross disease is never elective), ``boost`` targets (a boost is gross
disease, and a sequential boost may carry its phase dose in its name), helper structures,
involved nodes at full dose (``PTVn_7000`` next to ``PTVp_7000``, or a nodal target whose
median is at least 95 % of the reference), the targets of a single-level plan (unless a name
says elective), and SABR plans whose PTVs each cover one metastasis at the same dose.

Decision on the reference: issue 3 words it "highest named level, else the prescription". Here
the prescription also wins when it is *above* every named level, so ``CTVn_5600`` next to an
unnamed ``PTVp`` in a 70 Gy plan is caught; when names and prescription agree (the usual case)
the two wordings give the same reference, and a single ``PTV_5400`` prescribed 54 Gy stays a
single-level plan.

``confidence`` is ``"name"`` when only the name argues (rules 1, 3, 4 and rule 2 by the name),
``"dose"`` when only the measured median does (rule 5), ``"both"`` otherwise (rule 2 by the
median counts as both: the name says nodal, the dose says below).

Debatable cases and limits
--------------------------
* An **intermediate level** (``PTV_6000`` between ``PTV_5400`` and ``PTV_7000``, or a ``Mid``
  word) is reported, because it is a lower dose level and the review advises omitting
  prophylactic volumes; but an intermediate-risk volume (e.g. a tumour-bed or high-risk
  subclinical region) may be a deliberate clinical choice, so the suspect carries a note
  saying so.
* Rule 5 cannot tell an elective volume from a second metastasis deliberately treated to a
  lower dose in the same plan (e.g. SABR 3 x 18 Gy and 5 x 8 Gy in one plan without dose
  levels in the names): both show as a median well below the top level.
* The reference ignores measured medians whenever a name or the prescription gives a level,
  so ``PTV_5400`` next to an unnamed target measured at 70 Gy (and no prescription) is missed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, TypedDict

from rtcheck.constraints.roinames import TARGET_HELPER_WORDS, fold

__all__ = [
    "DEFAULT_DOSE_FRACTION",
    "DEFAULT_LEVEL_TOLERANCE_GY",
    "DEFAULT_NODAL_FULL_DOSE_FRACTION",
    "Classifier",
    "Confidence",
    "EleSuspect",
    "ElectiveSuspect",
    "ElectiveSuspectFact",
    "Level",
    "ReferenceSource",
    "TargetFact",
    "TargetInfo",
    "TargetName",
    "TargetType",
    "TargetsSummary",
    "find_elective_volumes",
    "parse_target_name",
    "reference_level",
    "targets_summary",
]

TargetType = Literal["GTV", "CTV", "ITV", "PTV"]
Classifier = Literal["p", "n", "sb"]
Level = Literal["high", "mid", "low"]
Confidence = Literal["name", "dose", "both"]
ReferenceSource = Literal["name", "prescription", "measured"]

#: Rule 5: a median below this fraction of the reference is "well below" it.
DEFAULT_DOSE_FRACTION = 0.90
#: Rule 2: involved nodes treated at full dose reach at least this fraction of the reference.
DEFAULT_NODAL_FULL_DOSE_FRACTION = 0.95
#: Two named dose levels closer than this are the same level.
DEFAULT_LEVEL_TOLERANCE_GY = 0.5

#: Plausible dose levels after unit conversion; anything else is dropped.
_MIN_DOSE_GY = 1.0
_MAX_DOSE_GY = 150.0

_TYPES: dict[str, TargetType] = {"gtv": "GTV", "ctv": "CTV", "itv": "ITV", "ptv": "PTV"}
_CLASSIFIERS: dict[str, Classifier] = {
    "p": "p",
    "t": "p",
    "prim": "p",
    "primary": "p",
    "n": "n",
    "sb": "sb",
    "tb": "sb",
}
_LEVELS: dict[str, Level] = {
    "high": "high",
    "hi": "high",
    "hr": "high",
    "hd": "high",
    "mid": "mid",
    "middle": "mid",
    "int": "mid",
    "inter": "mid",
    "intermediate": "mid",
    "ir": "mid",
    "low": "low",
    "lo": "low",
    "lr": "low",
    "ld": "low",
    "lowrisk": "low",
    "midrisk": "mid",
    "highrisk": "high",
}
_LEVEL_RANK: dict[Level | None, int] = {None: 0, "low": 1, "mid": 2, "high": 3}
_ELECTIVE_EXACT = frozenset({"eni"})
_ELECTIVE_PREFIXES = ("elec", "elek", "proph", "subclin")
_NODAL_WORDS = frozenset(
    {
        "node",
        "nodes",
        "nodal",
        "ln",
        "lns",
        "lnn",
        "neck",
        "lk",
        "ggl",
        "ganglion",
        "ganglions",
        "level",
        "levels",
        "lvl",
        "lev",
        "lymph",
        "lymphnode",
        "lymphnodes",
        "scv",
        "imn",
    }
)
_HELPER_WORDS: dict[str, str] = TARGET_HELPER_WORDS
_HELPER_PREFIXES: dict[str, str] = {"optim": "optimisation helper"}
_EVAL_WORDS = frozenset({"eval", "evaluation"})
_BOOST_WORDS = frozenset({"boost"})
_SIDE_WORDS = frozenset({"l", "r", "lt", "rt", "left", "right", "bilat", "bil", "bilateral"})
_GY_WORDS = frozenset({"gy"})
_CGY_WORDS = frozenset({"cgy"})
_LENGTH_WORDS = frozenset({"mm", "cm"})
_FRACTION_WORDS = frozenset({"fx", "fxs", "fr", "frs", "f", "frac", "fraction", "fractions"})
_VERTEBRAE: dict[str, int] = {"c": 7, "t": 12, "l": 5, "s": 5}

_TOKEN_RE = re.compile(
    r"(?P<npos>(?<![a-z0-9])n\+)"
    r"|(?P<num>\d+(?:[.,]\d+)?)"
    r"|(?P<word>[a-z]+)"
    r"|(?P<op>[+&|])"
    r"|(?P<dash>-)"
    r"|(?P<pct>%)"
    r"|(?P<mark>\?)"
)
_TYPE_IN_WORD_RE = re.compile(r"(gtv|ctv|itv|ptv)")
#: ``noGTV``, ``minusPTV``, ``exclCTV``: a target minus another target.
_MINUS_TARGET_RE = re.compile(r"^(?:no|minus|excl|sans)(?:gtv|ctv|itv|ptv)")
#: Words after a ``-`` that name the lesion or a nodal level, not a subtracted structure
#: (``PTV-Met2``, ``CTV_levels_II-IV``).
_LESION_WORDS = frozenset(
    {"met", "mets", "meta", "metastasis", "les", "lesion", "sbrt", "sabr", "srs", "sib", "x"}
    | {"i", "ii", "iii", "iv", "v", "vi", "vii", "ia", "ib", "iia", "iib", "va", "vb"}
)
#: A site prefix before the target type, separated from it by white space only: one to three
#: words of letters, ``&`` and ``/`` (``H&N PTV_70Gy``, ``Lung PTV``). ``Lungs-GTV`` and
#: ``Lungs_GTV`` (an organ minus a target) and ``rx 1: H&N PTV ...`` (a note) have none.
_SITE_PREFIX_RE = re.compile(r"^(?P<site>[a-z][a-z&/]*(?: +[a-z][a-z&/]*){0,2}) +(?=[gcip]tv)")
#: The site words accepted as a prefix. Only sites: an organ before the type ("Lungs PTV",
#: "Larynx PTV", "Liver GTV") is an organ minus a target or a helper, and "Hot PTV" or
#: "Body PTV" a helper; such names are not targets.
_SITE_WORDS = frozenset(
    {"h&n", "hn", "h/n", "hnc", "orl", "head&neck", "head/neck", "head & neck", "head and neck"}
)
#: Words after a ``-`` that name a subtracted structure (``PTV1-Lung``, ``PTV-Body``). Only
#: these: a lesion is often named after its site with a dash (``PTV-RUL``, ``PTV-Rib7``,
#: ``PTV-Adrenal``, ``PTV-A``), and dropping it as a helper would leave it unchecked.
_SUBTRAHENDS = frozenset(
    {
        "body",
        "external",
        "ext",
        "skin",
        "outline",
        "patient",
        "lung",
        "lungs",
        "liver",
        "bowel",
        "bone",
        "cord",
        "spinalcord",
        "brainstem",
        "heart",
        "esophagus",
        "oesophagus",
        "rectum",
        "bladder",
        "kidney",
        "kidneys",
        "stomach",
        "duodenum",
        "chiasm",
        "gtv",
        "ctv",
        "itv",
        "ptv",
        "oar",
        "oars",
    }
)


@dataclass(frozen=True)
class TargetName:
    """What a target structure's name says.

    Attributes
    ----------
    text
        The name exactly as given.
    type
        ``"GTV"``, ``"CTV"``, ``"ITV"`` or ``"PTV"``.
    classifier
        ``"p"`` primary, ``"n"`` nodal, ``"sb"`` surgical bed, or ``None``.
    index
        The target's number (``PTV2`` → 2), or ``None``.
    dose_gy
        The dose level written in the name, in Gy, or ``None``.
    level
        ``"high"``, ``"mid"`` or ``"low"`` from a level word, or ``None``.
    elective_word
        The name says elective / prophylactic / ENI / subclinical.
    nodal
        Classifier ``n`` or a nodal word (``nodes``, ``neck``, ``LN``, ``N+``, ``levels``...).
    boost
        The name says ``boost``.
    helper
        A target-derived helper structure, not a target to evaluate (see the module notes).
    helper_reason
        Why it is a helper, or ``None``.
    qualifiers
        The recognised qualifier words in the order they appear (lower case), for reports.
    site
        A site prefix written before the target type and separated from it by white space
        (``h&n`` in ``H&N PTV_70Gy``), folded to lower case, or ``None``.
    """

    text: str
    type: TargetType
    classifier: Classifier | None = None
    index: int | None = None
    dose_gy: float | None = None
    level: Level | None = None
    elective_word: bool = False
    nodal: bool = False
    boost: bool = False
    helper: bool = False
    helper_reason: str | None = None
    qualifiers: tuple[str, ...] = ()
    site: str | None = None

    @property
    def is_target(self) -> bool:
        """True for a target to evaluate (not a helper structure)."""
        return not self.helper

    @property
    def label(self) -> str:
        """Type and classifier as TG-263 writes them, e.g. ``CTVn`` or ``PTV``."""
        return self.type + (self.classifier or "")


@dataclass(frozen=True)
class TargetInfo:
    """A target structure of the plan, with its measured median dose when known.

    Attributes
    ----------
    name
        The structure (ROI) name.
    median_gy
        The measured D50 of the structure in Gy, or ``None`` when not available.
    """

    name: str
    median_gy: float | None = None


@dataclass(frozen=True)
class ElectiveSuspect:
    """A target that looks like an elective (prophylactic) volume, and why.

    Attributes
    ----------
    name
        The structure name.
    reasons
        One human sentence per rule that fired.
    reference_gy
        The gross-disease level the target was compared with, or ``None`` when no level is
        known (level words and elective words still work without one).
    reference_source
        Where the reference came from: ``"name"``, ``"prescription"`` or ``"measured"``.
    confidence
        ``"name"``, ``"dose"`` or ``"both"``: which kind of evidence argues.
    target
        The parsed name.
    median_gy
        The measured median dose, when given.
    notes
        Caveats for the reader (e.g. an intermediate level may be deliberate).
    """

    name: str
    reasons: list[str]
    reference_gy: float | None
    reference_source: ReferenceSource | None
    confidence: Confidence
    target: TargetName
    median_gy: float | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> ElectiveSuspectFact:
        """A JSON-ready dict for the report's ``facts.elective_volumes``."""
        return {
            "name": self.name,
            "reasons": list(self.reasons),
            "confidence": self.confidence,
            "reference_gy": self.reference_gy,
            "reference_source": self.reference_source,
            "dose_gy": self.target.dose_gy,
            "median_gy": self.median_gy,
            "notes": list(self.notes),
        }


#: Short alias used in the design notes.
EleSuspect = ElectiveSuspect


class ElectiveSuspectFact(TypedDict):
    """JSON form of an :class:`ElectiveSuspect`."""

    name: str
    reasons: list[str]
    confidence: Confidence
    reference_gy: float | None
    reference_source: ReferenceSource | None
    dose_gy: float | None
    median_gy: float | None
    notes: list[str]


class TargetFact(TypedDict):
    """JSON form of one target for the report's ``facts.targets``."""

    name: str
    type: TargetType
    classifier: Classifier | None
    index: int | None
    dose_gy: float | None
    level: Level | None
    nodal: bool
    elective_word: bool
    boost: bool
    median_gy: float | None


class HelperFact(TypedDict):
    """A target-derived helper structure that was skipped, and why."""

    name: str
    reason: str


class TargetsSummary(TypedDict):
    """What :func:`targets_summary` returns."""

    gross_level_gy: float | None
    gross_level_source: ReferenceSource | None
    targets: list[TargetFact]
    helpers: list[HelperFact]


# --------------------------------------------------------------------------- parsing


@dataclass
class _Tok:
    kind: str  # "type", "word", "num", "npos", "op", "dash", "pct", "mark"
    text: str
    glued: bool = False  # a word split off a target-type word (PTVn -> ptv + n)


def _known_word(word: str) -> bool:
    return (
        word in _CLASSIFIERS
        or word in _LEVELS
        or word in _NODAL_WORDS
        or word in _HELPER_WORDS
        or word in _EVAL_WORDS
        or word in _BOOST_WORDS
        or word in _SIDE_WORDS
        or _is_elective(word)
        or word.startswith(tuple(_HELPER_PREFIXES))
    )


def _subtracted_word(tokens: Sequence[_Tok], k: int) -> bool:
    """``tokens[k]``, written after a ``-``, names a subtracted structure (``PTV1-Lung``,
    ``PTV-Body``): one of :data:`_SUBTRAHENDS`, not followed by a number."""
    if k >= len(tokens) or tokens[k].kind != "word":
        return False
    word = tokens[k].text
    nxt = tokens[k + 1] if k + 1 < len(tokens) else None
    if nxt is not None and nxt.kind == "num":  # PTV-Rib7, PTV-C7, PTV-Seg7: a lesion's site
        return False
    return word in _SUBTRAHENDS


def _is_elective(word: str) -> bool:
    return word in _ELECTIVE_EXACT or word.startswith(_ELECTIVE_PREFIXES)


def _split_rest(rest: str) -> list[_Tok]:
    """Words glued after a target type: ``n``, ``hr``, ``nodes``, ``opt``, ``phr``..."""
    if not rest:
        return []
    if _known_word(rest):
        return [_Tok("word", rest, glued=True)]
    for cls in ("sb", "tb", "p", "n", "t"):
        tail = rest[len(cls) :]
        if rest.startswith(cls) and _known_word(tail):
            return [_Tok("word", cls, glued=True), _Tok("word", tail, glued=True)]
    return [_Tok("word", rest, glued=True)]


def _tokenize(lower: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    for m in _TOKEN_RE.finditer(lower):
        kind = m.lastgroup or ""
        text = m.group()
        if kind != "word":
            tokens.append(_Tok(kind, text))
            continue
        found = _TYPE_IN_WORD_RE.search(text)
        prefix = text[: found.start()] if found else ""
        if found is None or (prefix and not _known_word(prefix)):
            tokens.append(_Tok("word", text))
            continue
        if prefix:
            tokens.append(_Tok("word", prefix))
        tokens.append(_Tok("type", found.group()))
        tokens.extend(_split_rest(text[found.end() :]))
    return tokens


def _to_float(text: str) -> float:
    return float(text.replace(",", "."))


def _plausible(dose_gy: float) -> float | None:
    dose_gy = round(dose_gy, 4)
    return dose_gy if _MIN_DOSE_GY <= dose_gy <= _MAX_DOSE_GY else None


def _bare_dose(value: float) -> float | None:
    """A number without a unit: 100 or more is cGy, less is Gy."""
    return _plausible(value / 100.0 if value >= 100.0 else value)


def parse_target_name(name: str) -> TargetName | None:
    """Read a structure name as a target volume (TG-263 and free-text variants).

    Parameters
    ----------
    name
        A structure (ROI) name, e.g. ``PTVp_7000``, ``CTV_5600cGy``, ``ptv_lr_54``,
        ``PTV HR 70``.

    Returns
    -------
    TargetName or None
        ``None`` when the name is not a target (OARs such as ``Parotid_L``, external
        contours, organ-minus-target structures such as ``Lungs-GTV``, ``z`` names without a
        target type). Target-derived helper structures (``zPTV``, ``PTV_opt``, ``PTVring``,
        ``PTV54-PTV70``, ``GTVp_gone?``) come back with ``helper=True``. The rules are in the
        module documentation.

    Examples
    --------
    >>> t = parse_target_name("CTVn_5600")
    >>> (t.type, t.classifier, t.dose_gy, t.nodal)
    ('CTV', 'n', 56.0, True)
    >>> parse_target_name("Parotid_L") is None
    True
    """
    text = name.strip()
    lower = fold(text)
    helper_reasons: list[str] = []
    site: str | None = None
    if lower.startswith("z"):
        lower = lower.lstrip("z").lstrip("_- .")
        helper_reasons.append("z prefix (TG-263: not for evaluation)")
    tokens = _tokenize(lower)
    type_positions = [i for i, tok in enumerate(tokens) if tok.kind == "type"]
    if not type_positions:
        return None
    first = type_positions[0]
    if any(tok.kind == "word" and not _known_word(tok.text) for tok in tokens[:first]):
        site_match = _SITE_PREFIX_RE.match(lower)
        if site_match is None or _TYPE_IN_WORD_RE.search(site_match.group("site")):
            return None
        site = site_match.group("site")
        if site.strip() not in _SITE_WORDS:
            return None
        lower = lower[site_match.end() :]
        tokens = _tokenize(lower)
        type_positions = [i for i, tok in enumerate(tokens) if tok.kind == "type"]
        first = type_positions[0]
    if len(type_positions) > 1:
        helper_reasons.append("derived from several target volumes")
    target_type = _TYPES[tokens[first].text]

    classifier: Classifier | None = None
    index: int | None = None
    level: Level | None = None
    elective = nodal = boost = False
    qualifiers: list[str] = []
    explicit_doses: list[float] = []
    bare_doses: list[float] = []

    def word_at(k: int) -> str | None:
        return tokens[k].text if 0 <= k < len(tokens) and tokens[k].kind == "word" else None

    i = 0
    while i < len(tokens):
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        prev = tokens[i - 1] if i > 0 else None
        if tok.kind == "num":
            value = _to_float(tok.text)
            following = word_at(i + 1)
            if following == "x" and i + 2 < len(tokens) and tokens[i + 2].kind == "num":
                product = value * _to_float(tokens[i + 2].text)
                unit = word_at(i + 3)
                if unit in _GY_WORDS:
                    dose = _plausible(product)
                    explicit_doses.extend([dose] if dose is not None else [])
                    i += 4
                elif unit in _CGY_WORDS:
                    dose = _plausible(product / 100.0)
                    explicit_doses.extend([dose] if dose is not None else [])
                    i += 4
                else:
                    dose = _bare_dose(product)
                    bare_doses.extend([dose] if dose is not None else [])
                    i += 3
                continue
            if following in _GY_WORDS or following in _CGY_WORDS:
                dose = _plausible(value if following in _GY_WORDS else value / 100.0)
                explicit_doses.extend([dose] if dose is not None else [])
                i += 2
                continue
            if nxt is not None and nxt.kind == "pct":
                i += 2
                continue
            if following in _LENGTH_WORDS:
                if prev is not None and prev.kind in ("op", "dash"):
                    helper_reasons.append("margin expression")
                else:
                    helper_reasons.append(f"margin expansion ('{tok.text}{following}')")
                i += 2
                continue
            if following in _FRACTION_WORDS:
                i += 2
                continue
            if prev is not None and prev.kind == "op" and prev.text == "+":
                helper_reasons.append("margin expression")
            elif tok.text.isdigit() and int(tok.text) <= 9:
                if index is None and int(tok.text) >= 1:
                    index = int(tok.text)
            else:
                dose = _bare_dose(value)
                bare_doses.extend([dose] if dose is not None else [])
            i += 1
            continue
        if tok.kind == "word":
            word = tok.text
            limit = _VERTEBRAE.get(word)
            if (
                limit is not None
                and not tok.glued
                and nxt is not None
                and nxt.kind == "num"
                and nxt.text.isdigit()
                and 1 <= int(nxt.text) <= limit
            ):
                qualifiers.append(word + nxt.text)
                i += 2
                continue
            if word in _CLASSIFIERS:
                if classifier is None:
                    classifier = _CLASSIFIERS[word]
                nodal = nodal or _CLASSIFIERS[word] == "n"
                qualifiers.append(word)
            elif word in _LEVELS:
                if level is None:
                    level = _LEVELS[word]
                qualifiers.append(word)
            elif _is_elective(word):
                elective = True
                qualifiers.append(word)
            elif word in _NODAL_WORDS:
                nodal = True
                qualifiers.append(word)
            elif word in _BOOST_WORDS:
                boost = True
                qualifiers.append(word)
            elif word in _EVAL_WORDS:
                qualifiers.append(word)
            elif word in _HELPER_WORDS:
                helper_reasons.append(f"{_HELPER_WORDS[word]} ('{word}')")
                qualifiers.append(word)
            elif _MINUS_TARGET_RE.match(word):
                helper_reasons.append(f"target minus another target ('{word}')")
                qualifiers.append(word)
            else:
                for prefix, reason in _HELPER_PREFIXES.items():
                    if word.startswith(prefix):
                        helper_reasons.append(f"{reason} ('{word}')")
                        qualifiers.append(word)
            i += 1
            continue
        if tok.kind == "npos":
            nodal = True
            qualifiers.append("n+")
        elif tok.kind == "op" and tok.text in "&|":
            helper_reasons.append("Boolean expression")
        elif tok.kind == "dash" and i > first and _subtracted_word(tokens, i + 1):
            helper_reasons.append(f"subtraction of another structure ('-{tokens[i + 1].text}')")
        elif tok.kind == "mark":
            helper_reasons.append("annotation ('?')")
        i += 1

    doses = explicit_doses or bare_doses
    return TargetName(
        text=name,
        type=target_type,
        classifier=classifier,
        index=index,
        dose_gy=doses[0] if doses else None,
        level=level,
        elective_word=elective,
        nodal=nodal,
        boost=boost,
        helper=bool(helper_reasons),
        helper_reason="; ".join(dict.fromkeys(helper_reasons)) or None,
        qualifiers=tuple(qualifiers),
        site=site,
    )


# --------------------------------------------------------------------------- elective volumes


#: How a reason names the origin of the reference level (nothing when it comes from a name).
_ORIGIN_WORDS: dict[ReferenceSource, str] = {
    "name": "",
    "prescription": "plan prescription",
    "measured": "highest measured median",
}


def _fmt_gy(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _fmt_pct(fraction: float) -> str:
    return f"{100.0 * fraction:.0f}"


def _clean_median(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    median = float(value)
    if not math.isfinite(median):
        return None
    if median < 0.0:
        raise ValueError(f"median dose of {name!r} is negative ({median} Gy)")
    return median


def _check_prescription(prescription_gy: float | None) -> float | None:
    if prescription_gy is None:
        return None
    value = float(prescription_gy)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"prescription must be a positive dose in Gy, got {prescription_gy!r}")
    return value


def _evaluable(targets: Sequence[TargetInfo]) -> list[tuple[TargetInfo, TargetName, float | None]]:
    out: list[tuple[TargetInfo, TargetName, float | None]] = []
    for info in targets:
        parsed = parse_target_name(info.name)
        if parsed is not None and parsed.is_target:
            out.append((info, parsed, _clean_median(info.median_gy, info.name)))
    return out


def _reference(
    entries: Sequence[tuple[TargetInfo, TargetName, float | None]],
    prescription_gy: float | None,
) -> tuple[float | None, ReferenceSource | None]:
    named = [t.dose_gy for _, t, _ in entries if t.dose_gy is not None]
    named_max = max(named) if named else None
    if named_max is not None and (prescription_gy is None or named_max >= prescription_gy):
        return named_max, "name"
    if prescription_gy is not None:
        return prescription_gy, "prescription"
    medians = [m for _, _, m in entries if m is not None]
    if medians:
        return max(medians), "measured"
    return None, None


def reference_level(
    targets: Sequence[TargetInfo], prescription_gy: float | None = None
) -> tuple[float | None, ReferenceSource | None]:
    """The gross-disease dose level: highest named level or prescription, else highest median.

    Parameters
    ----------
    targets
        The plan's structures (non-targets and helper structures are ignored).
    prescription_gy
        The plan's total prescription dose in Gy, if known.

    Returns
    -------
    tuple
        ``(level_gy, source)`` with source ``"name"``, ``"prescription"`` or ``"measured"``;
        ``(None, None)`` when nothing gives a level.
    """
    return _reference(_evaluable(targets), _check_prescription(prescription_gy))


def find_elective_volumes(
    targets: Sequence[TargetInfo],
    prescription_gy: float | None = None,
    *,
    dose_fraction: float = DEFAULT_DOSE_FRACTION,
    nodal_full_dose_fraction: float = DEFAULT_NODAL_FULL_DOSE_FRACTION,
    level_tolerance_gy: float = DEFAULT_LEVEL_TOLERANCE_GY,
    name_doses: bool = True,
) -> list[ElectiveSuspect]:
    """List the targets that look like elective (prophylactic) volumes, with the reasons.

    Parameters
    ----------
    targets
        Every structure of the plan that may be a target (names that are not targets, and
        helper structures, are ignored), with measured medians where available.
    prescription_gy
        The plan's total prescription dose in Gy, if known.
    dose_fraction
        Rule 5 threshold: a median below this fraction of the reference is suspect (0.90).
    nodal_full_dose_fraction
        Rule 2 threshold: a nodal target whose median reaches this fraction of the reference
        is an involved node at full dose (0.95).
    level_tolerance_gy
        Named levels closer than this are the same level (0.5 Gy).
    name_doses
        Read dose levels from the names. False for a plan of several fraction groups,
        where ``PTV3_6 Gy`` names the third phase's dose, not a target level.

    Returns
    -------
    list of ElectiveSuspect
        In the order of ``targets``; empty when nothing looks elective.

    Raises
    ------
    ValueError
        A threshold outside (0, 1], a negative tolerance, a prescription that is not a positive
        dose, or a negative median. A NaN or infinite median counts as not available.
    """
    if not 0.0 < dose_fraction <= 1.0:
        raise ValueError(f"dose_fraction must be in (0, 1], got {dose_fraction}")
    if not 0.0 < nodal_full_dose_fraction <= 1.0:
        raise ValueError(
            f"nodal_full_dose_fraction must be in (0, 1], got {nodal_full_dose_fraction}"
        )
    if not level_tolerance_gy >= 0.0:
        raise ValueError(f"level_tolerance_gy must be >= 0, got {level_tolerance_gy}")
    nodal_full = nodal_full_dose_fraction
    entries = _evaluable(targets)
    if not name_doses:
        entries = [(info, replace(t, dose_gy=None), m) for info, t, m in entries]
    ref, source = _reference(entries, _check_prescription(prescription_gy))
    named_doses = [t.dose_gy for _, t, _ in entries if t.dose_gy is not None]
    others = [t for _, t, _ in entries]

    suspects: list[ElectiveSuspect] = []
    for k, (info, t, median) in enumerate(entries):
        if t.type == "GTV" or t.boost:
            continue
        reasons: list[str] = []
        by_name = by_dose = False
        dose = t.dose_gy
        # Each reason states a number once: the level and the median of one target below
        # the gross-disease level are one sentence, not two that each restate the level.
        name_low = ref is not None and dose is not None and dose < ref - level_tolerance_gy
        median_low = median is not None and ref is not None and median < dose_fraction * ref

        if ref is not None:
            ref_gy = _fmt_gy(ref)
            origin = _ORIGIN_WORDS[source] if source is not None else ""
            # 1. a named dose level below the gross-disease level (with rule 5 when the
            # measured median is low too)
            if name_low and median_low:
                assert dose is not None and median is not None
                reasons.append(
                    f"dose level {_fmt_gy(dose)} Gy in the name ({_fmt_pct(dose / ref)} %) and "
                    f"measured median dose {_fmt_gy(median)} Gy ({_fmt_pct(median / ref)} %) "
                    f"are below the highest target level {ref_gy} Gy"
                    + (f" ({origin})" if origin else "")
                )
                by_name = by_dose = True
            elif name_low:
                assert dose is not None
                reasons.append(
                    f"dose level {_fmt_gy(dose)} Gy in the name is below the highest target "
                    f"level {ref_gy} Gy ({_fmt_pct(dose / ref)} %{origin and '; ' + origin})"
                )
                by_name = True
            # 2. a nodal target prescribed below the gross-disease level (the doses are in
            # the reasons above or below)
            if t.nodal:
                what = f"nodal target ({t.label}{'' if t.classifier == 'n' else ', nodal words'})"
                if name_low:
                    reasons.append(f"{what} prescribed below the gross-disease level")
                    by_name = True
                elif dose is None and median is not None and median < nodal_full * ref:
                    measured = (
                        ""
                        if median_low
                        else f"measured median {_fmt_gy(median)} Gy is "
                        f"{_fmt_pct(median / ref)} % of {ref_gy} Gy; "
                    )
                    reasons.append(
                        f"{what} prescribed below the gross-disease level ({measured}"
                        f"involved nodes at full dose reach {_fmt_pct(nodal_full)} %)"
                    )
                    by_name = by_dose = True

        # 3. a Mid/Low level word while a higher level exists
        if t.level in ("mid", "low"):
            higher = _higher_level(t, others[:k] + others[k + 1 :], level_tolerance_gy)
            if higher is not None:
                word = next(q for q in t.qualifiers if q in _LEVELS)
                meaning = "" if word == t.level else f" ({t.level})"
                reasons.append(
                    f"dose-level word '{word}'{meaning} while a higher level exists ({higher.text})"
                )
                by_name = True

        # 4. the name says elective
        if t.elective_word:
            word = next(q for q in t.qualifiers if _is_elective(q))
            reasons.append(f"name says '{word}'")
            by_name = True

        # 5. measured median well below the gross-disease level (said with rule 1 when the
        # name's level is low too)
        if median_low and not name_low:
            assert median is not None and ref is not None
            origin = _ORIGIN_WORDS[source] if source is not None else ""
            reasons.append(
                f"measured median dose {_fmt_gy(median)} Gy is {_fmt_pct(median / ref)} % of "
                f"the highest target level {_fmt_gy(ref)} Gy{origin and ' (' + origin + ')'}"
            )
            by_dose = True

        if not reasons:
            continue
        notes: list[str] = []
        lower = [d for d in named_doses if dose is not None and d < dose - level_tolerance_gy]
        below_top = ref is not None and dose is not None and dose < ref - level_tolerance_gy
        if t.level == "mid" or (lower and below_top):
            between = ""
            if lower and below_top and dose is not None and ref is not None:
                between = (
                    f" ({_fmt_gy(dose)} Gy, between {_fmt_gy(min(lower))} Gy and {_fmt_gy(ref)} Gy)"
                )
            notes.append(
                f"intermediate dose level{between}: an intermediate-risk volume may be a "
                "deliberate clinical choice; the review's advice to omit prophylactic volumes "
                "does not settle it, review by hand"
            )
        confidence: Confidence = "both" if by_name and by_dose else ("name" if by_name else "dose")
        suspects.append(
            ElectiveSuspect(
                name=info.name,
                reasons=reasons,
                reference_gy=ref,
                reference_source=source,
                confidence=confidence,
                target=t,
                median_gy=median,
                notes=notes,
            )
        )
    return suspects


def _higher_level(
    target: TargetName, others: Sequence[TargetName], tolerance_gy: float
) -> TargetName | None:
    """Another target at a higher level than ``target`` (by level word or named dose)."""
    rank = _LEVEL_RANK[target.level]
    for other in others:
        if _LEVEL_RANK[other.level] > rank or (other.boost and not target.boost):
            return other
        if (
            other.level is None
            and other.dose_gy is not None
            and (target.dose_gy is None or other.dose_gy > target.dose_gy + tolerance_gy)
        ):
            return other
    return None


# --------------------------------------------------------------------------- summary


def targets_summary(
    targets: Sequence[TargetInfo], prescription_gy: float | None = None
) -> TargetsSummary:
    """The targets found, their parsed attributes and the gross-disease level.

    Parameters
    ----------
    targets
        Every structure of the plan that may be a target; names that are not targets are left
        out, helper structures are listed under ``helpers`` with the reason.
    prescription_gy
        The plan's total prescription dose in Gy, if known.

    Returns
    -------
    TargetsSummary
        JSON-ready: ``gross_level_gy``, ``gross_level_source``, ``targets`` (for the report's
        ``facts.targets``) and ``helpers``.
    """
    entries = _evaluable(targets)
    ref, source = _reference(entries, _check_prescription(prescription_gy))
    facts: list[TargetFact] = [
        {
            "name": info.name,
            "type": t.type,
            "classifier": t.classifier,
            "index": t.index,
            "dose_gy": t.dose_gy,
            "level": t.level,
            "nodal": t.nodal,
            "elective_word": t.elective_word,
            "boost": t.boost,
            "median_gy": median,
        }
        for info, t, median in entries
    ]
    helpers: list[HelperFact] = []
    for info in targets:
        parsed = parse_target_name(info.name)
        if parsed is not None and parsed.helper:
            helpers.append({"name": info.name, "reason": parsed.helper_reason or "helper"})
    return {
        "gross_level_gy": ref,
        "gross_level_source": source,
        "targets": facts,
        "helpers": helpers,
    }
