"""Checking every plan of an archive: ``rtcheck batch ROOT --out DIR``.

Four steps, each usable on its own:

1. :func:`discover` finds the plans under ROOT. ROOT is either one export folder (it holds
   files itself) or an archive of folders (it holds only folders, e.g. one per patient).
   Each top-level folder is scanned with :func:`rtcheck.dicom_io.find_exports`, recursively,
   so a patient folder may hold several plans, nested as deep as the planning system
   likes, with the CT anywhere inside. When the scan of a folder fails (an ambiguity, a
   dose whose plan is missing...) and that folder holds only sub-folders, each sub-folder
   is scanned on its own, so one broken plan folder does not hide its siblings; the split
   is kept only when it finds a plan, else the folder's own error is reported. A folder
   that cannot be scanned becomes one ``error`` row; the batch goes on.
2. :func:`prepare_jobs` gives each plan a :class:`PlanJob` with its report file names:
   ``<patient>/<plan>``, both sanitised by :func:`safe_name` (no path separators, no
   ``..``, no control characters, ``[A-Za-z0-9._-]`` only, at most 64 characters, no
   Windows device names); two plans that would share a name (same label, or labels that
   sanitise alike) get a short hash of their SOP Instance UID appended, two patient IDs
   that sanitise alike a hash of the ID.
3. :func:`execute` runs :func:`check_one` on every job, in a process pool
   (``executor="process"``) or on a Dask distributed cluster (``executor="dask"``, the
   optional extra ``rtcheck[dask]``). :func:`check_one` is a pure top-level function: it
   loads the plan, picks or uses the protocol, checks it, writes ``<plan>.json`` (schema
   ``rtcheck.report/1``) and, when :mod:`rtcheck.reports.html` is present, ``<plan>.html``,
   and returns a small picklable :class:`PlanOutcome`. Any exception becomes an ``error``
   outcome; a worker process that dies (e.g. out of memory) too.
4. :func:`write_index` and :func:`write_summary_csv` write ``index.html`` (self-contained,
   sortable) and ``summary.csv`` (one row per plan: its verdict, the rules that failed,
   deviated a little or could not be evaluated, and how ``--protocol auto`` chose).

:func:`run_batch` does all four. Nothing under ROOT is ever written to: an output folder
inside ROOT (or containing it) is refused, and so is one that is not empty (an earlier
run's reports), unless ``overwrite`` is given.
"""

from __future__ import annotations

import hashlib
import html
import importlib
import multiprocessing
import os
import re
import traceback
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from rtcheck import __version__
from rtcheck.constraints.protocol import Protocol
from rtcheck.dicom_io import EXPLICIT_HINT, ExportSet
from rtcheck.errors import InputError, InputErrors, MissingExtraError, RtcheckError, UsageError
from rtcheck.output_files import (
    prepare_folder,
    remove_stale_temporaries,
    write_error,
    write_text,
)
from rtcheck.reports.csv_writer import render_csv

if TYPE_CHECKING:
    from rtcheck.constraints.engine import CheckResult
    from rtcheck.dvh import DVH

__all__ = [
    "EXECUTORS",
    "BatchResult",
    "Discovery",
    "PlanJob",
    "PlanOutcome",
    "check_one",
    "discover",
    "execute",
    "prepare_jobs",
    "render_index",
    "render_summary_csv",
    "run_batch",
    "safe_name",
    "worst_verdict",
    "write_index",
    "write_summary_csv",
]

#: The ways :func:`execute` can run the jobs.
EXECUTORS = ("process", "dask")
#: Longest file or folder name :func:`safe_name` returns (before a disambiguating suffix).
MAX_NAME_LENGTH = 64
#: How deep :func:`discover` splits folders whose scan failed.
MAX_SPLIT_DEPTH = 8
#: Verdicts, from best to worst.
VERDICTS = ("pass", "fail", "error")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_DOTS = re.compile(r"\.{2,}")
_UNDERSCORES = re.compile(r"_{2,}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"COM{i}" for i in range(10)}
    | {f"LPT{i}" for i in range(10)}
)
#: Names at the top of the output folder that a patient folder must not take.
_RESERVED_OUTPUT = frozenset({"index.html", "summary.csv"})
_CSV_COLUMNS = (
    "patient_id",
    "plan_label",
    "plan_sop_instance_uid",
    "protocol",
    "selection",
    "selection_note",
    "verdict",
    "major",
    "minor",
    "not_evaluated",
    "failed_rules",
    "minor_rules",
    "not_evaluated_rules",
    "json_report",
    "html_report",
    "source",
    "message",
)


# --------------------------------------------------------------------------------------
# Data model
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanJob:
    """Everything :func:`check_one` needs to check one plan (picklable).

    Parameters
    ----------
    export
        The plan's linked files, as found by :func:`rtcheck.dicom_io.find_exports`.
    source
        The folder of the plan file, relative to ROOT (POSIX form), for the summary.
    out
        The output folder (absolute).
    patient_dir, stem
        Sanitised names: the reports are ``out/patient_dir/stem.json`` (and ``.html``).
    protocol
        The protocol to check against; None picks one among the shipped protocols
        (``--protocol auto``).
    aliases
        Institution alias patterns by role, already loaded, or None.
    aliases_file
        The alias file's name, for error messages.
    strict
        Minor deviations fail the plan too.
    between_planes
        Structure model between contour planes (``"slab"`` or ``"shape"``).
    prescription
        ``(total Gy, fractions)`` to use for plans that state no prescription
        (``--prescription``), or None.
    threads
        DVHs computed at once within the plan's check (see
        :func:`rtcheck.analysis.in_threads`); None: as many as the CPUs allow. The
        process pool sets 1 when it runs several plans at once: its workers already
        keep the CPUs busy.
    """

    export: ExportSet
    source: str
    out: Path
    patient_dir: str
    stem: str
    protocol: Protocol | None = None
    aliases: Mapping[str, tuple[str, ...]] | None = None
    aliases_file: str | None = None
    strict: bool = False
    between_planes: str = "shape"
    prescription: tuple[float, int] | None = None
    threads: int | None = None


@dataclass(frozen=True)
class PlanOutcome:
    """The summary of one plan (or one folder that could not be scanned).

    Parameters
    ----------
    patient_id, plan_label, plan_uid
        As read from the DICOM files (empty for a folder that could not be scanned).
    source
        The folder the plan was found in, relative to ROOT (POSIX form; ``.`` is ROOT).
    verdict
        ``pass``, ``fail`` or ``error``.
    protocol_id
        The protocol the plan was checked against, when it got that far.
    major, minor, not_evaluated
        Counts of rule results with that status.
    json_report, html_report
        The reports written, relative to the output folder (POSIX form), or None.
    message
        Why the verdict is ``error`` (the exception, or the rules not evaluated).
    notes
        Remarks that do not change the verdict (e.g. HTML report not written).
    detail
        The traceback of an unexpected exception (shown with ``--debug``).
    failed_rules
        Ids of the rules that failed the plan, each once: those with a major deviation
        first, then (with ``--strict``) those with a minor one.
    minor_rules
        Ids of the rules whose worst deviation is minor (an acceptable variation; it
        fails the plan only with ``--strict``).
    not_evaluated_rules
        Ids of the rules that could not be evaluated (the reasons are in ``message``).
    selection
        How ``--protocol auto`` chose the protocol: the reasons it fits the plan (empty
        when the protocol was named).
    selection_note
        When the plan's intent alone decided between protocols, the sentence that says
        so (:attr:`rtcheck.constraints.registry.Choice.intent_note`), else None.
    """

    patient_id: str
    plan_label: str
    plan_uid: str
    source: str
    verdict: str
    protocol_id: str | None = None
    major: int = 0
    minor: int = 0
    not_evaluated: int = 0
    json_report: str | None = None
    html_report: str | None = None
    message: str = ""
    notes: tuple[str, ...] = ()
    detail: str | None = None
    failed_rules: tuple[str, ...] = ()
    minor_rules: tuple[str, ...] = ()
    not_evaluated_rules: tuple[str, ...] = ()
    selection: tuple[str, ...] = ()
    selection_note: str | None = None


@dataclass(frozen=True)
class Discovery:
    """What :func:`discover` found under ROOT.

    ``plans`` pairs each export set with its folder relative to ROOT; ``errors`` are the
    folders that could not be scanned (as ``error`` outcomes); ``warnings`` are the scans'
    warnings prefixed with their folder (skipped files, plans without a dose...).
    """

    root: Path
    plans: list[tuple[str, ExportSet]] = field(default_factory=list)
    errors: list[PlanOutcome] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BatchResult:
    """The outcome of :func:`run_batch`: one outcome per plan, sorted, and where they went."""

    root: Path
    out: Path
    outcomes: list[PlanOutcome]
    warnings: list[str]

    @property
    def verdict(self) -> str:
        """The worst verdict of the batch (``pass`` when it holds no plan at all)."""
        return worst_verdict(self.outcomes)

    @property
    def counts(self) -> dict[str, int]:
        """How many plans got each verdict."""
        return {v: sum(o.verdict == v for o in self.outcomes) for v in VERDICTS}


def worst_verdict(outcomes: Iterable[PlanOutcome]) -> str:
    """``error`` if any outcome is an error, else ``fail`` if any fails, else ``pass``."""
    worst = 0
    for outcome in outcomes:
        worst = max(worst, VERDICTS.index(outcome.verdict))
    return VERDICTS[worst]


# --------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------


def safe_name(text: str, fallback: str, max_length: int = MAX_NAME_LENGTH) -> str:
    """A file or folder name made from DICOM text that cannot escape its folder.

    Accents are dropped (``é`` → ``e``), every run of other characters outside
    ``[A-Za-z0-9._-]`` becomes ``_`` (path separators and control characters included),
    runs of dots become one dot, leading and trailing ``. _ -`` are removed (no hidden
    files, no ``..``, no trailing dot that Windows drops), the result is cut to
    ``max_length`` and Windows device names (``CON``, ``NUL``, ``COM1``...) get a ``_``
    prefix.

    Parameters
    ----------
    text
        The patient ID or plan label.
    fallback
        Used when nothing of ``text`` is left (must itself be safe).
    max_length
        Longest result.

    Returns
    -------
    str
        A non-empty name.
    """
    name = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    name = _UNSAFE.sub("_", name)
    name = _DOTS.sub(".", name)
    name = _UNDERSCORES.sub("_", name)
    name = name.strip("._-")[:max_length].rstrip("._-")
    if not name:
        name = fallback
    if name.split(".")[0].upper() in _WINDOWS_RESERVED:
        name = f"_{name}"[:max_length]
    return name


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def _unique_names(keys: Sequence[str], bases: Sequence[str], reserved: frozenset[str]) -> list[str]:
    """One name per item: ``bases[i]``, or with a hash of ``keys[i]`` when names collide.

    Names are compared case-insensitively (Windows and macOS file systems). Items sharing
    a base all get ``-<hash of key>``; anything still colliding (same key twice) gets
    ``-2``, ``-3``... in order.
    """
    groups: dict[str, set[str]] = defaultdict(set)
    for key, base in zip(keys, bases, strict=True):
        groups[base.casefold()].add(key)
    taken: set[str] = set()
    names = []
    for key, base in zip(keys, bases, strict=True):
        name = base
        if len(groups[base.casefold()]) > 1 or base.casefold() in reserved:
            name = f"{base}-{_short_hash(key)}"
        candidate, n = name, 1
        while candidate.casefold() in taken or candidate.casefold() in reserved:
            n += 1
            candidate = f"{name}-{n}"
        taken.add(candidate.casefold())
        names.append(candidate)
    return names


# --------------------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------------------


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _entries(folder: Path) -> list[Path]:
    """The visible entries of a folder; none when it cannot be listed."""
    try:
        return sorted(p for p in folder.iterdir() if _visible(p))
    except OSError:
        return []


def subfolders(folder: Path) -> list[Path]:
    """The visible subfolders of ``folder``, sorted."""
    return [p for p in _entries(folder) if p.is_dir()]


def holds_files(folder: Path) -> bool:
    """Whether the folder holds files itself (hidden files and DICOMDIR do not count)."""
    return any(p.is_file() and p.name.upper() != "DICOMDIR" for p in _entries(folder))


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix() or "."
    except ValueError:
        return path.as_posix()


#: The advice of the folder scan's linking errors, which names options of ``check`` and
#: ``dvh``, as it reads in a batch or watch row (whose commands lack those options).
_EXPLICIT_ADVICE = (
    "check that plan alone, naming its files: "
    "rtcheck check --structures RS.dcm --dose RD.dcm [--plan RP.dcm]"
)


def _error_message(exc: BaseException) -> str:
    if isinstance(exc, InputErrors):
        message = "; ".join(str(e) for e in exc.errors)
    elif isinstance(exc, RtcheckError):
        message = str(exc).replace("\n", "; ")
    else:
        return f"internal error: {type(exc).__name__}: {exc}".replace("\n", "; ")
    return message.replace(EXPLICIT_HINT, _EXPLICIT_ADVICE)


#: Maps a function over folders, results in the folders' order (``Executor.map``).
FolderMapper = Callable[
    [Callable[[Path], "tuple[list[ExportSet], list[str]] | None"], Sequence[Path]],
    Iterable["tuple[list[ExportSet], list[str]] | None"],
]


def discover(root: str | Path, map_folders: FolderMapper | None = None) -> Discovery:
    """Find every plan under ``root`` (see the module docstring for the folder rules).

    Parameters
    ----------
    root
        The archive (or one export folder).
    map_folders
        Scans the patient folders elsewhere (``executor.map``, e.g. the process pool that
        then checks the plans): each folder's headers are read by :func:`scan_unit`; a
        folder whose scan failed is scanned again here, split into its subfolders. The
        result is the same as without it, in the same order.

    Returns
    -------
    Discovery
        The plans with their folders, the folders that could not be scanned as ``error``
        outcomes, and the scans' warnings.

    Raises
    ------
    InputError
        ``root`` is missing, not a folder, or empty.
    """
    base = Path(root).resolve()
    if not base.is_dir():
        reason = "not a folder: give the archive folder" if base.exists() else "folder not found"
        raise InputError(reason, base)
    found = Discovery(base)
    if holds_files(base):
        units = [base]
    else:
        units = subfolders(base)
        if not units:
            raise InputError("the folder is empty: no patient folders or DICOM files", base)
    scanned: Iterable[tuple[list[ExportSet], list[str]] | None] = [None] * len(units)
    if map_folders is not None and len(units) > 1:
        scanned = map_folders(scan_unit, units)
    for unit, result in zip(units, scanned, strict=True):
        scan_folder(unit, base, found, depth=0, scanned=result)
    found.plans.sort(key=lambda p: (p[1].patient_id, p[1].plan_label, p[0], p[1].plan_uid))
    return found


def scan_unit(folder: Path) -> tuple[list[ExportSet], list[str]] | None:
    """:func:`rtcheck.dicom_io.find_exports` of one folder, or None when its scan failed
    on the input (the caller then scans it itself, split into its subfolders)."""
    from rtcheck.dicom_io import find_exports

    try:
        return find_exports(folder)
    except (InputError, InputErrors):
        return None


def scan_folder(
    folder: Path,
    root: Path,
    found: Discovery,
    depth: int,
    scanned: tuple[list[ExportSet], list[str]] | None = None,
) -> bool:
    """Scan one folder into ``found`` (``scanned``: its :func:`scan_unit`, done already);
    True when it gave at least one plan."""
    from rtcheck.dicom_io import find_exports

    where = _relative(folder, root)
    try:
        sets, warnings = find_exports(folder) if scanned is None else scanned
    except (InputError, InputErrors) as exc:
        # One broken plan folder must not hide its siblings: scan the subfolders one by one.
        children = [] if depth >= MAX_SPLIT_DEPTH else subfolders(folder)
        if len(children) > 1:
            trial = Discovery(root)
            if any([scan_folder(child, root, trial, depth + 1) for child in children]):
                found.plans.extend(trial.plans)
                found.errors.extend(trial.errors)
                found.warnings.extend(trial.warnings)
                if holds_files(folder):
                    loose = sorted(p.name for p in _entries(folder) if p.is_file())
                    found.warnings.append(
                        f"{where}: files directly in this folder were not checked (its scan "
                        f"failed; its subfolders were checked one by one): {', '.join(loose)}"
                    )
                return True
        found.errors.append(PlanOutcome("", "", "", where, "error", message=_error_message(exc)))
        return False
    found.warnings.extend(f"{where}: {w}" for w in warnings)
    found.plans.extend((_relative(s.plan.parent, root), s) for s in sets)
    return bool(sets)


def prepare_jobs(
    plans: Sequence[tuple[str, ExportSet]],
    out: str | Path,
    protocol: Protocol | None = None,
    aliases: Mapping[str, tuple[str, ...]] | None = None,
    aliases_file: str | None = None,
    strict: bool = False,
    between_planes: str = "shape",
    prescription: tuple[float, int] | None = None,
) -> list[PlanJob]:
    """One job per plan, with sanitised, collision-free report names.

    Parameters
    ----------
    plans
        ``(source folder, export set)`` pairs, e.g. :attr:`Discovery.plans`.
    out
        The output folder.
    protocol, aliases, aliases_file, strict, between_planes, prescription
        As :class:`PlanJob`.

    Returns
    -------
    list of PlanJob
        In the order of ``plans``.
    """
    out_dir = Path(out).resolve()
    patients = sorted({s.patient_id for _, s in plans})
    patient_names = _unique_names(
        patients, [safe_name(p, "unknown-patient") for p in patients], _RESERVED_OUTPUT
    )
    folder_of = dict(zip(patients, patient_names, strict=True))
    by_folder: dict[str, list[int]] = defaultdict(list)
    for i, (_, s) in enumerate(plans):
        by_folder[folder_of[s.patient_id]].append(i)
    stems: dict[int, str] = {}
    for indices in by_folder.values():
        keys = [plans[i][1].plan_uid for i in indices]
        bases = [safe_name(plans[i][1].plan_label, "plan") for i in indices]
        stems.update(zip(indices, _unique_names(keys, bases, frozenset()), strict=True))
    return [
        PlanJob(
            export=s,
            source=source,
            out=out_dir,
            patient_dir=folder_of[s.patient_id],
            stem=stems[i],
            protocol=protocol,
            aliases=aliases,
            aliases_file=aliases_file,
            strict=strict,
            between_planes=between_planes,
            prescription=prescription,
        )
        for i, (source, s) in enumerate(plans)
    ]


# --------------------------------------------------------------------------------------
# One plan
# --------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _shipped() -> tuple[Protocol, ...]:
    from rtcheck.constraints.registry import shipped_protocols

    return tuple(shipped_protocols())


def _html_module() -> ModuleType | None:
    try:
        return importlib.import_module("rtcheck.reports.html")
    except ModuleNotFoundError as exc:
        if exc.name == "rtcheck.reports.html":
            return None
        raise


def _write_text(path: Path, text: str) -> None:
    """Write whole or not at all (:func:`rtcheck.output_files.write_text`): no half-written
    report and no temporary file is left behind; a failure is an InputError naming the
    folder."""
    write_text(path, text)


def _report_path(job: PlanJob, suffix: str) -> Path:
    """The report file of a job, its patient folder created (InputError naming it if not)."""
    out = job.out.resolve()
    path = (out / job.patient_dir / f"{job.stem}{suffix}").resolve()
    if not path.is_relative_to(out) or path.parent.parent != out:  # defence in depth
        raise UsageError(f"report name {job.patient_dir}/{job.stem} leaves the output folder")
    try:
        path.parent.mkdir(exist_ok=True)
    except OSError as exc:
        raise write_error(exc, path.parent, "the plan's reports") from exc
    return path


def _html_dvhs(result: CheckResult) -> dict[str, DVH]:
    """DVHs of every ROI matched to a role, by ROI name: the plot's curves when
    :mod:`rtcheck.reports.html` has no ``report_dvhs`` of its own."""
    from rtcheck.analysis import roi_dvh

    rois = {r.name: r for r in result.export.structures.rois}
    dvhs: dict[str, DVH] = {}
    for names in result.roles.matched.values():
        for name in names:
            roi = rois.get(name)
            if roi is None or name in dvhs or not roi.planes:
                continue
            try:
                dvhs[name] = roi_dvh(result.export, roi, result.between_planes)
            except ValueError:
                continue
    return dvhs


def check_one(job: PlanJob) -> PlanOutcome:
    """Check one plan and write its reports; never raises.

    Loads the plan (:func:`rtcheck.dicom_io.load_export`), picks the protocol (``auto``:
    :func:`rtcheck.constraints.registry.select_protocol` among the shipped ones), checks
    it (:func:`rtcheck.constraints.engine.check_plan`) and writes
    ``out/<patient_dir>/<stem>.json`` (``rtcheck.report/1``) and, when
    :mod:`rtcheck.reports.html` is installed, ``<stem>.html``.

    Parameters
    ----------
    job
        The plan and where its reports go.

    Returns
    -------
    PlanOutcome
        The verdict and counts, or an ``error`` outcome with the message when anything
        raised (an unreadable file, no protocol for the plan, a bug).
    """
    import json

    from rtcheck.constraints.engine import MAJOR, MINOR, NOT_EVALUATED, check_plan
    from rtcheck.constraints.registry import select_protocol
    from rtcheck.constraints.structures import check_alias_roles
    from rtcheck.dicom_io import load_export
    from rtcheck.reports.check import to_json

    s = job.export
    base = PlanOutcome(s.patient_id, s.plan_label, s.plan_uid, job.source, "error")
    protocol_id = None if job.protocol is None else job.protocol.id
    try:
        export = load_export(s)
        protocol, choice = job.protocol, None
        if protocol is None:
            choice = select_protocol(export, _shipped(), job.aliases)
            protocol = choice.protocol
            protocol_id = protocol.id
            if job.aliases is not None:
                check_alias_roles(job.aliases, protocol, job.aliases_file or "aliases")
        result = check_plan(
            export,
            protocol,
            job.aliases,
            strict=job.strict,
            between_planes=job.between_planes,
            prescription=job.prescription,
            selection=choice,
            threads=job.threads,
        )
        json_path = _report_path(job, ".json")
        json_path.parent.mkdir(parents=True, exist_ok=True)
        _write_text(json_path, json.dumps(to_json(result), indent=2) + "\n")
        html_report, notes = None, []
        try:
            module = _html_module()
            if module is None:
                notes.append("HTML report not written: rtcheck.reports.html is not installed")
            else:
                html_path = _report_path(job, ".html")
                dvhs = getattr(module, "report_dvhs", _html_dvhs)(result)
                _write_text(html_path, str(module.render_html(result, dvhs)))
                html_report = _relative(html_path, job.out.resolve())
        except Exception as exc:  # the check stands; the HTML rendering failed
            notes.append(f"HTML report not written: {type(exc).__name__}: {exc}")
        statuses = [r.status for r in result.results]
        major_rules = _rule_ids(result, MAJOR)
        minor_rules = tuple(i for i in _rule_ids(result, MINOR) if i not in major_rules)
        return replace(
            base,
            verdict=result.verdict,
            protocol_id=protocol.id,
            major=statuses.count(MAJOR),
            minor=statuses.count(MINOR),
            not_evaluated=statuses.count(NOT_EVALUATED),
            json_report=_relative(json_path, job.out.resolve()),
            html_report=html_report,
            message="; ".join(result.errors) if result.verdict == "error" else "",
            notes=tuple(notes),
            failed_rules=major_rules + (minor_rules if result.strict else ()),
            minor_rules=minor_rules,
            not_evaluated_rules=_rule_ids(result, NOT_EVALUATED),
            selection=() if choice is None else tuple(choice.reasons),
            selection_note=None if choice is None else choice.intent_note,
        )
    except RtcheckError as exc:
        return replace(base, protocol_id=protocol_id, message=_error_message(exc))
    except Exception as exc:
        return replace(
            base,
            protocol_id=protocol_id,
            message=_error_message(exc),
            detail=traceback.format_exc(),
        )


def _rule_ids(result: CheckResult, status: str) -> tuple[str, ...]:
    """Ids of the rules with a result of ``status``, each once, in the protocol's order."""
    return tuple(dict.fromkeys(r.id for r in result.results if r.status == status))


def _failed(job: PlanJob, message: str) -> PlanOutcome:
    s = job.export
    return PlanOutcome(s.patient_id, s.plan_label, s.plan_uid, job.source, "error", message=message)


# --------------------------------------------------------------------------------------
# Executors
# --------------------------------------------------------------------------------------


def _import_distributed() -> ModuleType:
    try:
        return importlib.import_module("distributed")
    except ImportError as exc:
        raise MissingExtraError("--executor dask", "dask", "dask[distributed]") from exc


def execute(
    jobs: Sequence[PlanJob],
    executor: str = "process",
    workers: int | None = None,
    scheduler: str | None = None,
    on_done: Callable[[PlanOutcome], None] | None = None,
    pool: ProcessPoolExecutor | None = None,
) -> list[PlanOutcome]:
    """Run :func:`check_one` on every job, in parallel.

    Parameters
    ----------
    jobs
        From :func:`prepare_jobs`.
    executor
        ``process``: a :class:`concurrent.futures.ProcessPoolExecutor` of ``workers``
        processes (spawned, default :func:`os.cpu_count`). A worker that dies (e.g. killed
        for memory) breaks the pool: the plans it took down are then rerun one by one,
        each in a fresh process, and the one that kills its process again is an
        ``error``. ``dask``: the jobs are mapped on the Dask distributed cluster at
        ``scheduler`` (its workers need rtcheck installed and ROOT and the output folder
        at the same paths). Dask's nannies start workers with
        ``MALLOC_TRIM_THRESHOLD_=65536``, which makes the DVH computation about 2.5 times
        slower; unset it on the cluster with the Dask setting
        ``distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_: null``.
    workers
        Size of the process pool (ignored by ``dask``: the cluster has its own).
    scheduler
        The Dask scheduler address, e.g. ``tcp://10.0.0.5:8786``.
    on_done
        Called with each outcome as it arrives (in completion order), in this process.
    pool
        For ``process``: a pool of spawned workers to use (see :func:`worker_pool`)
        instead of a new one; the caller shuts it down.

    Returns
    -------
    list of PlanOutcome
        In the order of ``jobs``.

    Notes
    -----
    The process pool spawns its workers (no ``fork`` of a threaded parent), so a script
    calling this must guard its entry point with ``if __name__ == "__main__":``.

    Raises
    ------
    UsageError
        Unknown executor, or ``dask`` without a scheduler or with one that cannot be
        reached.
    MissingExtraError
        ``dask`` without ``dask[distributed]`` installed.
    """
    _validate_executor(executor, scheduler, workers)
    if not jobs:
        return []
    if executor == "dask":
        assert scheduler is not None
        return _run_dask(jobs, scheduler, on_done)
    return _run_pool(jobs, workers or os.cpu_count() or 1, on_done, pool)


def worker_pool(workers: int | None) -> ProcessPoolExecutor:
    """A pool of ``workers`` (default :func:`os.cpu_count`) spawned processes, for
    :func:`discover` and :func:`execute` to share: its workers start once, while the
    archive is scanned, and are then warm for the checks."""
    context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
    return ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1, mp_context=context)


def _validate_executor(executor: str, scheduler: str | None, workers: int | None) -> None:
    if executor not in EXECUTORS:
        raise UsageError(f"unknown executor '{executor}': choose {' or '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, not {workers}")
    if executor == "dask":
        if not scheduler:
            raise UsageError("--executor dask needs --scheduler ADDRESS (e.g. tcp://host:8786)")
        _import_distributed()
    elif scheduler:
        raise UsageError("--scheduler is only used with --executor dask")


def _run_pool(
    jobs: Sequence[PlanJob],
    workers: int,
    on_done: Callable[[PlanOutcome], None] | None,
    shared: ProcessPoolExecutor | None = None,
) -> list[PlanOutcome]:
    context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
    outcomes: dict[int, PlanOutcome] = {}
    orphans: list[int] = []

    def done(i: int, outcome: PlanOutcome) -> None:
        outcomes[i] = outcome
        if on_done is not None:
            on_done(outcome)

    if min(workers, len(jobs)) > 1:  # the workers share the CPUs: one DVH at a time each
        jobs = [replace(job, threads=1) for job in jobs]
    pool = shared or ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context)
    try:
        futures: dict[Future[PlanOutcome], int] = {
            pool.submit(check_one, job): i for i, job in enumerate(jobs)
        }
        for future in as_completed(futures):
            i = futures[future]
            try:
                done(i, future.result())
            except BrokenProcessPool:
                orphans.append(i)
            except Exception as exc:  # e.g. a job that cannot be pickled
                done(i, _failed(jobs[i], _error_message(exc)))
    except BaseException:  # Ctrl-C: drop the queued plans instead of waiting for them
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    if shared is None:
        pool.shutdown()
    for i in sorted(orphans):
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as solo:
            try:
                outcome = solo.submit(check_one, jobs[i]).result()
            except BrokenProcessPool:
                outcome = _failed(
                    jobs[i],
                    "the worker process checking this plan died (out of memory?); "
                    "check it alone with rtcheck check",
                )
            except Exception as exc:
                outcome = _failed(jobs[i], _error_message(exc))
        done(i, outcome)
    return [outcomes[i] for i in range(len(jobs))]


def _run_dask(
    jobs: Sequence[PlanJob], scheduler: str, on_done: Callable[[PlanOutcome], None] | None
) -> list[PlanOutcome]:
    distributed: Any = _import_distributed()
    try:
        client = distributed.Client(scheduler)
    except (OSError, TimeoutError) as exc:
        raise UsageError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
    outcomes: dict[int, PlanOutcome] = {}
    with client:
        futures = client.map(check_one, list(jobs), pure=False)
        index = {future.key: i for i, future in enumerate(futures)}
        for future in distributed.as_completed(futures):
            i = index[future.key]
            try:
                outcome = future.result()
            except Exception as exc:  # e.g. KilledWorker: the plan killed its workers
                outcome = _failed(jobs[i], _error_message(exc))
            outcomes[i] = outcome
            if on_done is not None:
                on_done(outcome)
    return [outcomes[i] for i in range(len(jobs))]


# --------------------------------------------------------------------------------------
# Index and summary
# --------------------------------------------------------------------------------------


def _sort_key(o: PlanOutcome) -> tuple[str, str, str, str]:
    return (o.patient_id, o.plan_label, o.source, o.plan_uid)


def _display(text: str) -> str:
    """DICOM text for display: control characters removed, then HTML-escaped."""
    return html.escape(_CONTROL.sub("", text), quote=True)


def _link(path: str | None, label: str) -> str:
    if path is None:
        return ""
    return f'<a href="{html.escape(quote(path), quote=True)}">{label}</a>'


_INDEX_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eee; cursor: pointer; user-select: none; white-space: nowrap; }
th[data-order="asc"]::after { content: " \\25B2"; }
th[data-order="desc"]::after { content: " \\25BC"; }
td.num { text-align: right; }
.verdict { font-weight: bold; text-transform: uppercase; }
.pass { background: #d4edda; color: #155724; }
.fail { background: #f8d7da; color: #721c24; }
.error { background: #fff3cd; color: #856404; }
.note { color: #666; font-size: 0.9em; }
"""

_INDEX_SCRIPT = """
document.querySelectorAll("table.sortable th").forEach(function (th, column) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0];
    var ascending = th.dataset.order !== "asc";
    th.parentNode.querySelectorAll("th").forEach(function (h) { delete h.dataset.order; });
    th.dataset.order = ascending ? "asc" : "desc";
    var numeric = th.dataset.type === "num";
    var key = function (row) {
      var cell = row.cells[column];
      return cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent;
    };
    var rows = Array.prototype.slice.call(body.rows).sort(function (a, b) {
      var x = key(a), y = key(b);
      var c = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
      return ascending ? c : -c;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
"""


def _rules_cell(o: PlanOutcome) -> str:
    """The rules of a plan, by status: ``failed: a, b`` / ``minor: c`` / ``not evaluated: d``."""
    minor = [i for i in o.minor_rules if i not in o.failed_rules]
    lines = [
        (label, ids)
        for label, ids in (
            ("failed", o.failed_rules),
            ("minor", minor),
            ("not evaluated", o.not_evaluated_rules),
        )
        if ids
    ]
    return "".join(
        f'<div class="rules">{label}: {_display(", ".join(ids))}</div>' for label, ids in lines
    )


def render_index(
    outcomes: Sequence[PlanOutcome], root: str | Path, warnings: Sequence[str] = ()
) -> str:
    """The ``index.html`` of a batch: one sortable row per plan, links to its reports.

    Each row gives the protocol (with why ``--protocol auto`` chose it), the counts, the
    rules by status (``failed: ...``, ``minor: ...``, ``not evaluated: ...``) and the
    message. Self-contained (inline style and script, nothing fetched); every DICOM string is
    escaped with :func:`html.escape`.
    """
    rows = sorted(outcomes, key=_sort_key)
    counts = {v: sum(o.verdict == v for o in rows) for v in VERDICTS}
    worst = worst_verdict(rows)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = []
    for o in rows:
        reports = " ".join(
            x for x in (_link(o.json_report, "JSON"), _link(o.html_report, "HTML")) if x
        )
        remarks = _display(o.message)
        if o.notes:
            remarks += "".join(f'<div class="note">{_display(n)}</div>' for n in o.notes)
        plan = _display(o.plan_label) if o.plan_label else "<em>(folder not readable)</em>"
        if not o.plan_label and o.plan_uid:
            plan = "<em>(no label)</em>"
        protocol = _display(o.protocol_id or "")
        if o.selection:
            protocol += f'<div class="note">auto: {_display("; ".join(o.selection))}</div>'
        if o.selection_note:
            protocol += f'<div class="note">{_display(o.selection_note)}</div>'
        body.append(
            "<tr>"
            f"<td>{_display(o.patient_id)}</td>"
            f"<td>{_link(o.html_report or o.json_report, plan) or plan}</td>"
            f'<td class="{o.verdict} verdict" data-sort="{VERDICTS.index(o.verdict)}">'
            f"{o.verdict}</td>"
            f"<td>{protocol}</td>"
            f'<td class="num">{o.major}</td><td class="num">{o.minor}</td>'
            f'<td class="num">{o.not_evaluated}</td>'
            f"<td>{_rules_cell(o)}</td>"
            f"<td>{reports}</td>"
            f"<td>{_display(o.source)}</td>"
            f'<td title="{_display(o.plan_uid)}">{remarks}</td>'
            "</tr>"
        )
    warning_items = "".join(f"<li>{_display(w)}</li>" for w in warnings)
    warning_block = (
        f"<h2>Scan warnings ({len(warnings)})</h2><ul>{warning_items}</ul>" if warnings else ""
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        "<title>rtcheck batch</title>"
        f"<style>{_INDEX_STYLE}</style></head><body>\n"
        f'<h1>rtcheck batch: <span class="{worst} verdict">{worst}</span></h1>\n'
        f"<p>{len(rows)} plan(s): {counts['pass']} pass, {counts['fail']} fail, "
        f"{counts['error']} error. Archive {_display(str(root))}; rtcheck {__version__}; "
        f"{generated}. Click a column header to sort.</p>\n"
        '<table class="sortable"><thead><tr>'
        '<th>Patient</th><th>Plan</th><th data-type="num">Verdict</th><th>Protocol</th>'
        '<th data-type="num">Major</th><th data-type="num">Minor</th>'
        '<th data-type="num">Not evaluated</th><th>Rules</th><th>Reports</th><th>Folder</th>'
        "<th>Message</th>"
        "</tr></thead><tbody>\n" + "\n".join(body) + "\n</tbody></table>\n"
        f"{warning_block}\n<script>{_INDEX_SCRIPT}</script>\n</body></html>\n"
    )


def write_index(
    out: str | Path,
    outcomes: Sequence[PlanOutcome],
    root: str | Path,
    warnings: Sequence[str] = (),
) -> Path:
    """Write ``out/index.html`` (see :func:`render_index`); returns its path."""
    path = Path(out) / "index.html"
    _write_text(path, render_index(outcomes, root, warnings))
    return path


def render_summary_csv(outcomes: Sequence[PlanOutcome]) -> str:
    """``summary.csv``: one row per plan (columns: see ``_CSV_COLUMNS``), sorted.

    ``selection`` holds why ``--protocol auto`` chose the protocol (``; ``-separated,
    empty when it was named), ``selection_note`` the sentence saying the plan's intent
    alone decided, when it did; ``failed_rules``, ``minor_rules`` and
    ``not_evaluated_rules`` the rule ids of :class:`PlanOutcome` (``, ``-separated, major
    deviations first). Written by :func:`rtcheck.reports.csv_writer.render_csv`: text that a
    spreadsheet would run as a formula (OWASP CSV injection) starts with ``'``.
    """
    rows = [
        [
            o.patient_id,
            o.plan_label,
            o.plan_uid,
            o.protocol_id,
            "; ".join(o.selection),
            o.selection_note,
            o.verdict,
            o.major,
            o.minor,
            o.not_evaluated,
            ", ".join(o.failed_rules),
            ", ".join(o.minor_rules),
            ", ".join(o.not_evaluated_rules),
            o.json_report,
            o.html_report,
            o.source,
            o.message,
        ]
        for o in sorted(outcomes, key=_sort_key)
    ]
    return render_csv(_CSV_COLUMNS, rows)


def write_summary_csv(out: str | Path, outcomes: Sequence[PlanOutcome]) -> Path:
    """Write ``out/summary.csv`` (see :func:`render_summary_csv`); returns its path."""
    path = Path(out) / "summary.csv"
    _write_text(path, render_summary_csv(outcomes))
    return path


# --------------------------------------------------------------------------------------
# Everything
# --------------------------------------------------------------------------------------


def check_out_folder(root: Path, out: Path) -> None:
    """Refuse an output folder that overlaps the archive, or is a file (UsageError)."""
    if out == root or out.is_relative_to(root) or root.is_relative_to(out):
        raise UsageError(
            f"the output folder {out} and the archive {root} overlap: rtcheck never writes "
            "into the archive; choose an output folder outside it"
        )
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file: --out needs a folder")


def _written(path: Path) -> str:
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return ""
    return datetime.fromtimestamp(mtime, UTC).strftime(" (written %Y-%m-%d %H:%M UTC)")


def earlier_output(out: Path) -> str | None:
    """What an output folder already holds, in words, or None when it is new or empty.

    Hidden files (a ``.DS_Store``, a temporary file of a run that was killed) do not
    count.
    """
    entries = _entries(out) if out.is_dir() else []
    if not entries:
        return None
    names = {p.name for p in entries}
    parts = []
    run_files = [n for n in ("index.html", "summary.csv") if n in names]
    if run_files:
        parts.append(
            f"{' and '.join(run_files)} of an earlier rtcheck batch run"
            + _written(out / run_files[0])
        )
    if names & {"ledger.sqlite", "watch.log", "serve.log"}:
        parts.append("the ledger and log of rtcheck watch or serve")
    known = set(run_files) | {"ledger.sqlite", "watch.log", "serve.log"}
    others = sorted(n for n in names if n not in known)
    if others:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        parts.append(f"{len(others)} other file(s) or folder(s): {shown}")
    return "; ".join(parts)


def check_earlier_output(out: Path, overwrite: bool) -> None:
    """Refuse an output folder that is not empty, unless ``overwrite`` (UsageError).

    The message names the folder and what it holds (the index and summary of an earlier
    run and when they were written, patient folders...).
    """
    held = earlier_output(out)
    if held is not None and not overwrite:
        raise UsageError(
            f"{out}: the output folder is not empty: it holds {held}. Give --overwrite to "
            "write this run's reports over it (same-named files are replaced, nothing else "
            "is removed), or choose a new or empty output folder"
        )


def run_batch(
    root: str | Path,
    out: str | Path,
    protocol: str = "auto",
    workers: int | None = None,
    executor: str = "process",
    scheduler: str | None = None,
    aliases: str | Path | None = None,
    strict: bool = False,
    between_planes: str = "shape",
    prescription: tuple[float, int] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_done: Callable[[PlanOutcome], None] | None = None,
    overwrite: bool = False,
) -> BatchResult:
    """Check every plan under ``root`` and write the reports, index and summary to ``out``.

    Parameters
    ----------
    root
        The archive (see :func:`discover`); only read.
    out
        The output folder (created; must not overlap ``root``). A folder that is not
        empty (the reports of an earlier run) is refused unless ``overwrite``.
    protocol
        ``auto`` (each plan gets the shipped protocol its ``select`` criteria pick), a
        shipped protocol id, or a protocol YAML file.
    workers, executor, scheduler
        See :func:`execute`.
    aliases
        An institution alias file (YAML ``ROLE: [pattern, ...]``).
    strict
        Minor deviations fail a plan too.
    between_planes
        Structure model between contour planes for every DVH (``"slab"`` or ``"shape"``).
    prescription
        ``(total Gy, fractions)`` for the plans that state no prescription of their own.
    on_start
        Called once, before checking starts, with the number of outcomes to come (plans
        found and folders that could not be scanned).
    on_done
        Called with each plan's outcome as it arrives.
    overwrite
        Write into an output folder that is not empty: this run's reports, ``index.html``
        and ``summary.csv`` replace same-named files; nothing else is removed (reports of
        plans this run does not check stay, and the index lists only this run).

    Returns
    -------
    BatchResult
        Every outcome (folders that could not be scanned included), sorted by patient
        and plan; ``verdict`` is the worst.

    Raises
    ------
    UsageError, ProtocolError, MissingExtraError
        Before anything is checked or written: bad options, an output folder that is not
        empty without ``overwrite``, an unknown protocol, a malformed protocol or alias
        file, dask not installed.
    InputError
        ``root`` missing, not a folder or empty; the output folder cannot be created or
        written (refused before any plan is checked), or writing ``summary.csv`` or
        ``index.html`` failed (a full disk): the message names the folder, and no
        temporary file is left. A plan whose reports cannot be written is an ``error``
        row naming its folder.
    """
    from rtcheck.constraints.registry import resolve_protocol
    from rtcheck.constraints.structures import aliases_for

    root_dir = Path(root).resolve()
    out_dir = Path(out).resolve()
    _validate_executor(executor, scheduler, workers)
    check_out_folder(root_dir, out_dir)
    check_earlier_output(out_dir, overwrite)
    fixed = None if protocol == "auto" else resolve_protocol(protocol)
    alias_map = aliases_for(aliases, fixed)
    shared = _SharedPool(workers) if executor == "process" else None
    try:
        found = discover(root_dir, None if shared is None else shared.map_folders)
        jobs = prepare_jobs(
            found.plans,
            out_dir,
            fixed,
            alias_map,
            None if aliases is None else str(aliases),
            strict,
            between_planes,
            prescription,
        )
        prepare_folder(out_dir)  # a folder that cannot be written is refused before a check
        remove_stale_temporaries(out_dir)
        if on_start is not None:
            on_start(len(jobs) + len(found.errors))
        if on_done is not None:
            for error in found.errors:
                on_done(error)
        pool = None if shared is None else shared.pool
        checked = execute(jobs, executor, workers, scheduler, on_done, pool)
    except BaseException:  # Ctrl-C included: do not wait for the plans being checked
        if shared is not None:
            shared.close(wait=False)
        raise
    if shared is not None:
        shared.close()
    outcomes = sorted([*found.errors, *checked], key=_sort_key)
    write_summary_csv(out_dir, outcomes)
    write_index(out_dir, outcomes, root_dir, found.warnings)
    return BatchResult(root_dir, out_dir, outcomes, list(found.warnings))


class _SharedPool:
    """The worker pool of a ``process`` batch, started (lazily) for the archive scan and
    kept for the checks; a pool broken during the scan is replaced (the folders it did
    not scan are scanned in this process)."""

    def __init__(self, workers: int | None) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    @property
    def pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = worker_pool(self.workers)
        return self._pool

    def map_folders(
        self,
        scan: Callable[[Path], tuple[list[ExportSet], list[str]] | None],
        folders: Sequence[Path],
    ) -> list[tuple[list[ExportSet], list[str]] | None]:
        if (self.workers or os.cpu_count() or 1) < 2:
            return [None] * len(folders)  # one worker: scanning here costs no more
        try:
            return list(self.pool.map(scan, folders))
        except BrokenProcessPool:
            self.close()
            return [None] * len(folders)

    def close(self, wait: bool = True) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=not wait)
            self._pool = None
