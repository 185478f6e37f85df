"""Issue #12, "a terminal that speaks plainly": the batch and watch items.

Through the real command line (``rtcheck.cli.app`` under typer's CliRunner, in this
process) where possible:

- ``watch`` says what it waits for while an export is still changing (``waiting``), once
  per wait, not at every rescan, in ``--once`` and continuous mode;
- a ``watch`` error event carries the export folder and the reason in ``watch.log``;
- every option a check's advice names (``--aliases``, ``--protocol``, ``--prescription``...)
  is an option of ``batch`` and ``watch``; ``watch`` takes ``--aliases`` and ``--strict``;
- ``batch`` refuses an output folder holding an earlier run, unless ``--overwrite``;
- the batch summary and index name the failed and unevaluated rules and how
  ``--protocol auto`` chose.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import io
import json
import re
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pydicom
import pytest
import typer
from typer.testing import CliRunner

from rtcheck.batch import PlanOutcome, earlier_output, render_index, render_summary_csv, run_batch
from rtcheck.cli.main import app
from rtcheck.errors import UsageError
from rtcheck.watch import EventLog, Watcher
from tests.fixtures.plans import write_plan_export
from tests.fixtures.trust import TrustPlan, write_trust_export
from tests.test_golden import CENTRAL, PERIPHERAL, lung

REPO = Path(__file__).resolve().parents[1]
#: The rules the palliative protocol cannot evaluate on a plan stating no prescription.
NO_RX_RULES = (
    "ptv-coverage",
    "integrity.prescription",
    "integrity-rx.prescription_matches_dose",
    "integrity-rx-sabr",
)


@pytest.fixture(scope="module")
def staging(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``WA`` passes sabr-lung with one minor deviation (ptv-r100); ``WB`` fails it
    (schedule-central); ``WR`` is WA with its PTV named ``Zielvolumen``; ``NORX`` states no
    prescription; ``BAD`` has a dose cut in half."""
    root = tmp_path_factory.mktemp("plain")
    write_plan_export(root / "WA", replace(lung(PERIPHERAL, 3, 18), patient_id="WA"))
    write_plan_export(root / "WB", replace(lung(CENTRAL, 3, 18), patient_id="WB"))
    write_plan_export(root / "WR", replace(lung(PERIPHERAL, 3, 18), patient_id="WR"))
    rs = pydicom.dcmread(root / "WR" / "RS.dcm")
    for roi in rs.StructureSetROISequence:
        if roi.ROIName == "PTV":
            roi.ROIName = "Zielvolumen"
    rs.save_as(root / "WR" / "RS.dcm")
    write_trust_export(root / "NORX", TrustPlan(grid_gy=30.0, prescription_gy=None))
    write_plan_export(root / "BAD", replace(lung(PERIPHERAL, 3, 18), patient_id="WD"))
    dose = root / "BAD" / "RD.dcm"
    dose.write_bytes(dose.read_bytes()[: dose.stat().st_size // 2])
    return root


def run(*args: str | Path) -> tuple[int, str, str]:
    """``rtcheck ARGS`` through the real app: exit code, stdout, stderr (never a crash)."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result
    assert result.exit_code != 4, result.stderr
    return result.exit_code, result.stdout, result.stderr


def archive(tmp_path: Path, staging: Path, *names: str) -> Path:
    root = tmp_path / "archive"
    for name in names:
        shutil.copytree(staging / name, root / name)
    return root


def events(out: Path) -> list[dict[str, Any]]:
    lines = (out / "watch.log").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line]


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def summary(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((out / "summary.csv").read_text("utf-8"))))


# -- watch: what it waits for ----------------------------------------------------------------


def test_watch_once_says_what_it_waits_for(staging: Path, tmp_path: Path) -> None:
    root = archive(tmp_path, staging, "WA")  # just copied: its files changed a moment ago
    out = tmp_path / "out"
    started = time.monotonic()
    code, _, stderr = run(
        "watch", root, "--out", out, "--once", "--settle", "1", "--protocol", "sabr-lung"
    )
    assert code == 0, stderr
    assert time.monotonic() - started >= 0.5
    log = events(out)
    waiting = [e for e in log if e["event"] == "waiting"]
    assert len(waiting) == 1, log
    assert waiting[0]["folder"] == "WA" and waiting[0]["settle_s"] == 1.0
    assert waiting[0]["reason"].startswith("waiting until no file changes for 1 s")
    names = [e["event"] for e in log]
    assert names.index("waiting") < names.index("detected") < names.index("checked")
    # The same line on stderr, as it happens.
    assert json.loads(next(x for x in stderr.splitlines() if '"waiting"' in x)) == waiting[0]


def test_watcher_waits_once_per_change_and_errors_say_where_and_why(tmp_path: Path) -> None:
    """The library's loop: one ``waiting`` event per wait (not per rescan, not per file
    change during the wait), a folder that cannot be scanned is an ``error`` event naming
    the folder and the reason, and a later change is a new wait."""
    root, out = tmp_path / "export", tmp_path / "out"
    (root / "X").mkdir(parents=True)
    (root / "X" / "notes.txt").write_text("a\n", encoding="utf-8")
    stream = io.StringIO()
    watcher = Watcher(root, out, None, 0.6, EventLog(stream, out / "watch.log"))
    try:

        def logged(name: str) -> list[dict[str, Any]]:
            return [e for e in events(out) if e["event"] == name]

        assert watcher.rescan() is not None
        assert watcher.rescan() is not None
        (root / "X" / "notes.txt").write_text("ab\n", encoding="utf-8")  # still being written
        assert watcher.rescan() is not None
        assert [e["folder"] for e in logged("waiting")] == ["X"]
        deadline = time.monotonic() + 10
        while watcher.rescan() is not None:  # settles, then is scanned
            assert time.monotonic() < deadline
            time.sleep(0.1)
        (error,) = logged("error")
        assert error["folder"] == "X"
        assert error["reason"].startswith("X: ") and str(root) not in error["reason"]
        assert error["reason"] == watcher.outcomes[0].message.replace(f"{root}/", "")
        (root / "X" / "notes.txt").write_text("abc\n", encoding="utf-8")  # a new export state
        assert watcher.rescan() is not None
        assert [e["folder"] for e in logged("waiting")] == ["X", "X"]
    finally:
        watcher.ledger.close()
    assert stream.getvalue().splitlines() == (out / "watch.log").read_text("utf-8").splitlines()


# -- watch: errors in the log ----------------------------------------------------------------


def test_watch_error_event_gives_the_folder_and_the_reason(staging: Path, tmp_path: Path) -> None:
    root = archive(tmp_path, staging, "BAD", "NORX")
    out = tmp_path / "out"
    code, _, stderr = run("watch", root, "--out", out, "--once", "--settle", "0")
    assert code == 3, stderr
    errors = {e["folder"]: e for e in events(out) if e["event"] == "error"}
    assert set(errors) == {"BAD", "NORX"}
    assert errors["BAD"]["reason"].startswith("BAD/RD.dcm: truncated DICOM file")
    norx = errors["NORX"]
    assert norx["patient_id"] and norx["plan_uid"] and norx["verdict"] == "error"
    for rule in NO_RX_RULES:
        assert f"{rule}: " in norx["reason"]
    # The advice names options watch has: --prescription and --aliases.
    assert "give it with --prescription TOTAL/FRACTIONS" in norx["reason"]
    assert "name the structures with --aliases" in norx["reason"]
    for e in errors.values():
        assert str(root) not in json.dumps(e)
        assert "Synthetic" not in json.dumps(e)  # still no patient names
    code, _, stderr = run(
        "watch", root / "NORX", "--out", tmp_path / "out2", "--once", "--settle", "0",
        "--prescription", "30/5",
    )  # fmt: skip
    assert code == 0, stderr  # the advice works


# -- advice names options the command has ------------------------------------------------------


def _options(command: str) -> set[str]:
    click_app = typer.main.get_command(app)
    assert isinstance(click_app, typer.core.TyperGroup)
    return {o for p in click_app.commands[command].params for o in p.opts if o.startswith("--")}


def _advice_options(path: Path) -> set[str]:
    """Every ``--option`` named in a string of a module (docstrings left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            found.update(re.findall(r"(?<![\w-])--[a-z][a-z-]*[a-z]", node.value))
    return found


def test_every_advice_of_a_check_names_an_option_of_batch_watch_and_serve() -> None:
    sources = [*(REPO / "rtcheck" / "constraints").glob("*.py"), REPO / "rtcheck/prescription.py"]
    advised = set().union(*map(_advice_options, sources))
    assert {"--aliases", "--protocol", "--prescription"} <= advised  # the scan finds them
    for command in ("batch", "watch", "serve"):
        assert advised <= _options(command), (command, advised - _options(command))
        assert {"--aliases", "--strict"} <= _options(command)


def test_watch_aliases_and_strict(staging: Path, tmp_path: Path) -> None:
    root = archive(tmp_path, staging, "WR")
    once = ("--once", "--settle", "0", "--protocol", "sabr-lung")
    code, _, stderr = run("watch", root, "--out", tmp_path / "o1", *once)
    assert code == 1, stderr  # no PTV found: the target rules are not evaluated, one fails
    aliases = tmp_path / "aliases.yaml"
    aliases.write_text("PTV: [Zielvolumen]\n", encoding="utf-8")
    code, _, stderr = run("watch", root, "--out", tmp_path / "o2", *once, "--aliases", aliases)
    assert code == 0, stderr
    (checked,) = [e for e in events(tmp_path / "o2") if e["event"] == "checked"]
    assert checked["verdict"] == "pass" and "failed_rules" not in checked

    code, _, stderr = run("watch", root, "--out", tmp_path / "o3", *once, "--aliases", aliases,
                          "--strict")  # fmt: skip
    assert code == 1, stderr  # the minor deviation fails the plan
    (checked,) = [e for e in events(tmp_path / "o3") if e["event"] == "checked"]
    assert checked["verdict"] == "fail" and checked["failed_rules"] == ["ptv-r100"]

    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("NoSuchRole: [x]\n", encoding="utf-8")
    code, _, stderr = run("watch", root, "--out", tmp_path / "o4", *once, "--aliases", unknown)
    assert code == 2 and "NoSuchRole" in stderr
    assert not (tmp_path / "o4").exists()


# -- batch: an earlier run -------------------------------------------------------------------


def test_batch_refuses_an_earlier_run_unless_overwrite(staging: Path, tmp_path: Path) -> None:
    root, out = archive(tmp_path, staging, "WA", "WB"), tmp_path / "out"
    args = ("batch", root, "--out", out, "--workers", "1", "--protocol", "sabr-lung")
    code, _, stderr = run(*args)
    assert code == 1, stderr
    before = tree_hashes(out)
    code, _, stderr = run(*args)
    assert code == 2
    assert stderr.startswith(
        f"error: {out.resolve()}: the output folder is not empty: it holds index.html and "
        "summary.csv of an earlier rtcheck batch run (written "
    ), stderr
    assert re.search(r"\(written \d{4}-\d\d-\d\d \d\d:\d\d UTC\)", stderr)
    assert "2 other file(s) or folder(s): WA, WB" in stderr and "--overwrite" in stderr
    assert tree_hashes(out) == before  # nothing touched
    with pytest.raises(UsageError, match="not empty"):
        run_batch(root, out, protocol="sabr-lung", workers=1)

    shutil.rmtree(root / "WB")  # this run checks WA only
    code, stdout, stderr = run(*args, "--overwrite")
    assert code == 0, stderr
    assert "1 plan(s): 1 pass, 0 fail, 0 error" in stdout
    assert [r["patient_id"] for r in summary(out)] == ["WA"]  # the index lists this run only
    page = (out / "index.html").read_text("utf-8")
    assert "WB/" not in page
    assert (out / "WB" / "LUNG_SABR.json").is_file()  # an earlier report is not removed
    assert tree_hashes(out)["WA/LUNG_SABR.json"] != before["WA/LUNG_SABR.json"]  # rewritten


def test_what_an_output_folder_holds(tmp_path: Path) -> None:
    assert earlier_output(tmp_path / "new") is None
    (tmp_path / "hidden").mkdir()
    (tmp_path / "hidden" / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "hidden" / ".summary.csv.123.tmp").write_text("x", encoding="utf-8")
    assert earlier_output(tmp_path / "hidden") is None
    watch_out = tmp_path / "watch"
    watch_out.mkdir()
    (watch_out / "ledger.sqlite").write_bytes(b"")
    (watch_out / "watch.log").write_text("", encoding="utf-8")
    assert earlier_output(watch_out) == "the ledger and log of rtcheck watch or serve"
    other = tmp_path / "other"
    other.mkdir()
    for i in range(7):
        (other / f"f{i}.txt").write_text("x", encoding="utf-8")
    assert earlier_output(other) == "7 other file(s) or folder(s): f0.txt, f1.txt, f2.txt, " + (
        "f3.txt, f4.txt, ..."
    )


def test_batch_help_documents_overwrite() -> None:
    code, stdout, _ = run("batch", "--help")
    assert code == 0
    text = " ".join(stdout.split())
    assert "--overwrite" in text and "must be new or empty" in text


# -- batch: rules not evaluated ----------------------------------------------------------------


def test_batch_names_the_rules_not_evaluated(staging: Path, tmp_path: Path) -> None:
    root, out = archive(tmp_path, staging, "NORX"), tmp_path / "out"
    code, _, stderr = run("batch", root, "--out", out, "--workers", "1", "--protocol", "palliative")
    assert code == 3, stderr
    (row,) = summary(out)
    assert row["verdict"] == "error"
    assert row["not_evaluated_rules"] == ", ".join(NO_RX_RULES)
    assert row["failed_rules"] == row["minor_rules"] == ""
    assert "give it with --prescription" in row["message"]
    page = (out / "index.html").read_text("utf-8")
    assert f'<div class="rules">not evaluated: {", ".join(NO_RX_RULES)}</div>' in page


def test_index_and_summary_of_rules_and_selection() -> None:
    """The renderers: a plan failing by --strict (minor rules among the failed), one that
    raised (the error, no rules), and the old positional form of PlanOutcome."""
    strict_fail = PlanOutcome(
        "P", "L", "1.2", "a", "fail", "sabr-lung", major=1, minor=1,
        failed_rules=("schedule-central", "ptv-r100"), minor_rules=("ptv-r100",),
        selection=("3 fractions in 1-8",), selection_note="intent <b>decided</b>",
    )  # fmt: skip
    crashed = PlanOutcome("Q", "M", "1.3", "b", "error", message="internal error: boom")
    old = PlanOutcome("R", "N", "1.4", "c", "pass", "sabr-lung", 0, 0, 0, "R/N.json")
    assert old.failed_rules == old.not_evaluated_rules == () and old.selection_note is None
    page = render_index([strict_fail, crashed, old], "/archive")
    assert '<div class="rules">failed: schedule-central, ptv-r100</div>' in page
    assert "minor: ptv-r100" not in page  # already listed as failed
    assert "intent &lt;b&gt;decided&lt;/b&gt;" in page
    assert "internal error: boom" in page
    rows = {r["patient_id"]: r for r in csv.DictReader(io.StringIO(render_summary_csv(
        [strict_fail, crashed, old])))}  # fmt: skip
    assert rows["P"]["failed_rules"] == "schedule-central, ptv-r100"
    assert rows["P"]["selection"] == "3 fractions in 1-8"
    assert rows["P"]["selection_note"] == "intent <b>decided</b>"
    assert rows["Q"]["failed_rules"] == rows["Q"]["not_evaluated_rules"] == ""
    assert rows["Q"]["message"] == "internal error: boom"
