"""Watch an export folder and check each plan once its export is complete.

The design is deliberately simple: filesystem events (watchdog, optional) only *wake* a
loop that rescans the export folder; the rescan, the settle logic and the ledger decide
what to check. The unit of settling is a top-level folder of the export folder (a patient
folder), or the export folder itself when it holds files directly, as in
:func:`rtcheck.batch.discover`.

- A unit is *settled* when none of its files changed (size, mtime, ctime) for ``settle``
  seconds. Only then are its headers read (:func:`rtcheck.batch` scanning, i.e.
  :func:`rtcheck.dicom_io.find_exports`) and its plans checked (:func:`rtcheck.batch.check_one`).
- A plan *version* is the SOP Instance UIDs of its plan, structure set and dose(s) with the
  SHA-256 of those files' contents. Each version is checked once; the ledger
  (``OUT/ledger.sqlite``) remembers them across restarts. A unit that cannot be scanned
  at all is recorded once per content version of the unit, as an error.
- A failure is final only when nothing changed meanwhile: a scan or check during which the
  unit changed (a file vanished, was rewritten or added) is recorded as not final and
  redone once the unit settles again. Output that cannot be written (a full disk, a
  read-only folder) and a ledger that cannot be used stop the watcher with an
  :class:`~rtcheck.errors.InputError` naming the folder or file; the interrupted check is
  redone after the restart. Reports are written whole or not at all
  (:mod:`rtcheck.output_files`).
- Nothing in the export folder is ever written, moved or deleted.
- One JSON line per event goes to stderr and ``OUT/watch.log``; they carry IDs and UIDs,
  never patient names or plan labels, with two exceptions the users asked for (issue #12):
  ``waiting``, ``error`` and ``retry`` events name the export ``folder``, relative to the
  watched folder (a folder name the planning system or its user chose, which may hold a
  patient's name), and ``error`` and ``retry`` events give the ``reason``: the error
  message, with the paths inside the watched folder made relative to it. Events:
  ``started``; ``waiting`` once each time an export folder starts changing (``settle_s``
  and a ``reason`` saying what the watcher waits for); ``detected`` and ``checked`` (with
  the ``failed_rules`` of a plan that fails), ``error`` or ``retry`` per plan version;
  ``stopped``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import re
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any

from rtcheck.batch import (
    Discovery,
    PlanJob,
    PlanOutcome,
    check_one,
    check_out_folder,
    holds_files,
    prepare_jobs,
    scan_folder,
    subfolders,
    worst_verdict,
)
from rtcheck.constraints.protocol import Protocol
from rtcheck.dicom_io import ExportSet
from rtcheck.errors import InputError, MissingExtraError, RtcheckError
from rtcheck.output_files import prepare_folder, remove_stale_temporaries

__all__ = [
    "LEDGER_NAME",
    "LOG_NAME",
    "CheckRecord",
    "Ledger",
    "Watcher",
    "plan_version",
    "run_watch",
]

LEDGER_NAME = "ledger.sqlite"
LOG_NAME = "watch.log"
#: Seconds between full rescans when no filesystem event arrives (missed events, shares).
RESCAN_INTERVAL = 30.0
#: Seconds to gather a burst of filesystem events into one rescan.
DEBOUNCE = 0.2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS checks (
    version_key TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL,
    plan_label TEXT NOT NULL,
    plan_uid TEXT NOT NULL,
    source TEXT NOT NULL,
    started_utc TEXT NOT NULL,
    finished_utc TEXT,
    verdict TEXT,
    report TEXT,
    message TEXT
)
"""


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sop_instance_uid(path: Path) -> str:
    from pydicom import dcmread

    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"], force=True)
        return str(ds.get("SOPInstanceUID", ""))
    except Exception:
        return ""


def plan_version(export: ExportSet) -> str:
    """The version key of one plan export.

    Parameters
    ----------
    export
        The linked files of the plan.

    Returns
    -------
    str
        SHA-256 (hex) over the SOP Instance UIDs and content hashes of the plan, its
        structure set and its dose(s): a re-export with any changed content is a new version.
    """
    parts = [
        (role, _sop_instance_uid(p), _sha256(p))
        for role, p in (
            ("plan", export.plan),
            ("structures", export.structures),
            *(("dose", d) for d in sorted(export.doses)),
        )
    ]
    parts.sort()
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


@dataclass(frozen=True)
class CheckRecord:
    """One row of the ledger."""

    version_key: str
    patient_id: str
    plan_label: str
    plan_uid: str
    source: str
    started_utc: str
    finished_utc: str | None
    verdict: str | None
    report: str | None
    message: str | None

    def to_json(self) -> dict[str, str | None]:
        """The record as a JSON-ready mapping."""
        return dict(self.__dict__)


class Ledger:
    """The SQLite record of every check (``OUT/ledger.sqlite``).

    Parameters
    ----------
    path
        The database file (created with its table when absent, unless ``read_only``).
    read_only
        Open without creating or writing anything.
    command
        The command that keeps this ledger (``watch`` or ``serve``), named in the advice
        for a ledger that cannot be read.

    Raises
    ------
    InputError
        Naming the ledger file, whenever SQLite fails on it (a file that is not a
        database, a corrupt one, a full disk, a read-only folder), with what to do.
    """

    def __init__(self, path: Path, read_only: bool = False, command: str = "watch") -> None:
        self.path = path
        self.command = command
        if read_only and not path.is_file():
            raise InputError(
                "no ledger here: run rtcheck watch or rtcheck serve with this --out first", path
            )
        if not read_only:
            prepare_folder(path.parent)
        with self._sqlite():
            if read_only:
                self._db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            else:
                self._db = sqlite3.connect(path)
            try:
                if not read_only:
                    with self._db:
                        self._db.execute(_SCHEMA)
                self._db.execute("SELECT count(*) FROM checks").fetchone()
            except sqlite3.Error:
                self._db.close()  # no open file left behind (an unmountable folder)
                raise

    @contextlib.contextmanager
    def _sqlite(self) -> Iterator[None]:
        """SQLite failures as an InputError naming the ledger and what to do."""
        try:
            yield
        except sqlite3.Error as exc:
            if isinstance(exc, sqlite3.DatabaseError) and not isinstance(
                exc, sqlite3.OperationalError
            ):
                again = (
                    "every export of its inbox"
                    if self.command == "serve"
                    else "every plan of the export folder"
                )
                advice = (
                    "it is not a readable rtcheck ledger (corrupt, or another file): move it "
                    f"aside and run rtcheck {self.command} again; it then starts a new ledger "
                    f"and checks {again} once more"
                )
            else:
                advice = (
                    "the ledger cannot be read or written (a full disk, a read-only or "
                    "unreachable output folder?): fix that, or give another --out"
                )
            raise InputError(f"{advice} ({exc})", self.path) from exc

    def close(self) -> None:
        """Close the database."""
        with contextlib.suppress(sqlite3.Error, AttributeError):
            self._db.close()

    def done(self, version_key: str) -> bool:
        """Whether this version was checked to the end (a check cut short is redone)."""
        with self._sqlite():
            row = self._db.execute(
                "SELECT finished_utc FROM checks WHERE version_key = ?", (version_key,)
            ).fetchone()
        return row is not None and row[0] is not None

    def start(self, version_key: str, patient_id: str, label: str, uid: str, source: str) -> None:
        """Record that the check of a version started."""
        with self._sqlite(), self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO checks (version_key, patient_id, plan_label, plan_uid,"
                " source, started_utc) VALUES (?, ?, ?, ?, ?, ?)",
                (version_key, patient_id, label, uid, source, _utc_now()),
            )

    def finish(self, version_key: str, verdict: str, report: str | None, message: str) -> None:
        """Record the verdict of a version: final, it is not checked again."""
        with self._sqlite(), self._db:
            self._db.execute(
                "UPDATE checks SET finished_utc = ?, verdict = ?, report = ?, message = ?"
                " WHERE version_key = ?",
                (_utc_now(), verdict, report, message, version_key),
            )

    def interrupted(self, version_key: str, message: str) -> None:
        """Record why a check did not count: the version stays to be checked again."""
        with self._sqlite(), self._db:
            self._db.execute(
                "UPDATE checks SET finished_utc = NULL, verdict = 'error', report = NULL,"
                " message = ? WHERE version_key = ?",
                (message, version_key),
            )

    def records(self, patient_id: str | None = None) -> list[CheckRecord]:
        """Every record (of one patient), oldest first."""
        query = "SELECT * FROM checks"
        args: tuple[str, ...] = ()
        if patient_id is not None:
            query += " WHERE patient_id = ?"
            args = (patient_id,)
        with self._sqlite():
            rows = self._db.execute(query + " ORDER BY started_utc, rowid", args).fetchall()
        return [CheckRecord(*row) for row in rows]


class EventLog:
    """One JSON line per event, to a stream and optionally a file."""

    def __init__(self, stream: IO[str], file: Path | None = None) -> None:
        self._stream = stream
        self._file = file

    def __call__(
        self,
        event: str,
        patient_id: str = "",
        plan_uid: str = "",
        verdict: str | None = None,
        report: str | None = None,
        **extra: object,
    ) -> None:
        """Log one event (IDs and UIDs; never patient names or labels: see the module
        docstring for the folder and reason of ``waiting``, ``error`` and ``retry``)."""
        record: dict[str, Any] = {
            "ts": _utc_now(),
            "event": event,
            "patient_id": patient_id,
            "plan_uid": plan_uid,
            "verdict": verdict,
            "report": report,
            **extra,
        }
        line = json.dumps(record, ensure_ascii=False) + "\n"
        self._stream.write(line)
        self._stream.flush()
        if self._file is not None:
            with contextlib.suppress(OSError), self._file.open("a", encoding="utf-8") as fh:
                fh.write(line)


#: Start of the message of a check or scan that failed while its folder changed.
_CHANGED = "not final, checked again when the export settles: the export changed meanwhile: "


def _names(message: str, folder: Path) -> bool:
    """Whether an error message is about ``folder`` or a path inside it."""
    return message.startswith((f"{folder}:", f"{folder}{os.sep}"))


@dataclass
class _Unit:
    """What the watcher knows of one top-level folder."""

    signature: tuple[tuple[str, int, int, int], ...] = ()
    stable_since: float = 0.0
    processed: tuple[tuple[str, int, int, int], ...] | None = None
    #: Whether the ``waiting`` event was logged since the unit was last processed.
    waiting: bool = False


def _signature(unit: Path) -> tuple[tuple[str, int, int, int], ...]:
    """(relative path, size, mtime, ctime) of every file under the unit."""
    files = [unit] if unit.is_file() else sorted(p for p in unit.rglob("*"))
    out = []
    for p in files:
        try:
            st = p.stat()
        except OSError:
            continue
        if p.is_file():
            out.append(
                (
                    p.name if p == unit else p.relative_to(unit).as_posix(),
                    st.st_size,
                    st.st_mtime_ns,
                    st.st_ctime_ns,
                )
            )
    return tuple(out)


@dataclass
class Watcher:
    """The rescan / settle / check loop over one export folder.

    Parameters
    ----------
    root
        The export folder (only read).
    out
        The output folder: reports, ``ledger.sqlite`` and ``watch.log``.
    protocol
        The protocol to check against, or None for ``auto``.
    settle
        Seconds without any change before a folder is scanned.
    log
        The event logger.
    between_planes
        Structure model between contour planes (:data:`rtcheck.dvh.BETWEEN_PLANES`).
    prescription
        ``(total Gy, fractions)`` for plans that state no prescription, or None.
    aliases, aliases_file
        Institution alias patterns by role (already loaded), and the file's name for
        messages, or None.
    strict
        Minor deviations fail a plan too.
    """

    root: Path
    out: Path
    protocol: Protocol | None
    settle: float
    log: Callable[..., None]
    between_planes: str = "shape"
    prescription: tuple[float, int] | None = None
    aliases: Mapping[str, tuple[str, ...]] | None = None
    aliases_file: str | None = None
    strict: bool = False
    ledger: Ledger = field(init=False)
    outcomes: list[PlanOutcome] = field(default_factory=list)
    _units: dict[Path, _Unit] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ledger = Ledger(self.out / LEDGER_NAME)

    def _current_units(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        if holds_files(self.root):
            return [self.root]
        return subfolders(self.root)

    def rescan(self) -> float | None:
        """Look at every unit; check those settled and changed since last processed.

        Returns
        -------
        float or None
            Seconds until the next unit settles, or None when nothing is pending.
        """
        now_mono, now_wall = time.monotonic(), time.time()
        units = self._current_units()
        for gone in set(self._units) - set(units):
            del self._units[gone]
        wait: float | None = None
        for path in units:
            sig = _signature(path)
            state = self._units.get(path)
            if state is None or state.signature != sig:
                newest = max((max(s[2], s[3]) / 1e9 for s in sig), default=now_wall)
                age = max(0.0, now_wall - newest)
                if state is not None:  # it changed since our last look
                    age = min(age, now_mono - state.stable_since)
                state = (
                    _Unit(sig, now_mono - age)
                    if state is None
                    else _Unit(sig, now_mono - age, state.processed, state.waiting)
                )
                self._units[path] = state
            if not sig or state.processed == sig:
                continue
            remaining = self.settle - (now_mono - state.stable_since)
            if remaining > 0:
                wait = remaining if wait is None else min(wait, remaining)
                if not state.waiting:  # once per wait, not at every rescan
                    state.waiting = True
                    self.log(
                        "waiting",
                        folder=self._folder(path),
                        settle_s=self.settle,
                        reason=f"waiting until no file changes for {self.settle:g} s "
                        "(the export may still be being written)",
                    )
                continue
            try:
                self._process(path, sig)
            except InputError as exc:
                if exc.path is not None and exc.path.is_relative_to(self.out):
                    raise  # the ledger or the output folder: nothing can be recorded, stop
                self._failed(path, exc)
            except Exception as exc:  # keep watching; the folder is retried when it changes
                self._failed(path, exc)
            state.processed = sig
            state.waiting = False
        return wait

    def _folder(self, path: Path) -> str:
        """A folder of the export, relative to the watched folder (POSIX form; ``.``)."""
        try:
            return path.relative_to(self.root).as_posix() or "."
        except ValueError:
            return path.as_posix()

    def _reason(self, message: str) -> str:
        """An error message for the log: paths inside the watched folder made relative."""
        root = re.escape(str(self.root))
        message = re.sub(rf"(?<![^\s'\"(]){root}{re.escape(os.sep)}", "", message)
        return re.sub(rf"(?<![^\s'\"(]){root}(?=[\s:;,)]|$)", ".", message)

    def _failed(self, unit: Path, exc: Exception) -> None:
        message = str(exc).replace("\n", "; ")
        if not isinstance(exc, RtcheckError):
            message = f"internal error: {type(exc).__name__}: {message}"
        self.log("error", verdict="error", folder=self._folder(unit), reason=self._reason(message))
        self.outcomes.append(PlanOutcome("", "", "", self._folder(unit), "error", message=message))

    def pending(self) -> bool:
        """Whether a unit has changed since it was last processed."""
        return any(u.signature and u.processed != u.signature for u in self._units.values())

    def _process(self, unit: Path, signature: tuple[tuple[str, int, int, int], ...]) -> None:
        """Scan a settled unit and check its plans not checked yet.

        ``signature`` is the unit's signature when it was found settled: a scan error or a
        failed check while the unit changes (a file removed, added or rewritten) is not
        final, it is tried again once the unit settles (see :meth:`_check`).
        """
        found = Discovery(self.root)
        scan_folder(unit, self.root, found, depth=0)
        if found.errors and _signature(unit) != signature:
            for error in found.errors:
                self.log(
                    "retry",
                    verdict="error",
                    folder=error.source,
                    reason=self._reason(
                        "not final, scanned again when the export settles: the folder "
                        f"changed while it was scanned: {error.message}"
                    ),
                )
            self.outcomes.extend(replace(e, message=_CHANGED + e.message) for e in found.errors)
            found.errors.clear()
        for error in found.errors:
            self._record_scan_error(unit, error)
        fresh = [(src, s) for src, s in found.plans]
        keys = {id(s): plan_version(s) for _, s in fresh}
        todo = [(src, s) for src, s in fresh if not self.ledger.done(keys[id(s)])]
        if not todo:
            return
        jobs = prepare_jobs(
            todo,
            self.out,
            self.protocol,
            self.aliases,
            self.aliases_file,
            self.strict,
            between_planes=self.between_planes,
            prescription=self.prescription,
        )
        for job in jobs:
            key = keys[id(job.export)]
            job = replace(job, stem=f"{job.stem}-{key[:8]}")
            self._check(job, key, unit, signature)

    def _record_scan_error(self, unit: Path, error: PlanOutcome) -> None:
        where = (self.root / error.source) if error.source != "." else self.root
        digest = hashlib.sha256(b"folder\0" + error.source.encode())
        for p in sorted(x for x in where.rglob("*") if x.is_file()):
            with contextlib.suppress(OSError):
                digest.update(p.relative_to(where).as_posix().encode() + b"\0")
                digest.update(_sha256(p).encode())
        key = digest.hexdigest()
        if self.ledger.done(key):
            return
        self.ledger.start(key, "", "", "", error.source)
        self.ledger.finish(key, "error", None, error.message)
        self.outcomes.append(error)
        self.log(
            "error",
            verdict="error",
            version=key[:16],
            folder=error.source,
            reason=self._reason(error.message),
        )

    def _check(
        self,
        job: PlanJob,
        key: str,
        unit: Path,
        signature: tuple[tuple[str, int, int, int], ...],
    ) -> None:
        """Check one plan version and record it in the ledger.

        A failure is final only when it is the plan's own: when the unit changed during the
        check (a file vanished, was rewritten or added: a copy still running, a file moved
        away and back), the attempt is recorded as interrupted and the version is checked
        again when the unit settles. A failure to write the reports stops the watcher
        (InputError naming the folder), the version left unfinished, so it is checked after
        the restart.
        """
        s = job.export
        self.log("detected", s.patient_id, s.plan_uid, version=key[:16])
        self.ledger.start(key, s.patient_id, s.plan_label, s.plan_uid, job.source)
        outcome = check_one(job)
        if outcome.verdict == "error" and outcome.json_report is None:
            prepare_folder(self.out)  # raises, naming the folder, when it cannot be written
            if _names(outcome.message, self.out):
                raise InputError(f"the reports cannot be written: {outcome.message}", self.out)
            if _signature(unit) != signature:
                self.ledger.interrupted(key, _CHANGED + outcome.message)
                self.outcomes.append(replace(outcome, message=_CHANGED + outcome.message))
                self.log(
                    "retry",
                    s.patient_id,
                    s.plan_uid,
                    "error",
                    version=key[:16],
                    folder=job.source,
                    reason=self._reason(_CHANGED + outcome.message),
                )
                return
        report = outcome.json_report
        self.ledger.finish(key, outcome.verdict, report, outcome.message)
        self.outcomes.append(outcome)
        if outcome.verdict == "error":
            self.log(
                "error",
                s.patient_id,
                s.plan_uid,
                outcome.verdict,
                report,
                version=key[:16],
                folder=job.source,
                reason=self._reason(outcome.message),
            )
            return
        extra = {"failed_rules": list(outcome.failed_rules)} if outcome.failed_rules else {}
        self.log(
            "checked", s.patient_id, s.plan_uid, outcome.verdict, report, version=key[:16], **extra
        )


def _observer(polling: bool) -> Any:
    # The optional extra 'watch' is imported by name, so the package type-checks and
    # imports without it (as Dask is in batch.py).
    try:
        if polling:
            return importlib.import_module("watchdog.observers.polling").PollingObserver()
        return importlib.import_module("watchdog.observers").Observer()
    except ImportError as exc:
        raise MissingExtraError("rtcheck watch", "watch", "watchdog") from exc


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set ``stop`` on SIGTERM or SIGINT while the block runs (the handlers restored after).

    Outside the main thread, where Python cannot install signal handlers, it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    saved = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


def run_watch(
    root: str | Path,
    out: str | Path,
    protocol: str = "auto",
    settle: float = 10.0,
    polling: bool = False,
    once: bool = False,
    stream: IO[str] | None = None,
    stop: threading.Event | None = None,
    between_planes: str = "shape",
    prescription: tuple[float, int] | None = None,
    aliases: str | Path | None = None,
    strict: bool = False,
) -> str:
    """Watch ``root`` (or, with ``once``, process what is there) and check complete plans.

    Parameters
    ----------
    root
        The export folder (only read).
    out
        The output folder (outside ``root``): reports, ledger and log.
    protocol
        ``auto``, a shipped protocol id or a protocol YAML file.
    settle
        Seconds without a change before an export is considered complete.
    polling
        Use watchdog's polling observer (network shares).
    once
        Process what is there (waiting out the settle time of recent files) and return.
    stream
        Where the JSON event lines go (default stderr).
    stop
        Set to stop watching (SIGTERM and SIGINT set it too).
    between_planes
        Structure model between contour planes (:data:`rtcheck.dvh.BETWEEN_PLANES`).
    prescription
        ``(total Gy, fractions)`` for plans that state no prescription, or None.
    aliases
        An institution alias file (YAML ``ROLE: [pattern, ...]``), as ``rtcheck batch``.
    strict
        Minor deviations fail a plan too.

    Returns
    -------
    str
        The worst verdict of the checks made in this run (``pass`` when none).

    Raises
    ------
    UsageError, ProtocolError
        Output folder overlapping ``root``, unknown or malformed protocol or alias file.
    InputError
        ``root`` is not a folder.
    MissingExtraError
        Continuous mode without watchdog installed.
    """
    from rtcheck.constraints.registry import resolve_protocol
    from rtcheck.constraints.structures import aliases_for

    root_dir, out_dir = Path(root).resolve(), Path(out).resolve()
    if not root_dir.is_dir():
        raise InputError("not a folder: give the export folder", root_dir)
    check_out_folder(root_dir, out_dir)
    fixed = None if protocol == "auto" else resolve_protocol(protocol)
    alias_map = aliases_for(aliases, fixed)
    observer = None if once else _observer(polling)
    prepare_folder(out_dir)  # a folder that cannot be written is refused before any check
    remove_stale_temporaries(out_dir)
    log = EventLog(stream or sys.stderr, out_dir / LOG_NAME)
    stop = stop or threading.Event()
    wake = threading.Event()
    watcher = Watcher(
        root_dir,
        out_dir,
        fixed,
        settle,
        log,
        between_planes,
        prescription,
        alias_map,
        None if aliases is None else str(aliases),
        strict,
    )
    try:
        with stop_on_signals(stop):
            if observer is not None:
                _start_observer(observer, root_dir, wake)
            log("started", mode="once" if once else ("polling" if polling else "events"))
            while not stop.is_set():
                wait = watcher.rescan()
                if once and wait is None:
                    break
                timeout = RESCAN_INTERVAL if wait is None else min(wait + 0.05, RESCAN_INTERVAL)
                if once:
                    stop.wait(timeout)
                    continue
                deadline = time.monotonic() + timeout
                while not stop.is_set() and not wake.is_set() and time.monotonic() < deadline:
                    wake.wait(min(0.5, max(0.0, deadline - time.monotonic())))
                if wake.is_set():
                    stop.wait(DEBOUNCE)
                    wake.clear()
    finally:
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)
        watcher.ledger.close()
        log("stopped")
    return worst_verdict(watcher.outcomes)


def _start_observer(observer: Any, root: Path, wake: threading.Event) -> None:
    handler_base: Any = importlib.import_module("watchdog.events").FileSystemEventHandler

    def on_any_event(self: Any, event: Any) -> None:
        if event.event_type not in ("opened", "closed_no_write"):  # our own reads
            wake.set()

    # The handler class is built at run time: its base comes from the optional extra.
    wake_handler = type("_Wake", (handler_base,), {"on_any_event": on_any_event})

    observer.schedule(wake_handler(), os.fspath(root), recursive=True)
    observer.start()
