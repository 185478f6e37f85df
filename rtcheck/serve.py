"""A DICOM storage node the planning system exports to: ``rtcheck serve``.

Three parts, each usable on its own:

- :class:`Inbox` stores received objects under ``OUT/incoming/<StudyInstanceUID>/<KIND>/
  <SOPInstanceUID>.dcm`` (``KIND`` is ``RTPLAN``, ``RTDOSE``, ``RTSTRUCT``, ``CT`` or
  ``MR``). Each object is written to ``OUT/incoming/.partial/`` first, flushed to disk and
  renamed into place: a study folder never holds a half-written file. An object already
  stored with identical bytes is not written again (a resend is no new arrival); with
  other bytes it replaces the stored one (a new version of the plan).
- :func:`export_readiness` tells from the headers of a study's RT objects whether its
  plans can be checked: every RT dose's plan and every such plan's structure set present.
- :class:`Checker` checks the plans of one study folder with the machinery of
  ``rtcheck watch`` (:func:`rtcheck.batch.scan_folder`, :func:`rtcheck.batch.check_one`,
  :func:`rtcheck.watch.plan_version` and the :class:`rtcheck.watch.Ledger`): the same
  reports (``OUT/<patient>/<plan>-<version>.json`` and ``.html``), the same ledger, so
  ``rtcheck history --out OUT`` works unchanged; each plan version is checked once.

:func:`run_serve` ties them to a pynetdicom Storage SCP (the optional extra
``rtcheck[serve]``): a study is looked at when nothing new arrived for it for ``settle``
seconds and no association that delivered part of it is still open (an SCU that keeps its
association open is waited for at most :data:`OPEN_HOLD_FACTOR` times ``settle`` seconds
without news); when it is ready its plans are checked, when it is not (a dose whose plan has
not arrived: exports are often split across associations) it waits for the rest, and is
checked anyway, to record the error, after ``incomplete_timeout`` seconds without news.
On start, every study changed since it was last checked to the end (``incoming/.state``
keeps a signature of its files) is looked at again: what arrived while no check ran is
checked, what was checked is skipped by the ledger. Checks run one at a time in the
calling thread; pynetdicom serves each association in a thread of its own. A stop
(SIGTERM) ends listening at once, lets the check in progress finish, gives open
associations :data:`CLOSE_GRACE` seconds, then aborts them. One JSON line per association
and per check goes to the stream and ``OUT/serve.log``, with IDs, UIDs and AE titles only.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib
import json
import os
import re
import socket
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import IO, Any

from rtcheck.batch import Discovery, PlanJob, check_one, prepare_jobs, scan_folder
from rtcheck.constraints.protocol import Protocol
from rtcheck.errors import InputError, MissingExtraError, UsageError
from rtcheck.output_files import prepare_folder, remove_stale_temporaries
from rtcheck.watch import LEDGER_NAME, Ledger, plan_version, stop_on_signals

__all__ = [
    "DEFAULT_AE_TITLE",
    "DEFAULT_PORT",
    "INCOMING",
    "LOG_NAME",
    "STORAGE_CLASSES",
    "Checker",
    "Inbox",
    "JsonLog",
    "Readiness",
    "StoreResult",
    "export_readiness",
    "run_serve",
]

#: Folder of ``OUT`` that receives the objects.
INCOMING = "incoming"
#: The event log in ``OUT``.
LOG_NAME = "serve.log"
DEFAULT_PORT = 11112
DEFAULT_AE_TITLE = "RTCHECK"
#: Associations served at once (more are rejected as transient: the sender retries).
MAX_ASSOCIATIONS = 32
#: Seconds before a study whose check could not be recorded (e.g. disk full) is retried.
RETRY_AFTER = 30.0
#: Seconds given to open associations to finish after a stop request, before an abort.
CLOSE_GRACE = 3.0
#: A study with an association still open that delivered part of it waits at most this
#: many ``settle`` periods without news before it is looked at anyway.
OPEN_HOLD_FACTOR = 10.0

RT_PLAN = "1.2.840.10008.5.1.4.1.1.481.5"
RT_ION_PLAN = "1.2.840.10008.5.1.4.1.1.481.8"
RT_DOSE = "1.2.840.10008.5.1.4.1.1.481.2"
RT_STRUCT = "1.2.840.10008.5.1.4.1.1.481.3"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
VERIFICATION = "1.2.840.10008.1.1"
#: The storage SOP classes accepted, with the folder their objects go to.
STORAGE_CLASSES: dict[str, str] = {
    RT_PLAN: "RTPLAN",
    RT_ION_PLAN: "RTPLAN",
    RT_DOSE: "RTDOSE",
    RT_STRUCT: "RTSTRUCT",
    CT_IMAGE: "CT",
    MR_IMAGE: "MR",
}
_RT_KINDS = ("RTPLAN", "RTDOSE", "RTSTRUCT")

# Transfer syntaxes: uncompressed, deflated and RLE (which rtcheck decodes itself) for
# everything; images (only their headers are read) in any syntax. The first one the sender
# proposes in this order is chosen: explicit VR first (it carries every element's VR).
_NATIVE_SYNTAXES = [
    "1.2.840.10008.1.2.1",  # explicit VR little endian
    "1.2.840.10008.1.2",  # implicit VR little endian
    "1.2.840.10008.1.2.1.99",  # deflated explicit VR little endian
    "1.2.840.10008.1.2.2",  # explicit VR big endian
    "1.2.840.10008.1.2.5",  # RLE lossless
]

# DIMSE statuses of a C-STORE (PS3.4 B.2.3).
STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_DATASET_MISMATCH = 0xA900
STATUS_CANNOT_UNDERSTAND = 0xC000

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # no backslash, no control characters
#: Report folder names a patient ID must not take in ``OUT`` (they hold the node's own files).
_RESERVED_NAMES = frozenset({INCOMING, LEDGER_NAME, LOG_NAME, "watch.log"})


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _uid_name(uid: str) -> str:
    """A file or folder name for a UID: the UID itself, or a hash of a malformed one."""
    if _UID.match(uid) and len(uid) <= 64:
        return uid
    return "x" + hashlib.sha256(uid.encode("utf-8", "replace")).hexdigest()[:40]


# --------------------------------------------------------------------------------------
# Event log
# --------------------------------------------------------------------------------------


class JsonLog:
    """One JSON line per event, to a stream and a file; safe to call from any thread.

    Every line has ``ts``, ``event``, ``patient_id``, ``plan_uid``, ``verdict`` and
    ``report`` (as ``rtcheck watch`` writes them) and the event's own fields. Callers pass
    IDs and UIDs only, never names.

    Parameters
    ----------
    stream
        Where each line is written (e.g. stderr).
    file
        A file each line is appended to, or None. A failure to append (disk full) is
        ignored: the stream still gets the line.
    """

    def __init__(self, stream: IO[str], file: Path | None = None) -> None:
        self._stream = stream
        self._file = file
        self._lock = threading.Lock()

    def __call__(
        self,
        event: str,
        patient_id: str = "",
        plan_uid: str = "",
        verdict: str | None = None,
        report: str | None = None,
        **extra: Any,
    ) -> None:
        """Log one event."""
        record: dict[str, Any] = {
            "ts": _utc_now(),
            "event": event,
            "patient_id": patient_id,
            "plan_uid": plan_uid,
            "verdict": verdict,
            "report": report,
            **extra,
        }
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        with self._lock:
            with contextlib.suppress(OSError, ValueError):  # a closed or full stream
                self._stream.write(line)
                self._stream.flush()
            if self._file is not None:
                with contextlib.suppress(OSError), self._file.open("a", encoding="utf-8") as fh:
                    fh.write(line)


# --------------------------------------------------------------------------------------
# Storing
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreResult:
    """What :meth:`Inbox.store` did with one object.

    ``state`` is ``stored`` (new), ``replaced`` (same SOP instance, other bytes) or
    ``duplicate`` (same bytes as stored before: nothing written); ``study`` is the study
    folder's name.
    """

    state: str
    study: str
    path: Path


class Inbox:
    """The received objects, one folder per study (see the module docstring).

    Parameters
    ----------
    root
        ``OUT/incoming`` (created when missing).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.partial = root / ".partial"
        self.state = root / ".state"
        self._lock = threading.Lock()

    def prepare(self) -> None:
        """Create the folders; remove temporary files a crashed run left behind."""
        for folder in (self.root, self.partial, self.state):
            folder.mkdir(parents=True, exist_ok=True)
        for leftover in self.partial.iterdir():
            with contextlib.suppress(OSError):
                leftover.unlink()

    def studies(self) -> list[Path]:
        """The study folders, sorted."""
        return sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def store(
        self,
        sop_class_uid: str,
        sop_instance_uid: str,
        study_uid: str,
        transfer_syntax_uid: str,
        dataset: bytes,
    ) -> StoreResult:
        """Write one object as a DICOM file (preamble, file meta, then ``dataset``).

        Parameters
        ----------
        sop_class_uid
            One of :data:`STORAGE_CLASSES`.
        sop_instance_uid, study_uid
            The object's UIDs.
        transfer_syntax_uid
            The transfer syntax ``dataset`` is encoded in.
        dataset
            The encoded data set, as received.

        Returns
        -------
        StoreResult

        Raises
        ------
        OSError
            The file could not be written (disk full, permissions...): nothing is left
            half-written.
        KeyError
            ``sop_class_uid`` is not a storage class this node accepts.
        """
        from pydicom.dataset import FileMetaDataset
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_file_meta_info
        from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID

        kind = STORAGE_CLASSES[sop_class_uid]
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(sop_class_uid)
        meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
        meta.TransferSyntaxUID = UID(transfer_syntax_uid)
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID  # fixed: same bytes on resend
        header = DicomBytesIO()
        header.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(header, meta, enforce_standard=True)
        content = header.getvalue() + dataset
        study = _uid_name(study_uid)
        target = self.root / study / kind / f"{_uid_name(sop_instance_uid)}.dcm"
        temporary = self.partial / f"{uuid.uuid4().hex}.tmp"
        try:
            with temporary.open("wb") as fh:
                fh.write(content)
                fh.flush()
                os.fsync(fh.fileno())
            with self._lock:
                if _same_bytes(target, content):
                    return StoreResult("duplicate", study, target)
                existed = target.exists()
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(temporary, target)
        finally:
            with contextlib.suppress(OSError):
                temporary.unlink()
        return StoreResult("replaced" if existed else "stored", study, target)

    def signature(self, study: str) -> str:
        """A digest of a study folder's files (names, sizes, modification times)."""
        digest = hashlib.sha256()
        folder = self.root / study
        for p in sorted(folder.rglob("*")):
            with contextlib.suppress(OSError):
                st = p.stat()
                if p.is_file():
                    name = p.relative_to(folder).as_posix()
                    digest.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return digest.hexdigest()

    def processed(self, study: str) -> str | None:
        """The signature of the study when it was last checked to the end, or None."""
        try:
            return (self.state / study).read_text(encoding="ascii").strip() or None
        except OSError:
            return None

    def mark_processed(self, study: str, signature: str) -> None:
        """Remember that the study, as of ``signature``, was checked to the end."""
        temporary = self.partial / f"{uuid.uuid4().hex}.state"
        temporary.write_text(signature + "\n", encoding="ascii")
        os.replace(temporary, self.state / study)


def _same_bytes(path: Path, content: bytes) -> bool:
    """Whether ``path`` holds exactly ``content``."""
    try:
        if path.stat().st_size != len(content):
            return False
        with path.open("rb") as fh:
            return fh.read() == content
    except OSError:
        return False


# --------------------------------------------------------------------------------------
# Readiness of a study
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Readiness:
    """Whether a study's plans can be checked.

    ``state`` is ``ready``, ``incomplete`` (``missing`` says what is awaited, by UID) or
    ``empty`` (no RT plan and no RT dose: images or structures only, nothing to check).
    """

    state: str
    missing: tuple[str, ...] = ()


def _header(path: Path, tags: list[str]) -> Any:
    from pydicom import dcmread

    return dcmread(path, stop_before_pixels=True, specific_tags=tags)


def _first_ref(ds: Any, sequence: str) -> str:
    items = ds.get(sequence) or []
    return str(items[0].get("ReferencedSOPInstanceUID", "")).strip() if items else ""


def export_readiness(study: Path) -> Readiness:
    """Whether the RT objects received for a study link up (see :class:`Readiness`).

    Ready when every RT dose's plan is there and every plan with a dose has its structure
    set there. Files that cannot be read count as ready: the check reports them.

    Parameters
    ----------
    study
        The study folder (``KIND/<uid>.dcm`` files, as :class:`Inbox` writes them).

    Returns
    -------
    Readiness
    """
    plans: dict[str, str] = {}
    doses: list[tuple[str, str]] = []
    structures: set[str] = set()
    try:
        for kind in _RT_KINDS:
            folder = study / kind
            for path in sorted(folder.glob("*.dcm")) if folder.is_dir() else []:
                ds = _header(
                    path,
                    [
                        "SOPInstanceUID",
                        "ReferencedRTPlanSequence",
                        "ReferencedStructureSetSequence",
                    ],
                )
                uid = str(ds.get("SOPInstanceUID", "")).strip()
                if kind == "RTPLAN":
                    plans[uid] = _first_ref(ds, "ReferencedStructureSetSequence")
                elif kind == "RTDOSE":
                    doses.append((uid, _first_ref(ds, "ReferencedRTPlanSequence")))
                else:
                    structures.add(uid)
    except Exception:  # unreadable: let the check say what is wrong
        return Readiness("ready")
    if not plans and not doses:
        return Readiness("empty")
    missing = [
        f"RT plan {plan} (referenced by RT dose {dose})"
        for dose, plan in doses
        if plan and plan not in plans
    ]
    dosed = {plan for _, plan in doses if plan in plans}
    missing += [
        f"RT structure set {plans[plan]} (referenced by RT plan {plan})"
        for plan in sorted(dosed)
        if plans[plan] and plans[plan] not in structures
    ]
    if missing:  # one dangling link fails the scan of the whole study: wait for it
        return Readiness("incomplete", tuple(missing))
    if not dosed and all(plan for _, plan in doses):  # plans without any dose yet
        return Readiness("incomplete", tuple(f"an RT dose of RT plan {p}" for p in sorted(plans)))
    return Readiness("ready")


# --------------------------------------------------------------------------------------
# Checking
# --------------------------------------------------------------------------------------


@dataclass
class Checker:
    """Checks the plans of study folders once per plan version, as ``rtcheck watch`` does.

    Parameters
    ----------
    incoming
        ``OUT/incoming``.
    out
        The output folder: reports and ``ledger.sqlite``.
    protocol
        The protocol to check against, or None for ``auto``.
    log
        The event logger.
    between_planes
        Structure model between contour planes (:data:`rtcheck.dvh.BETWEEN_PLANES`).
    prescription
        ``(total Gy, fractions)`` for plans that state no prescription, or None.
    aliases, aliases_file
        An institution alias map and the file it came from, or None.
    strict
        Minor deviations fail a plan too.
    """

    incoming: Path
    out: Path
    protocol: Protocol | None
    log: Callable[..., None]
    between_planes: str = "shape"
    prescription: tuple[float, int] | None = None
    aliases: Mapping[str, tuple[str, ...]] | None = None
    aliases_file: str | None = None
    strict: bool = False
    ledger: Ledger = field(init=False)

    def __post_init__(self) -> None:
        self.ledger = Ledger(self.out / LEDGER_NAME, command="serve")

    def close(self) -> None:
        """Close the ledger."""
        self.ledger.close()

    def check_study(
        self,
        study: Path,
        stop: threading.Event | None = None,
        current: Callable[[], str] | None = None,
    ) -> bool:
        """Check the plans of one study folder not checked before.

        Parameters
        ----------
        study
            The study folder.
        stop
            When set, no further plan is started.
        current
            The study's signature now (:meth:`Inbox.signature`); when it changes during a
            scan or a check that fails, the failure is not final: the study is looked at
            again once it settles (an object replaced under the check).

        Returns
        -------
        bool
            True when every plan was dealt with, False when ``stop`` cut the work short.

        Raises
        ------
        InputError
            The ledger or the output folder cannot be written (a full disk...): the plan
            is left to be checked again.
        """
        before = current() if current is not None else ""
        found = Discovery(self.incoming)
        scan_folder(study, self.incoming, found, depth=0)
        if found.errors and current is not None and current() != before:
            self.log("retry", verdict="error", study_uid=study.name, reason="the study changed")
            found.errors.clear()
        for error in found.errors:
            self._record_scan_error(study, error.message)
        todo = []
        for source, export in found.plans:
            key = plan_version(export)
            if not self.ledger.done(key):
                todo.append((source, export, key))
        jobs = prepare_jobs(
            [(source, export) for source, export, _ in todo],
            self.out,
            self.protocol,
            self.aliases,
            self.aliases_file,
            self.strict,
            between_planes=self.between_planes,
            prescription=self.prescription,
        )
        for (_, _, key), job in zip(todo, jobs, strict=True):
            if stop is not None and stop.is_set():
                return False
            patient_dir = job.patient_dir
            if patient_dir.casefold() in _RESERVED_NAMES:
                digest = hashlib.sha256(job.export.patient_id.encode()).hexdigest()[:8]
                patient_dir = f"{patient_dir}-{digest}"
            job = replace(job, patient_dir=patient_dir, stem=f"{job.stem}-{key[:8]}")
            changed = None if current is None else (lambda: current() != before)
            self._check(job, key, study.name, changed)
        return True

    def _record_scan_error(self, study: Path, message: str) -> None:
        digest = hashlib.sha256(b"serve study\0" + study.name.encode())
        for p in sorted(x for x in study.rglob("*") if x.is_file()):
            digest.update(p.relative_to(study).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(p.read_bytes()).digest())
        key = digest.hexdigest()
        if self.ledger.done(key):
            return
        source = f"{INCOMING}/{study.name}"
        self.ledger.start(key, "", "", "", source)
        self.ledger.finish(key, "error", None, message)
        self.log(
            "error",
            verdict="error",
            study_uid=study.name,
            version=key[:16],
            reason=self._scrub(message),
        )

    def _check(
        self, job: PlanJob, key: str, study: str, changed: Callable[[], bool] | None
    ) -> None:
        s = job.export
        self.log("detected", s.patient_id, s.plan_uid, study_uid=study, version=key[:16])
        self.ledger.start(key, s.patient_id, s.plan_label, s.plan_uid, f"{INCOMING}/{job.source}")
        outcome = check_one(job)
        ids = {"study_uid": study, "version": key[:16]}
        if outcome.verdict == "error" and outcome.json_report is None:
            message = outcome.message
            about_input = message.startswith((f"{self.incoming}:", f"{self.incoming}{os.sep}"))
            if not about_input and message.startswith((f"{self.out}:", f"{self.out}{os.sep}")):
                # The reports could not be written: not the plan's fault, check it again.
                self.ledger.interrupted(key, message)
                raise InputError(f"the reports cannot be written: {message}", self.out)
            if changed is not None and changed():
                self.ledger.interrupted(key, f"the study changed during the check: {message}")
                self.log("retry", s.patient_id, s.plan_uid, "error", **ids)
                return
        self.ledger.finish(key, outcome.verdict, outcome.json_report, outcome.message)
        extra: dict[str, Any] = {}
        if outcome.verdict == "error":
            extra["reason"] = self._scrub(outcome.message)
        if outcome.failed_rules:  # as rtcheck watch logs them
            extra["failed_rules"] = list(outcome.failed_rules)
        self.log(
            "error" if outcome.verdict == "error" else "checked",
            s.patient_id,
            s.plan_uid,
            outcome.verdict,
            outcome.json_report,
            html=outcome.html_report,
            **ids,
            **extra,
        )

    def _scrub(self, message: str) -> str:
        """A message for the log: paths relative to the output folder, at most 500 characters."""
        return message.replace(str(self.out) + os.sep, "")[:500]


# --------------------------------------------------------------------------------------
# Arrivals and settling
# --------------------------------------------------------------------------------------


@dataclass
class _Study:
    last_arrival: float
    due: float
    changed: bool = True
    logged_missing: tuple[str, ...] = ()
    open_associations: int = 0


class _Arrivals:
    """When each study last received something, and which are due for a look.

    A study is due ``settle`` seconds after its last arrival, but not while an association
    that delivered part of it is still open: on a loaded machine or a slow link the gap
    between two objects of one association can pass ``settle``, and the study would be
    looked at half sent. An association held open past ``OPEN_HOLD_FACTOR * settle``
    seconds without news no longer holds it back.
    """

    def __init__(self, settle: float) -> None:
        self.settle = settle
        self.wake = threading.Event()
        self._lock = threading.Lock()
        self._studies: dict[str, _Study] = {}

    def opened(self, study: str) -> None:
        """An association delivered the first object of ``study`` it carries."""
        now = time.monotonic()
        with self._lock:
            state = self._studies.get(study)
            if state is None:  # a resend of what is stored: nothing to look at yet
                state = self._studies[study] = _Study(now, now + self.settle, changed=False)
            state.open_associations += 1

    def closed(self, studies: Iterable[str]) -> None:
        """An association that delivered objects of ``studies`` closed."""
        with self._lock:
            for study in studies:
                state = self._studies.get(study)
                if state is not None and state.open_associations > 0:
                    state.open_associations -= 1
        self.wake.set()

    def _due(self, state: _Study) -> float:
        if state.open_associations > 0:
            return max(state.due, state.last_arrival + OPEN_HOLD_FACTOR * self.settle)
        return state.due

    def arrived(self, study: str, age: float = 0.0) -> None:
        now = time.monotonic()
        with self._lock:
            last = now - age
            state = self._studies.get(study)
            if state is None:
                self._studies[study] = _Study(last, last + self.settle)
            else:
                state.last_arrival, state.due, state.changed = last, last + self.settle, True
        self.wake.set()

    def claim(self) -> tuple[str | None, float | None]:
        """The next study due (no longer marked changed), or the seconds until one is."""
        now = time.monotonic()
        with self._lock:
            pending = [(self._due(s), name) for name, s in self._studies.items() if s.changed]
            if not pending:
                return None, None
            due, name = min(pending)
            if due > now:
                return None, due - now
            self._studies[name].changed = False
            return name, None

    def defer(self, study: str, until: float) -> None:
        """Look at the study again at ``until`` (monotonic), unless something arrives first."""
        with self._lock:
            state = self._studies[study]
            if not state.changed:
                state.due, state.changed = until, True

    def last_arrival(self, study: str) -> float:
        with self._lock:
            return self._studies[study].last_arrival

    def note_missing(self, study: str, missing: tuple[str, ...]) -> bool:
        """Remember what a study waits for; True when that is news (to be logged)."""
        with self._lock:
            state = self._studies[study]
            news = state.logged_missing != missing
            state.logged_missing = missing
            return news


# --------------------------------------------------------------------------------------
# The storage SCP
# --------------------------------------------------------------------------------------


@dataclass
class _Association:
    calling_ae: str
    called_ae: str
    peer: str
    opened: float
    outcome: str = "closed"
    stored: int = 0
    replaced: int = 0
    duplicates: int = 0
    refused: int = 0
    failed: int = 0
    studies: set[str] = field(default_factory=set)
    closed: bool = False


class _Node:
    """The pynetdicom event handlers: store, count, log."""

    def __init__(self, inbox: Inbox, arrivals: _Arrivals, log: JsonLog) -> None:
        self.inbox = inbox
        self.arrivals = arrivals
        self.log = log
        self._lock = threading.Lock()
        # By association object, weakly: a record lives as long as its association, so
        # a C-STORE served after the connection closed (pynetdicom closes in another
        # thread) still finds its record, marked closed.
        self._associations: weakref.WeakKeyDictionary[Any, _Association] = (
            weakref.WeakKeyDictionary()
        )

    def _record(self, event: Any) -> _Association:
        assoc = event.assoc
        with self._lock:
            record = self._associations.get(assoc)
            if record is None:
                requestor = assoc.requestor
                record = _Association(
                    calling_ae=str(getattr(requestor, "ae_title", "") or "").strip(),
                    called_ae=str(getattr(assoc.acceptor, "ae_title", "") or "").strip(),
                    peer=f"{requestor.address}:{requestor.port}",
                    opened=time.monotonic(),
                )
                self._associations[assoc] = record
            return record

    def on_open(self, event: Any) -> None:
        self._record(event)
        # Small DIMSE responses go out at once, not held back by Nagle's algorithm.
        with contextlib.suppress(AttributeError, OSError):
            event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def on_outcome(self, event: Any) -> None:
        record = self._record(event)
        record.outcome = {
            "EVT_ACCEPTED": "accepted",
            "EVT_REJECTED": "rejected",
            "EVT_RELEASED": "released",
            "EVT_ABORTED": "aborted",
        }.get(event.event.name, record.outcome)
        if event.event.name in ("EVT_ACCEPTED", "EVT_REJECTED"):
            requestor = event.assoc.requestor
            record.calling_ae = str(requestor.ae_title or "").strip()
            called = getattr(requestor.primitive, "called_ae_title", None)  # as requested
            record.called_ae = str(called or event.assoc.acceptor.ae_title or "").strip()

    def on_close(self, event: Any) -> None:
        record = self._record(event)
        with self._lock:  # with _store's: each study opened before is closed once
            record.closed = True
            self.arrivals.closed(tuple(record.studies))
        self.log(
            "association",
            calling_ae=record.calling_ae,
            called_ae=record.called_ae,
            peer=record.peer,
            outcome="closed" if record.outcome == "accepted" else record.outcome,
            stored=record.stored,
            replaced=record.replaced,
            duplicates=record.duplicates,
            refused=record.refused,
            failed=record.failed,
            studies=sorted(record.studies)[:20],
            seconds=round(time.monotonic() - record.opened, 3),
        )

    def on_store(self, event: Any) -> int:
        record = self._record(event)
        try:
            return self._store(event, record)
        except Exception as exc:  # never let a bug take the association down silently
            record.failed += 1
            self.log("store_failed", status="0xC000", reason=f"{type(exc).__name__}: {exc}")
            return STATUS_CANNOT_UNDERSTAND

    def _refuse(self, record: _Association, status: int, reason: str, sop: str) -> int:
        record.refused += 1
        self.log(
            "refused",
            calling_ae=record.calling_ae,
            sop_instance_uid=sop,
            status=f"0x{status:04X}",
            reason=reason,
        )
        return status

    def _store(self, event: Any, record: _Association) -> int:
        context_class = str(event.context.abstract_syntax)
        transfer_syntax = str(event.context.transfer_syntax)
        request_sop = str(getattr(event.request, "AffectedSOPInstanceUID", "") or "")
        try:
            ds = event.dataset
            sop_class = str(ds.get("SOPClassUID", "")).strip()
            sop = str(ds.get("SOPInstanceUID", "")).strip()
            study = str(ds.get("StudyInstanceUID", "")).strip()
        except Exception as exc:
            return self._refuse(
                record, STATUS_CANNOT_UNDERSTAND, f"data set not decodable: {exc}", request_sop
            )
        if sop_class != context_class:
            reason = f"SOP Class UID {sop_class or '(none)'} is not {context_class}"
            return self._refuse(record, STATUS_DATASET_MISMATCH, reason, sop or request_sop)
        if not sop or not study:
            reason = "no SOP Instance UID" if not sop else "no Study Instance UID"
            return self._refuse(record, STATUS_DATASET_MISMATCH, reason, sop or request_sop)
        try:
            result = self.inbox.store(
                sop_class, sop, study, transfer_syntax, event.encoded_dataset(include_meta=False)
            )
        except OSError as exc:
            record.failed += 1
            self.log(
                "store_failed",
                calling_ae=record.calling_ae,
                sop_instance_uid=sop,
                study_uid=study,
                status=f"0x{STATUS_OUT_OF_RESOURCES:04X}",
                reason=f"{errno.errorcode.get(exc.errno or 0, 'OSError')}: {exc.strerror or exc}",
            )
            return STATUS_OUT_OF_RESOURCES
        with self._lock:
            if result.study not in record.studies:
                record.studies.add(result.study)
                if not record.closed:  # an object served after the close holds nothing
                    self.arrivals.opened(result.study)
        if result.state == "duplicate":
            record.duplicates += 1
        else:
            if result.state == "replaced":
                record.replaced += 1
            else:
                record.stored += 1
            self.arrivals.arrived(result.study)
        return STATUS_SUCCESS

    def handlers(self) -> list[tuple[Any, Callable[..., Any]]]:
        evt: Any = importlib.import_module("pynetdicom").evt
        return [
            (evt.EVT_CONN_OPEN, self.on_open),
            (evt.EVT_ACCEPTED, self.on_outcome),
            (evt.EVT_REJECTED, self.on_outcome),
            (evt.EVT_RELEASED, self.on_outcome),
            (evt.EVT_ABORTED, self.on_outcome),
            (evt.EVT_CONN_CLOSE, self.on_close),
            (evt.EVT_C_STORE, self.on_store),
        ]


def _pynetdicom() -> Any:
    # The optional extra 'serve' is imported by name, so the package type-checks and
    # imports without it.
    try:
        return importlib.import_module("pynetdicom")
    except ImportError as exc:
        raise MissingExtraError("rtcheck serve", "serve", "pynetdicom") from exc


def _application_entity(ae_title: str, allow_ae: Sequence[str]) -> Any:
    pynetdicom = _pynetdicom()
    ae = pynetdicom.AE(ae_title=ae_title)
    ae.maximum_associations = MAX_ASSOCIATIONS
    ae.require_called_aet = True  # a sender configured with another AE title is told so
    if allow_ae:
        ae.require_calling_aet = list(allow_ae)
    ae.add_supported_context(VERIFICATION)
    everything = [str(uid) for uid in getattr(pynetdicom, "ALL_TRANSFER_SYNTAXES", [])]
    images = _NATIVE_SYNTAXES + [uid for uid in everything if uid not in _NATIVE_SYNTAXES]
    for uid, kind in STORAGE_CLASSES.items():
        ae.add_supported_context(uid, images if kind in ("CT", "MR") else _NATIVE_SYNTAXES)
    return ae


def _validate_ae_title(title: str, option: str) -> str:
    if not _AE_TITLE.match(title) or not title.strip():
        raise UsageError(
            f"{option} {title!r}: an AE title has 1 to 16 characters, not all spaces, "
            "without backslash or control characters"
        )
    return title.strip()


def run_serve(
    out: str | Path,
    port: int = DEFAULT_PORT,
    ae_title: str = DEFAULT_AE_TITLE,
    bind: str = "127.0.0.1",
    protocol: str = "auto",
    settle: float = 10.0,
    allow_ae: Sequence[str] = (),
    between_planes: str = "shape",
    prescription: tuple[float, int] | None = None,
    incomplete_timeout: float = 600.0,
    stream: IO[str] | None = None,
    stop: threading.Event | None = None,
    aliases: str | Path | None = None,
    strict: bool = False,
) -> None:
    """Receive exports over DICOM and check each plan once, until stopped.

    Parameters
    ----------
    out
        The output folder: ``incoming/`` (the received objects), the reports,
        ``ledger.sqlite`` and ``serve.log``.
    port
        TCP port to listen on (0: any free port, logged in the ``started`` event).
    ae_title
        This node's AE title (the *called* AE title of the planning system's destination).
    bind
        Address to listen on; loopback unless told otherwise (``0.0.0.0``: every interface).
    protocol
        ``auto``, a shipped protocol id or a protocol YAML file.
    settle
        Seconds without any new object for a study before its plans are checked.
    allow_ae
        Calling AE titles allowed to associate; empty allows every one.
    between_planes
        Structure model between contour planes (:data:`rtcheck.dvh.BETWEEN_PLANES`).
    prescription
        ``(total Gy, fractions)`` for plans that state no prescription, or None.
    incomplete_timeout
        Seconds without news after which a study still missing objects (a dose without its
        plan...) is checked anyway, to record the error in the ledger.
    stream
        Where the JSON event lines go (default stderr).
    stop
        Set to stop (SIGTERM and SIGINT set it too, in the main thread): listening ends at
        once, the check in progress is finished, open associations are given
        :data:`CLOSE_GRACE` seconds, then aborted.
    aliases
        An institution alias file (YAML ``ROLE: [pattern, ...]``), as ``rtcheck batch``.
    strict
        Minor deviations fail a plan too.

    Raises
    ------
    UsageError, ProtocolError
        Bad AE title, port or settle time, an output folder that is a file, a port that
        cannot be listened on, an unknown or malformed protocol or alias file.
    InputError
        The output folder cannot be written or its ledger cannot be used.
    MissingExtraError
        pynetdicom is not installed (``pip install 'rtcheck[serve]'``).
    """
    from rtcheck.constraints.registry import resolve_protocol
    from rtcheck.constraints.structures import aliases_for

    ae_title = _validate_ae_title(ae_title, "--ae-title")
    allowed = [_validate_ae_title(t, "--allow-ae") for t in allow_ae]
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: give a TCP port from 1 to 65535 (0: any free port)")
    if settle < 0 or incomplete_timeout < 0:
        raise UsageError("--settle and --incomplete-timeout are seconds, 0 or more")
    out_dir = Path(out).resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir} is a file: --out needs a folder")
    fixed = None if protocol == "auto" else resolve_protocol(protocol)
    alias_map = aliases_for(aliases, fixed)
    ae = _application_entity(ae_title, allowed)
    prepare_folder(out_dir)  # a folder that cannot be written is refused at once
    remove_stale_temporaries(out_dir)
    inbox = Inbox(out_dir / INCOMING)
    try:
        inbox.prepare()
    except OSError as exc:
        reason = f"cannot prepare the incoming folder: {exc.strerror or exc}"
        raise InputError(reason, inbox.root) from exc
    log = JsonLog(stream or sys.stderr, out_dir / LOG_NAME)
    arrivals = _Arrivals(settle)
    node = _Node(inbox, arrivals, log)
    stop = stop or threading.Event()
    checker = Checker(
        inbox.root,
        out_dir,
        fixed,
        log,
        between_planes,
        prescription,
        alias_map,
        None if aliases is None else str(aliases),
        strict,
    )
    closer: threading.Thread | None = None
    with stop_on_signals(stop):  # kept until the end: a second SIGTERM does not cut it short
        try:
            try:
                server = ae.start_server(
                    (bind, port), block=False, evt_handlers=node.handlers(), ae_title=ae_title
                )
            except OSError as exc:
                raise UsageError(
                    f"cannot listen on {bind}:{port}: {exc.strerror or exc} "
                    "(choose another --port or --bind)"
                ) from exc
            # On stop, listening ends at once and open associations get their grace time
            # while the check in progress finishes.
            closer = threading.Thread(
                target=_close_on_stop, args=(stop, ae, server), name="rtcheck-serve-close"
            )
            closer.start()
            _recover(inbox, arrivals)
            log(
                "started",
                ae_title=ae_title,
                bind=bind,
                port=server.server_address[1],
                settle=settle,
                allow_ae=allowed,
            )
            _check_loop(inbox, arrivals, checker, log, stop, incomplete_timeout)
        finally:
            stop.set()
            if closer is not None:
                closer.join()
            checker.close()
            log("stopped")


def _recover(inbox: Inbox, arrivals: _Arrivals) -> None:
    """Queue every study changed since it was last checked to the end."""
    now = time.time()
    for folder in inbox.studies():
        if inbox.processed(folder.name) == inbox.signature(folder.name):
            continue
        newest = 0.0
        for p in folder.rglob("*"):
            with contextlib.suppress(OSError):
                newest = max(newest, p.stat().st_mtime)
        arrivals.arrived(folder.name, age=max(0.0, now - newest))


def _check_loop(
    inbox: Inbox,
    arrivals: _Arrivals,
    checker: Checker,
    log: JsonLog,
    stop: threading.Event,
    incomplete_timeout: float,
) -> None:
    while not stop.is_set():
        arrivals.wake.clear()
        study, wait = arrivals.claim()
        if study is None:
            arrivals.wake.wait(0.5 if wait is None else min(wait + 0.01, 0.5))
            continue
        folder = inbox.root / study
        signature = inbox.signature(study)
        try:
            readiness = export_readiness(folder)
            if readiness.state == "empty":
                inbox.mark_processed(study, signature)
                continue
            waited = time.monotonic() - arrivals.last_arrival(study)
            if readiness.state == "incomplete" and waited < incomplete_timeout:
                if arrivals.note_missing(study, readiness.missing):
                    log("incomplete", study_uid=study, waiting_for=list(readiness.missing))
                arrivals.defer(study, arrivals.last_arrival(study) + incomplete_timeout)
                continue
            if checker.check_study(folder, stop, partial(inbox.signature, study)):
                inbox.mark_processed(study, signature)
        except Exception as exc:  # e.g. the ledger or a report on a full disk: retry later
            log("error", verdict="error", study_uid=study, reason=f"{type(exc).__name__}: {exc}")
            arrivals.defer(study, time.monotonic() + RETRY_AFTER)


def _close_on_stop(stop: threading.Event, ae: Any, server: Any) -> None:
    """Once ``stop`` is set: stop listening, let open associations finish for a moment,
    then abort them."""
    stop.wait()
    server.shutdown()
    deadline = time.monotonic() + CLOSE_GRACE
    while server.active_associations and time.monotonic() < deadline:
        time.sleep(0.05)
    for assoc in server.active_associations:
        assoc.abort()
    for assoc in server.active_associations:
        assoc.join(timeout=2.0)
    with contextlib.suppress(Exception):
        ae.shutdown()
