"""Faults around the plan: the ledger, the output folder, a lost export, CSV injection.

Each fault goes through the real command line (``rtcheck.cli.app`` under typer's
CliRunner, in this process, so the faults can be injected by monkeypatching) and must end
in a clear one-line error naming the folder or file, with the documented exit code: never
exit 4, never a traceback, never a temporary file left behind.

- A corrupt ``ledger.sqlite``: ``watch`` and ``history`` exit 3, the file untouched.
- A read-only output folder (a read-only tmpfs when running as root where ``mount`` is
  permitted, ``chmod`` otherwise): ``batch`` and ``watch`` exit 3 before checking anything.
- A full disk (``ENOSPC``), simulated by making the one file writer of rtcheck
  (:func:`rtcheck.output_files._write_file`) write half its data and fail; and for real on
  an 8 kB tmpfs when running as root where ``mount`` is permitted.
- A watched export that loses a file during its check (the loader moves the dose away,
  once): the failure is not final; copied back, the plan is checked and its report written
  exactly once. A plan that fails on its own content is final.
- ROI names, patient IDs and plan labels that a spreadsheet would run as formulas are
  neutralised in the CSV of ``dvh``, ``check`` and ``batch``.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rtcheck import dicom_io, output_files
from rtcheck.batch import PlanJob, PlanOutcome, check_one, discover, render_summary_csv
from rtcheck.cli.main import app
from rtcheck.errors import InputError
from rtcheck.reports.csv_writer import render_csv
from rtcheck.watch import LEDGER_NAME, Ledger
from tests.fixtures.plans import sphere, write_plan_export
from tests.test_golden import PERIPHERAL, lung

#: Names a spreadsheet would run as formulas (ROI names of the HOSTILE export).
FORMULA_ROIS = ("=HYPERLINK(1)", "+Ring", "-Opt", "@Helper")
HOSTILE_PATIENT = "@SUM(1+1)"
HOSTILE_LABEL = "=1+2"


@pytest.fixture(scope="module")
def staging(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``WA``: a plan that passes sabr-lung; ``BAD``: one whose dose is cut in half;
    ``HOSTILE``: patient ``@SUM(1+1)``, plan ``=1+2``, with four ROIs named as formulas."""
    root = tmp_path_factory.mktemp("faults")
    write_plan_export(root / "WA", replace(lung(PERIPHERAL, 3, 18), patient_id="WA"))
    write_plan_export(root / "BAD", replace(lung(PERIPHERAL, 3, 18), patient_id="WD"))
    dose = root / "BAD" / "RD.dcm"
    dose.write_bytes(dose.read_bytes()[: dose.stat().st_size // 2])
    spec = lung(PERIPHERAL, 3, 18)
    extra = tuple(
        sphere(name, (-60.0, -30.0 + 20.0 * i, 0.0), 5.0, "CONTROL")
        for i, name in enumerate(FORMULA_ROIS)
    )
    write_plan_export(
        root / "HOSTILE",
        replace(spec, patient_id=HOSTILE_PATIENT, label=HOSTILE_LABEL, shapes=spec.shapes + extra),
    )
    return root


def run(*args: str | Path) -> tuple[int, str, str]:
    """``rtcheck ARGS`` through the real app: exit code, stdout, stderr (never a crash)."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result
    assert result.exit_code != 4, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.exit_code, result.stdout, result.stderr


def temporaries(folder: Path) -> list[Path]:
    """rtcheck's temporary files (``.NAME.<pid>.tmp``) under ``folder``."""
    return sorted(p for p in folder.rglob(".*.tmp") if output_files.TEMPORARY.match(p.name))


def json_reports(out: Path) -> list[Path]:
    return sorted(out.rglob("*.json"))


def ledger_rows(out: Path) -> list[tuple[str | None, str | None, str | None]]:
    """(finished_utc, verdict, message) of every ledger row."""
    ledger = Ledger(out / LEDGER_NAME, read_only=True)
    try:
        return [(r.finished_utc, r.verdict, r.message) for r in ledger.records()]
    finally:
        ledger.close()


def events(out: Path, name: str) -> int:
    lines = (out / "watch.log").read_text(encoding="utf-8").splitlines()
    return sum(json.loads(line)["event"] == name for line in lines if line)


def watch_once(root: Path, out: Path) -> tuple[int, str, str]:
    return run("watch", root, "--out", out, "--once", "--settle", "0", "--protocol", "sabr-lung")


def full_disk_for(suffix: str) -> Callable[[Path, bytes], None]:
    """A stand-in for ``output_files._write_file``: files ending in ``suffix`` (their
    temporary name ends in ``.tmp``) get half their data, then ENOSPC."""
    real = output_files._write_file

    def write(path: Path, data: bytes) -> None:
        if not path.name.removesuffix(".tmp").rsplit(".", 1)[0].endswith(suffix):
            real(path, data)
            return
        with path.open("wb") as fh:
            fh.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    return write


def can_mount() -> bool:
    """Whether this process may mount a tmpfs (root in a namespace that allows it)."""
    return os.geteuid() == 0 and shutil.which("mount") is not None


@contextlib.contextmanager
def tmpfs(where: Path, size: str, read_only: bool = False) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` for the duration (skip if not permitted)."""
    where.mkdir()
    if not can_mount():
        pytest.skip("mounting a tmpfs needs root")
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"mount is not permitted here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=True)  # detach it anyway
            raise AssertionError(f"{where} was still in use: a file left open by rtcheck?")


@contextlib.contextmanager
def read_only_folder(where: Path) -> Iterator[Path]:
    """A folder nobody may write into: a read-only tmpfs as root, ``chmod 555`` otherwise."""
    if os.geteuid() == 0:
        with tmpfs(where, "1m", read_only=True) as folder:
            yield folder
        return
    where.mkdir()
    where.chmod(0o555)
    try:
        yield where
    finally:
        where.chmod(0o755)


# -- the ledger ------------------------------------------------------------------------------


def test_corrupt_ledger_is_an_error_naming_it(tmp_path: Path) -> None:
    root, out = tmp_path / "export", tmp_path / "out"
    root.mkdir()
    out.mkdir()
    ledger = out / LEDGER_NAME
    garbage = b"this is not an SQLite database\n" * 200
    ledger.write_bytes(garbage)
    for args in (("watch", root, "--out", out, "--once"), ("history", "--out", out)):
        code, _, stderr = run(*args)
        assert code == 3, stderr
        assert f"error: {ledger}: it is not a readable rtcheck ledger" in stderr, stderr
        assert "move it aside" in stderr
        assert ledger.read_bytes() == garbage  # never "repaired" or replaced
    assert temporaries(out) == []


def test_ledger_damaged_inside_is_an_error_naming_it(tmp_path: Path) -> None:
    """A real ledger whose pages were overwritten past its header."""
    out = tmp_path / "out"
    ledger = Ledger(out / LEDGER_NAME)
    for i in range(200):
        ledger.start(f"k{i}", "P", "L", "1.2.3", "src")
    ledger.close()
    data = bytearray((out / LEDGER_NAME).read_bytes())
    data[100:] = b"\xff" * (len(data) - 100)
    (out / LEDGER_NAME).write_bytes(bytes(data))
    code, _, stderr = run("history", "--out", out)
    assert code == 3, stderr
    assert f"error: {out / LEDGER_NAME}: " in stderr and "move it aside" in stderr


# -- the output folder -------------------------------------------------------------------------


def test_read_only_output_folder_is_refused_before_any_check(staging: Path, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    shutil.copytree(staging / "WA", archive / "WA")
    with read_only_folder(tmp_path / "ro") as ro:
        for out in (ro, ro / "new"):
            for args in (
                ("batch", archive, "--out", out, "--protocol", "sabr-lung"),
                ("watch", archive, "--out", out, "--once", "--protocol", "sabr-lung"),
            ):
                code, _, stderr = run(*args)
                assert code == 3, stderr
                assert f"error: {out}: cannot write " in stderr, stderr
                assert "choose an output folder you can write to" in stderr
        assert list(ro.iterdir()) == []


def test_full_disk_in_batch_leaves_no_temporary_file(
    staging: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plans are checked (in worker processes); summary.csv meets a full disk: exit 3
    naming the folder, no summary.csv, no half-written or temporary file. A temporary file
    of a run that was killed earlier (its process is gone) is removed."""
    archive, out = tmp_path / "archive", tmp_path / "out"
    shutil.copytree(staging / "WA", archive / "WA")
    out.mkdir()
    stale = out / ".summary.csv.999999999.tmp"
    stale.write_text("half a summary", encoding="utf-8")
    monkeypatch.setattr(output_files, "_write_file", full_disk_for("summary.csv"))
    code, _, stderr = run("batch", archive, "--out", out, "--protocol", "sabr-lung")
    assert code == 3, stderr
    assert stderr.strip() == (
        f"error: {out}: cannot write summary.csv: no space left on its device: "
        "free space there or choose another output folder"
    )
    assert not (out / "summary.csv").exists()
    assert temporaries(out) == []
    assert [p.name for p in json_reports(out)] == ["LUNG_SABR.json"]


def test_full_disk_for_a_plan_report(
    staging: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """check_one: the plan is an error row naming its folder, no report, no temporary."""
    found = discover(staging / "WA")
    out = tmp_path / "out"
    out.mkdir()
    job = PlanJob(found.plans[0][1], "WA", out.resolve(), "WA", "LUNG_SABR")
    monkeypatch.setattr(output_files, "_write_file", full_disk_for(".json"))
    outcome = check_one(job)
    assert outcome.verdict == "error"
    assert outcome.message == (
        f"{out.resolve() / 'WA'}: cannot write LUNG_SABR.json: no space left on its device: "
        "free space there or choose another output folder"
    )
    assert outcome.detail is None  # an error of rtcheck's, not an internal one
    assert json_reports(out) == [] and temporaries(out) == []


def test_full_disk_in_watch_stops_and_the_plan_is_checked_after(
    staging: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report cannot be written: the watcher stops (exit 3, naming the folder), the
    version stays unfinished in the ledger, and the next run checks it, once."""
    root, out = tmp_path / "export", tmp_path / "out"
    shutil.copytree(staging / "WA", root / "WA")
    with monkeypatch.context() as patch:
        patch.setattr(output_files, "_write_file", full_disk_for(".json"))
        code, _, stderr = watch_once(root, out)
    assert code == 3, stderr
    assert f"error: {out.resolve()}: the reports cannot be written: " in stderr
    assert "no space left on its device" in stderr
    assert [(f, v) for f, v, _ in ledger_rows(out)] == [(None, None)]
    assert json_reports(out) == [] and temporaries(out) == []
    code, _, stderr = watch_once(root, out)
    assert code == 0, stderr
    assert len(json_reports(out)) == 1
    assert [v for _, v, _ in ledger_rows(out)] == ["pass"]
    assert events(out, "checked") == 1


def test_full_disk_on_a_small_tmpfs(staging: Path, tmp_path: Path) -> None:
    """For real: an output folder on an 8 kB tmpfs (root only, where mount is permitted)."""
    archive = tmp_path / "archive"
    shutil.copytree(staging / "WA", archive / "WA")
    with tmpfs(tmp_path / "small", "8k") as small:
        out = small / "out"
        code, _, stderr = run("batch", archive, "--out", out, "--protocol", "sabr-lung")
        assert code == 3, stderr
        assert f"{out}" in stderr and "no space left on its device" in stderr, stderr
        assert temporaries(small) == []
        for report in json_reports(small):  # whatever was written is whole
            json.loads(report.read_text(encoding="utf-8"))
        shutil.rmtree(out)
        code, _, stderr = watch_once(archive, out)
        assert code == 3, stderr
        assert f"{out}" in stderr, stderr
        assert "no space left" in stderr or "full disk" in stderr, stderr
        assert temporaries(small) == []


# -- watch: a lost export ----------------------------------------------------------------------


def test_watch_checks_an_export_again_after_it_lost_a_file_during_its_check(
    staging: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dose vanishes while the plan is being checked (the loader moves it away, once):
    the error is not final. Copied back complete, the plan is checked and its report
    written exactly once; a third run checks nothing."""
    root, out, hold = tmp_path / "export", tmp_path / "out", tmp_path / "hold"
    shutil.copytree(staging / "WA", root / "WA")
    hold.mkdir()
    real = dicom_io.load_export
    calls: list[str] = []

    def losing(export_set: dicom_io.ExportSet) -> dicom_io.PlanExport:
        calls.append(export_set.plan_uid)
        if len(calls) == 1:
            shutil.move(root / "WA" / "RD.dcm", hold / "RD.dcm")
        return real(export_set)

    monkeypatch.setattr(dicom_io, "load_export", losing)
    code, _, stderr = watch_once(root, out)
    assert code == 3, stderr
    assert json_reports(out) == []
    [(finished, verdict, message)] = ledger_rows(out)
    assert (finished, verdict) == (None, "error")
    assert message is not None and message.startswith("not final, checked again")
    assert events(out, "retry") == 1 and events(out, "checked") == 0

    shutil.copyfile(hold / "RD.dcm", root / "WA" / "RD.dcm")  # copied back, same content
    (hold / "RD.dcm").unlink()
    code, _, stderr = watch_once(root, out)
    assert code == 0, stderr
    [report] = json_reports(out)
    written = report.stat().st_mtime_ns
    [(finished, verdict, message)] = ledger_rows(out)
    assert finished is not None and verdict == "pass" and message == ""

    code, _, stderr = watch_once(root, out)
    assert code == 0, stderr
    assert json_reports(out) == [report] and report.stat().st_mtime_ns == written
    assert events(out, "checked") == 1 and events(out, "detected") == 2
    assert len(calls) == 2


def test_watch_failure_of_the_content_itself_is_final(staging: Path, tmp_path: Path) -> None:
    """A dose cut in half fails the same way every time: recorded once, never redone, even
    when its files are touched (same content)."""
    root, out = tmp_path / "export", tmp_path / "out"
    shutil.copytree(staging / "BAD", root / "BAD")
    code, _, stderr = watch_once(root, out)
    assert code == 3, stderr
    rows = ledger_rows(out)
    assert [v for _, v, _ in rows] == ["error"] and rows[0][0] is not None
    for path in (root / "BAD").rglob("*"):
        os.utime(path)
    code, _, stderr = watch_once(root, out)
    assert code == 0, stderr  # nothing new to check
    assert ledger_rows(out) == rows
    assert events(out, "retry") == 0


# -- CSV injection ------------------------------------------------------------------------------


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_every_csv_neutralises_formulas(staging: Path, tmp_path: Path) -> None:
    """dvh --csv, check --csv and batch's summary.csv, on a plan whose patient ID, plan
    label and ROI names start with = + - @."""
    export = staging / "HOSTILE"
    dvh_csv, check_csv = tmp_path / "dvh.csv", tmp_path / "check.csv"
    code, _, stderr = run("dvh", export, "--csv", dvh_csv)
    assert code == 0, stderr
    rows = read_csv(dvh_csv.read_text(encoding="utf-8"))
    names = {r["roi"] for r in rows}
    assert {"'" + n for n in FORMULA_ROIS} <= names
    assert not any(n.startswith(("=", "+", "-", "@")) for n in names)
    assert {r["patient_id"] for r in rows} == {"'" + HOSTILE_PATIENT}
    assert all(float(r["volume_cc"]) > 0 for r in rows)  # numbers stay numbers

    code, _, stderr = run("check", export, "--protocol", "sabr-lung", "--csv", check_csv)
    assert code in (0, 1), stderr
    rows = read_csv(check_csv.read_text(encoding="utf-8"))
    assert rows and {(r["patient_id"], r["plan_label"]) for r in rows} == {
        ("'" + HOSTILE_PATIENT, "'" + HOSTILE_LABEL)
    }

    archive, out = tmp_path / "archive", tmp_path / "out"
    shutil.copytree(export, archive / "HOSTILE")
    code, _, stderr = run("batch", archive, "--out", out, "--protocol", "sabr-lung")
    assert code in (0, 1), stderr
    [row] = read_csv((out / "summary.csv").read_text(encoding="utf-8"))
    assert (row["patient_id"], row["plan_label"]) == ("'" + HOSTILE_PATIENT, "'" + HOSTILE_LABEL)


def test_tab_and_carriage_return_starters_are_neutralised(staging: Path) -> None:
    """Tab and CR cannot survive a DICOM text value (rtcheck strips them), so each writer
    is given them directly: the one writer, the batch summary and the dvh and check CSV."""
    from rtcheck.analysis import analyse
    from rtcheck.constraints.engine import check_plan
    from rtcheck.constraints.registry import resolve_protocol
    from rtcheck.reports.csv_writer import to_csv as check_csv
    from rtcheck.reports.dvh import to_csv as dvh_csv

    assert render_csv(["a", "b", "c", "d", "e"], [["\tx", "\rx", -1.5, -2, "-x"]]) == (
        "a,b,c,d,e\n'\tx,\"'\rx\",-1.5,-2,'-x\n"  # a CR is quoted: it ends no line
    )
    outcome = PlanOutcome("\tP", "\rL", "1.2", "src", "pass")
    [row] = read_csv(render_summary_csv([outcome]))
    assert (row["patient_id"], row["plan_label"]) == ("'\tP", "'\rL")

    export = dicom_io.load_path(staging / "HOSTILE")
    analysis = analyse(export, ["PTV"], ["D95%[Gy]"])
    analysis.structures[0] = replace(
        analysis.structures[0], roi=replace(analysis.structures[0].roi, name="\tPTV")
    )
    [row] = read_csv(dvh_csv(analysis))
    assert row["roi"] == "'\tPTV" and float(row["D95%[Gy]"]) > 0

    result = check_plan(export, resolve_protocol("sabr-lung"))
    plan = result.export.plan
    assert plan is not None
    result.export = replace(result.export, patient_id="\rP", plan=replace(plan, label="\tL"))
    rows = read_csv(check_csv(result))
    assert rows and {(r["patient_id"], r["plan_label"]) for r in rows} == {("'\rP", "'\tL")}


def test_ledger_wraps_sqlite_errors(tmp_path: Path) -> None:
    """The library's Ledger: SQLite's own exceptions never escape."""
    path = tmp_path / LEDGER_NAME
    path.write_bytes(b"\0" * 4096 + b"junk")
    with pytest.raises(InputError) as caught:
        Ledger(path)
    assert str(caught.value).startswith(f"{path}: it is not a readable rtcheck ledger")
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)


@pytest.mark.parametrize(
    ("command", "option", "name"),
    [
        ("check", "--json", "report.json"),
        ("check", "--html", "report.html"),
        ("check", "--csv", "rules.csv"),
        ("dvh", "--json", "dvh.json"),
        ("dvh", "--csv", "dvh.csv"),
    ],
)
def test_full_disk_for_a_single_plan_output_keeps_the_earlier_file(
    staging: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    option: str,
    name: str,
) -> None:
    """``check``/``dvh`` outputs are written whole or not at all: on a full disk the file
    an earlier run left is kept as it was, no temporary file is left, exit 3 names it."""
    target = tmp_path / name
    target.write_text("earlier run", encoding="utf-8")
    monkeypatch.setattr(output_files, "_write_file", full_disk_for(Path(name).suffix))
    args = [command, str(staging / "WA"), option, str(target)]
    if command == "check":
        args += ["--protocol", "sabr-lung"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 3, result.output
    assert f"cannot write {name}: no space left on its device" in result.stderr
    assert "Traceback" not in result.output
    assert target.read_text(encoding="utf-8") == "earlier run"
    assert temporaries(tmp_path) == []
