"""Shipped protocols, protocol lookup by id or file, and ``--protocol auto`` selection."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from rtcheck.constraints.protocol import Protocol, load_protocol
from rtcheck.constraints.structures import match_roles
from rtcheck.dicom_io import PlanExport
from rtcheck.errors import EvaluationError, InputError, UsageError


class NoProtocolError(EvaluationError):
    """``--protocol auto`` found no protocol for the plan (exit 3)."""


def shipped_protocol_files() -> dict[str, Path]:
    """The protocol files that ship with rtcheck, by file stem."""
    folder = resources.files("rtcheck") / "protocols"
    out: dict[str, Path] = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".yaml"):
            out[entry.name.removesuffix(".yaml")] = Path(str(entry))
    return dict(sorted(out.items()))


def shipped_protocols() -> list[Protocol]:
    """Every shipped protocol, loaded and validated."""
    return [load_protocol(path) for path in shipped_protocol_files().values()]


def resolve_protocol(spec: str) -> Protocol:
    """A protocol by shipped id, or from a YAML file path.

    Raises
    ------
    UsageError
        When ``spec`` is neither a shipped id nor an existing file.
    """
    path = Path(spec)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise UsageError(f"protocol file {spec} not found")
        return load_protocol(path)
    # Shipped files are named by their protocol's id: load that one file first, and all
    # of them only when its id differs (a rename in progress) or no file has the name.
    named = shipped_protocol_files().get(spec)
    if named is not None and (protocol := load_protocol(named)).id == spec:
        return protocol
    for protocol in shipped_protocols():
        if protocol.id == spec:
            return protocol
    ids = ", ".join(p.id for p in shipped_protocols())
    raise UsageError(f"no shipped protocol '{spec}' (shipped: {ids}); or give a YAML file")


@dataclass(frozen=True)
class Candidate:
    """A protocol considered by auto selection and why it fits or not."""

    protocol: Protocol
    fits: bool
    reasons: tuple[str, ...]


def consider(
    protocol: Protocol, export: PlanExport, aliases: Mapping[str, Sequence[str]] | None = None
) -> Candidate:
    """Whether ``protocol``'s ``select`` criteria hold for the plan, with the reasons."""
    select = protocol.select
    plan = export.plan
    reasons: list[str] = []
    fits = True
    label = plan.label if plan is not None else ""
    if select.labels:
        if any(fnmatch.fnmatchcase(label.casefold(), p.casefold()) for p in select.labels):
            reasons.append(f"label '{label}' matches")
        else:
            fits = False
            reasons.append(f"label '{label}' matches none of {', '.join(select.labels)}")
    if select.fractions is not None:
        n = plan.fractions if plan is not None else None
        if n is not None and select.fractions.contains(n):
            reasons.append(f"{n} fractions in {select.fractions}")
        else:
            fits = False
            reasons.append(f"{n} fractions not in {select.fractions}")
    if select.intents:
        intent = (plan.intent or "").upper() if plan is not None else ""
        if intent in select.intents:
            reasons.append(f"intent {intent}")
        else:
            fits = False
            reasons.append(
                f"intent {intent} not in {', '.join(select.intents)}"
                if intent
                else f"no intent stated (PlanIntent), not {', '.join(select.intents)}"
            )
    if select.requires:
        roles = match_roles(protocol, [r.name for r in export.structures.rois], aliases)
        absent = [r for r in select.requires if r not in roles.matched]
        if absent:
            fits = False
            reasons.append(f"no ROI for {', '.join(absent)}")
        else:
            reasons.append(f"ROIs for {', '.join(select.requires)}")
    if not (select.labels or select.fractions or select.intents or select.requires):
        fits = False
        reasons.append("the protocol has no 'select' criteria: name it with --protocol")
    return Candidate(protocol, fits, tuple(reasons))


def require_external_beam(export: PlanExport) -> None:
    """Refuse a plan the protocols cannot check (brachytherapy), before anything else.

    Raises
    ------
    InputError
        For a brachytherapy plan, naming its RTPLAN.
    """
    plan = export.plan
    if plan is not None and plan.is_brachy:
        raise InputError(
            "brachytherapy plan: rtcheck's protocols are for external-beam radiotherapy "
            "and cannot check it ('rtcheck dvh' still computes its DVHs)",
            plan.file,
        )


@dataclass(frozen=True)
class Choice:
    """What ``--protocol auto`` chose, what else it considered, and whether the plan's
    intent alone decided (for the report's first lines)."""

    chosen: Candidate
    others: tuple[Candidate, ...] = ()
    #: The plan's PlanIntent (upper case), "" when it states none.
    intent: str = ""

    @property
    def protocol(self) -> Protocol:
        """The chosen protocol."""
        return self.chosen.protocol

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why the chosen protocol fits."""
        return self.chosen.reasons

    @property
    def intent_note(self) -> str | None:
        """A sentence when the plan's intent alone decided between protocols, else None.

        Either the chosen protocol is selected by intent and another protocol fits the plan
        too (a palliative SABR plan: ``palliative`` over ``sabr-lung``), or a protocol
        failed only on intent (a curative SABR plan is not checked as palliative).
        """
        chosen = self.chosen.protocol
        also = [c.protocol.id for c in self.others if c.fits]
        if chosen.select.intents and also:
            return (
                f"the plan's intent decided: {chosen.id} is for intent "
                f"{'/'.join(chosen.select.intents)}, and {', '.join(also)} would fit this plan "
                f"otherwise; {chosen.id}'s rules apply, not {', '.join(also)}'s"
            )
        only_intent = [
            c.protocol
            for c in self.others
            if not c.fits
            and c.protocol.select.intents
            and sum(1 for r in c.reasons if _is_failure(r)) == 1
            and any(r.startswith(("intent ", "no intent stated")) for r in c.reasons)
        ]
        if only_intent:
            names = ", ".join(
                f"{p.id} (for intent {'/'.join(p.select.intents)})" for p in only_intent
            )
            if not self.intent:
                return f"the plan states no intent: checked as {chosen.id}, not as {names}"
            return f"the plan's intent decided: {chosen.id} rather than {names}"
        return None

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form: chosen id and reasons, the others with theirs."""
        return {
            "chosen": self.chosen.protocol.id,
            "reasons": list(self.chosen.reasons),
            "intent_decided": self.intent_note,
            "considered": [
                {"id": c.protocol.id, "fits": c.fits, "reasons": list(c.reasons)}
                for c in self.others
            ],
        }

    def lines(self) -> list[str]:
        """The selection in words, for the first lines of a report."""
        out = [f"Selected by --protocol auto: {'; '.join(self.chosen.reasons)}"]
        if self.intent_note:
            out.append(f"Intent: {self.intent_note}")
        rejected = [c for c in self.others if not c.fits]
        if rejected:
            out.append(
                "Not selected: "
                + "; ".join(
                    f"{c.protocol.id} ({', '.join(r for r in c.reasons if _is_failure(r))})"
                    for c in rejected
                )
            )
        lower = [c.protocol.id for c in self.others if c.fits]
        if lower:
            out.append(f"Also fitting, lower priority: {', '.join(lower)}")
        return out


#: Words in a :func:`consider` reason that say a criterion failed.
_FAILURE_WORDS = (
    " not in ",
    "matches none",
    "no ROI for",
    "no 'select' criteria",
    "no intent stated",
)


def _is_failure(reason: str) -> bool:
    return any(w in reason for w in _FAILURE_WORDS)


def select_protocol(
    export: PlanExport,
    protocols: Sequence[Protocol],
    aliases: Mapping[str, Sequence[str]] | None = None,
) -> Choice:
    """The protocol ``--protocol auto`` uses: the fitting one of highest priority.

    Returns
    -------
    Choice
        The chosen candidate and every other one considered, with their reasons.

    Raises
    ------
    NoProtocolError
        When none fits, or two of the same priority fit; the message says why.
    InputError
        For a plan no protocol can check (brachytherapy).
    """
    require_external_beam(export)
    candidates = [consider(p, export, aliases) for p in protocols]
    fitting = [c for c in candidates if c.fits]
    if not fitting:
        detail = "; ".join(f"{c.protocol.id}: {', '.join(c.reasons)}" for c in candidates)
        raise NoProtocolError(
            f"no protocol matches this plan ({detail}); name one with --protocol ID or FILE"
        )
    top = max(c.protocol.select.priority for c in fitting)
    best = [c for c in fitting if c.protocol.select.priority == top]
    if len(best) > 1:
        ids = ", ".join(c.protocol.id for c in best)
        raise NoProtocolError(
            f"several protocols match this plan equally ({ids}); name one with --protocol ID"
        )
    intent = (export.plan.intent or "").strip().upper() if export.plan is not None else ""
    return Choice(best[0], tuple(c for c in candidates if c is not best[0]), intent)
