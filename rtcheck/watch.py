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
- Nothing in the export folder is ever written, moved or deleted.
- One JSON line per event goes to stderr and ``OUT/watch.log``; they carry IDs and UIDs,
  never names or paths.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
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
from rtcheck.errors import InputError, MissingExtraError

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
    """

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.path = path
        if read_only:
            if not path.is_file():
                raise InputError("no ledger here: run rtcheck watch with this --out first", path)
            self._db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path)
            with self._db:
                self._db.execute(_SCHEMA)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def done(self, version_key: str) -> bool:
        """Whether this version was checked to the end (a check cut short is redone)."""
        row = self._db.execute(
            "SELECT finished_utc FROM checks WHERE version_key = ?", (version_key,)
        ).fetchone()
        return row is not None and row[0] is not None

    def start(self, version_key: str, patient_id: str, label: str, uid: str, source: str) -> None:
        """Record that the check of a version started."""
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO checks (version_key, patient_id, plan_label, plan_uid,"
                " source, started_utc) VALUES (?, ?, ?, ?, ?, ?)",
                (version_key, patient_id, label, uid, source, _utc_now()),
            )

    def finish(self, version_key: str, verdict: str, report: str | None, message: str) -> None:
        """Record the verdict of a version."""
        with self._db:
            self._db.execute(
                "UPDATE checks SET finished_utc = ?, verdict = ?, report = ?, message = ?"
                " WHERE version_key = ?",
                (_utc_now(), verdict, report, message, version_key),
            )

    def records(self, patient_id: str | None = None) -> list[CheckRecord]:
        """Every record (of one patient), oldest first."""
        query = "SELECT * FROM checks"
        args: tuple[str, ...] = ()
        if patient_id is not None:
            query += " WHERE patient_id = ?"
            args = (patient_id,)
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
        **extra: str,
    ) -> None:
        """Log one event (IDs and UIDs only: never names, labels or paths of the export)."""
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


@dataclass
class _Unit:
    """What the watcher knows of one top-level folder."""

    signature: tuple[tuple[str, int, int, int], ...] = ()
    stable_since: float = 0.0
    processed: tuple[tuple[str, int, int, int], ...] | None = None


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
    """

    root: Path
    out: Path
    protocol: Protocol | None
    settle: float
    log: Callable[..., None]
    between_planes: str = "slab"
    prescription: tuple[float, int] | None = None
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
                state = _Unit(sig, now_mono - age, None if state is None else state.processed)
                self._units[path] = state
            if not sig or state.processed == sig:
                continue
            remaining = self.settle - (now_mono - state.stable_since)
            if remaining > 0:
                wait = remaining if wait is None else min(wait, remaining)
                continue
            try:
                self._process(path)
            except Exception as exc:  # keep watching; the folder is retried when it changes
                self.log("error", verdict="error", reason=type(exc).__name__)
                self.outcomes.append(PlanOutcome("", "", "", "", "error", message=str(exc)))
            state.processed = sig
        return wait

    def pending(self) -> bool:
        """Whether a unit has changed since it was last processed."""
        return any(u.signature and u.processed != u.signature for u in self._units.values())

    def _process(self, unit: Path) -> None:
        found = Discovery(self.root)
        scan_folder(unit, self.root, found, depth=0)
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
            between_planes=self.between_planes,
            prescription=self.prescription,
        )
        for job in jobs:
            key = keys[id(job.export)]
            job = replace(job, stem=f"{job.stem}-{key[:8]}")
            self._check(job, key)

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
        self.log("error", verdict="error", version=key[:16])

    def _check(self, job: PlanJob, key: str) -> None:
        s = job.export
        self.log("detected", s.patient_id, s.plan_uid, version=key[:16])
        self.ledger.start(key, s.patient_id, s.plan_label, s.plan_uid, job.source)
        outcome = check_one(job)
        report = outcome.json_report
        self.ledger.finish(key, outcome.verdict, report, outcome.message)
        self.outcomes.append(outcome)
        event = "error" if outcome.verdict == "error" else "checked"
        self.log(event, s.patient_id, s.plan_uid, outcome.verdict, report, version=key[:16])


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
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
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
    between_planes: str = "slab",
    prescription: tuple[float, int] | None = None,
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

    Returns
    -------
    str
        The worst verdict of the checks made in this run (``pass`` when none).

    Raises
    ------
    UsageError, ProtocolError
        Output folder overlapping ``root``, unknown or malformed protocol.
    InputError
        ``root`` is not a folder.
    MissingExtraError
        Continuous mode without watchdog installed.
    """
    from rtcheck.constraints.registry import resolve_protocol

    root_dir, out_dir = Path(root).resolve(), Path(out).resolve()
    if not root_dir.is_dir():
        raise InputError("not a folder: give the export folder", root_dir)
    check_out_folder(root_dir, out_dir)
    fixed = None if protocol == "auto" else resolve_protocol(protocol)
    observer = None if once else _observer(polling)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = EventLog(stream or sys.stderr, out_dir / LOG_NAME)
    stop = stop or threading.Event()
    wake = threading.Event()
    watcher = Watcher(root_dir, out_dir, fixed, settle, log, between_planes, prescription)
    try:
        with (
            _stop_on_signals(stop)
            if threading.current_thread() is threading.main_thread()
            else contextlib.nullcontext()
        ):
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
